"""The asyncio transport (``transport/aio.py``) on DynamoDB Local: protocol-shaped operations of
real calls, the errors aiobotocore raises and how they are judged, botocore's retries on it,
cancellation at a call, shielded work (lease renewal: ``test_transport_aio_leases.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from dynamo_sessions.config import SessionConfig
from dynamo_sessions.protocol.steps import Call, Hold, Operation, Sleep
from dynamo_sessions.transport import aio
from dynamo_sessions.transport.translate import is_condition_failure, is_transient

from .aio_support import CREDENTIALS
from .faultproxy import FaultProxy

pytestmark = pytest.mark.dynamodb_local
SETTLE_ROUNDS = 3000  # 30 s at most: a condition on a loaded machine, never a timing claim
"""Bound on the loop turns (of 10 ms) a test waits for the renewer's task to act."""


def client_for(endpoint_url: str, **options: Any) -> Any:
    """An aiobotocore client context for ``endpoint_url`` from the one builder."""
    return aio.build_async_client(SessionConfig(endpoint_url=endpoint_url, **options),
                                  **CREDENTIALS)


def key(name: str) -> dict[str, Any]:
    return {"id": {"S": name}}


def stored(sync_client: Any, table: str, name: str) -> dict[str, Any]:
    return dict(sync_client.get_item(TableName=table, Key=key(name),
                                     ConsistentRead=True).get("Item", {}))


def take_and_bump(table: str, name: str, log: list[Any]) -> Operation[dict[str, Any]]:
    """A protocol-shaped operation: a PutItem, a conditional UpdateItem that is refused (its
    ClientError comes back into the generator), a pause, a read."""
    put = Call("PutItem", {"TableName": table, "Item": {**key(name), "n": {"N": "1"}}})
    log.append(put)
    yield put
    refused = Call("UpdateItem", {
        "TableName": table, "Key": key(name), "UpdateExpression": "SET n = :two",
        "ConditionExpression": "n = :zero",
        "ExpressionAttributeValues": {":two": {"N": "2"}, ":zero": {"N": "0"}}})
    log.append(refused)
    try:
        yield refused
    except ClientError as exc:
        log.append(("refused", is_condition_failure(exc)))
    log.append((yield Sleep(0.25)))
    got = yield Call("GetItem", {"TableName": table, "Key": key(name), "ConsistentRead": True})
    return dict(got["Item"])


def test_an_operation_of_real_calls(dynamodb_local: Any, ddb_local_client: Any,
                                    local_table: str) -> None:
    log: list[Any] = []
    slept: list[float] = []
    ticks = itertools.count(1)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> dict[str, Any]:
        async with client_for(dynamodb_local.endpoint_url) as client:
            return await aio.run(client, take_and_bump(local_table, "a", log),
                                 monotonic=lambda: float(next(ticks)), sleep=sleep)

    item = asyncio.run(main())
    assert item == {**key("a"), "n": {"N": "1"}}  # the refused update changed nothing
    assert stored(ddb_local_client, local_table, "a") == item
    put, refused = log[0], log[1]
    assert (put.sent, put.received, refused.sent, refused.received) == (1.0, 2.0, 3.0, 4.0)
    assert log[2:] == [("refused", True), None]  # the ClientError, then Sleep's None
    assert slept == [0.25]


def test_real_sleep_and_an_error_the_operation_does_not_catch(
        dynamodb_local: Any, local_table: str) -> None:
    cleaned: list[str] = []

    def failing() -> Operation[None]:
        try:
            yield Sleep(0.001)  # asyncio.sleep, the default
            yield Call("GetItem", {"TableName": local_table + "-missing", "Key": key("a")})
        finally:
            cleaned.append("finally")

    async def main() -> None:
        async with client_for(dynamodb_local.endpoint_url) as client:
            await aio.run(client, failing())

    with pytest.raises(ClientError) as raised:
        asyncio.run(main())
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert cleaned == ["finally"]


def test_the_client_carries_the_configured_options(dynamodb_local: Any) -> None:
    config = SessionConfig(endpoint_url=dynamodb_local.endpoint_url, boto_retry_mode="legacy",
                           boto_max_attempts=2, connect_timeout_seconds=1.5,
                           read_timeout_seconds=2.5)

    async def main() -> tuple[Any, str, str]:
        async with aio.build_async_client(config, max_pool_connections=64,
                                          **CREDENTIALS) as client:
            await client.list_tables(Limit=1)  # it talks to the configured endpoint
            return client.meta.config, client.meta.region_name, client.meta.endpoint_url

    options, region, endpoint = asyncio.run(main())
    assert (options.connect_timeout, options.read_timeout) == (1.5, 2.5)
    assert options.retries == {"mode": "legacy", "total_max_attempts": 2}
    assert (options.tcp_keepalive, options.max_pool_connections) == (True, 64)
    assert (region, endpoint) == (aio.LOOPBACK_REGION, dynamodb_local.endpoint_url)


def test_a_session_per_event_loop() -> None:
    """Clients of one loop share an aiobotocore session (its loaders); another loop gets its own
    (a session's credentials and their refresh lock belong to one loop)."""
    async def two() -> tuple[Any, Any]:
        return aio._session(None), aio._session(None)

    first, again = asyncio.run(two())
    other, _ = asyncio.run(two())
    assert first is again
    assert other is not first


def test_a_hold_without_a_renew_operation_is_thrown_into_the_operation(
        dynamodb_local: Any) -> None:
    seen: list[str] = []

    def take() -> Operation[None]:
        try:
            yield Hold("k", "t", 10.0, 0.0, 60.0, "k", seen)
        except RuntimeError as exc:
            seen.append(str(exc))
            raise

    async def main() -> None:
        async with client_for(dynamodb_local.endpoint_url) as client:
            await aio.run(client, take())

    with pytest.raises(RuntimeError, match="no renew operation"):
        asyncio.run(main())
    assert len(seen) == 1


def test_a_timeout_at_a_sleep_is_a_cancellation_the_operation_sees(
        dynamodb_local: Any) -> None:
    seen: list[str] = []

    def waiting() -> Operation[None]:
        try:
            yield Sleep(30.0)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    async def main() -> None:
        async with client_for(dynamodb_local.endpoint_url) as client:
            await asyncio.wait_for(aio.run(client, waiting()), timeout=0.05)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main())
    assert seen == ["CancelledError"]


# --- what aiobotocore raises for each fault, and how translate.py judges it ---------------------


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A loopback listener that never accepts, its backlog filled: a connect there times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
            fillers.append(filler)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for sock in [*fillers, listener]:
            sock.close()


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def not_http() -> Iterator[str]:
    """A server answering every request with a line that is not HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"NOT HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=10)


PROXY_FAULTS = {
    "drop_before": (ConnectionClosedError, ""),
    "drop_after": (ConnectionClosedError, ""),
    "delay": (ReadTimeoutError, ""),
    "delay_after": (ReadTimeoutError, ""),
    "http500": (ClientError, "InternalServerError"),
    "throttle": (ClientError, "ProvisionedThroughputExceededException"),
}
ENDPOINT_FAULTS: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[str]],
                                 type[Exception]]] = {
    "connection refused": (closed_port, EndpointConnectionError),
    "connect timeout": (full_backlog, ConnectTimeoutError),
    "not HTTP": (not_http, HTTPClientError),
}


async def get_once(endpoint_url: str) -> BaseException:
    """One GetItem, one attempt (no retries), short timeouts; the exception it raised."""
    def get() -> Operation[Any]:
        return (yield Call("GetItem", {"TableName": "sessions", "Key": key("a")}))

    async with client_for(endpoint_url, boto_max_attempts=1, connect_timeout_seconds=0.5,
                          read_timeout_seconds=0.5) as client:
        try:
            await aio.run(client, get())
        except Exception as exc:
            return exc
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("kind", PROXY_FAULTS)
def test_network_and_service_faults_are_botocore_errors_judged_transient(
        dynamodb_local: Any, kind: str) -> None:
    expected, code = PROXY_FAULTS[kind]
    with FaultProxy(dynamodb_local.endpoint_url, delay_seconds=1.0) as proxy:
        proxy.script(kind, "GetItem")
        exc = asyncio.run(get_once(proxy.endpoint_url))
        assert proxy.injected[kind] == 1
    assert type(exc) is expected or (code and isinstance(exc, expected)), repr(exc)
    if code:
        assert exc.response["Error"]["Code"] == code  # type: ignore[attr-defined]
    assert is_transient(exc)


@pytest.mark.parametrize("fault", ENDPOINT_FAULTS)
def test_connection_faults_are_botocore_errors_judged_transient(fault: str) -> None:
    endpoint, expected = ENDPOINT_FAULTS[fault]
    with endpoint() as url:
        exc = asyncio.run(get_once(url))
    assert isinstance(exc, expected), repr(exc)
    assert is_transient(exc)


@pytest.mark.parametrize("kind", ["drop_before", "drop_after", "delay", "http500", "throttle"])
def test_botocore_retries_each_fault_on_the_async_client(dynamodb_local: Any, ddb_local_client: Any,
                                                         local_table: str, kind: str) -> None:
    """The configured retries (standard mode, 3 attempts) are botocore's, on aiobotocore too: a
    fault on the first attempt is retried and the call succeeds (a retried write that had been
    applied - drop_after - is applied once more, unchanged)."""
    def put() -> Operation[Any]:
        return (yield Call("PutItem", {"TableName": local_table,
                                       "Item": {**key("r"), "v": {"S": kind}}}))

    async def main(endpoint_url: str) -> Any:
        async with client_for(endpoint_url, boto_max_attempts=3,
                              read_timeout_seconds=0.5) as client:
            return await aio.run(client, put())

    with FaultProxy(dynamodb_local.endpoint_url, delay_seconds=1.0) as proxy:
        proxy.script(kind, "PutItem")
        answer = asyncio.run(main(proxy.endpoint_url))
        assert (proxy.injected[kind], proxy.seen["PutItem"]) == (1, 2)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert stored(ddb_local_client, local_table, "r")["v"] == {"S": kind}


# --- cancellation -----------------------------------------------------------------------------


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run (bounded) until ``condition`` holds."""
    for _ in range(SETTLE_ROUNDS):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def locked(table: str, name: str, token: str) -> Call:
    return Call("PutItem", {"TableName": table,
                            "Item": {**key(name), "lock": {"S": token}}})


def unlock(table: str, name: str, token: str) -> Call:
    return Call("UpdateItem", {
        "TableName": table, "Key": key(name), "UpdateExpression": "REMOVE #l",
        "ConditionExpression": "#l = :t", "ExpressionAttributeNames": {"#l": "lock"},
        "ExpressionAttributeValues": {":t": {"S": token}}})


@pytest.mark.parametrize("ending", ["reraised", "swallowed", "replaced"])
def test_cancelled_at_a_call_the_operation_sees_it_cleans_up_and_it_is_reraised(
        dynamodb_local: Any, ddb_local_client: Any, local_table: str, ending: str) -> None:
    ddb_local_client.put_item(TableName=local_table, Item={**key("c"), "lock": {"S": "t1"}})
    seen: list[str] = []

    def save() -> Operation[str]:
        try:
            yield Call("UpdateItem", {  # held back by the proxy: cancelled while awaited
                "TableName": local_table, "Key": key("c"), "UpdateExpression": "SET d = :d",
                "ExpressionAttributeValues": {":d": {"S": "half"}}})
        except BaseException as exc:
            seen.append(type(exc).__name__)
            yield unlock(local_table, "c", "t1")  # the protocol's cleanup still makes calls
            seen.append("released")
            if ending == "reraised":
                raise
            if ending == "replaced":
                raise ValueError("cleanup failed") from exc
        return "done"

    async def main(endpoint_url: str, proxy: FaultProxy) -> None:
        async with client_for(endpoint_url) as client:
            task = asyncio.create_task(aio.run(client, save()))
            await settle(lambda: proxy.seen["UpdateItem"] == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as raised:
                await task
            if ending == "replaced":
                assert isinstance(raised.value.__cause__, ValueError)

    with FaultProxy(dynamodb_local.endpoint_url, delay_seconds=5.0) as proxy:
        proxy.script("delay", "UpdateItem")
        asyncio.run(main(proxy.endpoint_url, proxy))
        assert proxy.seen["UpdateItem"] == 2  # the held-back save (never forwarded), the release
    assert seen == ["CancelledError", "released"]
    assert stored(ddb_local_client, local_table, "c") == key("c")  # no lock, no half save


def test_shielded_work_completes_when_its_caller_is_cancelled(
        dynamodb_local: Any, ddb_local_client: Any, local_table: str) -> None:
    ddb_local_client.put_item(TableName=local_table, Item={**key("s"), "lock": {"S": "t2"}})
    finished: list[bool] = []

    def release() -> Operation[None]:
        yield unlock(local_table, "s", "t2")
        finished.append(True)

    async def main(endpoint_url: str, proxy: FaultProxy) -> dict[str, Any]:
        async with client_for(endpoint_url) as client:
            task = asyncio.create_task(aio.shielded(aio.run(client, release())))
            await settle(lambda: proxy.seen["UpdateItem"] == 1)
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()  # cancelled again while it waits: the work still goes on
            with pytest.raises(asyncio.CancelledError):
                await task
            return stored(ddb_local_client, local_table, "s")  # as the caller sees it return

    # every request waits 0.3 s in the proxy: the release is in flight when the caller goes
    with FaultProxy(dynamodb_local.endpoint_url, latency_seconds=0.3) as proxy:
        after = asyncio.run(main(proxy.endpoint_url, proxy))
    assert finished == [True]
    assert after == key("s")  # released before the caller's CancelledError came


def test_shielded_returns_the_result_and_raises_the_error_when_not_cancelled() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def failure() -> int:
        await asyncio.sleep(0)
        raise ValueError("bad")

    assert asyncio.run(aio.shielded(value())) == 7
    with pytest.raises(ValueError, match="bad"):
        asyncio.run(aio.shielded(failure()))


def test_shielded_logs_a_failure_its_cancelled_caller_cannot_see(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def work() -> None:
            await gate.wait()
            raise ValueError("release failed")

        task = asyncio.create_task(aio.shielded(work()))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="dynamo_sessions"):
        asyncio.run(main())
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("release failed",)]
