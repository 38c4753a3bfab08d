"""What the WSGI, Flask and Django adapters share: cookie ids, the lazy session, lock timeouts.

* Session ids come from :func:`store.new_session_id` (256 bits from ``secrets``).  A cookie
  value is used only when it has the exact shape of such an id (``id_pattern``); anything else
  (oversized, non-ASCII, wrong length or characters) counts as no session and never reaches
  DynamoDB.
* :class:`RequestSession` (``request.py``; also :data:`LazySession`) is one request's session:
  it loads nothing until the application first touches it, so a request that never uses its
  session makes no DynamoDB call.
* Strict mode (on by default): an id the store does not know is never adopted; the session
  gets a fresh id when it is first saved (no session fixation).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .handler import SessionHandler
from .request import RequestSession as RequestSession
from .store import SessionStore

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


def session_cookie_headers(options: WebOptions, session: RequestSession,
                           secure: bool) -> tuple[list[tuple[str, str]], bool]:
    """The response headers a request's session needs (``Vary``, ``Set-Cookie``) and whether a
    cookie carrying its id is among them; none for a session never loaded."""
    if not session.loaded:
        return [], False
    headers = [("Vary", "Cookie")]
    if session.needs_cookie or (options.cookie_max_age_seconds is not None
                                and session.id is not None and not session.gone
                                and not session.moved and not session.needs_cookie_deleted):
        headers.append(("Set-Cookie", set_cookie_header(
            options, session.ensure_id(), secure, options.cookie_max_age_seconds)))
        return headers, True
    if session.needs_cookie_deleted:
        headers.append(("Set-Cookie", set_cookie_header(options, "", secure, 0)))
    return headers, False


# --- stores -----------------------------------------------------------------------------------


def store_of(handler_or_store: SessionHandler | SessionStore) -> SessionStore:
    """The store behind a handler (or the store itself)."""
    if isinstance(handler_or_store, SessionHandler):
        return handler_or_store.store
    if isinstance(handler_or_store, SessionStore):
        return handler_or_store
    raise TypeError("expected a SessionHandler or a SessionStore, got "
                    f"{type(handler_or_store).__name__}")


LazySession = RequestSession
"""The name this object had before it served the handler and Django too."""


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
