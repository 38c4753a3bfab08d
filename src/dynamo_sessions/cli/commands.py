"""The commands of ``dynamo-sessions``: what each does, and its options (``COMMANDS``).

Each command works on the ``SessionConfig`` of every session option it resolved (flag,
environment, config file or default: ``options.session_config``) and on a client from the one
client builder (``transport.client.build_client``) with that config's endpoint, region, profile,
timeouts and retries.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from ..config import GC_MODES, LOCKING_MODES, SessionConfig
from ..ops import gc, table
from .options import Option, Settings, session_config

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


@dataclasses.dataclass(frozen=True)
class Command:
    help: str
    description: str
    options: tuple[Option, ...]
    run: Callable[[Settings], int]


def say(text: str = "") -> None:
    print(text, flush=True)


def say_error(text: str) -> None:
    print(f"dynamo-sessions: {text}", file=sys.stderr, flush=True)


COMMAND_ONLY = frozenset({
    "profile", "log_level", "config",  # where the AWS credentials and the logs go
    "read_capacity", "write_capacity", "json", "yes",  # table admin and output
    "max_wcu_per_second", "dry_run",  # gc's budget and its counting run
    "sample_size", "changed_share",  # the stats sample and projection
    "users", "requests", "tabs",  # the demo workload
    "serve", "server", "host", "port", "workers", "threads",  # the served demo
})
"""Options that are not ``SessionConfig`` options (every other option is one, by name)."""


def make_client(settings: Settings, **overrides: Any) -> Any:
    """The command's client: ``dynamo_sessions.cli.make_client``, looked up when called (so
    that a test may replace it there)."""
    from .. import cli

    return cli.make_client(settings, **overrides)


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
        say_error("give both --read-capacity and --write-capacity (provisioned), or neither "
             "(on demand)")
        return EXIT_USAGE
    client = make_client(settings)
    description = table.create_table(client, session_config(settings), settings.read_capacity,
                                     settings.write_capacity)
    if settings.json:
        say(json.dumps(description, indent=2))
    else:
        say(f"created table {description['table_name']}: {description['status']}, "
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
            say_error(f"refusing to delete table {name!r} without --yes (stdin is not a terminal)")
            return EXIT_USAGE
        answer = _confirm(f"Delete table {name!r} and every session in it? "
                          f"Type the table name to confirm: ")
        if answer != name:
            say_error(f"not deleted: confirmation {answer!r} does not match {name!r}")
            return EXIT_FAILED
    table.delete_table(make_client(settings), session_config(settings))
    say(f"deleted table {name}")
    return EXIT_OK


def run_describe(settings: Settings) -> int:
    description = table.describe_table(make_client(settings), session_config(settings))
    if settings.json:
        say(json.dumps(description, indent=2))
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
        say(f"{label:<9} {value}")
    return EXIT_OK


# --- gc ---------------------------------------------------------------------------------------


def _item_count(client: Any, config: SessionConfig) -> int:
    """DynamoDB's approximate item count for the progress bar (0 when describe is denied)."""
    try:
        return int(table.describe_table(client, config)["item_count"])
    except ClientError:
        return 0


def run_gc(settings: Settings) -> int:
    from .progress import GcProgress

    config = session_config(settings)
    client = make_client(settings, max_pool_connections=config.gc_segments
                         + config.gc_batch_size + 2)
    bar = GcProgress(sys.stderr, _item_count(client, config)) if sys.stderr.isatty() else None
    collector = gc.GarbageCollector(client, config)
    try:
        result = collector.run(  # segments, batch size, delay and mode: from the config
            max_wcu_per_second=settings.max_wcu_per_second, dry_run=settings.dry_run,
            progress=bar.update if bar is not None else None,
        )
    except gc.GcInterrupted as exc:
        if bar is not None:
            bar.update(exc.result, force=True)
            bar.finish()
        say_error(f"gc interrupted: {exc.result.summary()}")
        say_error("nothing unexpired was deleted; run the same gc again to finish")
        return EXIT_INTERRUPTED
    except BaseException:
        if bar is not None:
            bar.finish()  # the error message starts on a line of its own
        raise
    if bar is not None:
        bar.update(result, force=True, done=True)
        bar.finish()
    if settings.json:
        say(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        say(f"gc {settings.table_name}: {result.summary()}")
    return EXIT_OK


# --- stats ------------------------------------------------------------------------------------


def run_stats(settings: Settings) -> int:
    from ..ops.stats import format_stats, table_stats

    config = session_config(settings)
    client = make_client(settings)
    try:
        description: dict[str, Any] | None = table.describe_table(client, config)
    except ClientError:  # describe denied: sample only
        description = None
    stats = table_stats(client, config, settings.sample_size, settings.changed_share,
                        consistent_read=config.consistent_read,
                        description=description)
    say(json.dumps(stats, indent=2) if settings.json else format_stats(stats))
    return EXIT_OK


# --- demo -------------------------------------------------------------------------------------


SERVER_EXTRA = "pip install 'dynamo-sessions[server]' (or -e \".[server]\" in the checkout)"


def run_demo(settings: Settings) -> int:
    modes = tuple(dict.fromkeys(settings.locking or ()))
    if settings.serve:
        if len(modes) > 1:
            say_error("demo --serve runs one locking mode: give --locking once")
            return EXIT_USAGE
        server = settings.server
        try:  # imported only here: the web demo needs Flask and gunicorn (or uvicorn)
            for needed in (server, "starlette") if server == "uvicorn" else (server,):
                if importlib.util.find_spec(needed) is None:
                    raise ImportError(f"No module named {needed!r}")
            serve = importlib.import_module("dynamo_sessions.demo.web").serve
        except (ImportError, AttributeError) as exc:
            say_error(f"demo --serve needs Flask and {server} ({exc}): {SERVER_EXTRA}")
            return EXIT_FAILED
        wait = settings.max_lock_wait_seconds  # unset: the served demo's own (2 s)
        code: int = serve(settings.endpoint_url, host=settings.host, port=settings.port,
                          workers=settings.workers, threads=settings.threads,
                          locking=modes[0] if modes else "optimistic", server=server,
                          **({} if wait is None else {"max_lock_wait_seconds": wait}))
        return code
    from ..demo import workload

    modes = modes or LOCKING_MODES
    rows = workload.run(settings.endpoint_url, settings.users, settings.requests, settings.tabs,
                        modes, session_config(settings))
    if settings.json:
        say(json.dumps(rows, indent=2))
    else:
        say(workload.format_table(rows))  # the table ends with its legend
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
        "still expired and unlocked (a session refreshed meanwhile is kept); --gc-mode batch is "
        "the "
        "PHP handler's BatchWriteItem path.  Ctrl-C stops it cleanly (exit 130); running it "
        "again finishes the job.  A progress bar on a terminal, one summary line otherwise.",
        (HASH_KEY,
         Option("--gc-segments", int, 1, "parallel Scan segments", minimum=1,
                maximum=1_000_000),
         Option("--gc-batch-size", int, 25,
                "keys per BatchWriteItem (batch mode) or deletes in flight (conditional mode)",
                minimum=1, maximum=25),
         Option("--gc-operation-delay-seconds", float, 0.0,
                "pause after every service operation (the guide's gc_operation_delay)",
                minimum=0),
         Option("--max-wcu-per-second", float, None,
                "write budget, enforced from the consumed capacity DynamoDB reports",
                minimum=0.001),
         Option("--gc-mode", str, "conditional",
                "conditional: keep a session refreshed since the scan; batch: the PHP "
                "handler's BatchWriteItem, which loses such a session", choices=GC_MODES),
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
         Option("--consistent-read", bool, True,
                "project strongly consistent reads; --no-consistent-read projects eventually "
                "consistent ones (half the read units)"),
         JSON),
        run_stats,
    ),
    "demo": Command(
        "run a session workload under each locking mode and print what it cost",
        "Simulated users plus concurrent same-session requests ('tabs') under each locking "
        "mode, on an embedded moto server unless --endpoint-url is given (the demo makes its "
        "own tables).  --serve starts the web demo instead (it needs the server extra: "
        "pip install 'dynamo-sessions[server]').",
        (Option("--users", int, 8, "users, one session each", minimum=0),
         Option("--requests", int, 20, "requests per user and per tab", minimum=1),
         Option("--tabs", int, 8, "concurrent requests sharing one session", minimum=0),
         Option("--locking", str, None,
                "locking mode to run, repeatable (default: all three); with --serve, the one "
                "mode of the web demo (default: optimistic)", choices=LOCKING_MODES,
                multiple=True),
         JSON,
         Option("--serve", bool, False, "serve the web demo (gunicorn) instead", in_file=False),
         Option("--server", str, "gunicorn",
                "--serve: gunicorn (the Flask demo) or uvicorn (its Starlette twin on the "
                "ASGI middleware)", choices=("gunicorn", "uvicorn")),
         Option("--host", str, "127.0.0.1", "--serve: address to listen on"),
         Option("--port", int, 8000, "--serve: port", minimum=0, maximum=65535),
         Option("--workers", int, 2, "--serve: worker processes", minimum=1),
         Option("--threads", int, 4, "--serve: threads per worker", minimum=1),
         Option("--max-lock-wait-seconds", float, None,
                "longest a request waits for a session lock before its 503 (default: 2 with "
                "--serve, which shows 503s in a short run; the library's 10 otherwise)",
                minimum=0)),
        run_demo,
    ),
}
