"""The asyncio recording driver runs two requests' operations interleaved on one event loop,
step by step, with one protocol object shared by both (no per-request state in it)."""

from __future__ import annotations

import asyncio
from typing import Any

from dynamo_sessions.metrics import Metrics
from dynamo_sessions.protocol.steps import Call, Operation
from dynamo_sessions.store import STORES, LoadedSession
from dynamo_sessions.transport.recording import RecordingDriver

from .handler_support import Clock
from .test_protocol_matrix import A, B, _config


def test_operations_of_two_requests_interleave_on_one_event_loop() -> None:
    """Two requests' operations share one event loop, step by step (one protocol object)."""
    clock = Clock()
    protocol = STORES["optimistic"].protocol_class(_config("optimistic", "matrix"), "S", clock,
                                                   Metrics())
    order: list[str] = []

    class Logged(RecordingDriver):
        def __init__(self, name: str, answers: list[Any]) -> None:
            super().__init__(answers)
            self.name = name

        async def run(self, operation: Operation[Any]) -> Any:
            def logged() -> Operation[Any]:
                step = operation.send(None)
                while True:
                    order.append(f"{self.name}:{type(step).__name__}")
                    try:
                        answer = yield step
                    except BaseException as exc:
                        step = operation.throw(exc)
                    else:
                        try:
                            step = operation.send(answer)
                        except StopIteration as stop:
                            return stop.value
            return await super().run(logged())

    stored = {"Item": {"id": {"S": protocol.item_key(B)}, "version": {"N": "1"},
                       "writes": {"B": b"\x01\x02\x03\x04" + bytes(12)},
                       "expires": {"N": str(int(clock.now) + 600)}}}
    first = Logged("a", [{}, {"Attributes": {}}])
    second = Logged("b", [stored, {"Attributes": {}}])

    async def request(driver: Logged, session_id: str) -> LoadedSession:
        session: LoadedSession = await driver.run(protocol.load(session_id))
        session.data["n"] = 1
        await driver.run(protocol.save(session))
        return session

    async def both() -> list[LoadedSession]:
        return list(await asyncio.gather(request(first, A), request(second, B)))

    a, b = asyncio.run(both())
    assert (a.version, b.version) == (1, 2)
    assert order == ["a:Call", "b:Call", "a:Call", "b:Call"]
    assert [step.params["Key"] for step in first.steps if isinstance(step, Call)] == [
        {"id": {"S": protocol.item_key(A)}}] * 2
