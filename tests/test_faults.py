"""Throttling, HTTP 500s and read timeouts (injected on the transport, ``Faults``) against moto's
server: botocore's retry mode retries them; when it gives up, the error is raised, the stored
session is as it was and no lock is left.

The client is the one the store makes from its config (``boto_retry_mode``,
``boto_max_attempts``).  Only botocore's sleep between attempts is cut to zero so the suite
stays fast; which errors it retries, and how often, is botocore's own decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.retries.standard import ExponentialBackoff

from dynamo_sessions import (
    DynamoUnavailable,
    LockTimeout,
    SessionConfig,
    SessionHandler,
)
from dynamo_sessions.config import LOCKING_MODES as MODES
from dynamo_sessions.config import make_client
from dynamo_sessions.testing.servers import EmbeddedMoto

from .conftest import make_table
from .handler_support import Clock, FakeTimer, Faults, raw_item, stored_session

KINDS = ["throttle", "500", "timeout"]
ATTEMPTS = 3
# A fragment of the JSON body of each request kind (Faults matches on it).
DATA_WRITE = '":d"'
LOCK_TAKE = '":until"'
RELEASE = '"SET #e = :e REMOVE #l, #lu, #pe"'  # the expiry from before the lock put back
# Each fault kind in each locking mode (ids ``mode-kind``).
EVERY_MODE_AND_KIND = pytest.mark.parametrize(
    ("mode", "kind"), [(mode, kind) for kind in KINDS for mode in MODES])


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def setup(moto_server: EmbeddedMoto, table_name: str) -> Iterator[Any]:
    def make(mode: str, clock: Clock | None = None, **options: Any) -> tuple[SessionHandler,
                                                                             Faults]:
        config = SessionConfig(
            table_name=table_name, locking=mode, endpoint_url=moto_server.endpoint_url,
            region_name="us-east-1", boto_retry_mode="standard", boto_max_attempts=ATTEMPTS,
            **options,
        )
        client = make_client(config, aws_access_key_id="local", aws_secret_access_key="local")
        handler = SessionHandler(config, client, clock=clock or Clock())
        handler.open("", "PHPSESSID")
        return handler, Faults(client)

    make_table(make_client(SessionConfig(endpoint_url=moto_server.endpoint_url,
                                         region_name="us-east-1"),
                           aws_access_key_id="local", aws_secret_access_key="local"),
               table_name)
    yield make


def expected_error(kind: str) -> type[Exception]:
    return ReadTimeoutError if kind == "timeout" else ClientError


@contextlib.contextmanager
def raises_unavailable(kind: str) -> Iterator[None]:
    """botocore gave up: the store raises its typed error, botocore's as the cause."""
    with pytest.raises(DynamoUnavailable) as raised:
        yield
    assert isinstance(raised.value.__cause__, expected_error(kind))


def item(handler: SessionHandler, sid: str) -> dict[str, Any] | None:
    return raw_item(handler.client, handler.config.table_name, handler.store.item_key(sid))


def handler_with_session(setup: Any, mode: str, *args: Any, **options: Any
                         ) -> tuple[SessionHandler, Faults, str, dict[str, Any] | None]:
    """A handler in ``mode``, its faults, the id of a session stored with ``{"n": 1}`` and its
    item as stored."""
    handler, faults = setup(mode, *args, **options)
    sid = stored_session(handler, {"n": 1})
    return handler, faults, sid, item(handler, sid)


def fail_reads(faults: Faults, kind: str, mode: str, times: int) -> None:
    """Inject ``times`` faults of ``kind`` into the call a read in ``mode`` makes (the lock take
    for pessimistic locking, GetItem otherwise)."""
    if mode == "pessimistic":
        faults.add(kind, "UpdateItem", times, LOCK_TAKE)
    else:
        faults.add(kind, "GetItem", times, "")


@EVERY_MODE_AND_KIND
def test_transient_faults_are_retried(setup: Any, mode: str, kind: str) -> None:
    handler, faults, sid, _ = handler_with_session(setup, mode)
    fail_reads(faults, kind, mode, ATTEMPTS - 1)
    faults.add(kind, "UpdateItem", ATTEMPTS - 1, DATA_WRITE)
    data = handler.read(sid)
    assert data == {"n": 1}
    handler.write(sid, {"n": 2})
    assert faults.injected == 2 * (ATTEMPTS - 1)
    stored = item(handler, sid)
    assert stored is not None and "lock" not in stored
    assert handler.read(sid) == {"n": 2}
    handler.close()


@EVERY_MODE_AND_KIND
def test_exhausted_write_raises_and_keeps_the_session(setup: Any, mode: str, kind: str) -> None:
    handler, faults, sid, before = handler_with_session(setup, mode)
    assert handler.read(sid) == {"n": 1}
    faults.add(kind, "UpdateItem", ATTEMPTS, DATA_WRITE)
    with raises_unavailable(kind):
        handler.write(sid, {"n": 2})
    assert faults.injected == ATTEMPTS
    after = item(handler, sid)
    assert after is not None and "lock" not in after  # the lock was released
    assert after["data"] == before["data"]  # type: ignore[index]
    assert handler.read(sid) == {"n": 1}
    handler.close()


@EVERY_MODE_AND_KIND
def test_exhausted_read_raises_never_an_empty_session(setup: Any, mode: str, kind: str) -> None:
    handler, faults, sid, before = handler_with_session(setup, mode)
    fail_reads(faults, kind, mode, ATTEMPTS)
    with raises_unavailable(kind):
        handler.read(sid)
    handler.close()
    assert item(handler, sid) == before  # nothing written, no lock taken
    assert handler.read(sid) == {"n": 1}
    handler.close()


def test_failed_release_blocks_nobody_past_the_lease(setup: Any) -> None:
    """The worst case: the write and every release attempt fail.  The lock is then held only
    until its lease ends; the next request takes it over and finds the session intact."""
    clock = Clock()
    handler, faults, sid, _ = handler_with_session(setup, "pessimistic", clock,
                                             lock_lease_seconds=5.0, max_lock_wait_seconds=1.0)
    handler.read(sid)
    faults.add("500", "UpdateItem", ATTEMPTS, DATA_WRITE)
    faults.add("500", "UpdateItem", 2 * ATTEMPTS, RELEASE)  # both rounds of the release
    with pytest.raises(DynamoUnavailable) as raised:  # typed, botocore's error as its cause
        handler.write(sid, {"n": 2})
    assert isinstance(raised.value.__cause__, ClientError)
    assert faults.injected == 3 * ATTEMPTS
    assert "lock" in item(handler, sid)  # type: ignore[operator]
    other, _ = setup("pessimistic", clock, lock_lease_seconds=5.0, max_lock_wait_seconds=1.0)
    FakeTimer().install(other.store)
    with pytest.raises(LockTimeout):
        other.read(sid)
    clock.advance(6)
    assert other.read(sid) == {"n": 1}
    other.close()
    assert "lock" not in item(other, sid)  # type: ignore[operator]
