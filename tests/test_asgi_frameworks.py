"""Starlette, FastAPI and Litestar apps (``tests/asgi_apps``) on the ASGI middleware, served by
uvicorn and driven by httpx, on DynamoDB Local; what reaches DynamoDB is counted on the wire
(``tests/faultproxy.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from . import asgi_session_support
from .asgi_session_support import FRAMEWORKS, MODES, cookie_of

pytestmark = pytest.mark.dynamodb_local
serve = asgi_session_support.serve  # the fixture
CONCURRENT = 16
ONE_FAST = [FRAMEWORKS[0], *(pytest.param(name, marks=pytest.mark.slow)
                              for name in FRAMEWORKS[1:])]
"""Starlette by default, the other frameworks in the slow run (a server per case)."""


async def _concurrently(url: str, cookie: str, paths: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60.0,
                                 cookies={"session": cookie}) as client:
        return list(await asyncio.gather(*(client.post(path) for path in paths)))


@pytest.mark.parametrize("locking", MODES)
@pytest.mark.parametrize("framework", ONE_FAST)
def test_16_concurrent_same_session_requests(serve: Any, framework: str, locking: str) -> None:
    """Each request appends its own item to one list and increments one counter: optimistic
    merges, pessimistic serialises - nothing lost; ``none``: the increments survive (a counter
    is written like an optimistic session), the last writer of the list wins."""
    served = serve(framework, locking)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/first"))
    carts = _run(_concurrently(served.url, sid, [f"/cart/{n}" for n in range(CONCURRENT)]))
    visits = _run(_concurrently(served.url, sid, ["/visits"] * CONCURRENT))
    assert [r.status_code for r in carts + visits] == [200] * (2 * CONCURRENT)
    stored = served.data(sid)
    assert stored["visits"] == CONCURRENT  # no increment lost, in any mode
    expected = {"first", *(str(n) for n in range(CONCURRENT))}
    if locking == "none":
        assert "first" in stored["cart"] and set(stored["cart"]) <= expected
        print(f"{framework} none: {len(expected) - len(stored['cart'])} of "
              f"{CONCURRENT} concurrent list appends lost")
    else:
        assert sorted(stored["cart"]) == sorted(expected)
    assert not served.locked(sid)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_untouched_and_cookieless_requests_make_no_call(serve: Any, framework: str) -> None:
    served = serve(framework, "optimistic")
    before = served.calls()
    with served.client() as client:
        answer = client.get("/")
        assert answer.status_code == 200 and "set-cookie" not in answer.headers
        assert client.get("/session").json() == {}  # read, but no cookie: nothing to load
        bogus = client.get("/session", headers={"Cookie": "session=not-an-id"})
        assert bogus.json() == {}
    assert served.calls() == before


@pytest.mark.parametrize("locking", MODES)
@pytest.mark.parametrize("framework", ONE_FAST)
def test_a_read_only_request_costs_one_get_item(serve: Any, framework: str,
                                                locking: str) -> None:
    """none / optimistic: exactly one GetItem; pessimistic: the lock taken on load and given
    back at the end - two UpdateItem, no GetItem (and once per store, before its first lock, a
    DescribeEndpoints that learns the server's clock: not counted here)."""
    served = serve(framework, locking)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
        client.get("/session")  # the store's first lock learns the server's clock
        before = served.calls()
        answer = client.get("/session")
        assert answer.json() == {"cart": ["a"]}
        assert "set-cookie" not in answer.headers
        assert answer.headers["vary"] == "Cookie"
    spent = served.calls() - before
    if locking == "pessimistic":
        assert spent == {"UpdateItem": 2}
    else:
        assert spent == {"GetItem": 1}
    assert not served.locked(sid)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_write_changes_the_stored_item(serve: Any, framework: str) -> None:
    served = serve(framework, "optimistic")
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
        assert client.post("/cart/b").json()["cart"] == ["a", "b"]
    assert served.data(sid) == {"cart": ["a", "b"]}


@pytest.mark.parametrize("locking", MODES)
@pytest.mark.parametrize("framework", ONE_FAST)
def test_login_regenerates_and_logout_destroys(serve: Any, framework: str,
                                               locking: str) -> None:
    served = serve(framework, locking)
    with served.client() as client:
        old = cookie_of(client.post("/cart/a"))
        logged_in = client.post("/login", json={"user": "ada"})
        new = cookie_of(logged_in)
        assert new != old and logged_in.json() == {"cart": ["a"], "user": "ada"}
        assert served.data(new) == {"cart": ["a"], "user": "ada"}
        assert served.data(old) == {}  # the old id is retired: never served again
        assert client.get("/session").json() == {"cart": ["a"], "user": "ada"}
        logged_out = client.post("/logout")
        assert logged_out.status_code == 200
        deleted = logged_out.headers["set-cookie"]
        assert deleted.startswith("session=;") and "Max-Age=0" in deleted
        assert served.item(new) is None
        assert client.get("/session").json() == {}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_cookie_attributes(serve: Any, framework: str) -> None:
    served = serve(framework, "optimistic")
    with served.client() as client:
        header = client.post("/cart/a").headers["set-cookie"]
    name_value, *attributes = header.split("; ")
    assert name_value.startswith("session=") and len(name_value) == len("session=") + 43
    assert attributes == ["Path=/", "HttpOnly", "SameSite=Lax"]  # no Secure over http


def test_litestar_set_session_and_clear_session(serve: Any) -> None:
    served = serve("litestar_app", "optimistic")
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
        assert client.post("/replace", json={"theme": "dark"}).status_code == 200
        assert served.data(sid) == {"theme": "dark"}
        assert "Max-Age=0" in client.post("/logout").headers["set-cookie"]
    assert served.item(sid) is None
