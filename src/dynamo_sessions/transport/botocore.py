"""The sync driver: runs a protocol operation on a boto3 (botocore) DynamoDB client.

:meth:`BotocoreDriver.run` is the loop around ``generator.send`` / ``generator.throw``: a
:class:`~..protocol.steps.Call` goes to the client's method for its ``api`` (looked up once),
stamped with the monotonic instants before sending and after the answer; whatever the client
raises is thrown back into the operation, which decides.  :class:`Sleep` sleeps with the
host's ``sleep`` (a store's, which tests replace); :class:`Hold` / :class:`Drop` go to the
process's lease renewer thread (``lease.RENEWER``), which renews through the host's
``renew_lock``.  An optional ``tap`` sees every step with its answer or exception (the
recording driver's transcripts, :mod:`.recording`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore import xform_name

from ..lease import RENEWER
from ..protocol.steps import Call, Drop, Hold, Operation, Sleep, Step, T

Tap = Callable[[Step, Any, BaseException | None], None]
"""``tap(step, answer, exception)``: called once per step, after it was carried out."""


class BotocoreDriver:
    """Carries protocol steps over ``client``; ``host`` (a store) gives ``sleep`` and
    ``renew_lock``.  Shared by every thread of the store: it keeps no per-operation state."""

    def __init__(self, client: Any, host: Any,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.monotonic = monotonic
        """Stamps ``Call.sent`` / ``received`` (the clock's own monotonic clock)."""
        self.tap: Tap | None = None
        self._methods: dict[str, Callable[..., Any]] = {}
        self.client = client

    @property
    def client(self) -> Any:
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        self._client = client
        self._methods = {}

    def _method(self, api: str) -> Callable[..., Any]:
        method = self._methods.get(api)
        if method is None:
            method = self._methods[api] = getattr(self._client, xform_name(api))
        return method

    def run(self, operation: Operation[T]) -> T:
        """Run ``operation`` to its end; its result (or the exception it raised)."""
        monotonic = self.monotonic
        tap = self.tap
        answer: Any = None
        try:
            step = operation.send(None)
            while True:
                try:
                    if type(step) is Call:
                        method = self._methods.get(step.api) or self._method(step.api)
                        step.sent = monotonic()
                        try:
                            answer = method(**step.params)
                        finally:
                            step.received = monotonic()
                    elif type(step) is Sleep:
                        answer = self.host.sleep(step.seconds)
                        answer = None
                    elif type(step) is Hold:
                        RENEWER.hold(self.host, step.owner, step.key, step.token,
                                     step.lease_seconds, step.taken_at, step.max_hold_seconds,
                                     step.label)
                        answer = None
                    elif type(step) is Drop:
                        RENEWER.drop(step.token)
                        answer = None
                    else:
                        raise TypeError(f"not a protocol step: {step!r}")
                except BaseException as exc:
                    if tap is not None:
                        tap(step, None, exc)
                    step = operation.throw(exc)
                    continue
                if tap is not None:
                    tap(step, answer, None)
                step = operation.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result
