import os
from typing import Any

from litestar import Litestar, Request, post
from litestar.middleware import DefineMiddleware
from litestar.params import FromPath

from dynamo_sessions import SessionConfig
from dynamo_sessions.aio_store import create_async_store
from dynamo_sessions.asgi import SessionMiddleware, load_session

store = create_async_store(SessionConfig(table_name=os.environ.get("SESSIONS_TABLE", "sessions"),
                                         locking="optimistic"), session_name="session")


@post("/cart/{item:str}", status_code=200)
async def add_to_cart(item: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = await load_session(request)  # read it without blocking the event loop
    cart = [*session.get("cart", []), item]
    session["cart"] = cart  # saved once, before the response starts
    return {"cart": cart}


@post("/login", status_code=200)
async def login(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = await load_session(request)  # request.session, read and typed as ours
    session.regenerate()  # a new session id on login; the cart stays
    session["user"] = (await request.json())["user"]
    return {"logins": session.increment("logins")}


@post("/logout", status_code=200)
async def logout(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.clear_session()  # the item is deleted, the cookie expired
    return {}


app = Litestar(
    route_handlers=[add_to_cart, login, logout],
    middleware=[DefineMiddleware(SessionMiddleware, store=store)],
    on_shutdown=[store.aclose],  # Litestar's lifespan does not pass through middleware
)
