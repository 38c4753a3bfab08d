"""The load generators' HTTP/1.1 client (``tests/httpload.py``): reading answers as uvicorn
sends them, cookies kept as a browser keeps them, and a real server's answers end to end."""

from __future__ import annotations

import asyncio

import pytest

from .asgi_support import UvicornThread
from .httpload import BadAnswer, Connection, parse
from .test_asgi_support import hello

CHUNKED = (b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\nSet-Cookie: sessionid=abc; expires=Wed, "
           b"16 Dec 2026 02:44:47 GMT; HttpOnly; Max-Age=1209600; Path=/\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n1\r\n1\r\n2\r\n23\r\n0\r\n\r\n")


def test_a_chunked_answer_is_read_whole_only_once_it_is_all_there() -> None:
    cookies: dict[bytes, bytes] = {}
    for cut in range(len(CHUNKED)):
        assert parse(bytearray(CHUNKED[:cut]), cookies) is None, cut
    assert cookies == {}
    parsed = parse(bytearray(CHUNKED + b"HTTP/1.1 next"), cookies)
    assert parsed is not None
    assert parsed[0] == len(CHUNKED) and (parsed[1].status, parsed[1].body) == (200, b"123")
    assert cookies == {b"sessionid": b"abc"}


def test_a_content_length_answer_and_a_deleted_cookie() -> None:
    cookies = {b"sessionid": b"abc", b"other": b"1"}
    answer = (b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n"
              b"Set-Cookie: sessionid=\"\"; Max-Age=0; Path=/\r\n\r\ngone")
    parsed = parse(bytearray(answer), cookies)
    assert parsed is not None and (parsed[1].status, parsed[1].body) == (404, b"gone")
    assert cookies == {b"other": b"1"}


def test_requests_on_one_connection_through_uvicorn() -> None:
    async def three_requests(url: str) -> list[bytes]:
        connection = await Connection.open(url, timeout_seconds=10.0)
        try:
            return [(await connection.get(path)).body for path in ("/a", "/b", "/c")]
        finally:
            connection.close()

    with UvicornThread(hello) as server:
        assert asyncio.run(three_requests(server.url)) == [b"hello /a", b"hello /b",
                                                           b"hello /c"]


def test_a_closed_server_connection_raises() -> None:
    async def after_close(url: str) -> None:
        connection = await Connection.open(url, timeout_seconds=10.0)
        connection.close()
        await asyncio.sleep(0)  # the transport tells the protocol
        await connection.get("/a")

    with UvicornThread(hello) as server, pytest.raises(BadAnswer):
        asyncio.run(after_close(server.url))
