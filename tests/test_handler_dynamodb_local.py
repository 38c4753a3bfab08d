"""The handler on Amazon's DynamoDB Local: exact capacity units, exact limits, expiry as TTL
leaves it, and concurrent requests on one session (8 threads x 50 increments).

DynamoDB Local reports the ConsumedCapacity of every successful call, so the costs asserted
here are DynamoDB's own figures, compared with what the core computes from the item's size.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dynamo_sessions import (
    SessionConfig,
    SessionHandler,
    SessionTooLarge,
    item_size,
    new_session_id,
    read_units,
    write_units,
)
from dynamo_sessions._core import MAX_ITEM_BYTES
from dynamo_sessions.store import _LOCK_BYTES

from .conftest import make_table
from .handler_support import Clock, FakeTimer, raw_item, run_threads, stored_session

pytestmark = pytest.mark.dynamodb_local

MODES = ["none", "pessimistic", "optimistic"]
THREADS = 8
INCREMENTS = 50


@pytest.fixture
def table(ddb_local_client: Any, table_name: str) -> str:
    make_table(ddb_local_client, table_name)
    return table_name


def make_handler(client: Any, table: str, clock: Any = time.time,
                 **options: Any) -> SessionHandler:
    handler = SessionHandler(SessionConfig(table_name=table, **options), client, clock=clock)
    handler.open("", "PHPSESSID")
    return handler


def stored_size(handler: SessionHandler, sid: str) -> int:
    item = raw_item(handler.client, handler.config.table_name, handler.store.item_key(sid))
    assert item is not None
    return int(item_size(item))


def session_of(size: int) -> dict[str, Any]:
    """A session whose payload is about ``size`` bytes and does not compress."""
    import random

    rng = random.Random(size)
    return {"user": "jeremy", "blob": bytes(rng.getrandbits(8) for _ in range(size))}


# --- capacity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [200, 3000, 9000])
@pytest.mark.parametrize("mode", MODES)
def test_request_costs_exact_units(ddb_local_client: Any, table: str, mode: str,
                                   size: int) -> None:
    """A changed write costs the item's write units; an unchanged request writes no data:
    1 read and 0 writes without a lock, lock + release with one."""
    handler = make_handler(ddb_local_client, table, locking=mode)
    sid = new_session_id()
    handler.read(sid)
    handler.metrics.reset()
    handler.write(sid, session_of(size))
    units = write_units(stored_size(handler, sid))
    assert handler.metrics.write_units == units
    assert handler.metrics.read_units == 0

    handler.metrics.reset()
    handler.write(sid, handler.read(sid))  # a read-only request
    stored = stored_size(handler, sid)
    if mode == "pessimistic":
        assert handler.metrics.calls == {"UpdateItem": 2}
        # taking the lock adds the lock attributes to the item it rewrites
        assert handler.metrics.write_units >= 2 * write_units(stored)
    else:
        assert handler.metrics.calls == {"GetItem": 1}
        assert handler.metrics.read_units == read_units(stored, True)
        assert handler.metrics.write_units == 0
    assert handler.metrics.failed_writes == 0


def test_eventually_consistent_read_costs_half(ddb_local_client: Any, table: str) -> None:
    handler = make_handler(ddb_local_client, table, consistent_read=False)
    sid = new_session_id()
    handler.write(sid, session_of(5000))
    handler.metrics.reset()
    time.sleep(0.05)
    handler.read(sid)
    assert handler.metrics.read_units == read_units(stored_size(handler, sid), False) == 1.0


def test_compression_saves_write_units(ddb_local_client: Any, table: str) -> None:
    data = {"text": "the same words again " * 300}  # ~6 KB raw, compresses well
    costs = {}
    for compress in (True, False):
        handler = make_handler(ddb_local_client, table, compress=compress)
        sid = new_session_id()
        handler.write(sid, data)
        costs[compress] = handler.metrics.write_units
        assert handler.read(sid) == data
    assert costs[True] == 1 and costs[False] == 7


def test_failed_conditional_writes_are_counted(ddb_local_client: Any, table: str) -> None:
    """DynamoDB Local, like DynamoDB, reports no units for a refused conditional write:
    the store counts it and estimates its units from the item it found."""
    holder = make_handler(ddb_local_client, table, locking="pessimistic")
    waiter = make_handler(ddb_local_client, table, locking="pessimistic",
                          max_lock_wait_seconds=0.05)
    FakeTimer().install(waiter.store)
    sid = new_session_id()
    holder.write(sid, session_of(3000))
    holder.read(sid)
    size = stored_size(holder, sid)
    with pytest.raises(Exception, match="stayed locked"):
        waiter.read(sid)
    metrics = waiter.metrics
    assert metrics.failed_writes == metrics.calls["UpdateItem"] >= 2
    assert metrics.failed_write_units == metrics.failed_writes * write_units(size)
    assert metrics.write_units == 0  # nothing reported
    holder.close()


# --- exact limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_item_limit_is_exact(ddb_local_client: Any, table: str, mode: str) -> None:
    # A fixed clock keeps every number attribute (expires, the lease) the same size from one
    # write to the next: with the real clock a trailing zero (...560 s) is one byte less.
    handler = make_handler(ddb_local_client, table, clock=lambda: 1_900_000_123.456,
                           locking=mode, compress=False)
    sid = stored_session(handler, {"blob": b"x"})
    base = stored_size(handler, sid)
    blob = b"x" * (MAX_ITEM_BYTES - base + 1)
    # msgpack's bin header grows from 2 to 5 bytes past 255 and 65535: trim to land exactly
    for _ in range(8):
        handler.read(sid)
        try:
            handler.write(sid, {"blob": blob})
            break
        except SessionTooLarge as exc:
            blob = blob[: len(blob) - (exc.size_bytes - MAX_ITEM_BYTES)]
    # pessimistic leaves room for the lock attributes, so that the session can be locked again
    room = _LOCK_BYTES if mode == "pessimistic" else 0
    assert stored_size(handler, sid) == MAX_ITEM_BYTES - room  # the largest item DynamoDB takes
    full = raw_item(ddb_local_client, table, handler.store.item_key(sid))
    assert handler.read(sid) == {"blob": blob}
    if mode == "pessimistic":
        assert stored_size(handler, sid) == MAX_ITEM_BYTES  # locked: exactly at the limit
    with pytest.raises(SessionTooLarge) as raised:
        handler.write(sid, {"blob": blob + b"y"})
    assert raised.value.size_bytes == MAX_ITEM_BYTES + 1
    assert raw_item(ddb_local_client, table, handler.store.item_key(sid)) == full
    handler.close()


def test_a_new_optimistic_session_at_the_limit_is_sized_with_its_version(
        ddb_local_client: Any, table: str) -> None:
    """The first write of an optimistic session adds its version (and write tokens): a
    payload that would fit without them, but not with them, is refused as SessionTooLarge
    with nothing written - not sent, to come back as DynamoDB's ValidationException.  The
    limit is measured on items DynamoDB Local stored, not taken from the store's arithmetic."""
    handler = make_handler(ddb_local_client, table, clock=lambda: 1_900_000_123.456,
                           locking="optimistic", compress=False)
    probe, fits, over = new_session_id(), new_session_id(), new_session_id()
    handler.read(probe)
    handler.write(probe, {"blob": b"x" * 100_000})  # a new session: version 1 written
    largest = 100_000 + MAX_ITEM_BYTES - stored_size(handler, probe)  # same headers above 64 KB
    handler.read(fits)
    handler.write(fits, {"blob": b"x" * largest})
    assert stored_size(handler, fits) == MAX_ITEM_BYTES
    handler.read(over)
    with pytest.raises(SessionTooLarge) as raised:
        handler.write(over, {"blob": b"x" * (largest + 1)})
    assert raised.value.size_bytes == MAX_ITEM_BYTES + 1
    assert raw_item(ddb_local_client, table, handler.store.item_key(over)) is None
    handler.close()


# --- expiry as TTL leaves it ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_expired_but_not_yet_deleted_by_ttl_reads_as_absent(ddb_local_client: Any, table: str,
                                                             mode: str) -> None:
    """TTL deletes expired items up to days late: until then the item is there to be read.
    (TTL stays off on this table, so that nothing removes the item before the read.)"""
    handler = make_handler(ddb_local_client, table, locking=mode)
    sid = new_session_id()
    key = handler.store.item_key(sid)
    handler.write(sid, {"secret": 1})
    ddb_local_client.update_item(  # expired a minute ago; TTL has not come by yet
        TableName=table, Key={"id": {"S": key}}, UpdateExpression="SET expires = :e",
        ExpressionAttributeValues={":e": {"N": str(int(time.time()) - 60)}})
    assert raw_item(ddb_local_client, table, key) is not None
    assert handler.read(sid) == {}
    handler.close()
    assert raw_item(ddb_local_client, table, key) is None


def test_lock_refreshes_expiry_of_an_expired_item(ddb_local_client: Any, table: str) -> None:
    clock = Clock()
    handler = make_handler(ddb_local_client, table, clock, locking="pessimistic",
                           session_lifetime_seconds=100)
    sid = stored_session(handler, {"old": 1})
    clock.advance(101)
    assert handler.read(sid) == {}  # holds the lock on an expired item
    item = raw_item(ddb_local_client, table, handler.store.item_key(sid))
    assert item is not None and int(item["expires"]["N"]) == int(clock.now) + 100
    handler.write(sid, {"new": 1})
    assert handler.read(sid) == {"new": 1}
    handler.close()


# --- concurrency ------------------------------------------------------------------------------


def increments(handler: SessionHandler, sid: str, threads: int, count: int) -> list[Any]:
    def run(index: int) -> None:
        for _ in range(count):
            data = handler.read(sid)
            data[f"t{index}"] = data.get(f"t{index}", 0) + 1
            handler.write(sid, data)

    return run_threads(threads, run)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pessimistic", "optimistic"])
def test_no_lost_update_under_contention(ddb_local_client: Any, table: str, mode: str) -> None:
    """8 threads x 50 increments of each thread's own key in one session: all 400 kept."""
    from dynamo_sessions.testing.servers import local_client

    client = local_client(ddb_local_client.meta.endpoint_url, max_pool_connections=THREADS)
    handler = make_handler(client, table, locking=mode)
    sid = new_session_id()
    errors = increments(handler, sid, THREADS, INCREMENTS)
    assert errors == []  # no LockTimeout, no SessionConflict
    assert handler.read(sid) == {f"t{i}": INCREMENTS for i in range(THREADS)}
    handler.close()
    metrics = handler.metrics.snapshot()
    print(mode, metrics)
    if mode == "optimistic":
        assert metrics["conflicts"] > 0  # the contention was real
    else:
        assert metrics["lock_waits"] > 0


def test_optimistic_merges_a_small_contended_run(ddb_local_client: Any, table: str) -> None:
    from dynamo_sessions.testing.servers import local_client

    client = local_client(ddb_local_client.meta.endpoint_url, max_pool_connections=4)
    handler = make_handler(client, table, locking="optimistic")
    sid = new_session_id()
    assert increments(handler, sid, 4, 10) == []
    assert handler.read(sid) == {f"t{i}": 10 for i in range(4)}


def test_without_locking_concurrent_requests_lose_updates(ddb_local_client: Any,
                                                          table: str) -> None:
    """``none`` is last-writer-wins: requests that read the same state each write back only
    their own key.  A barrier between read and write makes the interleaving certain."""
    handler = make_handler(ddb_local_client, table, locking="none")
    sid = new_session_id()
    rounds = 5
    barrier = threading.Barrier(THREADS)

    def run(index: int) -> None:
        for _ in range(rounds):
            data = handler.read(sid)
            barrier.wait()  # everyone has read ...
            data[f"t{index}"] = data.get(f"t{index}", 0) + 1
            handler.write(sid, data)
            barrier.wait()  # ... before anyone writes; everyone has written before the next

    assert run_threads(THREADS, run) == []
    total = sum(handler.read(sid).values())
    assert total == rounds  # one write per round survives: 7 of every 8 increments lost
