"""Table management: create (on demand or provisioned, TTL on), describe, delete.

Garbage collection is :mod:`.gc`.  DynamoDB's errors become typed ones in
``transport.translate`` (``TableNotFound``, ``DynamoUnavailable``); ``TableExists`` is raised
here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from ..config import SessionConfig
from ..errors import ConfigError, TableExists
from ..store import EXPIRES
from ..transport.translate import error_code, translate

TTL_ALREADY_ENABLED = "TimeToLive is already enabled"


@contextmanager
def translated(api: str, table_name: str) -> Iterator[None]:
    """Around one DynamoDB call of ``api``: an error with a typed counterpart
    (``transport.translate``: a missing table, a call botocore gave up on) is raised as that,
    ``from`` the original; any other error as botocore raised it."""
    try:
        yield
    except Exception as exc:
        error = translate(api, exc, table_name)
        if error is None:
            raise
        raise error from exc


def create_table(client: Any, config: SessionConfig, read_capacity: int | None = None,
                 write_capacity: int | None = None, wait: bool = True,
                 enable_ttl: bool = True) -> dict[str, Any]:
    """Create the sessions table (on demand, or provisioned when capacities are given).

    Waits until it is ACTIVE and enables TTL on ``expires`` (an already enabled TTL is fine), so
    DynamoDB deletes expired sessions for free and GC only has to catch up.  Returns
    :func:`describe_table`'s summary.  Raises :class:`TableExists` when the name is taken.
    """
    if (read_capacity is None) != (write_capacity is None):
        raise ConfigError("give both read_capacity and write_capacity, or neither (on demand)")
    kwargs: dict[str, Any] = {
        "TableName": config.table_name,
        "KeySchema": [{"AttributeName": config.hash_key, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": config.hash_key, "AttributeType": "S"}],
    }
    if read_capacity is None or write_capacity is None:
        kwargs["BillingMode"] = "PAY_PER_REQUEST"
    else:
        if read_capacity < 1 or write_capacity < 1:
            raise ConfigError("provisioned capacities must be >= 1")
        kwargs["BillingMode"] = "PROVISIONED"
        kwargs["ProvisionedThroughput"] = {
            "ReadCapacityUnits": read_capacity, "WriteCapacityUnits": write_capacity,
        }
    try:
        with translated("CreateTable", config.table_name):
            client.create_table(**kwargs)
    except ClientError as exc:
        if error_code(exc) == "ResourceInUseException":
            raise TableExists(
                f"DynamoDB table {config.table_name!r} already exists: see it with "
                f"`dynamo-sessions describe --table-name {config.table_name}`"
            ) from exc
        raise
    if wait:
        client.get_waiter("table_exists").wait(
            TableName=config.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
    if enable_ttl:
        enable_time_to_live(client, config)
    return describe_table(client, config)


def enable_time_to_live(client: Any, config: SessionConfig) -> None:
    """Turn on TTL on ``expires``; tolerate it being on already."""
    try:
        with translated("UpdateTimeToLive", config.table_name):
            client.update_time_to_live(
                TableName=config.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES},
            )
    except ClientError as exc:
        if TTL_ALREADY_ENABLED not in str(exc):
            raise


def delete_table(client: Any, config: SessionConfig, wait: bool = True) -> None:
    """Delete the sessions table (and every session in it); waits until it is gone."""
    with translated("DeleteTable", config.table_name):
        client.delete_table(TableName=config.table_name)
    if wait:
        client.get_waiter("table_not_exists").wait(
            TableName=config.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )


def describe_table(client: Any, config: SessionConfig) -> dict[str, Any]:
    """Status, billing, TTL, item count and size of the sessions table.

    ``item_count`` and ``size_bytes`` are DynamoDB's own figures, refreshed by DynamoDB about
    every six hours (exact on DynamoDB Local and moto).
    """
    with translated("DescribeTable", config.table_name):
        table = client.describe_table(TableName=config.table_name)["Table"]
        ttl = client.describe_time_to_live(TableName=config.table_name)["TimeToLiveDescription"]
    throughput = table.get("ProvisionedThroughput", {})
    billing = table.get("BillingModeSummary", {}).get("BillingMode")
    if billing is None:  # DynamoDB omits the summary for tables created as PROVISIONED
        billing = "PAY_PER_REQUEST" if not throughput.get("ReadCapacityUnits") else "PROVISIONED"
    hash_keys = [k["AttributeName"] for k in table.get("KeySchema", []) if k["KeyType"] == "HASH"]
    return {
        "table_name": table["TableName"],
        "status": table["TableStatus"],
        "hash_key": hash_keys[0] if hash_keys else None,
        "billing_mode": billing,
        "read_capacity": throughput.get("ReadCapacityUnits", 0) or 0,
        "write_capacity": throughput.get("WriteCapacityUnits", 0) or 0,
        "item_count": table.get("ItemCount", 0),
        "size_bytes": table.get("TableSizeBytes", 0),
        "ttl_status": ttl.get("TimeToLiveStatus", "DISABLED"),
        "ttl_attribute": ttl.get("AttributeName"),
    }
