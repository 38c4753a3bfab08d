"""Shared fixtures: both core implementations, and real DynamoDB API servers on loopback.

Environment:
* ``DYNAMO_SESSIONS_REQUIRE_EXTENSIONS=1`` - the compiled core must load (CI): its absence fails.
* ``DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL=1`` - DynamoDB Local must start (CI): no skipping.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from dynamo_sessions.testing.servers import DynamoDBLocal

# the fixtures users get from the installed package (entry point pytest11); named here too so
# that the suite also runs from a checkout whose installed metadata predates the plugin
pytest_plugins = ["dynamo_sessions.testing.plugin"]


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

# DynamoDB Local and moto (``dynamodb_local``, ``moto_server``, ``moto_client``,
# ``moto_server_client``, ...) come from the plugin, dynamo_sessions.testing.plugin; the names
# below are this suite's older spellings of its fixtures.


@pytest.fixture
def fault_proxy(dynamodb_local: DynamoDBLocal) -> Iterator[Any]:
    """A fault-injecting proxy (``tests/faultproxy.py``) in front of DynamoDB Local."""
    from .faultproxy import FaultProxy

    with FaultProxy(dynamodb_local.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def ddb_local_client(dynamodb_local_client: Any) -> Any:
    return dynamodb_local_client


@pytest.fixture
def table_name(sessions_table_name: str) -> str:
    return sessions_table_name


@pytest.fixture
def local_table(ddb_local_client: Any, table_name: str) -> str:
    """A fresh bare sessions table on DynamoDB Local."""
    make_table(ddb_local_client, table_name)
    return table_name


def make_table(client: Any, name: str) -> None:
    """A bare sessions table (hash key ``id``, on demand) for tests below the handler."""
    from dynamo_sessions.testing.plugin import create_sessions_table

    create_sessions_table(client, name)
