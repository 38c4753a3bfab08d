"""The protocol test matrix: every locking mode x operation x outcome, run twice.

1. On the botocore driver against moto (``mock_aws``) and against DynamoDB Local, a tap
   recording every step with its answer (or the exception botocore raised) - faults injected
   below the client: a request applied whose answer is lost (botocore retries it), throttling
   past botocore's retries.
2. Replayed on the asyncio recording driver from that transcript.

Both runs draw the same tokens (seeded ``secrets``), read the same test clock and the same
monotonic clock (moved only by the Sleep steps): the protocol must ask for the same calls in
the same order, the same sleeps and lease holds, and reach the same results and errors, with
the same figures - so it runs on an asyncio driver with no change to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import boto3
import botocore.endpoint
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.metrics import Metrics
from dynamo_sessions.protocol.calls import Protocol
from dynamo_sessions.protocol.steps import Call, Drop, Hold, Operation, Sleep, Step
from dynamo_sessions.store import STORES
from dynamo_sessions.testing.servers import local_client
from dynamo_sessions.transport.recording import RecordingDriver, Transcript

from .conftest import make_table
from .handler_support import Clock, FakeTimer
from .protocol_golden_scenarios import START, jsonable, outcome, seeded_secrets

MODES = ["none", "optimistic", "pessimistic"]
A, B, C = "session-a", "session-b", "session-c"
TABLE = "matrix"


def _decode(value: Any) -> Any:
    """DynamoDB JSON as sent on the wire -> botocore parameters (binary values as bytes)."""
    if isinstance(value, dict):
        return {key: (base64.b64decode(item) if key == "B" and isinstance(item, str)
                      else _decode(item)) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


class LostAnswers:
    """Applies the next matching request on the server, then loses its answer (a read
    timeout): botocore sends it again, as after a connection dropped mid-answer."""

    def __init__(self, client: Any, setup: Any) -> None:
        self.setup = setup
        self.pending: list[tuple[str, str]] = []
        client.meta.events.register("before-send.dynamodb", self._before_send)

    def add(self, operation: str, contains: str = "") -> None:
        self.pending.append((operation, contains))

    def _before_send(self, request: Any, **_: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        for index, (operation, contains) in enumerate(self.pending):
            if target.endswith("." + operation) and contains in body:
                del self.pending[index]
                with contextlib.suppress(self.setup.exceptions.ClientError):
                    getattr(self.setup, xform_name(operation))(**_decode(json.loads(body)))
                raise ReadTimeoutError(endpoint_url=request.url)
        return None


class Refusals:
    """Answers the next ``count`` calls of an operation with an error botocore gave up on
    (throttling, a 500), before anything is sent: nothing is applied.  (Under ``mock_aws`` a
    ``before-send`` fault would still reach moto, which applies the request.)"""

    CODES = {"throttle": (400, "ProvisionedThroughputExceededException"),
             "5xx": (500, "InternalServerError")}

    def __init__(self, client: Any) -> None:
        self.rules: list[dict[str, Any]] = []
        client.meta.events.register("before-call.dynamodb", self._before_call)

    def add(self, kind: str, operation: str, count: int) -> None:
        self.rules.append({"kind": kind, "operation": operation, "count": count})

    def _before_call(self, model: Any, **_: Any) -> Any:
        for rule in self.rules:
            if rule["count"] > 0 and rule["operation"] == model.name:
                rule["count"] -= 1
                status, code = self.CODES[rule["kind"]]
                return types.SimpleNamespace(status_code=status), {
                    "Error": {"Code": code, "Message": "injected"},
                    "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 2},
                }
        return None


class Context:
    """What a scenario sees: the protocol, an async runner, the clock, and (live only) the
    table and the fault injectors."""

    def __init__(self, protocol: Protocol, run: Callable[[Operation[Any]], Awaitable[Any]],
                 clock: Clock, live: Any = None) -> None:
        self.p: Any = protocol
        self._run = run
        self.clock = clock
        self.live = live
        self.outcomes: list[Any] = []

    async def op(self, name: str, operation: Operation[Any]) -> Any:
        try:
            result = await self._run(operation)
        except Exception as exc:
            self.outcomes.append((name, type(exc).__name__, str(exc)))
            return exc
        self.outcomes.append((name, jsonable(outcome(result))))
        return result

    def put_raw(self, session_id: str, **attributes: Any) -> None:
        if self.live is not None:
            self.live.setup.put_item(TableName=self.live.table, Item={
                "id": {"S": self.p.item_key(session_id)}, **attributes})

    def lose_answer(self, operation: str, contains: str = "") -> None:
        if self.live is not None:
            self.live.lost.add(operation, contains)

    def fault(self, kind: str, operation: str, count: int) -> None:
        if self.live is not None:
            self.live.faults.add(kind, operation, count)


# --- scenarios ---------------------------------------------------------------------------------

async def basic(ctx: Context) -> None:
    p = ctx.p
    session = await ctx.op("load new", p.load(A))
    await ctx.op("save write", p.save(session, {"n": 1}))
    session = await ctx.op("load existing", p.load(A))
    await ctx.op("save unchanged", p.save(session))
    ctx.clock.advance(p.config.session_lifetime_seconds * 0.6)
    session = await ctx.op("load", p.load(A, lifetime_seconds=100))
    await ctx.op("save refresh", p.save(session))
    session = await ctx.op("load", p.load(A))
    session.increment("n", 2)
    await ctx.op("save increment", p.save(session))
    session = await ctx.op("load", p.load(A))
    await ctx.op("release", p.release(session))
    await ctx.op("exists", p.exists(A))
    await ctx.op("delete", p.delete(A))
    await ctx.op("exists gone", p.exists(A))
    ctx.clock.advance(10)
    session = await ctx.op("load", p.load(B))
    await ctx.op("save", p.save(session, {"b": 1}))
    ctx.clock.advance(p.config.session_lifetime_seconds + 5)
    session = await ctx.op("load expired", p.load(B))
    await ctx.op("save empty", p.save(session, {}))


async def conflicts(ctx: Context) -> None:
    p = ctx.p
    session = await ctx.op("load", p.load(A))
    await ctx.op("save", p.save(session, {"a": 1, "l": [1]}))
    first = await ctx.op("load", p.load(A))
    if p.locking == "pessimistic":  # a second request would wait: its lease is taken over
        ctx.clock.advance(p.config.lock_lease_seconds + 5)
        second = await ctx.op("load taken over", p.load(A))
        await ctx.op("save second", p.save(second, {"a": 2}))
        await ctx.op("save first (lost lock)", p.save(first, {"a": 3}))
        session = await ctx.op("load", p.load(A))
        await ctx.op("delete under lock", p.delete(A))
        await ctx.op("save after delete", p.save(session, {"x": 1}))
        return
    second = await ctx.op("load", p.load(A))
    second.data["b"] = 2
    await ctx.op("save second", p.save(second))
    first.data["c"] = 3
    first.data["l"].append(2)
    await ctx.op("save first (condition failure, merge)", p.save(first))
    first = await ctx.op("load", p.load(A))
    second = await ctx.op("load", p.load(A))
    first.increment("n")
    second.increment("n", 2)
    await ctx.op("save second", p.save(second))
    await ctx.op("save first (counter merge)", p.save(first))
    session = await ctx.op("load", p.load(A))
    await ctx.op("delete", p.delete(A))
    session.data["x"] = 1
    await ctx.op("save after delete (gone)", p.save(session))


async def lost_answers(ctx: Context) -> None:
    p = ctx.p
    ctx.lose_answer("UpdateItem")
    session = await ctx.op("create, answer lost", p.create(A, {"a": 1}))
    ctx.lose_answer("UpdateItem")
    session = await ctx.op("load, answer lost", p.load(A))
    session.data["a"] = 2
    ctx.lose_answer("UpdateItem")
    await ctx.op("save, answer lost", p.save(session))
    session = await ctx.op("load", p.load(A))
    ctx.lose_answer("DeleteItem")
    await ctx.op("save empty, answer lost", p.save(session, {}))
    session = await ctx.op("load", p.load(A))
    await ctx.op("release", p.release(session))


async def faults(ctx: Context) -> None:
    p = ctx.p
    read = "UpdateItem" if p.locking == "pessimistic" else "GetItem"  # a lock take writes
    ctx.fault("throttle", read, 1)  # throttled past botocore's attempts
    await ctx.op("load throttled (unavailable)", p.load(A))
    session = await ctx.op("load", p.load(A))
    ctx.fault("throttle", "UpdateItem", 1)
    if p.locking == "pessimistic":  # the lock-only item's release is refused too: tried again
        ctx.fault("throttle", "DeleteItem", 1)
    await ctx.op("save throttled (unavailable, lock given back)", p.save(session, {"a": 1}))
    session = await ctx.op("load", p.load(A))
    await ctx.op("save", p.save(session, {"a": 1}))
    ctx.fault("5xx", "DeleteItem", 1)
    await ctx.op("delete 5xx (unavailable)", p.delete(A))


async def malformed(ctx: Context) -> None:
    p = ctx.p
    live = {"N": str(int(START) + 3600)}
    ctx.put_raw(A, data={"B": b"\x00\xffnot a payload"}, expires=live)
    await ctx.op("load garbage", p.load(A))
    ctx.put_raw(B, data={"B": b"x"}, expires={"S": "tomorrow"})
    await ctx.op("load bad expiry", p.load(B))
    ctx.put_raw(C, data={"S": "php"})
    await ctx.op("load string data", p.load(C))
    await ctx.op("load again", p.load(A))


async def moves(ctx: Context) -> None:
    p = ctx.p
    await ctx.op("create", p.create(A, {"u": 1}))
    await ctx.op("create exists", p.create(A, {"u": 2}))
    old = await ctx.op("load", p.load(A))
    successor = await ctx.op("create successor", p.create(B, old.data, lifetime_seconds=50))
    await ctx.op("retire", p.retire(old, successor))
    moved = await ctx.op("load moved", p.load(A))
    await ctx.op("save moved", p.save(moved, {"x": 1}))
    if p.locking == "pessimistic":
        return
    old = await ctx.op("load", p.load(B))
    other = await ctx.op("load", p.load(B))
    other.data["late"] = 1
    await ctx.op("save other", p.save(other))
    successor = await ctx.op("create successor", p.create(C, old.data))
    await ctx.op("retire raced (merged)", p.retire(old, successor))
    await ctx.op("load successor", p.load(C))


async def lock_busy(ctx: Context) -> None:
    p = ctx.p
    held = await ctx.op("load", p.load(A))
    if p.locking != "pessimistic":
        await ctx.op("save", p.save(held, {"k": 1}))
        return
    await ctx.op("load busy (sleeps, timeout)", p.load(A))
    await ctx.op("renew", p.renew_lock(held.key, held.lock_token or "", held))
    await ctx.op("renew lost", p.renew_lock(held.key, "not-the-token"))
    await ctx.op("save", p.save(held, {"k": 1}))


SCENARIOS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "basic": basic, "conflicts": conflicts, "lost_answers": lost_answers, "faults": faults,
    "malformed": malformed, "moves": moves, "lock_busy": lock_busy,
}
ERRORS: dict[str, list[str]] = {
    "basic": [], "lost_answers": [], "malformed": ["CorruptSession"] * 4,
    "faults": ["DynamoUnavailable"] * 3, "moves": ["SessionExists", "SessionMoved"],
    "conflicts": ["SessionGone"], "conflicts pessimistic": ["LockLost", "LockLost"],
    "lock_busy": [], "lock_busy pessimistic": ["LockTimeout"],
}
"""The errors each scenario's operations raise, in order (the rest succeed)."""
OPTIONS: dict[str, Any] = {"max_lock_wait_seconds": 0.05, "lock_lease_seconds": 30}


# --- the two runs ------------------------------------------------------------------------------

def _step(step: Step) -> Any:
    """What is compared of a step (a Hold's ``taken_at`` and owner are the renewer's)."""
    if isinstance(step, Call):
        return ("call", step.api, step.params)
    if isinstance(step, Sleep):
        return ("sleep", step.seconds)
    if isinstance(step, Hold):
        return ("hold", step.key, step.token, step.lease_seconds, step.max_hold_seconds)
    assert isinstance(step, Drop)
    return ("drop", step.token)


def _config(mode: str, table: str) -> SessionConfig:
    return SessionConfig(table_name=table, locking=mode, **OPTIONS)


@pytest.fixture
def no_botocore_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry pauses take no time (the attempts are what is tested)."""
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=lambda _: None))


RETRIES = {"mode": "standard", "total_max_attempts": 3}


@contextlib.contextmanager
def on_moto(table: str) -> Iterator[tuple[Any, Any]]:
    """(setup client, store client) on moto's in-process DynamoDB, the table made."""
    from moto import mock_aws

    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="local",
                                        aws_secret_access_key="local")
        setup = session.client("dynamodb")
        make_table(setup, table)
        yield setup, session.client("dynamodb", config=Config(retries=RETRIES))


def live_run(mode: str, name: str, backend: Any, table: str = TABLE
             ) -> tuple[Transcript, list[Any], dict[str, Any]]:
    with backend(table) as (setup, client), seeded_secrets():
        clock = Clock()
        clock.now = START
        store = create_store(_config(mode, table), client, session_name="S", clock=clock)
        FakeTimer().install(store)
        transcript = Transcript()
        store.driver.tap = transcript
        live = types.SimpleNamespace(setup=setup, table=table, lost=LostAnswers(client, setup),
                                     faults=Refusals(client))

        async def run(operation: Operation[Any]) -> Any:
            return store.driver.run(operation)

        ctx = Context(store.protocol, run, clock, live)
        asyncio.run(SCENARIOS[name](ctx))
        assert not live.lost.pending and all(rule["count"] == 0 for rule in live.faults.rules)
        items = setup.scan(TableName=table, ConsistentRead=True)["Items"]
        assert [item for item in items if "lock" in item] == []  # every lock given back
    return transcript, ctx.outcomes, store.metrics.snapshot()


def replay(mode: str, name: str, answers: list[Any], table: str = TABLE
           ) -> tuple[RecordingDriver, list[Any], dict[str, Any]]:
    driver = RecordingDriver(answers, start=FakeTimer().now)
    clock = Clock()
    clock.now = START
    protocol = STORES[mode].protocol_class(_config(mode, table), "S", clock, Metrics(),
                                           driver.monotonic)
    ctx = Context(protocol, driver.run, clock)
    with seeded_secrets():
        asyncio.run(SCENARIOS[name](ctx))
    return driver, ctx.outcomes, protocol.metrics.snapshot()


def check_both_runs(mode: str, name: str, backend: Any, table: str = TABLE) -> None:
    transcript, outcomes, figures = live_run(mode, name, backend, table)
    errors = [entry[1] for entry in outcomes if len(entry) == 3]
    assert errors == ERRORS.get(f"{name} {mode}", ERRORS[name])
    driver, replayed, replayed_figures = replay(mode, name, transcript.answers(), table)
    assert [_step(step) for step in driver.steps] == [_step(step) for step in transcript.steps]
    assert replayed == outcomes
    assert replayed_figures == figures
    assert not driver.answers  # every canned answer was asked for
    assert sum(isinstance(step, Call) for step in driver.steps) == len(transcript.answers())


@pytest.fixture(scope="module")
def _moto_loaded() -> Iterator[None]:
    import moto  # noqa: F401  (imported once, outside the timed runs)

    yield


@pytest.mark.usefixtures("no_botocore_sleep", "_moto_loaded")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("mode", MODES)
def test_protocol_matrix_on_botocore_and_replayed_on_asyncio(mode: str, name: str) -> None:
    check_both_runs(mode, name, on_moto)


@pytest.mark.dynamodb_local
@pytest.mark.usefixtures("no_botocore_sleep")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("mode", MODES)
def test_protocol_matrix_on_dynamodb_local_and_replayed_on_asyncio(
        mode: str, name: str, dynamodb_local: Any, ddb_local_client: Any,
        table_name: str) -> None:
    """The same matrix against DynamoDB Local (exact conditional writes and capacity)."""

    @contextlib.contextmanager
    def on_dynamodb_local(table: str) -> Iterator[tuple[Any, Any]]:
        make_table(ddb_local_client, table)
        try:
            yield ddb_local_client, local_client(dynamodb_local.endpoint_url, retries=RETRIES)
        finally:
            ddb_local_client.delete_table(TableName=table)

    check_both_runs(mode, name, on_dynamodb_local, table_name)
