"""Per-operation figures (``on_operation``) on DynamoDB Local: each operation reports what its
own calls cost, from each call's own response - under 8 threads the figures add up to the
store's totals, a read reports no write units, and a write that lost races reports every
attempt."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynamo_sessions import OperationMetrics, SessionConfig, SessionHandler, new_session_id
from dynamo_sessions.store import create_store
from dynamo_sessions.testing.servers import local_client

from .handler_support import run_threads
from .test_handler_dynamodb_local import table as table  # the fixture

pytestmark = pytest.mark.dynamodb_local

THREADS = 8
ROUNDS = 12


@pytest.mark.parametrize("mode", ["none", "pessimistic", "optimistic"])
def test_figures_add_up_under_threads(ddb_local_client: Any, table: str, mode: str) -> None:
    seen: list[OperationMetrics] = []
    lock = threading.Lock()

    def hook(metrics: OperationMetrics) -> None:
        with lock:
            seen.append(metrics)

    client = local_client(ddb_local_client.meta.endpoint_url, max_pool_connections=THREADS)
    handler = SessionHandler(SessionConfig(table_name=table, locking=mode, on_operation=hook),
                             client)
    handler.open("", "PHPSESSID")
    shared = new_session_id()

    def run(index: int) -> None:
        own = new_session_id()
        for n in range(ROUNDS):
            for sid in (own, shared):
                data = handler.read(sid)
                data[f"t{index}"] = n + 1
                handler.write(sid, data)
            handler.write(own, handler.read(own))  # a read-only request

    assert run_threads(THREADS, run) == []
    handler.close()
    totals = handler.metrics.snapshot()
    assert sum(m.calls for m in seen) == totals["total_calls"]
    assert sum(m.read_units for m in seen) == pytest.approx(totals["read_units"])
    assert sum(m.write_units for m in seen) == pytest.approx(totals["write_units"])
    assert sum(m.failed_writes for m in seen) == totals["failed_writes"]
    assert sum(m.failed_write_units for m in seen) == pytest.approx(
        totals["failed_write_units"])
    reads = [m for m in seen if m.operation == "read"]
    if mode != "pessimistic":
        assert len(reads) == THREADS * ROUNDS * 3
    assert all(m.write_units == 0 and m.calls == 1 and m.read_units > 0 for m in reads)
    if mode == "optimistic":
        contended = [m for m in seen if m.operation == "write" and m.retries]
        assert contended, "the shared session was contended"
        assert all(m.calls >= m.retries + 1 and m.failed_writes >= 1 for m in contended)


def test_a_write_that_lost_a_race_reports_each_attempt(ddb_local_client: Any,
                                                       table: str) -> None:
    seen: list[OperationMetrics] = []
    store = create_store(SessionConfig(table_name=table, locking="optimistic",
                                       on_operation=seen.append), ddb_local_client)
    sid = new_session_id()
    first, second = store.load(sid), store.load(sid)
    store.save(first, {"a": 1})
    store.save(second, {"b": 2})  # refused once (version moved), merged, written
    write = seen[-1]
    assert (write.operation, write.calls, write.retries, write.failed_writes) == (
        "write", 2, 1, 1)
    assert write.read_units == 0 and write.write_units == 1
