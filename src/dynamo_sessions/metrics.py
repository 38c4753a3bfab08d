"""Counters of DynamoDB calls and consumed capacity, and the per-operation hook.

Every call the store makes asks for ``ReturnConsumedCapacity="TOTAL"``; the units DynamoDB
reports are added here, so ``read_units`` and ``write_units`` are DynamoDB's own, not estimates.
A conditional write whose condition fails is charged too (by the size of the item it found,
at least 1 WCU) but DynamoDB reports no ``ConsumedCapacity`` for it: those are counted apart,
in ``failed_writes`` and ``failed_write_units`` (our estimate from the item's size).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("dynamo_sessions")


@dataclasses.dataclass(frozen=True)
class OperationMetrics:
    """What one store operation cost; passed to ``SessionConfig.on_operation``."""

    operation: str
    """``read``, ``lock``, ``write``, ``refresh``, ``release``, ``delete``, ``gc_scan``, ..."""
    session: str
    """Hashed session id (never the raw id), empty for table-wide operations."""
    read_units: float
    write_units: float
    calls: int
    """DynamoDB calls this operation made (each as botocore sent it, however many attempts)."""
    lock_wait_seconds: float = 0.0
    retries: int = 0
    """Attempts after the first: lock takes refused while waiting, optimistic writes that lost
    a race and were merged and tried again."""
    outcome: str = "ok"
    """``ok``, ``timeout`` (lock wait), ``error`` (the operation raised), ..."""
    http_retries: int = 0
    """Attempts botocore retried (throttling, 5xx, network) within those calls."""
    failed_writes: int = 0
    """Conditional writes refused by their condition (charged, not reported by DynamoDB)."""
    failed_write_units: float = 0.0


@dataclasses.dataclass
class Tally:
    """What one store operation's own calls cost, from each call's own response.

    One per operation, made by the thread (or task) running it and never shared: figures from
    other threads cannot leak into it, as they did when an operation reported the difference
    of the store's shared counters.
    """

    calls: int = 0
    http_retries: int = 0
    retries: int = 0
    read_units: float = 0.0
    write_units: float = 0.0
    failed_writes: int = 0
    failed_write_units: float = 0.0


current_tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "dynamo_sessions_tally", default=None)
"""The operation running in this thread or task; the store's calls add to it."""


@dataclasses.dataclass
class Metrics:
    """Totals since the store was made (or since ``reset()``); safe to share across threads."""

    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    """DynamoDB calls by API name (``GetItem``, ``UpdateItem``, ...), failed ones included."""
    operations: dict[str, int] = dataclasses.field(default_factory=dict)
    """Store operations by outcome: ``read``, ``lock``, ``write``, ``refresh``, ``unchanged``
    (a save that wrote nothing), ``delete``, ``release``..."""
    read_units: float = 0.0
    write_units: float = 0.0
    failed_writes: int = 0
    """Conditional writes refused by their condition (lock taken, version moved on)."""
    failed_write_units: float = 0.0
    """Estimated WCU of ``failed_writes`` (not reported by DynamoDB, charged all the same)."""
    lock_waits: int = 0
    lock_wait_seconds: float = 0.0
    lock_timeouts: int = 0
    conflicts: int = 0
    """Optimistic writes that found a newer version (each one merged and retried)."""
    merges: int = 0
    write_retry_waits: int = 0
    """Optimistic retries that waited (backoff) before writing again."""
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def add_call(self, api: str, consumed: Any, http_retries: int = 0) -> tuple[float, float]:
        """Count one DynamoDB call and its ``ConsumedCapacity`` (in the totals and in the
        running operation's tally); return (RCU, WCU)."""
        rcu = wcu = 0.0
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            if not entry:
                continue
            rcu += float(entry.get("ReadCapacityUnits", 0.0) or 0.0)
            wcu += float(entry.get("WriteCapacityUnits", 0.0) or 0.0)
            if "ReadCapacityUnits" not in entry and "WriteCapacityUnits" not in entry:
                units = float(entry.get("CapacityUnits", 0.0) or 0.0)
                if api in ("GetItem", "Scan", "Query", "BatchGetItem"):
                    rcu += units
                else:
                    wcu += units
        with self._lock:
            self.calls[api] = self.calls.get(api, 0) + 1
            self.read_units += rcu
            self.write_units += wcu
        tally = current_tally.get()
        if tally is not None:
            tally.calls += 1
            tally.http_retries += http_retries
            tally.read_units += rcu
            tally.write_units += wcu
        return rcu, wcu

    def add_failed_write(self, units: float) -> None:
        """Count one conditional write refused by its condition, charged ``units`` WCU."""
        with self._lock:
            self.failed_writes += 1
            self.failed_write_units += units
        tally = current_tally.get()
        if tally is not None:
            tally.failed_writes += 1
            tally.failed_write_units += units

    def add_operation(self, operation: str) -> None:
        with self._lock:
            self.operations[operation] = self.operations.get(operation, 0) + 1

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "total_calls": sum(self.calls.values()),
                "operations": dict(self.operations),
                "read_units": self.read_units,
                "write_units": self.write_units,
                "failed_writes": self.failed_writes,
                "failed_write_units": self.failed_write_units,
                "lock_waits": self.lock_waits,
                "lock_wait_seconds": self.lock_wait_seconds,
                "lock_timeouts": self.lock_timeouts,
                "conflicts": self.conflicts,
                "merges": self.merges,
                "write_retry_waits": self.write_retry_waits,
            }

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.operations.clear()
            self.read_units = self.write_units = self.lock_wait_seconds = 0.0
            self.failed_write_units = 0.0
            self.lock_waits = self.lock_timeouts = self.conflicts = self.merges = 0
            self.failed_writes = self.write_retry_waits = 0


def emit(hook: Callable[..., Any] | None, metrics: OperationMetrics) -> None:
    """Give ``metrics`` to the user's hook; a failing hook is logged, never breaks a request."""
    if hook is None:
        return
    try:
        hook(metrics)
    except Exception:
        logger.exception("on_operation hook failed for %s", metrics.operation)
