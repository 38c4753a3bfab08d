"""The stores: load, save, release and delete one session item in DynamoDB, on a boto3 client.

A store is a thin facade: each method runs one operation of the session protocol
(:mod:`.protocol` - the rules of each locking mode, written once and free of I/O) on the
botocore driver (:mod:`.transport.botocore`).  Three strategies share one item layout,
compatible with the PHP handler's (:mod:`.protocol.item`):

* ``SessionStore`` (``locking="none"``, :mod:`.protocol.none`): one GetItem per load; last
  writer wins - but a deleted session is never written back, and a session holding a counter
  (``LoadedSession.increment``) is written like an optimistic one.
* ``PessimisticSessionStore`` (:mod:`.protocol.pessimistic`): a lease lock, renewed while held.
* ``OptimisticSessionStore`` (:mod:`.protocol.optimistic`): versioned writes, merged on
  conflict (three-way, per key: ``merge.py``; counters as deltas) and retried.

A session moved to a new id (login) leaves a data-less ``moved`` marker at its old key
(:meth:`SessionStore.retire`): that id is never served or written again.

Strategies are chosen once, by :func:`create_store`.  A store is stateless between requests and
safe to share across threads; per-request state lives in :class:`LoadedSession`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

from .clock import ServerClock
from .config import SessionConfig
from .metrics import Metrics
from .protocol.ids import is_valid_session_id, log_id, new_session_id
from .protocol.item import (
    _LOCK_BYTES,
    DATA,
    EXPIRES,
    LOCK,
    LOCK_UNTIL_MS,
    MOVED,
    MOVED_MARKER_SECONDS,
    PRIOR_EXPIRES,
    VERSION,
    WRITES,
    LoadedSession,
)
from .protocol.none import NoLocking
from .protocol.optimistic import Optimistic
from .protocol.pessimistic import Pessimistic
from .transport.botocore import BotocoreDriver
from .transport.client import build_client

__all__ = [
    "DATA", "EXPIRES", "LOCK", "LOCK_UNTIL_MS", "MOVED", "MOVED_MARKER_SECONDS", "PRIOR_EXPIRES",
    "STORES", "VERSION", "WRITES", "_LOCK_BYTES", "LoadedSession", "OptimisticSessionStore",
    "PessimisticSessionStore", "SessionStore", "StoreBase", "create_store", "is_valid_session_id",
    "log_id", "new_session_id",
]


_T = TypeVar("_T")


class _Forwarded(Generic[_T]):
    """An attribute of the store kept on one of its parts (``protocol`` or ``driver``): read
    and set there, under the same name."""

    def __init__(self, part: str, doc: str | None = None) -> None:
        self.part = part
        self.name = ""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, store: None, owner: type | None = None) -> _Forwarded[_T]: ...

    @overload
    def __get__(self, store: object, owner: type | None = None) -> _T: ...

    def __get__(self, store: object, owner: type | None = None) -> _T | _Forwarded[_T]:
        if store is None:
            return self
        value: _T = getattr(getattr(store, self.part), self.name)
        return value

    def __set__(self, store: object, value: _T) -> None:
        setattr(getattr(store, self.part), self.name, value)


class StoreBase:
    """What the sync and the asyncio stores share: the config, the protocol of their locking
    mode (its rules, clock and figures) and the attributes that reach into it.  The stores
    differ only in the driver that runs the protocol's operations."""

    locking = "none"
    protocol_class: type[NoLocking] = NoLocking
    protocol: NoLocking

    def _setup(self, config: SessionConfig | None, session_name: str,
               clock: Callable[[], float] | None) -> None:
        self.config = config or SessionConfig()
        self.session_name = session_name
        clock = clock or ServerClock(warning_seconds=self.config.clock_skew_warning_seconds)
        self.protocol = self.protocol_class(self.config, session_name, clock, Metrics())
        """The rules of this store's locking mode (operations as generators)."""

    def _stamp_with(self, monotonic: Callable[[], float]) -> None:
        """The monotonic clock the driver stamps calls with (``Call.sent`` / ``received``)."""
        raise NotImplementedError

    @property
    def clock(self) -> Callable[[], float]:
        """The best estimate of the current time: by default a :class:`ServerClock`, which
        DynamoDB's answers keep on the server's clock; any other callable (a test's simulated
        time) is taken as it is."""
        return self.protocol.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.protocol.clock = clock
        self._stamp_with(clock.monotonic if isinstance(clock, ServerClock) else time.monotonic)

    monotonic: _Forwarded[Callable[[], float]] = _Forwarded(
        "protocol", "Times lock waits and write retries (replaceable in tests, with ``sleep``).")
    metrics: _Forwarded[Metrics] = _Forwarded(
        "protocol", "The store's call, capacity and outcome totals (:class:`.metrics.Metrics`).")

    def item_key(self, session_id: str) -> str:
        """The hash key value for a session id: ``<session_name>_<id>`` (or its SHA-256)."""
        return self.protocol.item_key(session_id)

    def writable(self, session: LoadedSession) -> bool:
        """``session`` can be saved as it is (False: load it again first - a pessimistic
        session whose lock was given back, or that this request created unlocked)."""
        return self.protocol.writable(session)


class SessionStore(StoreBase):
    """``locking="none"``: plain reads and writes; the last writer wins, but a session
    deleted by another request is not brought back (:class:`SessionGone`)."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        client: Any = None,
        session_name: str = "PHPSESSID",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._setup(config, session_name, clock)
        client = client or self.config.client or build_client(self.config)
        self.driver = BotocoreDriver(client, self)
        """Runs the protocol's operations on ``client``."""
        self.clock = self.protocol.clock  # stamps the driver's calls with the clock's own
        self.sleep: Callable[[float], Any] = time.sleep
        """Sleeps the protocol's waits (replaceable in tests, with ``monotonic``)."""

    client: _Forwarded[Any] = _Forwarded("driver", "The boto3 client the driver calls.")

    def _stamp_with(self, monotonic: Callable[[], float]) -> None:
        self.driver.monotonic = monotonic

    # --- operations ---------------------------------------------------------------------------

    def load(self, session_id: str, *, lifetime_seconds: int | None = None) -> LoadedSession:
        """Read a session (a pessimistic store takes its lock).  An absent or expired one
        loads as empty; a read error is raised, never turned into an empty session.

        ``lifetime_seconds`` (``None``: the config's) is how long the session lives after its
        next write; a pessimistic lock take already sets that expiry.  Raises
        :class:`CorruptSession` when the stored bytes cannot be decoded.
        """
        return self.driver.run(self.protocol.load(session_id, lifetime_seconds=lifetime_seconds))

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> LoadedSession:
        """A session to write that this request has not read: no call without locking; a
        locking mode loads it (takes the lock, learns the version)."""
        return self.driver.run(self.protocol.load_for_write(
            session_id, lifetime_seconds=lifetime_seconds))

    def save(self, session: LoadedSession, data: Mapping[str, Any] | None = None, *,
             lifetime_seconds: int | None = None) -> bool:
        """Store ``data`` (default: ``session.data``) and release any lock; True on success.

        ``lifetime_seconds`` replaces the session's lifetime from now on (``None``: keep it).
        Unchanged data (same bytes as read) writes nothing unless the expiry is due for a
        refresh; empty data deletes the item (unless ``session.keep_empty``).  On any error
        the stored session is left as it was and the lock is released before it is raised.
        """
        return self.driver.run(self.protocol.save(session, data,
                                                  lifetime_seconds=lifetime_seconds))

    def release(self, session: LoadedSession) -> None:
        """Give up any lock without writing (no-op without pessimistic locking)."""
        self.driver.run(self.protocol.release(session))

    def delete(self, session_id: str) -> bool:
        """Delete a session (logout, ``session_destroy``); True whether or not it existed."""
        return self.driver.run(self.protocol.delete(session_id))

    def create(self, session_id: str, data: Mapping[str, Any], *,
               lifetime_seconds: int | None = None) -> LoadedSession:
        """Store a new session only if no live item has that id (else :class:`SessionExists`);
        it lives ``lifetime_seconds`` (``None``: the config's)."""
        return self.driver.run(self.protocol.create(session_id, data,
                                                    lifetime_seconds=lifetime_seconds))

    def retire(self, old: LoadedSession, successor: LoadedSession) -> None:
        """Leave a data-less marker at the id ``old`` was moved from (login): ``successor``
        holds the session now, already stored under its new id (:mod:`.protocol.moved`)."""
        self.driver.run(self.protocol.retire(old, successor))

    def exists(self, session_id: str) -> bool:
        """True when a live (unexpired) session is stored under ``session_id``."""
        return self.driver.run(self.protocol.exists(session_id))


class OptimisticSessionStore(SessionStore):
    """``locking="optimistic"``: versioned writes; concurrent changes are merged, not lost
    (:mod:`.protocol.optimistic`)."""

    locking = "optimistic"
    protocol_class = Optimistic


class PessimisticSessionStore(SessionStore):
    """``locking="pessimistic"``: a lease lock with an owner and an expiry
    (:mod:`.protocol.pessimistic`)."""

    locking = "pessimistic"
    protocol_class = Pessimistic
    protocol: Pessimistic

    def renew_lock(self, key: str, token: str, session: LoadedSession | None = None) -> bool:
        """Extend the lease of ``token``'s lock on ``key`` (``lease.LeaseRenewer`` calls it);
        False when the lock is no longer ours."""
        return self.driver.run(self.protocol.renew_lock(key, token, session))


STORES: dict[str, type[SessionStore]] = {
    "none": SessionStore,
    "pessimistic": PessimisticSessionStore,
    "optimistic": OptimisticSessionStore,
}


def create_store(config: SessionConfig | None = None, client: Any = None,
                 session_name: str = "PHPSESSID",
                 clock: Callable[[], float] | None = None) -> SessionStore:
    """The store for ``config.locking``: the one place the strategy is chosen."""
    config = config or SessionConfig()
    return STORES[config.locking](config, client, session_name, clock)

