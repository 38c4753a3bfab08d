"""Django sessions in DynamoDB: ``SESSION_ENGINE = "dynamo_sessions.django"``.

Settings::

    SESSION_ENGINE = "dynamo_sessions.django"
    DYNAMO_SESSIONS = {"table_name": "sessions", "locking": "optimistic",
                       "region_name": "eu-west-1"}        # any SessionConfig option, plus
                                                           # session_name, id_pattern,
                                                           # lock_timeout_status/_body,
                                                           # retry_after_seconds
    MIDDLEWARE = [..., "dynamo_sessions.django.SessionMiddleware", ...]  # instead of Django's

``locking`` defaults to ``optimistic`` here.  Each item lives exactly as long as Django's
expiry for that session (``get_expiry_age()``: ``SESSION_COOKIE_AGE`` or ``set_expiry``), so
DynamoDB's TTL removes it when Django would consider it expired.  ``clear_expired()``
(``manage.py clearsessions``) runs the conditional garbage collector; TTL does the same for free.

Keys: new ones are 256-bit ids from ``secrets``.  An existing key is accepted as Django accepts
one (8 characters or more: its database backend's 32-character keys too, so migrated sessions
keep working), within what a cookie and the store carry (:data:`DJANGO_ID_PATTERN`); an unknown
key is never adopted - the session gets a new one.  A session emptied of data keeps its key and
its item, as Django's contract says; only ``delete()`` / ``flush()`` removes it.  No locking
mode writes back a session another request deleted: ``save()`` raises ``UpdateError``.

The middleware (a subclass of Django's ``SessionMiddleware``) adds three things: a pessimistic
lock that was read but not saved is released at the end of the request, a ``LockTimeout``
becomes a ``503`` with ``Retry-After``, and the cookie is ``Secure`` whenever the request is
(``request.is_secure()``, which trusts ``SECURE_PROXY_SSL_HEADER`` only when you set it).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from .django_backend import (
    DJANGO_ID_PATTERN,
    MAX_KEY_BYTES,
    WEB_OPTIONS,
    Steps,
    T,
    arun_steps,
    backend,
    run_steps,
)
from .errors import LockLost, SessionBusy, SessionExists, SessionGone
from .handler import SessionHandler
from .merge import Number
from .store import SessionStore as DynamoStore
from .store import is_valid_session_id, new_session_id
from .transport.aio import shielded
from .web import RequestSession, valid_cookie_id

__all__ = ["DJANGO_ID_PATTERN", "MAX_KEY_BYTES", "WEB_OPTIONS", "SessionMiddleware",
           "SessionStore", "backend", "lock_timeout_response"]

class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's ``SessionBase`` contract on a DynamoDB store, through one
    :class:`RequestSession` (the rules the WSGI and Flask adapters follow too).

    ``save(must_create=True)`` raises ``CreateError`` when the key is taken;
    ``save(must_create=False)`` raises ``UpdateError`` when the session was deleted meanwhile
    (logout in another tab) instead of bringing it back, in every locking mode (with
    ``locking="none"`` the last writer wins only among writers of a live session).  Each write
    carries the session's own lifetime (``get_expiry_age()``: ``set_expiry`` included).

    The async methods (``aload``, ``asave``, ``aexists``, ``adelete``, ``acreate``,
    ``acycle_key``, ``aflush``, ``aincrement``, and Django's ``aget``/``aset``/... on them)
    run on the event loop through the async store - no thread.  Each step is written once
    (the ``_*_steps`` generators ask for the request session's calls); a session whose first
    call was sync keeps that path (its async methods then run it on a thread), and one whose
    first call was async keeps the async one (a sync call then goes to the loop from a worker
    thread, ``async_to_sync``).
    """

    _session_key: str | None  # Django's validating property

    def __init__(self, session_key: str | None = None) -> None:
        self._backend = backend()
        self._request: RequestSession = RequestSession(self._backend.store, keep_empty=True)
        self._path = ""
        """``"sync"`` / ``"async"``: the path of this session's first call (``""``: none yet)."""
        self._presaved = False
        super().__init__(session_key)

    @property
    def store(self) -> DynamoStore:
        return self._backend.store

    @property
    def lock_failed(self) -> bool:
        return self._request.lock_failed

    @property
    def moved(self) -> bool:
        """The key named a session moved to a new key (a login answered meanwhile): nothing
        is stored for this request and its cookie is left alone."""
        return self._request.moved

    # --- keys ---------------------------------------------------------------------------------

    def _validate_session_key(self, key: Any) -> bool:
        # The store's id rule, Django's own (8+ characters), then id_pattern (which can
        # narrow the first two, never widen them).
        return (is_valid_session_id(key) and bool(super()._validate_session_key(key))
                and valid_cookie_id(key, self._backend.id_pattern))

    def _get_new_session_key(self) -> str:
        # 256 random bits: a collision is not a practical event, and create() is conditional
        # anyway (CreateError, retried), so no exists() round trip is spent first.
        return new_session_id()

    async def _aget_new_session_key(self) -> str:
        return new_session_id()

    # --- the contract's steps, written once (see the class's docstring) ----------------------

    def _load_steps(self) -> Steps[dict[str, Any]]:
        key = self.session_key
        if key is None:
            return {}
        data = yield "load", (key,)
        if self._request.existing_id is None:
            self._session_key = None  # an unknown (or moved) key is never adopted
            return {}
        return dict(data)

    def _exists_steps(self, session_key: str | None) -> Steps[bool]:
        if not self._validate_session_key(session_key):
            return False
        return bool((yield "exists", (session_key,)))

    def _create_steps(self) -> Steps[None]:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                yield from self._save_steps(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def _save_steps(self, must_create: bool = False) -> Steps[None]:
        if self.session_key is None:
            if self.moved:
                return  # its key was moved by a login answered meanwhile: store nothing
            return (yield from self._create_steps())
        key: str = self.session_key
        if not must_create and not hasattr(self, "_session_cache"):
            self._session_cache = yield from self._load_steps()
        data = self._get_session(no_load=must_create)
        age = int(self.get_expiry_age())
        self._request.lifetime_seconds = age
        if must_create:
            if age <= 0:
                return  # born expired: nothing to store
            try:
                yield "create", (key, data)
            except SessionExists as exc:
                raise CreateError from exc
            return
        if age <= 0:
            yield from self._delete_steps(key)
            return
        try:
            yield "save_existing", (key, data)
        except (SessionGone, LockLost) as exc:
            raise UpdateError from exc

    def _delete_steps(self, session_key: str | None = None) -> Steps[None]:
        if session_key is None:
            session_key = self.session_key
        if session_key is None or not self._validate_session_key(session_key):
            return
        if (yield "retire_old", (session_key,)):  # cycle_key: the session moved
            self._session_cache = dict(self._request.held_data or {})  # + what others added
            return
        yield "delete", (session_key,)

    def _release_steps(self) -> Steps[None]:
        yield "release_locks", ()

    # --- the two paths --------------------------------------------------------------------------

    def _run(self, steps: Steps[T]) -> T:
        if self._path == "async":  # this session's state is the async request session's
            result: T = async_to_sync(self._arun)(steps)
            return result
        self._path = "sync"
        return run_steps(steps, self._request)

    async def _arun(self, steps: Steps[T]) -> T:
        if self._path == "sync" or not self._backend.native_async:
            self._path = "sync"
            result: T = await sync_to_async(self._run, thread_sensitive=False)(steps)
            return result
        if self._path != "async":
            self._path = "async"
            self._request = self._backend.async_request()
        return await arun_steps(steps, self._request)

    # --- contract -----------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        return self._run(self._load_steps())

    def exists(self, session_key: str | None) -> bool:
        return self._run(self._exists_steps(session_key))

    def create(self) -> None:
        self._run(self._create_steps())

    def save(self, must_create: bool = False) -> None:
        if self._presaved:  # saved already, by the async middleware
            self._presaved = False
            return
        self._run(self._save_steps(must_create))

    def delete(self, session_key: str | None = None) -> None:
        self._run(self._delete_steps(session_key))

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent); return the new value.

        Unlike ``session[key] += by``, no concurrent request's increment is ever lost.
        """
        return self._increment(self._get_session(), key, by)

    def _increment(self, data: dict[str, Any], key: str, by: Number) -> Number:
        value = self._request.increment_in(data, key, by, self.session_key)
        self.modified = True  # Django's own dict is the one saved
        return value

    def cycle_key(self) -> None:
        self._request.moved = False  # an explicit new session, even if it raced a login
        super().cycle_key()

    def flush(self) -> None:
        self._request.moved = False
        super().flush()

    @classmethod
    def clear_expired(cls) -> None:
        handler = SessionHandler(backend().config, backend().store.client)
        handler.garbage_collect()

    # --- async: the same steps on the event loop ------------------------------------------

    async def aload(self) -> dict[str, Any]:
        return await self._arun(self._load_steps())

    async def aexists(self, session_key: str | None) -> bool:
        return await self._arun(self._exists_steps(session_key))

    async def acreate(self) -> None:
        await self._arun(self._create_steps())

    async def asave(self, must_create: bool = False) -> None:
        await self._arun(self._save_steps(must_create))

    async def adelete(self, session_key: str | None = None) -> None:
        await self._arun(self._delete_steps(session_key))

    async def aincrement(self, key: str, by: Number = 1) -> Number:
        return self._increment(await self._aget_session(), key, by)

    async def acycle_key(self) -> None:
        self._request.moved = False
        await super().acycle_key()

    async def aflush(self) -> None:
        self._request.moved = False
        await super().aflush()

    @classmethod
    async def aclear_expired(cls) -> None:
        # A maintenance task (the garbage collector's scan), not a request's: on a thread.
        await sync_to_async(cls.clear_expired, thread_sensitive=False)()

    # --- locks --------------------------------------------------------------------------------

    def release_lock(self) -> None:
        """Release a pessimistic lock taken by a read that was not followed by a save."""
        if self._path:
            self._run(self._release_steps())

    async def arelease_lock(self) -> None:
        if self._path:
            await self._arun(self._release_steps())

    def presaved(self) -> None:
        """The next ``save()`` has been done already (``asave`` by the async middleware)."""
        self._presaved = True


def lock_timeout_response() -> HttpResponse:
    """The answer to a request whose session stayed locked (``503`` unless configured)."""
    web = backend().web
    response = HttpResponse(web.lock_timeout_body, status=web.lock_timeout_status,
                            content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(web.retry_after_seconds)
    response["Cache-Control"] = "no-store"
    return response


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's ``SessionMiddleware`` plus lock release, 503 on lock timeout, auto Secure.

    Sync and async: under ASGI (an async handler) it runs on the event loop - the session's
    save is ``asave`` and the release ``arelease_lock``, no thread; Django's cookie rules are
    its own ``process_response``, run once the save is done (it then makes no call).
    """

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        self.process_request(request)  # makes the session object: no call
        try:
            response = await self.get_response(request)
        except BaseException:  # cancelled (the client went away): give the lock back
            session = getattr(request, "session", None)
            if isinstance(session, SessionStore):
                await shielded(session.arelease_lock())
            raise
        return await self.aprocess_response(request, response)

    def process_exception(self, request: HttpRequest,
                          exception: BaseException) -> HttpResponse | None:
        if isinstance(exception, SessionBusy):
            return lock_timeout_response()
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            return _secure(request, super().process_response(request, response))
        try:
            return self._respond(request, session, response)
        finally:
            session.release_lock()

    async def aprocess_response(self, request: HttpRequest,
                                response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            return _secure(request, await sync_to_async(super().process_response)(
                request, response))
        try:
            if (not session.lock_failed and not session.moved and response.status_code < 500
                    and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)
                    and not session.is_empty()):  # Django's process_response would save
                try:
                    await session.asave()
                except UpdateError as exc:
                    raise SessionInterrupted("The request's session was deleted before the "
                                             "request completed.") from exc
                except SessionBusy:
                    return lock_timeout_response()
                session.presaved()
            return self._respond(request, session, response)
        finally:
            await shielded(session.arelease_lock())  # even if cancelled meanwhile

    def _respond(self, request: HttpRequest, session: SessionStore,
                 response: HttpResponse) -> HttpResponse:
        if session.lock_failed:
            return response  # nothing was read, nothing may be written
        if session.moved:
            # The cookie's session was moved by a login answered meanwhile: Django would
            # delete the cookie of this empty session (logging the user out) or give it a
            # new one.  The client holds the new key already: leave its cookie alone.
            patch_vary_headers(response, ("Cookie",))
            return response
        try:
            response = super().process_response(request, response)
        except SessionBusy:  # locked past the wait, or the save kept losing races
            return lock_timeout_response()
        if session.moved:  # moved while saving: not the old key again
            response.cookies.pop(settings.SESSION_COOKIE_NAME, None)
        return _secure(request, response)


def _secure(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """The session cookie is ``Secure`` whenever the request is."""
    name = settings.SESSION_COOKIE_NAME
    if name in response.cookies and request.is_secure():
        response.cookies[name]["secure"] = True
    return response
