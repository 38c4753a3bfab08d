"""The served demo under uvicorn (``demo --serve --server uvicorn``): the CLI runs
:func:`dynamo_sessions.demo.web.serve`, which runs the ASGI twin
(:mod:`dynamo_sessions.demo.asgi`) under uvicorn against the embedded moto server's HTTP
endpoint; a real browser-like client (httpx, cookies kept) counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.asgi_support import LOOPBACK, listening_socket, wait_until_answering

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")


@pytest.fixture
def served_demo(moto_server: Any) -> Iterator[str]:
    sock = listening_socket()
    port = sock.getsockname()[1]
    sock.close()  # uvicorn binds it again (SO_REUSEADDR)
    process = subprocess.Popen(
        [sys.executable, "-m", "dynamo_sessions", "demo", "--serve", "--server", "uvicorn",
         "--host", LOOPBACK, "--port", str(port), "--workers", "1",
         "--endpoint-url", moto_server.endpoint_url],
        env=dict(os.environ), stdin=subprocess.DEVNULL)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until_answering(url + "/healthz", 30.0, lambda: process.poll() is None)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # serve stops uvicorn, then returns
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_counter_per_client_and_logout(served_demo: str) -> None:
    with httpx.Client(base_url=served_demo, timeout=10.0) as first, \
            httpx.Client(base_url=served_demo, timeout=10.0) as second:
        counts = []
        for _ in range(3):
            page = first.get("/")
            assert page.status_code == 200
            assert 'id="count">' in page.text
            counts.append(first.get("/count").json()["count"])
        assert counts == [1, 2, 3]
        assert "demo_session" in first.cookies
        assert second.get("/").status_code == 200
        assert second.get("/count").json()["count"] == 1  # its own session
        assert first.get("/count").json()["count"] == 3  # untouched by the second
        assert first.get("/healthz").text == "ok"
        assert first.get("/logout", follow_redirects=False).status_code == 302
        assert first.get("/count").json()["count"] == 0  # session ended
        assert first.get("/").status_code == 200
        assert first.get("/count").json()["count"] == 1
        metrics = first.get("/metrics").json()
        assert metrics["total_calls"] > 0
        assert metrics["calls"].get("DeleteItem", 0) >= 1  # the logout's delete


def test_tabs_page_and_per_mode_apps_report_their_cost(served_demo: str) -> None:
    with httpx.Client(base_url=served_demo, timeout=10.0) as client:
        page = client.get("/tabs")
        assert page.status_code == 200
        assert '"base": "/tabs"' in page.text  # the page's settings, filled in
        for mode in ("none", "pessimistic", "optimistic"):
            assert client.post(f"/tabs/{mode}/start").json() == {"locking": mode}
            assert f"demo_tabs_{mode}" in client.cookies
            values = [client.get(f"/tabs/{mode}/bump", params={"key": "t1"}).json()["value"]
                      for _ in range(2)]
            assert values == [1, 2]
            answer = client.get(f"/tabs/{mode}/bump", params={"key": "t1"})
            cost = json.loads(answer.headers["X-Demo-Cost"])
            assert cost["calls"] >= 2 and cost["wcu"] > 0  # its load and its write
            assert client.get(f"/tabs/{mode}/state").json()["session"]["t1"] == 3
            bad = client.get(f"/tabs/{mode}/bump", params={"key": "x", "work_ms": "1"})
            assert bad.status_code == 400
        assert client.get("/count").json()["count"] == 0  # the tabs' cookies are their own
