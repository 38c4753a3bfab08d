"""The asyncio transport's lease renewer (``transport/aio.py``) on a simulated monotonic clock,
its renewals real conditional UpdateItems on DynamoDB Local (each counted on the item)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dynamo_sessions.lease import RETRY_SECONDS
from dynamo_sessions.protocol.steps import Call, Drop, Hold, Operation
from dynamo_sessions.transport import aio
from dynamo_sessions.transport.translate import is_condition_failure

from .test_transport_aio import client_for, key, locked, settle, stored

pytestmark = pytest.mark.dynamodb_local


class Clock:
    """A monotonic clock moved by hand; ``sleep`` waits until it has been moved far enough."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self.now + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in list(self._waiters):
            if entry[0] <= self.now:
                self._waiters.remove(entry)
                if not entry[1].done():
                    entry[1].set_result(None)


class Owner:
    """Stands for a request's session object (held weakly by the renewer)."""


class Leases:
    """A table's locks taken, renewed and counted through real calls."""

    def __init__(self, table: str, clock: Clock) -> None:
        self.table = table
        self.clock = clock
        self.renewer = aio.AsyncLeaseRenewer(clock.monotonic, clock.sleep)
        self.renew_calls = 0

    def renew(self, name: str, token: str, owner: Any) -> Operation[bool]:
        """The renewal: a conditional UpdateItem counting renewals on the item itself."""
        assert isinstance(owner, Owner)
        self.renew_calls += 1
        try:
            yield Call("UpdateItem", {
                "TableName": self.table, "Key": key(name), "UpdateExpression": "ADD renewals :one",
                "ConditionExpression": "#l = :t", "ExpressionAttributeNames": {"#l": "lock"},
                "ExpressionAttributeValues": {":t": {"S": token}, ":one": {"N": "1"}}})
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def take(self, name: str, token: str, owner: Any,
             max_hold_seconds: float = 120.0) -> Operation[None]:
        yield locked(self.table, name, token)
        yield Hold(name, token, 10.0, self.clock.monotonic(), max_hold_seconds, name, owner)

    async def hold(self, client: Any, name: str, token: str, owner: Any,
                   max_hold_seconds: float = 120.0) -> None:
        """Take the lock on ``name`` and hold it (the renewer from now on)."""
        await self.run(client, self.take(name, token, owner, max_hold_seconds))

    async def run(self, client: Any, operation: Operation[Any]) -> Any:
        return await aio.run(client, operation, renew=self.renew, renewer=self.renewer,
                             monotonic=self.clock.monotonic, sleep=self.clock.sleep)

    async def after(self, seconds: float, condition: Callable[[], bool]) -> None:
        """Move the clock on, then let the renewer act until ``condition`` holds."""
        self.clock.advance(seconds)
        await settle(condition)


class LeaseTest:
    """A test's table on DynamoDB Local: runs the test's body on the asyncio transport and reads
    back what the renewals did to the items."""

    def __init__(self, endpoint_url: str, client: Any, table: str) -> None:
        self.endpoint_url = endpoint_url
        self.client = client
        """The synchronous client, for reading and changing items behind the renewer's back."""
        self.table = table

    def run(self, body: Callable[[Any, Leases], Awaitable[None]]) -> Leases:
        """Run ``body(client, leases)`` (a coroutine function) on a fresh loop and client."""
        leases = Leases(self.table, Clock())

        async def main() -> None:
            async with client_for(self.endpoint_url) as client:
                await body(client, leases)
            assert leases.renewer.holding() == 0  # every test ends with nothing held

        asyncio.run(main())
        return leases

    def item(self, name: str) -> dict[str, Any]:
        return stored(self.client, self.table, name)

    def renewals(self, name: str) -> int:
        return int(self.item(name).get("renewals", {"N": "0"})["N"])


@pytest.fixture
def lease_test(dynamodb_local: Any, ddb_local_client: Any, local_table: str) -> LeaseTest:
    return LeaseTest(dynamodb_local.endpoint_url, ddb_local_client, local_table)


def test_a_held_lease_is_renewed_every_half_lease_until_dropped(lease_test: LeaseTest) -> None:
    async def body(client: Any, leases: Leases) -> None:
        owner = Owner()
        await leases.hold(client, "h", "tok", owner)
        assert leases.renewer.holding() == 1
        await leases.after(4.9, lambda: True)
        for _ in range(5):
            await asyncio.sleep(0)
        assert leases.renew_calls == 0  # not yet half a lease
        await leases.after(0.1, lambda: leases.renewer.renewed == 1)
        await leases.after(5.0, lambda: leases.renewer.renewed == 2)
        assert lease_test.renewals("h") == 2

        def drop() -> Operation[None]:
            yield Drop("tok")

        await leases.run(client, drop())
        assert leases.renewer.holding() == 0
        await leases.after(20.0, lambda: True)
        for _ in range(5):
            await asyncio.sleep(0)
        assert leases.renew_calls == 2
        del owner

    leases = lease_test.run(body)
    assert (leases.renewer.renewed, leases.renewer.lost, leases.renewer.failed) == (2, 0, 0)
    assert lease_test.renewals("h") == 2


def test_renewals_stop_when_the_owner_is_gone_or_after_max_hold(lease_test: LeaseTest) -> None:
    async def body(client: Any, leases: Leases) -> None:
        forgotten = Owner()
        await leases.hold(client, "gone", "t-gone", forgotten)
        kept = Owner()
        await leases.hold(client, "max", "t-max", kept, max_hold_seconds=12.0)
        del forgotten
        gc.collect()
        await leases.after(5.0, lambda: leases.renewer.renewed == 1)  # only "max" renewed
        assert leases.renewer.holding() == 1
        await leases.after(5.0, lambda: leases.renewer.renewed == 2)
        await leases.after(5.0, lambda: leases.renewer.holding() == 0)  # 15 s > 12 s: stops
        assert leases.renew_calls == 2
        del kept

    lease_test.run(body)
    assert lease_test.renewals("gone") == 0
    assert lease_test.renewals("max") == 2


def test_a_lost_lock_stops_and_a_failed_renewal_is_retried(lease_test: LeaseTest) -> None:
    async def body(client: Any, leases: Leases) -> None:
        owner = Owner()
        await leases.hold(client, "lost", "mine", owner)
        lease_test.client.put_item(TableName=lease_test.table,  # lapsed and taken by another
                                  Item={**key("lost"), "lock": {"S": "theirs"}})
        await leases.after(5.0, lambda: leases.renewer.lost == 1)
        assert leases.renewer.holding() == 0

        await leases.hold(client, "fail", "t-fail", owner)
        leases.table = lease_test.table + "-missing"  # renewals now fail (ResourceNotFound)
        await leases.after(5.0, lambda: leases.renewer.failed == 1)
        await leases.after(RETRY_SECONDS, lambda: leases.renewer.failed == 2)  # retried
        leases.table = lease_test.table  # the table answers again: renewed
        await leases.after(RETRY_SECONDS, lambda: leases.renewer.renewed == 1)
        leases.renewer.drop("t-fail")
        del owner

    leases = lease_test.run(body)
    assert leases.renew_calls == 4
    assert lease_test.item("lost")["lock"] == {"S": "theirs"}
    assert lease_test.renewals("fail") == 1
