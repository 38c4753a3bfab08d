"""A task cancelled at any await point of a save or a pessimistic load (a client gone, a timeout)
leaves the old or the new session stored - never a mix - and no lock, on DynamoDB Local through
the real aiobotocore path.

Each scenario runs once to count its await points (the calls sent, the lock waits slept); then,
for every point k, again from a fresh item, with the caller's task cancelled at the k-th: as the
call is sent (``before``: it may or may not reach DynamoDB), once its answer has come back
(``after``: applied, the answer lost to the cancellation) and as the answer is handed on
(``late``: the operation ends, its caller is cancelled just then - a lock it took is given
back).  The hook sits between the store's driver and the aiobotocore client: every call is the
real one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dynamo_sessions.aio_store import AsyncSessionStore, create_async_store
from dynamo_sessions.config import SessionConfig
from dynamo_sessions.protocol.ids import new_session_id
from dynamo_sessions.protocol.item import LoadedSession
from dynamo_sessions.request import RequestSession
from dynamo_sessions.store import DATA, LOCK, create_store
from dynamo_sessions.transport import aio

pytestmark = pytest.mark.dynamodb_local
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
MODES = ["none", "optimistic", "pessimistic"]
WHEN = ["before", "after", "late"]
OLD = {"user": "ann", "cart": ["a"]}
NEW = {"user": "ann", "cart": ["a", "b"], "note": "x" * 1500}
LINGER_TURNS = 20
"""Turns of the event loop an answered call waits for the caller's cancellation to reach the
store (it takes three)."""


class Cancelling:
    """An aiobotocore client seen through a hook: counts the await points of an operation (its
    calls, and the store's sleeps through :meth:`sleep`) and cancels ``victim`` at the
    ``at``-th."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.points: list[str] = []
        self.at: int | None = None
        self.when = "before"
        self.victim: asyncio.Task[Any] | None = None
        self.fired = False
        self.on_second_sleep: Callable[[], None] | None = None
        """Called before the second sleep (another request's lock is released then)."""

    def _fire(self) -> bool:
        index = len(self.points) - 1
        if index != self.at or self.victim is None:
            return False
        self.fired = True
        self.victim.cancel()
        return True

    @staticmethod
    async def _linger() -> None:
        """Let the loop carry the cancellation to the store before the answer is handed on
        (the store holds it until the call returns, then raises it in the answer's place)."""
        for _ in range(LINGER_TURNS):
            await asyncio.sleep(0)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(**params: Any) -> Any:
            self.points.append(name)
            fire = self.when == "before" and self._fire()
            try:
                return await method(**params)
            finally:  # answered, or refused (a ClientError): then cancelled
                if not fire and self.when != "before" and self._fire() \
                        and self.when == "after":
                    await self._linger()

        return call

    async def sleep(self, seconds: float) -> None:
        self.points.append("sleep")
        if self.on_second_sleep is not None and self.points.count("sleep") == 2:
            self.on_second_sleep()
        fire = self._fire()
        await asyncio.sleep(seconds)
        if not fire and self.when != "before" and self._fire() and self.when == "after":
            await self._linger()


def stored(client: Any, table: str, key: str) -> dict[str, Any]:
    return dict(client.get_item(TableName=table, Key={"id": {"S": key}},
                                ConsistentRead=True).get("Item", {}))


async def prepare_save(store: AsyncSessionStore, hook: Cancelling, sid: str,
                       conflict: bool) -> LoadedSession:
    """The session as a request holds it before its save (a lock, for pessimistic); with
    ``conflict`` another request writes it meanwhile (an optimistic save then merges)."""
    await store.create(sid, OLD)
    session = await store.load(sid)
    if conflict:
        other = await store.load(sid)
        await store.save(other, {**OLD, "theirs": 1})
    session.data = dict(NEW)
    return session


def run_points(config: SessionConfig, sync_client: Any, scenario: str, at: int | None,
               when: str) -> tuple[list[str], bool, dict[str, Any], bool, dict[str, Any]]:
    """Run ``scenario`` once, cancelled at point ``at`` (None: not cancelled): the points it
    went through, whether it was cancelled, the item stored after it, whether it fired, the
    item as stored before the operation."""
    sid = new_session_id()
    other = create_store(config.replace(client=sync_client))
    key = other.item_key(sid)
    before: dict[str, Any] = {}
    held: list[LoadedSession] = []

    async def main() -> tuple[list[str], bool]:
        async with aio.build_async_client(config, **CREDENTIALS) as client:
            hook = Cancelling(client)
            store = create_async_store(config, hook)
            store.sleep = hook.sleep
            request: RequestSession | None = None
            if scenario in ("save", "merge"):
                session = await prepare_save(store, hook, sid, scenario == "merge")
                work: Awaitable[Any] = store.save(session)
            else:  # a pessimistic load; "wait": it first waits for another request's lock
                await store.create(sid, OLD, lifetime_seconds=600)  # not the take's
                before.update(stored(sync_client, config.table_name, key))
                if scenario == "wait":
                    held.append(other.load(sid))
                    hook.on_second_sleep = lambda: other.release(held[0])
                if scenario == "open":
                    request = RequestSession(store, sid)
                    work = request.aopen()
                else:
                    work = store.load(sid)
            hook.points.clear()
            hook.at, hook.when = at, when
            task = asyncio.ensure_future(work)
            hook.victim = task
            result: Any = None
            with contextlib.suppress(asyncio.CancelledError):
                result = await task
            points, hook.at = list(hook.points), None
            if isinstance(result, LoadedSession):
                await store.release(result)  # not cancelled: done with the lock
            if request is not None and not task.cancelled():
                await request.arelease()  # not cancelled: done with the lock
            return points, task.cancelled(), hook.fired

    points, cancelled, fired = asyncio.run(main())
    for holder in held:
        other.release(holder)  # cancelled before it was released (no-op if it was)
    return points, cancelled, stored(sync_client, config.table_name, key), fired, before


@pytest.mark.parametrize(("scenario", "locking"), [
    *(("save", mode) for mode in MODES),
    ("merge", "optimistic"),
    ("load", "pessimistic"),
    ("wait", "pessimistic"),
    ("open", "pessimistic"),
])
def test_cancelled_at_every_await_point(dynamodb_local: Any, ddb_local_client: Any,
                                        local_table: str, scenario: str, locking: str) -> None:
    config = SessionConfig(table_name=local_table, endpoint_url=dynamodb_local.endpoint_url,
                           locking=locking, max_lock_wait_seconds=5)
    points, cancelled, item, _, _ = run_points(config, ddb_local_client, scenario, None,
                                            "before")
    assert not cancelled and LOCK not in item
    if scenario == "wait":
        assert points.count("sleep") >= 2  # it waited, then took the lock
    outcomes = []
    for at in range(len(points)):
        for when in WHEN:
            _, cancelled, item, fired, before = run_points(config, ddb_local_client, scenario,
                                                   at, when)
            assert fired, (at, when)
            assert LOCK not in item, (scenario, at, when, item)
            data = _decoded(item)
            if scenario == "merge":
                allowed = [{**OLD, "theirs": 1}, {**NEW, "theirs": 1}]
            elif scenario == "save":
                allowed = [OLD, NEW]
            else:  # a load: the item as it was, its own expiry back
                allowed = [OLD]
                assert item == before, (scenario, at, when, item, before)
            assert data in allowed, (scenario, at, when, data)
            outcomes.append((at, when, cancelled))
    # every run was cancelled: the cancellation is never swallowed
    assert outcomes and all(cancelled for _, _, cancelled in outcomes), outcomes


def _decoded(item: dict[str, Any]) -> dict[str, Any]:
    from dynamo_sessions import _core

    return dict(_core.decode_session(item[DATA]["B"])) if DATA in item else {}
