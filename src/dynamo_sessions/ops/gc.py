"""Garbage collection: delete expired sessions.

GC scans with a key-only projection and a filter ``expires < now`` (and not locked), then
deletes.  The default ``conditional`` mode deletes each item with the same condition, so a
session refreshed (or locked) after the scan saw it is never deleted; ``batch`` mode is the PHP
handler's BatchWriteItem path (fewer calls, but BatchWriteItem cannot carry a condition, so a
session refreshed between the scan and the delete is lost).

A collection is safe to interrupt and re-run: every delete is of an item that was expired when
the run started, so stopping part-way only leaves expired items for the next run.  DynamoDB's
errors become typed ones in ``transport.translate`` (``TableNotFound``, ``DynamoUnavailable``);
any other error of a call (a denied delete, say) is raised as botocore raised it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from botocore.exceptions import ClientError

from .. import _core
from ..clock import ServerClock, expiry_cutoff
from ..config import GC_MODES, SessionConfig
from ..errors import ConfigError, GcThrottled
from ..metrics import Metrics
from ..store import EXPIRES, LOCK, LOCK_UNTIL_MS
from ..transport.translate import is_condition_failure
from .table import translated

EXPIRED_AND_UNLOCKED = "#e < :now AND (attribute_not_exists(#l) OR #lu < :now_ms)"
"""A session GC may delete: expired when the run started, and not locked by a live lease."""


class GcInterrupted(KeyboardInterrupt):
    """A garbage collection was interrupted (Ctrl-C); ``result`` says what it had done.

    Nothing unexpired was deleted; running the collection again finishes the job.
    """

    def __init__(self, result: GcResult) -> None:
        super().__init__("garbage collection interrupted")
        self.result = result


@dataclasses.dataclass
class GcResult:
    """What a garbage collection did; units are the ones DynamoDB reported."""

    scanned: int = 0
    """Items the Scan read (DynamoDB's ScannedCount)."""
    expired: int = 0
    """Items found expired and unlocked."""
    deleted: int = 0
    skipped: int = 0
    """Expired when scanned, but refreshed, locked or already gone (TTL, logout) by the time of
    the delete: not deleted by this run."""
    read_units: float = 0.0
    write_units: float = 0.0
    """Consumed capacity DynamoDB reported (ReturnConsumedCapacity)."""
    refused_write_units: float = 0.0
    """Deletes refused by their condition are charged (at least 1 WCU each) but DynamoDB
    reports no capacity for them: this is our estimate, 1 WCU per refused delete."""
    calls: int = 0
    elapsed_seconds: float = 0.0
    dry_run: bool = False
    mode: str = "conditional"
    segments: int = 1

    def summary(self) -> str:
        """One line for logs and cron mail."""
        done = (f"would delete {self.expired} (dry run)" if self.dry_run
                else f"deleted {self.deleted}")
        wcu = self.write_units + self.refused_write_units
        return (f"scanned {self.scanned}, expired {self.expired}, {done}, "
                f"kept {self.skipped} (refreshed, locked or gone since the scan), "
                f"{self.read_units:g} RCU, {wcu:g} WCU, {self.calls} calls, "
                f"{self.elapsed_seconds:.1f}s ({self.mode}, {self.segments} segment"
                f"{'s' if self.segments != 1 else ''})")


class _Stopped(Exception):
    """Unwinds a worker once the run was stopped (interrupt or another worker's error)."""


class _Budget:
    """Keeps consumed write units at or under ``units_per_second`` by sleeping off any excess.

    Units are counted after each call, from what DynamoDB reported; a call that put the run
    ahead of its budget is followed by a sleep until the average is back at the budget.
    """

    def __init__(self, units_per_second: float | None, sleep: Callable[[float], Any],
                 clock: Callable[[], float]) -> None:
        self.rate = units_per_second
        self.sleep = sleep
        self.clock = clock
        self.start = clock()
        self.spent = 0.0
        self.lock = threading.Lock()

    def spend(self, units: float) -> None:
        if not self.rate or units <= 0:
            return
        with self.lock:
            self.spent += units
            ahead = self.spent / self.rate - (self.clock() - self.start)
        if ahead > 0:
            self.sleep(ahead)


@dataclasses.dataclass
class _Run:
    """The state one ``GarbageCollector.run`` shares between its worker threads."""

    result: GcResult
    stop: threading.Event
    sleep: Callable[[float], Any]
    budget: _Budget
    now: int
    delay: float
    batch_size: int
    mode: str
    dry_run: bool
    progress: Callable[[GcResult], Any] | None
    deleters: ThreadPoolExecutor | None
    result_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    progress_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def check(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    def pause(self) -> None:
        """The configured delay between two service operations."""
        if self.delay:
            self.check()
            self.sleep(self.delay)

    def report(self) -> None:
        if self.progress is None:
            return
        with self.result_lock:
            snapshot = dataclasses.replace(self.result)
        with self.progress_lock:
            self.progress(snapshot)

    def condition_values(self) -> dict[str, Any]:
        return {":now": {"N": str(self.now)}, ":now_ms": {"N": str(self.now * 1000)}}


class GarbageCollector:
    """Deletes expired sessions: paginated Scan, then conditional (default) or batch deletes.

    ``clock`` gives the epoch time deciding what is expired: by default a
    :class:`~dynamo_sessions.clock.ServerClock`, so that only sessions expired by DynamoDB's
    clock (for more than ``EXPIRY_MARGIN_SECONDS``) are deleted, however wrong this machine's
    clock is; a plain callable is taken as it is.  ``monotonic`` and ``sleep`` time
    the WCU budget, the delays and the UnprocessedItems backoff (injectable for tests).  By
    default a sleep ends early when the run is interrupted.
    """

    def __init__(self, client: Any, config: SessionConfig, metrics: Metrics | None = None,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Any] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock: Callable[[], float] = clock or ServerClock(
            warning_seconds=config.clock_skew_warning_seconds)
        self.sleep = sleep
        self.monotonic = monotonic

    def run(self, segments: int | None = None, batch_size: int | None = None,
            delay_seconds: float | None = None, mode: str | None = None,
            max_wcu_per_second: float | None = None, dry_run: bool = False,
            progress: Callable[[GcResult], Any] | None = None) -> GcResult:
        """Collect once over the whole table; returns counts and consumed units.

        ``segments``: parallel Scan segments (one thread each).  ``batch_size``: keys per
        BatchWriteItem (batch mode) or deletes in flight (conditional mode), 1..25.
        ``delay_seconds``: pause after every service operation (the guide's
        ``gc_operation_delay``).  ``max_wcu_per_second``: write budget, enforced from the
        consumed capacity DynamoDB reports.  ``dry_run``: scan and count only.  ``progress``
        gets a snapshot of the counts after every page and every group of deletes.

        Ctrl-C (or a ``KeyboardInterrupt`` from ``progress``) stops the run after the calls in
        flight and raises :class:`GcInterrupted` carrying the counts so far.
        """
        config = self.config
        segments = config.gc_segments if segments is None else segments
        batch_size = config.gc_batch_size if batch_size is None else batch_size
        delay = config.gc_operation_delay_seconds if delay_seconds is None else delay_seconds
        mode = mode or config.gc_mode
        if not 1 <= segments <= 1_000_000:
            raise ConfigError("segments must be 1..1000000")
        if not 1 <= batch_size <= 25:
            raise ConfigError("batch_size must be 1..25 (BatchWriteItem takes at most 25)")
        if mode not in GC_MODES:
            raise ConfigError(f"mode must be one of {GC_MODES}")
        if delay < 0:
            raise ConfigError("delay_seconds must be >= 0")
        if max_wcu_per_second is not None and max_wcu_per_second <= 0:
            raise ConfigError("max_wcu_per_second must be > 0")
        stop = threading.Event()
        sleep = self.sleep or stop.wait
        started = self.monotonic()
        deleters = None
        if mode == "conditional" and batch_size > 1 and not dry_run:
            deleters = ThreadPoolExecutor(batch_size, thread_name_prefix="dynamo-sessions-gc-del")
        cutoff = int(expiry_cutoff(self.clock, self.client))  # expired by DynamoDB's clock
        ctx = _Run(
            result=GcResult(dry_run=dry_run, mode=mode, segments=segments), stop=stop,
            sleep=sleep, budget=_Budget(max_wcu_per_second, sleep, self.monotonic),
            now=cutoff, delay=delay, batch_size=batch_size, mode=mode,
            dry_run=dry_run, progress=progress, deleters=deleters,
        )
        scanners = ThreadPoolExecutor(min(segments, 16), thread_name_prefix="dynamo-sessions-gc")
        try:
            pending: set[Future[None]] = {
                scanners.submit(self._segment, ctx, index, segments) for index in range(segments)
            }
            while pending:  # short waits keep the main thread responsive to Ctrl-C
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()
        except BaseException as exc:
            stop.set()
            scanners.shutdown(wait=True, cancel_futures=True)
            if deleters is not None:
                deleters.shutdown(wait=True, cancel_futures=True)
            ctx.result.elapsed_seconds = self.monotonic() - started
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, GcInterrupted):
                raise GcInterrupted(ctx.result) from exc
            raise
        scanners.shutdown()
        if deleters is not None:
            deleters.shutdown()
        ctx.result.elapsed_seconds = self.monotonic() - started
        return ctx.result

    # --- workers ------------------------------------------------------------------------------

    def _segment(self, ctx: _Run, index: int, segments: int) -> None:
        try:
            for keys in self._scan(ctx, index, segments):
                if keys and not ctx.dry_run:
                    if ctx.mode == "batch":
                        self._batch_delete(ctx, keys)
                    else:
                        self._conditional_delete(ctx, keys)
                ctx.report()
        except _Stopped:
            return
        except BaseException:
            ctx.stop.set()  # the other workers stop at their next call
            raise

    def _call(self, api: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        """One DynamoDB call, its errors translated (:func:`.table.translated`)."""
        with translated(api, self.config.table_name):
            return call(**kwargs)

    def _account(self, ctx: _Run, api: str, consumed: Any, **counts: float) -> float:
        rcu, wcu = self.metrics.add_call(api, consumed)
        with ctx.result_lock:
            result = ctx.result
            result.read_units += rcu
            result.write_units += wcu
            result.calls += 1
            for name, value in counts.items():
                setattr(result, name, getattr(result, name) + value)
        return wcu

    def _scan(self, ctx: _Run, segment: int, segments: int) -> Iterator[list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {
            "TableName": self.config.table_name,
            "ProjectionExpression": "#k",
            "FilterExpression": EXPIRED_AND_UNLOCKED,
            "ExpressionAttributeNames": {"#k": self.config.hash_key, "#e": EXPIRES, "#l": LOCK,
                                         "#lu": LOCK_UNTIL_MS},
            "ExpressionAttributeValues": ctx.condition_values(),
            "ReturnConsumedCapacity": "TOTAL",
        }
        if segments > 1:
            kwargs["Segment"] = segment
            kwargs["TotalSegments"] = segments
        while True:
            ctx.check()
            page = self._call("Scan", self.client.scan, **kwargs)
            items = page.get("Items", [])
            self._account(ctx, "Scan", page.get("ConsumedCapacity"),
                          scanned=page.get("ScannedCount", 0), expired=len(items))
            yield [item[self.config.hash_key] for item in items]
            start = page.get("LastEvaluatedKey")
            if not start:
                return
            kwargs["ExclusiveStartKey"] = start
            ctx.pause()

    def _delete_one(self, ctx: _Run, key: dict[str, Any]) -> None:
        ctx.check()
        config = self.config
        try:
            response = self._call(
                "DeleteItem", self.client.delete_item,
                TableName=config.table_name, Key={config.hash_key: key},
                ConditionExpression=EXPIRED_AND_UNLOCKED,
                ExpressionAttributeNames={"#e": EXPIRES, "#l": LOCK, "#lu": LOCK_UNTIL_MS},
                ExpressionAttributeValues=ctx.condition_values(),
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            # refreshed, locked or deleted since the scan: keep it.  DynamoDB charges the
            # refused write but reports no capacity for it, so the budget counts 1 WCU.
            self._account(ctx, "DeleteItem", exc.response.get("ConsumedCapacity"), skipped=1,
                          refused_write_units=1.0)
            self.metrics.add_failed_write(1.0)
            ctx.budget.spend(1.0)
        else:
            units = self._account(ctx, "DeleteItem", response.get("ConsumedCapacity"), deleted=1)
            ctx.budget.spend(units)
        ctx.pause()

    def _conditional_delete(self, ctx: _Run, keys: list[dict[str, Any]]) -> None:
        if ctx.deleters is None:
            for start in range(0, len(keys), ctx.batch_size):
                for key in keys[start:start + ctx.batch_size]:
                    self._delete_one(ctx, key)
                ctx.report()
            return
        for start in range(0, len(keys), ctx.batch_size):
            group = [ctx.deleters.submit(self._delete_one, ctx, key)
                     for key in keys[start:start + ctx.batch_size]]
            failure: BaseException | None = None
            for future in group:
                try:
                    future.result()
                except BaseException as exc:  # wait for the whole group, then raise the first
                    failure = failure or exc
            if failure is not None:
                raise failure
            ctx.report()

    def _batch_delete(self, ctx: _Run, keys: list[dict[str, Any]]) -> None:
        config = self.config
        for start in range(0, len(keys), ctx.batch_size):
            pending = [{"DeleteRequest": {"Key": {config.hash_key: key}}}
                       for key in keys[start:start + ctx.batch_size]]
            backoff = _core.LockRetryBackoff(50_000, 2_000_000, 60.0, clock=self.monotonic,
                                             sleep=ctx.sleep)
            while pending:
                ctx.check()
                response = self._call(
                    "BatchWriteItem", self.client.batch_write_item,
                    RequestItems={config.table_name: pending}, ReturnConsumedCapacity="TOTAL"
                )
                unprocessed = response.get("UnprocessedItems", {}).get(config.table_name, [])
                units = self._account(ctx, "BatchWriteItem", response.get("ConsumedCapacity"),
                                      deleted=len(pending) - len(unprocessed))
                ctx.budget.spend(units)
                pending = unprocessed
                if pending and not backoff.wait():
                    raise GcThrottled(
                        f"{len(pending)} deletes stayed unprocessed for 60s (the table's write "
                        "capacity is exhausted); re-run gc with a lower --max-wcu-per-second or "
                        "a longer --gc-operation-delay-seconds"
                    )
                ctx.pause()
            ctx.report()
