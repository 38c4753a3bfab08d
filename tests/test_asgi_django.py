"""The Django engine's native async path, on DynamoDB Local: no thread pool (the async methods'
calls run on the event loop's thread, the loop's executor is never used, the sync store makes no
call), Django's ``AsyncClient`` through the async middleware, and a real server - uvicorn
serving ``tests/asgi_django_app.py`` driven by httpx: calls made, concurrent requests on one
session, a client that goes away, cycle_key and flush."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import django
import httpx
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
django.setup()

from django.test import AsyncClient, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from dynamo_sessions.aio_store import AsyncSessionStore  # noqa: E402
from dynamo_sessions.config import SessionConfig  # noqa: E402
from dynamo_sessions.django import SessionStore, backend  # noqa: E402
from dynamo_sessions.store import create_store, new_session_id  # noqa: E402
from dynamo_sessions.testing.servers import DynamoDBLocal  # noqa: E402

from . import asgi_session_checks as checks  # noqa: E402
from .asgi_support import UvicornProcess  # noqa: E402
from .django_async_support import (  # noqa: E402
    read_only,
    read_write,
    saved_and_reopened,
    untouched,
)
from .web_support import unique_name  # noqa: E402

pytestmark = pytest.mark.dynamodb_local

COOKIE = "sessionid"


django_table = checks.table_fixture("django_table", "asgi-django")


@pytest.fixture(params=checks.LOCKINGS)
def locking(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch, dynamodb_local: DynamoDBLocal,
           django_table: tuple[Any, str], locking: str) -> Iterator[None]:
    """The engine given its endpoint (no client): its async methods on the async store."""
    checks.dummy_credentials(monkeypatch)
    options = {"table_name": django_table[1], "endpoint_url": dynamodb_local.endpoint_url,
               "region_name": "us-east-1", "locking": locking, "session_name": unique_name()}
    with override_settings(DYNAMO_SESSIONS=options, ROOT_URLCONF=__name__):
        yield


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting what is submitted to it."""

    submitted: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        type(self).submitted.append(repr(fn))
        return super().submit(fn, *args, **kwargs)


def on_the_loop(scenario: Any) -> tuple[set[int], list[str]]:
    """Run ``scenario()`` on a new loop with a counting executor; return the threads the
    async store ran its operations on, and what was submitted to the executor once the
    loop's client was built (aiobotocore builds its SSL contexts on the executor, once per
    client, on its first call: not a request's cost)."""
    threads: set[int] = set()
    original = AsyncSessionStore.run

    async def run(self: AsyncSessionStore, *args: Any, **kwargs: Any) -> Any:
        threads.add(threading.get_ident())
        return await original(self, *args, **kwargs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(CountingExecutor(max_workers=2))
        backend().async_request()  # the async store, and this loop's client in use:
        await backend().async_store.exists(new_session_id())
        CountingExecutor.submitted.clear()
        try:
            await scenario()
        finally:
            if backend().async_store is not None:
                await backend().async_store.aclose()

    CountingExecutor.submitted = []
    AsyncSessionStore.run = run  # type: ignore[method-assign]
    try:
        asyncio.run(main())
    finally:
        AsyncSessionStore.run = original  # type: ignore[method-assign]
    return threads, CountingExecutor.submitted


def test_async_methods_run_on_the_event_loop_without_a_thread(native: None) -> None:
    async def scenario() -> None:
        session, other = await saved_and_reopened(SessionStore)
        key = session.session_key
        await other.arelease_lock()
        assert await session.aincrement("x", 2) == 3
        await session.asave()
        assert await SessionStore(key).aget("x") == 3
        await session.acycle_key()
        assert session.session_key != key and not await session.aexists(key)
        assert await SessionStore(session.session_key).aget("x") == 3
        await session.aflush()
        assert session.session_key is None
        await session.acreate()
        assert await session.aexists(session.session_key)
        await session.adelete()
        assert not await session.aexists(session.session_key)

    threads, submitted = on_the_loop(scenario)
    assert threads == {threading.get_ident()}  # asyncio.run's loop runs on this thread
    assert submitted == []
    assert backend().store.metrics.total_calls == 0  # the sync store was never used
    assert backend().async_store.metrics.total_calls > 0


urlpatterns = [path("rw", read_write), path("ro", read_only), path("", untouched)]


def test_the_async_middleware_saves_on_the_event_loop(native: None, locking: str) -> None:
    async def scenario() -> None:
        client = AsyncClient()
        assert (await client.get("/rw")).content == b"1"
        assert (await client.get("/rw")).content == b"2"
        backend().async_store.metrics.reset()
        response = await client.get("/ro")
        assert response.content == b"2" and COOKIE not in response.cookies
        assert "Cookie" in response["Vary"]
        calls = dict(backend().async_store.metrics.calls)
        assert calls == ({"GetItem": 1} if locking != "pessimistic" else calls)
        backend().async_store.metrics.reset()
        assert (await client.get("/")).content == b"ok"
        assert backend().async_store.metrics.total_calls == 0

    threads, _ = on_the_loop(scenario)
    assert threads == {threading.get_ident()}
    assert backend().store.metrics.total_calls == 0


@override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"])
def test_djangos_own_middleware_saves_an_async_loaded_session_on_the_loop(
        native: None) -> None:
    """Django's sync middleware runs on a worker thread; the session it saves was loaded
    natively, so the save goes back to the event loop (``async_to_sync``) - the loop's client,
    the session's own state.  (A new session, which made no call before that save, is
    created by the sync store on the worker thread.)"""
    async def scenario() -> None:
        client = AsyncClient()
        assert (await client.get("/rw")).content == b"1"
        backend().store.metrics.reset()
        assert (await client.get("/rw")).content == b"2"
        assert (await client.get("/ro")).content == b"2"

    threads, _ = on_the_loop(scenario)
    assert threads == {threading.get_ident()}
    assert backend().store.metrics.total_calls == 0


# --- through uvicorn ----------------------------------------------------------------------------


@pytest.fixture
def server(dynamodb_local: DynamoDBLocal, django_table: tuple[Any, str],
           locking: str) -> Iterator[UvicornProcess]:
    env = {"ASGI_APP_ENDPOINT_URL": dynamodb_local.endpoint_url,
           "ASGI_APP_TABLE": django_table[1], "ASGI_APP_LOCKING": locking,
           "ASGI_APP_ASYNC": "native"}
    with UvicornProcess("tests.asgi_django_app:application", env=env) as served:
        yield served


def calls(client: httpx.Client) -> dict[str, int]:
    made: dict[str, int] = client.get("/calls").json()
    return made


@contextlib.contextmanager
def new_session(server: UvicornProcess) -> Iterator[httpx.Client]:
    """A client holding a new session (its counter at 1)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/rw").text == "1" and COOKIE in client.cookies
        yield client


def test_served_untouched_makes_no_call_and_read_only_one_get_item(server: UvicornProcess,
                                                                   locking: str) -> None:
    with new_session(server) as client:
        calls(client)
        assert client.get("/").text == "ok"
        assert calls(client) == {}
        assert client.get("/ro").text == "1"
        made = calls(client)
        if locking == "pessimistic":
            assert "GetItem" not in made and "PutItem" not in made  # the lock, given back
        else:
            assert made == {"GetItem": 1}


# Counters (aincrement) in every mode; a plain read-modify-write is serialized by the
# pessimistic lock only, so it runs in that mode alone.
@pytest.mark.parametrize(("path", "locking"), [
    *[("/inc", locking) for locking in checks.LOCKINGS], ("/rw", "pessimistic")])
def test_served_concurrent_requests_on_one_session_lose_no_update(
        server: UvicornProcess, locking: str, path: str) -> None:
    with new_session(server) as client:
        cookies = {COOKIE: client.cookies[COOKIE]}
        answers = asyncio.run(checks.concurrently(server.url, cookies, path))
        assert [answer.status_code for answer in answers] == [200] * checks.CONCURRENT
        assert client.get("/ro").text == str(1 + checks.CONCURRENT)


def test_served_cycle_key_and_flush(server: UvicornProcess) -> None:
    with new_session(server) as client:
        old = client.cookies[COOKIE]
        assert client.get("/cycle").text == "1"
        new = client.cookies[COOKIE]
        assert new != old
        with httpx.Client(base_url=server.url, timeout=60, cookies={COOKIE: old}) as stale:
            assert stale.get("/ro").text == "0"  # the old key is dead
        assert client.get("/ro").text == "1"
        assert client.get("/flush").text == "flushed"
        with httpx.Client(base_url=server.url, timeout=60, cookies={COOKIE: new}) as after:
            assert after.get("/ro").text == "0"


@pytest.mark.parametrize("locking", ["pessimistic"])
def test_served_client_that_goes_away_leaves_no_lock(server: UvicornProcess,
                                                     django_table: tuple[Any, str]) -> None:
    ddb, table = django_table
    with new_session(server) as client:
        cookie = client.cookies[COOKIE]
        item_key = create_store(SessionConfig(table_name=table), ddb,
                                session_name=COOKIE).item_key(cookie)
        assert not checks.locked(ddb, table, item_key)
        checks.go_away_while_holding(server.url, {COOKIE: cookie}, ddb, table, item_key)
        checks.wait_for(lambda: not checks.locked(ddb, table, item_key))
        assert client.get("/rw").text == "2"
