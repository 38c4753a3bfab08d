"""Typed errors: every failure a caller may want to handle has its own class.

All derive from :class:`DynamoSessionsError`; the ones caused by bad input also derive from the
builtin a caller would expect (``ValueError`` / ``TypeError``), so ``except ValueError``
still works.
"""

from __future__ import annotations


class DynamoSessionsError(Exception):
    """Base class of every error raised by dynamo-sessions."""


class ConfigError(DynamoSessionsError, ValueError):
    """An option is unknown, of the wrong type or out of range."""


class SessionEncodeError(DynamoSessionsError, TypeError):
    """A session value cannot be stored (unsupported type, naive datetime, int out of range).

    ``key`` is the path of the offending value, e.g. ``"cart[2].added"``.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class CorruptSession(DynamoSessionsError, ValueError):
    """Stored session bytes cannot be decoded (truncated, wrong header, garbage, wrong types).

    Raised instead of returning an empty session, so that a broken item is never silently
    replaced by a fresh one.
    """


class SessionTooLarge(DynamoSessionsError, ValueError):
    """The item would exceed DynamoDB's 400 KB item limit; nothing was written."""

    def __init__(self, message: str, size_bytes: int = 0, limit_bytes: int = 0) -> None:
        super().__init__(message)
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class SessionBusy(DynamoSessionsError):
    """Other requests kept the session busy past this request's bounded wait: nothing was
    read or nothing was written.  The web adapters answer ``503`` with ``Retry-After``
    (``lock_timeout_status``); the client may simply retry."""


class LockTimeout(SessionBusy):
    """The session lock could not be acquired within ``max_lock_wait_seconds``.

    No session data is returned and no lock is touched: the request should fail (HTTP 503),
    never proceed with an empty session.
    """


class DynamoUnavailable(DynamoSessionsError):
    """DynamoDB did not answer, or kept refusing (throttling, 5xx), past botocore's retries.

    The call may or may not have been applied; the store's other promises hold (a failed save
    leaves the stored session as it was or as this call left it, and its lock is released).
    The botocore exception is the ``__cause__``.
    """


class LockLost(DynamoSessionsError):
    """This request's lock lease expired and another request took the session over.

    The write was refused so that the newer request's data is not overwritten.
    """


class SessionConflict(SessionBusy):
    """An optimistic write kept losing races after its bounded number of merge retries (or,
    after a lost answer, could not tell whether it was applied); nothing more was written."""


class SessionGone(DynamoSessionsError):
    """The session was deleted (logout, expiry, GC) while this request held it.

    Raised by writes that must not resurrect a deleted session (Django's ``UpdateError``).
    """


class SessionMoved(SessionGone):
    """The session was moved to a new id (login: ``regenerate()``, Django's ``cycle_key``).

    Its old id is never served again; a request still carrying it gets neither the session
    nor a cookie-deleting answer (the client already holds the new id).
    """


class SessionNotLoaded(DynamoSessionsError, TypeError):
    """The data of an async session used before it was loaded (``await session.load()``)."""


class NotACounter(DynamoSessionsError, TypeError):
    """``increment`` on a value that is not an int or float, or by a non-number."""


class SessionReadOnly(DynamoSessionsError, TypeError):
    """A change to a session that cannot be saved (an ASGI WebSocket's: change it over HTTP)."""


class SessionExists(DynamoSessionsError):
    """A create-only write found an item under that id already (Django's ``CreateError``)."""


class TableNotFound(DynamoSessionsError):
    """The sessions table does not exist: create it with ``dynamo-sessions create-table``."""

    def __init__(self, table_name: str) -> None:
        super().__init__(
            f"DynamoDB table {table_name!r} does not exist: create it with "
            f"`dynamo-sessions create-table --table-name {table_name}`"
        )
        self.table_name = table_name


class TableExists(DynamoSessionsError):
    """``create_table`` found a table of that name already."""


class GcThrottled(DynamoSessionsError):
    """BatchWriteItem kept returning UnprocessedItems: the table's write capacity is exhausted."""


class OptionError(ConfigError):
    """A bad command-line option, environment variable or config file of the command line; the
    message says which and what is expected."""


class LocalServerUnavailable(DynamoSessionsError, RuntimeError):
    """A local DynamoDB server for tests (``dynamo_sessions.testing``) could not be started."""


class DynamoDBLocalUnavailable(LocalServerUnavailable):
    """Java 17+ or the DynamoDB Local jar is missing and could not be installed, or DynamoDB
    Local did not start."""
