"""Shared fixtures: both core implementations, and real DynamoDB API servers on loopback.

Environment:
* ``DYNAMO_SESSIONS_REQUIRE_EXTENSIONS=1`` - the compiled core must load (CI): its absence fails.
* ``DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL=1`` - DynamoDB Local must start (CI): no skipping.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from dynamo_sessions.servers import (
    DynamoDBLocal,
    DynamoDBLocalUnavailable,
    EmbeddedMoto,
    local_client,
)


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


REQUIRE_EXTENSIONS = _flag("DYNAMO_SESSIONS_REQUIRE_EXTENSIONS") and not _flag(
    "DYNAMO_SESSIONS_NO_EXTENSIONS"
)
REQUIRE_DYNAMODB_LOCAL = _flag("DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL")


def load_core(name: str) -> ModuleType:
    """The compiled (``_core_c``) or pure-Python (``_core_py``) core module."""
    if name == "python":
        return importlib.import_module("dynamo_sessions._core_py")
    try:
        return importlib.import_module("dynamo_sessions._core_c")
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            pytest.fail(f"the compiled core was expected but did not load: {exc}")
        pytest.skip(f"compiled core not built: {exc}")


@pytest.fixture(params=["compiled", "python"], scope="session")
def core(request: pytest.FixtureRequest) -> ModuleType:
    """Each test that takes this runs against both implementations of the core."""
    return load_core(request.param)


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """Amazon's DynamoDB Local on a free loopback port, for the whole test session."""
    server = DynamoDBLocal()
    try:
        server.start()
    except (DynamoDBLocalUnavailable, OSError) as exc:
        if REQUIRE_DYNAMODB_LOCAL:
            pytest.fail(f"DynamoDB Local is required here but did not start: {exc}")
        pytest.skip(f"DynamoDB Local unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[EmbeddedMoto]:
    """moto's server (the HTTP path) on a free loopback port, for the whole test session."""
    with EmbeddedMoto() as server:
        yield server


@pytest.fixture
def fault_proxy(dynamodb_local: DynamoDBLocal) -> Iterator[Any]:
    """A fault-injecting proxy (``tests/faultproxy.py``) in front of DynamoDB Local."""
    from .faultproxy import FaultProxy

    with FaultProxy(dynamodb_local.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def ddb_local_client(dynamodb_local: DynamoDBLocal) -> Any:
    return local_client(dynamodb_local.endpoint_url)


@pytest.fixture
def moto_server_client(moto_server: EmbeddedMoto) -> Any:
    return local_client(moto_server.endpoint_url)


@pytest.fixture
def moto_client() -> Iterator[Any]:
    """A client on moto's in-process backend (``mock_aws``): fast, no sockets."""
    from moto import mock_aws

    with mock_aws():
        yield local_client(None)  # mock_aws answers in-process: nothing is sent


@pytest.fixture
def table_name() -> str:
    return f"sessions-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def local_table(ddb_local_client: Any, table_name: str) -> str:
    """A fresh bare sessions table on DynamoDB Local."""
    make_table(ddb_local_client, table_name)
    return table_name


def make_table(client: Any, name: str) -> None:
    """A bare sessions table (hash key ``id``, on demand) for tests below the handler."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
