"""The Django engine's process-wide part and its steps' two runners (:mod:`.django` uses them).

* :func:`backend` - the stores and options built once from ``settings.DYNAMO_SESSIONS``
  (rebuilt when a test overrides those settings): the sync store, and the async store made on
  the first async call.
* :data:`Steps` - the engine's operations (load, save, create, delete, exists) are written
  once, as generators asking for the request session's calls; :func:`run_steps` runs one on
  the sync request session (boto3), :func:`arun_steps` on the async one (aiobotocore, on the
  event loop).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed

from .config import SessionConfig
from .errors import ConfigError
from .store import SessionStore as DynamoStore
from .store import create_store
from .web import MAX_COOKIE_ID_CHARS, RequestSession, WebOptions

WEB_OPTIONS = ("session_name", "id_pattern", "lock_timeout_status", "lock_timeout_body",
               "retry_after_seconds")
DJANGO_ID_PATTERN = r"[A-Za-z0-9_.~:-]{8,256}"
"""The keys this engine accepts by default: Django's rule (8 characters or more) within the
store's id characters that a cookie carries unquoted (RFC 6265 cookie-octets, so not PHP's
``,``), at most 256 (the store's and the cookie parser's limit).  Django's own keys (32 of
``[a-z0-9]``) and this engine's (43 of ``[A-Za-z0-9_-]``) both match."""
MAX_KEY_BYTES = 2048
"""DynamoDB's limit on a partition key value: ``<session_name>_<id>`` must fit."""

T = TypeVar("T")
Steps = Generator[tuple[str, tuple[Any, ...]], Any, T]
"""One of the engine's operations: it yields ``(name, args)`` for each call of the request
session it needs (``load``, ``save_existing``, ...), is sent the result (or has the error
thrown in) and returns its own.  :func:`run_steps` runs it on the sync request session,
:func:`arun_steps` on the async one."""


async def arun_steps(steps: Steps[T], request: Any, call: Any = None) -> T:
    """Run ``steps`` on an async request session (each call awaited on the event loop);
    ``call(request, name, args)`` makes one call (default: awaits ``a<name>``)."""
    call = call or _acall
    answer: Any = None
    failure: Exception | None = None
    while True:
        try:
            name, args = steps.send(answer) if failure is None else steps.throw(failure)
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            answer, failure = await call(request, name, args), None
        except Exception as exc:
            answer, failure = None, exc


async def _acall(request: Any, name: str, args: tuple[Any, ...]) -> Any:
    return await getattr(request, ASYNC_NAMES[name])(*args)


async def _call(request: Any, name: str, args: tuple[Any, ...]) -> Any:
    return getattr(request, name)(*args)  # a sync call: never suspends


def run_steps(steps: Steps[T], request: Any) -> T:
    """Run ``steps`` on a sync :class:`RequestSession`: :func:`arun_steps` with sync calls,
    a coroutine that never suspends, run to its end here."""
    runner = arun_steps(steps, request, _call)
    try:
        runner.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        runner.close()
    raise RuntimeError("the sync steps suspended")  # pragma: no cover - _call never does


ASYNC_NAMES = {name: f"a{name}" for name in (
    "load", "exists", "create", "save_existing", "delete", "retire_old", "release_locks")}
"""The async request session's twin of each call the steps make."""


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
        self.session_name: str = session_name
        self.native_async = self.config.client is None
        """The async methods run on the event loop (the async store builds a client per loop
        from the options); a configured ``client`` is a boto3 one: they run it on a thread."""
        self.async_store: Any = None
        """The async store (an ``AsyncSessionStore``), made on the first async call."""

    def async_request(self) -> RequestSession:
        """A request session on the async store (made, with the store, on first use)."""
        from .aio_store import create_async_store

        with _backend_lock:
            if self.async_store is None:
                self.async_store = create_async_store(self.config,
                                                      session_name=self.session_name)
        return RequestSession(self.async_store, keep_empty=True)


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
