"""The ASGI harness (``tests/asgi_support.py``): uvicorn in a thread and in a child process, the
latency proxy in a child process - each serves, and is gone after ``stop()``."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from dynamo_sessions.testing.servers import local_client

from .asgi_support import LatencyProxy, UvicornProcess, UvicornThread
from .faultproxy import FaultProxy


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


@pytest.mark.dynamodb_local
def test_concurrent_calls_pause_side_by_side_in_the_latency_proxy(dynamodb_local: Any) -> None:
    """64 connections' requests are all in their pause at once: none waits for another."""
    clients = 64
    request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: DynamoDB_20120810.ListTables"
               b"\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}")
    with FaultProxy(dynamodb_local.endpoint_url, latency_seconds=60.0) as proxy:
        port = int(proxy.endpoint_url.rsplit(":", 1)[1])
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
        try:
            for connection in connections:
                connection.sendall(request)
            for _ in range(1000):  # bounded: until every request is in its pause
                if proxy.peak_pausing == clients:
                    break
                time.sleep(0.01)
            assert proxy.peak_pausing == clients
        finally:
            for connection in connections:
                connection.close()
