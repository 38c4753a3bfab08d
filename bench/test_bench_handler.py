"""The session handler's cost: its own overhead per request, and capacity units per request.

(a) ``request-cycle``: one request - read a ~1 KB session, change it, write it - through
    ``SessionHandler`` against the same two bare boto3 calls (``get_item`` + ``update_item``
    with the very request the handler sends).  The transport is stubbed: a botocore
    ``before-send`` handler answers canned HTTP responses, so no network or server time hides
    the handler's own.  Rows for the compiled core and the pure-Python twin.  Target: handler
    <= 1.05x the bare calls.

(b) ``capacity``: a replayed read-mostly workload (20 users, sessions of 1-3 KB, 90% of the
    requests read only, 10% change the session, ~60 s between a user's requests) through our
    handler and through a PHP-handler equivalent (GetItem, then always UpdateItem of data +
    expires, as PHP's session_write_close does, PHP key layout) on DynamoDB Local.  Units are
    the ConsumedCapacity DynamoDB Local reports; each request's units are also computed from
    the stored item's size before and after, and the two must agree.  Target: <= 0.5x.  The
    figures go to ``extra_info`` and stdout.

    pytest bench/test_bench_handler.py --benchmark-group-by=group \\
        --benchmark-columns=min,median,mean,ops,rounds -s
    pytest bench/test_bench_handler.py --benchmark-disable -s     # as plain tests
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import random
import time
from types import ModuleType
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from conftest import canned_response, typical_session
from dynamo_sessions import SessionConfig, SessionHandler, item_size, read_units, write_units
from dynamo_sessions import _core as chosen_core
from dynamo_sessions.testing.plugin import create_sessions_table
from dynamo_sessions.testing.servers import DynamoDBLocal, local_client

TABLE = "bench-sessions"
SESSION_ID = "bench-session-id-0123456789abcdefghijklmnop"
CORE_NAMES = ("encode_session", "decode_session", "number_size", "item_size", "write_units",
              "read_units", "LockRetryBackoff")

# --- (a) request cycle on a stubbed transport -------------------------------------------------


class CannedDynamoDB:
    """Answers GetItem with one stored item and UpdateItem with its consumed capacity."""

    def __init__(self, client: Any, key: str, payload: bytes) -> None:
        item = {"id": {"S": key}, "data": {"B": base64.b64encode(payload).decode()},
                "expires": {"N": str(int(time.time()) + 100_000)}}
        self.get = json.dumps({"Item": item, "ConsumedCapacity": {
            "TableName": TABLE, "CapacityUnits": 1.0}}).encode()
        self.update = json.dumps({"ConsumedCapacity": {
            "TableName": TABLE, "CapacityUnits": 2.0}}).encode()
        self.sent: list[str] = []
        client.meta.events.register("before-send.dynamodb", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]
        target = target.decode() if isinstance(target, bytes) else target
        operation = target.rsplit(".", 1)[1]
        self.sent.append(operation)
        body = self.get if operation == "GetItem" else self.update
        return canned_response(request, body, "canned")


def stub_client() -> Any:
    return local_client("http://127.0.0.1:9", retries={"mode": "standard"})


@pytest.fixture(params=["compiled", "python"])
def handler_core(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The handler with the compiled core or with the pure-Python twin."""
    if request.param == "compiled" and os.environ.get("DYNAMO_SESSIONS_NO_EXTENSIONS"):
        pytest.skip("DYNAMO_SESSIONS_NO_EXTENSIONS is set")
    module = importlib.import_module(
        "dynamo_sessions._core_c" if request.param == "compiled" else "dynamo_sessions._core_py")
    for name in CORE_NAMES:
        monkeypatch.setattr(chosen_core, name, getattr(module, name))
    return module


def cycle_fixture() -> tuple[SessionHandler, CannedDynamoDB, dict[str, Any]]:
    client = stub_client()
    handler = SessionHandler(SessionConfig(table_name=TABLE), client)
    handler.open("", "PHPSESSID")
    data = typical_session()
    payload = chosen_core.encode_session(data, 100)
    assert 800 <= len(payload) <= 1300  # a ~1 KB session
    canned = CannedDynamoDB(client, handler.store.item_key(SESSION_ID), payload)
    return handler, canned, data


@pytest.mark.benchmark(group="request-cycle")
def test_cycle_handler(benchmark: Any, handler_core: ModuleType) -> None:
    handler, canned, _ = cycle_fixture()
    counter = iter(range(10**9))

    def request() -> None:
        data = handler.read(SESSION_ID)
        data["request"] = next(counter)  # a key the stored session lacks: always a change
        handler.write(SESSION_ID, data)

    benchmark(request)
    assert canned.sent[:2] == ["GetItem", "UpdateItem"]  # one read, one write per request
    assert canned.sent.count("GetItem") * 2 == len(canned.sent)


@pytest.mark.benchmark(group="request-cycle")
def test_cycle_bare_boto3_calls(benchmark: Any) -> None:
    """The very two requests the handler sends (captured from one handler request), made
    directly: no codec, no bookkeeping."""
    handler, canned, _ = cycle_fixture()
    client = handler.client
    sent: dict[str, dict[str, Any]] = {}

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent[model.name] = dict(params)

    client.meta.events.register("provide-client-params.dynamodb", capture)
    data = handler.read(SESSION_ID)
    data["request"] = 0
    handler.write(SESSION_ID, data)
    client.meta.events.unregister("provide-client-params.dynamodb", capture)
    get, update = sent["GetItem"], sent["UpdateItem"]
    assert set(update["ExpressionAttributeValues"]) == {":d", ":e"}

    def request() -> None:
        client.get_item(**get)
        client.update_item(**update)

    benchmark(request)
    assert canned.sent[:4] == ["GetItem", "UpdateItem"] * 2


# --- (b) capacity units per request on DynamoDB Local ----------------------------------------

USERS = 20
REQUESTS = 600
CHANGED_SHARE = 0.10
SECONDS_BETWEEN_REQUESTS = 3.0  # across all users: each user every ~60 s
LIFETIME_SECONDS = 1440


class VirtualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ddb_local(dynamodb_local: DynamoDBLocal) -> Any:
    """A client on the plugin's DynamoDB Local (which fails or skips as the plugin says)."""
    return local_client(dynamodb_local.endpoint_url)


def workload(seed: int = 7) -> list[tuple[int, bool]]:
    """(user, changes the session) per request: reproducible."""
    rng = random.Random(seed)
    return [(rng.randrange(USERS), rng.random() < CHANGED_SHARE) for _ in range(REQUESTS)]


def initial_sessions(seed: int = 11) -> list[dict[str, Any]]:
    """One session per user, 1-3 KB: a typical session plus an opaque token blob."""
    rng = random.Random(seed)
    sessions = []
    for _ in range(USERS):
        session = typical_session()
        session["blob"] = rng.randbytes(rng.randrange(300, 2100))
        sessions.append(session)
    return sessions


def stored_size(client: Any, table: str, key: str) -> int:
    item = client.get_item(TableName=table, Key={"id": {"S": key}},
                           ConsistentRead=True).get("Item")
    return int(item_size(item)) if item else 0


class Tally:
    def __init__(self) -> None:
        self.measured_rcu = self.measured_wcu = 0.0
        self.computed_rcu = self.computed_wcu = 0.0
        self.calls = 0
        self.refreshes = 0
        self.sizes: list[int] = []

    def as_dict(self) -> dict[str, float]:
        return {"rcu": self.measured_rcu, "wcu": self.measured_wcu,
                "units_per_request": (self.measured_rcu + self.measured_wcu) / REQUESTS,
                "calls_per_request": self.calls / REQUESTS, "expiry_refreshes": self.refreshes}


def replay_ours(client: Any, mode: str) -> Tally:
    table = f"bench-ours-{mode}"
    create_sessions_table(client, table)
    clock = VirtualClock()
    handler = SessionHandler(SessionConfig(table_name=table, locking=mode,
                                           session_lifetime_seconds=LIFETIME_SECONDS), client,
                             clock=clock)
    handler.open("", "PHPSESSID")
    ids = [f"user{i:02d}-session-id-abcdefghijklmnopqrstuvwxyz" for i in range(USERS)]
    for sid, data in zip(ids, initial_sessions(), strict=True):
        handler.write(sid, data)
    metrics = handler.metrics
    metrics.reset()
    tally = Tally()
    for number, (user, changes) in enumerate(workload()):
        clock.now += SECONDS_BETWEEN_REQUESTS
        sid = ids[user]
        key = handler.store.item_key(sid)
        before = stored_size(client, table, key)
        writes = metrics.operations.get("write", 0) + metrics.operations.get("refresh", 0)
        data = handler.read(sid)
        held = stored_size(client, table, key)  # pessimistic: the item with its lock
        if changes:
            data["last_action"] = f"request {number}"
        handler.write(sid, data)
        after = stored_size(client, table, key)
        tally.sizes.append(before)
        if mode == "pessimistic":  # lock (ALL_OLD: no read units), then write or release
            tally.computed_wcu += write_units(max(before, held)) + write_units(max(held, after))
            continue
        tally.computed_rcu += read_units(before, True)
        if metrics.operations.get("write", 0) + metrics.operations.get("refresh", 0) > writes:
            tally.computed_wcu += write_units(max(before, after))
    tally.measured_rcu = metrics.read_units
    tally.measured_wcu = metrics.write_units + metrics.failed_write_units
    tally.calls = metrics.total_calls
    tally.refreshes = metrics.operations.get("refresh", 0)
    return tally


def replay_php(client: Any, locking: bool = False) -> Tally:
    """The PHP handler's request: GetItem (or, locking, an UpdateItem taking the lock and
    returning the item), then session_write_close always writes data + expires."""
    table = f"bench-php-{'pessimistic' if locking else 'none'}"
    create_sessions_table(client, table)
    now = time.time()
    keys = [f"PHPSESSID_user{i:02d}-session-id-abcdefghijklmnopqrstuvwxyz" for i in range(USERS)]
    payloads = [chosen_core.encode_session(data, 80) for data in initial_sessions()]
    for key, payload in zip(keys, payloads, strict=True):
        client.put_item(TableName=table, Item={"id": {"S": key}, "data": {"B": payload},
                                               "expires": {"N": str(int(now) + 1440)}})
    tally = Tally()
    for number, (user, changes) in enumerate(workload()):
        now += SECONDS_BETWEEN_REQUESTS
        key = {"id": {"S": keys[user]}}
        before = stored_size(client, table, keys[user])
        if locking:  # PHP's lock: a bare flag, no owner, no expiry
            got = client.update_item(
                TableName=table, Key=key, UpdateExpression="SET #l = :t",
                ConditionExpression="attribute_not_exists(#l)",
                ExpressionAttributeNames={"#l": "lock"},
                ExpressionAttributeValues={":t": {"BOOL": True}},
                ReturnValues="ALL_NEW", ReturnConsumedCapacity="TOTAL")
            item, held = got["Attributes"], stored_size(client, table, keys[user])
            tally.measured_wcu += got["ConsumedCapacity"]["CapacityUnits"]
            tally.computed_wcu += write_units(max(before, held))
        else:
            got = client.get_item(TableName=table, Key=key, ConsistentRead=True,
                                  ReturnConsumedCapacity="TOTAL")
            item, held = got["Item"], before
            tally.measured_rcu += got["ConsumedCapacity"]["CapacityUnits"]
            tally.computed_rcu += read_units(before, True)
        data = chosen_core.decode_session(item["data"]["B"])
        if changes:
            data["last_action"] = f"request {number}"
        written = client.update_item(
            TableName=table, Key=key,
            UpdateExpression="SET #d = :d, #e = :e" + (" REMOVE #l" if locking else ""),
            ExpressionAttributeNames={"#d": "data", "#e": "expires",
                                      **({"#l": "lock"} if locking else {})},
            ExpressionAttributeValues={":d": {"B": chosen_core.encode_session(data, 80)},
                                       ":e": {"N": str(int(now) + LIFETIME_SECONDS)}},
            ReturnConsumedCapacity="TOTAL",
        )
        after = stored_size(client, table, keys[user])
        tally.sizes.append(before)
        tally.measured_wcu += written["ConsumedCapacity"]["CapacityUnits"]
        tally.computed_wcu += write_units(max(held, after))
        tally.calls += 2
    return tally


@pytest.mark.benchmark(group="capacity")
def test_capacity_per_request_vs_php(benchmark: Any, ddb_local: Any) -> None:
    results: dict[str, Tally] = {}

    def replay() -> None:
        results["php"] = replay_php(ddb_local)
        results["php-pessimistic"] = replay_php(ddb_local, locking=True)
        for mode in ("none", "optimistic", "pessimistic"):
            results[mode] = replay_ours(ddb_local, mode)

    benchmark.pedantic(replay, rounds=1, iterations=1)
    php = results["php"]
    assert min(php.sizes) >= 1024 and max(php.sizes) <= 3 * 1024  # sessions of 1-3 KB
    for name, tally in results.items():
        # DynamoDB Local's figures are what the item sizes say they must be
        assert tally.measured_rcu == tally.computed_rcu, name
        assert tally.measured_wcu == tally.computed_wcu, name
    lines = [f"capacity per request, {REQUESTS} requests, {USERS} users, "
             f"{CHANGED_SHARE:.0%} changing, sessions {min(php.sizes)}-{max(php.sizes)} B "
             "(ratio: to the PHP handler with the same locking)"]
    for name, tally in results.items():
        base = results["php-pessimistic" if "pessimistic" in name else "php"]
        units = tally.measured_rcu + tally.measured_wcu
        ratio = units / (base.measured_rcu + base.measured_wcu)
        assert ratio == (tally.computed_rcu + tally.computed_wcu) / (
            base.computed_rcu + base.computed_wcu)
        benchmark.extra_info[name] = {**tally.as_dict(), "ratio_to_php": ratio}
        lines.append(f"  {name:15s} RCU {tally.measured_rcu:7.1f}  WCU {tally.measured_wcu:7.1f}"
                     f"  units/request {units / REQUESTS:5.2f}  calls/request "
                     f"{tally.calls / REQUESTS:4.2f}  expiry refreshes {tally.refreshes:3d}"
                     f"  ratio to PHP {ratio:.3f}")
    print("\n" + "\n".join(lines))
