"""An audit of the protocol's DynamoDB calls on DynamoDB Local: a clock 60 s off on the very
first call of a store, and items written badly by someone else.

* Clock: every expiry a store writes (a lock take's, a create's, a blind write's) and every
  expiry it judges (the give-back of an interrupted lock take) follow DynamoDB's clock - also
  on the first call of a fresh store, before any answer has told it the server's time.
* Items: numbers DynamoDB stores but a float cannot hold (an ``expires`` of ``1E+40``, a
  40-digit ``version``) are given back and counted exactly; a ``lock`` that is a map is taken
  by its lease, and one without a lease stays (``LockTimeout``, the item untouched).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dynamo_sessions import LockTimeout, SessionConfig, new_session_id
from dynamo_sessions.clock import ServerClock
from dynamo_sessions.store import SessionStore, create_store

from .conftest import make_table
from .handler_support import FakeTimer, raw_item
from .test_lease_clock import server_date, skewed

pytestmark = pytest.mark.dynamodb_local

MINUTE = 60.0
LIFETIME = 1440
LOCK_ATTRIBUTES = {"lock", "lock_until_ms", "prior_expires"}


@pytest.fixture
def table(ddb_local_client: Any, table_name: str) -> str:
    make_table(ddb_local_client, table_name)
    return table_name


def fresh(client: Any, table: str, mode: str, clock: Any = None, **options: Any) -> SessionStore:
    config = SessionConfig(table_name=table, locking=mode, session_lifetime_seconds=LIFETIME,
                           **options)
    return create_store(config, client, clock=clock)


def item_of(store: SessionStore, sid: str) -> dict[str, Any]:
    item = raw_item(store.client, store.config.table_name, store.item_key(sid))
    assert item is not None
    return item


# --- the first call of a store, on a clock 60 s off -------------------------------------------


def _first_write(store: SessionStore, sid: str, how: str) -> None:
    if how == "lock take":
        store.load(sid)  # the lock take's expiry: now + the lifetime
    elif how == "create":
        store.create(sid, {"a": 1})
    else:  # a write of a session not read first (the PHP handler's write without read)
        store.save(store.load_for_write(sid), {"a": 1})


@pytest.mark.parametrize("skew", [MINUTE, -MINUTE], ids=["fast", "slow"])
@pytest.mark.parametrize(("mode", "how"), [
    ("pessimistic", "lock take"), ("none", "create"), ("optimistic", "create"),
    ("pessimistic", "create"), ("none", "blind write")])
def test_the_first_expiry_a_fresh_store_writes_is_on_dynamodbs_clock(
        ddb_local_client: Any, table: str, skew: float, mode: str, how: str) -> None:
    """A store's first call dates its item by the server's clock, not this machine's 60 s
    off: a session neither lives a minute longer nor dies a minute early (with a short
    lifetime, a lock take dated by a slow clock would already have expired)."""
    store = fresh(ddb_local_client, table, mode, skewed(skew))
    sid = new_session_id()
    first = server_date(ddb_local_client)
    _first_write(store, sid, how)
    last = server_date(ddb_local_client) + 1
    expires = int(item_of(store, sid)["expires"]["N"])
    assert first + LIFETIME - 2 <= expires <= last + LIFETIME


@pytest.mark.parametrize("skew", [MINUTE, -MINUTE], ids=["fast", "slow"])
def test_a_skewed_store_gives_back_the_expiry_and_dates_the_marker_by_dynamodb(
        ddb_local_client: Any, table: str, skew: float) -> None:
    """A fresh store 60 s off: a read-only request gives the session back its own expiry as
    stored (no clock involved), and a login's moved marker lives 300 s by the server's clock
    (not 240 s or 360 s)."""
    from dynamo_sessions.store import MOVED_MARKER_SECONDS

    writer = fresh(ddb_local_client, table, "pessimistic")
    sid = new_session_id()
    writer.create(sid, {"user": "ann"}, lifetime_seconds=3 * LIFETIME)
    stored = item_of(writer, sid)
    store = fresh(ddb_local_client, table, "pessimistic", skewed(skew))
    store.release(store.load(sid))
    assert item_of(store, sid) == stored
    old = store.load(sid)
    first = server_date(ddb_local_client)
    store.retire(old, store.create(new_session_id(), old.data))
    last = server_date(ddb_local_client) + 1
    expires = int(item_of(store, sid)["expires"]["N"])
    assert first + MOVED_MARKER_SECONDS - 2 <= expires <= last + MOVED_MARKER_SECONDS


class Interrupting:
    """Raises ``KeyboardInterrupt`` once, just after DynamoDB applied the first UpdateItem (a
    lock take: the caller never sees its answer - Ctrl-C, a worker's timeout)."""

    def __init__(self, client: Any) -> None:
        self.fired = 0
        client.meta.events.register("after-call.dynamodb.UpdateItem", self._after)

    def _after(self, http_response: Any, **_: Any) -> None:
        if not self.fired and http_response.status_code == 200:  # the store's first: a take
            self.fired += 1
            raise KeyboardInterrupt


@pytest.mark.parametrize("skew", [MINUTE, -MINUTE], ids=["fast", "slow"])
def test_an_interrupted_first_lock_take_judges_expiry_by_dynamodbs_clock(
        dynamodb_local: Any, ddb_local_client: Any, table: str, skew: float) -> None:
    """A session with 30 s to live, by the server's clock; a fresh store 60 s fast takes its
    lock and is interrupted before it sees the answer: the give-back must not take the live
    session for an expired one (and delete it) - its data and its expiry stay as they were."""
    from dynamo_sessions.testing.servers import local_client

    writer = fresh(ddb_local_client, table, "pessimistic")
    sid = new_session_id()
    writer.create(sid, {"user": "ann"}, lifetime_seconds=30)
    stored = item_of(writer, sid)
    client = local_client(dynamodb_local.endpoint_url)
    interrupting = Interrupting(client)
    store = fresh(client, table, "pessimistic", skewed(skew))
    with pytest.raises(KeyboardInterrupt):
        store.load(sid)
    assert interrupting.fired == 1
    assert item_of(store, sid) == stored  # no lock left, nothing deleted, expiry as it was


# --- items written badly elsewhere ------------------------------------------------------------


def _put(store: SessionStore, sid: str, **attributes: Any) -> dict[str, Any]:
    """The session ``sid`` stored as a writer would, then ``attributes`` set by hand."""
    store.create(sid, {"user": "ann"})
    item = {**item_of(store, sid), **attributes}
    store.client.put_item(TableName=store.config.table_name, Item=item)
    return item_of(store, sid)


@pytest.mark.parametrize("value", ["1E+40", "12345678901234567890123456789012345678"])
@pytest.mark.parametrize("end", ["release", "unchanged save"])
def test_an_expiry_no_float_holds_is_given_back_exactly(ddb_local_client: Any, table: str,
                                                        value: str, end: str) -> None:
    """An ``expires`` DynamoDB stores (38 digits) but a float rounds: a read-only request
    gives it back as stored - a rounded one has more than 38 digits, DynamoDB refuses the
    release, and the lock blocks the session for a whole lease."""
    store = fresh(ddb_local_client, table, "pessimistic")
    sid = new_session_id()
    stored = _put(store, sid, expires={"N": value})
    store.metrics.reset()
    session = store.load(sid)
    assert session.data == {"user": "ann"}
    if end == "release":
        store.release(session)
    else:
        store.save(session)
    assert item_of(store, sid) == stored
    assert store.metrics.calls == {"UpdateItem": 2}  # the take, and one give-back: no retry


@pytest.mark.parametrize("mode", ["none", "optimistic"])
def test_a_version_no_float_holds_is_counted_exactly(ddb_local_client: Any, table: str,
                                                     mode: str) -> None:
    """A 38-digit ``version``: the next write is conditional on it as stored and writes it
    plus one - a rounded version never matches, and every write would end in
    ``SessionConflict`` after ``max_write_retries`` refused attempts."""
    store = fresh(ddb_local_client, table, mode, max_write_retries=2)
    sid = new_session_id()
    huge = 12345678901234567890123456789012345678
    _put(store, sid, version={"N": str(huge)})
    session = store.load(sid)
    session.increment("visits")
    assert store.save(session)
    item = item_of(store, sid)
    assert int(item["version"]["N"]) == huge + 1
    assert store.metrics.failed_writes == 0
    assert store.load(sid).data == {"user": "ann", "visits": 1}


def test_a_lock_that_is_a_map_is_judged_by_its_lease(ddb_local_client: Any,
                                                     table: str) -> None:
    """A ``lock`` of another type (a map) with a lapsed lease is taken over like any lapsed
    lock, and the release leaves a clean item."""
    store = fresh(ddb_local_client, table, "pessimistic")
    sid = new_session_id()
    lapsed = str(int((time.time() - 60) * 1000))
    _put(store, sid, lock={"M": {"owner": {"S": "x"}}}, lock_until_ms={"N": lapsed})
    session = store.load(sid)
    assert session.data == {"user": "ann"}
    store.release(session)
    assert not LOCK_ATTRIBUTES & set(item_of(store, sid))


@pytest.mark.parametrize("lock", [{"M": {}}, {"BOOL": True}], ids=["map", "php-flag"])
def test_a_lock_without_a_lease_is_not_taken_and_not_touched(ddb_local_client: Any, table: str,
                                                             lock: dict[str, Any]) -> None:
    """A lock without ``lock_until_ms`` (the PHP handler's bare flag, or a map) is not ours
    to judge (README: never taken over): ``LockTimeout``, typed, and the item is untouched."""
    store = fresh(ddb_local_client, table, "pessimistic", max_lock_wait_seconds=0.05)
    FakeTimer().install(store)
    sid = new_session_id()
    stored = _put(store, sid, lock=lock)
    with pytest.raises(LockTimeout):
        store.load(sid)
    assert item_of(store, sid) == stored


def test_dynamodb_refuses_a_rounded_huge_expiry(ddb_local_client: Any, table: str) -> None:
    """Why a float cannot carry ``expires`` back: DynamoDB refuses what it rounds to."""
    rounded = str(int(float("1E+40")))
    with pytest.raises(ClientError, match="38 digits"):
        ddb_local_client.put_item(TableName=table, Item={"id": {"S": "x"},
                                                         "expires": {"N": rounded}})
    assert isinstance(fresh(ddb_local_client, table, "none").clock, ServerClock)


@pytest.mark.parametrize("mode", ["none", "pessimistic", "optimistic"])
def test_a_negative_expiry_is_an_expired_session_and_no_data_is_no_session(
        ddb_local_client: Any, table: str, mode: str) -> None:
    """``expires`` below zero is long past (TTL's reading too): the session is expired - not
    served, no error - and, as any expired one, deleted on read.  An item without ``data``
    (a lock-only item looks the same) holds no session: read as none, no lock left."""
    store = fresh(ddb_local_client, table, mode)
    expired, bare = new_session_id(), new_session_id()
    _put(store, expired, expires={"N": "-5"})
    stored = _put(store, bare)
    del stored["data"]
    store.client.put_item(TableName=table, Item=stored)
    for sid in (expired, bare):
        session = store.load(sid)
        assert session.data == {} and not session.existed
        store.release(session)
    assert raw_item(store.client, table, store.item_key(expired)) is None
    if mode != "pessimistic":  # a pessimistic release deletes a lock-only item
        assert item_of(store, bare) == stored
    else:
        assert raw_item(store.client, table, store.item_key(bare)) is None


@pytest.mark.parametrize("mode", ["none", "pessimistic", "optimistic"])
def test_a_session_holding_a_moved_flag_is_corrupt_not_an_empty_session(
        ddb_local_client: Any, table: str, mode: str) -> None:
    """A ``moved`` attribute on an item that holds data (a hand edit: a login's marker never
    has any) - not served as a moved session (empty, silently), but ``CorruptSession``, with
    the item left exactly as it was and no lock."""
    from dynamo_sessions import CorruptSession

    store = fresh(ddb_local_client, table, mode)
    sid = new_session_id()
    stored = _put(store, sid, moved={"BOOL": True})
    for _ in range(2):
        with pytest.raises(CorruptSession):
            store.load(sid)
        assert item_of(store, sid) == stored


@pytest.mark.parametrize("prior", [{"N": "5"}, {"NULL": True}], ids=["past", "null"])
def test_a_stray_prior_expiry_on_an_unlocked_item_is_not_the_sessions(
        ddb_local_client: Any, table: str, prior: dict[str, Any]) -> None:
    """``prior_expires`` belongs to a lock; on an unlocked item (a hand edit, a copy of a
    locked item) it says nothing: the live session is served and kept - read by that value
    it would be expired, and its release would delete it."""
    store = fresh(ddb_local_client, table, "pessimistic")
    sid = new_session_id()
    stored = _put(store, sid, prior_expires=prior)
    session = store.load(sid)
    assert session.data == {"user": "ann"}
    store.release(session)
    item = item_of(store, sid)
    assert item == {name: value for name, value in stored.items() if name != "prior_expires"}
