"""``SessionHandler``: the PHP session protocol (open/close/read/write/destroy/gc) on a store.

It holds the protocol only; a session's rules are :class:`request.RequestSession`'s (the web
adapters' too), DynamoDB work is the store's (``store.py``) and the table's (``table.py``).
The handler is safe to share across threads: what a thread has read is kept per thread (one
``RequestSession`` per open session), so two requests for the same session in one process do
not mix their state.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import table
from .config import SessionConfig
from .errors import SessionGone
from .metrics import Metrics
from .request import RequestSession
from .store import SessionStore, create_store, log_id

_MAX_SESSION_NAMES = 64
_MAX_DESTROYED = 1024


class SessionHandler:
    """DynamoDB session handler with the PHP handler's protocol and options.

    >>> handler = SessionHandler(SessionConfig(locking="optimistic"), client)
    >>> handler.open("", "PHPSESSID")
    >>> data = handler.read(session_id)         # {} for a new or expired session
    >>> handler.write(session_id, {**data, "user": "jeremy"})
    >>> handler.close()
    """

    def __init__(self, config: SessionConfig | None = None, client: Any = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config or SessionConfig()
        self._default: SessionStore = create_store(self.config, client, clock=clock)
        self.client = self._default.client
        self._local = threading.local()
        self._stores = {self._default.session_name: self._default}
        self._stores_lock = threading.Lock()
        self._first_opened: SessionStore | None = None

    @property
    def store(self) -> SessionStore:
        """The store for the session name this thread last ``open()``-ed; in a thread that
        never opened, the first name opened on the handler (``PHPSESSID`` before any).
        Stores of different names share the client, clock and metrics."""
        store: SessionStore | None = getattr(self._local, "store", None)
        return store or self._first_opened or self._default

    def _store_named(self, session_name: str) -> SessionStore:
        with self._stores_lock:
            store = self._stores.get(session_name)
            if store is None:
                base = self._default
                store = create_store(self.config, base.client, session_name, base.clock)
                store.metrics = base.metrics
                store.monotonic, store.sleep = base.monotonic, base.sleep
                if len(self._stores) >= _MAX_SESSION_NAMES:  # bounded: drop the oldest
                    del self._stores[next(n for n in self._stores
                                          if self._stores[n] is not base)]
                self._stores[session_name] = store
            return store

    @classmethod
    def factory(cls, options: Mapping[str, Any]) -> SessionHandler:
        """Build from the PHP handler's option array (``SessionHandler::factory``)."""
        return cls(SessionConfig.from_php_options(options))

    @property
    def metrics(self) -> Metrics:
        """Calls and consumed RCU/WCU so far, as DynamoDB reported them."""
        return self.store.metrics

    def _destroyed(self) -> dict[str, None]:
        """The ids this thread destroyed since it last opened (or closed), oldest first: not
        written back (at most ``_MAX_DESTROYED``, for a thread that never opens or closes)."""
        destroyed: dict[str, None] | None = getattr(self._local, "destroyed", None)
        if destroyed is None:
            destroyed = self._local.destroyed = {}
        return destroyed

    def _open_sessions(self) -> dict[str, RequestSession]:
        """This thread's open sessions, by id: each a :class:`RequestSession` (the rules the
        web adapters follow), not adopting ids strictly (PHP picks its ids)."""
        sessions: dict[str, RequestSession] | None = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        return sessions

    # --- protocol ---------------------------------------------------------------------------

    def open(self, save_path: str = "", session_name: str = "PHPSESSID") -> bool:
        """Start using sessions named ``session_name`` (the key prefix) in this thread; maybe
        run GC.  Other threads keep their own names (the handler holds no per-request state)."""
        self._local.store = self._store_named(session_name)
        self._destroyed().clear()
        with self._stores_lock:
            self._first_opened = self._first_opened or self._local.store
        config = self.config
        if config.automatic_gc and random.random() * config.gc_divisor < config.gc_probability:
            self.garbage_collect()
        return True

    def close(self) -> bool:
        """Release every lock this thread still holds (sessions read but not written)."""
        sessions = self._open_sessions()
        self._destroyed().clear()
        while sessions:
            _, session = sessions.popitem()
            session.release()
        return True

    def read(self, session_id: str) -> dict[str, Any]:
        """The session's data; ``{}`` for a new or expired session.

        With pessimistic locking this takes the lock (or raises ``LockTimeout``).  Read errors
        and undecodable items are raised, never turned into an empty session.
        """
        sessions = self._open_sessions()
        previous = sessions.pop(session_id, None)
        if previous is not None:
            previous.release()
        session = RequestSession(self.store, strict=False)
        data = session.load(session_id)
        sessions[session_id] = session
        return data

    def write(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Store the session's data (and release its lock).

        Writes nothing when the data is unchanged and the expiry is not yet due; deletes the
        item when the data is empty.  On error the stored session is left as it was and the
        lock is released.  An id this request destroyed is not written back (a logged-out id
        brought back to life is one a fixated or stolen cookie holds again): data for it
        raises :class:`SessionGone` - regenerate an id for the new session.
        """
        session = self._open_sessions().pop(session_id, None)
        if session_id in self._destroyed():
            if session is not None:
                session.release()
            if data:
                raise SessionGone(f"session {log_id(session_id)} was destroyed in this "
                                  "request; not recreating it - give the new session a new id")
            return True
        if session is None:  # not read first (PHP always reads first): as the mode needs
            session = RequestSession(self.store, session_id, strict=False)
        return session.write(data)

    def increment(self, session_id: str, key: str, by: int | float = 1) -> int | float:
        """Add ``by`` to the number under ``key`` of a session read by this thread (read now if
        not); return the new value.  The data ``read`` returned shows it too; ``write`` stores
        it, and no concurrent request's increment is ever lost (in any locking mode).
        """
        session = self._open_sessions().get(session_id)
        if session is None:
            self.read(session_id)
            session = self._open_sessions()[session_id]
        return session.increment(key, by)

    def destroy(self, session_id: str) -> bool:
        """Delete the session (and with it any lock on it)."""
        session = self._open_sessions().pop(session_id, None)
        destroyed = self._destroyed()
        destroyed[session_id] = None
        if len(destroyed) > _MAX_DESTROYED:
            del destroyed[next(iter(destroyed))]
        return (session or RequestSession(self.store, strict=False)).delete(session_id)

    def gc(self, max_lifetime_seconds: int = 0) -> int:
        """PHP's gc hook: collects only when ``automatic_gc`` is on; returns items deleted.

        Expiry is per item (``expires``), so ``max_lifetime_seconds`` is not needed.
        """
        if not self.config.automatic_gc:
            return 0
        return self.garbage_collect().deleted

    # --- table and garbage collection ---------------------------------------------------------

    def create_table(self, read_capacity: int | None = None, write_capacity: int | None = None,
                     wait: bool = True) -> dict[str, Any]:
        """Create the table (on demand unless capacities are given), wait, enable TTL.

        Returns :func:`table.describe_table`'s summary; raises ``TableExists`` when taken.
        """
        return table.create_table(self.client, self.config, read_capacity, write_capacity, wait)

    def delete_table(self, wait: bool = True) -> None:
        table.delete_table(self.client, self.config, wait)

    def describe_table(self) -> dict[str, Any]:
        return table.describe_table(self.client, self.config)

    def garbage_collect(self, **options: Any) -> table.GcResult:
        """Delete expired sessions now; see :meth:`table.GarbageCollector.run` for options."""
        collector = table.GarbageCollector(self.client, self.config, self.store.metrics,
                                           clock=self.store.clock)
        return collector.run(**options)
