"""A Flask request with a session: ours vs flask-session 0.8's DynamoDB backend.

Both apps run through Flask's test client, side by side on the same in-process backend, in
two set-ups:

* ``moto``: moto's in-process DynamoDB (``mock_aws``) - real request handling, but moto's own
  work is most of each call's time;
* ``stub``: a botocore ``before-send`` handler answering from a dict (``StubDynamoDB``), so
  that what is left is the adapters' own cost plus botocore's client side.  Conditions are
  not evaluated there: it measures, it does not check.

Three kinds of request, each on a logged-in session holding a typical ~1 KB session:
``read+write`` (reads a counter, writes it back), ``read-only``, and ``untouched`` (never
touches the session).  DynamoDB calls per request are counted with a botocore
``before-call`` handler and put in ``extra_info``; ours are checked against the design
(read+write: GetItem + UpdateItem; read-only: one GetItem; untouched: none).

Ours runs with the Flask adapter's default ``locking="optimistic"`` and, for reference, with
``locking="none"`` (flask-session has no locking; its write is an unconditional UpdateItem).

    pytest bench/test_bench_flask.py --benchmark-group-by=group \
        --benchmark-columns=mean,median,ops,rounds
    pytest bench/test_bench_flask.py --benchmark-disable      # as plain tests
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import flask
import pytest
from botocore.awsrequest import AWSResponse

from conftest import canned_response, typical_session
from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.flask import DynamoSessionInterface
from dynamo_sessions.testing.calls import CallCounter
from dynamo_sessions.testing.servers import local_client

OURS_TABLE = "bench-ours"
THEIRS_TABLE = "bench-theirs"
EXPECTED_OURS = {"read+write": {"GetItem": 1, "UpdateItem": 1}, "read-only": {"GetItem": 1},
                 "untouched": {}}
PATHS = {"read+write": "/rw", "read-only": "/ro", "untouched": "/untouched"}
IMPLS = ["theirs", "ours", "ours-none"]
"""flask-session; ours with the Flask default (optimistic); ours with locking="none"."""
BACKENDS = ["moto", "stub"]
RESULTS: dict[tuple[str, str, str], float] = {}
STUB_ENDPOINT = "http://127.0.0.1:9"
"""Never contacted: the stub answers before anything is sent."""


class StubDynamoDB:
    """Answers GetItem / UpdateItem / DeleteItem / DescribeEndpoints / table calls from a dict
    (bench only)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.dynamodb", self._answer)
        return client

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else target).split(".")[-1]
        body = json.loads(request.body or b"{}")
        with self.lock:
            answer = getattr(self, operation)(body)
        if body.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
            answer["ConsumedCapacity"] = {"TableName": body.get("TableName"),
                                          "CapacityUnits": 1.0}
        return canned_response(request, json.dumps(answer).encode(), "stub")

    @staticmethod
    def _key(body: dict[str, Any]) -> str:
        return body["TableName"] + json.dumps(body["Key"], sort_keys=True)

    def GetItem(self, body: dict[str, Any]) -> dict[str, Any]:
        item = self.items.get(self._key(body))
        return {} if item is None else {"Item": item}

    def UpdateItem(self, body: dict[str, Any]) -> dict[str, Any]:
        key = self._key(body)
        item = self.items.setdefault(key, dict(body["Key"]))
        names = body.get("ExpressionAttributeNames", {})
        values = body.get("ExpressionAttributeValues", {})
        match = re.fullmatch(r"\s*SET\s+(.*?)(?:\s+REMOVE\s+(.*))?\s*", body["UpdateExpression"])
        assert match is not None, body["UpdateExpression"]
        for assignment in match.group(1).split(","):
            left, right = (part.strip() for part in assignment.split("="))
            item[names.get(left, left)] = values[right]
        for name in (match.group(2) or "").split(","):
            if name.strip():
                item.pop(names.get(name.strip(), name.strip()), None)
        return {}

    def DeleteItem(self, body: dict[str, Any]) -> dict[str, Any]:
        self.items.pop(self._key(body), None)
        return {}

    def DescribeEndpoints(self, body: dict[str, Any]) -> dict[str, Any]:
        """A store's first write learns DynamoDB's clock from this answer's ``Date``."""
        return {"Endpoints": [{"Address": "stub", "CachePeriodInMinutes": 1440}]}

    def CreateTable(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"TableDescription": {"TableName": body["TableName"], "TableStatus": "ACTIVE"}}

    def DescribeTable(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Table": {"TableName": body["TableName"], "TableStatus": "ACTIVE"}}

    def UpdateTimeToLive(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"TimeToLiveSpecification": body["TimeToLiveSpecification"]}

    def DescribeTimeToLive(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED",
                                          "AttributeName": "expires"}}


def seed() -> str:
    flask.session.update(typical_session())
    flask.session["visits"] = 0
    return "ok"


def read_write() -> str:
    flask.session["visits"] = flask.session.get("visits", 0) + 1
    return str(flask.session["visits"])


def read_only() -> str:
    return str(flask.session.get("visits"))


def untouched() -> str:
    return "hello"


VIEWS = {"/seed": seed, PATHS["read+write"]: read_write, PATHS["read-only"]: read_only,
         PATHS["untouched"]: untouched}
"""The views every app of the comparison serves (the same functions for each)."""


def add_routes(app: flask.Flask) -> flask.Flask:
    for path, view in VIEWS.items():
        app.add_url_rule(path, view_func=view)
    return app


def build(make_client: Any, make_resource: Any) -> dict[str, Any]:
    """The three apps, each logged in with a seeded session, and their call counters."""
    from flask_session import Session

    from dynamo_sessions.handler import SessionHandler

    clients = {"ours": make_client(), "ours-none": make_client()}
    SessionHandler(SessionConfig(table_name=OURS_TABLE), clients["ours"]).create_table()
    apps = {}
    for impl, locking in (("ours", "optimistic"), ("ours-none", "none")):
        app = add_routes(flask.Flask(impl))
        store = create_store(SessionConfig(table_name=OURS_TABLE, locking=locking),
                             clients[impl], session_name="session")
        app.session_interface = DynamoSessionInterface(store)
        apps[impl] = app
    resource = make_resource()
    theirs = add_routes(flask.Flask("theirs"))
    theirs.config.update(SESSION_TYPE="dynamodb", SESSION_DYNAMODB=resource,
                         SESSION_DYNAMODB_TABLE=THEIRS_TABLE)
    Session(theirs)
    apps["theirs"] = theirs
    clients["theirs"] = resource.meta.client
    test_clients = {}
    for impl, app in apps.items():
        test_client = app.test_client()
        assert test_client.get("/seed").status_code == 200
        assert test_client.get("/rw").text == "1"
        test_clients[impl] = test_client
    return {"clients": test_clients,
            "calls": {impl: CallCounter(client) for impl, client in clients.items()}}


def _resource(endpoint_url: str | None) -> Any:
    return boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=endpoint_url,
                          aws_access_key_id="local", aws_secret_access_key="local")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, Any]]]:
    if request.param == "moto":
        from moto import mock_aws

        with mock_aws():
            yield "moto", build(lambda: local_client(None), lambda: _resource(None))
    else:
        stub = StubDynamoDB()
        yield "stub", build(lambda: stub.attach(local_client(STUB_ENDPOINT)),
                            lambda: _attach_resource(stub, _resource(STUB_ENDPOINT)))


def _attach_resource(stub: StubDynamoDB, resource: Any) -> Any:
    stub.attach(resource.meta.client)
    return resource


def calls_per_request(apps: dict[str, Any], impl: str, path: str) -> dict[str, int]:
    calls: CallCounter = apps["calls"][impl]
    calls.reset()
    response = apps["clients"][impl].get(path)
    assert response.status_code == 200
    return dict(calls.calls)


def run(benchmark: Any, backend: tuple[str, dict[str, Any]], impl: str, kind: str) -> None:
    name, apps = backend
    benchmark.group = f"flask {kind} ({name})"
    path = PATHS[kind]
    per_request = calls_per_request(apps, impl, path)
    benchmark.extra_info["dynamodb_calls_per_request"] = sum(per_request.values())
    benchmark.extra_info["dynamodb_calls"] = per_request
    if impl != "theirs":
        assert per_request == EXPECTED_OURS[kind]  # counted, against the design
    client = apps["clients"][impl]

    def request() -> None:
        client.get(path)

    benchmark(request)
    if benchmark.stats is not None:
        RESULTS[(name, impl, kind)] = benchmark.stats.stats.mean
        if impl != "theirs" and (name, "theirs", kind) in RESULTS:
            benchmark.extra_info["requests_per_second_vs_theirs"] = round(
                RESULTS[(name, "theirs", kind)] / RESULTS[(name, impl, kind)], 2)


@pytest.mark.parametrize("impl", IMPLS)
def test_read_write(benchmark: Any, backend: tuple[str, dict[str, Any]], impl: str) -> None:
    run(benchmark, backend, impl, "read+write")


@pytest.mark.parametrize("impl", IMPLS)
def test_read_only(benchmark: Any, backend: tuple[str, dict[str, Any]], impl: str) -> None:
    run(benchmark, backend, impl, "read-only")


@pytest.mark.parametrize("impl", IMPLS)
def test_untouched(benchmark: Any, backend: tuple[str, dict[str, Any]], impl: str) -> None:
    run(benchmark, backend, impl, "untouched")
