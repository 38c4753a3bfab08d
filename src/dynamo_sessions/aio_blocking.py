"""An async store's operation carried from synchronous code: a ``request.session`` read that
must load the session, in a Starlette, FastAPI or Litestar view (which reads it without
``await``).

:class:`BlockingRunner` ``(store)`` - one per middleware, shared by its requests, holding no
request's state - gives each request a ``run(operation)`` bound to the request's event loop:

* **called from another thread** (a sync view, run in the server's thread pool): the operation
  runs on the request's event loop (``asyncio.run_coroutine_threadsafe``); the loop is never
  blocked, only the calling thread waits for the answer;
* **called on the loop's own thread** (an ``async def`` view), where nothing can be awaited:
  the sync driver carries the operation on a boto3 client (``config.client``, or one built from
  ``config`` on first use, :func:`.transport.client.build_client`), so the event loop is
  blocked for that one call.  An operation of a mode whose load may wait for a lock
  (``protocol.load_waits``: pessimistic) is refused there - a lock wait on the loop's thread
  would stop the very request that holds the lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from .aio_store import AsyncSessionStore
from .clock import ServerClock
from .protocol.steps import Operation, T
from .transport.botocore import BotocoreDriver
from .transport.client import build_client

__all__ = ["BlockingRunner"]


class _Host:
    """The sync driver's host on this path: sleeps block; no lock is ever held here."""

    sleep = staticmethod(time.sleep)

    def renew_lock(self, *_: Any) -> bool:
        raise RuntimeError("a lock is never taken by a blocking read on the event loop")


class BlockingRunner:
    """Runs an :class:`AsyncSessionStore`'s operations from sync code (see the module)."""

    def __init__(self, store: AsyncSessionStore) -> None:
        self.store = store
        self._driver: BotocoreDriver | None = None
        self._building = threading.Lock()

    def driver(self) -> BotocoreDriver:
        """The sync driver for reads on the loop's thread (built once, on first use)."""
        driver = self._driver
        if driver is None:
            with self._building:
                driver = self._driver
                if driver is None:
                    config = self.store.config
                    clock = self.store.clock
                    driver = self._driver = BotocoreDriver(
                        config.client or build_client(config), _Host(),
                        clock.monotonic if isinstance(clock, ServerClock) else time.monotonic)
        return driver

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> Callable[[Operation[T]], T]:
        """``run(operation)`` for a request served on ``loop``."""
        def run(operation: Operation[T]) -> T:
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                future = asyncio.run_coroutine_threadsafe(self.store.run(operation), loop)
                return future.result()
            if self.store.protocol.load_waits:
                operation.close()
                raise RuntimeError("this store's load may wait for a lock, which must never "
                                   "block the event loop: await the session's load() first")
            return self.driver().run(operation)
        return run
