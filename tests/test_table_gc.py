"""Tables and garbage collection on moto (in-process) and DynamoDB Local.

GC must delete exactly the sessions that were expired and unlocked when it ran: a session
refreshed or locked between the scan and the delete survives (conditional mode), an interrupted
run deletes nothing it should not and a re-run finishes the job, and a WCU budget holds as
measured from the consumed capacity DynamoDB reports.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from dynamo_sessions import SessionConfig, TableNotFound
from dynamo_sessions.table import (
    GarbageCollector,
    GcInterrupted,
    GcResult,
    TableExists,
    create_table,
    delete_table,
    describe_table,
    enable_time_to_live,
)
from dynamo_sessions.testing.servers import local_client


@dataclasses.dataclass
class Server:
    name: str
    client: Any
    new_client: Callable[[], Any]


@pytest.fixture(params=["moto", pytest.param("dynamodb_local", marks=pytest.mark.dynamodb_local)])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "moto":
        return Server("moto", request.getfixturevalue("moto_client"), lambda: local_client(None))
    url = request.getfixturevalue("dynamodb_local").endpoint_url
    return Server("dynamodb_local", local_client(url), lambda: local_client(url))


@pytest.fixture
def moto(moto_client: Any) -> Server:
    return Server("moto", moto_client, lambda: local_client(None))


@pytest.fixture
def moto_sessions(moto: Server, table_name: str) -> SessionConfig:
    config = SessionConfig(table_name=table_name)
    create_table(moto.client, config, enable_ttl=False)
    return config


@pytest.fixture
def ddb_local(request: pytest.FixtureRequest) -> Server:
    url = request.getfixturevalue("dynamodb_local").endpoint_url
    return Server("dynamodb_local", local_client(url), lambda: local_client(url))


@pytest.fixture
def sessions(server: Server, table_name: str) -> Iterator[SessionConfig]:
    config = SessionConfig(table_name=table_name)
    # No TTL here: DynamoDB Local deletes expired items by TTL in the background, which would
    # race the collector under test (test_create_table_* covers TTL).
    create_table(server.client, config, enable_ttl=False)
    yield config
    delete_table(server.client, config, wait=False)


def key(prefix: str, index: int) -> str:
    return f"PHPSESSID_{prefix}{index:05d}"


def put_sessions(client: Any, table: str, prefix: str, count: int, expires: int,
                 size: int = 100, extra: dict[str, Any] | None = None) -> list[str]:
    """Store ``count`` sessions with ``size`` bytes of data each; returns their keys."""
    keys = [key(prefix, i) for i in range(count)]
    requests = [{"PutRequest": {"Item": {"id": {"S": k}, "data": {"B": b"x" * size},
                                         "expires": {"N": str(expires)}, **(extra or {})}}}
                for k in keys]
    for start in range(0, len(requests), 25):
        pending = requests[start:start + 25]
        while pending:
            response = client.batch_write_item(RequestItems={table: pending})
            pending = response.get("UnprocessedItems", {}).get(table, [])
    return keys


def stored_keys(client: Any, table: str) -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("scan").paginate(TableName=table, ProjectionExpression="id"):
        keys.update(item["id"]["S"] for item in page["Items"])
    return keys


def now() -> int:
    return int(time.time())


# --- tables -----------------------------------------------------------------------------------


def test_create_table_on_demand_active_with_ttl(server: Server, table_name: str) -> None:
    config = SessionConfig(table_name=table_name)
    description = create_table(server.client, config)
    assert description["status"] == "ACTIVE"
    assert description["billing_mode"] == "PAY_PER_REQUEST"
    assert description["hash_key"] == "id"
    assert (description["ttl_status"], description["ttl_attribute"]) == ("ENABLED", "expires")
    enable_time_to_live(server.client, config)  # already enabled: tolerated
    with pytest.raises(TableExists, match="already exists"):
        create_table(server.client, config)
    delete_table(server.client, config)
    with pytest.raises(TableNotFound, match="create-table"):
        describe_table(server.client, config)
    with pytest.raises(TableNotFound):
        delete_table(server.client, config)


def test_create_table_provisioned(server: Server, table_name: str) -> None:
    config = SessionConfig(table_name=table_name)
    description = create_table(server.client, config, read_capacity=5, write_capacity=3)
    assert description["billing_mode"] == "PROVISIONED"
    assert (description["read_capacity"], description["write_capacity"]) == (5, 3)
    with pytest.raises(ValueError, match="both"):
        create_table(server.client, SessionConfig(table_name=table_name + "x"), read_capacity=5)


@pytest.mark.dynamodb_local
def test_describe_counts_items_and_size(ddb_local: Server, table_name: str) -> None:
    config = SessionConfig(table_name=table_name)
    create_table(ddb_local.client, config)
    put_sessions(ddb_local.client, table_name, "a", 30, now() + 600, size=500)
    description = describe_table(ddb_local.client, config)
    assert description["item_count"] == 30
    assert description["size_bytes"] >= 30 * 500


# --- gc: what is deleted ----------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "segments", "batch_size"),
                         [("conditional", 1, 25), ("batch", 2, 7)])
def test_gc_deletes_expired_and_keeps_live(server: Server, sessions: SessionConfig, mode: str,
                                           segments: int, batch_size: int) -> None:
    expired = put_sessions(server.client, sessions.table_name, "old", 30, now() - 5)
    live = put_sessions(server.client, sessions.table_name, "new", 20, now() + 600)
    result = GarbageCollector(server.client, sessions).run(segments=segments,
                                                           batch_size=batch_size, mode=mode)
    assert (result.scanned, result.expired, result.deleted, result.skipped) == (50, 30, 30, 0)
    assert stored_keys(server.client, sessions.table_name) == set(live)
    assert result.write_units >= 30 if mode == "conditional" else result.write_units > 0
    assert result.read_units > 0
    assert set(expired).isdisjoint(stored_keys(server.client, sessions.table_name))
    again = GarbageCollector(server.client, sessions).run(mode=mode)
    assert (again.expired, again.deleted) == (0, 0)


def test_gc_dry_run_counts_only(moto: Server, moto_sessions: SessionConfig) -> None:
    put_sessions(moto.client, moto_sessions.table_name, "old", 12, now() - 5)
    put_sessions(moto.client, moto_sessions.table_name, "new", 3, now() + 600)
    result = GarbageCollector(moto.client, moto_sessions).run(dry_run=True)
    assert (result.scanned, result.expired, result.deleted, result.write_units) == (15, 12, 0, 0)
    assert len(stored_keys(moto.client, moto_sessions.table_name)) == 15


def test_gc_keeps_locked_sessions(server: Server, sessions: SessionConfig) -> None:
    now_ms = int(time.time() * 1000)
    held = put_sessions(server.client, sessions.table_name, "held", 5, now() - 5,
                        extra={"lock": {"S": "owner"},
                               "lock_until_ms": {"N": str(now_ms + 60_000)}})
    stale = put_sessions(server.client, sessions.table_name, "stale", 4, now() - 5,
                         extra={"lock": {"S": "crashed"},
                                "lock_until_ms": {"N": str(now_ms - 60_000)}})
    result = GarbageCollector(server.client, sessions).run()
    remaining = stored_keys(server.client, sessions.table_name)
    assert remaining == set(held)  # a live lease protects; a crashed holder's lease does not
    assert set(stale).isdisjoint(remaining)
    assert result.deleted == 4


def _on_first_delete_of(client: Any, api: str, victim: str,
                        action: Callable[[], None]) -> list[str]:
    """Run ``action`` just before the first ``api`` request that mentions ``victim``."""
    seen: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if not seen and victim in json.dumps(params, default=str):
            seen.append(victim)
            action()

    client.meta.events.register(f"before-call.dynamodb.{api}", hook)
    return seen


@pytest.mark.parametrize("change", ["refresh", "lock"])
def test_conditional_gc_never_deletes_a_session_changed_after_the_scan(
        server: Server, sessions: SessionConfig, change: str) -> None:
    keys = put_sessions(server.client, sessions.table_name, "old", 10, now() - 5)
    victim = keys[3]
    other = server.new_client()

    def touch() -> None:  # a concurrent request for that session, between scan and delete
        if change == "refresh":
            update, values = "SET expires = :e", {":e": {"N": str(now() + 1440)}}
        else:
            update = "SET #l = :t, lock_until_ms = :u"
            values = {":t": {"S": "tok"}, ":u": {"N": str(int(time.time() * 1000) + 30_000)}}
        other.update_item(TableName=sessions.table_name, Key={"id": {"S": victim}},
                          UpdateExpression=update, ExpressionAttributeValues=values,
                          **({"ExpressionAttributeNames": {"#l": "lock"}}
                             if change == "lock" else {}))

    seen = _on_first_delete_of(server.client, "DeleteItem", victim, touch)
    result = GarbageCollector(server.client, sessions).run(batch_size=1)
    assert seen == [victim]
    assert stored_keys(server.client, sessions.table_name) == {victim}
    assert (result.expired, result.deleted, result.skipped) == (10, 9, 1)
    assert result.refused_write_units == 1.0


def test_batch_gc_loses_a_session_refreshed_after_the_scan(moto: Server,
                                                           moto_sessions: SessionConfig) -> None:
    """The documented price of the PHP handler's BatchWriteItem path (why it is not default)."""
    keys = put_sessions(moto.client, moto_sessions.table_name, "old", 10, now() - 5)
    other = moto.new_client()

    def refresh() -> None:
        other.update_item(TableName=moto_sessions.table_name, Key={"id": {"S": keys[0]}},
                          UpdateExpression="SET expires = :e",
                          ExpressionAttributeValues={":e": {"N": str(now() + 1440)}})

    seen = _on_first_delete_of(moto.client, "BatchWriteItem", keys[0], refresh)
    GarbageCollector(moto.client, moto_sessions).run(mode="batch")
    assert seen == [keys[0]]
    assert stored_keys(moto.client, moto_sessions.table_name) == set()


def test_batch_size_limit(moto: Server, moto_sessions: SessionConfig) -> None:
    with pytest.raises(ValueError, match=r"1\.\.25"):
        GarbageCollector(moto.client, moto_sessions).run(batch_size=26, mode="batch")


# --- gc: interrupted, then re-run --------------------------------------------------------------


@pytest.mark.parametrize(("mode", "segments"), [("conditional", 2), ("batch", 2)])
def test_interrupted_gc_then_rerun_finishes(server: Server, sessions: SessionConfig, mode: str,
                                            segments: int) -> None:
    expired = put_sessions(server.client, sessions.table_name, "old", 80, now() - 5)
    live = put_sessions(server.client, sessions.table_name, "new", 20, now() + 600)
    calls = [0]

    def ctrl_c(result: GcResult) -> None:
        calls[0] += 1
        if result.deleted >= 15:
            raise KeyboardInterrupt

    with pytest.raises(GcInterrupted) as interrupted:
        GarbageCollector(server.client, sessions).run(mode=mode, segments=segments,
                                                      batch_size=5, progress=ctrl_c)
    partial = interrupted.value.result
    remaining = stored_keys(server.client, sessions.table_name)
    assert set(live) <= remaining  # nothing wrongly deleted
    gone = set(expired) - remaining
    assert 15 <= partial.deleted < 80
    assert len(gone) == partial.deleted  # the counts say exactly what was done
    final = GarbageCollector(server.client, sessions).run(mode=mode, segments=segments)
    assert final.deleted == 80 - partial.deleted
    assert stored_keys(server.client, sessions.table_name) == set(live)


def test_ctrl_c_in_the_main_thread_stops_workers(moto: Server,
                                                 moto_sessions: SessionConfig) -> None:
    """A KeyboardInterrupt reaching the waiting main thread (Ctrl-C) stops the workers."""
    put_sessions(moto.client, moto_sessions.table_name, "old", 60, now() - 5)
    main = threading.main_thread()
    assert threading.current_thread() is main
    started = threading.Event()
    release = threading.Event()

    def slow(result: GcResult) -> None:  # holds a worker until the main thread was interrupted
        started.set()
        release.wait(5)

    import _thread

    def interrupt() -> None:
        started.wait(5)
        _thread.interrupt_main()
        time.sleep(0.3)
        release.set()

    # A shell that starts a job in the background (``cmd &``, CI runners) ignores SIGINT, and
    # interrupt_main() then does nothing: restore Python's own handler for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(GcInterrupted) as interrupted:
            GarbageCollector(moto.client, moto_sessions).run(batch_size=1, progress=slow)
    finally:
        signal.signal(signal.SIGINT, previous)
    result = interrupted.value.result
    assert result.deleted < 60
    assert len(stored_keys(moto.client, moto_sessions.table_name)) == 60 - result.deleted


# --- gc: the WCU budget ----------------------------------------------------------------------


class VirtualTime:
    """Monotonic time in which a sleep is recorded and skipped: real time plus the sleeps."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        with self.lock:
            return time.monotonic() + sum(self.sleeps)

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)


@pytest.mark.parametrize(("mode", "batch_size"), [("conditional", 1), ("batch", 10)])
@pytest.mark.dynamodb_local
def test_gc_respects_its_wcu_budget(ddb_local: Server, table_name: str, mode: str,
                                    batch_size: int) -> None:
    """On DynamoDB Local, which reports exact units (moto reports a flat 1 per call)."""
    server = ddb_local
    sessions = SessionConfig(table_name=table_name)
    create_table(server.client, sessions, enable_ttl=False)
    # 1.5 KB items: DynamoDB Local charges 2 WCU per delete, so units are not just a count
    put_sessions(server.client, sessions.table_name, "old", 40, now() - 5, size=1500)
    budget = 20.0
    clock = VirtualTime()
    collector = GarbageCollector(server.client, sessions, sleep=clock.sleep,
                                 monotonic=clock.monotonic)
    start = clock.monotonic()
    result = collector.run(mode=mode, batch_size=batch_size, max_wcu_per_second=budget)
    elapsed = clock.monotonic() - start
    assert result.deleted == 40
    reported = result.write_units + result.refused_write_units
    assert result.write_units == 80.0  # exactly what DynamoDB Local reported
    assert reported > 0
    assert clock.sleeps, "a budget this low must make the collection wait"
    assert reported / elapsed <= budget * (1 + 1e-9)
    assert sum(clock.sleeps) <= reported / budget + 1e-9  # and it never sleeps more than that


def test_gc_without_budget_never_sleeps(moto: Server, moto_sessions: SessionConfig) -> None:
    put_sessions(moto.client, moto_sessions.table_name, "old", 20, now() - 5)
    clock = VirtualTime()
    result = GarbageCollector(moto.client, moto_sessions, sleep=clock.sleep,
                              monotonic=clock.monotonic).run(batch_size=1)
    assert result.deleted == 20
    assert clock.sleeps == []


def test_gc_operation_delay_between_operations(moto: Server,
                                               moto_sessions: SessionConfig) -> None:
    put_sessions(moto.client, moto_sessions.table_name, "old", 6, now() - 5)
    clock = VirtualTime()
    config = moto_sessions.replace(gc_operation_delay_seconds=0.25)
    result = GarbageCollector(moto.client, config, sleep=clock.sleep,
                              monotonic=clock.monotonic).run(batch_size=1)
    assert result.deleted == 6
    assert clock.sleeps == [0.25] * 6  # one pause after each delete (one scan page: no pause)


@pytest.mark.dynamodb_local
def test_batch_gc_retries_unprocessed_items_with_backoff(ddb_local: Server,
                                                         table_name: str) -> None:
    """A BatchWriteItem answered with every item unprocessed (as under throttling) is retried."""
    config = SessionConfig(table_name=table_name)
    create_table(ddb_local.client, config, enable_ttl=False)
    keys = put_sessions(ddb_local.client, table_name, "old", 8, now() - 5)
    answered = [0]

    def unprocessed_once(request: Any, **_: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if not target.endswith(".BatchWriteItem") or answered[0]:
            return None
        answered[0] += 1
        body = json.loads(request.body)
        payload = json.dumps({"UnprocessedItems": body["RequestItems"],
                              "ConsumedCapacity": [{"TableName": table_name,
                                                    "CapacityUnits": 0.0}]}).encode()

        class Raw:
            def stream(self, **_: Any) -> Iterator[bytes]:
                yield payload

        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"},
                           Raw())

    ddb_local.client.meta.events.register("before-send.dynamodb", unprocessed_once)
    clock = VirtualTime()
    result = GarbageCollector(ddb_local.client, config, sleep=clock.sleep,
                              monotonic=clock.monotonic).run(mode="batch")
    assert answered == [1]
    assert len(clock.sleeps) == 1 and 0.05 <= clock.sleeps[0] <= 2.0  # one backoff
    assert result.deleted == 8
    assert set(keys).isdisjoint(stored_keys(ddb_local.client, table_name))


class _Body:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.payload


@pytest.mark.parametrize("batch_size", [1, 10], ids=["one-at-a-time", "in-parallel"])
@pytest.mark.dynamodb_local
def test_an_error_of_one_conditional_delete_is_raised(ddb_local: Server, table_name: str,
                                                      batch_size: int) -> None:
    """One DeleteItem answered with an error that is not a condition failure (and that botocore
    does not retry): the run raises it - cron sees the failure - and that session stays; the
    deletes already done stay done.  In parallel (batch_size > 1) the error comes from a worker
    thread and must still reach the caller."""
    config = SessionConfig(table_name=table_name)
    create_table(ddb_local.client, config, enable_ttl=False)
    keys = put_sessions(ddb_local.client, table_name, "old", 10, now() - 5)
    victim = keys[4]
    refused: list[str] = []

    def deny_one(request: Any, **_: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if not target.endswith(".DeleteItem") or victim.encode() not in (request.body or b""):
            return None
        refused.append(victim)
        payload = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
                              "message": "not allowed to delete this item"}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"},
                           _Body(payload))

    ddb_local.client.meta.events.register("before-send.dynamodb", deny_one)
    with pytest.raises(ClientError) as raised:
        GarbageCollector(ddb_local.client, config).run(batch_size=batch_size)
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert refused == [victim]  # not retried
    assert victim in stored_keys(ddb_local.client, table_name)


def test_gc_on_a_missing_table(moto: Server, table_name: str) -> None:
    with pytest.raises(TableNotFound, match="create-table"):
        GarbageCollector(moto.client, SessionConfig(table_name=table_name)).run()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["conditional", "batch"])
@pytest.mark.dynamodb_local
def test_gc_on_thousands_of_items(ddb_local: Server, table_name: str, mode: str) -> None:
    config = SessionConfig(table_name=table_name)
    create_table(ddb_local.client, config, enable_ttl=False)
    expired = put_sessions(ddb_local.client, table_name, "old", 2000, now() - 5, size=300)
    live = put_sessions(ddb_local.client, table_name, "new", 1000, now() + 600, size=300)
    client = local_client(ddb_local.new_client().meta.endpoint_url, max_pool_connections=32)
    result = GarbageCollector(client, config).run(segments=4, mode=mode)
    assert (result.scanned, result.expired, result.deleted) == (3000, 2000, 2000)
    assert result.write_units == 2000.0  # DynamoDB Local: 1 WCU per small item deleted
    assert stored_keys(client, table_name) == set(live)
    assert set(expired).isdisjoint(stored_keys(client, table_name))
    delete_table(client, config, wait=False)
