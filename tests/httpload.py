"""A lean HTTP/1.1 client for load generators: one keep-alive connection per client, one GET at
a time, on ``asyncio.Protocol`` - the status, the cookies set and the body of each answer.

Why not httpx (what the tests use): a benchmark's clients share the machine with the server
they measure, and httpx spends about a third of what the server does per request (its
connection pool, h11, its cookie jar, its event hooks).  This client writes one fixed request
head per call (the path and a ``Cookie`` header) and reads the answer from the bytes as they
come: the status line, ``Set-Cookie`` (the cookie's name and value; ``Max-Age=0`` deletes it)
and a ``Content-Length`` or chunked body - what uvicorn sends.  An answer that does not come
within ``timeout_seconds`` or a connection closed under a request raises ``ConnectionError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

_END_OF_HEAD = b"\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class BadAnswer(ConnectionError):
    """An answer this client cannot read (or none: the connection closed, the time ran out)."""


def parse(buffer: bytearray, cookies: dict[bytes, bytes]) -> tuple[int, Answer] | None:
    """The answer at the start of ``buffer`` and its length (its cookies put in ``cookies``), or
    None while it is incomplete."""
    end = buffer.find(_END_OF_HEAD)
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    set_cookies = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"set-cookie":
            set_cookies.append(value.strip())
    start = end + len(_END_OF_HEAD)
    if chunked:
        framed = _chunked(buffer, start)
        if framed is None:
            return None
        stop, body = framed
    else:
        stop = start + (length or 0)
        if len(buffer) < stop:
            return None
        body = bytes(buffer[start:stop])
    for cookie in set_cookies:
        pair, _, attributes = cookie.partition(b";")
        key, _, value = pair.partition(b"=")
        if b"max-age=0" in attributes.lower().replace(b" ", b""):
            cookies.pop(key.strip(), None)
        else:
            cookies[key.strip()] = value.strip()
    return stop, Answer(status, body)


def _chunked(buffer: bytearray, start: int) -> tuple[int, bytes] | None:
    """A chunked body from ``buffer[start:]``: (where it ends, its bytes), or None when
    incomplete."""
    parts = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)  # no trailers are expected
            if trailer_end < 0:
                return None
            return trailer_end + 2, b"".join(parts)
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position:position + size]))
        position += size + 2


class Connection(asyncio.Protocol):
    """One keep-alive connection to ``host:port``; :meth:`get` sends a request, returns its
    answer.  Its cookies (:attr:`cookies`) are kept as a browser would for one site."""

    def __init__(self, host: str, timeout_seconds: float) -> None:
        self.host = host.encode("ascii")
        self.timeout_seconds = timeout_seconds
        self.cookies: dict[bytes, bytes] = {}
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._closed: BaseException | None = None

    @classmethod
    async def open(cls, url: str, timeout_seconds: float) -> Connection:
        """A connection to ``http://host:port``."""
        host, _, port = url.split("://", 1)[1].rstrip("/").partition(":")
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: cls(host, timeout_seconds), host, int(port or 80))
        return connection

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    async def get(self, path: str) -> Answer:
        if self._transport is None or self._waiter is not None:
            raise BadAnswer(self._closed or "not connected, or a request is in flight")
        head = b"GET %s HTTP/1.1\r\nHost: %s\r\n" % (path.encode("ascii"), self.host)
        if self.cookies:
            head += b"Cookie: %s\r\n" % b"; ".join(b"%s=%s" % item
                                                  for item in self.cookies.items())
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self.timeout_seconds, self._fail,
                                BadAnswer(f"no answer within {self.timeout_seconds} s"))
        self._transport.write(head + b"\r\n")
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        try:
            parsed = parse(self._buffer, self.cookies)
        except ValueError as exc:
            self._fail(BadAnswer(f"unreadable answer: {exc}"))
            return
        if parsed is not None:
            del self._buffer[:parsed[0]]
            self._waiter.set_result(parsed[1])

    def _fail(self, exc: BaseException) -> None:
        self._closed = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._closed is None:
            self._closed = BadAnswer(f"connection closed ({exc!r})")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
