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

import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from .config import SessionConfig
from .errors import ConfigError, LockLost, SessionBusy, SessionExists, SessionGone
from .handler import SessionHandler
from .merge import Number
from .store import SessionStore as DynamoStore
from .store import create_store, is_valid_session_id, new_session_id
from .web import MAX_COOKIE_ID_CHARS, RequestSession, WebOptions, valid_cookie_id

WEB_OPTIONS = ("session_name", "id_pattern", "lock_timeout_status", "lock_timeout_body",
               "retry_after_seconds")
DJANGO_ID_PATTERN = r"[A-Za-z0-9_.~:-]{8,256}"
"""The keys this engine accepts by default: Django's rule (8 characters or more) within the
store's id characters that a cookie carries unquoted (RFC 6265 cookie-octets, so not PHP's
``,``), at most 256 (the store's and the cookie parser's limit).  Django's own keys (32 of
``[a-z0-9]``) and this engine's (43 of ``[A-Za-z0-9_-]``) both match."""
MAX_KEY_BYTES = 2048
"""DynamoDB's limit on a partition key value: ``<session_name>_<id>`` must fit."""


class _Backend:
    """The stores and options built from ``settings.DYNAMO_SESSIONS`` (one per process)."""

    def __init__(self, options: dict[str, Any]) -> None:
        store_options = {k: v for k, v in options.items() if k not in WEB_OPTIONS}
        store_options.setdefault("locking", "optimistic")
        store_options.setdefault("session_lifetime_seconds", int(settings.SESSION_COOKIE_AGE))
        self.config = SessionConfig.from_options(store_options)
        session_name = options.get("session_name", settings.SESSION_COOKIE_NAME)
        id_bytes = 64 if self.config.hash_session_ids else MAX_COOKIE_ID_CHARS
        if len(f"{session_name}_".encode()) + id_bytes > MAX_KEY_BYTES:
            raise ConfigError(f"session_name is too long: '<session_name>_<id>' must fit "
                              f"DynamoDB's {MAX_KEY_BYTES}-byte key with a {id_bytes}-byte id")
        self.store: DynamoStore = create_store(self.config, session_name=session_name)
        """The one store: each write carries its session's lifetime."""
        self.id_pattern: str = options.get("id_pattern", DJANGO_ID_PATTERN)
        self.web = WebOptions(**{k: v for k, v in options.items()
                                 if k in WEB_OPTIONS and k != "session_name"})


_backend_lock = threading.Lock()
_backend: _Backend | None = None


def backend() -> _Backend:
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = _Backend(dict(getattr(settings, "DYNAMO_SESSIONS", {})))
        return _backend


def _reset_backend(setting: str = "", **_: Any) -> None:
    global _backend
    if setting in ("DYNAMO_SESSIONS", "SESSION_COOKIE_AGE", "SESSION_COOKIE_NAME"):
        with _backend_lock:
            _backend = None


setting_changed.connect(_reset_backend, dispatch_uid="dynamo_sessions.django")


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's ``SessionBase`` contract on a DynamoDB store, through one
    :class:`RequestSession` (the rules the WSGI and Flask adapters follow too).

    ``save(must_create=True)`` raises ``CreateError`` when the key is taken;
    ``save(must_create=False)`` raises ``UpdateError`` when the session was deleted meanwhile
    (logout in another tab) instead of bringing it back, in every locking mode (with
    ``locking="none"`` the last writer wins only among writers of a live session).  Each write
    carries the session's own lifetime (``get_expiry_age()``: ``set_expiry`` included).
    """

    _session_key: str | None  # Django's validating property

    def __init__(self, session_key: str | None = None) -> None:
        self._backend = backend()
        self._request = RequestSession(self._backend.store, keep_empty=True)
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

    # --- contract -----------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        key = self.session_key
        if key is None:
            return {}
        data = self._request.load(key)
        if self._request.existing_id is None:
            self._session_key = None  # an unknown (or moved) key is never adopted
            return {}
        return dict(data)

    def exists(self, session_key: str | None) -> bool:
        if not self._validate_session_key(session_key):
            return False
        assert session_key is not None
        return self._request.exists(session_key)

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent); return the new value.

        Unlike ``session[key] += by``, no concurrent request's increment is ever lost.
        """
        value = self._request.increment_in(self._get_session(), key, by, self.session_key)
        self.modified = True  # Django's own dict is the one saved
        return value

    def cycle_key(self) -> None:
        self._request.moved = False  # an explicit new session, even if it raced a login
        super().cycle_key()

    def flush(self) -> None:
        self._request.moved = False
        super().flush()

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            if self.moved:
                return  # its key was moved by a login answered meanwhile: store nothing
            return self.create()
        key: str = self.session_key
        data = self._get_session(no_load=must_create)
        age = int(self.get_expiry_age())
        self._request.lifetime_seconds = age
        if must_create:
            if age <= 0:
                return  # born expired: nothing to store
            try:
                self._request.create(key, data)
            except SessionExists as exc:
                raise CreateError from exc
            return
        if age <= 0:
            self.delete(key)
            return
        try:
            self._request.save_existing(key, data)
        except (SessionGone, LockLost) as exc:
            raise UpdateError from exc

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
        if session_key is None or not self._validate_session_key(session_key):
            return
        if self._request.retire_old(session_key):  # cycle_key: the session moved
            self._session_cache = dict(self._request.held_data or {})  # + what others added
            return
        self._request.delete(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        handler = SessionHandler(backend().config, backend().store.client)
        handler.garbage_collect()

    # --- async: boto3 is blocking; run it on a worker thread, not the event loop ------------

    async def aload(self) -> dict[str, Any]:
        result: dict[str, Any] = await sync_to_async(self.load, thread_sensitive=False)()
        return result

    async def aexists(self, session_key: str | None) -> bool:
        result: bool = await sync_to_async(self.exists, thread_sensitive=False)(session_key)
        return result

    async def acreate(self) -> None:
        await sync_to_async(self.create, thread_sensitive=False)()

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save, thread_sensitive=False)(must_create)

    async def aincrement(self, key: str, by: Number = 1) -> Number:
        result: Number = await sync_to_async(self.increment, thread_sensitive=False)(key, by)
        return result

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete, thread_sensitive=False)(session_key)

    @classmethod
    async def aclear_expired(cls) -> None:
        await sync_to_async(cls.clear_expired, thread_sensitive=False)()

    # --- locks --------------------------------------------------------------------------------

    def release_lock(self) -> None:
        """Release a pessimistic lock taken by a read that was not followed by a save."""
        self._request.release_locks()


def lock_timeout_response() -> HttpResponse:
    """The answer to a request whose session stayed locked (``503`` unless configured)."""
    web = backend().web
    response = HttpResponse(web.lock_timeout_body, status=web.lock_timeout_status,
                            content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(web.retry_after_seconds)
    response["Cache-Control"] = "no-store"
    return response


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's ``SessionMiddleware`` plus lock release, 503 on lock timeout, auto Secure."""

    def process_exception(self, request: HttpRequest,
                          exception: BaseException) -> HttpResponse | None:
        if isinstance(exception, SessionBusy):
            return lock_timeout_response()
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        try:
            if isinstance(session, SessionStore) and session.lock_failed:
                return response  # nothing was read, nothing may be written
            if isinstance(session, SessionStore) and session.moved:
                # The cookie's session was moved by a login answered meanwhile: Django would
                # delete the cookie of this empty session (logging the user out) or give it a
                # new one.  The client holds the new key already: leave its cookie alone.
                patch_vary_headers(response, ("Cookie",))
                return response
            try:
                response = super().process_response(request, response)
            except SessionBusy:  # locked past the wait, or the save kept losing races
                return lock_timeout_response()
        finally:
            if isinstance(session, SessionStore):
                session.release_lock()
        name = settings.SESSION_COOKIE_NAME
        if isinstance(session, SessionStore) and session.moved:
            response.cookies.pop(name, None)  # moved while saving: not the old key again
        if name in response.cookies and request.is_secure():
            response.cookies[name]["secure"] = True
        return response
