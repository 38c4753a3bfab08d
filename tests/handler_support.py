"""Helpers shared by the handler tests: a settable clock and fault injection on the transport."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from dynamo_sessions import new_session_id


class Clock:
    """A wall clock the test moves forward by hand (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


class Faults:
    """Makes chosen DynamoDB requests fail before they leave the client.

    Registered on botocore's ``before-send`` event, it answers the first ``count`` requests
    matching ``operation`` (and ``contains``, a substring of the JSON body) with a throttling
    error, an HTTP 500, or a read timeout; every other request goes to the real server.
    botocore's own retry mode then decides what happens - as it would against AWS.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.rules: list[dict[str, Any]] = []
        self.injected = 0
        self.lock = threading.Lock()
        client.meta.events.register("before-send.dynamodb", self._before_send)

    def add(self, kind: str, operation: str, count: int, contains: str = "") -> None:
        self.rules.append({"kind": kind, "operation": operation, "count": count,
                           "contains": contains})

    def _before_send(self, request: Any, **_: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        with self.lock:
            for rule in self.rules:
                if rule["count"] > 0 and target.endswith("." + rule["operation"]) and (
                    rule["contains"] in body
                ):
                    rule["count"] -= 1
                    self.injected += 1
                    return self._fault(rule["kind"], request)
        return None

    def _fault(self, kind: str, request: Any) -> Any:
        if kind == "timeout":
            raise ReadTimeoutError(endpoint_url=request.url)
        if kind == "throttle":
            status, code = 400, "ProvisionedThroughputExceededException"
        else:
            status, code = 500, "InternalServerError"
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                           "message": "injected fault"}).encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.0",
                                                 "x-amzn-RequestId": "fault"}, _Raw(body))


def run_threads(count: int, target: Callable[[int], Any]) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads; return the exceptions they raised."""
    errors: list[BaseException] = []

    def wrapped(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


class FakeTimer:
    """A monotonic clock and a sleep that only moves it: lock waits take no real time.

    Set as ``store.monotonic`` / ``store.sleep``; ``sleeps`` records every delay asked for.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def install(self, store: Any) -> FakeTimer:
        store.monotonic = self.monotonic
        store.sleep = self.sleep
        return self


class Requests:
    """Records the parameters of every call of the given operations a client makes."""

    def __init__(self, client: Any, *operations: str) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        for operation in operations:
            client.meta.events.register(f"provide-client-params.dynamodb.{operation}",
                                        self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.sent if name == operation]


def raw_item(client: Any, table: str, key: str, hash_key: str = "id") -> dict[str, Any] | None:
    """The stored item under ``key`` as DynamoDB has it (strongly consistent), or None."""
    item: dict[str, Any] | None = client.get_item(
        TableName=table, Key={hash_key: {"S": key}}, ConsistentRead=True
    ).get("Item")
    return item


def stored_session(handler: Any, data: dict[str, Any]) -> str:
    """A new session id whose session ``handler`` has stored as ``data`` (read, then written,
    as one request does)."""
    sid = new_session_id()
    handler.read(sid)
    handler.write(sid, data)
    return sid
