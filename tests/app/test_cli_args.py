"""
The ``line-ood`` command line without the shared data: the console script, the help and usage
errors.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run

# -- help ----------------------------------------------------------------------------------------


def test_console_script_help():
    script = shutil.which("line-ood") or str(Path(sys.executable).parent / "line-ood")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("benchmark", "fit", "score"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["benchmark", "fit", "score"])
def test_command_help_has_examples(capsys, command):
    code, out, _ = run(capsys, command, "--help")
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
    ],
)
def test_usage_errors_exit_2(capsys, args):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert "Traceback" not in err
