"""
``line-ood``: the command line of :mod:`line_plugin`.

Sub-commands, one module each:

- ``line-ood benchmark`` (:mod:`.benchmark`): LINe against pytorch-ood's post-hoc detectors on
  the local CIFAR-10 benchmark, printed as AUROC and FPR95 tables;
- ``line-ood fit`` (:mod:`.fit`): fit LINe for a backbone on a training set and save the state
  (with the backbone's name and the class names) to a file;
- ``line-ood score`` (:mod:`.score`, rows written by :mod:`.rows`): score image files with a
  saved state, as CSV or JSON, and optionally an HTML page (:mod:`line_plugin.report_html`).

:mod:`.common` holds what they share: options and argument types. ``fit`` and ``score`` are thin
shells over :class:`line_plugin.Pipeline`: arguments in, the object's calls, output out; no
``argparse.Namespace`` goes below the CLI's own modules. Nothing heavy is imported before the
arguments are parsed. Errors from the package
(:class:`ValueError`, :class:`FileNotFoundError`, :class:`KeyError`, ...) end in one line
``line-ood: error: ...`` on stderr and exit status 1; argparse errors exit with 2; ``score``
exits with 3 when it skipped unreadable files, and an interrupted run with 130.
"""

import argparse
import sys
from typing import Optional, Sequence

from .. import __version__
from ..messages import first_line
from . import benchmark, fit, score
from .common import PROG, USER_ERRORS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """:return: the ``line-ood`` argument parser with its sub-commands"""
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="LINe out-of-distribution detection (Ahn et al., CVPR 2023) for timm "
        "backbones, with pytorch-ood.",
        epilog="examples:\n  line-ood benchmark\n  line-ood fit --backbone resnet18 --out s.pt"
        "\n  line-ood score --state s.pt images/\n\n'line-ood COMMAND --help' for more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (benchmark, fit, score):
        command.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run ``line-ood``.

    :param argv: arguments (default: ``sys.argv[1:]``)
    :return: exit status: 0; 3 from ``score`` when unreadable files were skipped; 1 after an
        error; 130 when interrupted (argparse exits with 2 on bad arguments)
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"{PROG}: error: {first_line(e)}", file=sys.stderr)
        return 1
