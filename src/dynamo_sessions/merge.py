"""Three-way merge of two requests' versions of one session, against the version both read.

``merge(base, ours, theirs)``: ``base`` is the session as this request read it, ``ours`` what
this request wants to write, ``theirs`` what another request wrote meanwhile.  Per key:

* changed on one side only: that side's value (a removal is a change);
* changed on both sides to equal values: that value (two tabs making the very same list count
  once);
* both sides dicts: merged key by key, recursively;
* both sides lists: both sides' insertions and removals are kept (two tabs' flash messages or
  cart additions both survive; an element removed on either side is removed; an element changed
  in place on both sides keeps both versions);
* a list or dict emptied or removed on one side and changed on the other: what the other side
  added survives (a tab that consumed the flashes while another added one leaves only the new
  one); the key is dropped when nothing is left;
* a scalar changed on both sides (or a type changed): ``ours`` - the later writer wins.

Counters (``increments``: key -> delta this request added with ``increment``) are applied as
deltas: ``theirs + delta``, so no increment is ever lost - unless this request also assigned
the key (its value is then no longer ``base + delta``), when the later-writer rule applies.

Values are those a session stores (None, bool, int, float, str, bytes, list, dict with str
keys, aware datetime); lists may hold unhashable dicts.  Tuples compare equal to lists (they
are stored as lists).  Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
from collections.abc import Hashable, Mapping
from typing import Any

Number = int | float

_MISSING: Any = object()


def canonical(value: Any) -> Hashable:
    """A hashable, type-tagged form of a session value: equal exactly when the stored values
    are equal (``1``, ``1.0`` and ``True`` differ; a tuple equals the list it is stored as)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, float):
        return ("f", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("y", bytes(value))
    if value is None:
        return ("n",)
    if isinstance(value, (list, tuple)):
        return ("l", tuple(canonical(item) for item in value))
    if isinstance(value, Mapping):
        return ("d", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, _dt.datetime):
        return ("t", value.timestamp())
    return ("?", repr(value))


def same(a: Any, b: Any) -> bool:
    """Equal as stored (see :func:`canonical`)."""
    if a is b:
        return True
    return canonical(a) == canonical(b)


def is_number(value: Any) -> bool:
    """An int or float, not a bool: what :func:`increment` accepts."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def merge(base: Mapping[str, Any], ours: Mapping[str, Any], theirs: Mapping[str, Any],
          increments: Mapping[str, Number] | None = None) -> dict[str, Any]:
    """The merged session; see the module docstring for the rules."""
    merged = _merge_dicts(base, ours, theirs)
    for key, delta in (increments or {}).items():
        start = base.get(key, 0)
        start = start if is_number(start) else 0
        if not _counted(ours.get(key), start + delta):
            continue  # assigned or removed by this request too: the later-writer rule
        current = theirs.get(key, 0)
        if is_number(current):
            merged[key] = current + delta
    return merged


def _counted(value: Any, expected: Number) -> bool:
    """``value`` is what the increments alone made of the base value (float sums may differ
    in their last bits with the order of the additions)."""
    if not is_number(value):
        return False
    if isinstance(value, float) or isinstance(expected, float):
        return math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12)
    return bool(value == expected)


def _merge_dicts(base: Mapping[str, Any], ours: Mapping[str, Any],
                 theirs: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in _ordered_keys(theirs, ours, base):
        value = _merge_values(base.get(key, _MISSING), ours.get(key, _MISSING),
                              theirs.get(key, _MISSING))
        if value is not _MISSING:
            merged[key] = value
    return merged


def _ordered_keys(*mappings: Mapping[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for mapping in mappings:
        for key in mapping:
            seen.setdefault(key, None)
    return list(seen)


def _merge_values(base: Any, ours: Any, theirs: Any) -> Any:
    if _same_or_missing(ours, base):
        return theirs
    if _same_or_missing(theirs, base) or _same_or_missing(ours, theirs):
        return ours
    # Changed on both sides, differently.  A container removed on one side counts as emptied.
    kind = _container_kind(base, ours, theirs)
    if kind is dict:
        result: Any = _merge_dicts(_as(base, dict), _as(ours, dict), _as(theirs, dict))
    elif kind is list:
        result = _merge_lists(_as(base, list), _as(ours, list), _as(theirs, list))
    else:
        return ours  # scalars (or a type change): the later writer wins
    if not result and (ours is _MISSING or theirs is _MISSING):
        return _MISSING
    return result


def _same_or_missing(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return same(a, b)


def _container_kind(*values: Any) -> type | None:
    present = [value for value in values if value is not _MISSING]
    if all(isinstance(value, Mapping) for value in present):
        return dict
    if all(isinstance(value, (list, tuple)) for value in present):
        return list
    return None


def _as(value: Any, kind: type) -> Any:
    return kind() if value is _MISSING else value


def _merge_lists(base: list[Any], ours: list[Any], theirs: list[Any]) -> list[Any]:
    """Both sides' edits of ``base``: removals from either side, insertions from both
    (``theirs`` first at the same place: they were written first)."""
    base_keys = [canonical(item) for item in base]
    removed: set[int] = set()
    inserted: list[list[Any]] = [[] for _ in range(len(base) + 1)]
    for side in (theirs, ours):
        matcher = difflib.SequenceMatcher(None, base_keys, [canonical(item) for item in side],
                                          autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            removed.update(range(i1, i2))
            inserted[i1].extend(side[j1:j2])
    merged: list[Any] = []
    for index, item in enumerate(base):
        merged.extend(inserted[index])
        if index not in removed:
            merged.append(item)
    merged.extend(inserted[len(base)])
    return merged
