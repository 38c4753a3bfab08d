"""A session's lifetime travels with each load, save and create (moto, single requests): one
store serves every lifetime, and the expiry refresh follows the session's own lifetime."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_sessions import ConfigError, SessionConfig, create_store, new_session_id
from dynamo_sessions.config import MAX_LIFETIME_SECONDS
from dynamo_sessions.store import SessionStore

from .conftest import make_table
from .handler_support import Clock, raw_item
from .web_support import CallCounter

MODES = ["none", "optimistic", "pessimistic"]
CONFIG_LIFETIME = 1440


@pytest.fixture(params=MODES)
def store(request: pytest.FixtureRequest, moto_client: Any, table_name: str) -> SessionStore:
    make_table(moto_client, table_name)
    return create_store(SessionConfig(table_name=table_name, locking=request.param,
                                      session_lifetime_seconds=CONFIG_LIFETIME),
                        moto_client, "S", Clock())


def expires_in(store: SessionStore, session_id: str) -> int:
    item = raw_item(store.client, store.config.table_name, store.item_key(session_id))
    assert item is not None
    return int(item["expires"]["N"]) - int(store.clock())


def test_create_and_save_take_the_lifetime_given(store: SessionStore) -> None:
    sid = new_session_id()
    created = store.create(sid, {"a": 1}, lifetime_seconds=60)
    assert created.lifetime_seconds == 60
    assert expires_in(store, sid) == 60
    session = store.load(sid, lifetime_seconds=7200)
    store.save(session, {"a": 2})
    assert expires_in(store, sid) == 7200
    session = store.load(sid)
    store.save(session, {"a": 3}, lifetime_seconds=90)
    assert expires_in(store, sid) == 90
    session = store.load(sid)
    store.save(session, {"a": 4})  # None: the config's lifetime again
    assert expires_in(store, sid) == CONFIG_LIFETIME


def test_a_lock_take_sets_the_expiry_from_the_lifetime(moto_client: Any,
                                                       table_name: str) -> None:
    make_table(moto_client, table_name)
    store = create_store(SessionConfig(table_name=table_name, locking="pessimistic"),
                         moto_client, "S", Clock())
    sid = new_session_id()
    store.create(sid, {"a": 1})
    held = store.load(sid, lifetime_seconds=86400)
    assert expires_in(store, sid) == 86400  # while locked, TTL must not take it earlier
    store.release(held)


@pytest.mark.parametrize(("lifetime", "refreshed"), [(100, False), (None, True)])
def test_the_refresh_threshold_follows_the_sessions_lifetime(
        store: SessionStore, lifetime: int | None, refreshed: bool) -> None:
    """Unchanged data 60 s after a write with 100 s to go: over half of a 100 s lifetime is
    left (no write), under half of the config's 1440 s (the expiry is refreshed)."""
    sid = new_session_id()
    store.create(sid, {"a": 1}, lifetime_seconds=100)
    store.clock.advance(40)  # type: ignore[attr-defined]
    session = store.load(sid, lifetime_seconds=lifetime)
    counter = CallCounter(store.client)
    store.save(session)
    writes = counter.calls["UpdateItem"]
    # the pessimistic release is a write anyway: it carries a due refresh, else the expiry
    # the session had before the lock (the same expiry as in every mode)
    assert writes == (1 if refreshed or store.locking == "pessimistic" else 0)
    assert expires_in(store, sid) == (CONFIG_LIFETIME if refreshed else 60)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "60", MAX_LIFETIME_SECONDS + 1, 10**40])
def test_a_lifetime_that_is_not_positive_whole_seconds_is_refused(store: SessionStore,
                                                                  bad: Any) -> None:
    sid = new_session_id()
    counter = CallCounter(store.client)
    with pytest.raises(ConfigError, match="lifetime_seconds"):
        store.create(sid, {"a": 1}, lifetime_seconds=bad)
    with pytest.raises(ConfigError, match="lifetime_seconds"):
        store.load(sid, lifetime_seconds=bad)
    session = store.load_for_write(sid) if store.locking == "none" else None
    if session is not None:
        with pytest.raises(ConfigError, match="lifetime_seconds"):
            store.save(session, {"a": 1}, lifetime_seconds=bad)
    assert counter.total == 0


def test_the_configured_lifetime_is_bounded_so_that_an_expiry_fits_a_dynamodb_number() -> None:
    assert SessionConfig(session_lifetime_seconds=MAX_LIFETIME_SECONDS)
    for bad in (MAX_LIFETIME_SECONDS + 1, 10**40):
        with pytest.raises(ConfigError, match="session_lifetime_seconds"):
            SessionConfig(session_lifetime_seconds=bad)
