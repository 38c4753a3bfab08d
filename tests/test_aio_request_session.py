"""One ``RequestSession`` for sync and async: its rules (lazy read, strict ids, regenerate,
destroy, counters, the explicit steps Django and PHP use) awaited on an ``AsyncSessionStore``,
on DynamoDB Local through aiobotocore."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynamo_sessions.aio_store import AsyncSessionStore, create_async_store
from dynamo_sessions.config import SessionConfig
from dynamo_sessions.errors import LockTimeout
from dynamo_sessions.protocol.ids import new_session_id
from dynamo_sessions.request import RequestSession
from dynamo_sessions.store import LOCK, MOVED, create_store

from . import aio_support

pytestmark = pytest.mark.dynamodb_local
mode_config = aio_support.mode_config  # the `config` fixture, one per locking mode




def stored(client: Any, config: SessionConfig, sid: str) -> dict[str, Any]:
    key = create_store(config.replace(client=client)).item_key(sid)
    return dict(client.get_item(TableName=config.table_name, Key={"id": {"S": key}},
                                ConsistentRead=True).get("Item", {}))


def test_a_request_cycle(ddb_local_client: Any, config: SessionConfig) -> None:

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        first = RequestSession(store)  # no cookie: a new session, no call to start it
        first["cart"] = ["a"]
        calls = store.metrics.total_calls
        await first.asave()
        seen["new_calls"] = calls
        seen["cookie"] = first.needs_cookie
        sid = first.id
        assert sid is not None
        second = RequestSession(store, sid, cookie_present=True)
        with pytest.raises(TypeError):
            second["cart"]  # the read is a call: it must be awaited
        await second.aopen()
        second["cart"] = [*second["cart"], "b"]
        seen["second_cookie"] = second.needs_cookie
        await second.asave()
        seen["locked_after_save"] = LOCK in stored(ddb_local_client, config, sid)
        untouched = RequestSession(store, sid, cookie_present=True)
        before = store.metrics.total_calls
        await untouched.asave()
        seen["untouched_calls"] = store.metrics.total_calls - before
        login = RequestSession(store, sid, cookie_present=True)
        seen["cart"] = list((await login.aopen())["cart"])
        new_id = login.regenerate()
        await login.asave()
        seen["old_is_marker"] = MOVED in stored(ddb_local_client, config, sid)
        seen["old_exists"] = await login.aexists(sid)
        late = RequestSession(store, sid, cookie_present=True)
        await late.aopen()
        seen["late_moved"] = late.moved and not late.needs_cookie
        await late.arelease()
        logout = RequestSession(store, new_id, cookie_present=True)
        await logout.aopen()
        seen["new_cart"] = list(logout["cart"])
        logout.destroy()
        await logout.asave()
        seen["deleted"] = stored(ddb_local_client, config, new_id) == {}
        seen["cookie_deleted"] = logout.needs_cookie_deleted
        return seen

    seen = aio_support.with_store(config, body)
    assert seen["new_calls"] == 0 and seen["cookie"] is True
    assert seen["second_cookie"] is False and seen["locked_after_save"] is False
    assert seen["untouched_calls"] == 0
    assert seen["cart"] == ["a", "b"] == seen["new_cart"]
    assert seen["old_is_marker"] and seen["old_exists"] is False and seen["late_moved"]
    assert seen["deleted"] and seen["cookie_deleted"]


@pytest.mark.parametrize("locking", aio_support.MODES)
def test_concurrent_requests_lose_no_increment(dynamodb_local: Any, ddb_local_client: Any,
                                               local_table: str, locking: str) -> None:
    config = aio_support.config_for(dynamodb_local, local_table, locking, max_lock_wait_seconds=60,
                                    max_write_retries=100)

    async def one(store: AsyncSessionStore, sid: str) -> None:
        request = RequestSession(store, sid, cookie_present=True)
        await request.aopen()
        request.increment("visits")
        await request.asave()

    async def body(store: AsyncSessionStore) -> Any:
        start = RequestSession(store)
        start["visits"] = 0
        await start.asave()
        assert start.id is not None
        await asyncio.gather(*(one(store, start.id) for _ in range(aio_support.TASKS)))
        final = RequestSession(store, start.id)
        data = dict(await final.aopen())
        await final.arelease()
        return data, start.id

    data, sid = aio_support.with_store(config, body)
    assert data == {"visits": aio_support.TASKS}
    assert LOCK not in stored(ddb_local_client, config, sid)


def test_the_explicit_steps(ddb_local_client: Any, config: SessionConfig) -> None:
    sid, moved_to = new_session_id(), new_session_id()

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        django = RequestSession(store, keep_empty=True)
        await django.acreate(sid, {"a": 1})
        seen["exists"] = await django.aexists(sid)
        await django.asave_existing(sid, {"a": 2})
        await django.acreate(moved_to, {"a": 2})  # cycle_key: a new key ...
        seen["retired"] = await django.adelete(sid)  # ... and the old one retired
        seen["old_exists"] = await django.aexists(sid)
        await django.arelease_locks()
        php = RequestSession(store, strict=False)
        seen["read"] = dict(await php.aload(moved_to))
        seen["written"] = await php.awrite({"a": 3})
        seen["retire_other"] = await php.aretire_old(moved_to)  # not moved by it: no call
        seen["gone"] = await RequestSession(store).adelete(moved_to)
        seen["new_exists"] = await php.aexists(moved_to)
        return seen

    seen = aio_support.with_store(config, body)
    assert seen == {"exists": True, "retired": True, "old_exists": False,
                    "read": {"a": 2}, "written": True, "retire_other": False, "gone": True,
                    "new_exists": False}
    assert stored(ddb_local_client, config, moved_to) == {}


def test_a_lock_timeout_is_raised_on_every_access(dynamodb_local: Any, ddb_local_client: Any,
                                                  local_table: str) -> None:
    config = aio_support.config_for(dynamodb_local, local_table, "pessimistic",
                                    max_lock_wait_seconds=0.2)
    sid = new_session_id()
    holder = create_store(config.replace(client=ddb_local_client))
    holder.create(sid, {"a": 1})
    held = holder.load(sid)

    async def body(store: AsyncSessionStore) -> int:
        request = RequestSession(store, sid, cookie_present=True)
        with pytest.raises(LockTimeout):
            await request.aopen()
        with pytest.raises(LockTimeout):
            request["a"]  # the failure stays: never an empty session
        await request.asave()
        return store.metrics.lock_timeouts

    assert aio_support.with_store(config, body) == 1
    holder.release(held)
    assert LOCK not in stored(ddb_local_client, config, sid)


def test_a_cancelled_save_releases_the_lock(dynamodb_local: Any, ddb_local_client: Any,
                                            local_table: str) -> None:
    config = aio_support.config_for(dynamodb_local, local_table, "pessimistic")
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> dict[str, Any]:
        await store.create(sid, {"a": 1})
        request = RequestSession(store, sid, cookie_present=True)
        await request.aopen()
        request["a"] = 2
        task = asyncio.ensure_future(request.asave())
        await asyncio.sleep(0)  # the save's write is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = RequestSession(store, sid)
        data = dict(await after.aopen())
        await after.arelease()
        return data

    data = aio_support.with_store(config, body)
    assert data in ({"a": 1}, {"a": 2})
    assert LOCK not in stored(ddb_local_client, config, sid)


def test_each_face_refuses_the_other_kind_of_store(ddb_local_client: Any) -> None:
    sync_request = RequestSession(create_store(SessionConfig(client=ddb_local_client)), "x" * 43)
    with pytest.raises(TypeError):
        asyncio.run(sync_request.asave())
    async_request = RequestSession(create_async_store(SessionConfig(client=object())))
    async_request["a"] = 1  # a new session needs no call
    with pytest.raises(TypeError):
        async_request.save()  # storing it does
