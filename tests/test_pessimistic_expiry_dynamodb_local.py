"""A pessimistic lock leaves a session's expiry as it was (DynamoDB Local, exact conditional
writes): the lock take sets ``expires`` to now + the load's lifetime (so an orphaned lock
expires, and TTL cannot delete the item under its holder), and whatever gives the lock back
without writing data - a release, an unchanged save whose expiry is not due - puts back the
expiry the item had before the lock.  A read-only request on a session created to live a day
must not cut it to the config's 1440 s, nor stretch a 300 s moved marker to 1440 s."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_sessions import SessionConfig, _core, create_store, new_session_id
from dynamo_sessions.store import SessionStore

from .conftest import make_table
from .handler_support import Clock, raw_item
from .web_support import unique_name

pytestmark = pytest.mark.dynamodb_local

CONFIG_LIFETIME = 1440
DAY = 86400
LOCK_ATTRIBUTES = {"lock", "lock_until_ms", "prior_expires"}


def _store(client: Any, clock: Any = None, **options: Any) -> SessionStore:
    table = f"pexp-{unique_name()}"
    make_table(client, table)
    config = SessionConfig(table_name=table, locking="pessimistic",
                           session_lifetime_seconds=CONFIG_LIFETIME, **options)
    return create_store(config, client, session_name="S", clock=clock)


def _item(store: SessionStore, session_id: str) -> dict[str, Any]:
    item = raw_item(store.client, store.config.table_name, store.item_key(session_id))
    assert item is not None
    return item


def _expires(store: SessionStore, session_id: str) -> int:
    return int(_item(store, session_id)["expires"]["N"])


def _created(store: SessionStore, lifetime: int) -> tuple[str, int]:
    """A stored session living ``lifetime`` seconds: its id and its ``expires``."""
    sid = new_session_id()
    before = int(store.clock())
    store.create(sid, {"a": 1}, lifetime_seconds=lifetime)
    expires = _expires(store, sid)
    assert before + lifetime <= expires <= int(store.clock()) + lifetime  # whole seconds
    return sid, expires


@pytest.mark.parametrize("end", ["release", "unchanged save"])
def test_a_read_only_request_keeps_the_sessions_expiry(ddb_local_client: Any, end: str) -> None:
    store = _store(ddb_local_client)
    sid, created = _created(store, DAY)
    session = store.load(sid)  # no lifetime given: the lock take uses the config's
    assert session.data == {"a": 1}
    assert _expires(store, sid) < created  # while locked: now + 1440 s
    if end == "release":
        store.release(session)
    else:
        store.save(session)  # same bytes; a day to go is far from due for a refresh
    item = _item(store, sid)
    assert int(item["expires"]["N"]) == created
    assert not LOCK_ATTRIBUTES & set(item)
    assert store.load(sid).data == {"a": 1}


@pytest.mark.parametrize(("size", "units"), [(900, 2), (3000, 4)])
def test_putting_the_expiry_back_costs_nothing_more(ddb_local_client: Any, size: int,
                                                    units: int) -> None:
    """The release was a write of the whole item already (charged by its larger image, the
    locked one); setting ``expires`` in it changes nothing: 900 bytes of data make a 993-byte
    item (1 WCU) that is 1059 bytes locked - its release costs 2 WCU, as before the fix."""
    store = _store(ddb_local_client, compress=False)
    sid = new_session_id()
    store.create(sid, {"b": b"x" * size}, lifetime_seconds=DAY)
    for end in (store.release, store.save):
        session = store.load(sid)
        locked = _core.item_size(_item(store, sid))
        store.metrics.reset()
        end(session)
        assert store.metrics.calls == {"UpdateItem": 1}
        assert store.metrics.write_units == _core.write_units(locked) == units


def test_an_unchanged_save_refreshes_a_due_expiry_and_a_release_never_does(
        ddb_local_client: Any) -> None:
    """The refresh rule of every mode: with under half the lifetime left an unchanged save
    gives the session a new lifetime (in the write that gives the lock back anyway).  A
    release has no lifetime to give (callers do not know the session's own): it puts the
    expiry back."""
    clock = Clock()
    store = _store(ddb_local_client, clock)
    sid, created = _created(store, CONFIG_LIFETIME)
    clock.advance(CONFIG_LIFETIME * 0.6)  # 40% left: due
    store.release(store.load(sid))
    assert _expires(store, sid) == created
    store.save(store.load(sid))
    assert _expires(store, sid) == int(clock.now) + CONFIG_LIFETIME
    assert not LOCK_ATTRIBUTES & set(_item(store, sid))


def test_a_moved_marker_keeps_its_expiry_after_a_stale_request_locked_it(
        ddb_local_client: Any) -> None:
    store = _store(ddb_local_client)
    sid, _ = _created(store, DAY)
    old = store.load(sid)
    successor = store.create(new_session_id(), old.data)
    store.retire(old, successor)  # login: the old id becomes a 300 s marker
    marker = _item(store, sid)
    assert set(marker) == {"id", "moved", "expires"}
    stale = store.load(sid)  # a request still carrying the old cookie
    assert stale.moved and stale.data == {}
    store.release(stale)
    assert _item(store, sid) == marker
    stale = store.load(sid)
    store.save(stale, {})  # nothing to store for a moved session: the lock is given back
    assert _item(store, sid) == marker


def test_a_crashed_holders_lock_taken_over_gives_the_session_its_expiry_back(
        ddb_local_client: Any) -> None:
    """A holder that crashed leaves the item with its lock take's expiry (now + 1440 s: the
    orphaned lock expires by itself).  The request that takes the lock over once the lease
    has passed puts back the expiry the session had before the crashed holder's lock."""
    clock = Clock()
    store = _store(ddb_local_client, clock)
    sid, created = _created(store, DAY)
    store.load(sid)  # taken and forgotten: no release, and no renewal once it is gone
    orphaned = _item(store, sid)
    assert "lock" in orphaned and int(orphaned["expires"]["N"]) < created
    clock.advance(store.config.lock_lease_seconds + 5)
    session = store.load(sid)  # the lease has passed: taken over
    assert session.data == {"a": 1}
    store.release(session)
    item = _item(store, sid)
    assert int(item["expires"]["N"]) == created
    assert not LOCK_ATTRIBUTES & set(item)


def test_a_session_whose_own_expiry_passed_under_a_crashed_holder_reads_as_expired(
        ddb_local_client: Any) -> None:
    """Expired is told by the session's own expiry, not by the crashed holder's lock take:
    a session that was to live 100 s is not served 200 s later because a lock (now + 1440 s)
    was left on it; the lock-only remains are deleted at release."""
    clock = Clock()
    store = _store(ddb_local_client, clock)
    sid, _ = _created(store, 100)
    store.load(sid)  # taken and forgotten
    clock.advance(200)
    session = store.load(sid)
    assert session.data == {} and not session.existed
    store.release(session)
    assert raw_item(store.client, store.config.table_name, store.item_key(sid)) is None


def test_a_malformed_prior_expiry_left_by_a_crashed_holder_is_not_taken_for_the_sessions(
        ddb_local_client: Any) -> None:
    """An orphaned lock whose ``prior_expires`` was written badly elsewhere: the session is
    read by its ``expires`` as it stands, and the release leaves a clean item."""
    clock = Clock()
    store = _store(ddb_local_client, clock)
    sid, _ = _created(store, DAY)
    store.load(sid)  # taken and forgotten
    store.client.update_item(
        TableName=store.config.table_name, Key={"id": {"S": store.item_key(sid)}},
        UpdateExpression="SET prior_expires = :bad",
        ExpressionAttributeValues={":bad": {"S": "tomorrow"}})
    orphaned = _expires(store, sid)
    clock.advance(store.config.lock_lease_seconds + 5)
    session = store.load(sid)
    assert session.data == {"a": 1}
    store.release(session)
    item = _item(store, sid)
    assert int(item["expires"]["N"]) == orphaned and not LOCK_ATTRIBUTES & set(item)
