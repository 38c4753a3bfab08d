"""A latency proxy on 127.0.0.1 in front of a real DynamoDB API server, for the benchmarks: every
request waits ``latency_seconds`` (a network's round trip), then goes upstream unchanged; its
answer comes back unchanged.

Why not ``tests/faultproxy.py`` (which can add a latency too): that one runs a thread per
connection and parses every request with ``http.client``, which is right for injecting faults
but costs about as much CPU per call as the server under test spends on it - on a small machine
the benchmark then measures the proxy.  This one is a single asyncio event loop of
``asyncio.Protocol`` objects: the pause is a timer (``loop.call_later``), so concurrent
requests wait side by side, never behind each other, and a request costs a few buffer slices
(the head is searched only for its ``Content-Length`` and ``X-Amz-Target``; bytes go through as
they came).  Each client connection has its own keep-alive upstream connection.  Only
``Content-Length`` bodies are handled (what botocore, aiobotocore and DynamoDB Local send); a
chunked message closes the connection, and is reported (``failures``).

``python -m tests.latencyproxy UPSTREAM_URL --latency-seconds S`` prints its endpoint URL on the
first line of stdout, serves until stdin closes, then prints one JSON line: the requests seen
by operation (``seen``), the most that were in their pause at once (``peak_pausing``) and why
connections were closed on a client (``failures``, empty when all went well).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
from typing import Any

_END_OF_HEAD = b"\r\n\r\n"
_MAX_HEAD_BYTES = 64 * 1024


class BadMessage(Exception):
    """A message this proxy does not relay (chunked, or a head too long)."""


def message_length(buffer: bytearray) -> tuple[int, bytes, bytes] | None:
    """The whole length of the HTTP/1.1 message at the start of ``buffer``, its head and its
    head lower-cased, or None while the head is incomplete."""
    end = buffer.find(_END_OF_HEAD)
    if end < 0:
        if len(buffer) > _MAX_HEAD_BYTES:
            raise BadMessage("head too long")
        return None
    head = bytes(buffer[:end])
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        raise BadMessage("chunked messages are not relayed")
    return end + len(_END_OF_HEAD) + int(_field(head, lower, b"content-length") or 0), head, lower


def _field(head: bytes, lower: bytes, name: bytes) -> bytes:
    """The value of header ``name`` (lower-case) in ``head``, or ``b""``."""
    start = lower.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    stop = lower.find(b"\r\n", start + 2)
    return head[start + len(name) + 3:stop if stop >= 0 else None].strip()


def operation(head: bytes, lower: bytes) -> str:
    """``GetItem`` for a request head with ``X-Amz-Target: DynamoDB_20120810.GetItem``."""
    return _field(head, lower, b"x-amz-target").rsplit(b".", 1)[-1].decode("latin-1")


class Stats:
    """What the proxy saw: requests by operation, and requests in their pause (now, at most)."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.pausing = 0
        self.peak_pausing = 0
        self.failures: list[str] = []
        """Why connections were closed on a client (a message not relayed, upstream gone)."""


class _Framing(asyncio.Protocol):
    """A connection's side that cuts the bytes it receives into whole messages."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            try:
                framed = message_length(self.buffer)
            except BadMessage as exc:
                self.bad(str(exc))
                return
            if framed is None or len(self.buffer) < framed[0]:
                return
            message = bytes(self.buffer[:framed[0]])
            del self.buffer[:framed[0]]
            self.message(message, framed[1], framed[2])

    def message(self, message: bytes, head: bytes, lower: bytes) -> None:
        raise NotImplementedError

    def bad(self, why: str) -> None:
        raise NotImplementedError


class _Upstream(_Framing):
    """The upstream side of one client connection: answers go back to the client as they are."""

    def __init__(self, client: _Client) -> None:
        super().__init__()
        self.client = client

    def message(self, message: bytes, head: bytes, lower: bytes) -> None:
        self.client.answered(message)

    def bad(self, why: str) -> None:
        self.client.fail(f"upstream: {why}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_lost()


class _Client(_Framing):
    """One client connection: each whole request is paused, then sent upstream; requests of one
    connection go upstream in order, one at a time (HTTP/1.1 without pipelining)."""

    def __init__(self, proxy: LatencyProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.upstream: _Upstream | None = None
        self.ready: collections.deque[bytes] = collections.deque()
        """Requests past their pause, waiting for the upstream connection to be free."""
        self.in_flight = False
        self.connecting = False

    def message(self, message: bytes, head: bytes, lower: bytes) -> None:
        self.proxy.stats.seen[operation(head, lower)] += 1
        self.proxy.paused(self.resumed, message)

    def bad(self, why: str) -> None:
        self.fail(why)

    def resumed(self, request: bytes) -> None:
        self.ready.append(request)
        self.send_next()

    def send_next(self) -> None:
        if self.in_flight or not self.ready or self.transport is None:
            return
        if self.upstream is None or self.upstream.transport is None:
            if not self.connecting:
                self.connecting = True
                asyncio.get_running_loop().create_task(self.connect())
            return
        self.in_flight = True
        self.upstream.transport.write(self.ready.popleft())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, self.upstream = await loop.create_connection(
                lambda: _Upstream(self), *self.proxy.upstream)
        except OSError as exc:
            self.fail(f"upstream connection: {exc!r}")
            return
        finally:
            self.connecting = False
        self.send_next()

    def answered(self, answer: bytes) -> None:
        self.in_flight = False
        if self.transport is not None:
            self.transport.write(answer)
        self.send_next()

    def upstream_lost(self) -> None:
        """The upstream closed its side: close the client's too (as a server closing a
        keep-alive connection would) - with a request in flight, its answer is lost."""
        self.upstream = None
        if self.in_flight or self.ready:
            self.fail("upstream closed with a request in flight")

    def fail(self, why: str) -> None:
        self.proxy.stats.failures.append(why)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.ready.clear()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


class LatencyProxy:
    """The proxy's state on its event loop: the upstream address, the pause, the counts."""

    def __init__(self, upstream_url: str, latency_seconds: float) -> None:
        rest = upstream_url.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.partition(":")
        self.upstream = (host, int(port or 80))
        self.latency_seconds = latency_seconds
        self.stats = Stats()
        self._server: asyncio.Server | None = None

    def paused(self, then: Any, request: bytes) -> None:
        """Call ``then(request)`` after the pause: a timer, nothing waits on it."""
        stats = self.stats
        stats.pausing += 1
        stats.peak_pausing = max(stats.peak_pausing, stats.pausing)

        def resume() -> None:
            stats.pausing -= 1
            then(request)

        asyncio.get_running_loop().call_later(self.latency_seconds, resume)

    async def open(self) -> str:
        """Listen on a free loopback port (on the running loop); its URL."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), "127.0.0.1", 0,
                                                backlog=1024)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        """Stop listening (no ``wait_closed``: it would wait for the clients' connections)."""
        if self._server is not None:
            self._server.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.latencyproxy UPSTREAM_URL [--latency-seconds S]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.latencyproxy")
    parser.add_argument("upstream_url")
    parser.add_argument("--latency-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    proxy = LatencyProxy(args.upstream_url, args.latency_seconds)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def wait_for_stdin_to_close() -> None:
            sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)

        print(await proxy.open(), flush=True)
        threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
        try:
            await stop.wait()
        finally:
            proxy.close()

    asyncio.run(run())
    stats = proxy.stats
    print(json.dumps({"seen": dict(stats.seen), "peak_pausing": stats.peak_pausing,
                      "failures": stats.failures}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
