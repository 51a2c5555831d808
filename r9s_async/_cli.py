"""The ``r9s-usage`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, timedelta

from . import __version__
from ._sync_client import Client

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .testing import TEST_API_KEY, FakeR9sAPI

    end = date.today()
    start = end - timedelta(days=30)
    api = FakeR9sAPI(mode="events")
    with api.serve_in_thread() as base_url, Client(TEST_API_KEY, base_url=base_url) as client:
        report = client.usage(start, end)
    print(
        f"usage {start} .. {end} from the fake API on loopback: "
        f"{len(report.records)} records, {report.total_tokens:,} tokens"
    )
    for model, tokens in report.tokens_by_model().items():
        print(f"  {model:<20} {tokens:>15,}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``r9s-usage``."""
    parser = argparse.ArgumentParser(
        prog="r9s-usage", description="r9s usage from the command line"
    )
    parser.add_argument("--version", action="version", version=f"r9s_async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fetch a month from a local fake API; no key needed")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
