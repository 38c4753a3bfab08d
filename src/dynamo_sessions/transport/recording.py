"""A second driver, on asyncio, fed canned answers: the protocol runs on it unchanged.

:class:`RecordingDriver` runs an operation as a coroutine: it awaits ``asyncio.sleep(0)``
before every step (so the event loop runs between them, as a real async client's would),
answers each :class:`~..protocol.steps.Call` with the next canned answer (a response dict,
or an exception it throws into the operation), never sleeps for real (a :class:`Sleep` moves
its own monotonic clock, :meth:`RecordingDriver.monotonic`), takes :class:`Hold` /
:class:`Drop` as said, and records every step.  :class:`Transcript` is a tap on the botocore
driver (``driver.tap = transcript``) that records each step with its answer or exception -
the canned answers of a replay.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from ..protocol.steps import Call, Operation, Sleep, Step, T


@dataclasses.dataclass
class Exchange:
    """One step and what came back: ``answer`` (a Call's response) or ``error``."""

    step: Step
    answer: Any = None
    error: BaseException | None = None


class Transcript:
    """A tap on :class:`~.botocore.BotocoreDriver`: every step with its answer or error."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def __call__(self, step: Step, answer: Any, error: BaseException | None) -> None:
        self.exchanges.append(Exchange(step, copy.deepcopy(answer), error))

    def answers(self) -> list[Any]:
        """The answers to the Call steps, in order: responses, or the exceptions raised."""
        return [exchange.error if exchange.error is not None else exchange.answer
                for exchange in self.exchanges if type(exchange.step) is Call]

    @property
    def steps(self) -> list[Step]:
        return [exchange.step for exchange in self.exchanges]


def fresh(error: BaseException) -> BaseException:
    """A new exception like ``error`` (a replay throws its own, not the recorded one)."""
    twin: BaseException
    if isinstance(error, ClientError):
        response: Any = copy.deepcopy(error.response)
        twin = ClientError(response, error.operation_name)
    else:
        twin = copy.copy(error)
    return twin


class RecordingDriver:
    """Runs protocol operations on asyncio with canned answers; records every step."""

    def __init__(self, answers: Iterable[Any] = (), start: float = 1000.0) -> None:
        self.answers: deque[Any] = deque(answers)
        self.steps: list[Step] = []
        self.now = start

    def monotonic(self) -> float:
        """The driver's clock: moved only by the Sleep steps it was given."""
        return self.now

    async def run(self, operation: Operation[T]) -> T:
        """Run ``operation`` to its end, one event-loop turn per step."""
        answer: Any = None
        try:
            step = operation.send(None)
            while True:
                await asyncio.sleep(0)
                self.steps.append(step)
                answer = None
                if type(step) is Call:
                    step.sent = step.received = self.now
                    if not self.answers:
                        raise LookupError(f"no canned answer left for {step.api}")
                    answer = self.answers.popleft()
                    if isinstance(answer, BaseException):
                        step = operation.throw(fresh(answer))
                        continue
                    answer = copy.deepcopy(answer)
                elif type(step) is Sleep:
                    self.now += step.seconds
                step = operation.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result
