"""The README's FastAPI example, served by the tests (``tests/test_asgi_frameworks.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request

from dynamo_sessions.asgi import SessionMiddleware


def create_app(**session_options: Any) -> FastAPI:
    """``session_options``: ``store=`` or ``config=``, and web options."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, **session_options)

    @app.get("/")
    async def home() -> str:
        return "ok"  # never touches the session: no DynamoDB call

    @app.get("/session")
    async def show(request: Request) -> dict[str, Any]:
        return request.session

    @app.post("/cart/{item}")
    async def add_to_cart(item: str, request: Request) -> dict[str, Any]:
        request.session["cart"] = [*request.session.get("cart", []), item]
        return request.session

    @app.post("/visits")
    async def count_visit(request: Request) -> dict[str, Any]:
        return {"visits": request.session.increment("visits")}

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        request.session.regenerate()  # a new id on login: no session fixation
        request.session["user"] = (await request.json())["user"]
        return request.session

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        request.session.destroy()  # the item is deleted, the cookie expired
        return request.session

    @app.get("/slow")
    async def slow(request: Request, seconds: float = 30.0) -> str:
        request.session["slow"] = True
        await asyncio.sleep(seconds)
        return "done"

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        from . import env_config

        return create_app(config=env_config())
    raise AttributeError(name)
