"""The asyncio stores (``aio_store.py``) on DynamoDB Local through aiobotocore: every operation
of each locking mode, concurrent read-modify-write tasks, a lock wait that times out, the
client built per event loop, and the same figures as the sync store for the same operations."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynamo_sessions.aio_store import (
    AsyncOptimisticSessionStore,
    AsyncPessimisticSessionStore,
    AsyncSessionStore,
    create_async_store,
)
from dynamo_sessions.config import SessionConfig
from dynamo_sessions.errors import LockTimeout, SessionExists, SessionMoved
from dynamo_sessions.protocol.ids import new_session_id
from dynamo_sessions.store import LOCK, MOVED, create_store

from .aio_support import (
    MODES,
    TASKS,
    config_for,
    mode_config,  # noqa: F401 - the `config` fixture, one per locking mode
    with_store,
)

pytestmark = pytest.mark.dynamodb_local




def stored(client: Any, table: str, key: str) -> dict[str, Any]:
    return dict(client.get_item(TableName=table, Key={"id": {"S": key}},
                                ConsistentRead=True).get("Item", {}))


def store_key(sid: str) -> str:
    return create_store(SessionConfig(client=object())).item_key(sid)


def test_the_strategy_is_chosen_by_the_config() -> None:
    chosen = [type(create_async_store(SessionConfig(locking=mode, client=object())))
              for mode in MODES]
    assert chosen == [AsyncSessionStore, AsyncOptimisticSessionStore,
                      AsyncPessimisticSessionStore]
    store = create_async_store(SessionConfig(locking="pessimistic"), session_name="S")
    sync_store = create_store(SessionConfig(locking="pessimistic", client=object()),
                              session_name="S")
    assert (store.locking, store.session_name, store.item_key("abc")) == (
        "pessimistic", "S", sync_store.item_key("abc"))
    assert type(store.protocol) is type(sync_store.protocol)


def test_every_operation(ddb_local_client: Any, local_table: str, config: SessionConfig) -> None:
    locking = config.locking
    sid, new_id = new_session_id(), new_session_id()

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["absent"] = await store.exists(sid)
        created = await store.create(sid, {"user": "ann", "n": 1})
        with pytest.raises(SessionExists):
            await store.create(sid, {"user": "bob"})
        seen["exists"] = await store.exists(sid)
        session = await store.load(sid)
        seen["loaded"] = dict(session.data)
        seen["locked"] = LOCK in stored(ddb_local_client, local_table, store.item_key(sid))
        session.data["n"] = 2
        seen["saved"] = await store.save(session, lifetime_seconds=600)
        seen["unlocked"] = LOCK not in stored(ddb_local_client, local_table,
                                              store.item_key(sid))
        again = await store.load(sid)
        seen["again"] = dict(again.data)
        await store.release(again)
        seen["released"] = LOCK not in stored(ddb_local_client, local_table,
                                              store.item_key(sid))
        # login: the session moves to a new id, the old one keeps a data-less marker
        old = await store.load(sid)
        successor = await store.create(new_id, old.data)
        await store.retire(old, successor)
        marker = stored(ddb_local_client, local_table, store.item_key(sid))
        seen["marker"] = MOVED in marker and "data" not in marker and LOCK not in marker
        seen["old_exists"] = await store.exists(sid)
        moved = await store.load(sid)
        moved.data["x"] = 1
        with pytest.raises(SessionMoved):
            await store.save(moved)
        seen["new"] = dict((await store.load_for_write(new_id)).data)
        seen["deleted"] = await store.delete(new_id)
        seen["new_exists"] = await store.exists(new_id)
        seen["created_version"] = created.version
        return seen

    seen = with_store(config, body)
    assert seen["absent"] is False and seen["exists"] is True
    assert seen["loaded"] == {"user": "ann", "n": 1}
    assert seen["locked"] is (locking == "pessimistic")
    assert seen["saved"] is True and seen["unlocked"] and seen["released"]
    assert seen["again"] == {"user": "ann", "n": 2}
    assert seen["marker"] and seen["old_exists"] is False
    assert seen["new"] == ({} if locking == "none" else {"user": "ann", "n": 2})
    assert seen["deleted"] is True and seen["new_exists"] is False
    assert seen["created_version"] == (1 if locking == "optimistic" else None)


@pytest.mark.parametrize("locking", ["optimistic", "pessimistic"])
def test_concurrent_read_modify_write_tasks_lose_no_update(
        dynamodb_local: Any, ddb_local_client: Any, local_table: str, locking: str) -> None:
    config = config_for(dynamodb_local, local_table, locking, max_lock_wait_seconds=60,
                        max_write_retries=100)
    sid = new_session_id()

    async def one(store: AsyncSessionStore, number: int) -> None:
        session = await store.load(sid)
        if locking == "optimistic":
            session.increment("n")  # a counter: merged as a delta
        else:
            session.data["n"] = session.data.get("n", 0) + 1  # the lock serialises it
        session.data[f"task{number}"] = number  # a key of its own: merged per key
        await store.save(session)

    async def body(store: AsyncSessionStore) -> tuple[dict[str, Any], dict[str, Any]]:
        await store.create(sid, {"n": 0})
        await asyncio.gather(*(one(store, number) for number in range(TASKS)))
        final = await store.load(sid)
        await store.release(final)
        return dict(final.data), store.metrics.snapshot()

    data, figures = with_store(config, body)
    assert data == {"n": TASKS, **{f"task{number}": number for number in range(TASKS)}}
    assert LOCK not in stored(ddb_local_client, local_table, store_key(sid))
    if locking == "optimistic":
        assert figures["conflicts"] > 0 and figures["merges"] > 0  # they did race
    else:
        assert figures["lock_waits"] > 0


def test_a_lock_wait_times_out(dynamodb_local: Any, ddb_local_client: Any,
                               local_table: str) -> None:
    config = config_for(dynamodb_local, local_table, "pessimistic", max_lock_wait_seconds=0.3)
    sid = new_session_id()
    slept: list[float] = []

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        real_sleep = store.sleep

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            await real_sleep(seconds)

        store.sleep = sleep
        held = await store.load(sid)
        held.data["user"] = "ann"
        with pytest.raises(LockTimeout):
            await store.load(sid)
        await store.save(held)
        after = await store.load(sid)
        await store.release(after)
        return {"data": after.data, **store.metrics.snapshot()}

    seen = with_store(config, body)
    # every refused take but the last was followed by an asyncio sleep
    assert seen["lock_timeouts"] == 1 and seen["lock_waits"] == len(slept) + 1 > 1
    assert seen["lock_wait_seconds"] == pytest.approx(sum(slept))
    assert seen["data"] == {"user": "ann"}  # the holder's save went through afterwards
    assert LOCK not in stored(ddb_local_client, local_table, store_key(sid))


def test_a_client_is_built_per_event_loop_and_closed(
        dynamodb_local: Any, local_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
        monkeypatch.setenv(name, value)
    store = create_async_store(config_for(dynamodb_local, local_table, "optimistic"),
                               max_pool_connections=7)
    sid = new_session_id()

    async def main() -> tuple[Any, Any, bool, Any]:
        async with store:
            first, second = await asyncio.gather(store.get_client(), store.get_client())
            await store.create(sid, {"a": 1})
            found = await store.exists(sid)
            pool = first.meta.config.max_pool_connections
        reopened = await store.get_client()  # after aclose: a new one
        await store.aclose()
        return (first is second, pool, found, reopened is not first)

    assert asyncio.run(main()) == (True, 7, True, True)
    assert asyncio.run(store.exists(sid)) is True  # another loop: another client
    asyncio.run(store.aclose())


def _workload(locking: str, sid: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The same operations for both stores: (method name, arguments)."""
    return [("exists", (sid,)), ("create", (sid, {"a": 1})), ("load", (sid,)),
            ("save", ({"a": 2, "b": "x" * 2000},)), ("load", (sid,)), ("release", ()),
            ("load_for_write", (sid,)), ("save", ({},)), ("exists", (sid,)),
            ("delete", (sid,))]


def test_the_figures_are_the_sync_stores(ddb_local_client: Any,
                                         config: SessionConfig) -> None:
    locking = config.locking
    sync_store = create_store(config.replace(client=ddb_local_client))
    sid = new_session_id()
    session: Any = None
    for name, args in _workload(locking, sid):
        if name in ("save", "release"):
            args = (session, *args)
        result = getattr(sync_store, name)(*args)
        session = result if name.startswith(("load", "create")) else session
    async_sid = new_session_id()

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        session: Any = None
        for name, args in _workload(locking, async_sid):
            if name in ("save", "release"):
                args = (session, *args)
            result = await getattr(store, name)(*args)
            session = result if name.startswith(("load", "create")) else session
        return store.metrics.snapshot()

    figures = with_store(config, body)
    expected = sync_store.metrics.snapshot()
    assert figures == expected
    assert expected["write_units"] > 0 and expected["total_calls"] >= 8
