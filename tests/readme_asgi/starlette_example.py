import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dynamo_sessions import SessionConfig
from dynamo_sessions.asgi import SessionMiddleware, load_session

config = SessionConfig(table_name=os.environ.get("SESSIONS_TABLE", "sessions"),
                       locking="optimistic")


async def add_to_cart(request: Request) -> JSONResponse:
    session = await load_session(request)  # read it without blocking the event loop
    cart = [*session.get("cart", []), request.path_params["item"]]
    session["cart"] = cart  # saved once, before the response starts
    return JSONResponse({"cart": cart})


async def login(request: Request) -> JSONResponse:
    session = await load_session(request)
    session.regenerate()  # a new session id on login; the cart stays
    session["user"] = (await request.json())["user"]
    return JSONResponse({"logins": session.increment("logins")})


async def logout(request: Request) -> JSONResponse:
    request.session.destroy()  # works too: a first plain use reads it, blocking the loop once
    return JSONResponse({})


app = Starlette(
    routes=[Route("/cart/{item}", add_to_cart, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"])],
    middleware=[Middleware(SessionMiddleware, config=config, exclude_paths=["/static"])],
)
