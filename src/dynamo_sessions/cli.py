"""``dynamo-sessions`` command line (also ``python -m dynamo_sessions``).

Commands: create-table, delete-table, describe, gc, stats, demo.  Every command takes
``--table-name``, ``--endpoint-url``, ``--region``, ``--profile`` and ``--config``; options come
from flags, then environment variables, then the config file, then defaults (``cli_config``).
Failures the user can fix end with a message saying how and a distinct exit code, never a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    WaiterError,
)

from . import table
from .cli_config import COMMON, CONFIG_ENV, Option, OptionError, Settings, make_client, resolve
from .config import GC_MODES, LOCKING_MODES, SessionConfig
from .errors import ConfigError, GcThrottled, TableExists, TableNotFound

EXIT_OK = 0
EXIT_FAILED = 1
"""DynamoDB refused the request for another reason, or delete-table was not confirmed."""
EXIT_USAGE = 2
"""Bad option, config file or command line (argparse's own code)."""
EXIT_NO_TABLE = 3
EXIT_CREDENTIALS = 4
"""No or rejected credentials, unknown profile, no region."""
EXIT_THROTTLED = 5
EXIT_UNREACHABLE = 6
EXIT_TABLE_EXISTS = 7
EXIT_INTERRUPTED = 130

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "Throttling", "TooManyRequestsException",
})
ACCESS_CODES = frozenset({
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "ExpiredTokenException", "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
})

@dataclasses.dataclass(frozen=True)
class Command:
    help: str
    description: str
    options: tuple[Option, ...]
    run: Callable[[Settings], int]


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(f"dynamo-sessions: {text}", file=sys.stderr, flush=True)


def _session_config(settings: Settings) -> SessionConfig:
    return SessionConfig(table_name=settings.table_name,
                         hash_key=settings.values.get("hash_key") or "id")


# --- create-table / delete-table / describe ---------------------------------------------------


def _billing(description: dict[str, Any]) -> str:
    if description["billing_mode"] == "PAY_PER_REQUEST":
        return "on demand (PAY_PER_REQUEST)"
    return (f"provisioned, {description['read_capacity']} RCU / "
            f"{description['write_capacity']} WCU")


def _ttl(description: dict[str, Any]) -> str:
    if description["ttl_status"] in ("ENABLED", "ENABLING"):
        return f"{description['ttl_status']} on {description['ttl_attribute']!r}"
    return (f"{description['ttl_status']} - expired sessions stay until `dynamo-sessions gc` "
            "removes them (enable TTL on 'expires' to have DynamoDB delete them for free)")


def run_create_table(settings: Settings) -> int:
    if (settings.read_capacity is None) != (settings.write_capacity is None):
        _err("give both --read-capacity and --write-capacity (provisioned), or neither "
             "(on demand)")
        return EXIT_USAGE
    client = make_client(settings)
    description = table.create_table(client, _session_config(settings), settings.read_capacity,
                                     settings.write_capacity)
    if settings.json:
        _out(json.dumps(description, indent=2))
    else:
        _out(f"created table {description['table_name']}: {description['status']}, "
             f"{_billing(description)}, TTL {_ttl(description)}")
    return EXIT_OK


def _confirm(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline().strip()


def run_delete_table(settings: Settings) -> int:
    name = settings.table_name
    if not settings.yes:
        if not sys.stdin.isatty():
            _err(f"refusing to delete table {name!r} without --yes (stdin is not a terminal)")
            return EXIT_USAGE
        answer = _confirm(f"Delete table {name!r} and every session in it? "
                          f"Type the table name to confirm: ")
        if answer != name:
            _err(f"not deleted: confirmation {answer!r} does not match {name!r}")
            return EXIT_FAILED
    table.delete_table(make_client(settings), _session_config(settings))
    _out(f"deleted table {name}")
    return EXIT_OK


def run_describe(settings: Settings) -> int:
    description = table.describe_table(make_client(settings), _session_config(settings))
    if settings.json:
        _out(json.dumps(description, indent=2))
        return EXIT_OK
    rows = [
        ("table", description["table_name"]),
        ("status", description["status"]),
        ("hash key", description["hash_key"]),
        ("billing", _billing(description)),
        ("TTL", _ttl(description)),
        ("items", f"{description['item_count']:,} (DynamoDB updates this about every 6 hours)"),
        ("size", f"{description['size_bytes']:,} bytes"),
    ]
    for label, value in rows:
        _out(f"{label:<9} {value}")
    return EXIT_OK


# --- gc ---------------------------------------------------------------------------------------


def _item_count(client: Any, config: SessionConfig) -> int:
    """DynamoDB's approximate item count for the progress bar (0 when describe is denied)."""
    try:
        return int(table.describe_table(client, config)["item_count"])
    except TableNotFound:
        raise
    except ClientError:
        return 0


def run_gc(settings: Settings) -> int:
    from .progress import GcProgress

    config = _session_config(settings)
    client = make_client(settings, max_pool_connections=settings.segments
                         + settings.batch_size + 2)
    bar = GcProgress(sys.stderr, _item_count(client, config)) if sys.stderr.isatty() else None
    collector = table.GarbageCollector(client, config)
    try:
        result = collector.run(
            segments=settings.segments, batch_size=settings.batch_size,
            delay_seconds=settings.delay_seconds, mode=settings.mode,
            max_wcu_per_second=settings.max_wcu_per_second, dry_run=settings.dry_run,
            progress=bar.update if bar is not None else None,
        )
    except table.GcInterrupted as exc:
        if bar is not None:
            bar.update(exc.result, force=True)
            bar.finish()
        _err(f"gc interrupted: {exc.result.summary()}")
        _err("nothing unexpired was deleted; run the same gc again to finish")
        return EXIT_INTERRUPTED
    except BaseException:
        if bar is not None:
            bar.finish()  # the error message starts on a line of its own
        raise
    if bar is not None:
        bar.update(result, force=True, done=True)
        bar.finish()
    if settings.json:
        _out(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        _out(f"gc {settings.table_name}: {result.summary()}")
    return EXIT_OK


# --- stats ------------------------------------------------------------------------------------


def run_stats(settings: Settings) -> int:
    from .stats import format_stats, table_stats

    config = _session_config(settings)
    client = make_client(settings)
    try:
        description: dict[str, Any] | None = table.describe_table(client, config)
    except TableNotFound:
        raise
    except ClientError:  # describe denied: sample only
        description = None
    stats = table_stats(client, config, settings.sample_size, settings.changed_share,
                        consistent_read=not settings.eventually_consistent,
                        description=description)
    _out(json.dumps(stats, indent=2) if settings.json else format_stats(stats))
    return EXIT_OK


# --- demo -------------------------------------------------------------------------------------


def run_demo(settings: Settings) -> int:
    if settings.serve:
        try:  # imported only here: the web demo needs gunicorn and the web adapters
            serve = importlib.import_module("dynamo_sessions.webdemo").serve
        except (ImportError, AttributeError) as exc:
            _err(f"demo --serve needs the web demo (dynamo_sessions.webdemo), which this "
                 f"installation does not have: {exc}")
            return EXIT_FAILED
        code: int = serve(settings.endpoint_url, host=settings.host, port=settings.port,
                          workers=settings.workers, threads=settings.threads,
                          locking=settings.locking,
                          max_lock_wait_seconds=settings.max_lock_wait_seconds)
        return code
    from . import demo

    modes = tuple(settings.mode) if settings.mode else LOCKING_MODES
    rows = demo.run(settings.endpoint_url, settings.users, settings.requests, settings.tabs,
                    modes)
    if settings.json:
        _out(json.dumps(rows, indent=2))
    else:
        _out(demo.format_table(rows))  # the table ends with its legend
    return EXIT_OK


JSON = Option("--json", bool, False, "print JSON for machines", in_file=False)
HASH_KEY = Option("--hash-key", str, "id", "the table's hash key (the PHP handler's hash_key)")

COMMANDS: dict[str, Command] = {
    "create-table": Command(
        "create the sessions table (on demand or provisioned), wait until ACTIVE, enable TTL",
        "Create the sessions table: on demand by default, provisioned with --read-capacity and "
        "--write-capacity (the guide's createSessionsTable(5, 5)).  Waits until the table is "
        "ACTIVE and turns on TTL on 'expires', so DynamoDB deletes expired sessions by itself.",
        (HASH_KEY,
         Option("--read-capacity", int, None, "provisioned read capacity units", minimum=1),
         Option("--write-capacity", int, None, "provisioned write capacity units", minimum=1),
         JSON),
        run_create_table,
    ),
    "delete-table": Command(
        "delete the sessions table and every session in it",
        "Delete the sessions table.  Asks for the table name on a terminal; without a terminal "
        "it refuses unless --yes is given.",
        (Option("--yes", bool, False, "delete without asking", in_file=False),),
        run_delete_table,
    ),
    "describe": Command(
        "show the table's status, billing, TTL, item count and size",
        "Status, billing mode and capacity, TTL, item count and size of the sessions table.",
        (JSON,),
        run_describe,
    ),
    "gc": Command(
        "delete expired sessions (the guide's off-peak cron job)",
        "Garbage collection: a key-only Scan for expired, unlocked sessions, then deletes.  "
        "Run it off-peak from cron.  The default mode deletes each item on condition it is "
        "still expired and unlocked (a session refreshed meanwhile is kept); --mode batch is the "
        "PHP handler's BatchWriteItem path.  Ctrl-C stops it cleanly (exit 130); running it "
        "again finishes the job.  A progress bar on a terminal, one summary line otherwise.",
        (HASH_KEY,
         Option("--segments", int, 1, "parallel Scan segments", minimum=1, maximum=1_000_000),
         Option("--batch-size", int, 25,
                "keys per BatchWriteItem (batch mode) or deletes in flight (conditional mode)",
                minimum=1, maximum=25),
         Option("--delay-seconds", float, 0.0,
                "pause after every service operation (the guide's gc_operation_delay)",
                minimum=0),
         Option("--max-wcu-per-second", float, None,
                "write budget, enforced from the consumed capacity DynamoDB reports",
                minimum=0.001),
         Option("--mode", str, "conditional", "how to delete", choices=GC_MODES),
         Option("--dry-run", bool, False, "scan and count only, delete nothing"),
         JSON),
        run_gc,
    ),
    "stats": Command(
        "sample the table: session sizes, share over 1 KB, projected RCU/WCU per mode",
        "Reads a bounded sample of the table (a Scan with Limit) and prints the distribution of "
        "item sizes, the share of sessions over 1 KB (the guide: keep them under), and the "
        "capacity units each locking mode would spend per operation and per 1M requests.",
        (Option("--sample-size", int, 1000, "items to sample at most", minimum=1),
         Option("--changed-share", float, 0.25,
                "share of requests that change the session (for the projection)",
                minimum=0, maximum=1),
         Option("--eventually-consistent", bool, False,
                "project eventually consistent reads (consistent_read=False)"),
         JSON),
        run_stats,
    ),
    "demo": Command(
        "run a session workload under each locking mode and print what it cost",
        "Simulated users plus concurrent same-session requests ('tabs') under each locking "
        "mode, on an embedded moto server unless --endpoint-url is given (the demo makes its "
        "own tables).  --serve starts the web demo instead.",
        (Option("--users", int, 8, "users, one session each", minimum=0),
         Option("--requests", int, 20, "requests per user and per tab", minimum=1),
         Option("--tabs", int, 8, "concurrent requests sharing one session", minimum=0),
         Option("--mode", str, None, "locking mode(s) to run (repeatable; default: all)",
                choices=LOCKING_MODES, multiple=True),
         JSON,
         Option("--serve", bool, False, "serve the web demo (gunicorn) instead", in_file=False),
         Option("--host", str, "127.0.0.1", "--serve: address to listen on"),
         Option("--port", int, 8000, "--serve: port", minimum=0, maximum=65535),
         Option("--workers", int, 2, "--serve: worker processes", minimum=1),
         Option("--threads", int, 4, "--serve: threads per worker", minimum=1),
         Option("--locking", str, "optimistic", "--serve: locking mode of the web demo",
                choices=LOCKING_MODES),
         Option("--max-lock-wait-seconds", float, 2.0,
                "--serve: longest a request waits for a session lock before its 503",
                minimum=0)),
        run_demo,
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamo-sessions", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 ok, 1 failed, 2 usage, 3 table missing, 4 credentials/region, "
               "5 throttled, 6 endpoint unreachable, 7 table exists, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.description)
        common = sub.add_argument_group("options of every command")
        for option in COMMON:
            option.add_to(common)
        common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                            help=f"TOML (Python 3.11+) or JSON config file (env ${CONFIG_ENV})")
        for option in command.options:
            option.add_to(sub)
    return parser


def _setup_logging(settings: Settings) -> None:
    if settings.sources.get("log_level") == "default":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("dynamo_sessions")
    logger.addHandler(handler)
    logger.setLevel(settings.log_level)


def _where(settings: Settings) -> str:
    where = settings.endpoint_url or f"region {settings.region or '(default)'}"
    return f" at {where}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see ``EXIT_*``)."""
    try:
        args = vars(_parser().parse_args(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    name = args.pop("command")
    command = COMMANDS[name]
    try:
        settings = resolve(name, args, command.options,
                           {key: cmd.options for key, cmd in COMMANDS.items()})
    except OptionError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    _setup_logging(settings)
    table_name = settings.table_name
    try:
        return command.run(settings)
    except TableNotFound:
        _err(f"table {table_name!r} does not exist{_where(settings)}: create it with "
             f"`dynamo-sessions create-table --table-name {table_name}`")
        return EXIT_NO_TABLE
    except TableExists:
        _err(f"table {table_name!r} already exists{_where(settings)}: see it with "
             f"`dynamo-sessions describe --table-name {table_name}`")
        return EXIT_TABLE_EXISTS
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError):
        _err("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
             "use --profile / AWS_PROFILE with a profile of ~/.aws/credentials (for DynamoDB "
             "Local any values will do)")
        return EXIT_CREDENTIALS
    except ProfileNotFound as exc:
        _err(f"{exc}: check --profile / AWS_PROFILE against ~/.aws/config")
        return EXIT_CREDENTIALS
    except NoRegionError:
        _err("no AWS region: give --region or set AWS_REGION (or a region in your profile)")
        return EXIT_CREDENTIALS
    except (ConfigError, ValueError) as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except GcThrottled as exc:
        _err(str(exc))
        return EXIT_THROTTLED
    except (ConnectionError, HTTPClientError) as exc:
        _err(f"cannot reach DynamoDB{_where(settings)}: {exc}. Check --endpoint-url (is "
             "DynamoDB Local running?) and the network")
        return EXIT_UNREACHABLE
    except WaiterError as exc:
        _err(f"gave up waiting for table {table_name!r}: {exc}")
        return EXIT_FAILED
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code in THROTTLING_CODES:
            _err(f"throttled by DynamoDB ({code}) after botocore's retries: spread the work - "
                 "gc --max-wcu-per-second N / --delay-seconds S, run off-peak, or raise the "
                 "table's capacity")
            return EXIT_THROTTLED
        if code in ACCESS_CODES:
            _err(f"DynamoDB rejected the credentials ({code}: {message}): check "
                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile, and the IAM policy")
            return EXIT_CREDENTIALS
        if code == "ResourceNotFoundException":
            _err(f"table {table_name!r} does not exist{_where(settings)}: create it with "
                 f"`dynamo-sessions create-table --table-name {table_name}`")
            return EXIT_NO_TABLE
        _err(f"DynamoDB refused the request: {code}: {message}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
