"""Helpers shared by the web adapter tests: a DynamoDB call counter (the testing package's)
and store factories."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.store import SessionStore
from dynamo_sessions.testing.calls import CallCounter as CallCounter  # the tests' import path


def make_store(client: Any, table: str, locking: str = "optimistic", session_name: str = "s",
               **options: Any) -> SessionStore:
    return create_store(SessionConfig(table_name=table, locking=locking, **options), client,
                        session_name=session_name)


def stored_item(client: Any, store: SessionStore, session_id: str) -> dict[str, Any] | None:
    """The raw item of a session, read straight from the table."""
    item: dict[str, Any] | None = client.get_item(
        TableName=store.config.table_name,
        Key={"id": {"S": store.item_key(session_id)}}, ConsistentRead=True,
    ).get("Item")
    return item


def assert_retired(client: Any, store: SessionStore, session_id: str) -> None:
    """The id was moved to a new one: its item is the data-less marker, never served."""
    item = stored_item(client, store, session_id)
    assert item is not None and set(item) == {"id", "moved", "expires"}, item
    assert not store.exists(session_id)


@contextlib.contextmanager
def shared_moto_table() -> Iterator[tuple[Any, str]]:
    """One in-process moto backend and table for a whole test module (tests keep apart by
    using their own ``session_name`` key prefix): starting moto per test costs more than
    the tests themselves."""
    from moto import mock_aws

    from dynamo_sessions.testing.servers import local_client

    from .conftest import make_table

    with mock_aws():
        client = local_client(None)
        make_table(client, "web-sessions")
        yield client, "web-sessions"


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def count_stores_built(monkeypatch: Any) -> list[SessionStore]:
    """From now on, every ``SessionStore`` built (of any locking mode) is appended here."""
    built: list[SessionStore] = []
    original_init = SessionStore.__init__

    def counting_init(self: SessionStore, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(SessionStore, "__init__", counting_init)
    return built
