"""ASGI middleware: DynamoDB sessions in ``scope["session"]`` for Starlette, FastAPI, Litestar.

>>> app = SessionMiddleware(app, config=SessionConfig(table_name="sessions"))

A drop-in for Starlette's ``SessionMiddleware``: ``request.session`` is a ``dict`` (JSON
encoders, ``dict(...)``, ``|``) with three more methods - ``regenerate()`` (login: a new id,
the old one retired), ``destroy()`` (logout: the item deleted) and ``increment(key, by=1)`` (a
counter that never loses a concurrent request's increment).  Litestar's
``request.set_session(...)`` / ``clear_session()`` replace the session / destroy it.

* **When it loads** (``load=``).  Only a request that carries a cookie of this name with the
  shape of a session id (strict ids: any other value is no session and never reaches DynamoDB)
  and whose path is not under ``exclude_paths`` (those get no ``scope["session"]`` at all) has
  a session to read.  ``"lazy"``: it is read on first use - the first ``request.session`` (the
  app is given a copy of the scope whose ``"session"`` reads it, so even a C JSON encoder gets
  the data), or any dict method: untouched, a request costs no call; read-only, one GetItem.
  Views read ``request.session`` without ``await``: from a sync view (run in a worker thread)
  the read runs on the event loop; in an ``async def`` view it runs on a boto3 client,
  **blocking the event loop for that one call** - ``await load_session(request)`` first reads
  it without blocking (:mod:`.aio_blocking`).  ``"eager"``: read before the app is called,
  touched or not.  ``"auto"`` (default): lazy, except where a load may wait for a lock
  (``locking="pessimistic"``: a lock wait cannot block the event loop, which the lock's holder
  may need) - eager: two UpdateItem per request that names a session (the lock taken before
  the app, given back at the end; and once per store, before its first lock, a
  DescribeEndpoints that learns the server's clock).  Put static files and health checks
  under ``exclude_paths``.
* **When it saves.**  Once, when the app sends ``http.response.start`` - before the status and
  headers leave, so that the ``Set-Cookie`` header can still be added.  Only changes are
  written.  A *streaming* response therefore saves at its start: changes made to the session
  while the body streams are **not** saved, and a lazy session first used there cannot be
  read any more (``RuntimeError``).
* ``503`` + ``Retry-After`` (``WebOptions``' status, body, seconds): when a pessimistic load
  stays locked for ``max_lock_wait_seconds``, the app is not called; when the save keeps
  losing races (nothing written), the app's answer is replaced.  Never a hang, never an empty
  session.
* An exception in the app, a cancellation (a timeout; a server or middleware that cancels on
  disconnect): the lock is given back (shielded: it finishes even while the task is
  cancelled) and the error re-raised; nothing is saved (cancelled during the save itself:
  the old or the new session is stored, never a mix).  A client that merely goes away, under
  uvicorn, lets the app finish: its session is saved as usual and its lock given back.
* **WebSocket** scopes get the session **read-only**: lazy as HTTP (eager: read at connect and
  its lock, if any, given back before the app runs, so a long-lived socket never blocks the
  session's HTTP requests); writing to it raises :class:`SessionReadOnly` (a socket cannot
  set a cookie).  A session that stays locked closes the socket before it is accepted (code
  1013, try again).
* Cookies as the WSGI middleware's (:class:`WebOptions`): HttpOnly, SameSite=Lax, Secure when
  the request came over https (``X-Forwarded-Proto`` only with ``trust_forwarded_proto``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Literal

from .aio_blocking import BlockingRunner
from .aio_store import AsyncSessionStore, create_async_store
from .asgi_session import Run, Session
from .config import SessionConfig
from .errors import ConfigError, SessionBusy
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


class _SessionScope(dict[str, Any]):
    """The scope the app is given: a copy of the server's whose ``scope["session"]`` reads a
    pending session on first use - so that ``request.session`` (Starlette, FastAPI, Litestar)
    hands out a filled ``dict`` even to a C JSON encoder (``json``, msgspec), which reads a
    ``dict``'s storage, not its methods.  What the app sets in it (a router's ``route``,
    ``endpoint``, path params) is copied back to the server's scope when the response starts
    and when the app returns, as a middleware that sets ``scope["session"]`` in place shows
    it to the middleware around it."""

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if key == "session" and type(value) is Session and value.pending:
            value.fill()
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.__getitem__(key) if key in self else default


def _replaced(scope: dict[str, Any], session: Session) -> None:
    """Carry what the app left in ``scope["session"]`` into ``session`` before it is saved:
    Litestar's ``set_session(mapping)`` replaces the data, ``clear_session()`` destroys it."""
    value = dict.get(scope, "session")
    if isinstance(value, Mapping):
        session.replace(value)
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
    prefixes whose requests get no session and cost no call.  ``load``: when a request's
    session is read - ``"lazy"`` on first use, ``"eager"`` before the app is called (when the
    request names one), ``"auto"`` (default) lazy unless a load may wait for a lock
    (``locking="pessimistic"``: eager).
    """

    def __init__(self, app: ASGIApp, store: AsyncSessionStore | None = None, *,
                 config: SessionConfig | None = None, session_name: str = "session",
                 exclude_paths: Iterable[str] = (), options: WebOptions | None = None,
                 load: Literal["auto", "lazy", "eager"] = "auto",
                 **option_overrides: Any) -> None:
        if (store is None) == (config is None):
            raise TypeError("give either store= or config=")
        self.app = app
        self.owns_store = store is None
        self.store = store or create_async_store(config, session_name=session_name)
        self.options = (options or WebOptions()).replace(**option_overrides)
        self.exclude_paths = tuple(path.rstrip("/") for path in exclude_paths)
        waits = self.store.protocol.load_waits
        if load not in ("auto", "lazy", "eager"):
            raise ConfigError(f"load={load!r}: must be 'auto', 'lazy' or 'eager'")
        if load == "lazy" and waits:
            raise ConfigError(f"load='lazy' with locking={self.store.locking!r}: its load may "
                              "wait for a lock, which a sync first use on the event loop "
                              "cannot await; use load='auto' (eager) for this mode")
        self.lazy = load == "lazy" or (load == "auto" and not waits)
        """Sessions are read on first use (else before the app is called)."""
        self.blocking = BlockingRunner(self.store)
        """Carries a first use's read from sync code (shared; no request's state)."""

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

    async def _open(self, request: RequestSession, has_id: bool,
                    read_only: bool = False) -> Session:
        """The request's session: empty without a call when the request names none; else
        pending (read on first use) when lazy, or read now (a lock wait, if any, happens
        here)."""
        if not has_id:
            return Session(request, {}, read_only)
        if self.lazy:
            run: Run = self.blocking.for_loop(asyncio.get_running_loop())
            return Session(request, {}, read_only, run=run)
        await request.aopen()
        return Session(request, request.copy(), read_only)

    async def _http(self, scope: Scope, receive: Receive, send: Send,
                    request: RequestSession, has_id: bool) -> None:
        try:
            session = await self._open(request, has_id)
        except SessionBusy:
            await self._busy(send)
            return
        outer, scope = scope, _SessionScope(scope, session=session)
        replaced = False

        async def send_with_session(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the app's answer was replaced by a 503: its body goes nowhere
            if message["type"] == "http.response.start":
                outer.update(scope)  # what the app set (a route, path params) shows outside too
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
        finally:
            outer.update(scope)
        if request.loaded:  # never read: it holds nothing to give back
            await shielded(request.arelease())  # an app that never answered: nothing saved

    async def _finish(self, scope: _SessionScope, session: Session) -> list[tuple[bytes, bytes]]:
        """Save the session (the app is about to answer); its response headers."""
        if dict.get(scope, "session") is not session:
            await session.load()  # replaced by the app (Litestar): read first, not blocking
            _replaced(scope, session)
        request = session.request
        if session.modified or request.loaded:  # carried over whole: in-place changes too
            request.clear()
            request.update(session)
            await shielded(request.asave())  # (never read nor changed: nothing to save)
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
            session = await self._open(request, has_id, read_only=True)
        except SessionBusy:
            await send({"type": "websocket.close", "code": 1013})  # "try again later"
            return
        finally:
            if not self.lazy:
                await shielded(request.arelease())  # read now: no lock kept for the socket
        inner = _SessionScope(scope, session=session)
        try:
            await self.app(inner, receive, send)
        finally:
            scope.update(inner)  # what the app set shows outside too, as if set in place


def session_of(scope: Scope) -> Session:
    """The :class:`Session` of a request served through :class:`SessionMiddleware` (a pending
    one is not read here: its first use reads it - or :func:`load_session`)."""
    session = dict.get(scope, "session") if isinstance(scope, dict) else scope.get("session")
    if not isinstance(session, Session):
        raise LookupError("no dynamo_sessions session in this scope: is the app wrapped in "
                          "dynamo_sessions.asgi.SessionMiddleware (and its path not excluded)?")
    return session


async def load_session(connection: Any) -> Session:
    """The session of ``connection`` (a Starlette / FastAPI / Litestar request or WebSocket, or
    its scope), read now without blocking the event loop if not read yet: call it first in an
    ``async def`` view, where a first plain ``request.session`` read blocks the loop for the
    read's one call."""
    return await session_of(getattr(connection, "scope", connection)).load()


__all__ = ["Session", "SessionMiddleware", "WebOptions", "load_session", "session_of"]
