"""Running ``line-ood`` in-process, for the CLI tests."""

from typing import Tuple

from line_plugin.cli import main


def run(capsys, *args: str) -> Tuple[int, str, str]:
    """:return: exit status, stdout and stderr of ``line-ood ARGS``"""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse: --help and usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
