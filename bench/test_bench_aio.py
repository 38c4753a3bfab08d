"""CPU per request of the asyncio path against the sync path, on a stubbed transport.

The same request cycle as ``test_bench_handler.py``'s - read a ~1 KB session, change it, write
it (``locking="none"``: GetItem + UpdateItem) - through ``RequestSession`` on a
``SessionStore`` (boto3) and on an ``AsyncSessionStore`` (aiobotocore, awaited on one event
loop).  Both transports are stubbed by a ``before-send`` handler answering canned HTTP
responses (aiobotocore's own response class on the async side), so nothing but the two
paths' CPU is measured: botocore's / aiobotocore's request building and parsing, the driver
and the event loop.  Each round runs ``CYCLES`` requests (on the loop: one
``run_until_complete`` per round, as a server's loop is already running).  Target: async
<= 1.5x sync.

    pytest bench/test_bench_aio.py --benchmark-group-by=group \\
        --benchmark-columns=min,median,mean,rounds -s
    python bench/count_instructions.py aio       # the same, counted in instructions
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiobotocore.awsrequest import AioAWSResponse

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions import _core as chosen_core
from dynamo_sessions.aio_store import AsyncSessionStore, create_async_store
from dynamo_sessions.request import RequestSession
from dynamo_sessions.transport import aio
from test_bench_handler import SESSION_ID, TABLE, CannedDynamoDB, stub_client, typical_session

CYCLES = 20
"""Request cycles per benchmark round."""
STUB_ENDPOINT = "http://127.0.0.1:9"
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


class _Raw:
    """What ``AioAWSResponse`` reads a body from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def read(self) -> bytes:
        return self.body


class AsyncCannedDynamoDB(CannedDynamoDB):
    """The sync bench's canned answers, as aiobotocore responses."""

    def _answer(self, request: Any, **_: Any) -> AioAWSResponse:
        sync_answer = super()._answer(request)
        return AioAWSResponse(request.url, 200, dict(sync_answer.headers),
                              _Raw(sync_answer.content))


def payload() -> bytes:
    data = chosen_core.encode_session(typical_session(), 100)
    assert 800 <= len(data) <= 1300  # a ~1 KB session
    return bytes(data)


def sync_cycle() -> tuple[Callable[[], None], CannedDynamoDB]:
    store = create_store(SessionConfig(table_name=TABLE), stub_client())
    canned = CannedDynamoDB(store.client, store.item_key(SESSION_ID), payload())
    counter: Iterator[int] = itertools.count()

    def cycles() -> None:
        for _ in range(CYCLES):
            session = RequestSession(store, SESSION_ID, cookie_present=True)
            session["request"] = next(counter)  # a key the stored session lacks: a change
            session.save()

    return cycles, canned


class AsyncCycle:
    """The async store on a stubbed aiobotocore client, on a loop of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.context = aio.build_async_client(
            SessionConfig(table_name=TABLE, endpoint_url=STUB_ENDPOINT), **CREDENTIALS)
        self.client = self.loop.run_until_complete(self.context.__aenter__())
        self.store: AsyncSessionStore = create_async_store(SessionConfig(table_name=TABLE),
                                                           self.client)
        self.canned = AsyncCannedDynamoDB(self.client, self.store.item_key(SESSION_ID),
                                          payload())
        self.counter: Iterator[int] = itertools.count()

    async def _cycles(self) -> None:
        for _ in range(CYCLES):
            session = RequestSession(self.store, SESSION_ID, cookie_present=True)
            await session.aopen()
            session["request"] = next(self.counter)
            await session.asave()

    def __call__(self) -> None:
        self.loop.run_until_complete(self._cycles())

    def close(self) -> None:
        self.loop.run_until_complete(self.context.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture
def async_cycle() -> Iterator[AsyncCycle]:
    cycle = AsyncCycle()
    yield cycle
    cycle.close()


@pytest.mark.benchmark(group="async-vs-sync-cycle")
def test_sync_request_cycles(benchmark: Any) -> None:
    cycles, canned = sync_cycle()
    benchmark(cycles)
    assert canned.sent[:2] == ["GetItem", "UpdateItem"]  # one read, one write per request
    assert canned.sent.count("GetItem") * 2 == len(canned.sent)


@pytest.mark.benchmark(group="async-vs-sync-cycle")
def test_async_request_cycles(benchmark: Any, async_cycle: AsyncCycle) -> None:
    benchmark(async_cycle)
    sent = async_cycle.canned.sent
    assert sent[:2] == ["GetItem", "UpdateItem"]
    assert sent.count("GetItem") * 2 == len(sent)
    assert async_cycle.store.metrics.operations["write"] == len(sent) // 2
