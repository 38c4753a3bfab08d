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
class Charges:
    """What DynamoDB charged: the units it reported, and the conditional writes it refused
    (charged all the same, reported not at all)."""

    read_units: float = 0.0
    write_units: float = 0.0
    failed_writes: int = 0
    """Conditional writes refused by their condition (lock taken, version moved on)."""
    failed_write_units: float = 0.0
    """Estimated WCU of ``failed_writes`` (not reported by DynamoDB, charged all the same)."""


@dataclasses.dataclass
class Tally(Charges):
    """What one store operation's own calls cost, from each call's own response.

    One per operation, made by the thread (or task) running it and never shared: figures from
    other threads cannot leak into it, as they did when an operation reported the difference
    of the store's shared counters.
    """

    calls: int = 0
    http_retries: int = 0
    retries: int = 0


current_tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "dynamo_sessions_tally", default=None)
"""The operation running in this thread or task; the store's calls add to it."""


@dataclasses.dataclass
class Metrics(Charges):
    """Totals since the store was made (or since ``reset()``); safe to share across threads."""

    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    """DynamoDB calls by API name (``GetItem``, ``UpdateItem``, ...), failed ones included."""
    operations: dict[str, int] = dataclasses.field(default_factory=dict)
    """Store operations by outcome: ``read``, ``lock``, ``write``, ``refresh``, ``unchanged``
    (a save that wrote nothing), ``delete``, ``release``..."""
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
        charged = {"read_units": rcu, "write_units": wcu}
        with self._lock:
            self.calls[api] = self.calls.get(api, 0) + 1
            _add(self, charged)
        tally = current_tally.get()
        if tally is not None:
            _add(tally, {"calls": 1, "http_retries": http_retries, **charged})
        return rcu, wcu

    def add_failed_write(self, units: float) -> None:
        """Count one conditional write refused by its condition, charged ``units`` WCU."""
        counts = {"failed_writes": 1, "failed_write_units": units}
        self.add(**counts)
        tally = current_tally.get()
        if tally is not None:
            _add(tally, counts)

    def add_operation(self, operation: str) -> None:
        with self._lock:
            self.operations[operation] = self.operations.get(operation, 0) + 1

    def add(self, **counts: float) -> None:
        with self._lock:
            _add(self, counts)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def _figures(self) -> list[dataclasses.Field[Any]]:
        return [field for field in dataclasses.fields(self) if not field.name.startswith("_")]

    def snapshot(self) -> dict[str, Any]:
        """Every figure: the counts by name (copied) and ``total_calls`` first, then the
        others in the order of their fields."""
        with self._lock:
            counts = {"calls": dict(self.calls), "total_calls": sum(self.calls.values()),
                      "operations": dict(self.operations)}
            return {**counts, **{field.name: getattr(self, field.name)
                                 for field in self._figures() if field.name not in counts}}

    def reset(self) -> None:
        """Every figure back to its default, zero (the counts by name emptied)."""
        with self._lock:
            for field in self._figures():
                value = getattr(self, field.name)
                if isinstance(value, dict):
                    value.clear()
                else:
                    setattr(self, field.name, field.default)


def _add(figures: object, counts: dict[str, float]) -> None:
    """Add ``counts`` (figures by name) to the dataclass ``figures``."""
    for name, value in counts.items():
        setattr(figures, name, getattr(figures, name) + value)


def emit(hook: Callable[..., Any] | None, metrics: OperationMetrics) -> None:
    """Give ``metrics`` to the user's hook; a failing hook is logged, never breaks a request."""
    if hook is None:
        return
    try:
        hook(metrics)
    except Exception:
        logger.exception("on_operation hook failed for %s", metrics.operation)
