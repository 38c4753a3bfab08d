"""One request's session on the async store: :class:`RequestSession`'s rules, its calls awaited.

:class:`AsyncRequestSession` keeps every rule of :class:`~.request.RequestSession` (strict
ids, dirty tracking, regenerate, destroy, counters, the cookie decisions, the release of what
is held) and awaits the async store (:mod:`.aio_store`) where the sync one calls.  What the sync
rules release on their own (a second ``regenerate()``, an unknown id not adopted) is released
at the next awaited step.  Its data cannot be loaded by a sync access: ``await aopen()`` (or an
async twin that loads) first - a sync access to a session not loaded raises
:class:`~.errors.SessionNotLoaded`; a request without a session cookie needs no load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from .errors import LockLost, LockTimeout, SessionGone, SessionMoved, SessionNotLoaded
from .metrics import logger
from .request import RequestSession
from .store import LoadedSession, log_id, new_session_id


class AsyncRequestSession(RequestSession):
    """A :class:`RequestSession` on an ``AsyncSessionStore``: ``aopen``, ``asave``,
    ``arelease``, ``arelease_locks``, and the explicit steps ``aload``, ``acreate``,
    ``asave_existing``, ``adelete``, ``aretire_old``, ``aexists``."""

    def __init__(self, store: Any, cookie_id: str | None = None, *,
                 strict: bool = True, cookie_present: bool = False,
                 on_lock_timeout: Callable[[LockTimeout], BaseException] | None = None,
                 lifetime_seconds: int | None = None, keep_empty: bool = False) -> None:
        super().__init__(store, cookie_id, strict=strict, cookie_present=cookie_present,
                         on_lock_timeout=on_lock_timeout, lifetime_seconds=lifetime_seconds,
                         keep_empty=keep_empty)
        self.aio: Any = store
        """The async store."""
        self._deferred: list[LoadedSession] = []

    # --- the sync rules' one call: deferred to the next awaited step --------------------------

    def _release(self, session: LoadedSession) -> None:
        self._deferred.append(session)

    def _sync_call(self, *_: Any) -> Any:
        raise TypeError("an AsyncRequestSession is saved, loaded and released by its async "
                        "methods (asave, aopen, arelease, ...)")

    _load = _sync_call  # type: ignore[assignment]
    _load_for_write = _sync_call  # type: ignore[assignment]
    _save = _sync_call  # type: ignore[assignment]
    _create = _sync_call  # type: ignore[assignment]
    _retire = _sync_call  # type: ignore[assignment]
    _delete = _sync_call  # type: ignore[assignment]
    _exists = _sync_call  # type: ignore[assignment]

    async def _release_deferred(self) -> None:
        while self._deferred:
            await self.aio.release(self._deferred.pop(0))

    def _ensure(self) -> dict[str, Any]:
        if self._data is None and self._cookie_id is not None and self._failure is None \
                and not self._finished:
            raise SessionNotLoaded("this session is loaded by an await: call "
                                   "'await session.load()' (Quart) before using its data")
        return super()._ensure()  # no cookie: empty, no call

    # --- loading ------------------------------------------------------------------------------

    async def aopen(self) -> dict[str, Any]:
        """Load the session now (once; no call without a session cookie) and return its data;
        ``LockTimeout`` (or what ``on_lock_timeout`` makes of it) raised on every access."""
        self.accessed = True
        if self._data is None and self._cookie_id is not None and self._failure is None \
                and not self._finished:
            try:
                loaded = await self.aio.load(self._cookie_id,
                                             lifetime_seconds=self.lifetime_seconds)
            except LockTimeout as exc:
                self._failure = self._on_lock_timeout(exc) if self._on_lock_timeout else exc
                if self._failure is exc:
                    raise
                raise self._failure from exc
            self._adopt(loaded)
            await self._release_deferred()
        return self._ensure()

    async def aload(self, session_id: str) -> dict[str, Any]:
        """:meth:`RequestSession.load`: load ``session_id`` now, giving back what was held."""
        await self.arelease_locks()
        self._cookie_id, self._data, self._existing_id = session_id, None, None
        return await self.aopen()

    # --- end of request -----------------------------------------------------------------------

    async def _asave_item(self, session: LoadedSession, data: Mapping[str, Any]) -> None:
        session.keep_empty = session.keep_empty or self.keep_empty
        await self.aio.save(session, data, lifetime_seconds=self.lifetime_seconds)

    async def _astore(self, session: LoadedSession, data: dict[str, Any]) -> None:
        try:
            await self._asave_item(session, data)
        except SessionMoved:
            self._moved(session)
        except SessionGone:
            self.gone = True
            logger.info("session %s was deleted by another request; not recreated",
                        log_id(session.session_id))

    async def _aretire(self, old: LoadedSession, successor: LoadedSession) -> None:
        try:
            await self.aio.retire(old, successor)
        except LockLost:
            await self.aio.delete(successor.session_id)  # refused: the old id stays
            raise

    async def asave(self) -> None:
        """:meth:`RequestSession.save`, awaited: store the data once, release every lock."""
        if self._finished:
            return
        self._finished = True
        data = self._data
        try:
            if data is None:
                return
            while self._doomed:
                doomed = self._doomed.pop(0)
                with contextlib.suppress(SessionGone):  # deleted or moved meanwhile: dead
                    await self._asave_item(doomed, {})  # destroyed: deleted
            if self._held is not None:
                held, self._held = self._held, None
                await self._astore(held, data)  # writes only changes; empty data deletes
            elif self.moved:
                if data:
                    logger.warning("the cookie's session was moved to a new id by a login "
                                   "answered meanwhile; this request's changes were not stored")
            elif data:
                if self._new_id is None:
                    self._new_id = new_session_id()
                created = await self.aio.create(self._new_id, data,
                                                lifetime_seconds=self.lifetime_seconds)
                if self._old is not None:
                    old, self._old = self._old, None
                    await self._aretire(old, created)
            elif self._old is not None:
                old, self._old = self._old, None
                await self._astore(old, {})  # regenerated, then emptied: deleted
        finally:
            await self.arelease_locks()

    async def arelease(self) -> None:
        """Give up any lock without saving (the request failed or was cut short)."""
        if not self._finished:
            self._finished = True
            await self.arelease_locks()

    async def arelease_locks(self) -> None:
        """Give back every lock this request holds, without saving."""
        self.release_locks()  # the sync rule: each held session deferred
        await self._release_deferred()

    # --- explicit steps: Django's SessionBase -------------------------------------------------

    async def acreate(self, session_id: str, data: Mapping[str, Any]) -> None:
        """:meth:`RequestSession.create`, awaited."""
        created = await self.aio.create(session_id, data, lifetime_seconds=self.lifetime_seconds)
        self._hold_as_old()
        self._held, self._existing_id, self._new_id = created, session_id, None
        await self._release_deferred()

    async def asave_existing(self, session_id: str, data: Mapping[str, Any]) -> None:
        """:meth:`RequestSession.save_existing`, awaited."""
        held = self._held if self._held is not None and self._held.session_id == session_id \
            else None
        if held is None or not self.aio.writable(held):
            await self.arelease_locks()
            held = await self.aio.load(session_id, lifetime_seconds=self.lifetime_seconds)
            if not held.existed:
                await self.aio.release(held)
                raise SessionGone(f"session {log_id(session_id)} was deleted by another "
                                  "request; not recreating it")
        self._held = held
        self._existing_id = session_id
        try:
            await self._asave_item(held, data)
        except SessionMoved:
            self._moved(held)

    async def adelete(self, session_id: str) -> bool:
        """:meth:`RequestSession.delete`, awaited."""
        if await self.aretire_old(session_id):
            return True
        if self._held is not None and self._held.session_id == session_id:
            self._held = self._existing_id = None  # the delete drops its lock too
        if self._old is not None and self._old.session_id == session_id:
            self._old = None
        result: bool = await self.aio.delete(session_id)
        return result

    async def aretire_old(self, session_id: str) -> bool:
        """:meth:`RequestSession.retire_old`, awaited."""
        old, successor = self._old, self._held
        if old is None or old.session_id != session_id or successor is None \
                or successor.session_id == session_id:
            return False
        self._old = None
        try:
            await self._aretire(old, successor)
        except LockLost:
            self._held = self._existing_id = None
            raise
        return True

    async def aexists(self, session_id: str) -> bool:
        """A live session is stored under ``session_id``."""
        result: bool = await self.aio.exists(session_id)
        return result
