"""The dict interface of :class:`request.RequestSession`: every access loads on first use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


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
