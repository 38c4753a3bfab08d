"""The README's Starlette example, served by the tests (``tests/test_asgi_frameworks.py``).

``create_app(store)`` is what an application writes; ``app`` (for ``uvicorn
tests.asgi_apps.starlette_app:app``) builds it from ``ASGI_APP_*`` variables
(:func:`tests.asgi_apps.env_config`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from dynamo_sessions.asgi import SessionMiddleware, load_session
from dynamo_sessions.errors import SessionReadOnly


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")  # never touches the session: no DynamoDB call


async def show(request: Request) -> JSONResponse:
    return JSONResponse(request.session)


def show_from_a_thread(request: Request) -> JSONResponse:
    return JSONResponse(request.session)  # a sync view: Starlette runs it in a worker thread


async def show_loaded(request: Request) -> JSONResponse:
    return JSONResponse(await load_session(request))  # read without blocking the event loop


async def add_to_cart(request: Request) -> JSONResponse:
    item = request.path_params["item"]
    request.session["cart"] = [*request.session.get("cart", []), item]
    return JSONResponse(request.session)


async def count_visit(request: Request) -> JSONResponse:
    return JSONResponse({"visits": request.session.increment("visits")})


async def login(request: Request) -> JSONResponse:
    request.session.regenerate()  # a new id on login: no session fixation
    request.session["user"] = (await request.json())["user"]
    return JSONResponse(request.session)


async def logout(request: Request) -> JSONResponse:
    request.session.destroy()  # the item is deleted, the cookie expired
    return JSONResponse(request.session)


async def slow(request: Request) -> PlainTextResponse:
    request.session["slow"] = True
    await asyncio.sleep(float(request.query_params.get("seconds", "30")))
    return PlainTextResponse("done")


async def boom(request: Request) -> PlainTextResponse:
    request.session["boom"] = True
    raise RuntimeError("the view failed")


async def stream(request: Request) -> StreamingResponse:
    request.session["before"] = True

    async def body() -> Any:
        yield b"started "
        request.session["during"] = True  # after the response started: not saved
        yield b"streamed"

    return StreamingResponse(body())


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    answer: dict[str, Any] = {"session": dict(websocket.session)}
    try:
        websocket.session["from_socket"] = True
    except SessionReadOnly as exc:
        answer["error"] = type(exc).__name__
    await websocket.send_json(answer)
    await websocket.close()


async def quiet_socket(websocket: WebSocket) -> None:
    await websocket.accept()  # never touches the session: no DynamoDB call
    await websocket.send_json({"quiet": True})
    await websocket.close()


routes = [
    Route("/", home),
    Route("/session", show),
    Route("/session-from-a-thread", show_from_a_thread),
    Route("/session-loaded", show_loaded),
    Route("/cart/{item}", add_to_cart, methods=["POST"]),
    Route("/visits", count_visit, methods=["POST"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/slow", slow),
    Route("/boom", boom),
    Route("/stream", stream),
    WebSocketRoute("/ws", socket),
    WebSocketRoute("/ws-quiet", quiet_socket),
]


def create_app(**session_options: Any) -> Starlette:
    """``session_options``: ``store=`` or ``config=``, and web options."""
    return Starlette(routes=routes,
                     middleware=[Middleware(SessionMiddleware, **session_options)])


def __getattr__(name: str) -> Any:
    if name == "app":
        from . import env_config

        return create_app(config=env_config())
    raise AttributeError(name)
