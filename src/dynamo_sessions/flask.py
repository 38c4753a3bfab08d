"""Flask sessions in DynamoDB: ``init_app(app)``, or ``app.session_interface = ...``.

>>> from dynamo_sessions.flask import init_app
>>> app.config["DYNAMO_SESSIONS_TABLE_NAME"] = "sessions"
>>> init_app(app)

Every ``DYNAMO_SESSIONS_<OPTION>`` key of ``app.config`` is read: ``<OPTION>`` is a
``SessionConfig`` option (``TABLE_NAME``, ``LOCKING`` - ``optimistic`` unless set,
``ENDPOINT_URL``, ``REGION_NAME``, ``SESSION_LIFETIME_SECONDS``, ``MAX_LOCK_WAIT_SECONDS``, ...)
or one of ``STRICT``, ``ID_PATTERN``, ``TRUST_FORWARDED_PROTO``, ``DEFAULT_SAMESITE``,
``LOCK_TIMEOUT_STATUS``, ``LOCK_TIMEOUT_BODY``, ``RETRY_AFTER_SECONDS``; an unknown one raises
``ConfigError``.  Flask's own ``SESSION_COOKIE_*`` settings name and shape the cookie;
``SESSION_COOKIE_SAMESITE`` unset means ``Lax`` (``DEFAULT_SAMESITE``), and the cookie is
``Secure`` whenever the request came over https even if ``SESSION_COOKIE_SECURE`` is off.

A permanent session (``session.permanent = True``) gets a cookie and an item that both live
``PERMANENT_SESSION_LIFETIME``; other sessions get a browser-session cookie and an item living
``session_lifetime_seconds`` after its last write.  The session is loaded on first access only:
a request that never touches it makes no DynamoDB call.
"""

from __future__ import annotations

from typing import Any

import flask
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.exceptions import ServiceUnavailable

from .config import SessionConfig
from .errors import ConfigError, LockTimeout, SessionBusy
from .handler import SessionHandler
from .store import SessionStore, create_store
from .web import (
    DEFAULT_ID_PATTERN,
    RequestSession,
    WebOptions,
    is_https,
    store_of,
    valid_cookie_id,
)

CONFIG_PREFIX = "DYNAMO_SESSIONS_"
INTERFACE_OPTIONS = ("strict", "id_pattern", "trust_forwarded_proto", "default_samesite",
                     "lock_timeout_status", "lock_timeout_body", "retry_after_seconds")


class SessionLocked(ServiceUnavailable, LockTimeout):
    """The session stayed locked by another request: Flask answers with ``response`` (503)."""


class DynamoSession(RequestSession, SessionMixin):  # type: ignore[override]
    """Flask's ``session``: a lazily loaded :class:`RequestSession` with Flask's attributes."""


class InterfaceRules:
    """What the Flask and Quart interfaces share: their options, the 503 answers, the cookie
    decisions after a save.  Mixed into a framework's ``SessionInterface`` (which gives the
    ``get_cookie_*`` helpers); ``response_class`` is the framework's response."""

    response_class: Any = flask.Response

    def __init__(self, handler_or_store: SessionHandler | SessionStore, *,
                 strict: bool = True, id_pattern: str = DEFAULT_ID_PATTERN,
                 trust_forwarded_proto: bool = False, default_samesite: str | None = "Lax",
                 lock_timeout_status: int = 503,
                 lock_timeout_body: str = WebOptions.lock_timeout_body,
                 retry_after_seconds: int = 1) -> None:
        self.store: Any = self._store_of(handler_or_store)
        """The one store: a permanent session's lifetime travels with its save."""
        self.options = WebOptions(strict=strict, id_pattern=id_pattern,
                                  trust_forwarded_proto=trust_forwarded_proto,
                                  cookie_samesite=default_samesite,
                                  lock_timeout_status=lock_timeout_status,
                                  lock_timeout_body=lock_timeout_body,
                                  retry_after_seconds=retry_after_seconds)

    def _store_of(self, handler_or_store: Any) -> Any:
        return store_of(handler_or_store)

    def _locked(self, exc: LockTimeout) -> BaseException:
        options = self.options
        response = self.response_class(
            options.lock_timeout_body, status=options.lock_timeout_status,
            mimetype="text/plain", headers={"Retry-After": str(options.retry_after_seconds),
                                            "Cache-Control": "no-store"})
        return SessionLocked(str(exc), response=response,
                             retry_after=options.retry_after_seconds)

    def _busy(self, response: Any) -> None:
        options = self.options
        response.status_code = options.lock_timeout_status
        response.set_data(options.lock_timeout_body)
        response.mimetype = "text/plain"
        response.headers["Retry-After"] = str(options.retry_after_seconds)
        response.headers["Cache-Control"] = "no-store"

    def get_cookie_samesite(self, app: Any) -> str | None:
        samesite: str | None = app.config["SESSION_COOKIE_SAMESITE"]
        return samesite or self.options.cookie_samesite

    def _session_args(self, raw: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The request session's arguments for the request's cookie value ``raw``."""
        cookie_id = raw if valid_cookie_id(raw, self.options.id_pattern) else None
        return (self.store, cookie_id), {"strict": self.options.strict,
                                         "cookie_present": raw is not None,
                                         "on_lock_timeout": self._locked}

    def _to_save(self, app: Any, session: RequestSession, response: Any) -> bool:
        """Before the save: ``Vary: Cookie`` when accessed, the permanent lifetime; False
        when there is nothing to save (never loaded; or the lock was not had: release)."""
        if session.accessed:
            response.vary.add("Cookie")
        if not session.loaded or session.lock_failed:
            return False
        if session.get("_permanent", False):
            session.lifetime_seconds = int(app.permanent_session_lifetime.total_seconds())
        return True

    def _set_cookie(self, app: Any, session: Any, response: Any, https: bool) -> None:
        """After the save: the cookie set, refreshed or deleted (``https``: the request's)."""
        interface: Any = self  # the framework's SessionInterface gives the get_cookie_* helpers
        name, domain, path = (interface.get_cookie_name(app), interface.get_cookie_domain(app),
                              interface.get_cookie_path(app))
        secure = interface.get_cookie_secure(app) or https
        samesite = self.get_cookie_samesite(app)
        httponly = interface.get_cookie_httponly(app)
        partitioned = interface.get_cookie_partitioned(app)
        if session.needs_cookie_deleted:
            response.delete_cookie(name, domain=domain, path=path, secure=secure,
                                   samesite=samesite, httponly=httponly,
                                   partitioned=partitioned)
            return
        if session.id is None or session.gone or session.moved:
            return
        if session.needs_cookie or session.modified or (
            session.get("_permanent", False) and app.config["SESSION_REFRESH_EACH_REQUEST"]
        ):
            response.set_cookie(name, session.id,
                                expires=interface.get_expiration_time(app, session),
                                httponly=httponly, domain=domain, path=path, secure=secure,
                                samesite=samesite, partitioned=partitioned)


class DynamoSessionInterface(InterfaceRules, SessionInterface):
    """A Flask ``SessionInterface`` keeping sessions in DynamoDB through a handler or store.

    ``regenerate()`` (on login): ``session.regenerate()``; logout: ``session.destroy()`` (or
    ``session.clear()``, which also deletes the item).
    """

    # --- Flask's contract ---------------------------------------------------------------------

    def open_session(self, app: flask.Flask, request: flask.Request) -> DynamoSession:
        args, kwargs = self._session_args(request.cookies.get(self.get_cookie_name(app)))
        return DynamoSession(*args, **kwargs)

    def save_session(self, app: flask.Flask, session: SessionMixin,
                     response: flask.Response) -> None:
        if not isinstance(session, DynamoSession):
            return
        if not self._to_save(app, session, response):
            session.release()  # never read (no call), or its lock was not had
            return
        try:
            session.save()
        except SessionBusy:
            # The save kept losing races (nothing was written): the view's answer would claim
            # a change that is not stored - answer as a lock timeout instead, and let the
            # client retry.  The response object Flask will send is the one changed here.
            self._busy(response)
            return
        self._set_cookie(app, session, response,
                         is_https(flask.request.environ, self.options.trust_forwarded_proto))


def _release_at_teardown(_exc: BaseException | None) -> None:
    """Release a lock still held when the request ends without ``save_session`` (errors)."""
    session = getattr(flask.globals.request_ctx, "_session", None)
    if isinstance(session, RequestSession):
        session.release()


def options_from_config(config: Any, interface_names: tuple[str, ...] = INTERFACE_OPTIONS
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SessionConfig options, interface options) from ``DYNAMO_SESSIONS_*`` keys."""
    store_options: dict[str, Any] = {}
    interface_options: dict[str, Any] = {}
    known = SessionConfig.option_names()
    for key, value in config.items():
        if not key.startswith(CONFIG_PREFIX):
            continue
        name = key[len(CONFIG_PREFIX):].lower()
        if name in known:
            store_options[name] = value
        elif name in interface_names:
            interface_options[name] = value
        else:
            raise ConfigError(f"unknown setting {key!r}: DYNAMO_SESSIONS_ + one of "
                              f"{sorted(known + list(interface_names))} (upper case)")
    store_options.setdefault("locking", "optimistic")
    return store_options, interface_options


def app_options(app_config: Any, options: dict[str, Any],
                interface_names: tuple[str, ...] = INTERFACE_OPTIONS
                ) -> tuple[SessionConfig, dict[str, Any]]:
    """The store's config and the interface's options from an app's ``DYNAMO_SESSIONS_*``
    keys and ``init_app``'s ``options`` (same names, lower case, taking precedence)."""
    store_options, interface_options = options_from_config(app_config, interface_names)
    for name, value in options.items():
        if name in interface_names:
            interface_options[name] = value
        else:
            store_options[name] = value
    return SessionConfig.from_options(store_options), interface_options


def init_app(app: flask.Flask, interface: DynamoSessionInterface | None = None,
             **options: Any) -> DynamoSessionInterface:
    """Make ``app`` keep its sessions in DynamoDB; returns the session interface.

    Without ``interface`` one is built from ``app.config`` (``DYNAMO_SESSIONS_*``) and
    ``options`` (same names, lower case, taking precedence).  Also releases, at request
    teardown, a lock left held by a request that failed before its session was saved.
    """
    if interface is None:
        config, interface_options = app_options(app.config, options)
        store = create_store(config, session_name=app.config["SESSION_COOKIE_NAME"])
        interface = DynamoSessionInterface(store, **interface_options)
    elif options:
        raise TypeError("give either an interface or options, not both")
    app.session_interface = interface
    app.teardown_request(_release_at_teardown)
    return interface
