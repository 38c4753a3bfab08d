"""A small Quart app on ``dynamo_sessions.quart`` (served by uvicorn in the ASGI tests).

Views: ``/`` never touches the session; ``/rw`` reads the counter ``n`` and writes it back plus
one; ``/ro`` only reads it; ``/inc`` adds one with ``session.increment``; ``/login``
regenerates the session id (keeping the data), ``/logout`` destroys the session; ``/hold``
reads the session, then waits a minute (a client that gives up before its answer);
``/fail`` reads it, sets a key, then fails (Quart answers 500); the websocket ``/ws`` adds one
to ``n`` for each ``inc`` it receives, until any other message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import quart
from quart import session

from dynamo_sessions.quart import init_app


def make_app(**options: Any) -> quart.Quart:
    """The app, its sessions on DynamoDB with ``options`` (``init_app``'s: SessionConfig and
    interface options)."""
    app = quart.Quart(__name__)

    @app.get("/")
    async def untouched() -> str:
        return "ok"

    @app.get("/rw")
    async def read_write() -> str:
        await session.load()
        session["n"] = n = session.get("n", 0) + 1
        return str(n)

    @app.get("/ro")
    async def read_only() -> str:
        await session.load()
        return str(session.get("n", 0))

    @app.get("/inc")
    async def increment() -> str:
        await session.load()
        return str(session.increment("n"))

    @app.get("/login")
    async def login() -> str:
        await session.load()
        session.regenerate()
        session["user"] = "alice"
        return str(session.get("n", 0))

    @app.get("/logout")
    async def logout() -> str:
        await session.load()
        session.destroy()
        return "bye"

    @app.get("/hold")
    async def hold() -> str:
        await session.load()
        await asyncio.sleep(60)
        return "held"

    @app.get("/fail")
    async def fail() -> str:
        await session.load()
        session["failed"] = True
        raise RuntimeError("the view failed")

    @app.websocket("/ws")
    async def counter_socket() -> None:
        await session.load()
        while await quart.websocket.receive() == "inc":
            await quart.websocket.send(str(session.increment("n")))

    init_app(app, **options)
    return app
