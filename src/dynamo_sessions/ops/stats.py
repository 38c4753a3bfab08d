"""Session size distribution and projected capacity, from a bounded sample of the table.

The guide's advice is to keep sessions under 1 KB: a write costs one WCU per started KB of the
item, a strongly consistent read one RCU per started 4 KB (half when eventually consistent).
``project`` applies those rules (the core's ``item_size``/``read_units``/``write_units``) to the
sampled items under each locking mode as this library behaves, next to the PHP handler's
behaviour from the guide's pricing table.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import _core
from ..config import SessionConfig
from ..errors import ConfigError
from ..store import EXPIRES, LOCK, LOCK_UNTIL_MS, VERSION
from .table import translated

KB = 1024
LOCK_TOKEN_CHARS = 22
"""Length of the pessimistic lock's owner token (``secrets.token_urlsafe(16)``)."""
REQUESTS = 1_000_000


@dataclasses.dataclass
class Sample:
    """Sizes (bytes, as DynamoDB counts them) of up to ``sample_size`` items of the table."""

    sizes: list[int]
    """Item sizes without lock attributes (a held lock is transient)."""
    expired: int
    locked: int
    scanned: int
    read_units: float
    """What the sampling Scan consumed (DynamoDB's figure)."""
    complete: bool
    """The whole table was read."""


def sample_table(client: Any, config: SessionConfig, sample_size: int = 1000,
                 clock: Callable[[], float] = time.time) -> Sample:
    """Read up to ``sample_size`` items with a bounded, eventually consistent Scan."""
    if sample_size < 1:
        raise ConfigError("sample_size must be >= 1")
    now = clock()
    sizes: list[int] = []
    expired = locked = scanned = 0
    units = 0.0
    kwargs: dict[str, Any] = {"TableName": config.table_name, "ReturnConsumedCapacity": "TOTAL"}
    while True:
        kwargs["Limit"] = min(sample_size - len(sizes), 1000)
        with translated("Scan", config.table_name):
            page = client.scan(**kwargs)
        consumed = page.get("ConsumedCapacity") or {}
        units += float(consumed.get("ReadCapacityUnits", consumed.get("CapacityUnits", 0)) or 0)
        scanned += page.get("ScannedCount", 0)
        for item in page.get("Items", []):
            if LOCK in item:
                locked += 1
            stored_expiry = item.get(EXPIRES, {}).get("N")
            if stored_expiry is not None and float(stored_expiry) < now:
                expired += 1
            sizes.append(_core.item_size(
                {name: value for name, value in item.items() if name not in (LOCK, LOCK_UNTIL_MS)}
            ))
        start = page.get("LastEvaluatedKey")
        if not start:
            return Sample(sizes, expired, locked, scanned, units, complete=True)
        if len(sizes) >= sample_size:
            return Sample(sizes, expired, locked, scanned, units, complete=False)
        kwargs["ExclusiveStartKey"] = start


def percentile(ordered: Sequence[int], share: float) -> int:
    """Nearest-rank percentile of sorted values (``share`` in 0..1)."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def size_distribution(sizes: Sequence[int]) -> dict[str, Any]:
    """min/p50/p90/p99/max/mean item size and the share of items over 1 KB."""
    ordered = sorted(sizes)
    count = len(ordered)
    return {
        "count": count,
        "min": ordered[0] if ordered else 0,
        "p50": percentile(ordered, 0.50),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else 0,
        "mean": sum(ordered) / count if count else 0.0,
        "over_1kb_share": sum(1 for size in ordered if size > KB) / count if count else 0.0,
    }


@dataclasses.dataclass(frozen=True)
class ModeCost:
    """Mean capacity units of one locking mode's operations over the sampled items."""

    mode: str
    read_rcu: float
    """Loading a session (GetItem, or nothing for a lock taken by UpdateItem)."""
    read_wcu: float
    """Writes spent loading a session (pessimistic: taking the lock)."""
    changed_write_wcu: float
    """Saving a changed session."""
    unchanged_write_wcu: float
    """Saving an unchanged session (pessimistic: releasing the lock)."""
    changed_share: float

    @property
    def rcu_per_request(self) -> float:
        return self.read_rcu

    @property
    def wcu_per_request(self) -> float:
        return (self.read_wcu + self.changed_share * self.changed_write_wcu
                + (1.0 - self.changed_share) * self.unchanged_write_wcu)

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "rcu_per_request": self.rcu_per_request,
            "wcu_per_request": self.wcu_per_request,
            "rcu_per_1m_requests": self.rcu_per_request * REQUESTS,
            "wcu_per_1m_requests": self.wcu_per_request * REQUESTS,
        }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def project(sizes: Sequence[int], consistent_read: bool = True, changed_share: float = 0.25,
            lock_until_ms: int | None = None) -> list[ModeCost]:
    """Projected units per operation and per request for each mode, over the sampled sizes.

    Ours: ``none`` reads once and writes only a changed session; ``optimistic`` the same plus a
    version number; ``pessimistic`` takes the lock with one UpdateItem (a write of the item with
    the lock attributes, which also returns it) and releases it with another (carrying the data
    when changed).  The PHP handler (the guide's table) writes on every request.  Lock retries
    under contention, optimistic merge retries and expiry refreshes of read-only sessions (one
    write per session every ``(1 - expiry_refresh_fraction) x lifetime``) come on top.
    """
    if not 0.0 <= changed_share <= 1.0:
        raise ConfigError("changed_share must be between 0 and 1")
    stamp = str(lock_until_ms if lock_until_ms is not None else int(time.time() * 1000))
    lock_bytes = (len(LOCK) + LOCK_TOKEN_CHARS + len(LOCK_UNTIL_MS) + _core.number_size(stamp))
    version_bytes = len(VERSION) + _core.number_size("1")
    reads = [_core.read_units(size, consistent_read) for size in sizes]
    writes = [float(_core.write_units(size)) for size in sizes]
    versioned = [float(_core.write_units(size + version_bytes)) for size in sizes]
    versioned_reads = [_core.read_units(size + version_bytes, consistent_read) for size in sizes]
    locked = [float(_core.write_units(size + lock_bytes)) for size in sizes]
    read, write = _mean(reads), _mean(writes)
    lock = _mean(locked)
    return [
        ModeCost("none", read, 0.0, write, 0.0, changed_share),
        ModeCost("optimistic", _mean(versioned_reads), 0.0, _mean(versioned), 0.0,
                 changed_share),
        ModeCost("pessimistic", 0.0, lock, lock, lock, changed_share),
        ModeCost("php-none", read, 0.0, write, write, changed_share),
        ModeCost("php-pessimistic", 0.0, lock, lock, lock, changed_share),
    ]


def gc_projection(description: Mapping[str, Any], expired_share: float) -> dict[str, float]:
    """Units one full garbage collection would take (the guide: Scan reads, 1 WCU per delete).

    A Scan is eventually consistent: half an RCU per 4 KB of table read.
    """
    size = float(description.get("size_bytes", 0) or 0)
    items = float(description.get("item_count", 0) or 0)
    return {
        "scan_rcu": math.ceil(size / _core.READ_UNIT_BYTES) * 0.5,
        "delete_wcu": round(items * expired_share),
    }


def table_stats(client: Any, config: SessionConfig, sample_size: int = 1000,
                changed_share: float = 0.25, consistent_read: bool | None = None,
                description: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``dynamo-sessions stats`` prints, as a JSON-ready dict."""
    consistent = config.consistent_read if consistent_read is None else consistent_read
    sample = sample_table(client, config, sample_size)
    count = len(sample.sizes)
    expired_share = sample.expired / count if count else 0.0
    stats: dict[str, Any] = {
        "table_name": config.table_name,
        "sampled": count,
        "complete": sample.complete,
        "sample_read_units": sample.read_units,
        "expired_in_sample": sample.expired,
        "locked_in_sample": sample.locked,
        "size_bytes": size_distribution(sample.sizes),
        "consistent_read": consistent,
        "changed_share": changed_share,
        "modes": [cost.as_dict() for cost in project(sample.sizes, consistent, changed_share)]
        if count else [],
    }
    if description is not None:
        stats["item_count"] = description.get("item_count", 0)
        stats["gc"] = gc_projection(description, expired_share)
    return stats


def format_stats(stats: Mapping[str, Any]) -> str:
    """The human-readable report of :func:`table_stats`."""
    sizes = stats["size_bytes"]
    total = stats.get("item_count")
    of = "all" if stats["complete"] else f"a sample of {stats['sampled']}"
    lines = [
        f"table {stats['table_name']}: {of} "
        f"{'items' if stats['complete'] else 'of ~' + str(total) + ' items'} "
        f"({stats['sampled']} read, {stats['sample_read_units']:g} RCU)"
    ]
    if not sizes["count"]:
        lines.append("no sessions stored: nothing to measure")
        return "\n".join(lines)
    lines += [
        f"item size (bytes): min {sizes['min']}  p50 {sizes['p50']}  p90 {sizes['p90']}  "
        f"p99 {sizes['p99']}  max {sizes['max']}  mean {sizes['mean']:.0f}",
        f"over 1 KB: {sizes['over_1kb_share']:.1%} of sessions (the guide: keep sessions under "
        "1 KB - every started KB of an item is another write unit)",
        f"expired in the sample: {stats['expired_in_sample']}, locked: "
        f"{stats['locked_in_sample']}",
        "",
        "projected capacity units, mean over the sampled items ("
        + ("strongly consistent" if stats["consistent_read"] else "eventually consistent")
        + f" reads, {stats['changed_share']:.0%} of requests change the session):",
    ]
    header = ("mode", "load RCU", "load WCU", "save WCU", "unchanged WCU", "RCU/1M req",
              "WCU/1M req")
    rows = [(m["mode"], f"{m['read_rcu']:.2f}", f"{m['read_wcu']:.2f}",
             f"{m['changed_write_wcu']:.2f}", f"{m['unchanged_write_wcu']:.2f}",
             f"{m['rcu_per_1m_requests']:,.0f}", f"{m['wcu_per_1m_requests']:,.0f}")
            for m in stats["modes"]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)))
    lines.append("php-*: the PHP handler as the guide prices it (it writes on every request). "
                 "Lock retries, merge retries and expiry refreshes come on top.")
    if "gc" in stats:
        gc = stats["gc"]
        lines.append(f"one full gc: ~{gc['scan_rcu']:g} RCU to scan, ~{gc['delete_wcu']:g} WCU "
                     "to delete (from the table size and the expired share of the sample)")
    return "\n".join(lines)
