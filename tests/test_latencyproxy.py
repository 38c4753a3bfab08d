"""The benchmarks' latency proxy (``tests/latencyproxy.py``) on DynamoDB Local: it relays every
call and its answer unchanged, pauses concurrent calls side by side, and reports what it could
not relay."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dynamo_sessions.testing.servers import local_client

from .asgi_support import LatencyProxy
from .latencyproxy import LatencyProxy as ProxyOnLoop

LIST_TABLES = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: DynamoDB_20120810.ListTables"
               b"\r\nContent-Type: application/x-amz-json-1.0\r\nAuthorization: AWS4-HMAC-SHA256 "
               b"Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, "
               b"Signature=0\r\nContent-Length: 2\r\n\r\n{}")
"""A ListTables request DynamoDB Local answers (it checks no signature)."""


@pytest.fixture
def proxy_in_a_thread(dynamodb_local: Any, request: Any) -> Iterator[tuple[ProxyOnLoop, int]]:
    """The proxy on an event loop in a thread of this process (its counters readable here),
    pausing ``request.param`` seconds; (the proxy, its port)."""
    proxy = ProxyOnLoop(dynamodb_local.endpoint_url, request.param)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = asyncio.run_coroutine_threadsafe(proxy.open(), loop).result(timeout=10)
    try:
        yield proxy, int(url.rsplit(":", 1)[1])
    finally:
        loop.call_soon_threadsafe(proxy.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.mark.dynamodb_local
def test_every_call_and_answer_is_relayed_unchanged(dynamodb_local: Any,
                                                   local_table: str) -> None:
    table_name = local_table
    with LatencyProxy(dynamodb_local.endpoint_url, latency_seconds=0.001) as proxy:
        client = local_client(proxy.endpoint_url)
        for number in range(20):  # one keep-alive connection, calls one after another
            client.put_item(TableName=table_name, Item={"id": {"S": f"s{number}"},
                                                        "n": {"N": str(number)}})
        items = [client.get_item(TableName=table_name, Key={"id": {"S": f"s{number}"}},
                                 ConsistentRead=True)["Item"] for number in range(20)]
    assert [int(item["n"]["N"]) for item in items] == list(range(20))
    report = json.loads(proxy.report)
    assert report["seen"] == {"PutItem": 20, "GetItem": 20}
    assert report["failures"] == []


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("proxy_in_a_thread", [60.0], indirect=True)
def test_concurrent_calls_pause_side_by_side(proxy_in_a_thread: tuple[ProxyOnLoop, int]) -> None:
    """64 connections' requests are all in their pause at once: none waits for another."""
    proxy, port = proxy_in_a_thread
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    try:
        for connection in connections:
            connection.sendall(LIST_TABLES)
        for _ in range(1000):  # bounded: until every request is in its pause
            if proxy.stats.peak_pausing == 64:
                break
            time.sleep(0.01)
        assert proxy.stats.peak_pausing == 64
    finally:
        for connection in connections:
            connection.close()


def exchange(port: int, request: bytes, answers: int) -> bytes:
    """Send ``request`` on a new connection to ``port``; what came back once ``answers`` whole
    answers came, or the connection closed."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        while received.count(b"HTTP/1.1 ") < answers or not received.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("proxy_in_a_thread", [0.0], indirect=True)
def test_requests_sent_together_on_one_connection_are_all_answered(
        proxy_in_a_thread: tuple[ProxyOnLoop, int]) -> None:
    proxy, port = proxy_in_a_thread
    answers = exchange(port, LIST_TABLES * 3, 3)  # in one segment: the proxy must split them
    assert answers.count(b"HTTP/1.1 200 OK") == 3
    assert proxy.stats.seen == {"ListTables": 3} and proxy.stats.failures == []


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("proxy_in_a_thread", [0.0], indirect=True)
def test_a_chunked_request_is_refused_and_reported(
        proxy_in_a_thread: tuple[ProxyOnLoop, int]) -> None:
    proxy, port = proxy_in_a_thread
    chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\n{}\r\n0\r\n\r\n")
    assert exchange(port, chunked, 1) == b""  # closed, nothing forwarded
    assert proxy.stats.failures == ["chunked messages are not relayed"]
    assert proxy.stats.seen == {}
