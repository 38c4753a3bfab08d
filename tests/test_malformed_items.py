"""Items written badly by someone else (another serializer, a hand edit, a bug), on DynamoDB
Local: every malformed item raises ``CorruptSession``; nothing is changed by the failed read -
a pessimistic read gives its lock back and does not push ``expires`` forward, so a broken
session still expires."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dynamo_sessions import CorruptSession, SessionConfig, SessionHandler, new_session_id

from .handler_support import raw_item
from .test_handler_dynamodb_local import table as table  # the fixture

pytestmark = pytest.mark.dynamodb_local

MODES = ["none", "pessimistic", "optimistic"]
LIVE = str(int(time.time()) + 3600)
GOOD_DATA = {"B": b"placeholder"}  # replaced by a real payload in the test
HOSTILE: dict[str, dict[str, Any]] = {
    "expires-string": {"expires": {"S": "tomorrow"}},
    "expires-binary": {"expires": {"B": b"\x01"}},
    "expires-list": {"expires": {"L": []}},
    "version-string": {"version": {"S": "3"}},
    "version-fraction": {"version": {"N": "2.5"}},
    "version-negative": {"version": {"N": "-1"}},
    "data-string": {"data": {"S": "a|s:1:\"b\";"}},  # PHP's serialize()
    "data-number": {"data": {"N": "7"}},
    "data-garbage": {"data": {"B": b"\x00\xffnot a payload"}},
    "data-truncated": {"data": "truncate"},
    "writes-string": {"writes": {"S": "abcd"}},
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("mode", MODES)
def test_malformed_item_raises_and_changes_nothing(ddb_local_client: Any, table: str,
                                                   mode: str, hostile: str) -> None:
    handler = SessionHandler(SessionConfig(table_name=table, locking=mode), ddb_local_client)
    handler.open("", "PHPSESSID")
    sid = new_session_id()
    handler.write(sid, {"user": "jeremy", "cart": [1, 2, 3]})
    key = handler.store.item_key(sid)
    item = raw_item(ddb_local_client, table, key)
    assert item is not None
    item["expires"] = {"N": LIVE}
    for name, value in HOSTILE[hostile].items():
        item[name] = ({"B": bytes(item["data"]["B"])[:-3]} if value == "truncate" else value)
    ddb_local_client.put_item(TableName=table, Item=item)
    for _ in range(2):  # a second read finds the same item: no lock left, expiry not moved
        with pytest.raises(CorruptSession):
            handler.read(sid)
        handler.close()
        assert raw_item(ddb_local_client, table, key) == item


def test_a_lease_that_is_not_a_number_is_taken_over(ddb_local_client: Any, table: str) -> None:
    """``lock_until_ms`` of the wrong type never compares as past: without care the session
    would stay locked until the item expires."""
    handler = SessionHandler(SessionConfig(table_name=table, locking="pessimistic",
                                           max_lock_wait_seconds=0.0), ddb_local_client)
    handler.open("", "PHPSESSID")
    sid = new_session_id()
    handler.write(sid, {"n": 1})
    key = handler.store.item_key(sid)
    ddb_local_client.update_item(
        TableName=table, Key={"id": {"S": key}}, UpdateExpression="SET #l = :l, #lu = :lu",
        ExpressionAttributeNames={"#l": "lock", "#lu": "lock_until_ms"},
        ExpressionAttributeValues={":l": {"S": "someone"}, ":lu": {"S": "soon"}})
    assert handler.read(sid) == {"n": 1}
    handler.write(sid, {"n": 2})
    item = raw_item(ddb_local_client, table, key)
    assert item is not None and "lock" not in item and "lock_until_ms" not in item
