"""``dynamo-sessions`` command line (also ``python -m dynamo_sessions``).

Flags, environment, config file and defaults are resolved by :mod:`.options`; the commands are
in :mod:`.commands`.  A flag that sets a ``SessionConfig`` option has that option's name
(``--gc-segments`` is ``gc_segments``) and reaches the ``SessionConfig`` the command works with;
the others are listed in ``COMMAND_ONLY``.  One flag name means one thing in every command.
Every ``SessionConfig`` option may also be set in the config file.  Failures end with a
message saying how to fix them and a distinct exit code (``EXIT_*``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
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

from ..errors import (
    ConfigError,
    DynamoUnavailable,
    GcThrottled,
    OptionError,
    TableExists,
    TableNotFound,
)
from ..transport.client import build_client
from ..transport.translate import THROTTLING_CODES, error_code
from .commands import (
    COMMAND_ONLY,
    COMMANDS,
    EXIT_CREDENTIALS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_TABLE,
    EXIT_OK,
    EXIT_TABLE_EXISTS,
    EXIT_THROTTLED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Command,
    say_error,
)
from .options import COMMON, CONFIG_ENV, SESSION_OPTIONS, Settings, resolve, session_config

__all__ = ["COMMANDS", "COMMAND_ONLY", "EXIT_CREDENTIALS", "EXIT_FAILED", "EXIT_INTERRUPTED",
           "EXIT_NO_TABLE", "EXIT_OK", "EXIT_TABLE_EXISTS", "EXIT_THROTTLED",
           "EXIT_UNREACHABLE", "EXIT_USAGE", "Command", "main", "make_client", "session_config"]

DESCRIPTION = """\
Sessions in DynamoDB: create the table, collect expired sessions, sample their sizes and
costs, run the demo.

Every command takes --table-name, --endpoint-url, --region-name, --profile, the client's
timeouts and retries, --config and --log-level.  Options come from flags, then environment
variables, then the config file, then the defaults.  Options named like a session store option
(--table-name, --hash-key, --gc-segments, --consistent-read, ...) set that option; config file
keys are the same names, and the config file takes every other session store option too.
Failures you can fix end with a message saying how and a distinct exit code, never a
traceback."""

ACCESS_CODES = frozenset({
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "ExpiredTokenException", "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
})


def make_client(settings: Settings, **overrides: Any) -> Any:
    """The client of a command: the one client builder on the command's ``SessionConfig``
    (endpoint, region, profile, timeouts, retries; ``overrides`` as ``build_client`` takes
    them), on a boto3 session of its own."""
    import boto3

    config = session_config(settings)
    # a session of its own: credentials and profile as the environment says now
    return build_client(config, boto3.Session(profile_name=config.profile_name), **overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamo-sessions", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 ok, 1 failed, 2 usage, 3 table missing, 4 credentials/region, "
               "5 throttled, 6 endpoint unreachable, 7 table exists, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.description)
        session = sub.add_argument_group("session options (named as in SessionConfig)")
        own = sub.add_argument_group("options of the command line")
        own.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                         help=f"TOML (Python 3.11+) or JSON config file (env ${CONFIG_ENV})")
        for option in (*COMMON, *command.options):
            option.add_to(session if option.dest in SESSION_OPTIONS else own)
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
    where = settings.endpoint_url or f"region {settings.region_name or '(default)'}"
    return f" at {where}"


def _unavailable(cause: BaseException | None, settings: Settings) -> int:
    """The message and exit code of a call botocore gave up on (``cause``: its last error)."""
    code = error_code(cause) if cause is not None else ""
    if code in THROTTLING_CODES:
        say_error(f"throttled by DynamoDB ({code}) after botocore's retries: spread the work - "
             "gc --max-wcu-per-second N / --gc-operation-delay-seconds S, run off-peak, or "
             "raise the table's capacity")
        return EXIT_THROTTLED
    if isinstance(cause, (ConnectionError, HTTPClientError)):
        say_error(f"cannot reach DynamoDB{_where(settings)}: {cause}. Check --endpoint-url (is "
             "DynamoDB Local running?) and the network")
        return EXIT_UNREACHABLE
    say_error(f"DynamoDB kept failing{_where(settings)} past botocore's retries ({code or cause}): "
         "try again later (--boto-max-attempts, --read-timeout-seconds set how hard it tries)")
    return EXIT_FAILED


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
        say_error(f"error: {exc}")
        return EXIT_USAGE
    _setup_logging(settings)
    table_name = settings.table_name
    try:
        return command.run(settings)
    except TableNotFound:
        say_error(f"table {table_name!r} does not exist{_where(settings)}: create it with "
             f"`dynamo-sessions create-table --table-name {table_name}`")
        return EXIT_NO_TABLE
    except TableExists:
        say_error(f"table {table_name!r} already exists{_where(settings)}: see it with "
             f"`dynamo-sessions describe --table-name {table_name}`")
        return EXIT_TABLE_EXISTS
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError):
        say_error("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
             "use --profile / AWS_PROFILE with a profile of ~/.aws/credentials (for DynamoDB "
             "Local any values will do)")
        return EXIT_CREDENTIALS
    except ProfileNotFound as exc:
        say_error(f"{exc}: check --profile / AWS_PROFILE against ~/.aws/config")
        return EXIT_CREDENTIALS
    except NoRegionError:
        say_error("no AWS region: give --region-name or set AWS_REGION (or a region in your "
             "profile)")
        return EXIT_CREDENTIALS
    except (ConfigError, ValueError) as exc:
        say_error(f"error: {exc}")
        return EXIT_USAGE
    except GcThrottled as exc:
        say_error(str(exc))
        return EXIT_THROTTLED
    except DynamoUnavailable as exc:  # botocore gave up (transport.translate)
        return _unavailable(exc.__cause__, settings)
    except (ConnectionError, HTTPClientError) as exc:
        return _unavailable(exc, settings)
    except WaiterError as exc:
        say_error(f"gave up waiting for table {table_name!r}: {exc}")
        return EXIT_FAILED
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code in ACCESS_CODES:
            say_error(f"DynamoDB rejected the credentials ({code}: {message}): check "
                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile, and the IAM "
                 "policy")
            return EXIT_CREDENTIALS
        say_error(f"DynamoDB refused the request: {code}: {message}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say_error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
