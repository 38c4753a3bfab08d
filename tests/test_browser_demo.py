"""The served demo's multi-tab page, driven by a real headless Chromium (selenium); and its
per-mode apps one request at a time (fast, on the embedded moto server).

``dynamo-sessions demo --serve`` runs as a user starts it (gunicorn, 2 workers) against
DynamoDB Local; the browser opens ``/tabs``, clicks "Run", and the figures are read from the
page: with optimistic and pessimistic locking nothing acknowledged is lost, and no request of
any mode goes unanswered or takes longer than the configuration allows.

The browser comes from the OS (Debian: ``apt-get install chromium chromium-driver``); nothing is
downloaded at test time - selenium is given both binaries and runs offline.  Without them the
test skips, unless ``DYNAMO_SESSIONS_REQUIRE_BROWSER=1`` (CI), which turns the skip into a
failure.  ``DYNAMO_SESSIONS_SCREENSHOT=docs/multitab-demo.png`` also saves the page there
(the README's screenshot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from dynamo_sessions import SessionConfig, SessionHandler, create_store
from dynamo_sessions.demo.web import COST_HEADER, DEMO_TABLE, create_demo
from dynamo_sessions.testing.servers import (
    DynamoDBLocal,
    EmbeddedMoto,
    free_port,
    local_client,
)

from .conftest import _flag
from .test_e2e_gunicorn import ROOT, stop, wait_until_ready

REQUIRE_BROWSER = _flag("DYNAMO_SESSIONS_REQUIRE_BROWSER")
MODES = ("none", "pessimistic", "optimistic")
TABS = 6
"""A browser opens at most 6 connections to one server: 6 tabs are all in flight at once."""
REQUESTS_PER_TAB = 8
WORK_MS = 100
MAX_LOCK_WAIT_SECONDS = 1.0
WORKERS, THREADS = 2, 8
"""Threads >= TABS: a worker that accepts every connection still serves them all at once."""


def request_bound_seconds() -> float:
    """Longest any request may take: the lock wait (or optimistic retries) ends at
    ``max_lock_wait_seconds``, plus one more retry delay, the work, and one DynamoDB call cut
    at its read timeout."""
    defaults = SessionConfig()
    return (MAX_LOCK_WAIT_SECONDS + defaults.max_lock_retry_microseconds / 1e6
            + WORK_MS / 1000 + defaults.read_timeout_seconds)


def _browser_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) from the OS; skip - or fail when required - without them."""
    problems = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("selenium is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None:
        problems.append("no chromium on PATH (apt-get install chromium)")
    if driver is None:
        problems.append("no chromedriver on PATH (apt-get install chromium-driver)")
    if problems:
        message = "; ".join(problems)
        if REQUIRE_BROWSER:
            pytest.fail(f"a browser is required here (DYNAMO_SESSIONS_REQUIRE_BROWSER): {message}")
        pytest.skip(message)
    assert chromium is not None and driver is not None
    return chromium, driver


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium from the OS, on a fresh profile, with nothing fetched from the net."""
    chromium, chromedriver = _browser_binaries()
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must never download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                     "--window-size=1200,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served_demo(dynamodb_local: DynamoDBLocal) -> Iterator[str]:
    """``dynamo-sessions demo --serve`` against DynamoDB Local; always stopped."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dynamo_sessions", "demo", "--serve", "--endpoint-url",
         dynamodb_local.endpoint_url, "--port", str(port), "--workers", str(WORKERS),
         "--threads", str(THREADS), "--max-lock-wait-seconds", str(MAX_LOCK_WAIT_SECONDS)],
        cwd=ROOT, stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base + "/healthz", process)
        yield base
    finally:
        stop(process)  # SIGTERM: serve() stops gunicorn as on Ctrl-C (SIGINT may be ignored)


def figures(driver: Any, mode: str) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    columns = ("requests", "acknowledged", "timeouts", "errors", "unanswered", "stored", "lost",
               "slowest_ms", "longest_wait_ms", "calls", "rcu", "wcu", "refused")
    return {column: float(driver.find_element(By.ID, f"{mode}-{column}")
                          .get_attribute("data-value"))
            for column in columns}


def stored_updates(endpoint_url: str, mode: str, session_id: str) -> int:
    """The tabs' counters as DynamoDB holds them, read past the demo app."""
    store = create_store(SessionConfig(table_name=DEMO_TABLE, locking="none"),
                         local_client(endpoint_url), session_name=f"demo_{mode}")
    data = store.load(session_id).data
    return sum(int(value) for key, value in data.items() if key.startswith("t"))


@pytest.mark.slow
@pytest.mark.dynamodb_local
@pytest.mark.timeout(900)
def test_multitab_page_in_a_real_browser(browser: Any, served_demo: str,
                                         dynamodb_local: DynamoDBLocal, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served_demo + "/tabs")
    for field, value in (("tabs", TABS), ("requests", REQUESTS_PER_TAB), ("work", WORK_MS)):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(str(value))
    browser.find_element(By.ID, "run").click()
    # every request of every mode is answered or aborted by the page within 2 bounds
    limit_seconds = len(MODES) * REQUESTS_PER_TAB * 2 * request_bound_seconds() + 30
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, limit_seconds, poll_frequency=0.5).until(
        lambda _: status.get_attribute("data-state") in ("done", "failed"))
    assert status.get_attribute("data-state") == "done", status.text

    bound_ms = request_bound_seconds() * 1000
    shown = {mode: figures(browser, mode) for mode in MODES}
    print()
    for mode, row in shown.items():
        print(mode, {key: round(value, 1) for key, value in row.items()})
    for mode, row in shown.items():
        assert row["requests"] == TABS * REQUESTS_PER_TAB, (mode, row)
        assert row["unanswered"] == 0 and row["errors"] == 0, (mode, row)
        assert row["acknowledged"] + row["timeouts"] == row["requests"], (mode, row)
        assert row["slowest_ms"] <= bound_ms, (mode, row, bound_ms)  # nobody hung
        assert row["calls"] >= row["requests"] and row["wcu"] > 0, (mode, row)
        session_id = browser.get_cookie(f"demo_tabs_{mode}")["value"]
        assert stored_updates(dynamodb_local.endpoint_url, mode, session_id) == row["stored"]
        assert row["lost"] == row["acknowledged"] - row["stored"]
    for mode in ("pessimistic", "optimistic"):
        assert shown[mode]["lost"] == 0, shown[mode]
    assert shown["pessimistic"]["longest_wait_ms"] > 0  # the tabs took turns on the lock
    assert shown["none"]["timeouts"] == shown["optimistic"]["timeouts"] == 0
    assert 0 <= shown["none"]["lost"] <= shown["none"]["acknowledged"]

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1200, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
    target = Path(os.environ.get("DYNAMO_SESSIONS_SCREENSHOT") or tmp_path / "multitab.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(target))


# --- the per-mode apps, one request at a time -------------------------------------------------


@pytest.fixture
def demo(moto_server: EmbeddedMoto, table_name: str) -> Client:
    SessionHandler(SessionConfig(table_name=table_name),
                   local_client(moto_server.endpoint_url)).create_table()
    return Client(create_demo(moto_server.endpoint_url, table_name=table_name,
                              max_lock_wait_seconds=0.2))


def cost(response: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(response.headers[COST_HEADER])
    return found


def test_page_carries_the_servers_settings(demo: Client) -> None:
    page = demo.get("/tabs").get_data(as_text=True)
    assert '"max_lock_wait_seconds": 0.2' in page and '"base": "/tabs"' in page
    assert 'id="run"' in page


def test_bump_reports_what_the_request_cost(demo: Client) -> None:
    assert demo.post("/tabs/optimistic/start").json == {"locking": "optimistic"}
    for expected in (1, 2):
        response = demo.get("/tabs/optimistic/bump?key=t0&work_ms=0")
        assert response.json is not None and response.json["value"] == expected
        spent = cost(response)
        assert spent["calls"] == 2 and spent["refused"] == 0  # GetItem + one versioned write
        assert spent["rcu"] > 0 and spent["wcu"] > 0
    assert demo.get("/tabs/optimistic/state").json["session"]["t0"] == 2  # type: ignore[index]


@pytest.mark.parametrize("query", ["key=x&work_ms=0", "key=t1&work_ms=-1", "key=t1&work_ms=2001",
                                   "key=t1234&work_ms=0", "work_ms=5"])
def test_bump_refuses_bad_input_without_a_dynamodb_call(demo: Client, query: str) -> None:
    response = demo.get(f"/tabs/none/bump?{query}")
    assert response.status_code == 400 and cost(response)["calls"] == 0


def test_a_held_lock_is_a_503_with_its_wait_and_refused_writes(demo: Client,
                                                               moto_server: EmbeddedMoto,
                                                               table_name: str) -> None:
    demo.post("/tabs/pessimistic/start")
    cookie = demo.get_cookie("demo_tabs_pessimistic")
    assert cookie is not None
    other_tab = create_store(SessionConfig(table_name=table_name, locking="pessimistic"),
                             local_client(moto_server.endpoint_url),
                             session_name="demo_pessimistic")
    held = other_tab.load(cookie.value)  # another request holds the session's lock
    response = demo.get("/tabs/pessimistic/bump?key=t0&work_ms=0")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    spent = cost(response)
    assert spent["refused"] >= 1 and spent["waits"] == spent["refused"] and spent["wait_ms"] > 0
    other_tab.release(held)
    assert demo.get("/tabs/pessimistic/bump?key=t0&work_ms=0").json == {
        "value": 1, "pid": os.getpid()}
