"""One request's session: its state and every rule it follows, written once.

The WSGI middleware, the Flask interface and Django's ``SessionStore`` hold one
:class:`RequestSession` per request; ``SessionHandler`` holds one per session a thread has open
(the PHP protocol).  The rules: lazy load (an untouched session makes no call), strict ids
(an id the store does not know is never adopted), dirty tracking, regenerate (login: the old id
is retired), destroy (logout), counters, the release of a held lock on error or when nothing is
written, the cookie decisions, and the item's lifetime, which travels with each write.

Every store call is in one of a few small methods (``_load``, ``_load_for_write``, ``_save``,
``_create``, ``_release``, ``_retire``, ``_delete``, ``_exists``); the rest is free of I/O, so
that an asyncio runner can drive the same rules later.  The locking mode is never tested here:
what a mode needs is the store's to say (``load_for_write``, ``writable``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from ._mapping import SessionMapping
from .errors import LockLost, LockTimeout, SessionGone, SessionMoved
from .merge import Number
from .metrics import logger
from .store import LoadedSession, SessionStore, log_id, new_session_id


class RequestSession(SessionMapping):
    """One request's session: a dict-like object loaded on first access, saved once at the end.

    ``regenerate()`` moves the data to a new id (at save the old item becomes a short-lived
    marker, if unchanged since it was read - else the other request's changes are merged in
    first); ``destroy()`` empties the session and deletes its item: the old id is dead, and data
    set afterwards starts a new session (new id and cookie).  ``increment(key, by)`` adds to a
    counter without ever losing a concurrent request's increment.  A request whose cookie names
    a moved session (it raced a login) is served an empty session that is never stored and
    gets no ``Set-Cookie`` at all.  ``LockTimeout`` from a pessimistic load is raised on every
    access, never turned into an empty session.  ``lifetime_seconds`` (None: the store's
    ``session_lifetime_seconds``) is how long the item lives after this request's write.
    """

    def __init__(self, store: SessionStore, cookie_id: str | None = None, *,
                 strict: bool = True, cookie_present: bool = False,
                 on_lock_timeout: Callable[[LockTimeout], BaseException] | None = None,
                 lifetime_seconds: int | None = None, keep_empty: bool = False) -> None:
        self.store = store
        self.strict = strict
        self.cookie_present = cookie_present
        """The request carried a cookie of this name (valid or not)."""
        self.lifetime_seconds = lifetime_seconds
        self.keep_empty = keep_empty
        """Save emptied data as an empty session (Django: only ``delete`` removes one)."""
        self.modified = False
        self.accessed = False
        self.gone = False
        """The session was deleted by another request before this one saved."""
        self.moved = False
        """The cookie names a session moved to a new id (a login answered meanwhile): nothing
        is stored and no cookie is sent - the client already holds the new id."""
        self._cookie_id = cookie_id
        self._on_lock_timeout = on_lock_timeout
        self._data: dict[str, Any] | None = None
        self._held: LoadedSession | None = None
        self._existing_id: str | None = None
        self._old: LoadedSession | None = None
        self._doomed: list[LoadedSession] = []
        self._new_id: str | None = None
        self._finished = False
        self._failure: BaseException | None = None

    # --- store calls (the only I/O) -------------------------------------------------------------

    def _load(self, session_id: str) -> LoadedSession:
        return self.store.load(session_id, lifetime_seconds=self.lifetime_seconds)

    def _load_for_write(self, session_id: str) -> LoadedSession:
        return self.store.load_for_write(session_id, lifetime_seconds=self.lifetime_seconds)

    def _save(self, session: LoadedSession, data: Mapping[str, Any]) -> None:
        session.keep_empty = session.keep_empty or self.keep_empty
        self.store.save(session, data, lifetime_seconds=self.lifetime_seconds)

    def _create(self, session_id: str, data: Mapping[str, Any]) -> LoadedSession:
        return self.store.create(session_id, data, lifetime_seconds=self.lifetime_seconds)

    def _release(self, session: LoadedSession) -> None:
        self.store.release(session)

    def _retire(self, old: LoadedSession, successor: LoadedSession) -> None:
        """Retire ``old``'s id in favour of ``successor`` (stored); refused: undo the move."""
        try:
            self.store.retire(old, successor)
        except LockLost:
            self.store.delete(successor.session_id)  # refused: the old id stays
            raise

    def _delete(self, session_id: str) -> bool:
        return self.store.delete(session_id)

    def _exists(self, session_id: str) -> bool:
        return self.store.exists(session_id)

    # --- loading ------------------------------------------------------------------------------

    def _ensure(self) -> dict[str, Any]:
        self.accessed = True
        if self._data is None:
            self._open()
            assert self._data is not None
        return self._data

    def _open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._finished:
            raise RuntimeError("this request's session was already saved or released")
        if self._cookie_id is None:
            self._data = {}
            return
        try:
            loaded = self._load(self._cookie_id)
        except LockTimeout as exc:  # raised on every access, never an empty session
            self._failure = self._on_lock_timeout(exc) if self._on_lock_timeout else exc
            if self._failure is exc:
                raise
            raise self._failure from exc
        self._adopt(loaded)

    def _adopt(self, loaded: LoadedSession) -> None:
        """Hold a loaded session - unless it moved, or ``strict`` and the store knew no such
        session: an unknown id is never adopted (no fixation), a moved one never served."""
        if loaded.moved:
            self.moved = True  # its old id is never served again, strict or not
        elif loaded.existed or not self.strict:
            self._held = loaded
            self._existing_id = loaded.session_id
            self._data = loaded.data
            return
        self._release(loaded)
        self._data = {}

    def load(self, session_id: str) -> dict[str, Any]:
        """Load ``session_id`` now (giving back what this request held): its data, ``{}`` for
        an unknown or moved one (then :attr:`existing_id` is None)."""
        self.release_locks()
        self._cookie_id, self._data, self._existing_id = session_id, None, None
        return self._ensure()

    @property
    def loaded(self) -> bool:
        """The session was read (or started empty) in this request."""
        return self._data is not None

    @property
    def lock_failed(self) -> bool:
        return self._failure is not None

    # --- ids ----------------------------------------------------------------------------------

    @property
    def new(self) -> bool:
        """No stored session is behind this one (yet)."""
        self._ensure()
        return self._existing_id is None

    @property
    def existing_id(self) -> str | None:
        """The id of the stored session this request holds (None: none)."""
        return self._existing_id

    @property
    def id(self) -> str | None:
        """The session id the client holds or will get; None for a new session not yet given
        one (an id is given only when the session is stored)."""
        return self._new_id or self._existing_id

    def ensure_id(self) -> str:
        """The session's id, giving a new session one now (for a cookie sent up front)."""
        self._ensure()
        current = self.id
        if current is None:
            current = self._new_id = new_session_id()
        return current

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent); return the new value here.

        Unlike ``session[key] += by``, no concurrent request's increment is ever lost, in any
        locking mode; raises :class:`NotACounter` for a value that is not an int or float.
        """
        value = self.increment_in(self._ensure(), key, by, self._existing_id)
        self.modified = True
        return value

    def increment_in(self, data: dict[str, Any], key: str, by: Number,
                     session_id: str | None) -> Number:
        """``increment`` on ``data`` (an adapter's own dict), counted on the held session
        when it is ``session_id``'s - so the delta travels with its save, never lost."""
        held = self._held
        counter = held if held is not None and held.session_id == session_id \
            else LoadedSession("", "", data)
        counter.data = data
        return counter.increment(key, by)

    def regenerate(self) -> str:
        """Move the data to a new id (call it on login).  At save the old id is retired: its
        item becomes a short-lived data-less marker if it is unchanged since it was read,
        else the changes another request made to it meanwhile are merged in first."""
        self._ensure()
        self.moved = False  # a login in a request that raced another login: a fresh session
        self._hold_as_old()
        self._existing_id = None
        self._new_id = new_session_id()
        self.modified = True
        return self._new_id

    def _hold_as_old(self) -> None:
        """The held session is to be retired (the first one moved) or released (later ones)."""
        held, self._held = self._held, None
        if held is None:
            return
        if self._old is None:
            self._old = held
        else:
            self._release(held)

    def destroy(self) -> None:
        """Empty the session and kill its id (logout): its item is deleted at save.

        Data set afterwards (a "logged out" flash, the login form's CSRF token) starts a new
        session with a new id and cookie; without any, the cookie is expired.
        """
        self._ensure().clear()
        self._doomed.extend(session for session in (self._held, self._old) if session)
        self._held = self._old = None
        self._existing_id = self._new_id = None
        self.modified = True

    # --- end of request -----------------------------------------------------------------------

    @property
    def needs_cookie(self) -> bool:
        """The client must be sent a (new) id: a new or regenerated session holding data."""
        if self._data is None or not self._data or self.gone or self.moved:
            return False
        return self._new_id is not None or self._existing_id is None

    @property
    def needs_cookie_deleted(self) -> bool:
        """The client holds a cookie for a session that no longer exists or never did (and
        was not moved: the client then holds the new id already)."""
        if self._data is None or not self.cookie_present or self.moved or self.needs_cookie:
            return False
        return self.gone or not self._data

    def save(self) -> None:
        """Store the data once (write only when changed or the expiry is due; empty data
        deletes); release every lock.  A session never touched costs no call."""
        if self._finished:
            return
        self._finished = True
        if self._data is None:
            return
        data = self._data
        try:
            while self._doomed:
                doomed = self._doomed.pop(0)
                with contextlib.suppress(SessionGone):  # deleted or moved meanwhile: dead
                    self._save(doomed, {})  # destroyed: deleted
            if self._held is not None:
                held, self._held = self._held, None
                self._store(held, data)  # writes only changes; empty data deletes
            elif self.moved:
                if data:
                    logger.warning("the cookie's session was moved to a new id by a login "
                                   "answered meanwhile; this request's changes were not stored")
            elif data:
                if self._new_id is None:
                    self._new_id = new_session_id()
                created = self._create(self._new_id, data)
                if self._old is not None:
                    old, self._old = self._old, None
                    self._retire(old, created)
            elif self._old is not None:
                old, self._old = self._old, None
                self._store(old, {})  # regenerated, then emptied: deleted
        finally:
            self.release_locks()

    def _store(self, session: LoadedSession, data: dict[str, Any]) -> None:
        try:
            self._save(session, data)
        except SessionMoved:
            self._moved(session)
        except SessionGone:
            self.gone = True
            logger.info("session %s was deleted by another request; not recreated",
                        log_id(session.session_id))

    def _moved(self, session: LoadedSession) -> None:
        self.moved = True
        self._existing_id = None  # never answered with: the client holds the new id
        logger.warning("session %s was moved to a new id by a login answered meanwhile; "
                       "this request's changes were not stored", log_id(session.session_id))

    def release(self) -> None:
        """Give up any lock without saving (the request failed or was cut short)."""
        if self._finished:
            return
        self._finished = True
        self.release_locks()

    def release_locks(self) -> None:
        """Give back every lock this request holds, without saving; the session stays usable."""
        held = [session for session in (self._held, self._old, *self._doomed) if session]
        self._held = self._old = None
        self._doomed = []
        for session in held:
            self._release(session)

    # --- explicit steps: Django's SessionBase and the PHP protocol ------------------------------

    def write(self, data: Mapping[str, Any]) -> bool:
        """Store ``data`` now under the id loaded (or given), giving back its lock (PHP's
        ``write``); a session not loaded first is loaded as its locking mode needs."""
        held, self._held = self._held, None
        if held is None:
            if self.moved:
                if data:
                    raise SessionMoved(f"session {log_id(self._cookie_id or '')} was moved to a "
                                       "new id (login in another request); nothing was written")
                return True
            assert self._cookie_id is not None, "write() needs an id: load() or cookie_id"
            held = self._load_for_write(self._cookie_id)
        self._save(held, data)
        return True

    def create(self, session_id: str, data: Mapping[str, Any]) -> None:
        """Store a new session under ``session_id`` now (:class:`SessionExists` when taken)
        and hold it; a session held before is retired by ``delete(its id)`` (Django's
        ``cycle_key``), else released at the end."""
        created = self._create(session_id, data)
        self._hold_as_old()
        self._held, self._existing_id, self._new_id = created, session_id, None

    def save_existing(self, session_id: str, data: Mapping[str, Any]) -> None:
        """Write ``data`` to the stored session ``session_id`` now; raises
        :class:`SessionGone` (deleted meanwhile: not brought back) or :class:`LockLost`.
        A session moved meanwhile is not written: :attr:`moved` tells."""
        held = self._held if self._held is not None and self._held.session_id == session_id \
            else None
        if held is None or not self.store.writable(held):
            # Not loaded in this request (or not as its mode needs to write it): load it, so
            # that a session deleted meanwhile is not brought back.
            self.release_locks()
            held = self._load(session_id)
            if not held.existed:
                self._release(held)
                raise SessionGone(f"session {log_id(session_id)} was deleted by another "
                                  "request; not recreating it")
        self._held = held
        self._existing_id = session_id
        try:
            self._save(held, data)
        except SessionMoved:
            self._moved(held)

    def delete(self, session_id: str) -> bool:
        """Delete ``session_id`` now (and any lock on it) - or retire it, when it is the id
        ``create`` moved this request's session from (:meth:`retire_old`)."""
        if self.retire_old(session_id):
            return True
        if self._held is not None and self._held.session_id == session_id:
            self._held = self._existing_id = None  # the delete drops its lock too
        if self._old is not None and self._old.session_id == session_id:
            self._old = None
        return self._delete(session_id)

    def retire_old(self, session_id: str) -> bool:
        """When ``session_id`` is the id ``create`` moved the held session from, retire it
        (a marker; what another request wrote to it meanwhile is merged into the session
        held: :attr:`held_data`) and return True; else False, with no call."""
        old, successor = self._old, self._held
        if old is None or old.session_id != session_id or successor is None \
                or successor.session_id == session_id:
            return False
        self._old = None
        try:
            self._retire(old, successor)
        except LockLost:
            self._held = self._existing_id = None
            raise
        return True

    def exists(self, session_id: str) -> bool:
        """A live session is stored under ``session_id``."""
        return self._exists(session_id)

    @property
    def held_data(self) -> dict[str, Any] | None:
        """The data of the session held (after ``delete`` retired an old id: merged)."""
        return self._held.data if self._held is not None else None
