"""Command line: ``python -m vaebench {run,report,list}``. Wiring only; the logic lives in the library."""

from __future__ import annotations

import argparse
import sys

from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaebench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered estimators with their references")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    width = max(map(len, ESTIMATORS))
    for name, cls in ESTIMATORS.items():
        print(f"{name:<{width}}  [{cls.objective}] {cls.summary}  ({cls.reference})")
    return 0


COMMANDS = {"list": cmd_list}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VaebenchError as err:
        print(f"vaebench: error: {err}", file=sys.stderr)
        return 2
