"""Every store call under lost answers and transient faults, through the fault proxy
(``tests/faultproxy.py``) in front of DynamoDB Local.

A call DynamoDB applied but whose answer was lost is retried by botocore; the retry must be
recognised as this request's own success - never ``LockTimeout``, ``LockLost`` or
``SessionExists`` for it, and never applied twice.  Each test asserts the outcome (no error),
the stored item (exactly as intended, no lock left) and, for the optimistic mode, that the
version moved by exactly one (the write was not applied again).

botocore's own retry mode decides what is retried; only its sleep between attempts is cut to
zero so the suite stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dynamo_sessions import DynamoUnavailable, SessionConfig, SessionHandler, new_session_id
from dynamo_sessions.config import make_client
from dynamo_sessions.testing.servers import local_client

from .conftest import make_table
from .faultproxy import FaultProxy
from .handler_support import Clock, raw_item
from .test_faults import ATTEMPTS, DATA_WRITE, LOCK_TAKE
from .test_faults import _no_retry_sleep as _no_retry_sleep  # botocore retries at once

pytestmark = pytest.mark.dynamodb_local

MODES = ["none", "pessimistic", "optimistic"]
LOST = ["drop_after", "delay_after"]  # applied, answer lost
NOT_SENT = ["drop_before", "delay", "http500", "throttle"]  # never reached DynamoDB
ALL_KINDS = LOST + NOT_SENT
READ_TIMEOUT_SECONDS = 0.3
CALLBACK_READ_TIMEOUT_SECONDS = 30.0
"""For a faulted call whose scripted callback makes another request's calls: the client waits
for the proxy, which drops the connection only once the callback is done, so botocore's retry
comes after the other request, as each such test's story says (with 0.3 s, a loaded machine's
retry overtook the callback and the test read the item before the other request wrote it)."""
# More fragments of the JSON body that pick out each call kind.
# A release puts back the expiry the item had before the lock; a read-only save does too, or
# refreshes it when due: the same request shape, without data.
RELEASE_ONLY = '"SET #e = :e REMOVE #l, #lu'
REFRESH = RELEASE_ONLY


class Setup:
    def __init__(self, proxy: FaultProxy, direct: Any, table: str) -> None:
        self.proxy = proxy
        self.direct = direct
        self.table = table
        proxy.delay_seconds = 3 * READ_TIMEOUT_SECONDS

    def handler(self, mode: str, **options: Any) -> SessionHandler:
        config = SessionConfig(
            table_name=self.table, locking=mode, endpoint_url=self.proxy.endpoint_url,
            region_name="us-east-1", boto_max_attempts=ATTEMPTS,
            read_timeout_seconds=options.pop("read_timeout_seconds", READ_TIMEOUT_SECONDS),
            **options,
        )
        client = make_client(config, aws_access_key_id="local", aws_secret_access_key="local")
        handler = SessionHandler(config, client)
        handler.open("", "PHPSESSID")
        return handler

    def item(self, handler: SessionHandler, sid: str) -> dict[str, Any] | None:
        return raw_item(self.direct, self.table, handler.store.item_key(sid))

    def settle(self) -> None:
        """Wait for requests the proxy still holds (``delay*``) to land or be dropped."""
        self.proxy.stop()


@pytest.fixture
def setup(fault_proxy: FaultProxy, ddb_local_client: Any, table_name: str) -> Iterator[Setup]:
    make_table(ddb_local_client, table_name)
    yield Setup(fault_proxy, ddb_local_client, table_name)


def unlocked(item: dict[str, Any] | None) -> bool:
    return item is not None and not {"lock", "lock_until_ms", "prior_expires"} & set(item)


def expires(item: dict[str, Any] | None) -> int:
    assert item is not None
    return int(item["expires"]["N"])


def version(item: dict[str, Any] | None) -> int | None:
    return None if item is None or "version" not in item else int(item["version"]["N"])


def stored_session(setup: Setup, mode: str, sid: str) -> dict[str, Any]:
    """The session as a fresh request straight to DynamoDB Local reads it (lock released)."""
    reader = SessionHandler(SessionConfig(table_name=setup.table, locking=mode), setup.direct)
    reader.open("", "PHPSESSID")
    data = reader.read(sid)
    reader.close()
    return data


# --- one fault on each call kind ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_save(setup: Setup, mode: str, kind: str) -> None:
    handler = setup.handler(mode)
    sid = new_session_id()
    handler.read(sid)
    handler.write(sid, {"n": 1})
    assert handler.read(sid) == {"n": 1}
    before = version(setup.item(handler, sid))
    setup.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
    handler.write(sid, {"n": 2})
    setup.settle()
    after = setup.item(handler, sid)
    assert unlocked(after)
    if mode == "optimistic":
        assert version(after) == before + 1  # type: ignore[operator]  # applied once
    assert setup.proxy.counts() == {kind: 1}
    assert stored_session(setup, mode, sid) == {"n": 2}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_lock_take(setup: Setup, kind: str) -> None:
    handler = setup.handler("pessimistic", max_lock_wait_seconds=1.0)
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    setup.proxy.script(kind, "UpdateItem", 1, LOCK_TAKE)
    assert handler.read(sid) == {"n": 1}  # not LockTimeout on its own lock
    handler.write(sid, {"n": 2})
    assert setup.proxy.counts() == {kind: 1}
    assert unlocked(setup.item(handler, sid))
    assert stored_session(setup, "pessimistic", sid) == {"n": 2}


def test_the_figures_count_the_retries_of_a_refused_call(setup: Setup) -> None:
    """A lock take whose answer was lost is retried by botocore and refused (the lock is its
    own already): the lock operation's figures count that retry, as for a call that succeeded."""
    from dynamo_sessions.metrics import OperationMetrics

    figures: list[OperationMetrics] = []
    handler = setup.handler("pessimistic", on_operation=figures.append)
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    figures.clear()
    setup.proxy.script("drop_after", "UpdateItem", 1, LOCK_TAKE)
    assert handler.read(sid) == {"n": 1}
    handler.close()
    (lock,) = [figure for figure in figures if figure.operation == "lock"]
    assert (lock.calls, lock.http_retries) == (1, 1)


@pytest.mark.parametrize("kind", LOST)
def test_lock_take_of_an_expired_session_reads_it_as_absent(setup: Setup, kind: str) -> None:
    """The retry finds the item already locked by this request; what it held before (an
    expired session) is still told apart, so expired data is not brought back."""
    handler = setup.handler("pessimistic")
    sid = new_session_id()
    handler.write(sid, {"secret": 1})
    setup.direct.update_item(
        TableName=setup.table, Key={"id": {"S": handler.store.item_key(sid)}},
        UpdateExpression="SET expires = :e",
        ExpressionAttributeValues={":e": {"N": str(int(time.time()) - 60)}})
    setup.proxy.script(kind, "UpdateItem", 1, LOCK_TAKE)
    assert handler.read(sid) == {}
    handler.close()
    assert setup.item(handler, sid) is None  # an expired session without new data is gone


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_release(setup: Setup, kind: str) -> None:
    handler = setup.handler("pessimistic")
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    written = expires(setup.item(handler, sid))
    handler.read(sid)
    setup.proxy.script(kind, "UpdateItem", 1, RELEASE_ONLY)
    handler.close()
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    item = setup.item(handler, sid)
    assert unlocked(item) and expires(item) == written  # the expiry from before the lock
    assert stored_session(setup, "pessimistic", sid) == {"n": 1}


@pytest.mark.parametrize("due", [False, True], ids=["kept", "due"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_refresh(setup: Setup, kind: str, due: bool) -> None:
    """A read-only pessimistic request gives the lock back in one write, which also puts back
    the expiry from before the lock - or refreshes it, when under half the lifetime is left."""
    handler = setup.handler("pessimistic")
    handler.store.clock = clock = Clock()
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    handler.write(sid, handler.read(sid))
    written = expires(setup.item(handler, sid))
    if due:
        clock.advance(handler.store.config.session_lifetime_seconds * 0.6)
    setup.proxy.script(kind, "UpdateItem", 1, REFRESH)
    handler.write(sid, handler.read(sid))
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    item = setup.item(handler, sid)
    lifetime = handler.store.config.session_lifetime_seconds
    assert unlocked(item) and expires(item) == (int(clock.now) + lifetime if due else written)


@pytest.mark.parametrize("how", ["emptied", "destroy"])
@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_delete(setup: Setup, mode: str, kind: str, how: str) -> None:
    """A logout: the session emptied by a request that read it (a delete conditional on its
    lock or version), or ``destroy()`` (an unconditional delete)."""
    handler = setup.handler(mode)
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    handler.read(sid)
    setup.proxy.script(kind, "DeleteItem", 1)
    if how == "emptied":
        handler.write(sid, {})
    else:
        assert handler.destroy(sid)
    setup.settle()
    assert setup.proxy.counts() == {kind: 1}
    assert setup.item(handler, sid) is None


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_create(setup: Setup, mode: str, kind: str) -> None:
    handler = setup.handler(mode)
    sid = new_session_id()
    setup.proxy.script(kind, "UpdateItem", 1, DATA_WRITE)
    handler.store.create(sid, {"new": 1})  # not SessionExists for its own create
    setup.settle()
    item = setup.item(handler, sid)
    assert unlocked(item)
    if mode == "optimistic":
        assert version(item) == 1
    assert stored_session(setup, mode, sid) == {"new": 1}


# --- another request right after the lost answer -----------------------------------------------


def other_writes(setup: Setup, mode: str, sid: str, key: str, value: Any) -> Callable[[], None]:
    """Another request (its own handler, straight to DynamoDB Local) that sets one key."""
    def run() -> None:
        other = SessionHandler(SessionConfig(table_name=setup.table, locking=mode),
                               local_client(setup.direct.meta.endpoint_url))
        other.open("", "PHPSESSID")
        data = other.read(sid)
        data[key] = value
        other.write(sid, data)
    return run


@pytest.mark.parametrize("mode", ["pessimistic", "optimistic"])
def test_lost_save_then_another_write(setup: Setup, mode: str) -> None:
    """Our write is applied; before botocore's retry another request reads it and changes
    the same key.  The retry is our own success: no LockLost, and our older value is not
    written again over theirs (which a merge-and-rewrite would do)."""
    handler = setup.handler(mode, read_timeout_seconds=CALLBACK_READ_TIMEOUT_SECONDS)
    sid = new_session_id()
    handler.write(sid, {"k": "first"})
    assert handler.read(sid) == {"k": "first"}
    setup.proxy.script("drop_after", "UpdateItem", 1, DATA_WRITE,
                       then=other_writes(setup, mode, sid, "k", "theirs"))
    handler.write(sid, {"k": "ours"})
    assert setup.proxy.counts() == {"drop_after": 1}
    item = setup.item(handler, sid)
    assert unlocked(item)
    if mode == "optimistic":
        assert version(item) == 3  # ours, then theirs: nothing written again
    assert stored_session(setup, mode, sid) == {"k": "theirs"}


@pytest.mark.parametrize("mode", ["pessimistic", "optimistic"])
def test_lost_logout_then_another_request(setup: Setup, mode: str) -> None:
    """Our logout (the emptied session's delete) is applied; before botocore's retry another
    request starts a session under the same id.  The retry is our own success; the other
    request's new session is not deleted or merged into."""
    handler = setup.handler(mode, read_timeout_seconds=CALLBACK_READ_TIMEOUT_SECONDS)
    sid = new_session_id()
    handler.write(sid, {"user": "jeremy"})
    assert handler.read(sid) == {"user": "jeremy"}
    setup.proxy.script("drop_after", "DeleteItem", 1,
                       then=other_writes(setup, mode, sid, "new", 1))
    handler.write(sid, {})
    assert setup.proxy.counts() == {"drop_after": 1}
    assert unlocked(setup.item(handler, sid))
    assert stored_session(setup, mode, sid) == {"new": 1}


def test_lost_lock_take_then_another_waits(setup: Setup) -> None:
    """Our lock is taken; another request tries before botocore's retry and is refused (the
    lock is ours); the retry recognises the lock as ours."""
    handler = setup.handler("pessimistic", max_lock_wait_seconds=1.0,
                            read_timeout_seconds=CALLBACK_READ_TIMEOUT_SECONDS)
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    other = setup.handler("pessimistic", max_lock_wait_seconds=0.0)
    refused: list[BaseException] = []

    def try_lock() -> None:
        try:
            other.read(sid)
        except Exception as exc:  # LockTimeout: the lock is ours
            refused.append(exc)

    setup.proxy.script("drop_after", "UpdateItem", 1, LOCK_TAKE, then=try_lock)
    assert handler.read(sid) == {"n": 1}
    handler.write(sid, {"n": 2})
    assert [type(exc).__name__ for exc in refused] == ["LockTimeout"]
    assert unlocked(setup.item(handler, sid))
    assert stored_session(setup, "pessimistic", sid) == {"n": 2}


@pytest.mark.parametrize("others", [3, 4])
def test_lost_optimistic_write_then_several_writes(setup: Setup, others: int) -> None:
    """The write tokens kept in the item tell our write apart after up to 3 writes by others;
    after 4 it cannot be told, and the write is neither repeated nor reported as done."""
    from dynamo_sessions import SessionConflict

    handler = setup.handler("optimistic", read_timeout_seconds=CALLBACK_READ_TIMEOUT_SECONDS)
    sid = new_session_id()
    handler.write(sid, {"k": 0})
    assert handler.read(sid) == {"k": 0}
    def then() -> None:
        for n in range(1, others + 1):
            other_writes(setup, "optimistic", sid, "other", n)()

    setup.proxy.script("drop_after", "UpdateItem", 1, DATA_WRITE, then=then)
    if others < 4:
        handler.write(sid, {"k": 1})
    else:
        with pytest.raises(SessionConflict, match="cannot be told"):
            handler.write(sid, {"k": 1})
    assert version(setup.item(handler, sid)) == 2 + others  # ours applied once, theirs
    assert stored_session(setup, "optimistic", sid) == {"k": 1, "other": others}


@pytest.mark.parametrize("mode", ["pessimistic", "optimistic"])
def test_late_duplicate_of_a_write(setup: Setup, mode: str) -> None:
    """The original lands after botocore's retry (``delay_late``): the late copy of a
    conditional write finds its condition gone and changes nothing, whether it lands before
    or after the next write.  (In ``none`` mode the write is unconditional: a late copy landing
    after the next write undoes it.)"""
    handler = setup.handler(mode)
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    handler.read(sid)
    setup.proxy.script("delay_late", "UpdateItem", 1, DATA_WRITE)
    handler.write(sid, {"n": 2})
    handler.read(sid)
    handler.write(sid, {"n": 3})
    setup.settle()
    assert unlocked(setup.item(handler, sid))
    assert stored_session(setup, mode, sid) == {"n": 3}


@pytest.mark.parametrize("kind", ["throttle", "http500", "http502", "drop_before"])
def test_failed_save_and_release_leave_no_lock(setup: Setup, kind: str) -> None:
    """The save and its release both fail past botocore's attempts: the release gets a second
    round and the lock is given back, instead of blocking the session for the whole lease.
    A 5xx without a DynamoDB error code (``http502``: a proxy's page) is a passing fault too:
    ``DynamoUnavailable``, and a second round for the release."""
    from botocore.exceptions import BotoCoreError, ClientError

    handler = setup.handler("pessimistic")
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    handler.read(sid)
    setup.proxy.script(kind, "UpdateItem", ATTEMPTS, DATA_WRITE)
    setup.proxy.script(kind, "UpdateItem", ATTEMPTS, RELEASE_ONLY)
    with pytest.raises(DynamoUnavailable) as raised:  # typed, botocore's error as its cause
        handler.write(sid, {"n": 2})
    assert isinstance(raised.value.__cause__, (ClientError, BotoCoreError))
    assert setup.proxy.counts() == {kind: 2 * ATTEMPTS}
    assert unlocked(setup.item(handler, sid))
    assert stored_session(setup, "pessimistic", sid) == {"n": 1}


@pytest.mark.parametrize("then", ["write", "logout"])
def test_stale_tab_leaves_a_new_session_under_its_id_alone(setup: Setup, then: str) -> None:
    """Tab A read version 1; the session was then deleted and a new one started under the same
    id, up to version 1 again.  A's write (or logout) is not merged into, written over or
    deleting the new session: it is another session (SessionGone / nothing to empty)."""
    from dynamo_sessions import SessionGone

    tab = setup.handler("optimistic")
    sid = new_session_id()
    tab.write(sid, {"user": "jeremy"})
    assert tab.read(sid) == {"user": "jeremy"}
    other = SessionHandler(SessionConfig(table_name=setup.table, locking="optimistic"),
                           setup.direct)
    other.open("", "PHPSESSID")
    other.destroy(sid)
    other.close()  # the new session under the same id comes with a later request
    other.open("", "PHPSESSID")
    other.write(sid, {"new": 1})
    assert version(setup.item(tab, sid)) == 1
    if then == "write":
        with pytest.raises(SessionGone):
            tab.write(sid, {"user": "jeremy", "cart": [1]})
    else:
        tab.write(sid, {})
    assert stored_session(setup, "optimistic", sid) == {"new": 1}
    assert version(setup.item(tab, sid)) == 1
