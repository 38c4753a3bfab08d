"""An audit of one request's DynamoDB calls (``RequestSession``, ``SessionHandler``) on DynamoDB
Local: the process dying right after any of them, and the answers the fault proxy loses.

* Dying: a request (write, increment, login, logout) is run until its k-th call has been
  answered, for every k, and then abandoned - no further call, no release, no lease renewal
  (:class:`Dying` carries the steps).  A later request, once the lease has passed, is served
  (no lock outlives its lease) and finds the session either as it was or as the dead request
  wrote it - never a mix, never empty unless the dead request emptied it.
* Lost answers: the moved marker of a login, the delete of a lock-only item at release, a
  counter's versioned write, a logout's delete - applied, the answer lost, retried by botocore:
  each is this request's own success, applied once, with no lock left.
* The PHP protocol: an id destroyed in a request is not written back by that request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore import xform_name

from dynamo_sessions import SessionConfig, SessionGone, SessionHandler, new_session_id
from dynamo_sessions.protocol.steps import Call, Operation, T
from dynamo_sessions.request import RequestSession
from dynamo_sessions.store import SessionStore, create_store

from .conftest import make_table
from .handler_support import Clock, FakeTimer, raw_item
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once
from .test_reliability_faults import MODES, Setup, unlocked
from .test_reliability_faults import setup as setup  # the fixture (fault proxy, table)

pytestmark = pytest.mark.dynamodb_local

OLD = {"user": "ann", "n": 1}
LOCK_ATTRIBUTES = {"lock", "lock_until_ms", "prior_expires"}


class Died(BaseException):
    """The process died: nothing after this point runs."""


class Dying:
    """A driver carrying a request's steps on the real client until ``budget`` calls have
    been answered; the next call is never sent (:class:`Died`).  Sleeps take no time; Hold and
    Drop do nothing (a dead process renews no lease).  With ``interrupt``, the answer of call
    ``budget`` is replaced by a ``KeyboardInterrupt`` thrown in (applied, the answer lost to
    Ctrl-C or a worker's timeout), and the request goes on cleaning up."""

    def __init__(self, client: Any, budget: int | None, interrupt: bool = False) -> None:
        self.client = client
        self.budget = budget
        self.interrupt = interrupt
        self.calls = 0
        self.raised: BaseException | None = None

    def run(self, operation: Operation[T]) -> T:
        answer: Any = None
        try:
            step = operation.send(None)
            while True:
                if isinstance(step, Call):
                    if self.calls == self.budget and not self.interrupt:
                        raise Died
                    self.calls += 1
                    try:
                        answer = getattr(self.client, xform_name(step.api))(**step.params)
                    except Exception as exc:
                        step = operation.throw(exc)
                        continue
                    if self.calls == self.budget and self.interrupt:
                        self.budget = None  # once
                        step = operation.throw(KeyboardInterrupt())
                        continue
                else:
                    answer = None
                step = operation.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result


def _request(session: RequestSession, what: str) -> None:
    if what == "write":
        session["n"] = 2
    elif what == "increment":
        session.increment("n")
    elif what == "login":
        session.regenerate()
        session["user"] = "bob"
    else:
        session.destroy()
    session.save()


AFTER = {"write": [OLD, {"user": "ann", "n": 2}], "increment": [OLD, {"user": "ann", "n": 2}],
         "login": [OLD, {}], "logout": [OLD, {}]}


class Rig:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        self.clock = Clock()
        self.created: dict[str, Any] | None = None

    def store(self, mode: str) -> SessionStore:
        store = create_store(SessionConfig(table_name=self.table, locking=mode,
                                           max_lock_wait_seconds=0.5), self.client,
                             clock=self.clock)
        FakeTimer().install(store)
        return store

    def dying_request(self, mode: str, what: str, budget: int | None,
                      interrupt: bool = False) -> tuple[str, Dying, RequestSession]:
        writer = self.store(mode)
        sid = new_session_id()
        writer.create(sid, OLD)
        self.created = raw_item(self.client, self.table, writer.item_key(sid))
        store = self.store(mode)
        dying = Dying(self.client, budget, interrupt)
        store.driver = dying  # type: ignore[assignment]
        session = RequestSession(store, sid)
        try:
            _request(session, what)
        except (Died, KeyboardInterrupt) as exc:
            dying.raised = exc
        return sid, dying, session


@pytest.fixture
def rig(ddb_local_client: Any, table_name: str) -> Iterator[Rig]:
    make_table(ddb_local_client, table_name)
    yield Rig(ddb_local_client, table_name)


@pytest.mark.slow
@pytest.mark.parametrize("what", sorted(AFTER))
@pytest.mark.parametrize("mode", MODES)
def test_a_request_dying_after_any_call_leaves_a_whole_session_and_no_lasting_lock(
        rig: Rig, mode: str, what: str) -> None:
    _, whole, _ = rig.dying_request(mode, what, None)
    assert whole.calls >= 2  # a load and a write at least
    for budget in range(1, whole.calls):
        sid, dying, dead = rig.dying_request(mode, what, budget)
        assert dying.calls == budget
        lease_ms = (rig.clock.now + rig.store(mode).config.lock_lease_seconds) * 1000
        item = raw_item(rig.client, rig.table, rig.store(mode).item_key(sid))
        if item is not None and "lock" in item:
            assert int(item["lock_until_ms"]["N"]) <= lease_ms  # bounded by one lease
        rig.clock.advance(rig.store(mode).config.lock_lease_seconds + 5)
        later = RequestSession(rig.store(mode), sid)
        found = dict(later)
        assert found in AFTER[what], (budget, found)
        later.release()
        item = raw_item(rig.client, rig.table, rig.store(mode).item_key(sid))
        assert item is None or not LOCK_ATTRIBUTES & set(item)
        if found == OLD:  # as it was: its own expiry too, not a dead lock take's
            assert item == rig.created
        if dead.id is not None and dead.id != sid:  # the login's new id, if it got that far
            assert RequestSession(rig.store(mode), dead.id).copy() in (
                {}, {"user": "bob", "n": 1})


@pytest.mark.slow
@pytest.mark.parametrize("what", sorted(AFTER))
@pytest.mark.parametrize("mode", MODES)
def test_a_request_interrupted_after_any_call_gives_its_locks_back_at_once(
        rig: Rig, mode: str, what: str) -> None:
    """``KeyboardInterrupt`` in place of any call's answer (the call applied): it reaches
    the caller, and the request has given back every lock it took - no lease to wait for -
    leaving the session as it was or as the request wrote it."""
    _, whole, _ = rig.dying_request(mode, what, None)
    for budget in range(1, whole.calls + 1):
        sid, dying, _ = rig.dying_request(mode, what, budget, interrupt=True)
        assert isinstance(dying.raised, KeyboardInterrupt), budget
        item = raw_item(rig.client, rig.table, rig.store(mode).item_key(sid))
        assert item is None or not LOCK_ATTRIBUTES & set(item), (budget, item)
        later = RequestSession(rig.store(mode), sid)  # at once: not LockTimeout
        assert dict(later) in AFTER[what], budget
        later.release()


# --- lost answers -------------------------------------------------------------------------------


def _stored(setup: Setup, mode: str, sid: str) -> dict[str, Any]:
    reader = RequestSession(create_store(SessionConfig(table_name=setup.table, locking=mode),
                                         setup.direct), sid)
    data = dict(reader)
    reader.release()
    return data


def _request_on(setup: Setup, mode: str, data: dict[str, Any]) -> tuple[
        SessionHandler, str, RequestSession]:
    """A handler through the proxy, a session stored with ``data``, a request holding it."""
    handler = setup.handler(mode)
    sid = new_session_id()
    handler.write(sid, data)
    return handler, sid, RequestSession(handler.store, sid)


@pytest.mark.parametrize("mode", MODES)
def test_a_login_whose_moved_marker_answer_was_lost(setup: Setup, mode: str) -> None:
    handler, sid, session = _request_on(setup, mode, {"user": "ann"})
    new = session.regenerate()  # loads it
    setup.proxy.script("drop_after", "PutItem", 1)
    session.save()
    assert setup.proxy.counts() == {"drop_after": 1}
    marker = setup.item(handler, sid)
    assert marker is not None and "moved" in marker and "data" not in marker
    assert unlocked(setup.item(handler, new)) and _stored(setup, mode, new) == {"user": "ann"}


@pytest.mark.parametrize("kind", ["throttle", "http500", "drop_before"])
@pytest.mark.parametrize("mode", MODES)
def test_a_login_whose_moved_marker_failed_leaves_no_lock(setup: Setup, mode: str,
                                                          kind: str) -> None:
    """The marker's PutItem fails past botocore's attempts: the error is raised (typed), the
    old session stays as it was - and its lock is given back, not left for a lease."""
    from dynamo_sessions import DynamoUnavailable

    from .test_faults import ATTEMPTS

    handler, sid, session = _request_on(setup, mode, {"user": "ann"})
    before = setup.item(handler, sid)
    session.regenerate()
    setup.proxy.script(kind, "PutItem", ATTEMPTS)
    with pytest.raises(DynamoUnavailable):
        session.save()
    assert setup.proxy.counts() == {kind: ATTEMPTS}
    after = setup.item(handler, sid)
    assert unlocked(after) and after is not None and before is not None
    assert after["data"] == before["data"] and _stored(setup, mode, sid) == {"user": "ann"}


def test_a_release_deleting_a_lock_only_item_whose_answer_was_lost(setup: Setup) -> None:
    handler = setup.handler("pessimistic")
    sid = new_session_id()
    assert handler.read(sid) == {}  # a new session: the take leaves a lock-only item
    setup.proxy.script("drop_after", "DeleteItem", 1)
    handler.close()  # no error, no warning of a lost lease: the delete was our own
    assert setup.proxy.counts() == {"drop_after": 1}
    assert setup.item(handler, sid) is None


@pytest.mark.parametrize("mode", MODES)
def test_an_increment_whose_answer_was_lost_is_counted_once(setup: Setup, mode: str) -> None:
    handler, sid, session = _request_on(setup, mode, {"n": 1})
    session.increment("n", 5)
    setup.proxy.script("drop_after", "UpdateItem", 1, '":d"')
    session.save()
    assert setup.proxy.counts() == {"drop_after": 1}
    assert unlocked(setup.item(handler, sid)) and _stored(setup, mode, sid) == {"n": 6}


@pytest.mark.parametrize("mode", MODES)
def test_a_logout_whose_answer_was_lost(setup: Setup, mode: str) -> None:
    handler, sid, session = _request_on(setup, mode, {"user": "ann"})
    session.destroy()
    setup.proxy.script("drop_after", "DeleteItem", 1)
    session.save()
    assert setup.proxy.counts() == {"drop_after": 1}
    assert setup.item(handler, sid) is None and not session.needs_cookie


@pytest.mark.parametrize("mode", ["none", "optimistic"])
def test_an_expired_delete_and_a_refresh_whose_answers_were_lost(setup: Setup,
                                                                 mode: str) -> None:
    """Without a lock: the delete of an expired session on read, and the refresh of an
    unchanged session's expiry - each applied, its answer lost, its retry refused or applied
    again: no error, the item as one call leaves it."""
    handler = setup.handler(mode)
    handler.store.clock = clock = Clock()
    lifetime = handler.store.config.session_lifetime_seconds
    expired, kept = new_session_id(), new_session_id()
    for sid in (expired, kept):
        handler.write(sid, {"n": 1})
    clock.advance(lifetime + 10)
    setup.proxy.script("drop_after", "DeleteItem", 1)
    assert _request_on_store(handler, expired) == {}
    assert setup.item(handler, expired) is None
    handler.store.clock = clock = Clock()
    handler.write(kept, {"n": 2})
    clock.advance(lifetime * 0.6)  # under half the lifetime left: a refresh is due
    setup.proxy.script("drop_after", "UpdateItem", 1, '"SET #e = :e"')
    handler.write(kept, handler.read(kept))
    assert setup.proxy.counts() == {"drop_after": 2}
    item = setup.item(handler, kept)
    assert item is not None and int(item["expires"]["N"]) == int(clock.now) + lifetime


def _request_on_store(handler: SessionHandler, sid: str) -> dict[str, Any]:
    session = RequestSession(handler.store, sid)
    data = dict(session)
    session.save()
    return data


# --- the PHP protocol: destroy, then write ------------------------------------------------------


@pytest.mark.parametrize("read_first", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_a_destroyed_id_is_not_written_back_in_the_same_request(
        ddb_local_client: Any, table_name: str, mode: str, read_first: bool) -> None:
    """``destroy`` then ``write`` of the same id (a script setting a flash message after
    ``session_destroy()``): the logged-out id must not come back to life - someone who knew
    it (a fixated id, a stolen cookie) would hold a live session again.  The write is refused
    (``SessionGone``), nothing is stored; writing nothing is fine; a later request's open
    starts afresh."""
    make_table(ddb_local_client, table_name)
    handler = SessionHandler(SessionConfig(table_name=table_name, locking=mode),
                             ddb_local_client)
    handler.open("", "PHPSESSID")
    sid = new_session_id()
    handler.read(sid)
    handler.write(sid, {"user": "ann"})
    if read_first:
        assert handler.read(sid) == {"user": "ann"}
    assert handler.destroy(sid)
    if read_first:
        assert handler.read(sid) == {}
    with pytest.raises(SessionGone):
        handler.write(sid, {"flash": "logged out"})
    assert handler.write(sid, {})
    handler.close()
    assert raw_item(ddb_local_client, table_name, handler.store.item_key(sid)) is None
    handler.open("", "PHPSESSID")
    other = new_session_id()
    handler.read(other)
    assert handler.write(other, {"n": 1})  # the next request writes as ever
    handler.close()
