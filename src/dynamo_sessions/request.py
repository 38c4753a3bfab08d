"""One request's session: its state and every rule it follows, written once.

The WSGI middleware, the Flask interface and Django's ``SessionStore`` hold one
:class:`RequestSession` per request; ``SessionHandler`` holds one per session a thread has open
(the PHP protocol).  The rules: lazy load (an untouched session makes no call), strict ids
(an id the store does not know is never adopted), dirty tracking, regenerate (login: the old id
is retired), destroy (logout), counters, the release of a held lock on error or when nothing is
written, the cookie decisions, and the item's lifetime, which travels with each write.

Every rule that calls the store is an operation of the protocol's kind (:mod:`.protocol.steps`:
a generator that ``yield from``-s the store's protocol operations - ``store.protocol.load``,
``.save``, ...), so one set of rules runs on either store: the sync methods (``save``,
``release``, ``write``, ...) run it on a :class:`SessionStore`'s driver, their async twins
(``aopen``, ``aload``, ``asave``, ``arelease``, ``arelease_locks``, ``awrite``, ``acreate``,
``asave_existing``, ``adelete``, ``aretire_old``, ``aexists``) on an
:class:`~.aio_store.AsyncSessionStore`'s.  With an async store, the data is read by ``await
session.aopen()`` before the dict is used (a dict access that would need a call raises
``TypeError``).  The locking mode is never tested here: what a mode needs is the store's to
say (``load_for_write``, ``writable``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from ._mapping import SessionState
from ._request_async import AsyncTwins
from .errors import LockLost, LockTimeout, SessionGone, SessionMoved
from .metrics import logger
from .protocol.steps import Operation, T
from .store import LoadedSession, StoreBase, log_id, new_session_id


class RequestSession(AsyncTwins, SessionState):
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

    def __init__(self, store: StoreBase, cookie_id: str | None = None, *,
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
        self._spare: list[LoadedSession] = []  # held, then replaced: released at the latest
        self._new_id: str | None = None
        self._finished = False
        self._failure: BaseException | None = None

    # --- store calls: the protocol's operations ----------------------------------------------

    def _run(self, operation: Operation[T]) -> T:
        """Run ``operation`` on the sync store's driver (an async store: only if it makes no
        call - else ``TypeError``: await the method's async twin instead)."""
        driver = getattr(self.store, "driver", None)
        if driver is not None:
            result: T = driver.run(operation)
            return result
        try:
            step = operation.send(None)
        except StopIteration as done:
            value: T = done.value
            return value
        operation.close()
        raise TypeError(f"this session needs a DynamoDB call ({step!r}) but its store is "
                        "asynchronous: await session.aopen() (or the a-method) first")

    def _load(self, session_id: str) -> Operation[LoadedSession]:
        return self.store.protocol.load(session_id, lifetime_seconds=self.lifetime_seconds)

    def _load_for_write(self, session_id: str) -> Operation[LoadedSession]:
        return self.store.protocol.load_for_write(session_id,
                                                  lifetime_seconds=self.lifetime_seconds)

    def _save(self, session: LoadedSession, data: Mapping[str, Any]) -> Operation[bool]:
        session.keep_empty = session.keep_empty or self.keep_empty
        return self.store.protocol.save(session, data, lifetime_seconds=self.lifetime_seconds)

    def _create(self, session_id: str, data: Mapping[str, Any]) -> Operation[LoadedSession]:
        return self.store.protocol.create(session_id, data,
                                          lifetime_seconds=self.lifetime_seconds)

    def _release(self, session: LoadedSession) -> Operation[None]:
        return self.store.protocol.release(session)

    def _retire(self, old: LoadedSession, successor: LoadedSession) -> Operation[None]:
        """Retire ``old``'s id in favour of ``successor`` (stored); refused: undo the move;
        failed otherwise (DynamoDB unavailable, interrupted): the old id stays, its lock given
        back - not left to block the session for a lease."""
        try:
            yield from self.store.protocol.retire(old, successor)
        except LockLost:
            yield from self.store.protocol.delete(successor.session_id)  # the old id stays
            raise
        except GeneratorExit:
            raise
        except BaseException:
            yield from self._release(old)
            raise

    # --- loading ------------------------------------------------------------------------------

    def _ensure(self) -> dict[str, Any]:
        self.accessed = True
        if self._data is None:
            self._run(self._open())
            assert self._data is not None
        return self._data

    def _open(self) -> Operation[None]:
        if self._failure is not None:
            raise self._failure
        if self._finished:
            raise RuntimeError("this request's session was already saved or released")
        if self._cookie_id is None:
            self._data = {}
            return
        try:
            loaded = yield from self._load(self._cookie_id)
        except LockTimeout as exc:  # raised on every access, never an empty session
            self._failure = self._on_lock_timeout(exc) if self._on_lock_timeout else exc
            if self._failure is exc:
                raise
            raise self._failure from exc
        yield from self._adopt(loaded)

    def _adopt(self, loaded: LoadedSession) -> Operation[None]:
        """Hold a loaded session - unless it moved, or ``strict`` and the store knew no such
        session: an unknown id is never adopted (no fixation), a moved one never served."""
        if loaded.moved:
            self.moved = True  # its old id is never served again, strict or not
        elif loaded.existed or not self.strict:
            self._held = loaded
            self._existing_id = loaded.session_id
            self._data = loaded.data
            return
        yield from self._release(loaded)
        self._data = {}

    def load(self, session_id: str) -> dict[str, Any]:
        """Load ``session_id`` now (giving back what this request held): its data, ``{}`` for
        an unknown or moved one (then :attr:`existing_id` is None)."""
        return self._run(self._load_id(session_id))

    def _load_id(self, session_id: str) -> Operation[dict[str, Any]]:
        yield from self._release_locks()
        self._cookie_id, self._data, self._existing_id = session_id, None, None
        self.accessed = True
        yield from self._open()
        assert self._data is not None
        return self._data

    # --- ids ----------------------------------------------------------------------------------

    def regenerate(self) -> str:
        """Move the data to a new id (call it on login).  At save the old id is retired: its
        item becomes a short-lived data-less marker if it is unchanged since it was read,
        else the changes another request made to it meanwhile are merged in first."""
        self._ensure()
        self.moved = False  # a login in a request that raced another login: a fresh session
        self._hold_as_old()
        if self._spare and getattr(self.store, "driver", None) is not None:
            self._run(self._release_spare())  # an async store's: at the end of the request
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
            self._spare.append(held)

    def _release_spare(self) -> Operation[None]:
        while self._spare:
            yield from self._release(self._spare.pop())

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

    def save(self) -> None:
        """Store the data once (write only when changed or the expiry is due; empty data
        deletes); release every lock.  A session never touched costs no call."""
        self._run(self._save_all())

    def _save_all(self) -> Operation[None]:
        finished, self._finished = self._finished, True
        data = self._data
        if finished or data is None:
            return
        try:
            while self._doomed:
                doomed = self._doomed.pop(0)
                with contextlib.suppress(SessionGone):  # deleted or moved meanwhile: dead
                    yield from self._save(doomed, {})  # destroyed: deleted
            if self._held is not None:
                held, self._held = self._held, None
                yield from self._store(held, data)  # writes only changes; empty data deletes
            elif self.moved:
                if data:
                    logger.warning("the cookie's session was moved to a new id by a login "
                                   "answered meanwhile; this request's changes were not stored")
            elif data:
                if self._new_id is None:
                    self._new_id = new_session_id()
                created = yield from self._create(self._new_id, data)
                if self._old is not None:
                    old, self._old = self._old, None
                    yield from self._retire(old, created)
            elif self._old is not None:
                old, self._old = self._old, None
                yield from self._store(old, {})  # regenerated, then emptied: deleted
        except GeneratorExit:
            raise
        except BaseException:
            yield from self._release_locks()
            raise
        yield from self._release_locks()

    def _store(self, session: LoadedSession, data: dict[str, Any]) -> Operation[None]:
        try:
            yield from self._save(session, data)
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
        self._run(self._release_all())

    def _release_all(self) -> Operation[None]:
        if not self._finished:
            self._finished = True
            yield from self._release_locks()

    def release_locks(self) -> None:
        """Give back every lock this request holds, without saving; the session stays usable."""
        self._run(self._release_locks())

    def _release_locks(self) -> Operation[None]:
        held = [session for session in (self._held, self._old, *self._doomed) if session]
        self._held = self._old = None
        self._doomed = []
        for session in held:
            yield from self._release(session)
        yield from self._release_spare()

    # --- explicit steps: Django's SessionBase and the PHP protocol ------------------------------

    def write(self, data: Mapping[str, Any]) -> bool:
        """Store ``data`` now under the id loaded (or given), giving back its lock (PHP's
        ``write``); a session not loaded first is loaded as its locking mode needs."""
        return self._run(self._write(data))

    def _write(self, data: Mapping[str, Any]) -> Operation[bool]:
        held, self._held = self._held, None
        if held is None:
            if self.moved:
                if data:
                    raise SessionMoved(f"session {log_id(self._cookie_id or '')} was moved to a "
                                       "new id (login in another request); nothing was written")
                return True
            assert self._cookie_id is not None, "write() needs an id: load() or cookie_id"
            held = yield from self._load_for_write(self._cookie_id)
        yield from self._save(held, data)
        return True

    def create(self, session_id: str, data: Mapping[str, Any]) -> None:
        """Store a new session under ``session_id`` now (:class:`SessionExists` when taken)
        and hold it; a session held before is retired by ``delete(its id)`` (Django's
        ``cycle_key``), else released at the end."""
        self._run(self._create_held(session_id, data))

    def _create_held(self, session_id: str, data: Mapping[str, Any]) -> Operation[None]:
        created = yield from self._create(session_id, data)
        self._hold_as_old()
        yield from self._release_spare()
        self._held, self._existing_id, self._new_id = created, session_id, None

    def save_existing(self, session_id: str, data: Mapping[str, Any]) -> None:
        """Write ``data`` to the stored session ``session_id`` now; raises
        :class:`SessionGone` (deleted meanwhile: not brought back) or :class:`LockLost`.
        A session moved meanwhile is not written: :attr:`moved` tells."""
        self._run(self._save_existing(session_id, data))

    def _save_existing(self, session_id: str, data: Mapping[str, Any]) -> Operation[None]:
        held = self._held if self._held is not None and self._held.session_id == session_id \
            else None
        if held is None or not self.store.writable(held):
            # Not loaded in this request (or not as its mode needs to write it): load it, so
            # that a session deleted meanwhile is not brought back.
            yield from self._release_locks()
            held = yield from self._load(session_id)
            if not held.existed:
                yield from self._release(held)
                raise SessionGone(f"session {log_id(session_id)} was deleted by another "
                                  "request; not recreating it")
        self._held = held
        self._existing_id = session_id
        try:
            yield from self._save(held, data)
        except SessionMoved:
            self._moved(held)

    def delete(self, session_id: str) -> bool:
        """Delete ``session_id`` now (and any lock on it) - or retire it, when it is the id
        ``create`` moved this request's session from (:meth:`retire_old`)."""
        return self._run(self._delete(session_id))

    def _delete(self, session_id: str) -> Operation[bool]:
        if (yield from self._retire_old(session_id)):
            return True
        if self._held is not None and self._held.session_id == session_id:
            self._held = self._existing_id = None  # the delete drops its lock too
        if self._old is not None and self._old.session_id == session_id:
            self._old = None
        return (yield from self.store.protocol.delete(session_id))

    def retire_old(self, session_id: str) -> bool:
        """When ``session_id`` is the id ``create`` moved the held session from, retire it
        (a marker; what another request wrote to it meanwhile is merged into the session
        held: :attr:`held_data`) and return True; else False, with no call."""
        return self._run(self._retire_old(session_id))

    def _retire_old(self, session_id: str) -> Operation[bool]:
        old, successor = self._old, self._held
        if old is None or old.session_id != session_id or successor is None \
                or successor.session_id == session_id:
            return False
        self._old = None
        try:
            yield from self._retire(old, successor)
        except LockLost:
            self._held = self._existing_id = None
            raise
        return True

    def exists(self, session_id: str) -> bool:
        """A live session is stored under ``session_id``."""
        return self._run(self.store.protocol.exists(session_id))
