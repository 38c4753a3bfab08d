"""What the WSGI, Flask and Django adapters share: cookie ids, the lazy session, lock timeouts.

* Session ids come from :func:`store.new_session_id` (256 bits from ``secrets``).  A cookie
  value is used only when it has the exact shape of such an id (``id_pattern``); anything else
  (oversized, non-ASCII, wrong length or characters) counts as no session and never reaches
  DynamoDB.
* :class:`WebSession` loads nothing until the application first touches it, so a request that
  never uses its session makes no DynamoDB call.
* Strict mode (on by default): an id the store does not know is never adopted; the session
  gets a fresh id when it is first saved (no session fixation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import ConfigError, LockLost, LockTimeout, SessionGone, SessionMoved
from .handler import SessionHandler
from .merge import Number
from .metrics import logger
from .store import LoadedSession, SessionStore, create_store, log_id, new_session_id

ENVIRON_KEY = "dynamo_sessions.session"
DEFAULT_ID_PATTERN = r"[A-Za-z0-9_-]{43}"
"""The shape of :func:`new_session_id` ids (32 random bytes, URL-safe base64)."""
PHP_ID_PATTERN = r"[A-Za-z0-9,-]{22,256}"
"""PHP's ids, for a table shared with the PHP handler (``session.sid_bits_per_character``)."""
MAX_COOKIE_ID_CHARS = 256
"""Longer cookie values are rejected before any pattern matching."""


@dataclasses.dataclass(frozen=True)
class WebOptions:
    """Options of the web adapters (the store's own options are in ``SessionConfig``)."""

    cookie_name: str = "session"
    cookie_domain: str | None = None
    cookie_path: str = "/"
    cookie_httponly: bool = True
    cookie_samesite: str | None = "Lax"
    """``"Lax"``, ``"Strict"``, ``"None"`` or None (attribute not sent)."""
    cookie_secure: bool | str = "auto"
    """True, False, or ``"auto"``: Secure when the request came over https."""
    trust_forwarded_proto: bool = False
    """Believe ``X-Forwarded-Proto`` for "came over https" (only behind your own proxy)."""
    cookie_max_age_seconds: int | None = None
    """None: a browser-session cookie; else a persistent cookie re-sent on each use."""
    strict: bool = True
    """Replace ids the store does not know by fresh ones (no session fixation)."""
    id_pattern: str = DEFAULT_ID_PATTERN
    """Cookie values that may be session ids; use ``PHP_ID_PATTERN`` for a PHP-shared table."""
    lock_timeout_status: int = 503
    lock_timeout_body: str = (
        "This session is busy with another request (another tab?). Please retry in a moment."
    )
    retry_after_seconds: int = 1
    environ_key: str = ENVIRON_KEY

    def __post_init__(self) -> None:
        if self.cookie_samesite not in (None, "Lax", "Strict", "None"):
            raise ConfigError(f"cookie_samesite={self.cookie_samesite!r}: must be "
                              "'Lax', 'Strict', 'None' or None")
        if self.cookie_secure not in (True, False, "auto"):
            raise ConfigError(f"cookie_secure={self.cookie_secure!r}: must be True, False "
                              "or 'auto'")
        if not 100 <= self.lock_timeout_status <= 599:
            raise ConfigError(f"lock_timeout_status={self.lock_timeout_status!r}: "
                              "must be an HTTP status code")
        if self.retry_after_seconds < 0:
            raise ConfigError("retry_after_seconds must be >= 0")
        try:
            re.compile(self.id_pattern)
        except re.error as exc:
            raise ConfigError(f"id_pattern={self.id_pattern!r}: {exc}") from exc

    @classmethod
    def option_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> WebOptions:
        """A copy with some options changed; unknown names raise ``ConfigError``."""
        unknown = sorted(set(changes) - set(self.option_names()))
        if unknown:
            raise ConfigError(f"unknown web option(s) {unknown}; known: {self.option_names()}")
        return dataclasses.replace(self, **changes)


# --- ids and cookies --------------------------------------------------------------------------


def valid_cookie_id(value: object, pattern: str = DEFAULT_ID_PATTERN) -> bool:
    """True when ``value`` may be a session id: a short ASCII str matching ``pattern``."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_COOKIE_ID_CHARS
            and value.isascii() and re.fullmatch(pattern, value) is not None)


def read_cookie(header: str, name: str) -> str | None:
    """The first value of cookie ``name`` in a ``Cookie`` header (None when absent).

    A tolerant parser: malformed pairs are skipped, never raised on.
    """
    if not header or name not in header:
        return None
    for pair in header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def is_https(environ: Mapping[str, Any], trust_forwarded_proto: bool = False) -> bool:
    """The request came over https (``X-Forwarded-Proto`` only when trusted)."""
    if environ.get("wsgi.url_scheme") == "https":
        return True
    if trust_forwarded_proto:
        forwarded = str(environ.get("HTTP_X_FORWARDED_PROTO", ""))
        return forwarded.split(",")[0].strip().lower() == "https"
    return False


def set_cookie_header(options: WebOptions, value: str, secure: bool,
                      max_age_seconds: int | None) -> str:
    """A ``Set-Cookie`` header value; ``max_age_seconds=0`` deletes the cookie."""
    parts = [f"{options.cookie_name}={value}", f"Path={options.cookie_path}"]
    if options.cookie_domain:
        parts.append(f"Domain={options.cookie_domain}")
    if max_age_seconds is not None:
        parts.append(f"Max-Age={max_age_seconds}")
        if max_age_seconds == 0:
            parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    if secure:
        parts.append("Secure")
    if options.cookie_httponly:
        parts.append("HttpOnly")
    if options.cookie_samesite:
        parts.append(f"SameSite={options.cookie_samesite}")
    return "; ".join(parts)


# --- stores -----------------------------------------------------------------------------------


def store_of(handler_or_store: SessionHandler | SessionStore) -> SessionStore:
    """The store behind a handler (or the store itself)."""
    if isinstance(handler_or_store, SessionHandler):
        return handler_or_store.store
    if isinstance(handler_or_store, SessionStore):
        return handler_or_store
    raise TypeError("expected a SessionHandler or a SessionStore, got "
                    f"{type(handler_or_store).__name__}")


class LifetimeStores:
    """Stores that differ from ``base`` only in ``session_lifetime_seconds``.

    Flask's permanent sessions and Django's ``set_expiry`` give sessions their own lifetimes;
    the store has one per config, so one store per lifetime is kept (sharing the client, the
    clock and the metrics).  At most ``limit`` are kept; the oldest is dropped first.
    """

    def __init__(self, base: SessionStore, limit: int = 64) -> None:
        self.base = base
        self.limit = limit
        self._stores: dict[int, SessionStore] = {base.config.session_lifetime_seconds: base}
        self._lock = threading.Lock()

    def for_lifetime(self, seconds: int | None) -> SessionStore:
        if seconds is None or seconds == self.base.config.session_lifetime_seconds:
            return self.base
        with self._lock:
            return self._get(seconds)

    def _get(self, seconds: int) -> SessionStore:
        store = self._stores.get(seconds)
        if store is None:
            config = dataclasses.replace(self.base.config, session_lifetime_seconds=seconds)
            store = create_store(config, self.base.client, self.base.session_name,
                                 self.base.clock)
            store.metrics = self.base.metrics
            if len(self._stores) >= self.limit:
                oldest = next(key for key in self._stores if self._stores[key] is not self.base)
                del self._stores[oldest]
            self._stores[seconds] = store
        return store


# --- the session object -----------------------------------------------------------------------


class LazySession:
    """One request's session: a dict-like object loaded on first access, saved once at the end.

    ``regenerate()`` moves the data to a new id (at save the old item becomes a short-lived
    marker, if unchanged since it was read - else the other request's changes are merged in
    first); ``destroy()`` empties the session and deletes its item: the old id is dead, and data
    set afterwards starts a new session (new id and cookie).  ``increment(key, by)`` adds to a
    counter without ever losing a concurrent request's increment.  A request whose cookie names
    a moved session (it raced a login) is served an empty session that is never stored and
    gets no ``Set-Cookie`` at all.  ``LockTimeout`` from a pessimistic load is raised on every
    access, never turned into an empty session.
    """

    def __init__(self, store: SessionStore, cookie_id: str | None, *, strict: bool = True,
                 cookie_present: bool = False,
                 on_lock_timeout: Callable[[LockTimeout], BaseException] | None = None) -> None:
        self.store = store
        self.strict = strict
        self.cookie_present = cookie_present
        """The request carried a cookie of this name (valid or not)."""
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

    # --- loading ------------------------------------------------------------------------------

    def _ensure(self) -> dict[str, Any]:
        self.accessed = True
        if self._data is None:
            self._load()
            assert self._data is not None
        return self._data

    def _load(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._finished:
            raise RuntimeError("this request's session was already saved or released")
        if self._cookie_id is not None:
            try:
                loaded = self.store.load(self._cookie_id)
            except LockTimeout as exc:
                self._failure = self._on_lock_timeout(exc) if self._on_lock_timeout else exc
                raise self._failure from exc
            if loaded.moved:
                self.moved = True  # its old id is never served again, strict or not
            elif loaded.existed or not self.strict:
                self._held = loaded
                self._existing_id = loaded.session_id
                self._data = loaded.data
                return
            self.store.release(loaded)  # an unknown id is never adopted (no fixation)
            self._cookie_id = None
        self._data = {}

    @property
    def loaded(self) -> bool:
        """The session was read (or started empty) in this request."""
        return self._data is not None

    @property
    def lock_failed(self) -> bool:
        return self._failure is not None

    # --- mapping ------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._ensure()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._ensure()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._ensure()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ensure()))

    def __len__(self) -> int:
        return len(self._ensure())

    def __contains__(self, key: object) -> bool:
        return key in self._ensure()

    def __bool__(self) -> bool:
        return bool(self._ensure())

    def __repr__(self) -> str:
        state = repr(self._data) if self._data is not None else "<not loaded>"
        return f"<{type(self).__name__} {state}>"

    def get(self, key: str, default: Any = None) -> Any:
        return self._ensure().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        data = self._ensure()
        if key not in data:
            self.modified = True
        return data.setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        data = self._ensure()
        if key in data:
            self.modified = True
        return data.pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._ensure().update(*args, **kwargs)
        self.modified = True

    def clear(self) -> None:
        self._ensure().clear()
        self.modified = True

    def keys(self) -> Any:
        return self._ensure().keys()

    def values(self) -> Any:
        return self._ensure().values()

    def items(self) -> Any:
        return self._ensure().items()

    def copy(self) -> dict[str, Any]:
        return dict(self._ensure())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazySession):
            return self._ensure() == other._ensure()
        return self._ensure() == other

    __hash__ = None  # type: ignore[assignment]

    # --- ids ----------------------------------------------------------------------------------

    @property
    def new(self) -> bool:
        """No stored session is behind this one (yet)."""
        self._ensure()
        return self._existing_id is None

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
        data = self._ensure()
        counter = self._held if self._held is not None else LoadedSession("", "", data)
        value = counter.increment(key, by)
        self.modified = True
        return value

    def regenerate(self) -> str:
        """Move the data to a new id (call it on login).  At save the old id is retired: its
        item becomes a short-lived data-less marker if it is unchanged since it was read,
        else the changes another request made to it meanwhile are merged in first."""
        self._ensure()
        self.moved = False  # a login in a request that raced another login: a fresh session
        if self._held is not None:
            if self._old is None:
                self._old = self._held
            else:
                self.store.release(self._held)
            self._held = None
        self._existing_id = None
        self._new_id = new_session_id()
        self.modified = True
        return self._new_id

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

    def save(self, store: SessionStore | None = None) -> None:
        """Store the data once (write only when changed or the expiry is due; empty data
        deletes); release every lock.  A session never touched costs no call."""
        if self._finished:
            return
        self._finished = True
        if self._data is None:
            return
        store = store or self.store
        data = self._data
        try:
            while self._doomed:
                doomed = self._doomed.pop(0)
                with contextlib.suppress(SessionGone):  # deleted or moved meanwhile: dead
                    store.save(doomed, {})  # destroyed: deleted
            if self._held is not None:
                held, self._held = self._held, None
                self._store(store, held, data)  # writes only changes; empty data deletes
            elif self.moved:
                if data:
                    logger.warning("the cookie's session was moved to a new id by a login "
                                   "answered meanwhile; this request's changes were not stored")
            elif data:
                if self._new_id is None:
                    self._new_id = new_session_id()
                created = store.create(self._new_id, data)
                if self._old is not None:
                    old, self._old = self._old, None
                    try:
                        store.retire(old, created)
                    except LockLost:
                        store.delete(created.session_id)  # refused: the old id stays
                        raise
            elif self._old is not None:
                old, self._old = self._old, None
                self._store(store, old, {})  # regenerated, then emptied: deleted
        finally:
            self._release_held(store)

    def _store(self, store: SessionStore, session: LoadedSession, data: dict[str, Any]) -> None:
        try:
            store.save(session, data)
        except SessionMoved:
            self.moved = True
            self._existing_id = None  # never answered with: the client holds the new id
            logger.warning("session %s was moved to a new id by a login answered meanwhile; "
                           "this request's changes were not stored", log_id(session.session_id))
        except SessionGone:
            self.gone = True
            logger.info("session %s was deleted by another request; not recreated",
                        log_id(session.session_id))

    def release(self) -> None:
        """Give up any lock without saving (the request failed or was cut short)."""
        if self._finished:
            return
        self._finished = True
        self._release_held(self.store)

    def _release_held(self, store: SessionStore) -> None:
        for session in (self._held, self._old, *self._doomed):
            if session is not None:
                store.release(session)
        self._held = self._old = None
        self._doomed = []


def lock_timeout_response(options: WebOptions) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers and body of the answer to a request whose session stayed locked."""
    from http import HTTPStatus

    try:
        reason = HTTPStatus(options.lock_timeout_status).phrase
    except ValueError:
        reason = "Session Locked"
    body = options.lock_timeout_body.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(body))),
               ("Retry-After", str(options.retry_after_seconds)),
               ("Cache-Control", "no-store")]
    return f"{options.lock_timeout_status} {reason}", headers, body
