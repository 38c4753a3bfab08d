"""The Django engine's native async methods (``aload`` / ``asave`` / ``acreate`` / ``aflush`` /
``acycle_key``) under lost answers, hung calls and hostile items, through the fault proxy in
front of DynamoDB Local: a retried call that had been applied is the request's own success
(no ``UpdateError``, no second key created, nothing left locked), a hung read is the typed
``DynamoUnavailable`` and a malformed item ``CorruptSession`` - never an empty session."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
django.setup()

from django.test import AsyncClient, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from dynamo_sessions import CorruptSession, DynamoUnavailable, SessionConfig  # noqa: E402
from dynamo_sessions.django import SessionStore, backend  # noqa: E402
from dynamo_sessions.store import create_store  # noqa: E402

from . import asgi_session_checks as checks  # noqa: E402
from .django_async_support import read_write  # noqa: E402
from .faultproxy import FaultProxy  # noqa: E402
from .test_faults import ATTEMPTS, DATA_WRITE, LOCK_TAKE  # noqa: E402
from .test_faults import _no_retry_sleep as _no_retry_sleep  # noqa: E402
from .test_reliability_faults import LOST, READ_TIMEOUT_SECONDS, unlocked  # noqa: E402
from .web_support import unique_name  # noqa: E402

pytestmark = [pytest.mark.dynamodb_local, pytest.mark.slow]  # read timeouts: CI runs it once

django_table = checks.table_fixture("django_table", "aio-django-failures")
urlpatterns = [path("rw", read_write)]


class Engine:
    """The Django engine on the async store, its calls through ``proxy``."""

    def __init__(self, proxy: FaultProxy, client: Any, table: str, locking: str) -> None:
        self.proxy = proxy
        self.client = client
        self.table = table
        self.locking = locking
        self.options = {"table_name": table, "endpoint_url": proxy.endpoint_url,
                        "region_name": "us-east-1", "locking": locking,
                        "session_name": unique_name(), "boto_max_attempts": ATTEMPTS,
                        "read_timeout_seconds": READ_TIMEOUT_SECONDS}
        proxy.delay_seconds = 3 * READ_TIMEOUT_SECONDS

    def run(self, scenario: Callable[[], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            try:
                return await scenario()
            finally:
                await backend().async_store.aclose()

        with override_settings(DYNAMO_SESSIONS=self.options, ROOT_URLCONF=__name__):
            return asyncio.run(main())

    def item(self, key: str) -> Any:
        store = create_store(SessionConfig(table_name=self.table, client=self.client),
                             session_name=self.options["session_name"])
        return self.client.get_item(TableName=self.table, ConsistentRead=True,
                                    Key={"id": {"S": store.item_key(key)}}).get("Item")

    def items(self) -> int:
        prefix = f"{self.options['session_name']}_"
        found = self.client.scan(TableName=self.table, ConsistentRead=True)["Items"]
        return sum(item["id"]["S"].startswith(prefix) for item in found)


@pytest.fixture(params=checks.LOCKINGS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
           fault_proxy: FaultProxy, django_table: tuple[Any, str]) -> Iterator[Engine]:
    checks.dummy_credentials(monkeypatch)
    client, table = django_table
    yield Engine(fault_proxy, client, table, str(request.param))


async def stored(key: str) -> dict[str, Any]:
    """The session as a later request reads it (its lock, if any, released)."""
    reader = SessionStore(key)
    data = dict(await reader.aload())
    await reader.arelease_lock()
    return data


async def new_session(data: dict[str, Any]) -> str:
    session = SessionStore()
    for name, value in data.items():
        await session.aset(name, value)
    await session.asave()
    assert session.session_key is not None
    return str(session.session_key)


@pytest.mark.parametrize("kind", LOST)
def test_lost_asave(engine: Engine, kind: str) -> None:
    async def scenario() -> str:
        key = await new_session({"n": 1})
        session = SessionStore(key)
        await session.aset("n", await session.aget("n") + 1)
        engine.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
        await session.asave()  # not UpdateError for its own write
        assert await stored(key) == {"n": 2}
        return key

    key = engine.run(scenario)
    engine.proxy.stop()
    assert engine.proxy.counts() == {kind: 1}
    assert unlocked(engine.item(key))


@pytest.mark.parametrize("kind", LOST)
def test_lost_acreate_makes_one_session(engine: Engine, kind: str) -> None:
    """The create is applied, its answer lost: not ``CreateError`` (which would make Django
    create the session again under another key, leaving the first behind)."""
    async def scenario() -> str:
        engine.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
        key = await new_session({"new": 1})
        assert await stored(key) == {"new": 1}
        return key

    key = engine.run(scenario)
    engine.proxy.stop()
    assert engine.proxy.counts() == {kind: 1}
    assert unlocked(engine.item(key)) and engine.items() == 1


@pytest.mark.parametrize("kind", LOST)
def test_lost_aflush(engine: Engine, kind: str) -> None:
    async def scenario() -> str:
        key = await new_session({"user": "ann"})
        session = SessionStore(key)
        assert await session.aget("user") == "ann"
        engine.proxy.script(kind, "DeleteItem", 1)
        await session.aflush()
        assert session.session_key is None
        return key

    key = engine.run(scenario)
    engine.proxy.stop()
    assert engine.proxy.counts() == {kind: 1}
    assert engine.item(key) is None


@pytest.mark.parametrize("kind", LOST)
def test_lost_acycle_key(engine: Engine, kind: str) -> None:
    """Login: the new key's create is applied, its answer lost; the data is under the new key
    only, the old key no longer serves it."""
    async def scenario() -> tuple[str, str]:
        old = await new_session({"cart": [1]})
        session = SessionStore(old)
        assert await session.aget("cart") == [1]
        engine.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
        await session.acycle_key()
        new = str(session.session_key)
        assert new != old
        assert await stored(new) == {"cart": [1]}
        assert not await SessionStore(old).aexists(old)
        return old, new

    old, new = engine.run(scenario)
    engine.proxy.stop()
    assert engine.proxy.counts() == {kind: 1}
    assert unlocked(engine.item(new))
    assert engine.item(old) is None or "data" not in engine.item(old)


def test_a_hung_aload_raises_the_typed_error(engine: Engine) -> None:
    api, contains = (("UpdateItem", LOCK_TAKE) if engine.locking == "pessimistic"
                     else ("GetItem", ""))

    async def scenario() -> str:
        key = await new_session({"n": 1})
        engine.proxy.script("delay", api, ATTEMPTS, contains)
        with pytest.raises(DynamoUnavailable):
            await SessionStore(key).aget("n")  # never an empty session
        assert await stored(key) == {"n": 1}
        return key

    key = engine.run(scenario)
    engine.proxy.stop()
    assert engine.proxy.counts() == {"delay": ATTEMPTS}
    assert unlocked(engine.item(key))


def test_a_malformed_item_raises_corrupt_session(engine: Engine) -> None:
    async def scenario() -> str:
        return await new_session({"n": 1})

    key = engine.run(scenario)
    item = engine.item(key)
    item["data"] = {"B": b"\x00\xffnot a payload"}
    engine.client.put_item(TableName=engine.table, Item=item)

    async def read() -> None:
        for _ in range(2):  # the second read finds the same item: no lock was left
            session = SessionStore(key)
            with pytest.raises(CorruptSession):
                await session.aget("n")
            with contextlib.suppress(CorruptSession):
                await session.arelease_lock()

    engine.run(read)
    assert engine.item(key) == item


def test_a_hung_save_in_the_async_middleware_is_an_error_answer(engine: Engine) -> None:
    """The view ran; its save (``asave`` in the async middleware) hangs past every attempt:
    a 500, not the view's 200 - the session is as it was, no lock left."""
    async def scenario() -> str:
        client = AsyncClient(raise_request_exception=False)
        first = await client.get("/rw")
        assert (first.status_code, first.content) == (200, b"1")
        engine.proxy.script("delay", "UpdateItem", ATTEMPTS, DATA_WRITE)
        assert (await client.get("/rw")).status_code == 500
        again = await client.get("/rw")
        assert (again.status_code, again.content) == (200, b"2")  # "2" was not stored
        return str(client.cookies["sessionid"].value)

    key = engine.run(scenario)
    engine.proxy.stop()
    assert engine.proxy.counts() == {"delay": ATTEMPTS}
    assert unlocked(engine.item(key))
