"""The ``msgstatus`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msgstatus",
        description="Ask messaging providers what happened to a message.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in (
        ("get", "look up the status of handles"),
        ("check", "decide for each handle whether it may be resent"),
        ("watch", "follow handles until their status is final"),
        ("demo", "run the library against the built-in loopback emulators"),
    ):
        sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    print(f"msgstatus {args.command}: not implemented yet", file=sys.stderr)
    return 2
