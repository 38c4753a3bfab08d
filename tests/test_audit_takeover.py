"""An audit of the pessimistic lock take on DynamoDB Local: the take whose answer was lost (the
fault proxy drops it after DynamoDB applied it; botocore retries) and the take interrupted in
flight (``KeyboardInterrupt`` once DynamoDB answered) must give back the session's own expiry -
also when the take took over the lock of a holder that crashed.

A crashed holder leaves its take's expiry (now + the lifetime) and the session's own in
``prior_expires``.  The request taking over must keep that one: a take that overwrote it with
the crashed holder's take expiry would, on these two paths, cut a day-long session to 1440 s,
or serve a session whose own expiry had passed (and keep it alive).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dynamo_sessions import SessionConfig, new_session_id
from dynamo_sessions.config import make_client
from dynamo_sessions.store import SessionStore, create_store

from .conftest import make_table
from .faultproxy import FaultProxy
from .handler_support import Clock, raw_item
from .test_audit_clock_items import Interrupting
from .test_faults import ATTEMPTS, DATA_WRITE, LOCK_TAKE, RELEASE
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once
from .test_lease_clock import skewed

pytestmark = pytest.mark.dynamodb_local

DAY = 86400
LOCK_ATTRIBUTES = {"lock", "lock_until_ms", "prior_expires"}
HOW = ["lost answer", "lost take-over answer", "interrupted"]
LOST = {"lost answer": LOCK_TAKE,
        "lost take-over answer": '"SET #l = :t, #lu = :until, #e = :e"'}
"""Which take's answer is lost: the first (fresh, refused by the crashed holder's lock) or the
take over that lock."""


class Rig:
    """Stores on one simulated clock, through the fault proxy, on one table."""

    def __init__(self, proxy: FaultProxy, direct: Any, table: str) -> None:
        self.proxy = proxy
        self.direct = direct
        self.table = table
        self.clock = Clock()

    def store(self, clock: Any = None, **options: Any) -> SessionStore:
        config = SessionConfig(table_name=self.table, locking="pessimistic",
                               endpoint_url=self.proxy.endpoint_url, region_name="us-east-1",
                               boto_max_attempts=ATTEMPTS, read_timeout_seconds=5.0, **options)
        client = make_client(config, aws_access_key_id="local", aws_secret_access_key="local")
        return create_store(config, client, clock=clock or self.clock)

    def item(self, store: SessionStore, sid: str) -> dict[str, Any] | None:
        return raw_item(self.direct, self.table, store.item_key(sid))


@pytest.fixture
def rig(fault_proxy: FaultProxy, ddb_local_client: Any, table_name: str) -> Iterator[Rig]:
    make_table(ddb_local_client, table_name)
    yield Rig(fault_proxy, ddb_local_client, table_name)


def _crashed_holder(rig: Rig, lifetime: int) -> tuple[SessionStore, str, dict[str, Any]]:
    """A session living ``lifetime`` s whose lock was taken and never given back (the
    holder crashed); the item as the crash left it."""
    store = rig.store()
    sid = new_session_id()
    store.create(sid, {"user": "ann"}, lifetime_seconds=lifetime)
    store.load(sid)  # taken and forgotten: no release, and no renewal once it is gone
    orphaned = rig.item(store, sid)
    assert orphaned is not None and "lock" in orphaned
    return store, sid, orphaned


def _take(rig: Rig, store: SessionStore, sid: str, how: str) -> Any:
    """Load ``sid`` with its take's answer lost (the session) or interrupted (None)."""
    if how in LOST:
        rig.proxy.script("drop_after", "UpdateItem", 1, LOST[how])
        session = store.load(sid)
        assert rig.proxy.counts() == {"drop_after": 1}
        return session
    interrupting = Interrupting(store.client)
    with pytest.raises(KeyboardInterrupt):
        store.load(sid)
    assert interrupting.fired == 1
    return None


@pytest.mark.parametrize("how", HOW)
def test_a_take_over_gives_a_long_session_its_own_expiry_back(rig: Rig, how: str) -> None:
    store, sid, _ = _crashed_holder(rig, DAY)
    created = rig.clock.now
    rig.clock.advance(store.config.lock_lease_seconds + 5)
    session = _take(rig, store, sid, how)
    if session is not None:
        assert session.data == {"user": "ann"}
        store.release(session)
    item = rig.item(store, sid)
    assert item is not None and not LOCK_ATTRIBUTES & set(item)
    assert int(item["expires"]["N"]) == int(created) + DAY  # not the crashed take's 1440 s


@pytest.mark.parametrize("how", HOW)
def test_a_take_over_of_a_session_expired_under_its_crashed_holder(rig: Rig, how: str) -> None:
    """The session was to live 100 s; 200 s later a request takes the crashed holder's lock:
    the session is expired (not served), and the lock-only remains are deleted."""
    store, sid, _ = _crashed_holder(rig, 100)
    rig.clock.advance(200)
    session = _take(rig, store, sid, how)
    if session is not None:
        assert session.data == {} and not session.existed
        store.release(session)
    assert rig.item(store, sid) is None


@pytest.mark.parametrize("state", ["new", "live", "expired", "moved"])
def test_an_interrupted_take_leaves_the_item_as_it_was(rig: Rig, state: str) -> None:
    """No crash: a take interrupted once DynamoDB answered gives the lock back by conditions
    alone - a new session's lock-only item and an expired one are deleted (as a release
    would), a live session and a moved marker are left exactly as they were."""
    store = rig.store()
    sid = new_session_id()
    if state == "moved":
        old = store.load(sid)
        old.data = {"user": "ann"}
        store.save(old)
        old = store.load(sid)
        store.retire(old, store.create(new_session_id(), old.data))
    elif state != "new":
        store.create(sid, {"user": "ann"}, lifetime_seconds=100)
    if state == "expired":
        rig.clock.advance(200)
    before = rig.item(store, sid)
    _take(rig, store, sid, "interrupted")
    assert rig.item(store, sid) == (None if state in ("new", "expired") else before)


@pytest.mark.parametrize("api", ["DeleteItem", "UpdateItem"])
def test_a_give_back_whose_answer_was_lost(rig: Rig, api: str) -> None:
    """The give-back of an interrupted take is applied, its answer lost, retried by botocore:
    the retry's refused conditions are taken for what they are (the lock is not this take's
    any more) - no error, no lock, the item as the give-back left it."""
    store = rig.store()
    sid = new_session_id()
    if api == "UpdateItem":
        store.create(sid, {"user": "ann"})
    before = rig.item(store, sid)
    rig.proxy.script("drop_after", api, 1, {"DeleteItem": ":cutoff",
                                            "UpdateItem": "SET #e = #pe"}[api])
    _take(rig, store, sid, "interrupted")
    assert rig.proxy.counts() == {"drop_after": 1}
    assert rig.item(store, sid) == before


@pytest.mark.parametrize("call", ["save", "release"])
@pytest.mark.parametrize("skew", [60.0, -60.0], ids=["fast", "slow"])
def test_a_skewed_stores_lost_answer_is_judged_by_its_lease_on_dynamodbs_clock(
        rig: Rig, skew: float, call: str) -> None:
    """A store 60 s off loses the answer of its save (or release): the retry finds its lock
    gone, and whether the lease still ran is told on the server's clock - by the local one, a
    fast store would take its own applied write for a lost lease (``LockLost``)."""
    store = rig.store(skewed(skew))
    sid = new_session_id()
    store.create(sid, {"n": 1})
    written = rig.item(store, sid)
    session = store.load(sid)
    rig.proxy.script("drop_after", "UpdateItem", 1, DATA_WRITE if call == "save" else RELEASE)
    if call == "save":
        assert store.save(session, {"n": 2})
    else:
        store.release(session)
    assert rig.proxy.counts() == {"drop_after": 1}
    item = rig.item(store, sid)
    assert item is not None and not LOCK_ATTRIBUTES & set(item)
    if call == "release":
        assert item == written
    assert store.load(sid).data == {"n": 2 if call == "save" else 1}


def test_a_server_that_returns_no_item_on_a_refused_take_still_takes_a_crashed_lock(
        rig: Rig) -> None:
    """A DynamoDB-compatible server that leaves the item out of a refused write's answer:
    the crashed holder's lock cannot be told from a live one by the answer - it is still
    taken over (by the lapsed lease's own condition), not waited on until the item expires."""
    store, sid, _ = _crashed_holder(rig, DAY)
    created = rig.clock.now
    rig.clock.advance(store.config.lock_lease_seconds + 5)

    def without_item(parsed: dict[str, Any], **_: Any) -> None:
        parsed.pop("Item", None)

    store.client.meta.events.register("after-call.dynamodb.UpdateItem", without_item)
    session = store.load(sid)
    assert session.data == {"user": "ann"}
    store.release(session)
    item = rig.item(store, sid)
    assert item is not None and not LOCK_ATTRIBUTES & set(item)
    assert int(item["expires"]["N"]) == int(created) + DAY


def test_a_stale_requests_release_of_a_moved_marker_whose_answer_was_lost(rig: Rig) -> None:
    """A request still carrying the old id locks the login's marker; its release (the
    marker's 300 s put back) is applied, its answer lost, retried: our own success - the
    marker exactly as the login left it, no lock."""
    store = rig.store()
    sid = new_session_id()
    store.create(sid, {"user": "ann"})
    old = store.load(sid)
    store.retire(old, store.create(new_session_id(), old.data))
    marker = rig.item(store, sid)
    stale = store.load(sid)
    assert stale.moved
    rig.proxy.script("drop_after", "UpdateItem", 1, RELEASE)
    store.release(stale)
    assert rig.proxy.counts() == {"drop_after": 1}
    assert rig.item(store, sid) == marker
