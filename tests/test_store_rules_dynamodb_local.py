"""Rules of the store and of the request session that only a failure shows, on DynamoDB Local.

Each test here kills a mutant that escaped the suite after the re-layout (tests/MUTANTS.md):
the clock learning from error answers, the locks a failed save gives back, and a write refused
for a lock this request never removed.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from dynamo_sessions import (
    LockLost,
    LockTimeout,
    SessionConfig,
    SessionTooLarge,
    create_store,
    new_session_id,
)
from dynamo_sessions.clock import ServerClock
from dynamo_sessions.metrics import OperationMetrics
from dynamo_sessions.request import RequestSession

from .handler_support import raw_item
from .test_handler_dynamodb_local import table as table  # the fixture

pytestmark = pytest.mark.dynamodb_local

LOCK_ATTRIBUTES = {"lock", "lock_until_ms", "prior_expires"}


def test_every_answer_teaches_the_clock_a_refused_one_too(ddb_local_client: Any,
                                                          table: str) -> None:
    """A lock wait is a run of refused takes: each refusal's ``Date`` narrows the server time
    the next take dates its lease from (the clock never waits for a success to learn)."""
    holder = create_store(SessionConfig(table_name=table, locking="pessimistic"),
                          ddb_local_client)
    sid = new_session_id()
    held = holder.load(sid)
    figures: list[OperationMetrics] = []
    waiter = create_store(SessionConfig(table_name=table, locking="pessimistic",
                                        max_lock_wait_seconds=0.2,
                                        on_operation=figures.append), ddb_local_client)
    try:
        with pytest.raises(LockTimeout):
            waiter.load(sid)
    finally:
        holder.release(held)
    clock = waiter.clock
    assert isinstance(clock, ServerClock)
    (lock,) = figures
    assert lock.operation == "lock" and lock.calls >= 2  # every take refused
    assert clock.observations == clock.sync_calls + lock.calls


def test_a_login_whose_new_session_cannot_be_stored_gives_the_old_lock_back(
        ddb_local_client: Any, table: str) -> None:
    """Regenerate, then the new session's create fails (too large): nothing is stored under
    the new id, the old session is as it was and unlocked - the next request is served."""
    config = SessionConfig(table_name=table, locking="pessimistic", max_lock_wait_seconds=0.5)
    store = create_store(config, ddb_local_client)
    first = RequestSession(store)
    first["user"] = "jeremy"
    first.save()
    sid = first.id
    assert sid is not None
    before = raw_item(ddb_local_client, table, store.item_key(sid))
    assert before is not None and not LOCK_ATTRIBUTES & set(before)
    login = RequestSession(store, sid)
    assert login["user"] == "jeremy"
    login.regenerate()
    login["avatar"] = os.urandom(500_000)  # incompressible: past DynamoDB's 400 KB item
    with pytest.raises(SessionTooLarge):
        login.save()
    assert raw_item(ddb_local_client, table, store.item_key(sid)) == before  # unlocked
    after = RequestSession(store, sid)
    assert dict(after) == {"user": "jeremy"}  # locked: LockTimeout after 0.5 s
    after.release()


def test_a_lock_removed_by_another_writer_refuses_the_save(ddb_local_client: Any,
                                                           table: str) -> None:
    """The item was rewritten without this request's lock while its lease ran (a writer that
    does not lock - a script, another deployment): a save that was sent once cannot have
    removed the lock itself, so it is refused (``LockLost``), never reported as stored."""
    store = create_store(SessionConfig(table_name=table, locking="pessimistic"),
                         ddb_local_client)
    sid = new_session_id()
    store.save(store.load(sid), {"n": 1})
    held = store.load(sid)
    key = store.item_key(sid)
    locked = raw_item(ddb_local_client, table, key)
    assert locked is not None and "lock" in locked
    rewritten = {name: value for name, value in locked.items() if name not in LOCK_ATTRIBUTES}
    ddb_local_client.put_item(TableName=table, Item=rewritten)
    with pytest.raises(LockLost):
        store.save(held, {"n": 2})
    assert raw_item(ddb_local_client, table, key) == rewritten
