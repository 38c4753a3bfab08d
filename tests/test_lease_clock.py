"""Lock leases and clocks, on DynamoDB Local.

* A crashed holder (a child process SIGKILLed while it holds the lock) costs the request waiting
  behind it less than ``max_lock_wait_seconds``, and that request is served; a slow but live
  holder keeps its lock for several leases (renewals), and its save succeeds.
* A client whose clock is 60 s fast (or slow) takes no live lease, deletes no live session and
  keeps no abandoned lock longer than a lease by the server's clock; a GC on a host 2 h off
  deletes no live session and still deletes the expired ones.  DynamoDB Local, like DynamoDB
  and moto, sends a ``Date`` header on every answer: the server's clock here is this host's.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from dynamo_sessions import DynamoUnavailable, LockTimeout, SessionConfig, new_session_id
from dynamo_sessions.clock import UNCERTAINTY_BUDGET_SECONDS, ServerClock
from dynamo_sessions.lease import RENEW_FRACTION, RENEWER, LeaseRenewer
from dynamo_sessions.store import LOCK, LOCK_UNTIL_MS, SessionStore, create_store
from dynamo_sessions.table import GarbageCollector
from dynamo_sessions.testing.servers import local_client

from .conftest import make_table
from .handler_support import FakeTimer, raw_item
from .test_table_gc import put_sessions, stored_keys

MINUTE = 60.0
HOURS_2 = 7200.0


def skewed(seconds: float) -> ServerClock:
    """A ServerClock on a local wall clock ``seconds`` off the real one (+ = fast)."""
    return ServerClock(local=lambda: time.time() + seconds)


def server_date(client: Any) -> float:
    """The server's ``Date`` (epoch seconds, truncated) from one call made now."""
    response = client.list_tables(Limit=1)
    return parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()


@pytest.fixture
def table(ddb_local_client: Any, table_name: str) -> str:
    make_table(ddb_local_client, table_name)
    return table_name


def store_for(client: Any, table: str, clock: Any = None, **options: Any) -> SessionStore:
    return create_store(SessionConfig(table_name=table, **options), client, clock=clock)


def set_expires(client: Any, table: str, key: str, expires: float) -> None:
    client.update_item(TableName=table, Key={"id": {"S": key}},
                       UpdateExpression="SET expires = :e",
                       ExpressionAttributeValues={":e": {"N": str(int(expires))}})


# --- the defaults -----------------------------------------------------------------------------


def lease_problems(config: SessionConfig) -> list[str]:
    """What is wrong with a config's lease figures (empty: the lease promises hold)."""
    problems = []
    crashed_holder_wait = (config.lock_lease_seconds + UNCERTAINTY_BUDGET_SECONDS
                           + config.max_lock_retry_microseconds / 1e6)
    if crashed_holder_wait >= config.max_lock_wait_seconds:
        problems.append("a waiter behind a crashed holder can time out")
    renewal_slack = config.lock_lease_seconds * (1 - RENEW_FRACTION) - UNCERTAINTY_BUDGET_SECONDS
    if renewal_slack < config.connect_timeout_seconds:
        problems.append("a renewal that has to reconnect once can land after the lease")
    return problems


def test_default_lease_serves_the_waiter_and_leaves_room_to_renew() -> None:
    """A crashed holder's lease lapses (by the server's clock, as a waiter can know it) with a
    retry to spare before ``max_lock_wait_seconds``; a renewal sent at half the lease lands
    before its end even after one reconnect.  PHP-like 30 s fails the first, 3 s the second."""
    assert lease_problems(SessionConfig()) == []
    assert lease_problems(SessionConfig(lock_lease_seconds=30)) == [
        "a waiter behind a crashed holder can time out"]
    assert lease_problems(SessionConfig(lock_lease_seconds=3)) == [
        "a renewal that has to reconnect once can land after the lease"]


# --- the clock --------------------------------------------------------------------------------


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("skew", [MINUTE, -MINUTE])
def test_server_clock_bounds_hold_the_server_time(ddb_local_client: Any, skew: float,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dynamo_sessions")
    clock = skewed(skew)
    assert not clock.synced
    clock.sync(ddb_local_client)
    for _ in range(20):
        clock.call(ddb_local_client.list_tables, Limit=1)
        before = time.time()  # this host's clock is DynamoDB Local's
        bounds = clock.bounds()
        after = time.time()
        assert bounds is not None
        assert bounds[0] <= after and before <= bounds[1]
        assert abs(clock() - time.time()) <= clock.uncertainty_seconds()
    assert clock.uncertainty_seconds() <= UNCERTAINTY_BUDGET_SECONDS
    assert (clock.sync_calls, clock.observations, clock.resets) == (1, 21, 0)
    warnings = [r.getMessage() for r in caplog.records if "clock is" in r.getMessage()]
    assert len(warnings) == 1  # once, saying the skew
    said = float(re.search(r"clock is ([-+][0-9.]+) s", warnings[0]).group(1))  # type: ignore
    assert abs(said - skew) <= UNCERTAINTY_BUDGET_SECONDS


@pytest.mark.dynamodb_local
def test_no_warning_for_a_good_clock(ddb_local_client: Any,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dynamo_sessions")
    clock = ServerClock()
    for _ in range(5):
        clock.call(ddb_local_client.list_tables, Limit=1)
    assert clock.synced and caplog.records == []


def test_an_answer_without_date_trusts_the_local_clock(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dynamo_sessions")
    clock = skewed(MINUTE)
    clock.observe({"ResponseMetadata": {"HTTPHeaders": {}}}, 0.0, 0.0)
    clock.observe({"ResponseMetadata": {"HTTPHeaders": {}}}, 0.0, 0.0)
    assert not clock.synced
    assert abs(clock.earliest() - (time.time() + MINUTE)) < 1.0
    assert len(caplog.records) == 1 and "no Date header" in caplog.records[0].getMessage()


# --- a clock 60 s off -------------------------------------------------------------------------


@pytest.mark.dynamodb_local
def test_a_fast_client_takes_no_live_lease(ddb_local_client: Any, table: str) -> None:
    holder = store_for(ddb_local_client, table, locking="pessimistic")
    fast = store_for(ddb_local_client, table, skewed(MINUTE), locking="pessimistic",
                     max_lock_wait_seconds=0.5)
    FakeTimer().install(fast)  # its lock wait takes no real time
    sid = new_session_id()
    session = holder.load(sid)
    with pytest.raises(LockTimeout):
        fast.load(sid)
    assert fast.metrics.lock_timeouts == 1 and fast.metrics.failed_writes >= 2
    assert holder.save(session, {"user": "jeremy"})  # no LockLost: the lease was respected
    assert holder.load(sid).data == {"user": "jeremy"}


@pytest.mark.dynamodb_local
def test_a_slow_client_takes_over_a_lapsed_lease_at_once(ddb_local_client: Any,
                                                          table: str) -> None:
    """A lease that lapsed 5 s ago (by the server's clock) is taken at the first attempt by a
    client 60 s slow, which by its own clock would wait 55 s more."""
    writer = store_for(ddb_local_client, table, locking="pessimistic")
    sid = new_session_id()
    writer.save(writer.load(sid), {"n": 1})
    key = writer.item_key(sid)
    ddb_local_client.update_item(
        TableName=table, Key={"id": {"S": key}}, UpdateExpression="SET #l = :t, #lu = :u",
        ExpressionAttributeNames={"#l": LOCK, "#lu": LOCK_UNTIL_MS},
        ExpressionAttributeValues={":t": {"S": "crashed"},
                                   ":u": {"N": str(int((time.time() - 5) * 1000))}})
    slow = store_for(ddb_local_client, table, skewed(-MINUTE), locking="pessimistic")
    session = slow.load(sid)
    assert session.data == {"n": 1} and slow.metrics.failed_writes == 0
    slow.release(session)


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("mode", ["none", "pessimistic", "optimistic"])
def test_a_fast_client_keeps_a_live_session_near_expiry(ddb_local_client: Any, table: str,
                                                        mode: str) -> None:
    """Expiring in 30 s by the server's clock: a client 60 s fast still reads it (and
    deletes nothing); a raw clock 60 s fast would read it as expired and delete it."""
    writer = store_for(ddb_local_client, table, locking=mode)
    sid = new_session_id()
    writer.save(writer.load(sid), {"user": "jeremy"})
    key = writer.item_key(sid)
    set_expires(ddb_local_client, table, key, time.time() + 30)
    stored = raw_item(ddb_local_client, table, key)
    fast = store_for(ddb_local_client, table, skewed(MINUTE), locking=mode)
    session = fast.load(sid)
    assert session.data == {"user": "jeremy"}
    fast.release(session)
    item = raw_item(ddb_local_client, table, key)
    assert stored is not None and item is not None and item["data"] == stored["data"]
    assert fast.metrics.calls.get("DeleteItem", 0) == 0


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("mode", ["none", "pessimistic", "optimistic"])
def test_a_slow_client_sees_an_expired_session_as_expired(ddb_local_client: Any, table: str,
                                                          mode: str) -> None:
    """Expired 30 s ago by the server's clock: a client 60 s slow reads nothing (a raw clock
    would serve it for 30 s more) and, without a lock, deletes it as PHP does."""
    writer = store_for(ddb_local_client, table, locking=mode)
    sid = new_session_id()
    writer.save(writer.load(sid), {"user": "jeremy"})
    key = writer.item_key(sid)
    set_expires(ddb_local_client, table, key, time.time() - 30)
    slow = store_for(ddb_local_client, table, skewed(-MINUTE), locking=mode)
    session = slow.load(sid)
    assert session.data == {}
    slow.release(session)
    assert raw_item(ddb_local_client, table, key) is None


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("skew", [MINUTE, -MINUTE])
def test_a_skewed_clients_lease_is_one_lease_by_the_server_clock(ddb_local_client: Any,
                                                                 table: str,
                                                                 skew: float) -> None:
    """The lock a client 60 s off writes ends one lease after the take, by the server's
    clock, within the clock's uncertainty: not 60 s later (an abandoned lock held 67 s) nor
    60 s earlier (a lease others may take at once)."""
    store = store_for(ddb_local_client, table, skewed(skew), locking="pessimistic")
    lease = store.config.lock_lease_seconds
    sid = new_session_id()
    first = server_date(ddb_local_client)
    session = store.load(sid)
    last = server_date(ddb_local_client) + 1  # the server's clock had not reached this yet
    item = raw_item(ddb_local_client, table, store.item_key(sid))
    assert item is not None
    until = int(item[LOCK_UNTIL_MS]["N"]) / 1000
    assert first + lease - UNCERTAINTY_BUDGET_SECONDS <= until <= last + lease
    store.release(session)


# --- GC on a host 2 h off ---------------------------------------------------------------------


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("skew", [HOURS_2, -HOURS_2])
def test_gc_on_a_skewed_host_deletes_exactly_the_expired(ddb_local_client: Any, table: str,
                                                         skew: float) -> None:
    now = time.time()
    expired = put_sessions(ddb_local_client, table, "old", 20, int(now) - 5)
    live = (put_sessions(ddb_local_client, table, "soon", 10, int(now) + 30)
            + put_sessions(ddb_local_client, table, "hour", 10, int(now) + 3600))
    held = put_sessions(ddb_local_client, table, "held", 5, int(now) - 5,
                        extra={LOCK: {"S": "owner"},
                               LOCK_UNTIL_MS: {"N": str(int((now + 60) * 1000))}})
    config = SessionConfig(table_name=table)
    result = GarbageCollector(ddb_local_client, config, clock=skewed(skew)).run()
    assert stored_keys(ddb_local_client, table) == set(live) | set(held)
    assert (result.expired, result.deleted, result.skipped) == (len(expired), len(expired), 0)


# --- renewals ---------------------------------------------------------------------------------


@pytest.mark.dynamodb_local
def test_a_renewal_never_brings_back_a_released_or_deleted_lock(ddb_local_client: Any,
                                                                table: str) -> None:
    store = store_for(ddb_local_client, table, locking="pessimistic")
    assert isinstance(store.clock, ServerClock)
    sid = new_session_id()
    session = store.load(sid)
    key, token = session.key, session.lock_token
    assert token is not None
    assert store.renew_lock(key, token) and store.renew_lock(key, token)  # repeatable
    store.save(session, {"n": 1})  # writes and releases
    assert not store.renew_lock(key, token)
    item = raw_item(ddb_local_client, table, key)
    assert item is not None and LOCK not in item and LOCK_UNTIL_MS not in item
    session = store.load(sid)
    token = session.lock_token
    assert token is not None
    store.save(session, {})  # logout: the item is deleted
    assert not store.renew_lock(key, token)
    assert raw_item(ddb_local_client, table, key) is None


@pytest.mark.dynamodb_local
def test_a_renewal_whose_answer_was_lost_succeeds_when_retried(ddb_local: Any,
                                                               table: str) -> None:
    """The first renewal is applied but its answer never comes back (the same request is
    sent by another connection, then this one times out); botocore retries it, the retry
    finds this request's token and succeeds: the lock is still ours, the save goes through."""
    url = ddb_local.endpoint_url
    client, other = local_client(url), local_client(url)
    store = store_for(client, table, locking="pessimistic")
    sid = new_session_id()
    session = store.load(sid)
    assert session.lock_token is not None
    applied: list[dict[str, Any]] = []

    def apply_then_lose(params: dict[str, Any], **_: Any) -> None:
        if not applied and params.get("UpdateExpression") == "SET #lu = :until":
            applied.append(params)
            other.update_item(**params)

    def time_out(request: Any, **_: Any) -> None:
        if len(applied) == 1 and b"SET #lu = :until" in (request.body or b""):
            applied.append({})
            raise ReadTimeoutError(endpoint_url=request.url)

    client.meta.events.register("provide-client-params.dynamodb.UpdateItem", apply_then_lose)
    client.meta.events.register("before-send.dynamodb", time_out)
    assert store.renew_lock(session.key, session.lock_token)
    assert len(applied) == 2  # applied once, answer lost, retried
    assert store.save(session, {"n": 1})
    assert store.load(sid).data == {"n": 1}


@pytest.fixture
def ddb_local(dynamodb_local: Any) -> Any:
    return dynamodb_local


class CountingStore:
    """A ``Renewable`` counting renewals (the renewer's own schedule, no DynamoDB involved)."""

    def __init__(self) -> None:
        self.renewals = 0

    def renew_lock(self, key: str, token: str, session: object = None) -> bool:
        self.renewals += 1
        return True


class Owner:
    """Stands for a request's session object (the renewer keeps only a weak reference)."""


def test_renewals_stop_when_the_session_is_forgotten_or_held_too_long() -> None:
    renewer = LeaseRenewer()
    kept, forgotten, hung = CountingStore(), CountingStore(), CountingStore()
    owner, lost_owner = Owner(), Owner()
    start = time.monotonic()
    renewer.hold(kept, owner, "k", "kept", 0.1, start, 60)
    renewer.hold(forgotten, lost_owner, "k", "forgotten", 0.1, start, 60)
    renewer.hold(hung, owner, "k", "hung", 0.1, start, 0.12)
    del lost_owner
    gc.collect()
    deadline = time.monotonic() + 30  # bounds the loop only
    while kept.renewals < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kept.renewals >= 5
    assert forgotten.renewals == 0
    assert hung.renewals <= 2  # due at 0.05 s and 0.1 s; stopped once held past 0.12 s
    assert renewer.holding() == 1
    renewer.drop("kept")
    assert renewer.holding() == 0


class FailingOnceStore:
    """A ``Renewable`` whose first renewal fails (DynamoDB unavailable), recording the
    (simulated) monotonic time of each attempt."""

    def __init__(self, clock: SimulatedMonotonic) -> None:
        self.clock = clock
        self.tried_at: list[float] = []

    def renew_lock(self, key: str, token: str, session: object = None) -> bool:
        self.tried_at.append(self.clock.now)
        if len(self.tried_at) == 1:
            raise DynamoUnavailable("UpdateItem: injected - botocore gave up")
        return True


def test_a_failed_renewal_is_tried_again_before_the_lease_ends() -> None:
    """On a simulated clock: a 2 s lease taken at 0 is due at 1; that renewal fails, and the
    renewer tries again soon - by 1.9, before the lease ends at 2 - not a whole lease later."""
    clock = SimulatedMonotonic()
    renewer = LeaseRenewer(monotonic=clock)
    store = FailingOnceStore(clock)
    owner = Owner()
    renewer.hold(store, owner, "k", "lock", 2.0, 0.0, 60)
    try:
        clock.now = 1.0
        _wait_for(lambda: renewer.failed == 1)  # the retry is scheduled from 1.0
        clock.now = 1.9
        _wait_for(lambda: len(store.tried_at) == 2)
        assert store.tried_at == [1.0, 1.9]
        assert (renewer.failed, renewer.renewed, renewer.lost) == (1, 1, 0)
    finally:
        renewer.drop("lock")
    assert renewer.holding() == 0


class RecordingStore:
    """A ``Renewable`` recording the (simulated) monotonic time of each renewal."""

    def __init__(self, clock: SimulatedMonotonic) -> None:
        self.clock = clock
        self.renewed_at: list[float] = []

    def renew_lock(self, key: str, token: str, session: object = None) -> bool:
        self.renewed_at.append(self.clock.now)
        return True


class SimulatedMonotonic:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 30  # bounds the loop only: the condition is what is asserted
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert condition()


def test_a_lease_is_renewed_once_half_of_it_is_used_and_every_half_lease_after() -> None:
    """On a simulated clock: a lock taken at 0 with a 0.2 s lease is renewed at 0.1 (not
    before), then 0.1 after each renewal.  A second lock (``marker``, renewed on the same
    schedule, held after the first so the renewer visits it second) says when the renewer has
    looked at the clock: when the marker is renewed, the first lock was renewed too if due."""
    clock = SimulatedMonotonic()
    renewer = LeaseRenewer(monotonic=clock)
    lock, marker = RecordingStore(clock), RecordingStore(clock)
    owner = Owner()
    renewer.hold(lock, owner, "k", "lock", 0.2, 0.0, 60)      # due at 0.1
    renewer.hold(marker, owner, "k", "marker", 0.2, -0.15, 60)  # due at -0.05
    try:
        clock.now = 0.05  # the marker is due, the lock (half its lease used at 0.1) is not
        _wait_for(lambda: len(marker.renewed_at) == 1)
        assert lock.renewed_at == []
        clock.now = 0.12  # the lock is due; the marker (renewed at 0.05) next at 0.15
        _wait_for(lambda: len(lock.renewed_at) == 1)
        assert (lock.renewed_at, marker.renewed_at) == ([0.12], [0.05])
        clock.now = 0.17  # the marker is due again; the lock (renewed at 0.12) next at 0.22
        _wait_for(lambda: len(marker.renewed_at) == 2)
        assert (lock.renewed_at, marker.renewed_at) == ([0.12], [0.05, 0.17])
        clock.now = 0.23
        _wait_for(lambda: len(lock.renewed_at) == 2)
        assert lock.renewed_at == [0.12, 0.23]
    finally:
        renewer.drop("lock")
        renewer.drop("marker")
    assert renewer.holding() == 0


@pytest.mark.dynamodb_local
def test_the_default_lease_is_seven_seconds_by_the_servers_clock(ddb_local_client: Any,
                                                                 table: str) -> None:
    """A lock taken with the default options ends 7 s after the take (README: the lease is
    short so that a crashed holder frees the session inside one lock wait)."""
    store = store_for(ddb_local_client, table, locking="pessimistic")
    sid = new_session_id()
    first = server_date(ddb_local_client)
    session = store.load(sid)
    last = server_date(ddb_local_client) + 1
    item = raw_item(ddb_local_client, table, store.item_key(sid))
    assert item is not None
    until = int(item[LOCK_UNTIL_MS]["N"]) / 1000
    assert first + 7 - UNCERTAINTY_BUDGET_SECONDS <= until <= last + 7
    store.release(session)


def test_a_forked_child_renews_none_of_its_parents_locks() -> None:
    """A worker forked from a process holding locks (gunicorn --preload) must not keep its
    parent's locks alive after the parent died."""
    owner = Owner()
    RENEWER.hold(CountingStore(), owner, "k", "parent-token", 60.0, time.monotonic(), 60.0)
    pid = os.fork()
    if pid == 0:  # the child: exit at once, saying what it holds
        os._exit(0 if RENEWER.holding() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert RENEWER.holding() >= 1
    RENEWER.drop("parent-token")
    assert os.waitstatus_to_exitcode(status) == 0


# --- a crashed holder, a slow holder ----------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from dynamo_sessions import SessionConfig
    from dynamo_sessions.clock import ServerClock
    from dynamo_sessions.lease import RENEWER
    from dynamo_sessions.testing.servers import local_client
    from dynamo_sessions.store import create_store

    url, table, sid, skew = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    store = create_store(SessionConfig(table_name=table, locking="pessimistic"),
                         local_client(url), clock=ServerClock(local=lambda: time.time() + skew))
    session = store.load(sid)
    deadline = time.monotonic() + 60
    while RENEWER.renewed == 0 and time.monotonic() < deadline:  # hold past one renewal
        time.sleep(0.05)
    print("renewed" if RENEWER.renewed else "not renewed", flush=True)
    time.sleep(600)
""")


@pytest.mark.slow
@pytest.mark.dynamodb_local
@pytest.mark.parametrize("skew", [0.0, MINUTE])
def test_a_crashed_holder_costs_less_than_one_lock_wait(ddb_local: Any, table: str,
                                                        skew: float) -> None:
    """A child process takes the lock, renews it once and is SIGKILLed (its clock 60 s fast
    in the second case).  With the default options the request waiting in this process is
    served - the session's data, no LockTimeout - within ``max_lock_wait_seconds``."""
    client = local_client(ddb_local.endpoint_url)
    writer = store_for(client, table, locking="pessimistic")
    sid = new_session_id()
    writer.save(writer.load(sid), {"user": "jeremy"})
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, ddb_local.endpoint_url, table, sid, str(skew)],
        stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"renewed"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        item = raw_item(client, table, writer.item_key(sid))
        assert item is not None and LOCK in item  # the dead holder's lock is there
        waiter = store_for(client, table, locking="pessimistic")  # the defaults
        session = waiter.load(sid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
    assert session.data == {"user": "jeremy"}  # served
    assert waiter.metrics.lock_waits > 0 and waiter.metrics.lock_timeouts == 0
    assert session.lock_wait_seconds <= waiter.config.max_lock_wait_seconds
    print(f"skew {skew:+.0f}s: served after {session.lock_wait_seconds:.2f}s of lock wait "
          f"(max_lock_wait_seconds={waiter.config.max_lock_wait_seconds}, "
          f"lease {waiter.config.lock_lease_seconds}s), {waiter.metrics.lock_waits} retries")
    waiter.save(session, {"user": "jeremy", "served": True})
    assert writer.load(sid).data == {"user": "jeremy", "served": True}


@pytest.mark.slow
@pytest.mark.dynamodb_local
def test_a_slow_holder_keeps_its_lock_for_several_leases(ddb_local: Any, table: str) -> None:
    """A live holder working for three leases keeps its lock (renewed every half lease): a
    competitor times out and the holder's save succeeds."""
    url = ddb_local.endpoint_url
    config = {"locking": "pessimistic", "lock_lease_seconds": 4.0}
    holder = store_for(local_client(url), table, **config)
    competitor = store_for(local_client(url), table, **config, max_lock_wait_seconds=1.0)
    sid = new_session_id()
    renewed = RENEWER.renewed
    session = holder.load(sid)
    time.sleep(3 * holder.config.lock_lease_seconds)  # the holder at work
    with pytest.raises(LockTimeout):
        competitor.load(sid)
    assert holder.save(session, {"work": "done"})  # no LockLost
    assert RENEWER.renewed - renewed >= 3  # due at 2, 4, 6, 8, 10 s (later on a busy host)
    assert holder.load(sid).data == {"work": "done"}
    print(f"{RENEWER.renewed - renewed} renewals in 3 leases of {config['lock_lease_seconds']}s; "
          f"{holder.metrics.write_units} WCU for the holder in all")


@pytest.mark.dynamodb_local
def test_a_short_request_pays_no_renewal(ddb_local_client: Any, table: str) -> None:
    store = store_for(ddb_local_client, table, locking="pessimistic")
    sid = new_session_id()
    store.save(store.load(sid), {"n": 1})
    store.metrics.reset()
    store.save(store.load(sid), {"n": 2})
    assert store.metrics.calls == {"UpdateItem": 2}  # take, write: no renewal
    assert isinstance(store.clock, ServerClock) and store.clock.sync_calls == 1
