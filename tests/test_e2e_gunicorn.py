"""End to end: a real gunicorn (2 gthread workers x 4 threads) serving ``tests/e2e_app.py``
against DynamoDB Local, driven by a real HTTP client (requests); and the served demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dynamo_sessions import SessionHandler, create_store
from dynamo_sessions.store import new_session_id
from dynamo_sessions.testing.servers import DynamoDBLocal, free_port, local_client, wait_or_kill

from .e2e_app import session_name, store_config

ROOT = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT_SECONDS = 30.0
"""The client's own limit: a pessimistic wait must end in a 503 well before it."""

pytestmark = pytest.mark.slow


def wait_until_ready(url: str, process: subprocess.Popen[bytes],
                     limit_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {limit_seconds}s")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        wait_or_kill(process, 30)
    return process.returncode


@pytest.fixture(scope="module")
def served(dynamodb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    """gunicorn serving the e2e app on a free loopback port; always stopped."""
    table = f"e2e-{uuid.uuid4().hex[:10]}"
    client = local_client(dynamodb_local.endpoint_url)
    SessionHandler(store_config("optimistic", table), client).create_table()
    port = free_port()
    env = {**os.environ, "E2E_ENDPOINT_URL": dynamodb_local.endpoint_url, "E2E_TABLE": table,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                          os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "4", "--worker-class", "gthread", "--timeout", "60",
         "--graceful-timeout", "5", "--log-level", "warning", "tests.e2e_app:create_app()"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base + "/healthz", process)
        yield {"base": base, "client": client, "table": table}
    finally:
        stop(process)


def item(served: dict[str, Any], mode: str, session_id: str) -> dict[str, Any] | None:
    store = create_store(store_config(mode, served["table"]), served["client"],
                         session_name=session_name(mode))
    found: dict[str, Any] | None = served["client"].get_item(
        TableName=served["table"], Key={"id": {"S": store.item_key(session_id)}},
        ConsistentRead=True,
    ).get("Item")
    return found


def login(served: dict[str, Any], mode: str) -> requests.Session:
    http = requests.Session()
    response = http.get(f"{served['base']}/{mode}/login", timeout=CLIENT_TIMEOUT_SECONDS)
    assert response.status_code == 200 and f"s_{mode}" in http.cookies
    return http


@pytest.mark.dynamodb_local
def test_counter_survives_across_workers(served: dict[str, Any]) -> None:
    http = login(served, "optimistic")
    pids: set[int] = set()
    count = 0
    while len(pids) < 2 and count < 100:
        # a new connection each time, so that both workers get to serve this session
        response = http.get(f"{served['base']}/optimistic/incr", headers={"Connection": "close"},
                            timeout=CLIENT_TIMEOUT_SECONDS)
        count += 1
        assert response.json()["n"] == count
        pids.add(response.json()["pid"])
    assert len(pids) == 2


def run_tabs(served: dict[str, Any], mode: str, http: requests.Session,
             hold_seconds: float) -> list[Any]:
    """8 concurrent requests ("tabs") on one session, released together by a barrier."""
    cookies = http.cookies.get_dict()
    barrier = threading.Barrier(8)
    results: list[Any] = [None] * 8

    def tab(index: int) -> None:
        barrier.wait()
        try:
            results[index] = requests.get(
                f"{served['base']}/{mode}/incr", params={"tab": index, "hold": hold_seconds},
                cookies=cookies, timeout=CLIENT_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            results[index] = exc

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def state(served: dict[str, Any], mode: str, http: requests.Session) -> dict[str, Any]:
    response = http.get(f"{served['base']}/{mode}/state", timeout=CLIENT_TIMEOUT_SECONDS)
    session: dict[str, Any] = response.json()["session"]
    return session


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("mode", ["none", "optimistic", "pessimistic"])
def test_eight_tabs(served: dict[str, Any], mode: str) -> None:
    http = login(served, mode)
    results = run_tabs(served, mode, http, hold_seconds=0.1)
    assert all(isinstance(r, requests.Response) and r.status_code == 200 for r in results), \
        results
    final = state(served, mode, http)
    tabs = {key for key in final if key.startswith("tab")}
    assert final["user"] == "ada"
    if mode == "pessimistic":  # serialised by the lock: nothing lost
        assert final["n"] == 8 and len(tabs) == 8
    elif mode == "optimistic":  # each tab's own key survives; "n" is per-key last writer
        assert len(tabs) == 8 and 1 <= final["n"] <= 8
    else:  # last writer wins: updates may be lost
        assert 1 <= len(tabs) <= 8 and 1 <= final["n"] <= 8


@pytest.mark.dynamodb_local
def test_pessimistic_short_wait_answers_503_not_a_hang(served: dict[str, Any]) -> None:
    http = login(served, "short")
    results = run_tabs(served, "short", http, hold_seconds=1.5)
    timeouts = [r for r in results if isinstance(r, requests.RequestException)]
    assert timeouts == []  # the client's own limit was never reached
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for response in results:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1"
        else:
            assert response.json()["user"] == "ada"  # never an empty session
    assert state(served, "short", http)["n"] == statuses.count(200)  # no lost update


@pytest.mark.dynamodb_local
def test_logout_destroys_the_item(served: dict[str, Any]) -> None:
    http = login(served, "pessimistic")
    session_id = http.cookies["s_pessimistic"]
    assert item(served, "pessimistic", session_id) is not None
    response = http.get(f"{served['base']}/pessimistic/logout", timeout=CLIENT_TIMEOUT_SECONDS)
    assert response.status_code == 200
    assert item(served, "pessimistic", session_id) is None
    assert "s_pessimistic" not in http.cookies


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("mode", ["optimistic", "pessimistic"])
def test_fixation_attempt_gets_a_new_id(served: dict[str, Any], mode: str) -> None:
    made_up = new_session_id()
    response = requests.get(f"{served['base']}/{mode}/incr", cookies={f"s_{mode}": made_up},
                            timeout=CLIENT_TIMEOUT_SECONDS)
    assert response.json()["n"] == 1
    issued = response.cookies[f"s_{mode}"]
    assert issued != made_up
    assert item(served, mode, made_up) is None and item(served, mode, issued) is not None


@pytest.mark.dynamodb_local
def test_plain_wsgi_middleware_under_gunicorn(served: dict[str, Any]) -> None:
    http = requests.Session()
    for expected in (1, 2, 3):
        response = http.get(f"{served['base']}/wsgi/", timeout=CLIENT_TIMEOUT_SECONDS)
        assert response.json()["n"] == expected


def page_pid(page: str) -> int:
    """The worker pid the demo page says served it."""
    found = re.search(r"worker pid ([0-9]+)", page)
    assert found is not None, page
    return int(found.group(1))


def test_served_demo() -> None:
    """``webdemo.serve()`` in a subprocess: embedded moto, gunicorn, a counter; stops on SIGINT."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from dynamo_sessions.demo.web import serve; "
         f"raise SystemExit(serve(port={port}, workers=2, threads=2))"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base + "/healthz", process)
        http = requests.Session()
        counted = http.get(base + "/count", timeout=CLIENT_TIMEOUT_SECONDS).json()
        assert counted["count"] == 0
        served = [(counted["pid"], 0)]  # (worker, DynamoDB calls): no cookie, nothing to read
        page = http.get(base + "/", timeout=CLIENT_TIMEOUT_SECONDS).text
        assert 'id="count">1<' in page and "Write units" in page
        served.append((page_pid(page), 1))  # a new session: one UpdateItem
        page = http.get(base + "/", timeout=CLIENT_TIMEOUT_SECONDS).text
        assert 'id="count">2<' in page
        served.append((page_pid(page), 2))  # GetItem, then UpdateItem
        metrics = http.get(base + "/metrics", timeout=CLIENT_TIMEOUT_SECONDS).json()
        # per worker: exactly the calls of the requests this worker served
        assert metrics["total_calls"] == sum(calls for pid, calls in served
                                             if pid == metrics["pid"])
        assert metrics["total_calls"] == sum(metrics["calls"].values())
        assert "write_units" in metrics
    finally:
        code = stop(process, signal.SIGINT)
    assert code == 0, process.stderr.read() if process.stderr else ""
