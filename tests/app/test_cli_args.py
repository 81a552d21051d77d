"""
The ``line-ood`` command line without the shared data: the console script, the help and usage
errors.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import line_ood

# -- help ----------------------------------------------------------------------------------------


def test_console_script_help():
    script = shutil.which("line-ood") or str(Path(sys.executable).parent / "line-ood")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("benchmark", "fit", "score"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["benchmark", "fit", "score"])
def test_command_help_has_examples(command):
    code, out, _ = line_ood(command, "--help")
    assert code == 0
    assert "examples:" in out and f"line-ood {command}" in out


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--clip", "1", "--clip-quantile", "0.9", "--out", "x.pt"],
        ["fit", "--fit-samples", "0", "--out", "x.pt"],
        ["fit", "--device", "nope", "--out", "x.pt"],
        ["benchmark", "--ood", "svhn"],
        ["score", "--state", "x.pt"],
        ["fit", "--calibration", "0.1", "--calibration-folder", "x", "--out", "x.pt"],
    ],
)
def test_usage_errors_exit_2(args):
    code, _, err = line_ood(*args)
    assert code == 2
    assert "Traceback" not in err


# -- no torch before the arguments are parsed ----------------------------------------------------

PARSE_ONLY = """
import sys
from line_plugin.cli import main
try:
    main({args!r})
except SystemExit as e:
    print("exit", e.code)
heavy = sorted(m for m in ("torch", "timm", "pytorch_ood", "numpy", "PIL") if m in sys.modules)
print("imported", heavy)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["score", "--help"],
        ["fit", "--help"],
        ["benchmark", "--help"],
        ["fit", "--p-a"],
        ["score", "--state", "x.pt"],
        ["nope"],
    ],
)
def test_help_version_and_usage_errors_import_nothing_heavy(args):
    code = PARSE_ONLY.format(args=args)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2] in ("exit 0", "exit 2") and lines[-1] == "imported []"


def test_options_offer_the_librarys_own_tables():
    # one table each, torch-free (line_plugin.catalog, plugin.presets), no copy in the CLI
    from line_plugin import catalog, data, zoo
    from line_plugin.cli import build_parser
    from line_plugin.plugin.presets import PRESET_NAMES

    assert zoo.MODELS is catalog.MODELS and data.OOD_SETS is catalog.OOD_SETS
    commands = build_parser()._subparsers._group_actions[0].choices
    options = {
        (name, option): action
        for name, parser in commands.items()
        for action in parser._actions
        for option in action.option_strings
    }
    assert options["fit", "--preset"].choices == list(PRESET_NAMES)
    assert options["benchmark", "--ood"].choices == list(data.OOD_SETS)
    for command in ("benchmark", "fit", "score"):
        assert f"({', '.join(zoo.MODELS)})" in options[command, "--backbone"].help


# -- score: bad output paths fail before anything is loaded --------------------------------------


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            ["--report", "{tmp}/none/r.html"],
            "cannot write --report '{tmp}/none/r.html': its folder",
        ),
        (["--report", "{tmp}"], "cannot write --report '{tmp}': it is a folder"),
        (["--resume"], "--resume needs --out FILE"),
        (
            ["--out", "{tmp}/o.csv", "--report", "{tmp}/o.csv"],
            "--report and --out name the same file",
        ),
    ],
)
def test_bad_report_or_resume_is_one_line_before_the_state_is_read(tmp_path, extra, expected):
    # the state does not exist: the error about the options comes first
    args = ["score", "--state", str(tmp_path / "none.pt"), str(tmp_path)]
    code, out, err = line_ood(*args, *[a.format(tmp=tmp_path) for a in extra])
    assert code == 1 and out == ""
    assert err.startswith(f"line-ood: error: {expected.format(tmp=tmp_path)}")
    assert err.count("\n") == 1
