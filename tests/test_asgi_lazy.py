"""When the ASGI middleware reads a session (``load="auto" | "lazy" | "eager"``), on the apps of
``tests/asgi_apps`` served by uvicorn, on DynamoDB Local behind a counting proxy: an untouched
request costs no call even with a session cookie; the first use reads it - from a sync view's
thread on the event loop, on the loop's own thread through the blocking runner, or without
blocking by ``await load_session(request)``; JSON encoders that read a ``dict``'s storage
(``json``, msgspec) see the data; a mode whose load may wait for a lock reads before the app."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from dynamo_sessions import SessionConfig
from dynamo_sessions.asgi import SessionMiddleware
from dynamo_sessions.errors import ConfigError

from . import asgi_session_support
from .asgi_session_support import FRAMEWORKS, cookie_of
from .test_asgi import websocket_json

pytestmark = pytest.mark.dynamodb_local
serve = asgi_session_support.serve  # the fixture


def middleware_of(served: Any) -> SessionMiddleware:
    """The app's :class:`SessionMiddleware` instance (Starlette builds its stack on first use)."""
    app: Any = served.server.app
    assert isinstance(app, Starlette)
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, SessionMiddleware):
        layer = getattr(layer, "app", None)
    assert layer is not None, "no SessionMiddleware in the app's stack"
    return layer


@pytest.mark.parametrize("locking", ["none", "optimistic"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_untouched_request_with_a_session_cookie_makes_no_call(
        serve: Any, framework: str, locking: str) -> None:
    served = serve(framework, locking)
    with served.client() as client:
        cookie_of(client.post("/cart/a"))
        before = served.calls()
        answer = client.get("/")
        assert answer.status_code == 200 and "set-cookie" not in answer.headers
        assert served.calls() == before
        shown = client.get("/session")  # the framework's JSON encoder gets the read data
        assert shown.json() == {"cart": ["a"]}
    assert served.calls() - before == {"GetItem": 1}


@pytest.mark.parametrize(("path", "blocking"), [
    ("/session-from-a-thread", False),  # a sync view: its thread hands the read to the loop
    ("/session-loaded", False),  # await load_session(request): on the loop, not blocking it
    ("/session", True),  # a plain first use in an async view: the blocking client reads
])
def test_where_a_first_read_is_made(serve: Any, path: str, blocking: bool) -> None:
    served = serve()
    with served.client() as client:
        cookie_of(client.post("/cart/a"))
        before = served.calls()
        assert client.get(path).json() == {"cart": ["a"]}
        assert served.calls() - before == {"GetItem": 1}
        assert (middleware_of(served).blocking._driver is not None) is blocking
        assert client.post("/cart/b").json() == {"cart": ["a", "b"]}  # saved on the loop
        assert client.get(path).json() == {"cart": ["a", "b"]}


def test_eager_reads_before_the_app_and_pessimistic_is_eager_by_default(serve: Any) -> None:
    for served, spent in ((serve(load="eager"), {"GetItem": 1}),
                          (serve(locking="pessimistic"), {"UpdateItem": 2})):
        with served.client() as client:
            sid = cookie_of(client.post("/cart/a"))
            client.get("/")  # the first lock of a store learns the server's clock
            before = served.calls()
            assert client.get("/").text == "ok"
            assert served.calls() - before == spent  # read though untouched
        assert not served.locked(sid)


def test_a_websocket_that_never_uses_its_session_makes_no_call(serve: Any) -> None:
    served = serve()
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
    before = served.calls()
    assert websocket_json(served.url, "/ws-quiet", f"session={sid}") == {"quiet": True}
    assert served.calls() == before
    message = websocket_json(served.url, "/ws", f"session={sid}")
    assert message == {"session": {"cart": ["a"]}, "error": "SessionReadOnly"}
    assert served.calls() - before == {"GetItem": 1}


def test_the_load_option_is_checked() -> None:
    def app(*_: Any) -> None:
        raise AssertionError("never called")

    with pytest.raises(ConfigError, match="load='soon'"):
        SessionMiddleware(app, config=SessionConfig(), load="soon")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="may wait for a lock"):
        SessionMiddleware(app, config=SessionConfig(locking="pessimistic"), load="lazy")
    assert SessionMiddleware(app, config=SessionConfig(locking="pessimistic")).lazy is False
    assert SessionMiddleware(app, config=SessionConfig(locking="pessimistic"),
                             load="eager").lazy is False
    assert SessionMiddleware(app, config=SessionConfig(locking="none")).lazy is True
    assert SessionMiddleware(app, config=SessionConfig(), load="eager").lazy is False


@pytest.mark.parametrize("path", ["/session", "/session-from-a-thread", "/session-loaded"])
def test_a_first_read_that_fails_is_an_error_never_an_empty_session(serve: Any,
                                                                     path: str) -> None:
    """DynamoDB answers 500 to every attempt of the read: the view fails (500), nothing is
    written, the stored session is as it was and the next request reads it."""
    served = serve(config_options={"boto_max_attempts": 2})
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
        served.proxy.script("http500", "GetItem", 2)
        before = served.calls()
        failed = client.get(path)
        assert failed.status_code == 500 and "set-cookie" not in failed.headers
        assert served.calls() - before == {"GetItem": 2}  # no write
        assert served.proxy.counts()["http500"] == 2
        assert client.get(path).json() == {"cart": ["a"]}
    assert served.data(sid) == {"cart": ["a"]}


def test_what_the_app_sets_in_the_scope_shows_to_the_middleware_around_it() -> None:
    """The app gets a copy of the scope; a router's keys (``path_params``, ...) still
    reach an outer middleware - at the response's start and after the app - as they do around
    Starlette's own ``SessionMiddleware``, which sets ``scope["session"]`` in place."""
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    seen: dict[str, Any] = {}

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")  # no cookie, untouched: no DynamoDB call

    def outer(app: Any) -> Any:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            async def watching_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    seen["at start"] = scope.get("path_params")
                await send(message)

            await app(scope, receive, watching_send)
            if scope["type"] == "http":
                seen["after"] = scope.get("path_params")
        return middleware

    app = Starlette(routes=[Route("/hello/{name}", hello)],
                    middleware=[Middleware(outer), Middleware(
                        SessionMiddleware, config=SessionConfig(region_name="us-east-1"))])
    async def get() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/hello/you")).text

    assert asyncio.run(get()) == "hi"
    assert seen == {"at start": {"name": "you"}, "after": {"name": "you"}}
