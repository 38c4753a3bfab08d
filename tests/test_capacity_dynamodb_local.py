"""item_size / write_units / read_units agree exactly with what DynamoDB Local charges.

DynamoDB Local is Amazon's own implementation: it reports the ConsumedCapacity of every call.
Each item is written once under a fresh key (so that the charge is for the new item alone), then
read back strongly and eventually consistent.
"""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

import pytest

from .conftest import make_table

pytestmark = pytest.mark.dynamodb_local

NUMBERS = [
    "0", "-0", "1", "-1", "12", "123", "-123", "1.5", "-0.5", "10.1", "100", "1000", "1E+10",
    "0.001", "0.1", "123456789", "1700000000", "-100", "12.34", "00012", "1.000", "12.0E2",
    "5e-1", "1" * 38, "-" + "1" * 38, "1" * 37 + ".1", "0." + "1" * 38, "1E-130", "-1E-130",
    "9.9999999999999999999999999999999999999E+125", "1" + "0" * 20 + "1", "-" + "1" * 21,
    "3.14159265358979323846", "-271828.1828", "99", "101", "1010", "10101", "0.0101",
]

_keys = itertools.count()

SHAPES: list[dict[str, Any]] = [
    {"n": {"N": n}} for n in NUMBERS
] + [
    {"flag": {"BOOL": True}, "nothing": {"NULL": True}},
    {"l": {"L": []}, "m": {"M": {}}},
    {"l": {"L": [{"S": "a"}, {"N": "12345"}, {"B": b"\x00\x01"}, {"BOOL": False}]}},
    {"m": {"M": {"a": {"S": "b"}, "cc": {"N": "1"}, "ddd": {"L": [{"NULL": True}]}}}},
    {"deep": {"M": {"x": {"L": [{"M": {"y": {"L": [{"L": [{"S": "z" * 10}]}]}}}]}}}},
    {"ss": {"SS": ["a", "bb", "ccc"]}, "ns": {"NS": ["1", "22", "-3.5"]}},
    {"bs": {"BS": [b"a", b"bb"]}},
    {"unicodé ñame": {"S": "ünïcødé ✓ 𝄞"}},
    {"cart": {"L": [{"M": {"sku": {"S": f"SKU-{i}"}, "qty": {"N": str(i)},
                           "price": {"N": f"{i}.99"}}} for i in range(12)]}},
]


def _padded(target_size: int, core: ModuleType) -> dict[str, Any]:
    """An item like a session item whose computed size is exactly ``target_size``."""
    item = {"id": {"S": f"PHPSESSID_{next(_keys):08d}"}, "expires": {"N": "1800000000"},
            "data": {"B": b""}}
    pad = target_size - core.item_size(item)
    item["data"] = {"B": b"\xab" * pad}
    assert core.item_size(item) == target_size
    return item


BOUNDARY_SIZES = [100, 1023, 1024, 1025, 2048, 2049, 4095, 4096, 4097, 8192, 8193, 12289,
                  400_000, 409_600]


@pytest.fixture(scope="module")
def capacity_table(dynamodb_local: Any) -> tuple[Any, str]:
    from dynamo_sessions.testing.servers import local_client

    client = local_client(dynamodb_local.endpoint_url)
    name = f"capacity-agreement-{next(_keys)}"  # pytest may set this fixture up once per core
    make_table(client, name)
    return client, name


def _check(core: ModuleType, client: Any, table: str, item: dict[str, Any]) -> None:
    key = item["id"]
    size = core.item_size(item)
    put = client.put_item(TableName=table, Item=item, ReturnConsumedCapacity="TOTAL")
    assert put["ConsumedCapacity"]["CapacityUnits"] == core.write_units(size), size
    for consistent in (True, False):
        got = client.get_item(
            TableName=table, Key={"id": key}, ConsistentRead=consistent,
            ReturnConsumedCapacity="TOTAL",
        )
        assert got["ConsumedCapacity"]["CapacityUnits"] == core.read_units(size, consistent), size
    deleted = client.delete_item(TableName=table, Key={"id": key},
                                 ReturnConsumedCapacity="TOTAL")
    assert deleted["ConsumedCapacity"]["CapacityUnits"] == core.write_units(size), size


@pytest.mark.parametrize("target", BOUNDARY_SIZES)
def test_units_at_size_boundaries(core: ModuleType, capacity_table: Any, target: int) -> None:
    client, table = capacity_table
    _check(core, client, table, _padded(target, core))


@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_units_for_many_shapes(core: ModuleType, capacity_table: Any, index: int) -> None:
    """Shapes are padded to sit exactly on a 1 KB boundary, so a 1-byte error shows."""
    client, table = capacity_table
    shape = SHAPES[index]
    for target in (1024, 1025):
        item = _padded(target, core)
        base = core.item_size(item)
        item.update(shape)
        extra = core.item_size(item) - base
        item["data"] = {"B": b"\xab" * (len(item["data"]["B"]) - extra)}
        assert core.item_size(item) == target
        _check(core, client, table, item)


def test_item_limit_is_exact(core: ModuleType, capacity_table: Any) -> None:
    """409,600 bytes is accepted; one byte more is rejected - as MAX_ITEM_BYTES says."""
    client, table = capacity_table
    item = _padded(core.MAX_ITEM_BYTES, core)
    client.put_item(TableName=table, Item=item)
    item = _padded(core.MAX_ITEM_BYTES + 1, core)
    with pytest.raises(client.exceptions.ClientError, match="Item size"):
        client.put_item(TableName=table, Item=item)


def test_missing_item_read_costs_one_unit(capacity_table: Any) -> None:
    client, table = capacity_table
    got = client.get_item(TableName=table, Key={"id": {"S": "absent"}}, ConsistentRead=True,
                          ReturnConsumedCapacity="TOTAL")
    assert "Item" not in got
    assert got["ConsumedCapacity"]["CapacityUnits"] == 1.0
