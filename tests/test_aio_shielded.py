"""``transport.aio.shielded`` under anyio's cancel scopes (Starlette, FastAPI, Litestar and
httpx run on anyio): a cancelled scope cancels its waiting tasks again at every turn of the
event loop, so shielded work - a lock release, a save - must wait out its end without spinning
the loop (one wake-up per cancellation, not one per turn)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from dynamo_sessions.transport import aio


def test_shielded_work_in_a_cancelled_anyio_scope_does_not_spin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[Any] = []
    real_shield = asyncio.shield

    def counting_shield(awaitable: Any) -> Any:
        waits.append(awaitable)
        return real_shield(awaitable)

    monkeypatch.setattr(aio.asyncio, "shield", counting_shield)
    finished: list[bool] = []

    async def work() -> None:
        await asyncio.sleep(0.2)  # a release in flight
        finished.append(True)

    async def request() -> None:
        with anyio.CancelScope() as scope:
            asyncio.get_running_loop().call_later(0.01, scope.cancel)  # the client went away
            await aio.shielded(work())
        assert scope.cancelled_caught

    asyncio.run(request())
    assert finished == [True]
    assert len(waits) <= 3, len(waits)  # the first wait, then one shielded wait


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("locking", ["optimistic", "pessimistic"])
def test_a_store_save_cancelled_by_an_anyio_scope(dynamodb_local: Any, ddb_local_client: Any,
                                                  local_table: str, locking: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A save whose calls take 0.3 s each (the proxy's latency), its request's anyio scope
    cancelled meanwhile (a client gone): the save ends - old or new session, no lock - and
    waiting for it wakes the request a few times, not at every turn of the loop."""
    from dynamo_sessions.aio_store import create_async_store
    from dynamo_sessions.config import SessionConfig
    from dynamo_sessions.protocol.ids import new_session_id
    from dynamo_sessions.store import LOCK

    from .aio_support import CREDENTIALS
    from .faultproxy import FaultProxy
    from .test_aio_cancellation import stored

    waits: list[Any] = []
    real_shield = asyncio.shield
    sid = new_session_id()

    def counting_shield(awaitable: Any) -> Any:
        waits.append(awaitable)
        return real_shield(awaitable)

    with FaultProxy(dynamodb_local.endpoint_url) as proxy:
        config = SessionConfig(table_name=local_table, endpoint_url=proxy.endpoint_url,
                               region_name="us-east-1", locking=locking)

        async def main() -> str:
            async with aio.build_async_client(config, **CREDENTIALS) as client:
                store = create_async_store(config, client)
                await store.save(await store.load_for_write(sid), {"n": 1})
                session = await store.load(sid)
                proxy.latency_seconds = 0.3
                monkeypatch.setattr(aio.asyncio, "shield", counting_shield)
                with anyio.CancelScope() as scope:
                    asyncio.get_running_loop().call_later(0.05, scope.cancel)
                    await store.save(session, {"n": 2})
                monkeypatch.setattr(aio.asyncio, "shield", real_shield)
                proxy.latency_seconds = 0.0
                assert scope.cancelled_caught
                return store.item_key(sid)

        key = asyncio.run(main())
    item = stored(ddb_local_client, local_table, key)
    assert LOCK not in item
    assert len(waits) <= 5, len(waits)
