"""Observability: logs carry hashed session ids only, and the hook gets per-operation metrics.

A run of operations under every locking mode, errors included (lock timeout, lost lease,
corrupt data, oversize session, failing hook, unreachable endpoint), is captured at DEBUG; no raw
session id may appear in any record, formatted message or traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from botocore.exceptions import ConnectionError as EndpointUnreachable

from dynamo_sessions import (
    CorruptSession,
    DynamoUnavailable,
    LockLost,
    LockTimeout,
    OperationMetrics,
    SessionConfig,
    SessionHandler,
    SessionTooLarge,
    create_store,
    new_session_id,
)
from dynamo_sessions.store import log_id
from dynamo_sessions.table import GarbageCollector, create_table
from dynamo_sessions.testing.servers import free_port, local_client

from .handler_support import Clock


def _run_operations(client: Any, table_name: str, hash_session_ids: bool,
                    operations: list[OperationMetrics]) -> tuple[list[str], list[str]]:
    """Exercise every kind of operation; returns the raw ids used and the error messages."""
    ids: list[str] = []
    errors: list[str] = []

    def sid() -> str:
        ids.append(new_session_id())
        return ids[-1]

    def config(**options: Any) -> SessionConfig:
        return SessionConfig(table_name=table_name, hash_session_ids=hash_session_ids,
                             on_operation=operations.append, **options)

    create_table(client, config())
    for mode in ("none", "optimistic", "pessimistic"):
        handler = SessionHandler(config(locking=mode), client)
        handler.open("", "PHPSESSID")
        session = sid()
        handler.write(session, {"user": "jeremy", "n": 1})
        assert handler.read(session) == {"user": "jeremy", "n": 1}
        handler.write(session, {"user": "jeremy", "n": 1})  # unchanged
        handler.read(session)
        handler.write(session, {"user": "jeremy", "n": 2})
        handler.destroy(session)
        handler.close()
    oversize = sid()
    handler.read(oversize)  # pessimistic: takes the lock, which the failed write releases
    with pytest.raises(SessionTooLarge) as too_large:
        handler.write(oversize, {"blob": os.urandom(450_000)})
    errors.append(str(too_large.value))
    handler.close()

    # optimistic conflict: two requests read, both write disjoint keys (merge)
    store = create_store(config(locking="optimistic"), client)
    shared = sid()
    first, second = store.load(shared), store.load(shared)
    store.save(first, {"a": 1})
    store.save(second, {"b": 2})

    # pessimistic: a waiter times out; a holder whose lease expired loses the session
    clock = Clock()
    holder_store = create_store(config(locking="pessimistic", lock_lease_seconds=1.0,
                                       max_lock_wait_seconds=0.05), client, clock=clock)
    locked = sid()
    held = holder_store.load(locked)
    with pytest.raises(LockTimeout) as timeout:
        holder_store.load(locked)
    errors.append(str(timeout.value))
    clock.advance(5)
    taker = holder_store.load(locked)  # takes the expired lease over
    with pytest.raises(LockLost) as lost:
        holder_store.save(held, {"x": 1})
    errors.append(str(lost.value))
    held.lock_token = "no-longer-ours"
    holder_store.release(held)  # the lease was lost before release: a warning
    holder_store.save(taker, {"y": 1})

    # corrupt stored bytes
    corrupt = sid()
    plain = create_store(config(), client)
    key = plain.item_key(corrupt)
    client.put_item(TableName=table_name, Item={"id": {"S": key}, "data": {"B": b"\xc1\x10junk"},
                                                "expires": {"N": str(int(clock()) + 600)}})
    with pytest.raises(CorruptSession) as corrupted:
        plain.load(corrupt)
    errors.append(str(corrupted.value))

    # a failing hook is logged, never breaks the request
    def broken(_: OperationMetrics) -> None:
        raise RuntimeError("metrics backend down")

    create_store(SessionConfig(table_name=table_name, hash_session_ids=hash_session_ids,
                               on_operation=broken), client).load(sid())

    # a read error is raised: a closed loopback port (mock_aws lets non-AWS URLs through)
    unreachable = local_client(f"http://127.0.0.1:{free_port()}", connect_timeout=1,
                               retries={"mode": "standard", "max_attempts": 1})
    with pytest.raises(DynamoUnavailable) as raised:  # refused, or a connect timeout (Windows)
        create_store(config(), unreachable).load(sid())
    assert isinstance(raised.value.__cause__, EndpointUnreachable)

    GarbageCollector(client, config()).run()
    return ids, errors


@pytest.mark.parametrize("hash_session_ids", [True, False])
def test_no_raw_session_id_in_logs_and_metrics_in_the_hook(
        caplog: pytest.LogCaptureFixture, moto_client: Any, table_name: str,
        hash_session_ids: bool) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, botocore's wire logs included
    operations: list[OperationMetrics] = []
    ids, errors = _run_operations(moto_client, table_name, hash_session_ids, operations)
    ours = [record for record in caplog.records if record.name.startswith("dynamo_sessions")]
    assert ours, "the run logs something (lost lease, failing hook)"
    assert any(log_id(session) in record.getMessage() for record in ours for session in ids)
    # With hashed ids at rest even botocore's request logs hold no raw id; a PHP-shared table
    # (raw ids in keys) puts them on the wire, so only our own records are checked there.
    records = caplog.records if hash_session_ids else ours
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    texts = [handler.format(record) for record in records]
    for session in ids:
        assert not any(session in text for text in texts), "raw session id in a log record"
        assert not any(session in message for message in errors), "raw session id in an error"
    _check_hook(operations, ids)


def _check_hook(operations: list[OperationMetrics], ids: list[str]) -> None:
    """The hook got one OperationMetrics per store operation, hashed id, units, waits."""
    kinds = {metrics.operation for metrics in operations}
    assert {"read", "write", "delete", "lock"} <= kinds
    hashed = {log_id(session) for session in ids}
    for metrics in operations:
        assert metrics.session in hashed
        assert metrics.session not in ids
        # moto's flat figures: 0.5 unit per GetItem or UpdateItem, 1 per DeleteItem, none for
        # a refused or failed call - half units, at most one per call that was charged (none
        # for an operation that made no call); a refused write of these small items is 1 WCU.
        charged = metrics.calls - metrics.failed_writes
        for units in (metrics.read_units, metrics.write_units):
            assert units >= 0 and float(units * 2).is_integer(), metrics
        assert metrics.read_units + metrics.write_units <= charged, metrics
        assert metrics.failed_write_units == metrics.failed_writes, metrics
    reads = [m for m in operations if m.operation == "read" and m.outcome == "ok"]
    assert all(m.read_units > 0 and m.calls == 1 for m in reads)
    writes = [m for m in operations if m.operation == "write" and m.outcome == "ok"]
    assert all(m.write_units > 0 for m in writes)
    timeouts = [m for m in operations if m.operation == "lock" and m.outcome == "timeout"]
    assert len(timeouts) == 1
    assert timeouts[0].retries >= 1 and timeouts[0].lock_wait_seconds > 0
