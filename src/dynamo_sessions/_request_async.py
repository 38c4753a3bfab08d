"""The async twins of :class:`request.RequestSession`'s methods that call the store: the same
rules (its generator operations), awaited on an :class:`~.aio_store.AsyncSessionStore`.

``aopen`` (the first dict access's read), ``aload``, ``asave``, ``arelease``,
``arelease_locks``, ``awrite``, ``acreate``, ``asave_existing``, ``adelete``, ``aretire_old``,
``aexists``: each is its sync namesake without the ``a``, awaited; ``open_with(run)``: the
read carried by ``run`` from sync code.  Cancelled, an operation
finishes its cleanup first (locks released, the stored session the old or the new one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .protocol.steps import Operation, T

if TYPE_CHECKING:
    from .store import StoreBase


class AsyncTwins:
    """The awaited faces of the request's operations (mixed into ``RequestSession``)."""

    if TYPE_CHECKING:
        store: StoreBase
        accessed: bool
        _data: dict[str, Any] | None

        def _open(self) -> Operation[None]: ...
        def _load_id(self, session_id: str) -> Operation[dict[str, Any]]: ...
        def _save_all(self) -> Operation[None]: ...
        def _release_all(self) -> Operation[None]: ...
        def _release_locks(self) -> Operation[None]: ...
        def _write(self, data: Mapping[str, Any]) -> Operation[bool]: ...
        def _create_held(self, session_id: str, data: Mapping[str, Any]) -> Operation[None]: ...
        def _save_existing(self, session_id: str,
                           data: Mapping[str, Any]) -> Operation[None]: ...
        def _delete(self, session_id: str) -> Operation[bool]: ...
        def _retire_old(self, session_id: str) -> Operation[bool]: ...

    async def _arun(self, operation: Operation[T], undo: bool = False) -> T:
        """Await ``operation`` on the async store; ``undo``: a caller cancelled just as it
        ended gives back the locks it took (a read that nobody will save)."""
        run: Callable[..., Awaitable[T]] | None = getattr(self.store, "run", None)
        if run is None:
            operation.close()
            raise TypeError("this session's store is synchronous: call the method without 'a'")
        return await run(operation, self._undo if undo else None)

    def _undo(self, _: object) -> Operation[None]:
        return self._release_locks()

    async def aopen(self) -> dict[str, Any]:
        """Read the cookie's session now, if not yet read (what the first dict access does on a
        sync store): its data.  A cancelled read holds no lock."""
        self.accessed = True
        if self._data is None:
            await self._arun(self._open(), undo=True)
            assert self._data is not None
        return self._data

    def open_with(self, run: Callable[[Operation[None]], None]) -> dict[str, Any]:
        """Read the cookie's session now, if not yet read, with ``run`` carrying the read (an
        async store's read from sync code: :class:`.aio_blocking.BlockingRunner`); its data."""
        self.accessed = True
        if self._data is None:
            run(self._open())
            assert self._data is not None
        return self._data

    async def aload(self, session_id: str) -> dict[str, Any]:
        """:meth:`load`, awaited."""
        return await self._arun(self._load_id(session_id), undo=True)

    async def asave(self) -> None:
        """:meth:`save`, awaited; cancelled, it leaves the old or the new session stored and
        releases every lock (the async store's cancellation rules)."""
        await self._arun(self._save_all())

    async def arelease(self) -> None:
        """:meth:`release`, awaited."""
        await self._arun(self._release_all())

    async def arelease_locks(self) -> None:
        """:meth:`release_locks`, awaited."""
        await self._arun(self._release_locks())

    async def awrite(self, data: Mapping[str, Any]) -> bool:
        """:meth:`write`, awaited."""
        return await self._arun(self._write(data))

    async def acreate(self, session_id: str, data: Mapping[str, Any]) -> None:
        """:meth:`create`, awaited."""
        await self._arun(self._create_held(session_id, data))

    async def asave_existing(self, session_id: str, data: Mapping[str, Any]) -> None:
        """:meth:`save_existing`, awaited."""
        await self._arun(self._save_existing(session_id, data))

    async def adelete(self, session_id: str) -> bool:
        """:meth:`delete`, awaited."""
        return await self._arun(self._delete(session_id))

    async def aretire_old(self, session_id: str) -> bool:
        """:meth:`retire_old`, awaited."""
        return await self._arun(self._retire_old(session_id))

    async def aexists(self, session_id: str) -> bool:
        """:meth:`exists`, awaited."""
        return await self._arun(self.store.protocol.exists(session_id))
