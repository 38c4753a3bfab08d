"""Lifetime per save: a session's expiry and its refresh threshold follow the lifetime its
request gave it (``load`` / ``save`` / ``create(..., lifetime_seconds=)``), not only the
config's - so adapters need no store per lifetime.  On moto (single requests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dynamo_sessions import SessionConfig, create_store, new_session_id
from dynamo_sessions.clock import ServerClock
from dynamo_sessions.store import SessionStore

from .conftest import make_table
from .handler_support import Clock, raw_item

MODES = ["none", "pessimistic", "optimistic"]


@pytest.fixture
def client(moto_client: Any, table_name: str) -> Iterator[Any]:
    make_table(moto_client, table_name)
    yield moto_client


def _store(client: Any, table: str, mode: str, clock: Any = None, **options: Any) -> SessionStore:
    config = SessionConfig(table_name=table, locking=mode, session_lifetime_seconds=1000,
                           expiry_refresh_fraction=0.5, **options)
    return create_store(config, client, session_name="S", clock=clock)


def _expires(store: SessionStore, session_id: str) -> int:
    item = raw_item(store.client, store.config.table_name, store.item_key(session_id))
    assert item is not None
    return int(item["expires"]["N"])


@pytest.mark.parametrize("mode", MODES)
def test_saved_with_lifetime_60_expires_a_minute_later_by_the_servers_clock(
        client: Any, table_name: str, mode: str) -> None:
    store = _store(client, table_name, mode)  # the default ServerClock
    assert isinstance(store.clock, ServerClock)
    sid = new_session_id()
    session = store.load(sid)
    before = store.clock.earliest()
    store.save(session, {"user": 1}, lifetime_seconds=60)
    bounds = store.clock.bounds()
    assert bounds is not None
    # expires = int(now) + 60, now within the clock's bounds between the two readings
    assert int(before) - 1 + 60 <= _expires(store, sid) <= bounds[1] + 60
    assert session.lifetime_seconds == 60


@pytest.mark.parametrize("mode", MODES)
def test_load_create_and_save_give_their_lifetime(client: Any, table_name: str,
                                                  mode: str) -> None:
    clock = Clock()
    store = _store(client, table_name, mode, clock)
    sid = new_session_id()
    created = store.create(sid, {"a": 1}, lifetime_seconds=120)
    assert created.lifetime_seconds == 120
    assert _expires(store, sid) == int(clock.now) + 120
    clock.advance(100)  # 20 s left: below half of 120, a refresh is due
    session = store.load(sid, lifetime_seconds=60)
    assert session.lifetime_seconds == 60
    if mode == "pessimistic":  # the lock take already sets the new expiry
        assert _expires(store, sid) == int(clock.now) + 60
    store.save(session, {"a": 2})
    assert _expires(store, sid) == int(clock.now) + 60
    session = store.load(sid)  # no lifetime: the config's
    assert session.lifetime_seconds is None
    store.save(session, {"a": 3})
    assert _expires(store, sid) == int(clock.now) + 1000
    session = store.load(sid, lifetime_seconds=30)
    store.save(session, {"a": 4}, lifetime_seconds=90)  # the save's lifetime wins
    assert session.lifetime_seconds == 90
    assert _expires(store, sid) == int(clock.now) + 90


@pytest.mark.parametrize("mode", ["none", "optimistic"])
def test_refresh_threshold_follows_the_sessions_lifetime(client: Any, table_name: str,
                                                         mode: str) -> None:
    clock = Clock()
    store = _store(client, table_name, mode, clock)
    sid = new_session_id()
    store.save(store.load(sid, lifetime_seconds=60), {"a": 1})
    written = _expires(store, sid)
    assert written == int(clock.now) + 60
    clock.advance(20)  # 40 s left of 60: above half, unchanged data writes nothing
    store.save(store.load(sid, lifetime_seconds=60))
    assert _expires(store, sid) == written
    # (with the config's lifetime of 1000 s the threshold is 500 s: due at once)
    store.save(store.load(sid))
    assert _expires(store, sid) == int(clock.now) + 1000
    clock.advance(10)
    session = store.load(sid)
    store.save(session, lifetime_seconds=60)  # 990 s left: over any threshold of 60 s
    written = _expires(store, sid)
    assert written == int(clock.now) - 10 + 1000
    clock.advance(written - clock.now - 29)  # 29 s left: below half of 60
    store.save(store.load(sid, lifetime_seconds=60))
    assert _expires(store, sid) == int(clock.now) + 60
