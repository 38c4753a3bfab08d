"""The asyncio stores: the same sessions as :mod:`.store`, on an aiobotocore client.

An :class:`AsyncSessionStore` is the sync store's twin: the same protocol classes (the rules of
each locking mode, :mod:`.protocol`), the same options, errors and figures - only the driver
differs (:func:`.transport.aio.run`: calls awaited on aiobotocore, lock waits with
``asyncio.sleep``, leases renewed by the event loop's renewer task)::

    store = create_async_store(SessionConfig(table_name="sessions", locking="optimistic"))
    async with store:                        # closes the clients it built
        session = await store.load(session_id)
        session.data["cart"] = [...]
        await store.save(session)

**The client.**  A client given to the constructor is used as it is (and never closed by the
store).  Otherwise one is built on first use in each event loop, by
:func:`.transport.aio.build_async_client` (``config``'s endpoint, region, profile, timeouts
and retries; ``max_pool_connections`` connections), and closed by :meth:`aclose` (or leaving
``async with store``) - an aiobotocore client belongs to one event loop.

**Cancellation.**  Each operation runs in a task of its own.  When the caller is cancelled
(a client gone, a timeout), the cancellation is thrown into the operation - at once during a
lock wait; during a call, once the call's answer is back (a call cut off mid-flight could
still be applied after the cleanup's own calls) - and the operation's cleanup, the
protocol's own (a failed save releases its lock, an interrupted lock take gives the lock
back), runs to its end under :func:`.transport.aio.shielded`, however often the caller is
cancelled meanwhile; then the caller sees its ``CancelledError``.  The stored session is the
old or the new one, never a mix, and no lock of the request remains.  A lock taken by a load
whose caller was cancelled just as it finished is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from .config import SessionConfig
from .protocol.item import LoadedSession
from .protocol.optimistic import Optimistic
from .protocol.pessimistic import Pessimistic
from .protocol.steps import Operation, T
from .store import StoreBase
from .transport import aio

__all__ = [
    "ASYNC_STORES", "MAX_POOL_CONNECTIONS", "AsyncOptimisticSessionStore",
    "AsyncPessimisticSessionStore", "AsyncSessionStore", "create_async_store",
]

MAX_POOL_CONNECTIONS = 64
"""Connections of a client the store builds (aiobotocore's default, 10, would queue the calls
of an ASGI worker serving more concurrent requests than that)."""


class AsyncSessionStore(StoreBase):
    """``locking="none"`` on asyncio: plain reads and writes; the last writer wins, but a
    session deleted by another request is not brought back (:class:`SessionGone`).

    Safe to share across the tasks (and event loops) of a process: per-request state lives in
    :class:`LoadedSession`; a built client is kept per event loop.
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        client: Any = None,
        session_name: str = "PHPSESSID",
        clock: Callable[[], float] | None = None,
        *,
        max_pool_connections: int = MAX_POOL_CONNECTIONS,
    ) -> None:
        self._setup(config, session_name, clock)
        self._given: aio.AsyncDynamoClient | None = client
        self.max_pool_connections = max_pool_connections
        self._opening: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Task[aio.AsyncDynamoClient]
        ] = weakref.WeakKeyDictionary()
        self._contexts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary())
        self._stamp: Callable[[], float] = time.monotonic
        self.clock = self.protocol.clock  # stamps the calls with the clock's own
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """Sleeps the protocol's waits (replaceable in tests, with ``monotonic``)."""
        self._renew = getattr(self.protocol, "renew_lock", None)

    def _stamp_with(self, monotonic: Callable[[], float]) -> None:
        self._stamp = monotonic

    # --- the client ---------------------------------------------------------------------------

    async def get_client(self) -> aio.AsyncDynamoClient:
        """The client of the running event loop (the given one, or built on first use)."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        opening = self._opening.get(loop)
        if opening is None:
            opening = self._opening[loop] = loop.create_task(self._open(loop))
            opening.add_done_callback(functools.partial(self._opened, loop))
        if opening.done():
            return opening.result()
        return await asyncio.shield(opening)  # a cancelled caller leaves it to the others

    def _opened(self, loop: asyncio.AbstractEventLoop,
                opening: asyncio.Task[aio.AsyncDynamoClient]) -> None:
        """A failed build is forgotten (its error retrieved), waited for or not: the next
        call builds the client again."""
        if (opening.cancelled() or opening.exception() is not None) \
                and self._opening.get(loop) is opening:
            del self._opening[loop]

    async def _open(self, loop: asyncio.AbstractEventLoop) -> aio.AsyncDynamoClient:
        context = aio.build_async_client(self.config,
                                         max_pool_connections=self.max_pool_connections)
        client = await context.__aenter__()
        self._contexts[loop] = context
        return client

    async def aclose(self) -> None:
        """Close the client this store built on the running event loop (none: no-op); the next
        operation builds another."""
        loop = asyncio.get_running_loop()
        opening = self._opening.pop(loop, None)
        if opening is not None and not opening.done():
            # a build in flight: finish it and close it too (cancelling it would cancel the
            # requests waiting for it - they get the closed client's typed error instead)
            with contextlib.suppress(Exception):
                await asyncio.shield(opening)
        context = self._contexts.pop(loop, None)
        if context is not None:
            await context.__aexit__(None, None, None)

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, traceback: TracebackType | None) -> None:
        await self.aclose()

    # --- running an operation -----------------------------------------------------------------

    async def run(self, operation: Operation[T],
                  undo: Callable[[T], Operation[None]] | None = None) -> T:
        """Run a protocol ``operation`` on this loop's client and return its result.

        A cancellation of the caller is thrown into the operation and its cleanup finished
        under :func:`~.transport.aio.shielded` (see the module's docstring); ``undo(result)``
        is run (shielded too) when the caller was cancelled just as the operation ended.
        """
        client = self._given if self._given is not None else await self.get_client()
        flight = _Flight(client)
        work = asyncio.ensure_future(aio.run(flight, operation, renew=self._renew,
                                             monotonic=self._stamp, sleep=self.sleep,
                                             renew_run=self._renewal))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await aio.shielded(self._finish(flight, work, undo))
            raise

    async def _renewal(self, renewal: Operation[bool]) -> bool:
        """A lease renewal, on the loop's client as it is when the renewal is due (one built
        anew after :meth:`aclose` too), never on the closed client or the flight of the
        operation that took the lock."""
        client = self._given if self._given is not None else await self.get_client()
        return await aio.run(client, renewal, monotonic=self._stamp, sleep=self.sleep)

    async def _finish(self, flight: _Flight, work: asyncio.Task[T],
                      undo: Callable[[T], Operation[None]] | None) -> None:
        """The caller was cancelled: the operation's own cleanup, or ``undo`` of its result."""
        if not work.done():
            flight.cancel(work)
        try:
            result = await work
        except BaseException:  # cancelled, or failed in its cleanup: nothing more to undo
            return
        if undo is not None:
            await aio.run(flight.client, undo(result), renew=self._renew,
                          monotonic=self._stamp, sleep=self.sleep)

    # --- operations ---------------------------------------------------------------------------

    async def load(self, session_id: str, *,
                   lifetime_seconds: int | None = None) -> LoadedSession:
        """Read a session (a pessimistic store takes its lock): :meth:`.SessionStore.load`."""
        return await self.run(self.protocol.load(session_id, lifetime_seconds=lifetime_seconds),
                              self.protocol.release)

    async def load_for_write(self, session_id: str, *,
                             lifetime_seconds: int | None = None) -> LoadedSession:
        """A session to write that this request has not read:
        :meth:`.SessionStore.load_for_write`."""
        return await self.run(self.protocol.load_for_write(
            session_id, lifetime_seconds=lifetime_seconds), self.protocol.release)

    async def save(self, session: LoadedSession, data: Mapping[str, Any] | None = None, *,
                   lifetime_seconds: int | None = None) -> bool:
        """Store ``data`` (default: ``session.data``) and release any lock; True on success:
        :meth:`.SessionStore.save`.  Cancelled, it leaves the old or the new session stored
        and no lock."""
        return await self.run(self.protocol.save(session, data,
                                                 lifetime_seconds=lifetime_seconds))

    async def release(self, session: LoadedSession) -> None:
        """Give up any lock without writing (no-op without pessimistic locking)."""
        await self.run(self.protocol.release(session))

    async def delete(self, session_id: str) -> bool:
        """Delete a session (logout); True whether or not it existed."""
        return await self.run(self.protocol.delete(session_id))

    async def create(self, session_id: str, data: Mapping[str, Any], *,
                     lifetime_seconds: int | None = None) -> LoadedSession:
        """Store a new session only if no live item has that id (else :class:`SessionExists`):
        :meth:`.SessionStore.create`."""
        return await self.run(self.protocol.create(session_id, data,
                                                   lifetime_seconds=lifetime_seconds))

    async def retire(self, old: LoadedSession, successor: LoadedSession) -> None:
        """Leave a data-less marker at the id ``old`` was moved from (login):
        :meth:`.SessionStore.retire`."""
        await self.run(self.protocol.retire(old, successor))

    async def exists(self, session_id: str) -> bool:
        """True when a live (unexpired) session is stored under ``session_id``."""
        return await self.run(self.protocol.exists(session_id))


class _Flight:
    """One operation's view of the client: a cancellation that comes while a call is in
    flight is held until the call's answer (or error) is back, then raised in its place.

    A call cut off mid-flight may still be applied by DynamoDB *after* the cleanup's own
    calls (a lock release refused, then the lock take arriving): so no call is cut off.  The
    operation sees the cancellation as an answer lost - what it has to assume of any call.
    A lock wait (a sleep) is cut off at once.
    """

    __slots__ = ("calling", "client", "meta", "pending")

    def __init__(self, client: aio.AsyncDynamoClient) -> None:
        self.client = client
        self.meta = client.meta
        self.calling = False
        self.pending = False

    async def close(self) -> None:
        await self.client.close()

    def cancel(self, work: asyncio.Task[Any]) -> None:
        """Cancel ``work`` now, or when the call it awaits has its answer."""
        if self.calling:
            self.pending = True
        else:
            work.cancel()

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def call(**params: Any) -> Any:
            self.calling = True
            try:
                return await method(**params)
            finally:
                self.calling = False
                if self.pending:
                    self.pending = False
                    raise asyncio.CancelledError  # the caller's, held during the call

        return call


class AsyncOptimisticSessionStore(AsyncSessionStore):
    """``locking="optimistic"`` on asyncio: versioned writes; concurrent changes are merged,
    not lost (:mod:`.protocol.optimistic`)."""

    locking = "optimistic"
    protocol_class = Optimistic


class AsyncPessimisticSessionStore(AsyncSessionStore):
    """``locking="pessimistic"`` on asyncio: a lease lock, renewed by the event loop's
    renewer task while held (:mod:`.protocol.pessimistic`)."""

    locking = "pessimistic"
    protocol_class = Pessimistic
    protocol: Pessimistic

    async def renew_lock(self, key: str, token: str,
                         session: LoadedSession | None = None) -> bool:
        """Extend the lease of ``token``'s lock on ``key``; False when the lock is no longer
        ours."""
        return await self.run(self.protocol.renew_lock(key, token, session))


ASYNC_STORES: dict[str, type[AsyncSessionStore]] = {
    store.locking: store
    for store in (AsyncSessionStore, AsyncOptimisticSessionStore, AsyncPessimisticSessionStore)
}
"""The asyncio store class of each ``locking`` mode (as ``store.STORES``)."""


def create_async_store(config: SessionConfig | None = None, client: Any = None,
                       session_name: str = "PHPSESSID",
                       clock: Callable[[], float] | None = None, *,
                       max_pool_connections: int = MAX_POOL_CONNECTIONS) -> AsyncSessionStore:
    """The asyncio store for ``config.locking`` (``client``: an aiobotocore DynamoDB client,
    used as is; ``None``: built per event loop, closed by ``aclose``)."""
    config = config or SessionConfig()
    return ASYNC_STORES[config.locking](config, client, session_name, clock,
                                        max_pool_connections=max_pool_connections)
