"""The async store's leases, clock and reads of hostile items, on DynamoDB Local - the sync
side's cases (``test_lease_clock.py``, ``test_malformed_items.py``) on the asyncio driver.

* A lock held longer than its lease by a slow request is renewed by the event loop's renewer
  task; a lock lost meanwhile is ``LockLost`` at save (never a silent overwrite); a renewal that
  fails is tried again; the renewer works on every loop a store is used on and after
  ``aclose``; nothing is left pending ("Task was destroyed but it is pending").
* A client whose clock is 60 s off learns DynamoDB's from the ``Date`` headers of
  aiobotocore's answers: it takes no live lease and serves no expired session.
* A malformed item read through the async store raises ``CorruptSession`` and changes nothing.
* The store, shared by every task, keeps nothing of a request.

Waits are bounded loops on counts (renewals made, refused, failed), never durations.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dynamo_sessions import CorruptSession, LockLost, LockTimeout, SessionConfig, new_session_id
from dynamo_sessions.aio_store import AsyncSessionStore, create_async_store
from dynamo_sessions.clock import UNCERTAINTY_BUDGET_SECONDS, ServerClock
from dynamo_sessions.store import LOCK, LOCK_UNTIL_MS, create_store
from dynamo_sessions.transport import aio

from .aio_support import CREDENTIALS
from .faultproxy import FaultProxy
from .handler_support import raw_item
from .test_faults import ATTEMPTS
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once
from .test_lease_clock import MINUTE, server_date, set_expires, skewed
from .test_malformed_items import HOSTILE, LIVE
from .test_transport_aio import settle as until  # bounded: waits on counts, not times

pytestmark = [pytest.mark.dynamodb_local, pytest.mark.slow]  # read timeouts: CI runs it once

MODES = ["none", "pessimistic", "optimistic"]
LEASE_SECONDS = 2.0
"""A short lease, so a renewal (due at half of it) comes within the test."""
RENEWAL = '"SET #lu = :until"'


def config_for(endpoint_url: str, table: str, locking: str, **options: Any) -> SessionConfig:
    return SessionConfig(table_name=table, endpoint_url=endpoint_url, locking=locking,
                         region_name="us-east-1", **options)


def on_loop(config: SessionConfig, body: Callable[[AsyncSessionStore], Awaitable[Any]],
            clock: Any = None) -> Any:
    """``body(store)`` on a fresh event loop, the store on a client given to it."""
    async def main() -> Any:
        async with aio.build_async_client(config, **CREDENTIALS) as client:
            return await body(create_async_store(config, client, clock=clock))

    return asyncio.run(main())


def competitor(client: Any, table: str) -> Any:
    """Another request's store (sync, straight to DynamoDB Local) that does not wait."""
    return create_store(SessionConfig(table_name=table, locking="pessimistic",
                                      lock_lease_seconds=LEASE_SECONDS,
                                      max_lock_wait_seconds=0.0), client)


# --- lease renewal on asyncio -------------------------------------------------------------------


def test_a_slow_request_keeps_its_lock_by_renewals(dynamodb_local: Any, ddb_local_client: Any,
                                                   local_table: str) -> None:
    config = config_for(dynamodb_local.endpoint_url, local_table, "pessimistic",
                        lock_lease_seconds=LEASE_SECONDS)
    sid = new_session_id()
    other = competitor(ddb_local_client, local_table)

    async def body(store: AsyncSessionStore) -> int:
        session = await store.load(sid)
        renewer = aio.loop_renewer()
        await until(lambda: renewer.renewed >= 3)  # held for more than one lease
        with pytest.raises(LockTimeout):
            other.load(sid)
        session.data["work"] = "done"
        assert await store.save(session)  # no LockLost
        assert renewer.holding() == 0
        return renewer.lost + renewer.failed

    assert on_loop(config, body) == 0
    assert other.load(sid).data == {"work": "done"}


def test_a_lock_lost_meanwhile_is_lock_lost_at_save(dynamodb_local: Any, ddb_local_client: Any,
                                                    local_table: str) -> None:
    """The lease lapsed and another request took the lock: the renewal is refused, and the
    save raises ``LockLost`` - the other request's lock and data are left as they are."""
    config = config_for(dynamodb_local.endpoint_url, local_table, "pessimistic",
                        lock_lease_seconds=LEASE_SECONDS)
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> dict[str, Any] | None:
        await store.save(await store.load(sid), {"theirs": 0})
        session = await store.load(sid)
        key = session.key
        ddb_local_client.update_item(  # taken over (as after a lapsed lease)
            TableName=local_table, Key={"id": {"S": key}}, UpdateExpression="SET #l = :t",
            ExpressionAttributeNames={"#l": LOCK}, ExpressionAttributeValues={
                ":t": {"S": "another-request"}})
        before = raw_item(ddb_local_client, local_table, key)
        renewer = aio.loop_renewer()
        await until(lambda: renewer.lost >= 1)
        with pytest.raises(LockLost):
            await store.save(session, {"ours": 1})
        assert raw_item(ddb_local_client, local_table, key) == before
        return before

    item = on_loop(config, body)
    assert item is not None and item[LOCK] == {"S": "another-request"}


@pytest.mark.parametrize(("kind", "count", "failed"), [
    ("throttle", ATTEMPTS, 1),  # every attempt refused: the renewal fails, and is tried again
    ("drop_after", 1, 0),  # applied, answer lost: botocore's retry finds the lock ours
    ("delay_after", 1, 0),
])
def test_a_failed_or_lost_renewal(dynamodb_local: Any, fault_proxy: FaultProxy,
                                  local_table: str, kind: str, count: int,
                                  failed: int) -> None:
    config = config_for(fault_proxy.endpoint_url, local_table, "pessimistic",
                        lock_lease_seconds=LEASE_SECONDS, boto_max_attempts=ATTEMPTS,
                        read_timeout_seconds=0.3)
    fault_proxy.delay_seconds = 0.9
    sid = new_session_id()
    fault_proxy.script(kind, "UpdateItem", count, RENEWAL)

    async def body(store: AsyncSessionStore) -> tuple[int, int, int]:
        session = await store.load(sid)
        renewer = aio.loop_renewer()
        await until(lambda: renewer.renewed >= 1)
        assert await store.save(session, {"n": 1})
        return renewer.failed, renewer.lost, renewer.renewed >= 1

    assert on_loop(config, body) == (failed, 0, True)
    assert fault_proxy.counts() == {kind: count}


def test_renewals_on_every_loop_and_after_aclose(dynamodb_local: Any, ddb_local_client: Any,
                                                 local_table: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """One store (its clients built per loop) used on two event loops, closed on each while a
    lock is held: the lock is renewed on its loop, its save succeeds, nothing is left
    pending or unclosed."""
    for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
        monkeypatch.setenv(name, value)
    config = config_for(dynamodb_local.endpoint_url, local_table, "pessimistic",
                        lock_lease_seconds=LEASE_SECONDS)
    store = create_async_store(config)
    sid = new_session_id()

    async def request(n: int) -> tuple[int, bool]:
        session = await store.load(sid)
        renewer = aio.loop_renewer()
        await store.aclose()  # e.g. a lifespan shutdown while a request still works
        await until(lambda: renewer.renewed + renewer.failed >= 2)
        session.data["n"] = n
        assert await store.save(session)
        await store.aclose()
        return renewer.failed, renewer.renewed >= 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING):
            results = [asyncio.run(request(n)) for n in (1, 2)]
            gc.collect()
    assert results == [(0, True), (0, True)]  # renewed on each loop, none failed
    assert create_store(config.replace(client=ddb_local_client)).load(sid).data == {"n": 2}
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records] == []


# --- a clock 60 s off ---------------------------------------------------------------------------


def test_a_fast_async_client_takes_no_live_lease(dynamodb_local: Any, ddb_local_client: Any,
                                                 local_table: str) -> None:
    holder = create_store(SessionConfig(table_name=local_table, locking="pessimistic"),
                          ddb_local_client)
    sid = new_session_id()
    held = holder.load(sid)
    config = config_for(dynamodb_local.endpoint_url, local_table, "pessimistic",
                        max_lock_wait_seconds=0.0)

    async def body(store: AsyncSessionStore) -> ServerClock:
        with pytest.raises(LockTimeout):
            await store.load(sid)
        assert isinstance(store.clock, ServerClock)
        return store.clock

    clock = on_loop(config, body, skewed(MINUTE))
    assert clock.synced and clock.sync_calls == 1 and clock.observations >= 2
    assert abs(clock.offset_seconds() + MINUTE) <= UNCERTAINTY_BUDGET_SECONDS
    assert holder.save(held, {"user": "jeremy"})  # no LockLost: the lease was respected


@pytest.mark.parametrize("skew", [MINUTE, -MINUTE])
def test_a_skewed_async_clients_lease_is_one_lease_by_the_server_clock(
        dynamodb_local: Any, ddb_local_client: Any, local_table: str, skew: float) -> None:
    config = config_for(dynamodb_local.endpoint_url, local_table, "pessimistic")
    lease = config.lock_lease_seconds
    sid = new_session_id()
    first = server_date(ddb_local_client)

    async def body(store: AsyncSessionStore) -> tuple[float, float]:
        session = await store.load(sid)
        last = server_date(ddb_local_client) + 1  # the server's clock had not reached this
        item = raw_item(ddb_local_client, local_table, session.key)
        assert item is not None
        await store.release(session)
        return int(item[LOCK_UNTIL_MS]["N"]) / 1000, last

    until_, last = on_loop(config, body, skewed(skew))
    assert first + lease - UNCERTAINTY_BUDGET_SECONDS <= until_ <= last + lease


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("skew", [MINUTE, -MINUTE])
def test_a_skewed_async_client_reads_expiry_by_the_server_clock(
        dynamodb_local: Any, ddb_local_client: Any, local_table: str, mode: str,
        skew: float) -> None:
    """Fast: a session expiring in 30 s is still served (and not deleted).  Slow: one that
    expired 30 s ago is not served."""
    writer = create_store(SessionConfig(table_name=local_table, locking=mode), ddb_local_client)
    sid = new_session_id()
    writer.save(writer.load(sid), {"user": "jeremy"})
    key = writer.item_key(sid)
    set_expires(ddb_local_client, local_table, key, time.time() - 30 * (skew < 0 or -1))
    config = config_for(dynamodb_local.endpoint_url, local_table, mode)

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        session = await store.load(sid)
        await store.release(session)
        return session.data

    data = on_loop(config, body, skewed(skew))
    assert data == ({"user": "jeremy"} if skew > 0 else {})
    if skew > 0:
        assert raw_item(ddb_local_client, local_table, key) is not None


# --- items written badly by someone else -------------------------------------------------------


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("mode", MODES)
def test_a_malformed_item_raises_and_changes_nothing(dynamodb_local: Any, ddb_local_client: Any,
                                                     local_table: str, mode: str,
                                                     hostile: str) -> None:
    writer = create_store(SessionConfig(table_name=local_table, locking=mode), ddb_local_client)
    sid = new_session_id()
    writer.save(writer.load(sid), {"user": "jeremy", "cart": [1, 2, 3]})
    key = writer.item_key(sid)
    item = raw_item(ddb_local_client, local_table, key)
    assert item is not None
    item["expires"] = {"N": LIVE}
    for name, value in HOSTILE[hostile].items():
        item[name] = ({"B": bytes(item["data"]["B"])[:-3]} if value == "truncate" else value)
    ddb_local_client.put_item(TableName=local_table, Item=item)
    config = config_for(dynamodb_local.endpoint_url, local_table, mode)

    async def body(store: AsyncSessionStore) -> None:
        for load in (store.load, store.load):  # the second finds the same item: no lock left
            with pytest.raises(CorruptSession):
                await load(sid)
            assert raw_item(ddb_local_client, local_table, key) == item
        assert aio.loop_renewer().holding() == 0
        if hostile.startswith("expires"):  # no expiry to judge it by: typed, not a guess
            with pytest.raises(CorruptSession):
                await store.exists(sid)
        else:
            assert await store.exists(sid)
        assert await store.delete(sid)  # a broken session can still be logged out of

    on_loop(config, body)
    assert raw_item(ddb_local_client, local_table, key) is None


# --- nothing of a request on the shared store ---------------------------------------------------


def _state(obj: Any) -> dict[str, int]:
    return {name: id(value) for name, value in vars(obj).items()}


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_requests_leave_the_shared_store_as_it_was(
        dynamodb_local: Any, local_table: str, mode: str) -> None:
    config = config_for(dynamodb_local.endpoint_url, local_table, mode)
    sids = [new_session_id() for _ in range(8)]

    async def request(store: AsyncSessionStore, sid: str) -> dict[str, Any]:
        await store.create(sid, {"sid": sid})
        session = await store.load(sid)
        session.data["n"] = 1
        await store.save(session)
        again = await store.load(sid)
        await store.release(again)
        return again.data

    async def body(store: AsyncSessionStore) -> None:
        await store.exists(sids[0])  # the clock's first sync
        before = (_state(store), _state(store.protocol), vars(store.protocol.clock).keys())
        results = await asyncio.gather(*(request(store, sid) for sid in sids))
        assert results == [{"sid": sid, "n": 1} for sid in sids]
        after = (_state(store), _state(store.protocol), vars(store.protocol.clock).keys())
        assert after == before

    on_loop(config, body)


def test_a_loop_ending_while_a_lock_is_held_leaves_no_pending_task(
        dynamodb_local: Any, ddb_local_client: Any, local_table: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The loop ends (``asyncio.run`` returns) while a request still holds its lock: the
    renewer task ends with it - nothing is reported pending or destroyed - and the lock,
    no longer renewed, is taken once its lease has passed."""
    config = config_for(dynamodb_local.endpoint_url, local_table, "pessimistic",
                        lock_lease_seconds=LEASE_SECONDS)
    sid = new_session_id()
    kept: list[Any] = []

    async def body(store: AsyncSessionStore) -> None:
        kept.append(await store.load(sid))  # held past the loop's end
        renewer = aio.loop_renewer()
        await until(lambda: renewer.renewed >= 1)

    with caplog.at_level(logging.WARNING):
        on_loop(config, body)
        gc.collect()
    assert [r.getMessage() for r in caplog.records] == []
    waiter = create_store(config.replace(client=ddb_local_client, max_lock_wait_seconds=30.0))
    session = waiter.load(sid)  # served once the lease has lapsed
    assert session.data == {} and waiter.save(session, {"n": 1})

