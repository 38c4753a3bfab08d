"""``scope["session"]`` of the ASGI middleware (:mod:`.asgi`): a ``dict`` that reads its
session on first use.

:class:`Session` is a ``dict`` (JSON encoders, ``dict(...)``, ``{**session}``, ``|``), with
its request's rules (:class:`.request.RequestSession`) behind ``regenerate``, ``destroy`` and
``increment``.  A session *pending* (the request names a stored session, not read yet) is read
by the first use of any dict method: ``await session.load()`` reads it without blocking (an
``async def`` view); a plain read carries it with the request's ``run`` - from a sync view's
worker thread on the event loop, on the loop's own thread blocking it for that one GetItem
(:class:`.aio_blocking.BlockingRunner`).  ``mark_accessed()`` (Starlette's ``request.session``)
reads nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import SessionReadOnly
from .merge import Number
from .protocol.steps import Operation
from .request import RequestSession

Run = Callable[[Operation[None]], None]


class Session(dict[str, Any]):
    """``scope["session"]``: the session's data; with ``run`` (how a sync first use carries
    the read), a pending session, read on first use."""

    def __init__(self, request: RequestSession, data: Mapping[str, Any],
                 read_only: bool = False, *, run: Run | None = None) -> None:
        super().__init__(data)
        self.request = request
        self.read_only = read_only
        self.pending = run is not None
        """The request names a stored session not read yet: the first use reads it."""
        self.accessed = False
        self.modified = False
        self._run = run

    # --- reading --------------------------------------------------------------------------

    def fill(self) -> None:
        if self._run is not None and self.pending:
            self._take(self.request.open_with(self._run))

    def _take(self, data: Mapping[str, Any]) -> None:
        if self.pending:
            self.pending = False
            dict.update(self, data)

    async def load(self) -> Session:
        """Read the session now, if not yet read, without blocking the event loop (call it
        first in an ``async def`` view that uses the session); the session."""
        if self.pending:
            self._take(await self.request.aopen())
        return self

    def mark_accessed(self) -> None:
        """Starlette's ``request.session`` calls this: the response varies by cookie."""
        self.accessed = True

    def mark_modified(self) -> None:
        if self.read_only:
            raise SessionReadOnly("a WebSocket's session is read-only (the socket cannot "
                                  "set a cookie); change it in an HTTP request")
        self.fill()
        self.accessed = self.modified = True

    def __getitem__(self, key: str) -> Any:
        self.fill()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.fill()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self.fill()
        return super().__iter__()

    def __reversed__(self) -> Iterator[str]:
        self.fill()
        return super().__reversed__()

    def __len__(self) -> int:
        self.fill()
        return super().__len__()

    def __repr__(self) -> str:
        return "<Session not read yet>" if self.pending else super().__repr__()

    def __eq__(self, other: object) -> bool:
        self.fill()
        if isinstance(other, Session):
            other.fill()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        self.fill()
        return {**dict(self.items()), **other}

    def __ror__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        self.fill()
        return {**other, **dict(self.items())}

    def get(self, key: str, default: Any = None) -> Any:
        self.fill()
        return super().get(key, default)

    def keys(self) -> Any:
        self.fill()
        return super().keys()

    def values(self) -> Any:
        self.fill()
        return super().values()

    def items(self) -> Any:
        self.fill()
        return super().items()

    def copy(self) -> dict[str, Any]:
        self.fill()
        return dict(super().items())

    # --- the session's own operations --------------------------------------------------------

    def regenerate(self) -> str:
        """A new id for this session (call it on login); the old id is retired at save."""
        self.mark_modified()
        return self.request.regenerate()

    def destroy(self) -> None:
        """Empty the session and delete its item at save (logout); data set afterwards
        starts a new session with a new id."""
        self.mark_modified()
        self.request.destroy()
        super().clear()

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent) without ever losing a
        concurrent request's increment; the new value as seen here."""
        self.mark_modified()
        return self.request.increment_in(self, key, by, self.request.existing_id)

    def replace(self, data: Mapping[str, Any]) -> None:
        """Replace the data with ``data`` (Litestar's ``set_session``)."""
        self.mark_modified()
        super().clear()
        super().update(data)

    # --- writes -----------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def clear(self) -> None:
        self.mark_modified()
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        self.fill()
        if key in self:
            self.mark_modified()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.mark_modified()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.fill()
        if key not in self:
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override]
        self.mark_modified()
        super().update(other)
        return self
