"""Soak-and-fault suite: processes x threads on DynamoDB Local through the fault proxy.

The issue's five fault kinds of ``tests/faultproxy.py`` (six: delay both ways) are injected at
random into every kind of call while
several processes of several threads each hit shared sessions (a key per thread, appends to one
list, increments of one counter) and their own private sessions (set, login, logout).  Then the
table is read directly and checked against what each request was told:

* acknowledged updates lost = 0: every acknowledged key value (or a later attempted one), every
  acknowledged append, every acknowledged increment (and no more than were attempted), every
  private session's last acknowledged state; every id retired by a login or logout stays dead;
* locks still held = 0; unhandled (untyped) exceptions = 0; typed errors are counted by kind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dynamo_sessions import SessionConfig, _core
from dynamo_sessions.store import create_store
from dynamo_sessions.testing.servers import local_client

from .conftest import make_table
from .faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.dynamodb_local]

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 3
THREADS = 4
REQUESTS_PER_THREAD = int(os.environ.get("DYNAMO_SESSIONS_SOAK_REQUESTS_PER_THREAD", "840"))
SHARED_SESSIONS = 6
READ_TIMEOUT_SECONDS = 0.6
RATES = {  # per request, of every operation: about 4% of all calls are faulted
    "drop_before": 0.006, "drop_after": 0.008, "delay": 0.003, "delay_after": 0.003,
    "http500": 0.008, "throttle": 0.008,
}
"""The issue's five kinds (delay both ways: never forwarded, and applied with its answer held).
``delay_late`` - applied only after the client's retry succeeded - is left out here: a lock take
and then the save of one request, both delivered late, can write a stale session back (see the
README's residuals); tests/test_reliability_faults.py covers its single-request cases."""


def _run_workers(endpoint_url: str, table: str, locking: str, shared_ids: list[str]) -> list[Any]:
    config = {"table_name": table, "locking": locking, "max_lock_wait_seconds": 10.0}
    children = []
    for process in range(PROCESSES):
        plan = {
            "process": process, "seed": f"soak-{locking}", "endpoint_url": endpoint_url,
            "config": config, "threads": THREADS, "requests_per_thread": REQUESTS_PER_THREAD,
            "shared_ids": shared_ids, "shared_share": 0.6,
            "read_timeout_seconds": READ_TIMEOUT_SECONDS, "max_attempts": 8,
        }
        children.append(subprocess.Popen(
            [sys.executable, "-m", "tests.soak_worker", json.dumps(plan)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])},
        ))
    threads = []
    for child in children:
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, err.decode()[-3000:]
        threads.extend(json.loads(out)["threads"])
    return threads


def _stored(client: Any, store: Any, session_id: str) -> dict[str, Any] | None:
    item = client.get_item(TableName=store.config.table_name, ConsistentRead=True,
                           Key={"id": {"S": store.item_key(session_id)}}).get("Item")
    if item is None or "data" not in item:
        return None
    data: dict[str, Any] = _core.decode_session(item["data"]["B"])
    return data


def _check(client: Any, store: Any, threads: list[Any], shared_ids: list[str]) -> dict[str, Any]:
    lost: Counter[str] = Counter(dict.fromkeys(("key", "append", "increment", "private"), 0))
    overcounted = 0
    shared = {sid: _stored(client, store, sid) or {} for sid in shared_ids}
    for thread in threads:
        for sid, value in thread["key_acked"].items():
            if shared[sid].get(thread["name"], 0) < value:
                lost["key"] += 1
        for sid, tags in thread["appends_acked"].items():
            present = set(shared[sid].get("log", []))
            lost["append"] += sum(1 for tag in tags if tag not in present)
    for sid in shared_ids:
        acked = sum(t["increments_acked"].get(sid, 0) for t in threads)
        ambiguous = sum(t["increments_ambiguous"].get(sid, 0) for t in threads)
        hits = shared[sid].get("hits", 0)
        lost["increment"] += max(0, acked - hits)
        overcounted += max(0, hits - acked - ambiguous)
    resurrected = 0
    for thread in threads:
        private = thread["private_id"]
        if private is not None and _stored(client, store, private) != thread["private_expected"]:
            lost["private"] += 1
        resurrected += sum(1 for dead in thread["dead_ids"]
                           if _stored(client, store, dead) is not None)
    locks = client.scan(TableName=store.config.table_name, ConsistentRead=True,
                        FilterExpression="attribute_exists(#l)",
                        ExpressionAttributeNames={"#l": "lock"}, Select="COUNT")["Count"]
    return {"lost": dict(lost), "overcounted": overcounted, "resurrected": resurrected,
            "locks_held": locks}


@pytest.mark.parametrize("locking", ["optimistic", "pessimistic"])
def test_soak_under_faults(dynamodb_local: Any, table_name: str, locking: str) -> None:
    direct = local_client(dynamodb_local.endpoint_url)
    make_table(direct, table_name)
    store = create_store(SessionConfig(table_name=table_name, locking=locking), direct,
                         session_name="soak")
    shared_ids = [f"shared-{i}-{table_name}" for i in range(SHARED_SESSIONS)]
    for sid in shared_ids:
        store.create(sid, {"hits": 0, "log": []})
    with FaultProxy(dynamodb_local.endpoint_url,
                    delay_seconds=READ_TIMEOUT_SECONDS + 0.4) as proxy:
        proxy.randomly(RATES, seed=len(locking))
        threads = _run_workers(proxy.endpoint_url, table_name, locking, shared_ids)
        injected = proxy.counts()
    outcome = _check(direct, store, threads, shared_ids)
    requests = sum(t["requests"] for t in threads)
    errors: Counter[str] = Counter()
    for thread in threads:
        errors.update(thread["errors"])
    unhandled = [text for thread in threads for text in thread["unhandled"]]
    print(f"\nsoak {locking}: {requests} requests, "
          f"{sum(t['acknowledged'] for t in threads)} acknowledged, "
          f"{sum(t['logins'] for t in threads)} logins, {sum(t['logouts'] for t in threads)} "
          f"logouts; faults injected {dict(sorted(injected.items()))} "
          f"(total {sum(injected.values())}); typed errors {dict(sorted(errors.items()))}; "
          f"unhandled {len(unhandled)}; acknowledged updates lost {outcome['lost']}; "
          f"increments applied but not attempted {outcome['overcounted']}; "
          f"dead ids served again {outcome['resurrected']}; locks held {outcome['locks_held']}")
    assert requests >= 10_000
    assert set(injected) == set(RATES), injected  # every kind of fault happened
    assert unhandled == [], unhandled[:3]
    assert sum(outcome["lost"].values()) == 0, outcome
    assert outcome["overcounted"] == 0
    assert outcome["resurrected"] == 0
    assert outcome["locks_held"] == 0
