"""The served demo on ASGI: the counter app of :mod:`.web` as a Starlette app on
:class:`dynamo_sessions.asgi.SessionMiddleware`, for uvicorn.

``dynamo-sessions demo --serve --server uvicorn`` runs
``uvicorn --factory dynamo_sessions.demo.asgi:create_demo`` (see :func:`.web.serve`), configured
by the same ``DYNAMO_SESSIONS_DEMO_*`` environment variables as the gunicorn demo.  The page is
:data:`.web.PAGE`; the multi-tab page (``/tabs``) is served by the gunicorn demo only.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from ..aio_store import create_async_store
from ..asgi import SessionMiddleware, session_of
from ..config import SessionConfig
from .web import DEMO_TABLE, ENV_ENDPOINT, ENV_LOCKING, ENV_TABLE, PAGE, _max_lock_wait_seconds


def create_app(endpoint_url: str | None = None, locking: str | None = None,
               table_name: str | None = None,
               max_lock_wait_seconds: float | None = None) -> SessionMiddleware:
    """The counter demo (``/``, ``/count``, ``/logout``, ``/metrics``, ``/healthz``) as
    :func:`.web.create_app`'s; arguments default to the ``DYNAMO_SESSIONS_DEMO_*`` environment."""
    endpoint_url = endpoint_url or os.environ.get(ENV_ENDPOINT) or None
    locking = locking or os.environ.get(ENV_LOCKING, "optimistic")
    table_name = table_name or os.environ.get(ENV_TABLE, DEMO_TABLE)
    config = SessionConfig(table_name=table_name, locking=locking, endpoint_url=endpoint_url,
                           max_lock_wait_seconds=_max_lock_wait_seconds(max_lock_wait_seconds))
    store = create_async_store(config, session_name="demo")

    async def index(request: Request) -> HTMLResponse:
        count = session_of(request.scope).increment("count")
        snapshot = store.metrics.snapshot()
        by_api = ", ".join(f"{api}: {n}" for api, n in sorted(snapshot["calls"].items()))
        return HTMLResponse(PAGE.format(
            count=count, locking=html.escape(locking), pid=os.getpid(),
            calls=snapshot["total_calls"], rcu=snapshot["read_units"],
            wcu=snapshot["write_units"], by_api=html.escape(by_api or "-")))

    async def count(request: Request) -> JSONResponse:
        return JSONResponse({"count": request.session.get("count", 0), "pid": os.getpid()})

    async def logout(request: Request) -> RedirectResponse:
        session_of(request.scope).destroy()
        return RedirectResponse("/", status_code=302)

    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse({"pid": os.getpid(), **store.metrics.snapshot()})

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [Route("/", index), Route("/count", count), Route("/logout", logout),
              Route("/metrics", metrics), Route("/healthz", healthz)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.aclose()  # the store is the app's own

    return SessionMiddleware(Starlette(routes=routes, lifespan=lifespan), store=store,
                             cookie_name="demo_session", exclude_paths=["/healthz"])


def create_demo() -> Any:
    """The served ASGI demo (uvicorn's ``--factory``), configured by the environment."""
    return create_app()
