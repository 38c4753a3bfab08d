"""Quart sessions in DynamoDB, on the async store: ``init_app(app)``.

>>> from dynamo_sessions.quart import init_app
>>> app.config["DYNAMO_SESSIONS_TABLE_NAME"] = "sessions"
>>> init_app(app)

The settings and rules are :mod:`.flask`'s (``DYNAMO_SESSIONS_<OPTION>`` keys, Flask's
``SESSION_COOKIE_*`` and ``PERMANENT_SESSION_LIFETIME``; ``Vary: Cookie`` when the session was
accessed; a permanent session's lifetime travels with its save; strict ids; ``503`` +
``Retry-After`` when the session stays locked or a save keeps losing races; a lock held by a
request that fails - or whose client goes away - is released at teardown; ``regenerate()``,
``destroy()``, ``increment()`` on the session).  Every DynamoDB call is awaited on the event
loop (aiobotocore, a client per loop), never on a thread.

One difference from Flask: Quart's ``session`` is a sync mapping used from async views, so it
is loaded by an ``await`` - by default the view's own, which keeps an untouched request free
of calls::

    @app.post("/cart")
    async def add_to_cart():
        await session.load()          # one GetItem (pessimistic: the lock); none without cookie
        session["cart"] = [*session.get("cart", []), (await request.form)["item"]]
        return "added"

A websocket gets the session of its handshake's cookie (``await session.load()`` too); what it
changes is saved when it closes.  No cookie can be sent then, so a session the websocket started
or regenerated is not stored.

Using the data of a session not loaded raises :class:`~.errors.SessionNotLoaded`.  With
``DYNAMO_SESSIONS_AUTOLOAD = True`` every request carrying a session cookie loads it before
the view (no ``await`` needed - but each such request costs a read, and with pessimistic
locking takes the lock, whether or not the view uses the session).
"""

from __future__ import annotations

import contextlib
from typing import Any

import quart
from quart.sessions import SessionInterface, SessionMixin

from .aio_store import AsyncSessionStore, create_async_store
from .errors import SessionBusy, SessionNotLoaded
from .flask import INTERFACE_OPTIONS as FLASK_INTERFACE_OPTIONS
from .flask import InterfaceRules, SessionLocked, app_options
from .transport.aio import shielded
from .web import RequestSession, is_https

__all__ = ["DynamoSessionInterface", "QuartSession", "SessionLocked", "init_app"]

INTERFACE_OPTIONS = (*FLASK_INTERFACE_OPTIONS, "autoload")


class QuartSession(RequestSession, SessionMixin):  # type: ignore[override]
    """Quart's ``session``: a :class:`RequestSession` on the async store, with Flask's
    attributes; ``await session.load()`` reads it (once: later calls return at once)."""

    def _ensure(self) -> dict[str, Any]:
        if self._data is None and self.has_cookie_id and self._failure is None \
                and not self._finished:
            raise SessionNotLoaded("the session is read by an await: call 'await "
                                   "session.load()' in the view before using its data")
        return super()._ensure()  # no cookie: empty, no call

    async def load(self) -> QuartSession:  # type: ignore[override]
        await self.aopen()
        return self

    @property
    def has_cookie_id(self) -> bool:
        """The request's cookie holds a (valid) session id: loading it costs a call."""
        return self._cookie_id is not None


class DynamoSessionInterface(InterfaceRules, SessionInterface):  # type: ignore[misc]
    """A Quart ``SessionInterface`` keeping sessions in DynamoDB through an async store.

    ``autoload``: load the cookie's session before the view (see the module's docstring).
    """

    response_class = quart.Response

    def __init__(self, store: AsyncSessionStore, *, autoload: bool = False,
                 **options: Any) -> None:
        super().__init__(store, **options)  # type: ignore[arg-type]
        self.autoload = autoload

    def _store_of(self, store: Any) -> AsyncSessionStore:
        if not isinstance(store, AsyncSessionStore):
            raise TypeError("expected an AsyncSessionStore (create_async_store), got "
                            f"{type(store).__name__}")
        return store

    async def open_session(self, app: quart.Quart,
                           request: quart.wrappers.BaseRequestWebsocket) -> QuartSession:
        args, kwargs = self._session_args(request.cookies.get(self.get_cookie_name(app)))
        session = QuartSession(*args, **kwargs)
        if self.autoload and session.has_cookie_id:
            with contextlib.suppress(SessionLocked):  # raised again on every access (503)
                await session.aopen()
        return session

    async def save_session(self, app: quart.Quart, session: SessionMixin,
                           response: Any) -> None:
        if not isinstance(session, QuartSession):
            return
        if response is None:  # a websocket closed: no answer, so no cookie can be sent
            keep = session.loaded and not session.lock_failed and not session.needs_cookie
            await shielded(session.asave() if keep else session.arelease())
            return
        if not self._to_save(app, session, response):
            await session.arelease()  # never read (no call), or its lock was not had
            return
        try:
            await shielded(session.asave())
        except SessionBusy:
            self._busy(response)  # nothing was written: answer as a lock timeout
            return
        self._set_cookie(app, session, response, is_https(
            {"wsgi.url_scheme": quart.request.scheme,
             "HTTP_X_FORWARDED_PROTO": quart.request.headers.get("X-Forwarded-Proto", "")},
            self.options.trust_forwarded_proto))


async def _release_at_teardown(_exc: BaseException | None) -> None:
    """Release a lock still held when the request (or websocket) ends without
    ``save_session`` (an error, or the client went away and the view was cancelled)."""
    session = (quart.globals.request_ctx.session if quart.has_request_context()
               else quart.globals.websocket_ctx.session if quart.has_websocket_context()
               else None)
    if isinstance(session, QuartSession):
        await shielded(session.arelease())


def init_app(app: quart.Quart, interface: DynamoSessionInterface | None = None,
             **options: Any) -> DynamoSessionInterface:
    """Make ``app`` keep its sessions in DynamoDB; returns the session interface.

    Without ``interface`` one is built from ``app.config`` (``DYNAMO_SESSIONS_*``) and
    ``options`` (same names, lower case, taking precedence) on an async store.  Also
    releases, at request (and websocket) teardown, a lock left held by a request that failed
    or was cancelled before its session was saved.
    """
    if interface is None:
        config, interface_options = app_options(app.config, options, INTERFACE_OPTIONS)
        store = create_async_store(config, session_name=app.config["SESSION_COOKIE_NAME"])
        interface = DynamoSessionInterface(store, **interface_options)
    elif options:
        raise TypeError("give either an interface or options, not both")
    app.session_interface = interface  # type: ignore[assignment]
    app.teardown_request(_release_at_teardown)
    app.teardown_websocket(_release_at_teardown)
    return interface

