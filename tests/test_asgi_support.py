"""The ASGI harness (``tests/asgi_support.py``): uvicorn in a thread and in a child process, the
latency proxy in a child process - each serves, and is gone after ``stop()``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dynamo_sessions.servers import local_client

from .asgi_support import LatencyProxy, UvicornProcess, UvicornThread


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: ``hello <path>``."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"hello {scope['path']}".encode()})


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.ConnectError:
        return True
    return False


def test_uvicorn_in_a_thread_serves_the_app_then_stops() -> None:
    with UvicornThread(hello) as server:
        assert httpx.get(server.url + "/x", timeout=5.0).text == "hello /x"
    assert refused(server.url)


def test_uvicorn_in_a_process_serves_the_django_app_then_stops() -> None:
    with UvicornProcess("tests.asgi_django_app:application") as server:
        answer = httpx.get(server.url + "/", timeout=5.0)  # untouched: no DynamoDB call
        assert (answer.status_code, answer.text) == (200, "ok")
    assert refused(server.url)


def test_an_app_that_does_not_load_is_reported_with_its_error() -> None:
    with pytest.raises(RuntimeError, match=r'Could not import module "tests\.no_such_app"'):
        UvicornProcess("tests.no_such_app:app", startup_timeout_seconds=20.0).start()


@pytest.mark.dynamodb_local
def test_the_latency_proxy_forwards_every_call(dynamodb_local: Any) -> None:
    with LatencyProxy(dynamodb_local.endpoint_url, latency_seconds=0.005) as proxy:
        client = local_client(proxy.endpoint_url)
        for _ in range(3):
            assert "TableNames" in client.list_tables(Limit=1)
    assert json.loads(proxy.report)["seen"] == {"ListTables": 3}
    assert refused(proxy.endpoint_url)
