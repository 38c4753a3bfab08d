"""The served demo on ASGI: :mod:`.web`'s counter app and multi-tab page as Starlette apps
on :class:`dynamo_sessions.asgi.SessionMiddleware`, for uvicorn.

``dynamo-sessions demo --serve --server uvicorn`` runs
``uvicorn --factory dynamo_sessions.demo.asgi:create_demo`` (see :func:`.web.serve`), configured
by the same ``DYNAMO_SESSIONS_DEMO_*`` environment variables as the gunicorn demo.  The pages, the
multi-tab page's rules and its ``X-Demo-Cost`` header are :mod:`.web`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import html
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route

from ..aio_store import AsyncSessionStore, create_async_store
from ..asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    SessionMiddleware,
    load_session,
)
from ..config import LOCKING_MODES, SessionConfig
from ..metrics import Metrics, OperationMetrics
from .web import (
    COST_HEADER,
    DEMO_TABLE,
    ENV_ENDPOINT,
    ENV_LOCKING,
    ENV_TABLE,
    MAX_WORK_MS,
    PAGE,
    TAB_KEY,
    _max_lock_wait_seconds,
    add_call,
    add_waits,
    cost_header,
    tabs_page,
)


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
        count = (await load_session(request)).increment("count")
        snapshot = store.metrics.snapshot()
        by_api = ", ".join(f"{api}: {n}" for api, n in sorted(snapshot["calls"].items()))
        return HTMLResponse(PAGE.format(
            count=count, locking=html.escape(locking), pid=os.getpid(),
            calls=snapshot["total_calls"], rcu=snapshot["read_units"],
            wcu=snapshot["write_units"], by_api=html.escape(by_api or "-")))

    async def count(request: Request) -> JSONResponse:
        session = await load_session(request)  # read without blocking the event loop
        return JSONResponse({"count": session.get("count", 0), "pid": os.getpid()})

    async def logout(request: Request) -> RedirectResponse:
        (await load_session(request)).destroy()
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



# --- the multi-tab page ---------------------------------------------------------------------

_COST: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar("demo_cost",
                                                                      default=None)
"""The current request's cost; the store's tasks copy the request's context, so its calls
land on that request's figures, whatever other requests the worker serves meanwhile."""


def _count_call(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    cost = _COST.get()
    if cost is not None:
        add_call(cost, parsed, model)


def _note_operation(operation: OperationMetrics) -> None:
    cost = _COST.get()
    if cost is not None:
        add_waits(cost, operation)


def _metered(app: ASGIApp) -> ASGIApp:
    """``app`` (the session middleware) with a fresh cost per request, sent in ``X-Demo-Cost``
    once the session is saved (the session middleware saves before passing the start on)."""

    async def metered(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        cost = Metrics()
        token = _COST.set(cost)

        async def send_with_cost(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()),
                                      (COST_HEADER.lower().encode(),
                                       cost_header(cost).encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_cost)
        finally:
            _COST.reset(token)

    return metered


def tabs_app(mode: str, table_name: str, endpoint_url: str | None,
             max_lock_wait_seconds: float) -> tuple[ASGIApp, AsyncSessionStore]:
    """:func:`.web.tabs_app` on ASGI (``POST /start``, ``GET /bump``, ``/state``,
    ``/metrics``), and its store (closed by the caller)."""
    config = SessionConfig(table_name=table_name, locking=mode, endpoint_url=endpoint_url,
                           max_lock_wait_seconds=max_lock_wait_seconds,
                           on_operation=_note_operation)
    store = create_async_store(config, session_name=f"demo_{mode}")

    async def start(request: Request) -> JSONResponse:
        session = await load_session(request)
        session.regenerate()
        session["started"] = int(time.time())
        return JSONResponse({"locking": mode})

    async def bump(request: Request) -> JSONResponse:
        key = request.query_params.get("key", "")
        work_ms = request.query_params.get("work_ms", "0")
        if not TAB_KEY.fullmatch(key) or not work_ms.isdigit() or int(work_ms) > MAX_WORK_MS:
            return JSONResponse({"error": f"key must match {TAB_KEY.pattern}, "
                                          f"work_ms 0..{MAX_WORK_MS}"}, status_code=400)
        session = await load_session(request)  # read without blocking the event loop
        value = int(session.get(key, 0)) + 1
        await asyncio.sleep(int(work_ms) / 1000)
        session[key] = value
        return JSONResponse({"value": value, "pid": os.getpid()})

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"session": dict(await load_session(request))})

    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse({"pid": os.getpid(), **store.metrics.snapshot()})

    routes = [Route("/start", start, methods=["POST"]), Route("/bump", bump),
              Route("/state", state), Route("/metrics", metrics)]
    app = SessionMiddleware(Starlette(routes=routes), store=store,
                            cookie_name=f"demo_tabs_{mode}")
    return _metered(app), store


def create_demo(endpoint_url: str | None = None, table_name: str | None = None,
                max_lock_wait_seconds: float | None = None) -> Any:
    """The served ASGI demo (uvicorn's ``--factory``): :func:`create_app` at ``/``, the
    multi-tab page at ``/tabs`` and one :func:`tabs_app` per locking mode under
    ``/tabs/<mode>``; arguments default to the ``DYNAMO_SESSIONS_DEMO_*`` environment."""
    endpoint_url = endpoint_url or os.environ.get(ENV_ENDPOINT) or None
    table_name = table_name or os.environ.get(ENV_TABLE, DEMO_TABLE)
    max_wait = _max_lock_wait_seconds(max_lock_wait_seconds)
    tabs = {mode: tabs_app(mode, table_name, endpoint_url, max_wait) for mode in LOCKING_MODES}
    main = create_app(endpoint_url, table_name=table_name, max_lock_wait_seconds=max_wait)

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(tabs_page(request.scope.get("root_path", "") + "/tabs", max_wait))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for _, store in tabs.values():  # each store's client reports its calls
            client = await store.get_client()
            client.meta.events.register("after-call.dynamodb", _count_call)
        yield
        for store in (main.store, *(store for _, store in tabs.values())):
            await store.aclose()

    routes = [Route("/tabs", page),
              *(Mount(f"/tabs/{mode}", app=app) for mode, (app, _) in tabs.items()),
              Mount("/", app=main)]
    return Starlette(routes=routes, lifespan=lifespan)
