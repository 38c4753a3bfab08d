"""The async store (``aio_store.py`` on aiobotocore) under lost answers and hung calls, through
the fault proxy (``tests/faultproxy.py``) in front of DynamoDB Local - the sync side's cases
(``tests/test_reliability_faults.py``) on the asyncio driver.

A call DynamoDB applied but whose answer was lost is retried by aiobotocore (botocore's retry
handler); the retry must be recognised as this request's own success: no ``LockTimeout``,
``LockLost`` or ``SessionExists`` for it, never applied twice.  A call that hangs ends at the
configured read timeout and attempts with the typed error; a request cancelled while its call
hangs still cleans up: no lock remains.  Only botocore's sleep between attempts is cut to zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dynamo_sessions import DynamoUnavailable, SessionConfig, new_session_id
from dynamo_sessions.aio_store import AsyncSessionStore, create_async_store
from dynamo_sessions.protocol.item import LoadedSession
from dynamo_sessions.transport import aio

from .aio_support import CREDENTIALS
from .faultproxy import FaultProxy
from .test_faults import ATTEMPTS, DATA_WRITE, LOCK_TAKE
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once
from .test_reliability_faults import (
    CALLBACK_READ_TIMEOUT_SECONDS,
    LOST,
    READ_TIMEOUT_SECONDS,
    RELEASE_ONLY,
    Setup,
    expires,
    other_writes,
    stored_session,
    unlocked,
    version,
)
from .test_reliability_faults import setup as setup  # the fixture
from .test_transport_aio import settle

pytestmark = [pytest.mark.dynamodb_local, pytest.mark.slow]  # read timeouts: CI runs it once

MODES = ["none", "pessimistic", "optimistic"]


def config_of(setup: Setup, mode: str, **options: Any) -> SessionConfig:
    return SessionConfig(
        table_name=setup.table, locking=mode, endpoint_url=setup.proxy.endpoint_url,
        region_name="us-east-1", boto_max_attempts=ATTEMPTS,
        read_timeout_seconds=options.pop("read_timeout_seconds", READ_TIMEOUT_SECONDS),
        **options)


def run(setup: Setup, mode: str, body: Callable[[AsyncSessionStore], Awaitable[Any]],
        **options: Any) -> Any:
    """``body(store)`` on a fresh event loop: an async store through the proxy."""
    config = config_of(setup, mode, **options)

    async def main() -> Any:
        async with aio.build_async_client(config, **CREDENTIALS) as client:
            return await body(create_async_store(config, client))

    return asyncio.run(main())


def raw(setup: Setup, store_or_key: AsyncSessionStore | str, sid: str = "") -> Any:
    key = store_or_key if isinstance(store_or_key, str) else store_or_key.item_key(sid)
    return setup.direct.get_item(TableName=setup.table, Key={"id": {"S": key}},
                                 ConsistentRead=True).get("Item")


async def saved(store: AsyncSessionStore, sid: str, data: dict[str, Any]) -> None:
    """A session stored by an earlier request of this store (no lock left)."""
    await store.save(await store.load_for_write(sid), data)


async def seen(proxy: FaultProxy, operation: str, count: int) -> None:
    """Let the loop run (bounded) until the proxy has seen ``count`` ``operation`` requests."""
    await settle(lambda: proxy.seen[operation] >= count)


# --- applied, answer lost: the retry is our own success ----------------------------------------


@pytest.mark.parametrize("kind", LOST)
@pytest.mark.parametrize("mode", MODES)
def test_lost_save(setup: Setup, mode: str, kind: str) -> None:
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> Any:
        await saved(store, sid, {"n": 1})
        session = await store.load(sid)
        before = version(raw(setup, store, sid))
        setup.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
        assert await store.save(session, {"n": 2})
        return store.item_key(sid), before

    key, before = run(setup, mode, body)
    setup.settle()
    after = raw(setup, key)
    assert unlocked(after)
    if mode == "optimistic":
        assert version(after) == before + 1  # applied once
    assert setup.proxy.counts() == {kind: 1}
    assert stored_session(setup, mode, sid) == {"n": 2}


@pytest.mark.parametrize("kind", LOST)
def test_lost_lock_take(setup: Setup, kind: str) -> None:
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"n": 1})
        setup.proxy.script(kind, "UpdateItem", 1, LOCK_TAKE)
        session = await store.load(sid)  # not LockTimeout on its own lock
        assert session.data == {"n": 1}
        assert await store.save(session, {"n": 2})
        return store.item_key(sid)

    key = run(setup, "pessimistic", body, max_lock_wait_seconds=1.0)
    assert setup.proxy.counts() == {kind: 1}
    assert unlocked(raw(setup, key))
    assert stored_session(setup, "pessimistic", sid) == {"n": 2}


@pytest.mark.parametrize("kind", LOST)
def test_lost_release(setup: Setup, kind: str) -> None:
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> tuple[str, int]:
        await saved(store, sid, {"n": 1})
        written = expires(raw(setup, store, sid))
        session = await store.load(sid)
        setup.proxy.script(kind, "UpdateItem", 1, RELEASE_ONLY)
        await store.release(session)
        return store.item_key(sid), written

    key, written = run(setup, "pessimistic", body)
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    item = raw(setup, key)
    assert unlocked(item) and expires(item) == written  # the expiry from before the lock
    assert stored_session(setup, "pessimistic", sid) == {"n": 1}


@pytest.mark.parametrize("kind", LOST)
@pytest.mark.parametrize("mode", MODES)
def test_lost_create(setup: Setup, mode: str, kind: str) -> None:
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        setup.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
        await store.create(sid, {"new": 1})  # not SessionExists for its own create
        return store.item_key(sid)

    key = run(setup, mode, body)
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    item = raw(setup, key)
    assert unlocked(item)
    if mode == "optimistic":
        assert version(item) == 1
    assert stored_session(setup, mode, sid) == {"new": 1}


@pytest.mark.parametrize("how", ["emptied", "destroy"])
@pytest.mark.parametrize("kind", LOST)
@pytest.mark.parametrize("mode", MODES)
def test_lost_delete(setup: Setup, mode: str, kind: str, how: str) -> None:
    """A logout: the session emptied by a request that read it (a conditional delete), or
    ``delete`` (unconditional)."""
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"n": 1})
        session = await store.load(sid)
        setup.proxy.script(kind, "DeleteItem", 1)
        if how == "emptied":
            assert await store.save(session, {})
        else:
            await store.release(session)
            assert await store.delete(sid)
        return store.item_key(sid)

    key = run(setup, mode, body)
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    assert raw(setup, key) is None


@pytest.mark.parametrize("kind", LOST)
@pytest.mark.parametrize("mode", MODES)
def test_lost_retire(setup: Setup, mode: str, kind: str) -> None:
    """Login: the old id's moved marker is applied, its answer lost; the retry is our own."""
    sid, new = new_session_id(), new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"cart": [1]})
        old = await store.load(sid)
        successor = await store.create(new, old.data)
        setup.proxy.script(kind, "PutItem", 1)
        await store.retire(old, successor)
        return store.item_key(sid)

    old_key = run(setup, mode, body)
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    marker = raw(setup, old_key)
    assert unlocked(marker) and "data" not in marker and "moved" in marker
    assert stored_session(setup, mode, new) == {"cart": [1]}


@pytest.mark.parametrize("mode", ["pessimistic", "optimistic"])
def test_lost_save_then_another_write(setup: Setup, mode: str) -> None:
    """Our write is applied; before the retry another request changes the same key.  The
    retry is our own success: no LockLost, our older value is not written again over theirs."""
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"k": "first"})
        session = await store.load(sid)
        setup.proxy.script("drop_after", "UpdateItem", 1, DATA_WRITE,
                           then=other_writes(setup, mode, sid, "k", "theirs"))
        assert await store.save(session, {"k": "ours"})
        return store.item_key(sid)

    key = run(setup, mode, body, read_timeout_seconds=CALLBACK_READ_TIMEOUT_SECONDS)
    assert setup.proxy.counts() == {"drop_after": 1}
    item = raw(setup, key)
    assert unlocked(item)
    if mode == "optimistic":
        assert version(item) == 3  # ours, then theirs: nothing written again
    assert stored_session(setup, mode, sid) == {"k": "theirs"}


@pytest.mark.parametrize("mode", ["pessimistic", "optimistic"])
def test_lost_logout_then_another_request(setup: Setup, mode: str) -> None:
    """Our logout is applied; before the retry another request starts a session under the
    same id: it is not deleted or merged into."""
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"user": "jeremy"})
        session = await store.load(sid)
        setup.proxy.script("drop_after", "DeleteItem", 1,
                           then=other_writes(setup, mode, sid, "new", 1))
        assert await store.save(session, {})
        return store.item_key(sid)

    key = run(setup, mode, body, read_timeout_seconds=CALLBACK_READ_TIMEOUT_SECONDS)
    assert setup.proxy.counts() == {"drop_after": 1}
    assert unlocked(raw(setup, key))
    assert stored_session(setup, mode, sid) == {"new": 1}


# --- a call that hangs past the read timeout ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_read_that_hangs_raises_the_typed_error(setup: Setup, mode: str) -> None:
    """Every attempt held past the read timeout: ``DynamoUnavailable`` (never an empty
    session, never a wait beyond the configured attempts), and no lock is left."""
    sid = new_session_id()
    api, contains = ("UpdateItem", LOCK_TAKE) if mode == "pessimistic" else ("GetItem", "")

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"n": 1})
        setup.proxy.script("delay", api, ATTEMPTS, contains)
        with pytest.raises(DynamoUnavailable):
            await store.load(sid)
        session = await store.load(sid)  # served once DynamoDB answers again
        assert session.data == {"n": 1}
        await store.release(session)
        return store.item_key(sid)

    key = run(setup, mode, body)
    setup.settle()
    assert setup.proxy.counts() == {"delay": ATTEMPTS}
    assert unlocked(raw(setup, key))


@pytest.mark.parametrize("mode", MODES)
def test_a_save_that_hangs_raises_the_typed_error_and_keeps_the_session(
        setup: Setup, mode: str) -> None:
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"n": 1})
        session = await store.load(sid)
        setup.proxy.script("delay", "UpdateItem", ATTEMPTS, DATA_WRITE)
        with pytest.raises(DynamoUnavailable):
            await store.save(session, {"n": 2})
        return store.item_key(sid)

    key = run(setup, mode, body)
    setup.settle()
    assert setup.proxy.counts() == {"delay": ATTEMPTS}
    assert unlocked(raw(setup, key))  # the pessimistic lock was given back
    assert stored_session(setup, mode, sid) == {"n": 1}


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_lock_take_whose_every_answer_was_lost_holds_its_lock_one_lease_at_most(
        setup: Setup, driver: str) -> None:
    """Every attempt of the take applied (the first took the lock; the retries found it
    ours), every answer lost: ``DynamoUnavailable``.  The lock is *not* given back - a
    give-back on a DynamoDB that does not answer would cost the failing request another
    read timeout per attempt - and lasts one lease at most: the next request takes it over
    and finds the session whole."""
    sid = new_session_id()
    lease = {"lock_lease_seconds": 1.0, "max_lock_wait_seconds": 10.0}

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"n": 1})
        setup.proxy.script("delay_after", "UpdateItem", ATTEMPTS, LOCK_TAKE)
        with pytest.raises(DynamoUnavailable):
            await store.load(sid)
        assert not unlocked(raw(setup, store, sid))  # left to its lease
        taken_over = await store.load(sid)
        assert taken_over.data == {"n": 1}
        await store.release(taken_over)
        return store.item_key(sid)

    if driver == "async":
        key = run(setup, "pessimistic", body, **lease)
    else:
        handler = setup.handler("pessimistic", **lease)
        handler.write(sid, {"n": 1})
        setup.proxy.script("delay_after", "UpdateItem", ATTEMPTS, LOCK_TAKE)
        with pytest.raises(DynamoUnavailable):
            handler.read(sid)
        key = handler.store.item_key(sid)
        assert not unlocked(setup.item(handler, sid))  # left to its lease
        assert handler.read(sid) == {"n": 1}  # taken over once the lease lapsed
        handler.close()
    setup.settle()
    assert setup.proxy.counts() == {"delay_after": ATTEMPTS}
    assert unlocked(raw(setup, key))
    assert stored_session(setup, "pessimistic", sid) == {"n": 1}


@pytest.mark.parametrize(("operation", "mode"), [
    ("load", "pessimistic"), ("save", "pessimistic"), ("save", "optimistic"),
    ("save", "none")])
@pytest.mark.parametrize("kind", ["delay", "delay_after"])
def test_cancelled_while_its_call_hangs(setup: Setup, operation: str, mode: str,
                                        kind: str) -> None:
    """The caller is cancelled while its call hangs in the proxy: the call ends with the
    configured timeout and retries, the cleanup runs, the caller sees ``CancelledError``; no
    lock remains and the stored session is the old or the new one."""
    sid = new_session_id()
    api, contains = ("UpdateItem", LOCK_TAKE if operation == "load" else DATA_WRITE)

    async def body(store: AsyncSessionStore) -> str:
        await saved(store, sid, {"n": 1})
        work: Awaitable[Any]
        if operation == "load":
            work = store.load(sid)
        else:
            session: LoadedSession = await store.load(sid)
            work = store.save(session, {"n": 2})
        count = setup.proxy.seen[api] + 1
        setup.proxy.script(kind, api, 1, contains)
        task = asyncio.ensure_future(work)
        await seen(setup.proxy, api, count)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        return store.item_key(sid)

    key = run(setup, mode, body)
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    assert unlocked(raw(setup, key))
    assert stored_session(setup, mode, sid) in ({"n": 1}, {"n": 2})


def test_a_cleanup_that_fails_after_a_cancellation_is_logged(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """Cancelled while its write hangs, the save's cleanup cannot give the lock back either
    (every attempt throttled, twice): the caller only sees ``CancelledError``, so the failure
    is logged (by the protocol's release) - the lock lasts its lease."""
    sid = new_session_id()

    async def body(store: AsyncSessionStore) -> None:
        await saved(store, sid, {"n": 1})
        session = await store.load(sid)
        count = setup.proxy.seen["UpdateItem"] + 1
        setup.proxy.script("delay", "UpdateItem", ATTEMPTS, DATA_WRITE)
        setup.proxy.script("throttle", "UpdateItem", 2 * ATTEMPTS, RELEASE_ONLY)
        task = asyncio.ensure_future(store.save(session, {"n": 2}))
        await seen(setup.proxy, "UpdateItem", count)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="dynamo_sessions"):
        run(setup, "pessimistic", body, lock_lease_seconds=1.0)
    setup.settle()
    assert setup.proxy.counts() == {"delay": ATTEMPTS, "throttle": 2 * ATTEMPTS}
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]  # tried twice
    assert stored_session(setup, "pessimistic", sid) == {"n": 1}  # once the lease is over
