"""Table management and garbage collection.

GC scans with a key-only projection and a filter ``expires < now`` (and not locked), then
deletes.  The default ``conditional`` mode deletes each item with the same condition, so a
session refreshed after the scan saw it is never deleted; ``batch`` mode is the PHP handler's
BatchWriteItem path (fewer calls, but BatchWriteItem cannot carry a condition).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from . import _core
from .config import SessionConfig
from .errors import TableNotFound
from .metrics import Metrics
from .store import EXPIRES, LOCK, LOCK_UNTIL_MS

TTL_ALREADY_ENABLED = "TimeToLive is already enabled"


def _table_missing(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException")


def create_table(client: Any, config: SessionConfig, read_capacity: int | None = None,
                 write_capacity: int | None = None, wait: bool = True,
                 enable_ttl: bool = True) -> dict[str, Any]:
    """Create the sessions table (on demand, or provisioned when capacities are given).

    Waits until it is ACTIVE and enables TTL on ``expires`` (an already enabled TTL is fine).
    Returns the table description.
    """
    if (read_capacity is None) != (write_capacity is None):
        raise ValueError("give both read_capacity and write_capacity, or neither (on demand)")
    kwargs: dict[str, Any] = {
        "TableName": config.table_name,
        "KeySchema": [{"AttributeName": config.hash_key, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": config.hash_key, "AttributeType": "S"}],
    }
    if read_capacity is None:
        kwargs["BillingMode"] = "PAY_PER_REQUEST"
    else:
        assert write_capacity is not None
        if read_capacity < 1 or write_capacity < 1:
            raise ValueError("provisioned capacities must be >= 1")
        kwargs["BillingMode"] = "PROVISIONED"
        kwargs["ProvisionedThroughput"] = {
            "ReadCapacityUnits": read_capacity, "WriteCapacityUnits": write_capacity,
        }
    client.create_table(**kwargs)
    if wait:
        client.get_waiter("table_exists").wait(
            TableName=config.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    if enable_ttl:
        enable_time_to_live(client, config)
    description: dict[str, Any] = client.describe_table(TableName=config.table_name)["Table"]
    return description


def enable_time_to_live(client: Any, config: SessionConfig) -> None:
    """Turn on TTL on ``expires``; tolerate it being on already."""
    try:
        client.update_time_to_live(
            TableName=config.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES},
        )
    except ClientError as exc:
        if TTL_ALREADY_ENABLED not in str(exc):
            raise


def delete_table(client: Any, config: SessionConfig, wait: bool = True) -> None:
    """Delete the sessions table (and every session in it)."""
    try:
        client.delete_table(TableName=config.table_name)
    except ClientError as exc:
        if _table_missing(exc):
            raise TableNotFound(f"DynamoDB table {config.table_name!r} does not exist") from exc
        raise
    if wait:
        client.get_waiter("table_not_exists").wait(
            TableName=config.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )


def describe_table(client: Any, config: SessionConfig) -> dict[str, Any]:
    """Status, billing, TTL, approximate item count and size of the sessions table."""
    try:
        table = client.describe_table(TableName=config.table_name)["Table"]
    except ClientError as exc:
        if _table_missing(exc):
            raise TableNotFound(
                f"DynamoDB table {config.table_name!r} does not exist: create it with "
                "`dynamo-sessions create-table`"
            ) from exc
        raise
    ttl = client.describe_time_to_live(TableName=config.table_name)["TimeToLiveDescription"]
    return {
        "table_name": table["TableName"],
        "status": table["TableStatus"],
        "billing_mode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "read_capacity": table.get("ProvisionedThroughput", {}).get("ReadCapacityUnits", 0),
        "write_capacity": table.get("ProvisionedThroughput", {}).get("WriteCapacityUnits", 0),
        "item_count": table.get("ItemCount", 0),
        "size_bytes": table.get("TableSizeBytes", 0),
        "ttl_status": ttl.get("TimeToLiveStatus", "DISABLED"),
        "ttl_attribute": ttl.get("AttributeName"),
    }


@dataclasses.dataclass
class GcResult:
    """What a garbage collection did; units are the ones DynamoDB reported."""

    scanned: int = 0
    expired: int = 0
    deleted: int = 0
    skipped: int = 0
    """Expired when scanned, but refreshed or locked by the time of the delete: kept."""
    read_units: float = 0.0
    write_units: float = 0.0
    calls: int = 0
    dry_run: bool = False


class _Budget:
    """Keeps consumed write units under ``units_per_second`` (sleeps off any excess)."""

    def __init__(self, units_per_second: float | None, sleep: Callable[[float], Any]) -> None:
        self.rate = units_per_second
        self.sleep = sleep
        self.start = time.monotonic()
        self.spent = 0.0
        self.lock = threading.Lock()

    def spend(self, units: float) -> None:
        if not self.rate:
            return
        with self.lock:
            self.spent += units
            ahead = self.spent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            self.sleep(ahead)


class GarbageCollector:
    """Deletes expired sessions: paginated Scan, then conditional or batch deletes."""

    def __init__(self, client: Any, config: SessionConfig, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.sleep = sleep
        self._result_lock = threading.Lock()

    def run(self, segments: int | None = None, batch_size: int | None = None,
            delay_seconds: float | None = None, mode: str | None = None,
            max_wcu_per_second: float | None = None, dry_run: bool = False,
            progress: Callable[[GcResult], Any] | None = None) -> GcResult:
        """Collect once over the whole table; returns counts and consumed units."""
        config = self.config
        segments = segments or config.gc_segments
        batch_size = batch_size or config.gc_batch_size
        delay = config.gc_operation_delay_seconds if delay_seconds is None else delay_seconds
        mode = mode or config.gc_mode
        if not 1 <= batch_size <= 25:
            raise ValueError("batch_size must be 1..25")
        if mode not in ("conditional", "batch"):
            raise ValueError("mode must be 'conditional' or 'batch'")
        result = GcResult(dry_run=dry_run)
        budget = _Budget(max_wcu_per_second, self.sleep)
        now = int(self.clock())
        now_ms = now * 1000

        def segment(index: int) -> None:
            for keys in self._scan(index, segments, now, now_ms, result, delay):
                if not dry_run and keys:
                    if mode == "batch":
                        self._batch_delete(keys, batch_size, result, delay, budget)
                    else:
                        self._conditional_delete(keys, batch_size, now, now_ms, result, delay,
                                                 budget)
                if progress is not None:
                    progress(result)

        if segments == 1:
            segment(0)
        else:
            with ThreadPoolExecutor(max_workers=min(segments, 8)) as pool:
                list(pool.map(segment, range(segments)))
        return result

    def _account(self, result: GcResult, api: str, consumed: Any, **counts: int) -> float:
        rcu, wcu = self.metrics.add_call(api, consumed)
        with self._result_lock:
            result.read_units += rcu
            result.write_units += wcu
            result.calls += 1
            for name, value in counts.items():
                setattr(result, name, getattr(result, name) + value)
        return wcu

    def _scan(self, segment: int, segments: int, now: int, now_ms: int, result: GcResult,
              delay: float) -> Iterator[list[dict[str, Any]]]:
        hash_key = self.config.hash_key
        kwargs: dict[str, Any] = {
            "TableName": self.config.table_name,
            "ProjectionExpression": "#k",
            "FilterExpression": "#e < :now AND (attribute_not_exists(#l) OR #lu < :now_ms)",
            "ExpressionAttributeNames": {"#k": hash_key, "#e": EXPIRES, "#l": LOCK,
                                         "#lu": LOCK_UNTIL_MS},
            "ExpressionAttributeValues": {":now": {"N": str(now)}, ":now_ms": {"N": str(now_ms)}},
            "ConsistentRead": False,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if segments > 1:
            kwargs["Segment"] = segment
            kwargs["TotalSegments"] = segments
        while True:
            try:
                page = self.client.scan(**kwargs)
            except ClientError as exc:
                if _table_missing(exc):
                    raise TableNotFound(
                        f"DynamoDB table {self.config.table_name!r} does not exist"
                    ) from exc
                raise
            items = page.get("Items", [])
            self._account(result, "Scan", page.get("ConsumedCapacity"),
                          scanned=page.get("ScannedCount", 0), expired=len(items))
            yield [item[hash_key] for item in items]
            start = page.get("LastEvaluatedKey")
            if not start:
                return
            kwargs["ExclusiveStartKey"] = start
            if delay:
                self.sleep(delay)

    def _conditional_delete(self, keys: list[dict[str, Any]], concurrency: int, now: int,
                            now_ms: int, result: GcResult, delay: float,
                            budget: _Budget) -> None:
        config = self.config

        def delete(key: dict[str, Any]) -> None:
            try:
                response = self.client.delete_item(
                    TableName=config.table_name, Key={config.hash_key: key},
                    ConditionExpression="#e < :now AND (attribute_not_exists(#l) OR #lu < :now_ms)",
                    ExpressionAttributeNames={"#e": EXPIRES, "#l": LOCK, "#lu": LOCK_UNTIL_MS},
                    ExpressionAttributeValues={":now": {"N": str(now)},
                                               ":now_ms": {"N": str(now_ms)}},
                    ReturnConsumedCapacity="TOTAL",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                units = self._account(result, "DeleteItem", exc.response.get("ConsumedCapacity"),
                                      skipped=1)
            else:
                units = self._account(result, "DeleteItem", response.get("ConsumedCapacity"),
                                      deleted=1)
            budget.spend(units)
            if delay:
                self.sleep(delay)

        if concurrency <= 1 or len(keys) == 1:
            for key in keys:
                delete(key)
            return
        with ThreadPoolExecutor(max_workers=min(concurrency, len(keys))) as pool:
            list(pool.map(delete, keys))

    def _batch_delete(self, keys: list[dict[str, Any]], batch_size: int, result: GcResult,
                      delay: float, budget: _Budget) -> None:
        config = self.config
        for start in range(0, len(keys), batch_size):
            pending = [{"DeleteRequest": {"Key": {config.hash_key: key}}}
                       for key in keys[start:start + batch_size]]
            backoff = _core.LockRetryBackoff(50_000, 1_000_000, 60.0, seed=None,
                                             sleep=self.sleep)
            while pending:
                response = self.client.batch_write_item(
                    RequestItems={config.table_name: pending}, ReturnConsumedCapacity="TOTAL"
                )
                unprocessed = response.get("UnprocessedItems", {}).get(config.table_name, [])
                units = self._account(result, "BatchWriteItem", response.get("ConsumedCapacity"),
                                      deleted=len(pending) - len(unprocessed))
                budget.spend(units)
                pending = unprocessed
                if pending and not backoff.wait():
                    raise RuntimeError(
                        f"{len(pending)} deletes stayed unprocessed for 60s (throttled); "
                        "re-run gc with a lower --max-wcu-per-second"
                    )
                if delay:
                    self.sleep(delay)
