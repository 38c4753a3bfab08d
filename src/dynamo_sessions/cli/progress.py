"""A one-line progress bar for ``dynamo-sessions gc`` on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ..ops.gc import GcResult


class GcProgress:
    """Redraws ``[####....] 45%  scanned 1,234 / ~2,700  deleted 800  ...`` in place.

    The total is DynamoDB's approximate item count (``describe``), so the bar is an estimate
    (items scanned, less the expired ones still to delete, over that count);
    redraws are limited to ``per_second`` so a fast collection is not slowed by its own output.
    """

    def __init__(self, stream: TextIO, item_count: int = 0, per_second: float = 10.0,
                 width: int = 20, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.item_count = item_count
        self.interval = 1.0 / per_second
        self.width = width
        self.monotonic = monotonic
        self.started = monotonic()
        self.last_draw = float("-inf")
        self.drawn = False

    def line(self, result: GcResult, done: bool = False) -> str:
        parts = []
        if self.item_count > 0:
            # items whose delete is still to come are not done yet
            pending = 0 if result.dry_run else result.expired - result.deleted - result.skipped
            share = max(0.0, min((result.scanned - pending) / self.item_count, 0.99))
            share = 1.0 if done else share
            filled = int(share * self.width)
            parts.append(f"[{'#' * filled}{'.' * (self.width - filled)}] {share:4.0%}")
        total = f" / ~{self.item_count:,}" if self.item_count > 0 else ""
        verb = "to delete" if result.dry_run else "deleted"
        count = result.expired if result.dry_run else result.deleted
        parts.append(f"scanned {result.scanned:,}{total}  {verb} {count:,}  kept {result.skipped:,}"
                     f"  RCU {result.read_units:,.1f}"
                     f"  WCU {result.write_units + result.refused_write_units:,.1f}"
                     f"  {self.monotonic() - self.started:.1f}s")
        return "  ".join(parts)

    def update(self, result: GcResult, force: bool = False, done: bool = False) -> None:
        """Redraw (at most ``per_second`` times unless ``force``); ``done`` shows 100%."""
        now = self.monotonic()
        if not force and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        self.stream.write("\r" + self.line(result, done) + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the bar's line so that what follows starts on a fresh one."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
