"""``dynamo-sessions`` command line (also ``python -m dynamo_sessions``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .config import LOCKING_MODES

FOOTER = (
    "Calls and units are those DynamoDB reported (ReturnConsumedCapacity). moto reports a flat "
    "1 WCU / 0.5 RCU per call;\nfor exact units run against DynamoDB Local: "
    "dynamo-sessions demo --endpoint-url http://127.0.0.1:8000\n"
    "Pessimistic reads are conditional UpdateItems (they take the lock), so they count as "
    "write calls."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynamo-sessions", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run a session workload under each locking mode and print what it cost",
        description="Simulated users plus concurrent same-session requests ('tabs') under each "
        "locking mode, on an embedded moto server unless --endpoint-url is given.",
    )
    demo.add_argument("--endpoint-url", help="DynamoDB endpoint (default: embedded moto server)")
    demo.add_argument("--users", type=int, default=8, help="users, one session each (8)")
    demo.add_argument("--requests", type=int, default=20,
                      help="requests per user and per tab (20)")
    demo.add_argument("--tabs", type=int, default=8,
                      help="concurrent requests sharing one session (8)")
    demo.add_argument("--mode", choices=LOCKING_MODES, action="append",
                      help="locking mode(s) to run (default: all)")
    demo.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from . import demo

        if min(args.users, args.requests, args.tabs) < 0 or args.requests == 0:
            print("dynamo-sessions: --users/--tabs must be >= 0 and --requests >= 1",
                  file=sys.stderr)
            return 2
        modes = tuple(args.mode) if args.mode else LOCKING_MODES
        rows = demo.run(args.endpoint_url, args.users, args.requests, args.tabs, modes)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(demo.format_table(rows))
            print()
            print(FOOTER)
        return 0
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
