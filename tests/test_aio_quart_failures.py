"""``dynamo_sessions.quart`` under lost answers, hung calls and hostile items, through the fault
proxy in front of DynamoDB Local, driven by Quart's test client: a retried call that had been
applied is the request's own success (the counter goes on, login and logout hold), a hung read
is an error answer - never a request served an empty session - and leaves no lock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from dynamo_sessions.testing.servers import DynamoDBLocal

from . import asgi_session_checks as checks
from .asgi_quart_app import make_app
from .faultproxy import FaultProxy
from .test_faults import ATTEMPTS, DATA_WRITE, LOCK_TAKE
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once
from .test_reliability_faults import LOST, READ_TIMEOUT_SECONDS, unlocked

pytestmark = [pytest.mark.dynamodb_local, pytest.mark.slow]  # read timeouts: CI runs it once

COOKIE = "session"
quart_table = checks.table_fixture("quart_table", "aio-quart-failures")


class App:
    """The test app on the async store, its calls through ``proxy``."""

    def __init__(self, proxy: FaultProxy, ddb: Any, table: str, locking: str) -> None:
        self.proxy = proxy
        self.ddb = ddb
        self.table = table
        self.locking = locking
        self.app = make_app(table_name=table, endpoint_url=proxy.endpoint_url,
                            region_name="us-east-1", locking=locking,
                            boto_max_attempts=ATTEMPTS,
                            read_timeout_seconds=READ_TIMEOUT_SECONDS)
        self.app.config["SESSION_COOKIE_NAME"] = COOKIE
        self.store: Any = self.app.session_interface.store  # type: ignore[attr-defined]
        proxy.delay_seconds = 3 * READ_TIMEOUT_SECONDS

    def run(self, scenario: Callable[[Any], Awaitable[Any]]) -> Any:
        """``scenario(client)`` with one Quart test client (it keeps the cookies)."""
        async def main() -> Any:
            try:
                return await scenario(self.app.test_client())
            finally:
                await self.store.aclose()

        return asyncio.run(main())

    def item(self, cookie: str) -> Any:
        return self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"id": {"S": self.store.item_key(cookie)}}).get("Item")


@pytest.fixture(params=checks.LOCKINGS)
def served(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
           fault_proxy: FaultProxy, quart_table: tuple[Any, str]) -> Iterator[App]:
    checks.dummy_credentials(monkeypatch)
    ddb, table = quart_table
    yield App(fault_proxy, ddb, table, str(request.param))


async def text(client: Any, path: str, status: int = 200) -> str:
    answer = await client.get(path)
    assert answer.status_code == status, (path, answer.status_code)
    return str(await answer.get_data(as_text=True))


def cookie_of(client: Any) -> str:
    return str(next(c.value for c in client.cookie_jar if c.name == COOKIE))


@pytest.mark.parametrize("kind", LOST)
def test_lost_save(served: App, kind: str) -> None:
    async def scenario(client: Any) -> str:
        assert await text(client, "/rw") == "1"
        served.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
        assert await text(client, "/rw") == "2"  # not 503 / 500 for its own write
        assert await text(client, "/rw") == "3"
        return cookie_of(client)

    cookie = served.run(scenario)
    served.proxy.stop()
    assert served.proxy.counts() == {kind: 1}
    assert unlocked(served.item(cookie))


@pytest.mark.parametrize("kind", LOST)
def test_lost_login_and_logout(served: App, kind: str) -> None:
    async def scenario(client: Any) -> tuple[str, str]:
        assert await text(client, "/rw") == "1"
        old = cookie_of(client)
        served.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)  # the new id's create
        assert await text(client, "/login") == "1"
        new = cookie_of(client)
        assert new != old and await text(client, "/ro") == "1"
        served.proxy.script(kind, "DeleteItem", 1)
        assert await text(client, "/logout") == "bye"
        return old, new

    old, new = served.run(scenario)
    served.proxy.stop()
    assert served.proxy.counts() == {kind: 2}
    assert served.item(new) is None
    old_item = served.item(old)
    assert old_item is None or "data" not in old_item


def test_a_hung_load_is_an_error_answer_not_an_empty_session(served: App) -> None:
    api, contains = (("UpdateItem", LOCK_TAKE) if served.locking == "pessimistic"
                     else ("GetItem", ""))

    async def scenario(client: Any) -> str:
        assert await text(client, "/rw") == "1"
        served.proxy.script("delay", api, ATTEMPTS, contains)
        await text(client, "/rw", 500)  # DynamoUnavailable: nothing read, nothing written
        assert await text(client, "/rw") == "2"  # served at once: no lock left behind
        return cookie_of(client)

    cookie = served.run(scenario)
    served.proxy.stop()
    assert served.proxy.counts() == {"delay": ATTEMPTS}
    assert unlocked(served.item(cookie))


def test_a_hung_save_is_an_error_answer_and_keeps_the_session(served: App) -> None:
    """The view ran, its save hangs past every attempt: not the view's 200 (its change was
    not stored) but an error answer; the session is as it was, no lock left."""
    async def scenario(client: Any) -> str:
        assert await text(client, "/rw") == "1"
        served.proxy.script("delay", "UpdateItem", ATTEMPTS, DATA_WRITE)
        await text(client, "/rw", 500)
        assert await text(client, "/rw") == "2"  # the failed "2" was not stored
        return cookie_of(client)

    cookie = served.run(scenario)
    served.proxy.stop()
    assert served.proxy.counts() == {"delay": ATTEMPTS}
    assert unlocked(served.item(cookie))


def test_a_malformed_item_is_an_error_answer_and_stays_as_it_was(served: App) -> None:
    async def scenario(client: Any) -> str:
        assert await text(client, "/rw") == "1"
        return cookie_of(client)

    async def again(client: Any) -> None:
        client.set_cookie("localhost", COOKIE, cookie)
        for _ in range(2):  # the second finds the same item: no lock was left
            await text(client, "/rw", 500)

    cookie = served.run(scenario)
    item = served.item(cookie)
    item["data"] = {"B": b"\x00\xffnot a payload"}
    served.ddb.put_item(TableName=served.table, Item=item)
    served.run(again)
    assert served.item(cookie) == item


def test_the_interface_keeps_nothing_of_a_request(dynamodb_local: DynamoDBLocal,
                                                  quart_table: tuple[Any, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The session interface and its store are shared by every request: concurrent requests
    leave their attributes as they were."""
    checks.dummy_credentials(monkeypatch)
    app = make_app(table_name=quart_table[1], endpoint_url=dynamodb_local.endpoint_url,
                   region_name="us-east-1", locking="optimistic")
    interface: Any = app.session_interface

    def state() -> dict[str, int]:
        return {**{f"i.{k}": id(v) for k, v in vars(interface).items()},
                **{f"s.{k}": id(v) for k, v in vars(interface.store).items()
                   if k not in ("_opening", "_contexts")}}  # a client per loop

    async def one(n: int) -> str:
        client = app.test_client()
        for _ in range(n):
            await text(client, "/rw")
        return await text(client, "/ro")

    async def main() -> None:
        await text(app.test_client(), "/rw")  # the loop's client built
        before = state()
        assert await asyncio.gather(*(one(n) for n in range(1, 9))) == [
            str(n) for n in range(1, 9)]
        assert state() == before
        await interface.store.aclose()

    asyncio.run(main())
