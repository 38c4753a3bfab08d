"""The README's Litestar example, served by the tests (``tests/test_asgi_frameworks.py``).

Litestar takes the middleware through ``DefineMiddleware`` (and closes the store at shutdown:
its lifespan does not pass through middleware); ``request.session`` is the
middleware's session, ``request.set_session(mapping)`` replaces its data and
``request.clear_session()`` destroys it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.middleware import DefineMiddleware
from litestar.params import FromPath, FromQuery

from dynamo_sessions import SessionConfig
from dynamo_sessions.aio_store import create_async_store
from dynamo_sessions.asgi import SessionMiddleware, session_of


@get("/", sync_to_thread=False)
def home() -> str:
    return "ok"  # never touches the session: no DynamoDB call


@get("/session")
async def show(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return request.session


@post("/cart/{item:str}", status_code=200)
async def add_to_cart(item: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.session["cart"] = [*request.session.get("cart", []), item]
    return request.session


@post("/visits", status_code=200)
async def count_visit(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"visits": session_of(request.scope).increment("visits")}


@post("/login", status_code=200)
async def login(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session_of(request.scope).regenerate()  # a new id on login: no session fixation
    request.session["user"] = (await request.json())["user"]
    return request.session


@post("/logout", status_code=200)
async def logout(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.clear_session()  # Litestar's way: the item is deleted, the cookie expired
    return {}


@post("/replace", status_code=200)
async def replace(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.set_session(await request.json())  # Litestar's way: the data replaced
    return {}


@get("/slow")
async def slow(request: Request[Any, Any, Any], seconds: FromQuery[float] = 30.0) -> str:
    request.session["slow"] = True
    await asyncio.sleep(seconds)
    return "done"


def create_app(config: SessionConfig, session_name: str = "session",
               **web_options: Any) -> Litestar:
    """``web_options``: the middleware's cookie and id options."""
    store = create_async_store(config, session_name=session_name)
    return Litestar(
        route_handlers=[home, show, add_to_cart, count_visit, login, logout, replace, slow],
        middleware=[DefineMiddleware(SessionMiddleware, store=store, **web_options)],
        on_shutdown=[store.aclose])  # Litestar's lifespan does not pass through middleware


def __getattr__(name: str) -> Any:
    if name == "app":
        from . import env_config

        return create_app(config=env_config())
    raise AttributeError(name)
