"""The async store's own client (built per event loop) when building it fails: the next call
builds it again - a failed build is never kept as the loop's client, whether or not its caller
was still waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from dynamo_sessions import DynamoUnavailable, SessionConfig, new_session_id
from dynamo_sessions.aio_store import create_async_store
from dynamo_sessions.transport import aio

from .aio_support import CREDENTIALS
from .faultproxy import FaultProxy
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once
from .test_transport_aio import settle

pytestmark = pytest.mark.dynamodb_local


class FailingBuild:
    """A client context whose ``__aenter__`` waits for ``gate``, then fails (credentials or
    the network unavailable while the client is built)."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.entered = False

    async def __aenter__(self) -> Any:
        self.entered = True
        await self.gate.wait()
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    async def __aexit__(self, *_: Any) -> None:
        return None


def building_store(dynamodb_local: Any, table: str,
                   monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """A store that builds its own clients, and the real builder (the tests replace it)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
        monkeypatch.setenv(name, value)
    config = SessionConfig(table_name=table, endpoint_url=dynamodb_local.endpoint_url,
                           locking="optimistic")
    return create_async_store(config), aio.build_async_client


@pytest.mark.parametrize("waiting", [True, False], ids=["caller-waits", "caller-cancelled"])
def test_a_failed_client_build_is_tried_again(dynamodb_local: Any, local_table: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture,
                                              waiting: bool) -> None:
    store, real_build = building_store(dynamodb_local, local_table, monkeypatch)
    builds: list[Any] = []
    gates: list[asyncio.Event] = []

    def build(config: SessionConfig, **overrides: Any) -> Any:
        context = (FailingBuild(gates[0]) if not builds else real_build(config, **overrides))
        builds.append(context)
        return context

    monkeypatch.setattr(aio, "build_async_client", build)
    sid = new_session_id()

    async def main() -> bool:
        gate = asyncio.Event()
        gates.append(gate)
        task = asyncio.ensure_future(store.create(sid, {"n": 1}))
        await settle(lambda: bool(builds) and builds[0].entered)
        if waiting:
            gate.set()
            with pytest.raises((EndpointConnectionError, DynamoUnavailable)):
                await task
        else:
            task.cancel()  # the client's request went away while the client was built
            with contextlib.suppress(asyncio.CancelledError):
                await task
            gate.set()
            for _ in range(5):
                await asyncio.sleep(0)  # the build fails, with nobody waiting for it
        await store.create(sid, {"n": 2})  # built again: served
        found = await store.exists(sid)
        await store.aclose()
        return found

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert asyncio.run(main()) is True
    assert len(builds) == 2
    assert [r.getMessage() for r in caplog.records] == []  # no "exception never retrieved"


class GatedBuild:
    """A real client context whose ``__aenter__`` first waits for ``gate``."""

    def __init__(self, context: Any, gate: asyncio.Event) -> None:
        self.context = context
        self.gate = gate
        self.entered = False

    async def __aenter__(self) -> Any:
        self.entered = True
        await self.gate.wait()
        return await self.context.__aenter__()

    async def __aexit__(self, *args: Any) -> Any:
        return await self.context.__aexit__(*args)


def test_aclose_while_the_client_is_built_cancels_no_request(
        dynamodb_local: Any, local_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request waiting for the loop's client while ``aclose`` runs (a shutdown): it is not
    cancelled (it was not); it is served or gets a typed error (the client it waited for is
    closed by ``aclose``), and nothing is left open."""
    store, real_build = building_store(dynamodb_local, local_table, monkeypatch)
    builds: list[GatedBuild] = []
    gates: list[asyncio.Event] = []

    def build(config: SessionConfig, **overrides: Any) -> Any:
        builds.append(GatedBuild(real_build(config, **overrides), gates[0]))
        return builds[-1]

    monkeypatch.setattr(aio, "build_async_client", build)

    async def main() -> str:
        gates.append(asyncio.Event())
        task = asyncio.ensure_future(store.exists(new_session_id()))
        await settle(lambda: bool(builds) and builds[0].entered)
        closing = asyncio.ensure_future(store.aclose())
        await asyncio.sleep(0)
        gates[0].set()
        await closing
        try:
            await task
        except DynamoUnavailable:
            outcome = "typed error"
        else:
            outcome = "served"
        await store.aclose()
        return outcome

    assert asyncio.run(main()) in ("served", "typed error")


def test_a_call_waiting_for_a_pooled_connection_is_bounded(dynamodb_local: Any,
                                                           local_table: str) -> None:
    """Every connection of the pool is held by a hung call (here: one of one): the next call
    ends with the configured timeouts - a typed error - before the hung one does, instead of
    queueing behind it until its read timeout and retries free a connection."""
    with FaultProxy(dynamodb_local.endpoint_url, delay_seconds=8.0) as proxy:
        config = SessionConfig(table_name=local_table, endpoint_url=proxy.endpoint_url,
                               region_name="us-east-1", boto_max_attempts=1,
                               read_timeout_seconds=6.0, connect_timeout_seconds=0.5)

        async def main() -> tuple[bool, BaseException | None]:
            async with aio.build_async_client(config, max_pool_connections=1,
                                              **CREDENTIALS) as client:
                store = create_async_store(config, client)
                await store.exists(new_session_id())  # the clock's sync, done
                proxy.script("delay", "GetItem", 1)
                hung = asyncio.ensure_future(store.exists(new_session_id()))
                await settle(lambda: proxy.injected["delay"] == 1)
                queued = asyncio.ensure_future(store.exists(new_session_id()))
                done, _ = await asyncio.wait({hung, queued},
                                             return_when=asyncio.FIRST_COMPLETED)
                await asyncio.wait({hung, queued})
                for task in (hung, queued):
                    task.exception()  # retrieved: both may have failed
                return queued in done and hung not in done, queued.exception()

        first, error = asyncio.run(main())
    assert first and isinstance(error, DynamoUnavailable)
