"""The session item: its attributes, one request's view of it (:class:`LoadedSession`), and
the pure rules that read and check items (no I/O).

Layout, compatible with the PHP handler's: hash key ``<session_name>_<session_id>``, ``data``
binary, ``expires`` epoch seconds (the TTL attribute); pessimistic locking adds ``lock``,
``lock_until_ms`` and ``prior_expires``, optimistic versioning ``version`` and ``writes``; a
session moved to a new id leaves a data-less ``moved`` marker.
"""

from __future__ import annotations

import dataclasses
import decimal
from typing import Any

from .. import _core
from ..config import MAX_LIFETIME_SECONDS
from ..errors import ConfigError, CorruptSession, NotACounter, SessionTooLarge
from ..merge import Number, is_number
from .ids import log_id

DATA = "data"
EXPIRES = "expires"
LOCK = "lock"
LOCK_UNTIL_MS = "lock_until_ms"
PRIOR_EXPIRES = "prior_expires"
"""While locked: the ``expires`` the item had before the lock was taken (NULL: none), so that
a lock take whose answer was lost, or one that takes over a crashed holder's lock, still
tells an expired session from a live one (and gives that expiry back); removed with the lock."""
VERSION = "version"
MOVED = "moved"
MOVED_MARKER_SECONDS = 300
"""How long the data-less marker a moved session leaves at its old id lives: long enough for
the requests in flight at login, which still carry the old cookie, to learn that it moved."""
WRITES = "writes"
"""Optimistic mode: the tokens of the last writes, newest first, ``_WRITE_TOKEN_BYTES`` each;
entry ``i`` made version ``version - i``.  A write whose answer was lost finds its own token
there on retry instead of merging and writing again."""

_WRITE_TOKEN_BYTES = 4
_WRITE_HISTORY = 4  # entries kept: a lost write is recognised after up to 3 writes by others
_LOCK_TOKEN_BYTES = 22  # secrets.token_urlsafe(16)
_LOCK_BYTES = (len(LOCK) + _LOCK_TOKEN_BYTES + len(LOCK_UNTIL_MS)
               + _core.number_size("9" * 13)  # epoch milliseconds until the year 2286
               + len(PRIOR_EXPIRES) + _core.number_size("9" * 10))

@dataclasses.dataclass
class LoadedSession:
    """One request's view of a session: the data, and what is needed to save it cheaply."""

    session_id: str
    key: str
    data: dict[str, Any]
    payload: bytes | None = None
    """The stored ``data`` bytes as read (None: nothing stored); an equal payload is not
    rewritten."""
    expires: int | None = None
    version: int | None = None
    lock_token: str | None = None
    lock_until_ms: int | None = None
    """This request's lease ends then (its own clock), while it holds the lock."""
    writes: bytes = b""
    """The stored write tokens (optimistic mode), as read."""
    item_exists: bool = False
    """An item is stored under the key (possibly a lock-only or expired one)."""
    lock_wait_seconds: float = 0.0
    keep_empty: bool = False
    """Save emptied data as an empty session instead of deleting the item (Django's contract:
    only ``delete()`` removes a session)."""
    increments: dict[str, Number] = dataclasses.field(default_factory=dict)
    """Deltas added by :meth:`increment` since the last write: merged as deltas, never lost."""
    moved: bool = False
    """The item is the marker a session moved to a new id leaves behind (never served)."""
    lifetime_seconds: int | None = None
    """How long the session lives after its next write (``None``: the config's
    ``session_lifetime_seconds``); set by ``load``, replaced by ``save(lifetime_seconds=)``."""

    @property
    def existed(self) -> bool:
        """A live session with data was found."""
        return self.payload is not None

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent); return the new value.

        No concurrent request can lose the delta: a pessimistic lock serialises it; an
        optimistic write (and in ``locking="none"`` the versioned write a session holding a
        counter gets) adds it onto the newer value when another request wrote first.
        """
        current = self.data.get(key, 0)
        if not is_number(by) or not is_number(current):
            raise NotACounter(
                f"increment({key!r}, by={by!r}): the value and the delta must be int or float "
                f"(not bool), the stored value is {type(current).__name__}"
            )
        value: Number = current + by
        self.data[key] = value
        self.increments[key] = self.increments.get(key, 0) + by
        return value


def _check_size(overhead: int, payload: bytes) -> None:
    size = overhead + len(payload)
    if size > _core.MAX_ITEM_BYTES:
        raise SessionTooLarge(
            f"session is {size} bytes as a DynamoDB item, over the {_core.MAX_ITEM_BYTES}"
            "-byte limit; nothing was written - keep large data out of the session",
            size, _core.MAX_ITEM_BYTES,
        )


def _malformed(session_id: str, name: str, value: Any, expected: str) -> CorruptSession:
    shown = next(iter(value), "?") if isinstance(value, dict) else type(value).__name__
    return CorruptSession(
        f"session {log_id(session_id)}: the {name} attribute ({shown}) is not {expected} - an "
        "item written by someone else (another serializer, PHP's serialize(), a hand edit) "
        "cannot be read; nothing was changed"
    )


def _number(item: dict[str, Any], name: str, session_id: str,
            integer: bool = False) -> int | None:
    """The integer in number attribute ``name`` (None when absent); else CorruptSession."""
    value = item.get(name)
    if value is None:
        return None
    text = value.get("N") if isinstance(value, dict) and len(value) == 1 else None
    expected = "a whole number >= 0" if integer else "a number of epoch seconds"
    number = _exact(text) if isinstance(text, str) else None
    if number is None or (integer and (number != int(number) or number < 0)):
        raise _malformed(session_id, name, value, expected)
    return int(number)


def _exact(text: str) -> int | decimal.Decimal | None:
    """The number DynamoDB stores as ``text``, exactly (up to 38 digits: a float would round
    it, and a rounded expiry or version written back has more digits than DynamoDB takes);
    None when it is not a finite number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _binary(item: dict[str, Any], name: str, session_id: str) -> bytes | None:
    """The bytes of binary attribute ``name`` (None when absent); else CorruptSession."""
    value = item.get(name)
    if value is None:
        return None
    data = value.get("B") if isinstance(value, dict) and len(value) == 1 else None
    if not isinstance(data, (bytes, bytearray)):
        raise _malformed(session_id, name, value, "binary (B)")
    return bytes(data)


def _same_version(session: LoadedSession) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A condition that the item is still the version read: its number and, when it has them,
    its write tokens - a session deleted and written again up to the same number (a logout,
    then a new session under the id) is another item, and is not overwritten or deleted."""
    names = {"#v": VERSION}
    values: dict[str, Any] = {":v": {"N": str(session.version)}}
    if not session.writes:
        return "#v = :v", names, values
    names["#w"] = WRITES
    values[":rw"] = {"B": session.writes}
    return "#v = :v AND #w = :rw", names, values


def _next_writes(token: bytes, writes: bytes) -> bytes:
    """The write tokens after a write with ``token`` on an item holding ``writes``: always
    ``_WRITE_HISTORY`` entries (zeros for none), so an item does not grow as it is written."""
    size = _WRITE_HISTORY * _WRITE_TOKEN_BYTES
    return (token + writes)[:size].ljust(size, b"\0")


def _own_version(item: dict[str, Any], version: int, token: bytes) -> bool:
    """``item`` shows that the write of ``version`` with ``token`` was applied."""
    try:
        stored = int(item[VERSION]["N"])
        writes = bytes(item[WRITES]["B"])
    except (KeyError, TypeError, ValueError):
        return False
    start = (stored - version) * _WRITE_TOKEN_BYTES
    return start >= 0 and writes[start:start + _WRITE_TOKEN_BYTES] == token


def _descends(item: dict[str, Any], session: LoadedSession) -> bool:
    """``item`` is a later version of the one ``session`` read (or it cannot be told: no
    tokens, or more writes since than the tokens cover) - not a session deleted and
    started again under the same id, into which this request's changes must not go."""
    if not session.writes or session.version is None:
        return True
    try:
        stored = int(item[VERSION]["N"])
        writes = bytes(item[WRITES]["B"])
    except (KeyError, TypeError, ValueError):
        return False  # the item read had tokens; one without is another item
    start = (stored - session.version) * _WRITE_TOKEN_BYTES
    if start < 0:
        return False
    if start >= len(writes):
        return True
    return writes[start:start + _WRITE_TOKEN_BYTES] == session.writes[:_WRITE_TOKEN_BYTES]


def _tells_versions(item: dict[str, Any], version: int) -> bool:
    """``item`` can tell whether ``version`` was written by a given token (or it is older)."""
    try:
        stored = int(item[VERSION]["N"])
    except (KeyError, TypeError, ValueError):
        return True  # no version: not a write of ours
    writes = item.get(WRITES, {}).get("B", b"")
    return stored < version or (stored - version) * _WRITE_TOKEN_BYTES < len(writes)


def _before_lock(item: dict[str, Any]) -> dict[str, Any]:
    """The item as it was before this request's lock take: no lock, its old expiry."""
    old = {name: value for name, value in item.items()
           if name not in (LOCK, LOCK_UNTIL_MS, PRIOR_EXPIRES, EXPIRES)}
    prior = item.get(PRIOR_EXPIRES)
    if prior is not None and "NULL" not in prior:
        old[EXPIRES] = prior
    return old


def from_item(session_id: str, key: str, item: dict[str, Any] | None,
              cutoff: float) -> LoadedSession:
    """The session stored as ``item`` (None: no item), expired when its ``expires`` is before
    ``cutoff``: then it reads as empty, without expiry (:func:`expired` tells it apart).

    Raises :class:`CorruptSession` when an attribute is malformed or the stored bytes cannot
    be decoded: a broken item is never silently replaced by an empty session.
    """
    session = LoadedSession(session_id=session_id, key=key, data={})
    if item is None:
        return session
    session.item_exists = True
    session.expires = _number(item, EXPIRES, session_id)
    session.version = _number(item, VERSION, session_id, integer=True)
    session.writes = _binary(item, WRITES, session_id) or b""
    if session.expires is not None and session.expires < cutoff:
        session.expires = None
        return session
    if MOVED in item:
        if DATA in item:  # a marker never holds data: a session with a stray flag
            raise _malformed(session_id, MOVED, item[MOVED], "on a marker without data")
        session.moved = True  # a marker: no data, and its id is never served again
        return session
    payload = _binary(item, DATA, session_id)
    if payload is not None:
        session.data = _core.decode_session(payload)
        session.payload = payload
    return session


def expired(item: dict[str, Any] | None, session: LoadedSession) -> bool:
    """``session``, read by :func:`from_item` from ``item``, was expired."""
    return item is not None and session.expires is None and EXPIRES in item


def check_lifetime(lifetime_seconds: int | None) -> None:
    """A per-save lifetime is a whole number of seconds > 0 (or ``None``: the config's)."""
    if lifetime_seconds is not None and (not isinstance(lifetime_seconds, int)
                                         or isinstance(lifetime_seconds, bool)
                                         or not 0 < lifetime_seconds <= MAX_LIFETIME_SECONDS):
        raise ConfigError(f"lifetime_seconds={lifetime_seconds!r}: must be a whole number "
                          f"of seconds, 1..{MAX_LIFETIME_SECONDS} (or None for "
                          "session_lifetime_seconds)")
