"""A stand-in until the asyncio twin of :class:`RequestSession` lands: the request's rules run
in a worker thread, each store call awaited on the event loop's asyncio store."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from .request import RequestSession


class _LoopStore:
    """The sync store interface, each call run on ``loop`` by the asyncio store."""

    def __init__(self, store: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop

    def writable(self, session: Any) -> bool:
        return bool(self._store.writable(session))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                raise RuntimeError("a session store call from the event loop's thread")
            return asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop).result()

        return call


class _Collect:
    def __init__(self, released: list[Any]) -> None:
        self.release = released.append


class AsyncRequestSession(RequestSession):
    """:class:`RequestSession` on an asyncio store: ``aload``, ``asave``, ``arelease``."""

    def __init__(self, store: Any, cookie_id: str | None = None, **options: Any) -> None:
        super().__init__(store, cookie_id, **options)
        self._async_store = store
        self.cookie_id = cookie_id

    async def _in_thread(self, method: Any) -> Any:
        self.store = _LoopStore(self._async_store, asyncio.get_running_loop())  # type: ignore[assignment]
        return await asyncio.to_thread(functools.partial(method))

    async def aopen(self) -> None:
        """Load on the loop (a pessimistic lock wait must not hold a worker thread)."""
        session_id = self.cookie_id
        if session_id is None:
            self._data = {}
            return
        loaded = await self._async_store.load(session_id, lifetime_seconds=self.lifetime_seconds)
        given_back: list[Any] = []
        self.store = _Collect(given_back)  # type: ignore[assignment]
        self._cookie_id = session_id
        self._adopt(loaded)
        for session in given_back:
            await self._async_store.release(session)
        self.accessed = True

    async def asave(self) -> None:
        await self._in_thread(self.save)

    async def arelease(self) -> None:
        await self._in_thread(self.release)
