"""ASGI middleware: DynamoDB sessions in ``scope["session"]`` for Starlette, FastAPI, Litestar.

>>> app = SessionMiddleware(app, config=SessionConfig(table_name="sessions"))

A drop-in for Starlette's ``SessionMiddleware``: ``request.session`` is a ``dict`` (JSON
encoders, ``dict(...)``, ``|``) with three more methods - ``regenerate()`` (login: a new id,
the old one retired), ``destroy()`` (logout: the item deleted) and ``increment(key, by=1)`` (a
counter that never loses a concurrent request's increment).  Litestar's
``request.set_session(...)`` / ``clear_session()`` replace the session / destroy it.

* **When it loads.**  Views read ``request.session`` synchronously, and a sync read cannot await
  DynamoDB on the event loop; so the session is read *before* the app is called, and only when
  the request carries a cookie of this name that has the shape of a session id (strict ids:
  any other value is no session and never reaches DynamoDB) and its path is not under one of
  ``exclude_paths`` (those get no ``scope["session"]`` at all).  A request without such a
  cookie reads nothing: untouched, it costs no call; one that sets data costs the write that
  creates the session.  A request with one costs, read-only or untouched: one GetItem with
  ``locking="none"`` or ``"optimistic"``; with ``"pessimistic"`` two UpdateItem (the lock
  taken on load, given back at the end; and once per store, before its first lock, a
  DescribeEndpoints that learns the server's clock) - so put static files and health checks
  under ``exclude_paths``.  (Lazy loading is impossible here: a sync ``request.session`` read
  on the event loop cannot await DynamoDB.)
* **When it saves.**  Once, when the app sends ``http.response.start`` - before the status and
  headers leave, so that the ``Set-Cookie`` header can still be added.  Only changes are
  written.  A *streaming* response therefore saves at its start: changes made to the session
  while the body streams are **not** saved.
* ``503`` + ``Retry-After`` (``WebOptions``' status, body, seconds): when a pessimistic load
  stays locked for ``max_lock_wait_seconds``, the app is not called; when the save keeps
  losing races (nothing written), the app's answer is replaced.  Never a hang, never an empty
  session.
* An exception in the app, a cancellation (a timeout; a server or middleware that cancels on
  disconnect): the lock is given back (shielded: it finishes even while the task is
  cancelled) and the error re-raised; nothing is saved (cancelled during the save itself:
  the old or the new session is stored, never a mix).  A client that merely goes away, under
  uvicorn, lets the app finish: its session is saved as usual and its lock given back.
* **WebSocket** scopes get the session **read-only**: loaded at connect and its lock (if any)
  given back before the app runs, so a long-lived socket never blocks the session's HTTP
  requests; writing to it raises :class:`SessionReadOnly` (a socket cannot set a cookie).  A
  session that stays locked closes the socket before it is accepted (code 1013, try again).
* Cookies as the WSGI middleware's (:class:`WebOptions`): HttpOnly, SameSite=Lax, Secure when
  the request came over https (``X-Forwarded-Proto`` only with ``trust_forwarded_proto``).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from .aio_store import AsyncSessionStore, create_async_store
from .config import SessionConfig
from .errors import SessionBusy, SessionReadOnly
from .merge import Number
from .request import RequestSession
from .transport.aio import shielded
from .web import (
    WebOptions,
    is_https,
    lock_timeout_response,
    read_cookie,
    session_cookie_headers,
    valid_cookie_id,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Session(dict[str, Any]):
    """``scope["session"]``: a ``dict`` holding the session's data, with its request's rules
    (:class:`RequestSession`) behind ``regenerate``, ``destroy`` and ``increment``."""

    def __init__(self, request: RequestSession, data: Mapping[str, Any],
                 read_only: bool = False) -> None:
        super().__init__(data)
        self.request = request
        self.read_only = read_only
        self.accessed = False
        self.modified = False

    def mark_accessed(self) -> None:
        """Starlette's ``request.session`` calls this: the response varies by cookie."""
        self.accessed = True

    def mark_modified(self) -> None:
        if self.read_only:
            raise SessionReadOnly("a WebSocket's session is read-only (the socket cannot "
                                  "set a cookie); change it in an HTTP request")
        self.accessed = self.modified = True

    def regenerate(self) -> str:
        """A new id for this session (call it on login); the old id is retired at save."""
        self.mark_modified()
        return self.request.regenerate()

    def destroy(self) -> None:
        """Empty the session and delete its item at save (logout); data set afterwards
        starts a new session with a new id."""
        self.mark_modified()
        self.request.destroy()
        super().clear()

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent) without ever losing a
        concurrent request's increment; the new value as seen here."""
        self.mark_modified()
        return self.request.increment_in(self, key, by, self.request.existing_id)

    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def clear(self) -> None:
        self.mark_modified()
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.mark_modified()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.mark_modified()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.mark_modified()
        super().update(other)
        return self


def _replaced(scope: Scope, session: Session) -> None:
    """Carry what the app left in ``scope["session"]`` into ``session`` before it is saved:
    Litestar's ``set_session(mapping)`` replaces the data, ``clear_session()`` destroys it."""
    value = scope.get("session")
    if value is session:
        return
    if isinstance(value, Mapping):
        dict.clear(session)
        session.update(value)
    elif value is None or value is getattr(sys.modules.get("litestar.types.empty"), "Empty",
                                          None):
        session.destroy()
    else:
        raise TypeError(f"scope['session'] holds a {type(value).__name__}; the session can "
                        "be replaced by a mapping only")


class SessionMiddleware:
    """Wraps an ASGI app; see the module docstring for the contract.

    ``store``: an :class:`AsyncSessionStore` (shared; closed by its owner), or ``config``: a
    :class:`SessionConfig` for a store made here, closed at the lifespan shutdown the
    middleware sees (Starlette, FastAPI; Litestar's lifespan does not pass through middleware:
    give it ``store=`` and ``on_shutdown=[store.aclose]``); ``session_name`` prefixes the
    item keys of a store made here.  Other keywords are :class:`WebOptions`
    (``cookie_name``, ``cookie_max_age_seconds``, ``strict``, ...); ``exclude_paths``: path
    prefixes whose requests get no session and cost no call.
    """

    def __init__(self, app: ASGIApp, store: AsyncSessionStore | None = None, *,
                 config: SessionConfig | None = None, session_name: str = "session",
                 exclude_paths: Iterable[str] = (), options: WebOptions | None = None,
                 **option_overrides: Any) -> None:
        if (store is None) == (config is None):
            raise TypeError("give either store= or config=")
        self.app = app
        self.owns_store = store is None
        self.store = store or create_async_store(config, session_name=session_name)
        self.options = (options or WebOptions()).replace(**option_overrides)
        self.exclude_paths = tuple(path.rstrip("/") for path in exclude_paths)

    def excluded(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") or not prefix
                   for prefix in self.exclude_paths)

    def cookie_id(self, scope: Scope) -> tuple[str | None, bool]:
        """The request's session id (None: none or malformed) and whether a cookie of this
        name was sent at all."""
        header = b"; ".join(value for name, value in scope.get("headers", ())
                            if name.lower() == b"cookie")
        raw = read_cookie(header.decode("latin-1"), self.options.cookie_name)
        return (raw if valid_cookie_id(raw, self.options.id_pattern) else None), raw is not None

    def secure(self, scope: Scope) -> bool:
        options = self.options
        if options.cookie_secure != "auto":
            return bool(options.cookie_secure)
        forwarded = next((value.decode("latin-1") for name, value in scope.get("headers", ())
                          if name.lower() == b"x-forwarded-proto"), "")
        environ = {"wsgi.url_scheme": "https" if scope.get("scheme") in ("https", "wss")
                   else "http", "HTTP_X_FORWARDED_PROTO": forwarded}
        return is_https(environ, options.trust_forwarded_proto)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        elif kind not in ("http", "websocket") or self.excluded(scope.get("path", "")):
            await self.app(scope, receive, send)
        else:
            cookie_id, cookie_present = self.cookie_id(scope)
            request = RequestSession(self.store, cookie_id, strict=self.options.strict,
                                          cookie_present=cookie_present)
            if kind == "http":
                await self._http(scope, receive, send, request, cookie_id is not None)
            else:
                await self._websocket(scope, receive, send, request, cookie_id is not None)

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self.owns_store:
                await self.store.aclose()
            await send(message)
        return lifespan_send

    @staticmethod
    async def _open(request: RequestSession, has_id: bool,
                    read_only: bool = False) -> Session:
        """The request's session: read now when the request names one (a lock wait, if any,
        happens here), else empty without a call."""
        if not has_id:
            return Session(request, {}, read_only)
        await request.aopen()
        return Session(request, request.copy(), read_only)

    async def _http(self, scope: Scope, receive: Receive, send: Send,
                    request: RequestSession, has_id: bool) -> None:
        try:
            session = scope["session"] = await self._open(request, has_id)
        except SessionBusy:
            await self._busy(send)
            return
        replaced = False

        async def send_with_session(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the app's answer was replaced by a 503: its body goes nowhere
            if message["type"] == "http.response.start":
                try:
                    headers = await self._finish(scope, session)
                except SessionBusy:
                    replaced = True
                    await self._busy(send)
                    return
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        except BaseException:
            await shielded(request.arelease())
            raise
        await shielded(request.arelease())  # an app that never answered: nothing to save

    async def _finish(self, scope: Scope, session: Session) -> list[tuple[bytes, bytes]]:
        """Save the session (the app is about to answer); its response headers."""
        _replaced(scope, session)
        request = session.request
        if session.modified or request.loaded:  # carried over whole: in-place changes too
            request.clear()
            request.update(session)
        await shielded(request.asave())
        if session.accessed and not request.loaded:
            headers = [("Vary", "Cookie")]
        else:
            headers, _ = session_cookie_headers(self.options, request, self.secure(scope))
        return [(name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers]

    async def _busy(self, send: Send) -> None:
        status, headers, body = lock_timeout_response(self.options)
        await send({"type": "http.response.start", "status": int(status.split()[0]),
                    "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                for name, value in headers]})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send,
                         request: RequestSession, has_id: bool) -> None:
        try:
            scope["session"] = await self._open(request, has_id, read_only=True)
        except SessionBusy:
            await send({"type": "websocket.close", "code": 1013})  # "try again later"
            return
        finally:
            await shielded(request.arelease())
        await self.app(scope, receive, send)


def session_of(scope: Scope) -> Session:
    """The :class:`Session` of a request served through :class:`SessionMiddleware`."""
    session = scope.get("session")
    if not isinstance(session, Session):
        raise LookupError("no dynamo_sessions session in this scope: is the app wrapped in "
                          "dynamo_sessions.asgi.SessionMiddleware (and its path not excluded)?")
    return session


__all__ = ["Session", "SessionMiddleware", "WebOptions", "session_of"]
