"""Checks shared by the ASGI adapters' server tests: a held lock, seen in the table itself, and a
client that goes away while its request holds one."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dynamo_sessions.testing.servers import local_client

LOCKINGS = ["none", "optimistic", "pessimistic"]
CONCURRENT = 16
"""Concurrent same-session requests of the lost-update tests."""


@contextlib.contextmanager
def sessions_table(endpoint_url: str, prefix: str) -> Iterator[tuple[Any, str]]:
    """A fresh sessions table on DynamoDB Local (deleted after): (boto3 client, its name)."""
    from .conftest import make_table

    client = local_client(endpoint_url)
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    make_table(client, name)
    yield client, name
    client.delete_table(TableName=name)


def table_fixture(name: str, prefix: str) -> Any:
    """A module-scoped fixture ``name``: a :func:`sessions_table` on the ``dynamodb_local``
    fixture's server, shared by the module's tests."""
    @pytest.fixture(scope="module", name=name)
    def table(dynamodb_local: Any) -> Iterator[tuple[Any, str]]:
        with sessions_table(dynamodb_local.endpoint_url, prefix) as made:
            yield made

    return table


def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for the clients the async store builds (DynamoDB Local takes any)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")


def locked(ddb: Any, table: str, item_key: str) -> bool:
    """The item is locked now (read from the table, consistently)."""
    item = ddb.get_item(TableName=table, Key={"id": {"S": item_key}},
                        ConsistentRead=True).get("Item", {})
    return "lock" in item


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Poll ``condition`` until true; fail after ``seconds`` (a bound, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.05)


def go_away_while_holding(url: str, cookies: dict[str, str], ddb: Any, table: str,
                          item_key: str, meanwhile: Callable[[httpx.AsyncClient], Any]
                          | None = None) -> Any:
    """Send ``/hold`` (the view reads the session - a pessimistic lock - then waits), wait
    until the lock is in the table, run ``meanwhile(other client)`` if given, then give up
    the request (its connection closed: the server sees the client go away).  Returns what
    ``meanwhile`` returned."""

    async def scenario() -> Any:
        async with httpx.AsyncClient(base_url=url, timeout=60, cookies=cookies) as holder, \
                httpx.AsyncClient(base_url=url, timeout=60, cookies=cookies) as other:
            holding = asyncio.create_task(holder.get("/hold"))
            await asyncio.to_thread(wait_for, lambda: locked(ddb, table, item_key))
            result = await meanwhile(other) if meanwhile is not None else None
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
        return result

    return asyncio.run(scenario())


async def concurrently(url: str, cookies: dict[str, str], path: str) -> list[httpx.Response]:
    """``CONCURRENT`` requests of ``path`` at once, on one session."""
    async with httpx.AsyncClient(base_url=url, timeout=60, cookies=cookies) as client:
        return list(await asyncio.gather(*(client.get(path) for _ in range(CONCURRENT))))
