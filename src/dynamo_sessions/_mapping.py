"""The I/O-free faces of :class:`request.RequestSession`: the dict interface (every access
loads on first use) and what its state tells - ids, counters, the cookie decisions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .merge import Number
from .protocol.ids import new_session_id
from .protocol.item import LoadedSession


class SessionMapping:
    """Dict methods over ``_ensure()`` (the data, loaded on first access); writes set
    ``modified``."""

    modified: bool
    _data: dict[str, Any] | None

    def _ensure(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self._ensure()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._ensure()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._ensure()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ensure()))

    def __len__(self) -> int:
        return len(self._ensure())

    def __contains__(self, key: object) -> bool:
        return key in self._ensure()

    def __bool__(self) -> bool:
        return bool(self._ensure())

    def __repr__(self) -> str:
        state = repr(self._data) if self._data is not None else "<not loaded>"
        return f"<{type(self).__name__} {state}>"

    def get(self, key: str, default: Any = None) -> Any:
        return self._ensure().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        data = self._ensure()
        if key not in data:
            self.modified = True
        return data.setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        data = self._ensure()
        if key in data:
            self.modified = True
        return data.pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._ensure().update(*args, **kwargs)
        self.modified = True

    def clear(self) -> None:
        self._ensure().clear()
        self.modified = True

    def keys(self) -> Any:
        return self._ensure().keys()

    def values(self) -> Any:
        return self._ensure().values()

    def items(self) -> Any:
        return self._ensure().items()

    def copy(self) -> dict[str, Any]:
        return dict(self._ensure())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SessionMapping):
            return self._ensure() == other._ensure()
        return self._ensure() == other

    __hash__ = None  # type: ignore[assignment]


class SessionState(SessionMapping):
    """What one request's session state tells, without a call: ids, counters, cookies."""

    cookie_present: bool
    gone: bool
    moved: bool
    _held: LoadedSession | None
    _existing_id: str | None
    _new_id: str | None
    _failure: BaseException | None

    @property
    def loaded(self) -> bool:
        """The session was read (or started empty) in this request."""
        return self._data is not None

    @property
    def lock_failed(self) -> bool:
        return self._failure is not None

    @property
    def new(self) -> bool:
        """No stored session is behind this one (yet)."""
        self._ensure()
        return self._existing_id is None

    @property
    def existing_id(self) -> str | None:
        """The id of the stored session this request holds (None: none)."""
        return self._existing_id

    @property
    def id(self) -> str | None:
        """The session id the client holds or will get; None for a new session not yet given
        one (an id is given only when the session is stored)."""
        return self._new_id or self._existing_id

    def ensure_id(self) -> str:
        """The session's id, giving a new session one now (for a cookie sent up front)."""
        self._ensure()
        current = self.id
        if current is None:
            current = self._new_id = new_session_id()
        return current

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent); return the new value here.

        Unlike ``session[key] += by``, no concurrent request's increment is ever lost, in any
        locking mode; raises :class:`NotACounter` for a value that is not an int or float.
        """
        value = self.increment_in(self._ensure(), key, by, self._existing_id)
        self.modified = True
        return value

    def increment_in(self, data: dict[str, Any], key: str, by: Number,
                     session_id: str | None) -> Number:
        """``increment`` on ``data`` (an adapter's own dict), counted on the held session
        when it is ``session_id``'s - so the delta travels with its save, never lost."""
        held = self._held
        counter = held if held is not None and held.session_id == session_id \
            else LoadedSession("", "", data)
        counter.data = data
        return counter.increment(key, by)

    @property
    def needs_cookie(self) -> bool:
        """The client must be sent a (new) id: a new or regenerated session holding data."""
        if self._data is None or not self._data or self.gone or self.moved:
            return False
        return self._new_id is not None or self._existing_id is None

    @property
    def needs_cookie_deleted(self) -> bool:
        """The client holds a cookie for a session that no longer exists or never did (and
        was not moved: the client then holds the new id already)."""
        if self._data is None or not self.cookie_present or self.moved or self.needs_cookie:
            return False
        return self.gone or not self._data

    @property
    def held_data(self) -> dict[str, Any] | None:
        """The data of the session held (after ``delete`` retired an old id: merged)."""
        return self._held.data if self._held is not None else None
