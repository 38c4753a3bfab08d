"""The three-way session merge (``merge.py``): pure functions, no DynamoDB."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dynamo_sessions import NotACounter
from dynamo_sessions.merge import canonical, merge, same
from dynamo_sessions.store import LoadedSession

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=4),
    max_leaves=12,
)
sessions = st.dictionaries(st.text(max_size=6), values, max_size=6)
no_deadline = settings(deadline=None)  # a shared 2-core CI box: no per-example timer


def multiset(items: list[Any]) -> Counter[Any]:
    return Counter(canonical(item) for item in items)


# --- properties -------------------------------------------------------------------------------


@given(sessions, sessions)
@no_deadline
def test_only_ours_changed_gives_ours(base: dict[str, Any], ours: dict[str, Any]) -> None:
    assert same(merge(base, ours, base), ours)


@given(sessions, sessions)
@no_deadline
def test_only_theirs_changed_gives_theirs(base: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert same(merge(base, base, theirs), theirs)


@given(sessions, sessions)
@no_deadline
def test_both_made_the_same_change(base: dict[str, Any], both: dict[str, Any]) -> None:
    assert same(merge(base, both, both), both)


@given(st.lists(values, max_size=6), st.lists(values, max_size=4), st.lists(values, max_size=4),
       st.integers(0, 6), st.integers(0, 6))
@settings(max_examples=300, deadline=None)
def test_both_sides_list_insertions_survive(base: list[Any], ours_new: list[Any],
                                            theirs_new: list[Any], at_ours: int,
                                            at_theirs: int) -> None:
    """Whatever each side inserted (anywhere) is in the merge, and so is the whole base -
    unless both sides made the very same list, which counts once (as any equal change)."""
    ours = base[:at_ours] + ours_new + base[at_ours:]
    theirs = base[:at_theirs] + theirs_new + base[at_theirs:]
    assume(not same(ours, theirs))
    merged = merge({"l": base}, {"l": ours}, {"l": theirs})["l"]
    assert multiset(merged) == multiset(base) + multiset(ours_new) + multiset(theirs_new)


@given(st.lists(st.integers(0, 20), min_size=1, max_size=8, unique=True), st.data())
@no_deadline
def test_removals_from_either_side_are_removed(base: list[int], data: st.DataObject) -> None:
    """(Distinct elements: two sides removing one of two equal elements is the same edit.)"""
    drop_ours = data.draw(st.sets(st.integers(0, len(base) - 1)))
    drop_theirs = data.draw(st.sets(st.integers(0, len(base) - 1)))
    ours = [item for index, item in enumerate(base) if index not in drop_ours]
    theirs = [item for index, item in enumerate(base) if index not in drop_theirs]
    merged = merge({"l": base}, {"l": ours}, {"l": theirs}).get("l", [])
    kept = [item for index, item in enumerate(base)
            if index not in drop_ours and index not in drop_theirs]
    assert multiset(merged) == multiset(kept)


@given(st.integers(-1000, 1000), st.lists(st.integers(-50, 50), max_size=5),
       st.integers(-1000, 1000))
@no_deadline
def test_increments_are_added_onto_the_newer_value(start: int, deltas: list[int],
                                                   theirs: int) -> None:
    session = LoadedSession("s", "k", {"n": start})
    for delta in deltas:
        session.increment("n", delta)
    merged = merge({"n": start}, session.data, {"n": theirs}, session.increments)
    assert merged["n"] == theirs + sum(deltas)


# --- the cases the merge exists for -----------------------------------------------------------


def test_two_tabs_flash_messages_both_survive() -> None:
    base = {"_flashes": [["message", "saved"]]}
    ours = {"_flashes": [["message", "saved"], ["message", "from A"]]}
    theirs = {"_flashes": [["message", "saved"], ["message", "from B"]]}
    assert merge(base, ours, theirs) == {
        "_flashes": [["message", "saved"], ["message", "from B"], ["message", "from A"]]}


def test_consumed_flashes_leave_only_the_one_added_meanwhile() -> None:
    """Flask pops ``_flashes`` when they are shown; another tab added one meanwhile."""
    base = {"_flashes": [["message", "old"]], "user": "ada"}
    ours = {"user": "ada"}
    theirs = {"_flashes": [["message", "old"], ["message", "new"]], "user": "ada"}
    assert merge(base, ours, theirs) == {"_flashes": [["message", "new"]], "user": "ada"}
    # ...and when nothing was added, the consumed key stays gone
    assert merge(base, ours, base) == {"user": "ada"}
    assert merge(base, ours, {"user": "ada", "_flashes": []}) == {"user": "ada"}


def test_cart_of_unhashable_items_merges_additions_and_removals() -> None:
    pen, ink, pad, cap = ({"sku": s, "qty": 1} for s in ("pen", "ink", "pad", "cap"))
    base = {"cart": [pen, ink]}
    ours = {"cart": [pen, ink, pad]}         # tab A adds a pad
    theirs = {"cart": [ink, cap]}            # tab B removes the pen, adds a cap
    assert merge(base, ours, theirs) == {"cart": [ink, cap, pad]}


def test_an_element_changed_in_place_on_both_sides_keeps_both_versions() -> None:
    base = {"cart": [{"sku": "pen", "qty": 1}]}
    ours = {"cart": [{"sku": "pen", "qty": 2}]}
    theirs = {"cart": [{"sku": "pen", "qty": 3}]}
    assert merge(base, ours, theirs) == {"cart": [{"sku": "pen", "qty": 3},
                                                  {"sku": "pen", "qty": 2}]}


def test_nested_dicts_merge_key_by_key() -> None:
    base = {"prefs": {"theme": "dark", "lang": "en"}}
    ours = {"prefs": {"theme": "light", "lang": "en"}}
    theirs = {"prefs": {"theme": "dark", "lang": "fr", "tz": "UTC"}}
    assert merge(base, ours, theirs) == {"prefs": {"theme": "light", "lang": "fr", "tz": "UTC"}}


def test_scalar_changed_on_both_sides_keeps_the_later_writer() -> None:
    assert merge({"a": 1}, {"a": 2}, {"a": 3}) == {"a": 2}
    assert merge({"a": 1}, {}, {"a": 3}) == {}                   # our removal wins
    assert merge({"a": 1}, {"a": 2}, {}) == {"a": 2}             # our change wins
    assert merge({}, {"a": 2}, {"a": 3}) == {"a": 2}
    assert merge({"a": [1]}, {"a": "x"}, {"a": [1, 2]}) == {"a": "x"}  # type change


def test_equality_is_by_stored_value() -> None:
    """``True``, ``1`` and ``1.0`` are different stored values; a tuple is stored as a list."""
    assert merge({"a": 1}, {"a": True}, {"b": 0, "a": 1}) == {"a": True, "b": 0}
    assert merge({"a": [1, 2]}, {"a": (1, 2)}, {"a": [1, 2, 3]}) == {"a": [1, 2, 3]}


def test_an_assigned_counter_follows_the_later_writer_rule() -> None:
    session = LoadedSession("s", "k", {"n": 5})
    session.increment("n")
    session.data["n"] = 100  # assigned after the increment: the assignment is what counts
    assert merge({"n": 5}, session.data, {"n": 9}, session.increments) == {"n": 100}
    del session.data["n"]
    assert merge({"n": 5}, session.data, {"n": 9}, session.increments) == {}


def test_float_increments_are_deltas_too() -> None:
    session = LoadedSession("s", "k", {"x": 0.1})
    for _ in range(3):
        session.increment("x", 0.1)
    merged = merge({"x": 0.1}, session.data, {"x": 1.0}, session.increments)
    assert merged["x"] == pytest.approx(1.3)


def test_increment_refuses_non_numbers() -> None:
    session = LoadedSession("s", "k", {"name": "ada", "flag": True})
    for key, by in (("name", 1), ("flag", 1), ("n", "1"), ("n", True)):
        with pytest.raises(NotACounter):
            session.increment(key, by)  # type: ignore[arg-type]
    assert session.data == {"name": "ada", "flag": True} and session.increments == {}
