"""Starlette, FastAPI and Litestar apps on ``dynamo_sessions.asgi.SessionMiddleware``: the
README's examples, served by uvicorn in the tests.  Each module has ``create_app(**options)``
(the options of the middleware) and ``app``, built from the environment for
``UvicornProcess("tests.asgi_apps.<module>:app", env)``."""

from __future__ import annotations

import os

from dynamo_sessions import SessionConfig


def env_config() -> SessionConfig:
    """The app's ``SessionConfig`` from ``ASGI_APP_TABLE``, ``ASGI_APP_ENDPOINT_URL`` and
    ``ASGI_APP_LOCKING`` (default ``optimistic``)."""
    return SessionConfig(table_name=os.environ.get("ASGI_APP_TABLE", "sessions"),
                         endpoint_url=os.environ.get("ASGI_APP_ENDPOINT_URL") or None,
                         locking=os.environ.get("ASGI_APP_LOCKING", "optimistic"))
