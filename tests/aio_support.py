"""What the asyncio tests on DynamoDB Local share: dummy credentials for aiobotocore, the
locking modes, a config on DynamoDB Local, and a body run on a store of a fresh event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dynamo_sessions.aio_store import AsyncSessionStore, create_async_store
from dynamo_sessions.config import SessionConfig
from dynamo_sessions.transport import aio

CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
"""DynamoDB Local takes any credentials; aiobotocore must find some."""
MODES = ["none", "optimistic", "pessimistic"]
TASKS = 16
"""Concurrent read-modify-write tasks on one session."""


def config_for(dynamodb_local: Any, table: str, locking: str, **options: Any) -> SessionConfig:
    return SessionConfig(table_name=table, endpoint_url=dynamodb_local.endpoint_url,
                         locking=locking, **options)


def with_store(config: SessionConfig,
               body: Callable[[AsyncSessionStore], Awaitable[Any]]) -> Any:
    """Run ``body(store)`` on a fresh event loop, the store on a client given to it."""
    async def main() -> Any:
        async with aio.build_async_client(config, **CREDENTIALS) as client:
            return await body(create_async_store(config, client))

    return asyncio.run(main())


@pytest.fixture(params=MODES, name="config")
def mode_config(request: pytest.FixtureRequest, dynamodb_local: Any,
                local_table: str) -> SessionConfig:
    """A config on DynamoDB Local's ``local_table``, once per locking mode."""
    return config_for(dynamodb_local, local_table, request.param)
