"""Counting the DynamoDB calls a client makes, for tests that assert how many a request costs."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

__all__ = ["CallCounter"]


class CallCounter:
    """Counts the DynamoDB calls a client makes, by operation (botocore ``before-call`` event:
    one count per call, however many attempts botocore makes).  Safe across threads."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
