"""SessionHandler and its stores on moto's in-process DynamoDB (``mock_aws``): fast.

Every PHP option observably changes what is sent or stored; locks are leases that a crash
cannot keep and a timed-out waiter cannot clear; expiry, size and corruption never lose or
invent a session.  Capacity units are checked on DynamoDB Local (moto reports flat units).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from dynamo_sessions import (
    CorruptSession,
    LockLost,
    LockTimeout,
    SessionConfig,
    SessionConflict,
    SessionGone,
    SessionHandler,
    SessionMoved,
    SessionTooLarge,
    create_store,
    decode_session,
    encode_session,
    new_session_id,
)
from dynamo_sessions.config import LOCKING_MODES as MODES
from dynamo_sessions.store import is_valid_session_id, log_id
from dynamo_sessions.testing.servers import EmbeddedMoto, local_client

from .conftest import make_table
from .handler_support import Clock, FakeTimer, Requests, raw_item, stored_session


@pytest.fixture(scope="module")
def _moto_session() -> Iterator[boto3.session.Session]:
    """One in-process moto for the module (a fresh one per test costs ~0.3 s); tables are
    per test, and a boto3 session makes each test's client in milliseconds."""
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1", aws_access_key_id="local",
                                    aws_secret_access_key="local")


@pytest.fixture
def moto_client(_moto_session: boto3.session.Session) -> Any:
    """A fresh client (its own event hooks) on the module's moto; nothing is sent."""
    return _moto_session.client("dynamodb", config=Config(retries={"mode": "standard"}))


@pytest.fixture
def table(moto_client: Any, table_name: str) -> str:
    make_table(moto_client, table_name)
    return table_name


def make_handler(client: Any, table: str, clock: Clock | None = None, session_name: str = "S",
                 **options: Any) -> SessionHandler:
    handler = SessionHandler(SessionConfig(table_name=table, **options), client,
                             clock=clock or Clock())
    handler.open("", session_name)
    return handler


def stored(handler: SessionHandler, session_id: str) -> dict[str, Any] | None:
    config = handler.config
    return raw_item(handler.client, config.table_name, handler.store.item_key(session_id),
                    config.hash_key)


# --- the PHP protocol -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_and_new_session_is_empty(moto_client: Any, table: str, mode: str) -> None:
    handler = make_handler(moto_client, table, locking=mode)
    sid = new_session_id()
    assert handler.read(sid) == {}
    assert handler.write(sid, {"user": "jeremy", "cart": [1, 2]})
    assert handler.close()
    assert handler.read(sid) == {"user": "jeremy", "cart": [1, 2]}
    handler.close()
    item = stored(handler, sid)
    assert item is not None and "lock" not in item


@pytest.mark.parametrize("mode", MODES)
def test_a_moved_id_is_read_empty_and_never_written(moto_client: Any, table: str,
                                                     mode: str) -> None:
    """An id a login moved (its item is the data-less marker) reads as ``{}``, its lock is
    given back at once, data written to it is refused (SessionMoved) and an empty write
    leaves the marker: the old id is never served or brought back."""
    handler = make_handler(moto_client, table, locking=mode, max_lock_wait_seconds=0.0)
    store = handler.store
    old, new = new_session_id(), new_session_id()
    store.create(old, {"user": "ada"})
    store.retire(store.load(old), store.create(new, {"user": "ada"}))
    marker = stored(handler, old)
    assert marker is not None and "moved" in marker
    assert handler.read(old) == {}
    other = make_handler(moto_client, table, locking=mode, max_lock_wait_seconds=0.0)
    assert other.read(old) == {}  # not left locked by the first reader
    other.close()
    with pytest.raises(SessionMoved):
        handler.write(old, {"user": "mallory"})
    handler.read(old)
    assert handler.write(old, {})
    handler.close()
    after = stored(handler, old)
    assert after is not None and set(after) == set(marker)  # still the data-less marker
    # (a pessimistic lock take dates its expiry anew, to session_lifetime_seconds)


@pytest.mark.parametrize("mode", MODES)
def test_destroy_and_emptied_session_delete_the_item(moto_client: Any, table: str,
                                                     mode: str) -> None:
    handler = make_handler(moto_client, table, locking=mode)
    first, second = new_session_id(), new_session_id()
    for sid in (first, second):
        handler.read(sid)
        handler.write(sid, {"a": 1})
    handler.read(first)
    assert handler.destroy(first)
    assert stored(handler, first) is None
    handler.read(second)
    handler.write(second, {})
    assert stored(handler, second) is None
    assert handler.read(first) == {} and handler.read(second) == {}
    handler.close()
    assert stored(handler, first) is None and stored(handler, second) is None


@pytest.mark.parametrize(("other_write", "left"), [
    ({"user": "ada", "visits": 2}, None),  # the other tab rewrote only keys we saw: gone
    ({"user": "ada", "visits": 1, "theme": "dark"}, {"theme": "dark"}),  # a key we never saw
])
def test_optimistic_emptied_session_wins_over_a_concurrent_write(
        moto_client: Any, table: str, other_write: dict[str, Any],
        left: dict[str, Any] | None) -> None:
    """Logout (emptying the session) after another tab wrote: every key this request saw is
    removed from the newer session, as for any merge - the logout is never silently lost."""
    logout, other = (make_handler(moto_client, table, locking="optimistic") for _ in range(2))
    sid = new_session_id()
    logout.write(sid, {"user": "ada", "visits": 1})
    assert logout.read(sid) == {"user": "ada", "visits": 1}
    other.read(sid)
    other.write(sid, other_write)
    logout.write(sid, {})
    item = stored(logout, sid)
    if left is None:
        assert item is None
    else:
        assert item is not None and decode_session(item["data"]["B"]) == left
    assert logout.read(sid) == (left or {})
    assert logout.metrics.conflicts == 1


def test_php_item_layout_and_a_php_written_item_reads_back(moto_client: Any, table: str) -> None:
    options = {"table_name": table, "session_lifetime": 600}
    clock = Clock()
    handler = SessionHandler(SessionConfig.from_php_options(options), moto_client, clock=clock)
    handler.open("/tmp", "PHPSESSID")
    sid = "k8dj2l3n4m5b6v7c8x9z0a1s2d"  # a PHP-style id
    handler.read(sid)
    handler.write(sid, {"user.name": "jeremy"})
    item = raw_item(moto_client, table, f"PHPSESSID_{sid}")
    assert item is not None
    assert set(item) == {"id", "data", "expires"}
    assert item["expires"] == {"N": str(int(clock.now) + 600)}
    assert isinstance(item["data"]["B"], bytes)
    # An item put as the PHP handler lays it out (what a PHP app sharing the table writes).
    other = "a1b2c3d4e5f6g7h8i9j0"
    moto_client.put_item(TableName=table, Item={
        "id": {"S": f"PHPSESSID_{other}"},
        "data": {"B": encode_session({"user.role": "admin"})},
        "expires": {"N": str(int(clock.now) + 100)},
    })
    assert handler.read(other) == {"user.role": "admin"}
    handler.open("", "OTHERAPP")  # session_name is the key prefix
    assert handler.read(other) == {}
    handler.close()


def test_ids_are_hashed_at_rest_by_default(moto_client: Any, table: str) -> None:
    handler = make_handler(moto_client, table, session_name="PHPSESSID")
    sid = stored_session(handler, {"a": 1})
    keys = [item["id"]["S"] for item in moto_client.scan(TableName=table)["Items"]]
    assert len(keys) == 1 and keys[0].startswith("PHPSESSID_") and sid not in keys[0]
    assert sid not in log_id(sid) and len(log_id(sid)) == 12


def test_session_ids_are_checked(moto_client: Any, table: str) -> None:
    handler = make_handler(moto_client, table)
    assert is_valid_session_id(new_session_id()) and len(new_session_id()) == 43
    for bad in ("", "a b", "x" * 257, "semi;colon", "new\nline"):
        with pytest.raises(ValueError):
            handler.read(bad)


def test_write_without_read_costs_no_read_without_locking(moto_client: Any, table: str) -> None:
    handler = make_handler(moto_client, table)
    sid = new_session_id()
    handler.write(sid, {"a": 1})
    assert handler.metrics.calls == {"UpdateItem": 1}
    handler.write(sid, {})
    assert stored(handler, sid) is None


# --- each option changes behaviour ------------------------------------------------------------


@pytest.mark.parametrize("consistent", [True, False])
def test_consistent_read_is_sent(moto_client: Any, table: str, consistent: bool) -> None:
    requests = Requests(moto_client, "GetItem")
    handler = make_handler(moto_client, table, consistent_read=consistent)
    handler.read(new_session_id())
    assert [params["ConsistentRead"] for params in requests.of("GetItem")] == [consistent]


@pytest.mark.parametrize("lifetime", [60, 3600])
@pytest.mark.parametrize("mode", MODES)
def test_session_lifetime_sets_expires(moto_client: Any, table: str, mode: str,
                                       lifetime: int) -> None:
    clock = Clock()
    handler = make_handler(moto_client, table, clock, locking=mode,
                           session_lifetime_seconds=lifetime)
    sid = stored_session(handler, {"a": 1})
    item = stored(handler, sid)
    assert item is not None and item["expires"] == {"N": str(int(clock.now) + lifetime)}


def test_hash_key_and_table_name_are_used(moto_client: Any) -> None:
    moto_client.create_table(
        TableName="php-sessions", KeySchema=[{"AttributeName": "sid", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "sid", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    handler = SessionHandler(SessionConfig.from_php_options(
        {"table_name": "php-sessions", "hash_key": "sid", "locking_strategy": "pessemistic"}),
        moto_client)
    handler.open("", "PHPSESSID")
    handler.read("abc")
    handler.write("abc", {"x": 1})
    items = moto_client.scan(TableName="php-sessions")["Items"]
    assert [item["sid"] for item in items] == [{"S": "PHPSESSID_abc"}]
    assert handler.read("abc") == {"x": 1}
    handler.close()


@pytest.mark.parametrize("retry_mode", ["exponential", "uniform"])
def test_lock_wait_honours_retry_bounds_and_max_wait(moto_client: Any, table: str,
                                                     retry_mode: str) -> None:
    options = {"locking": "pessimistic", "min_lock_retry_microseconds": 5000,
               "max_lock_retry_microseconds": 50000, "max_lock_wait_seconds": 0.75,
               "lock_retry_mode": retry_mode}
    holder = make_handler(moto_client, table, **options)
    waiter = make_handler(moto_client, table, **options)
    timer = FakeTimer().install(waiter.store)
    sid = new_session_id()
    holder.read(sid)
    requests = Requests(moto_client, "UpdateItem")
    with pytest.raises(LockTimeout, match=r"max_lock_wait_seconds=0\.75"):
        waiter.read(sid)
    *delays, last = timer.sleeps
    assert all(0.005 <= delay <= 0.05 for delay in delays)
    assert 0 < last <= 0.05
    assert sum(timer.sleeps) == pytest.approx(0.75)  # waited exactly max_lock_wait_seconds
    assert len(requests.of("UpdateItem")) == len(timer.sleeps) + 1  # one attempt per wake-up
    if retry_mode == "exponential":
        assert delays[0] <= 0.005 * 2  # starts near the minimum, grows to the maximum
    assert waiter.metrics.lock_timeouts == 1
    assert waiter.metrics.lock_waits == len(timer.sleeps) + 1


def test_expiry_refresh_only_below_the_fraction(moto_client: Any, table: str) -> None:
    clock = Clock()
    handler = make_handler(moto_client, table, clock, session_lifetime_seconds=1000,
                           expiry_refresh_fraction=0.5)
    sid = stored_session(handler, {"a": 1})
    written = int(clock.now) + 1000
    clock.advance(400)  # 600 s of 1000 left: more than half
    handler.metrics.reset()
    handler.write(sid, handler.read(sid))
    assert handler.metrics.calls == {"GetItem": 1}
    assert stored(handler, sid)["expires"] == {"N": str(written)}  # type: ignore[index]
    clock.advance(200)  # 400 s left: refresh, the expiry only
    requests = Requests(moto_client, "UpdateItem")
    handler.write(sid, handler.read(sid))
    assert handler.metrics.calls == {"GetItem": 2, "UpdateItem": 1}
    (update,) = requests.of("UpdateItem")
    assert ":d" not in update["ExpressionAttributeValues"]
    assert stored(handler, sid)["expires"] == {"N": str(int(clock.now) + 1000)}  # type: ignore[index]
    assert handler.metrics.operations == {"read": 2, "unchanged": 1, "refresh": 1}


def test_by_default_the_expiry_is_refreshed_once_half_the_lifetime_is_left(
        moto_client: Any, table: str) -> None:
    """The default ``expiry_refresh_fraction`` (0.5, README): an unchanged session with 501 s of
    its 1000 left costs a read only; with 499 s left its expiry is rewritten."""
    clock = Clock()
    handler = make_handler(moto_client, table, clock, session_lifetime_seconds=1000)
    sid = stored_session(handler, {"a": 1})
    written = int(clock.now) + 1000
    clock.now = written - 501
    handler.metrics.reset()
    handler.write(sid, handler.read(sid))
    assert handler.metrics.operations == {"read": 1, "unchanged": 1}
    assert stored(handler, sid)["expires"] == {"N": str(written)}  # type: ignore[index]
    clock.now = written - 499
    handler.write(sid, handler.read(sid))
    assert handler.metrics.operations == {"read": 2, "unchanged": 1, "refresh": 1}
    assert stored(handler, sid)["expires"] == {"N": str(int(clock.now) + 1000)}  # type: ignore[index]


@pytest.mark.parametrize("mode", MODES)
def test_unchanged_session_writes_no_data(moto_client: Any, table: str, mode: str) -> None:
    handler = make_handler(moto_client, table, locking=mode)
    sid = stored_session(handler, {"a": 1, "b": [1, 2, 3]})
    requests = Requests(moto_client, "UpdateItem", "PutItem")
    handler.metrics.reset()
    handler.write(sid, dict(handler.read(sid)))  # same data, a fresh dict
    data_writes = [p for _, p in requests.sent if ":d" in p.get("ExpressionAttributeValues", {})]
    assert data_writes == []
    expected = {"none": {"GetItem": 1}, "optimistic": {"GetItem": 1},
                "pessimistic": {"UpdateItem": 2}}[mode]  # lock + release (with the expiry)
    assert handler.metrics.calls == expected


# --- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_expired_session_reads_as_absent(moto_client: Any, table: str, mode: str) -> None:
    clock = Clock()
    handler = make_handler(moto_client, table, clock, locking=mode, session_lifetime_seconds=60)
    sid = stored_session(handler, {"secret": 1})
    clock.advance(61)
    assert handler.read(sid) == {}
    handler.close()
    assert stored(handler, sid) is None  # deleted (pessimistic: the lock-only item released)
    handler.write(sid, {"secret": 1})
    clock.advance(61)
    assert handler.read(sid) == {}
    handler.write(sid, {"fresh": 1})  # a new session where the expired one was
    assert handler.read(sid) == {"fresh": 1}
    handler.close()
    assert handler.metrics.conflicts == 0


def test_expired_item_is_deleted_only_if_still_expired(moto_client: Any, table: str) -> None:
    """Another request refreshes the session between our read and our delete: it survives."""
    late = Clock()
    handler = make_handler(moto_client, table, late, session_lifetime_seconds=60)
    sid = new_session_id()
    handler.write(sid, {"v": 1})
    late.advance(61)
    fresh = make_handler(moto_client, table, Clock(), session_lifetime_seconds=600)

    def refresh_first(**_: Any) -> None:
        moto_client.meta.events.unregister("before-call.dynamodb.DeleteItem", refresh_first)
        fresh.write(sid, {"v": 2})

    moto_client.meta.events.register("before-call.dynamodb.DeleteItem", refresh_first)
    assert handler.read(sid) == {}
    assert handler.metrics.calls["DeleteItem"] == 1  # tried, refused by its condition
    assert fresh.read(sid) == {"v": 2}


def test_pessimistic_lock_sets_expires_so_ttl_spares_the_holder(moto_client: Any,
                                                                table: str) -> None:
    """Taking the lock writes a fresh ``expires``: TTL cannot delete the item under the holder
    and an orphaned lock-only item still expires."""
    clock = Clock()
    handler = make_handler(moto_client, table, clock, locking="pessimistic",
                           session_lifetime_seconds=60)
    sid = stored_session(handler, {"a": 1})
    clock.advance(59)
    assert handler.read(sid) == {"a": 1}
    item = stored(handler, sid)
    assert item is not None and item["expires"] == {"N": str(int(clock.now) + 60)}
    other = new_session_id()
    handler.read(other)  # a new session: a lock-only item, with an expiry
    item = stored(handler, other)
    assert item is not None and set(item) == {"id", "lock", "lock_until_ms", "prior_expires",
                                              "expires"}
    handler.close()
    assert stored(handler, other) is None


# --- pessimistic lease ------------------------------------------------------------------------


def test_crashed_holders_lease_is_taken_over(moto_client: Any, table: str) -> None:
    clock = Clock()
    options = {"locking": "pessimistic", "lock_lease_seconds": 30.0}
    crashed = make_handler(moto_client, table, clock, **options)
    sid = stored_session(crashed, {"n": 1})
    assert crashed.read(sid) == {"n": 1}  # ...and the request dies holding the lock
    clock.advance(31)
    later = make_handler(moto_client, table, clock, **options)
    timer = FakeTimer().install(later.store)
    assert later.read(sid) == {"n": 1}
    assert timer.sleeps == []  # no wait: the lease had run out
    later.write(sid, {"n": 2})
    with pytest.raises(LockLost, match="another request took"):
        crashed.write(sid, {"n": 99})  # the zombie cannot overwrite
    assert later.read(sid) == {"n": 2}
    later.close()
    assert "lock" not in stored(later, sid)  # type: ignore[operator]


def test_live_lease_is_not_taken_over(moto_client: Any, table: str) -> None:
    clock = Clock()
    options = {"locking": "pessimistic", "lock_lease_seconds": 30.0,
               "max_lock_wait_seconds": 0.1}
    holder = make_handler(moto_client, table, clock, **options)
    sid = new_session_id()
    holder.read(sid)
    clock.advance(29)
    waiter = make_handler(moto_client, table, clock, **options)
    FakeTimer().install(waiter.store)
    with pytest.raises(LockTimeout):
        waiter.read(sid)


def test_timed_out_waiter_gets_nothing_and_clears_no_lock(moto_client: Any, table: str) -> None:
    options = {"locking": "pessimistic", "max_lock_wait_seconds": 0.2}
    holder = make_handler(moto_client, table, **options)
    sid = stored_session(holder, {"cart": ["book"]})
    assert holder.read(sid) == {"cart": ["book"]}
    token = stored(holder, sid)["lock"]  # type: ignore[index]
    waiter = make_handler(moto_client, table, **options)
    FakeTimer().install(waiter.store)
    result: list[Any] = []
    with pytest.raises(LockTimeout, match="no session data"):
        result.append(waiter.read(sid))
    assert result == []
    waiter.close()  # PHP calls close() after a failed read: it must not touch the lock
    with pytest.raises(LockTimeout):
        waiter.write(sid, {})  # nor may a blind write (it would empty the session)
    item = stored(holder, sid)
    assert item is not None and item["lock"] == token
    assert holder.write(sid, {"cart": ["book", "pen"]})  # the holder still owns it
    assert waiter.read(sid) == {"cart": ["book", "pen"]}
    waiter.close()


def test_pessimistic_handler_serialises_threads(moto_server: EmbeddedMoto, table_name: str) -> None:
    """A small same-session run through one shared handler (threads keep their own state)."""
    client = local_client(moto_server.endpoint_url)
    make_table(client, table_name)
    handler = make_handler(client, table_name, locking="pessimistic")
    sid = new_session_id()

    def bump(index: int) -> None:
        for _ in range(5):
            data = handler.read(sid)
            data[f"t{index}"] = data.get(f"t{index}", 0) + 1
            handler.write(sid, data)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert handler.read(sid) == {"t0": 5, "t1": 5, "t2": 5}
    handler.close()


# --- optimistic merge -------------------------------------------------------------------------


def test_optimistic_merges_disjoint_keys_and_this_write_wins_a_shared_key(
        moto_client: Any, table: str) -> None:
    handler = make_handler(moto_client, table, locking="optimistic")
    store = handler.store
    sid = new_session_id()
    handler.write(sid, {"a": 0, "b": 0, "shared": "base", "gone": 1})
    first = store.load(sid)
    second = store.load(sid)
    store.save(first, {**first.data, "a": 1, "shared": "first"})
    data = dict(second.data)
    data.update(b=2, shared="second")
    del data["gone"]
    store.save(second, data)
    assert handler.read(sid) == {"a": 1, "b": 2, "shared": "second"}
    assert store.metrics.conflicts == 1 and store.metrics.merges == 1
    assert stored(handler, sid)["version"] == {"N": "3"}  # type: ignore[index]


def test_optimistic_does_not_resurrect_a_deleted_session(moto_client: Any, table: str) -> None:
    handler = make_handler(moto_client, table, locking="optimistic")
    store = handler.store
    sid = new_session_id()
    handler.write(sid, {"a": 1})
    tab = store.load(sid)
    store.delete(sid)  # logout in another tab
    with pytest.raises(SessionGone):
        store.save(tab, {"a": 2})
    assert stored(handler, sid) is None


@pytest.mark.parametrize(("options", "attempts", "sleeps"), [
    ({"max_write_retries": 4}, 5, 2),
    # the time bound: 3 waits of 10 ms use up max_lock_wait_seconds
    ({"max_write_retries": 1000, "max_lock_wait_seconds": 0.03,
      "min_lock_retry_microseconds": 10_000, "max_lock_retry_microseconds": 10_000}, 8, 3),
])
def test_optimistic_retries_are_bounded(moto_client: Any, table: str, options: dict[str, Any],
                                        attempts: int, sleeps: int) -> None:
    """Every retry loses (another writer moves the version each time): SessionConflict after
    max_write_retries or max_lock_wait_seconds, nothing written.  A retry follows a loss at
    once; a second loss in a row first backs off and re-reads."""
    handler = make_handler(moto_client, table, locking="optimistic", **options)
    store = handler.store
    timer = FakeTimer().install(store)
    sid = new_session_id()
    handler.write(sid, {"other": 0})
    mine = store.load(sid)
    rival = make_handler(moto_client, table, locking="optimistic")
    busy: list[bool] = []

    def rival_writes_first(params: dict[str, Any], **_: Any) -> None:
        if busy or not params.get("ConditionExpression", "").startswith("#v = :v"):
            return
        busy.append(True)  # the rival's own write passes through this hook too
        current = rival.store.load(sid)
        rival.store.save(current, {**current.data, "other": current.data["other"] + 1})
        busy.clear()

    moto_client.meta.events.register("provide-client-params.dynamodb.UpdateItem",
                                     rival_writes_first)
    with pytest.raises(SessionConflict, match=rf"after {attempts} write attempts"):
        store.save(mine, {**mine.data, "mine": 1})
    moto_client.meta.events.unregister("provide-client-params.dynamodb.UpdateItem",
                                       rival_writes_first)
    assert store.metrics.conflicts == attempts
    assert len(timer.sleeps) == sleeps  # fail, at once, wait+read, at once, wait+read, ...
    assert store.metrics.calls["GetItem"] == 2 + sleeps  # two loads, then a re-read per wait
    assert "mine" not in handler.read(sid)  # nothing written
    assert handler.read(sid)["other"] == attempts


# --- size and corruption ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_oversize_raises_and_changes_nothing(moto_client: Any, table: str, mode: str) -> None:
    handler = make_handler(moto_client, table, locking=mode)
    sid = stored_session(handler, {"small": 1})
    before = stored(handler, sid)
    handler.read(sid)
    with pytest.raises(SessionTooLarge) as raised:
        handler.write(sid, {"small": 1, "blob": os.urandom(410_000)})
    assert raised.value.size_bytes > raised.value.limit_bytes == 409_600
    assert stored(handler, sid) == before  # unchanged, and no lock left
    assert handler.read(sid) == {"small": 1}
    handler.close()


@pytest.mark.parametrize("mode", MODES)
def test_unstorable_value_raises_and_changes_nothing(moto_client: Any, table: str,
                                                     mode: str) -> None:
    from dynamo_sessions import SessionEncodeError

    handler = make_handler(moto_client, table, locking=mode)
    sid = stored_session(handler, {"ok": 1})
    before = stored(handler, sid)
    handler.read(sid)
    with pytest.raises(SessionEncodeError, match="when"):
        handler.write(sid, {"ok": 2, "when": object()})
    assert stored(handler, sid) == before
    assert handler.read(sid) == {"ok": 1}
    handler.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("data", [{"B": b"\x00garbage"}, {"B": b"\xc1\x10\x93"},
                                  {"S": "a:1:{s:4:\"user\";}"}])
def test_corrupt_item_raises_and_is_kept(moto_client: Any, table: str, mode: str,
                                         data: dict[str, Any]) -> None:
    handler = make_handler(moto_client, table, locking=mode)
    sid = new_session_id()
    key = handler.store.item_key(sid)
    item = {"id": {"S": key}, "data": data, "expires": {"N": str(int(Clock().now) + 100)}}
    moto_client.put_item(TableName=table, Item=item)
    with pytest.raises(CorruptSession):
        handler.read(sid)
    if mode != "none":  # a locking mode reads before a write it was not read for
        with pytest.raises(CorruptSession):
            handler.write(sid, {"fresh": 1})
    handler.close()
    after = raw_item(moto_client, table, key)
    assert after is not None and after["data"] == item["data"] and "lock" not in after


# --- store API used by the web layer ----------------------------------------------------------


def test_store_create_exists_delete(moto_client: Any, table: str) -> None:
    from dynamo_sessions import SessionExists

    clock = Clock()
    store = create_store(SessionConfig(table_name=table, locking="optimistic"), moto_client,
                         "web", clock)
    sid = new_session_id()
    assert not store.exists(sid)
    created = store.create(sid, {"a": 1})
    assert created.version == 1 and store.exists(sid)
    with pytest.raises(SessionExists):
        store.create(sid, {"a": 2})
    loaded = store.load(sid)
    assert loaded.data == {"a": 1} and loaded.existed
    assert store.save(loaded, {"a": 3})
    clock.advance(store.config.session_lifetime_seconds + 1)
    assert not store.exists(sid)
    store.create(sid, {"b": 1})  # an expired item may be replaced
    assert store.delete(sid) and not store.exists(sid)


def test_errors_are_raised_not_swallowed(moto_client: Any) -> None:
    from dynamo_sessions import TableNotFound

    handler = make_handler(moto_client, "no-such-table")
    with pytest.raises(TableNotFound, match="create-table") as raised:
        handler.read(new_session_id())
    assert isinstance(raised.value.__cause__, ClientError)


def test_operation_hook_sees_every_operation(moto_client: Any, table: str) -> None:
    seen: list[Any] = []
    handler = make_handler(moto_client, table, on_operation=seen.append)
    sid = stored_session(handler, {"a": 1})
    handler.destroy(sid)
    assert [m.operation for m in seen] == ["read", "write", "delete"]
    assert all(m.session == log_id(sid) for m in seen)
    assert handler.metrics.operations == {"read": 1, "write": 1, "delete": 1}
    assert handler.metrics.snapshot()["total_calls"] == 3


# --- the demo ---------------------------------------------------------------------------------


def test_demo_loses_nothing_with_locking(moto_server: EmbeddedMoto) -> None:
    from dynamo_sessions import demo

    rows = demo.run(moto_server.endpoint_url, users=2, requests=4, tabs=4)
    by_mode = {row["mode"]: row for row in rows}
    assert list(by_mode) == ["none", "pessimistic", "optimistic"]
    for row in rows:
        assert row["requests"] == (2 + 4) * 4
    # Last writer wins: only the 4 tabs sharing one session can lose updates (each user's own
    # requests are sequential), and the last write keeps at least 1 of its own tab's 4; nothing
    # is refused, so nothing is answered as an error.  How many are lost depends on the threads.
    assert by_mode["none"]["errors"] == 0
    assert 0 <= by_mode["none"]["lost updates"] <= 4 * 4 - 1
    for mode in ("pessimistic", "optimistic"):
        assert by_mode[mode]["lost updates"] == 0
        assert by_mode[mode]["errors"] == 0
    assert by_mode["pessimistic"]["reads"] == 0  # its reads are lock-taking UpdateItems
    assert by_mode["none"]["refused"] == 0
    table = demo.format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["mode", "requests", "reads"]
    assert "optimistic" in table and "refused WCU" in table


@pytest.mark.parametrize("automatic_gc", [0, 1])
def test_automatic_gc_runs_from_open_only_when_on(moto_client: Any, table: str,
                                                  automatic_gc: int) -> None:
    config = SessionConfig.from_php_options({"table_name": table, "automatic_gc": automatic_gc,
                                             "session_lifetime": 60})
    config = config.replace(gc_probability=1, gc_divisor=1)  # PHP's 1/1: every open()
    clock = Clock()
    handler = SessionHandler(config, moto_client, clock=clock)
    handler.open("", "PHPSESSID")
    handler.write("old", {"a": 1})
    clock.advance(61)
    handler.open("", "PHPSESSID")
    left = moto_client.scan(TableName=table)["Items"]
    assert len(left) == (0 if automatic_gc else 1)
    assert handler.gc(1440) == 0  # nothing (more) to collect, or GC off
