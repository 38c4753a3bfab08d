"""The fault proxy itself, on DynamoDB Local: it forwards over kept-alive connections, injects
exactly what it was told, and what botocore sees of each fault is what the network would give."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from dynamo_sessions.testing.servers import local_client

from .conftest import make_table
from .faultproxy import FaultProxy

pytestmark = pytest.mark.dynamodb_local


def client_through(proxy: FaultProxy, attempts: int = 1, read_timeout: float = 5.0) -> Any:
    return local_client(proxy.endpoint_url, retries={"mode": "standard",
                                                      "total_max_attempts": attempts},
                        read_timeout=read_timeout, connect_timeout=2)


def put(client: Any, table: str, value: str) -> None:
    client.put_item(TableName=table, Item={"id": {"S": "k"}, "v": {"S": value}})


def stored(client: Any, table: str) -> str | None:
    item = client.get_item(TableName=table, Key={"id": {"S": "k"}},
                           ConsistentRead=True).get("Item")
    return None if item is None else str(item["v"]["S"])


def test_forwards_on_kept_alive_connections(fault_proxy: FaultProxy, ddb_local_client: Any,
                                            table_name: str) -> None:
    make_table(ddb_local_client, table_name)
    client = client_through(fault_proxy)
    for n in range(20):
        put(client, table_name, str(n))
    assert stored(client, table_name) == "19"
    assert fault_proxy.seen["PutItem"] == 20 and fault_proxy.counts() == {}


@pytest.mark.parametrize("kind, applied, error", [
    ("drop_before", False, ConnectionClosedError),
    ("drop_after", True, ConnectionClosedError),
    ("delay", False, ReadTimeoutError),
    ("delay_after", True, ReadTimeoutError),
    ("http500", False, ClientError),
    ("throttle", False, ClientError),
])
def test_each_fault_kind(fault_proxy: FaultProxy, ddb_local_client: Any, table_name: str,
                         kind: str, applied: bool, error: type[Exception]) -> None:
    make_table(ddb_local_client, table_name)
    put(ddb_local_client, table_name, "before")
    fault_proxy.delay_seconds = 0.6
    client = client_through(fault_proxy, read_timeout=0.3)
    fault_proxy.script(kind, "PutItem", 1, contains='"after"')
    with pytest.raises(error) as raised:
        put(client, table_name, "after")
    if isinstance(raised.value, ClientError):
        code = raised.value.response["Error"]["Code"]
        assert code == ("InternalServerError" if kind == "http500"
                        else "ProvisionedThroughputExceededException")
    assert stored(ddb_local_client, table_name) == ("after" if applied else "before")
    assert fault_proxy.counts() == {kind: 1} and fault_proxy.pending() == 0
    put(client, table_name, "again")  # the client recovers on a new connection
    assert stored(ddb_local_client, table_name) == "again"


def test_delay_late_forwards_after_the_client_gave_up(fault_proxy: FaultProxy,
                                                      ddb_local_client: Any,
                                                      table_name: str) -> None:
    make_table(ddb_local_client, table_name)
    fault_proxy.delay_seconds = 0.5
    client = client_through(fault_proxy, read_timeout=0.2)
    fault_proxy.script("delay_late", "PutItem", 1)
    with pytest.raises(ReadTimeoutError):
        put(client, table_name, "late")
    fault_proxy.stop()  # waits for the connection threads: the late request has landed
    assert stored(ddb_local_client, table_name) == "late"


def test_random_mode_is_seeded_and_counted(fault_proxy: FaultProxy, ddb_local_client: Any,
                                           table_name: str) -> None:
    make_table(ddb_local_client, table_name)
    client = client_through(fault_proxy, attempts=10)
    fault_proxy.randomly({"http500": 0.3, "throttle": 0.2}, seed=7, operations={"PutItem"})
    for n in range(30):
        put(client, table_name, str(n))  # botocore retries every injected fault
    counts = fault_proxy.counts()
    assert set(counts) == {"http500", "throttle"}
    assert fault_proxy.seen["PutItem"] == 30 + sum(counts.values())
    assert stored(client, table_name) == "29"


def test_runs_as_a_process_for_other_processes(dynamodb_local: Any, ddb_local_client: Any,
                                               table_name: str) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    make_table(ddb_local_client, table_name)
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.faultproxy", dynamodb_local.endpoint_url, "--seed", "3",
         "http500=0.5"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    endpoint = process.stdout.readline().strip()
    assert endpoint, process.stderr.read() if process.stderr else ""
    client = local_client(endpoint, retries={"mode": "standard", "total_max_attempts": 20})
    for n in range(10):
        put(client, table_name, str(n))
    process.stdin.close()
    report = json.loads(process.stdout.readline())
    assert process.wait(timeout=30) == 0
    assert report["injected"]["http500"] == report["seen"]["PutItem"] - 10 > 0
    assert stored(ddb_local_client, table_name) == "9"
