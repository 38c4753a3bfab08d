"""WSGI middleware: a lazily loaded DynamoDB session in ``environ["dynamo_sessions.session"]``.

>>> app = SessionMiddleware(app, SessionHandler(SessionConfig(locking="optimistic")))

* Nothing is read until the application touches the session: an untouched request makes no
  DynamoDB call and sends no cookie.
* The session is saved once, when the response is complete, and only what changed is written
  (the store skips unchanged data unless its expiry is due).  A body returned as a list or
  tuple is saved *before* it is handed to the server, so the client's next request always sees
  the change.  A streamed body (any other iterable) is saved when it has been fully iterated;
  one that raises or is closed early (client gone) is not saved, only released.
* Response headers are held back until the first non-empty body chunk, so a session first given
  data while the app prepares its response still gets its cookie.  A *new* session that gets
  data only after streaming has started cannot be given a cookie any more: it is not stored
  and a warning is logged (put something in it before the first chunk, or call
  ``session.ensure_id()``).
* An application error releases the session's lock without saving.  A pessimistic lock that
  stays taken for ``max_lock_wait_seconds`` answers ``503`` with ``Retry-After`` (status and
  body configurable) - never a hang, never an empty session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from .errors import SessionBusy
from .handler import SessionHandler
from .metrics import logger
from .store import SessionStore
from .web import (
    RequestSession,
    WebOptions,
    is_https,
    lock_timeout_response,
    read_cookie,
    session_cookie_headers,
    store_of,
    valid_cookie_id,
)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SessionMiddleware:
    """Wraps a WSGI application; see the module docstring for the contract."""

    def __init__(self, app: WSGIApp, handler_or_store: SessionHandler | SessionStore,
                 options: WebOptions | None = None, **option_overrides: Any) -> None:
        self.app = app
        self.store = store_of(handler_or_store)
        self.options = (options or WebOptions()).replace(**option_overrides)

    def session_for(self, environ: dict[str, Any]) -> RequestSession:
        """A new lazy session for this request's cookie (no DynamoDB call)."""
        options = self.options
        raw = read_cookie(str(environ.get("HTTP_COOKIE", "")), options.cookie_name)
        cookie_id = raw if valid_cookie_id(raw, options.id_pattern) else None
        return RequestSession(self.store, cookie_id, strict=options.strict,
                           cookie_present=raw is not None)

    def __call__(self, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        session = self.session_for(environ)
        environ[self.options.environ_key] = session
        response = _Response(self.options, environ, session, start_response)
        try:
            result = self.app(environ, response.start_response)
        except SessionBusy as exc:
            session.release()
            return response.lock_timeout(exc)
        except BaseException:
            session.release()
            raise
        if isinstance(result, (list, tuple)):
            try:
                response.finish()
            except SessionBusy as exc:  # the save kept losing races: nothing was written
                return response.lock_timeout(exc)
            return result
        return _Body(result, response)


class _Response:
    """Holds the app's status and headers until the body starts, then adds the cookie."""

    def __init__(self, options: WebOptions, environ: dict[str, Any], session: RequestSession,
                 start_response: StartResponse) -> None:
        self.options = options
        self.environ = environ
        self.session = session
        self.server_start_response = start_response
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None
        self.server_write: Callable[[bytes], Any] | None = None
        self.cookie_sent = False
        self.finished = False

    @property
    def headers_sent(self) -> bool:
        return self.server_write is not None

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], Any]:
        if exc_info is not None and self.headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers, self.exc_info = status, list(headers), exc_info
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: headers go out first."""
        self.send_headers()
        assert self.server_write is not None
        self.server_write(data)

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        if self.status is None:
            raise RuntimeError("the application returned a body without calling start_response")
        headers = self.headers + self.session_headers()
        self.server_write = self.server_start_response(self.status, headers, self.exc_info)

    def session_headers(self) -> list[tuple[str, str]]:
        options = self.options
        secure = options.cookie_secure is True or (
            options.cookie_secure == "auto"
            and is_https(self.environ, options.trust_forwarded_proto)
        )
        headers, self.cookie_sent = session_cookie_headers(options, self.session, secure)
        return headers

    def finish(self) -> None:
        """The body is complete: save (unless it cannot get its cookie any more), then headers."""
        if self.finished:
            return
        self.finished = True
        if self.headers_sent and self.session.needs_cookie and not self.cookie_sent:
            logger.warning("a new session got data after the response had started streaming; "
                           "it cannot get a cookie and was not stored")
            self.session.release()
            return
        self.session.save()
        self.send_headers()

    def lock_timeout(self, exc: SessionBusy) -> list[bytes]:
        if self.headers_sent:
            raise exc
        status, headers, body = lock_timeout_response(self.options)
        # The server has not seen any headers yet (they are held back here): a first call.
        self.server_start_response(status, headers)
        self.finished = True
        return [body]


class _Body:
    """The app's streamed body: headers before the first chunk, save after the last."""

    def __init__(self, iterable: Iterable[bytes], response: _Response) -> None:
        self._iterable = iterable
        self._iterator: Iterator[bytes] = iter(iterable)
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        response = self._response
        try:
            chunk = next(self._iterator)
        except StopIteration:
            try:
                response.finish()
            except SessionBusy as exc:  # an empty body whose save kept losing races
                if response.headers_sent:
                    raise
                self._iterator = iter(response.lock_timeout(exc))
                return next(self._iterator)
            raise
        except SessionBusy as exc:
            response.session.release()
            if response.headers_sent:
                raise
            self._iterator = iter(response.lock_timeout(exc))
            return next(self._iterator)
        except BaseException:
            response.session.release()
            raise
        if chunk and not response.headers_sent:
            response.send_headers()
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            if not self._response.finished:
                self._response.session.release()  # cut short: nothing is saved
