"""The served demo: a small Flask app (a per-session counter and the capacity it used) under
gunicorn, against the embedded moto server unless an endpoint is given.

``dynamo-sessions demo --serve`` calls :func:`serve`; gunicorn loads :func:`create_app` in each
worker, configured through ``DYNAMO_SESSIONS_DEMO_*`` environment variables.
"""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
from typing import Any

import flask
from werkzeug.wrappers import Response as WerkzeugResponse

from .config import LOCKING_MODES, SessionConfig, make_client
from .errors import TableNotFound
from .flask import DynamoSessionInterface, init_app
from .handler import SessionHandler
from .servers import LOOPBACK, EmbeddedMoto, local_client
from .store import create_store

DEMO_TABLE = "dynamo-sessions-demo"
ENV_ENDPOINT = "DYNAMO_SESSIONS_DEMO_ENDPOINT_URL"
ENV_LOCKING = "DYNAMO_SESSIONS_DEMO_LOCKING"
ENV_TABLE = "DYNAMO_SESSIONS_DEMO_TABLE"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dynamo-sessions demo</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>dynamo-sessions</h1>
<p>You have seen this page <strong id="count">{count}</strong> time(s) in this session
(locking: <code>{locking}</code>, worker pid {pid}).</p>
<p><a href="/">Reload</a> &middot; <a href="/logout">End the session</a></p>
<h2>Capacity used by this worker</h2>
<table border="1" cellpadding="4">
<tr><th>DynamoDB calls</th><td id="calls">{calls}</td></tr>
<tr><th>Read units</th><td>{rcu:.1f}</td></tr>
<tr><th>Write units</th><td>{wcu:.1f}</td></tr>
<tr><th>Calls by API</th><td>{by_api}</td></tr>
</table>
<p>Reading a session costs one GetItem (two UpdateItems with pessimistic locking);
an unchanged session is not rewritten; <a href="/healthz">/healthz</a> never touches its
session and costs nothing.</p>
</body></html>
"""


def _client(endpoint_url: str | None) -> Any:
    host = urllib.parse.urlsplit(endpoint_url or "").hostname
    if host in (LOOPBACK, "localhost", "::1"):
        return local_client(endpoint_url)  # local servers take any credentials
    return make_client(SessionConfig(endpoint_url=endpoint_url))


def create_app(endpoint_url: str | None = None, locking: str | None = None,
               table_name: str | None = None) -> flask.Flask:
    """The demo app; arguments default to the ``DYNAMO_SESSIONS_DEMO_*`` environment."""
    endpoint_url = endpoint_url or os.environ.get(ENV_ENDPOINT) or None
    locking = locking or os.environ.get(ENV_LOCKING, "optimistic")
    table_name = table_name or os.environ.get(ENV_TABLE, DEMO_TABLE)
    config = SessionConfig(table_name=table_name, locking=locking, endpoint_url=endpoint_url)
    store = create_store(config, _client(endpoint_url), session_name="demo")
    app = flask.Flask(__name__)
    app.config["SESSION_COOKIE_NAME"] = "demo_session"
    init_app(app, DynamoSessionInterface(store))

    @app.get("/")
    def index() -> str:
        count = int(flask.session.get("count", 0)) + 1
        flask.session["count"] = count
        snapshot = store.metrics.snapshot()
        by_api = ", ".join(f"{api}: {n}" for api, n in sorted(snapshot["calls"].items()))
        return PAGE.format(count=count, locking=html.escape(locking), pid=os.getpid(),
                           calls=snapshot["total_calls"], rcu=snapshot["read_units"],
                           wcu=snapshot["write_units"], by_api=html.escape(by_api or "-"))

    @app.get("/count")
    def count() -> flask.Response:
        return flask.jsonify(count=flask.session.get("count", 0), pid=os.getpid())

    @app.get("/logout")
    def logout() -> WerkzeugResponse:
        flask.session.destroy()  # type: ignore[attr-defined]
        return flask.redirect("/")

    @app.get("/metrics")
    def metrics() -> flask.Response:
        return flask.jsonify(pid=os.getpid(), **store.metrics.snapshot())

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def serve(endpoint_url: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 2, threads: int = 4, locking: str = "optimistic") -> int:
    """Run the demo under gunicorn until interrupted; returns an exit code.

    Starts the embedded moto server when ``endpoint_url`` is None and creates the demo table
    when it is missing.  gunicorn runs as a child process (gthread workers), so the moto
    server's thread is never forked.
    """
    if locking not in LOCKING_MODES:
        print(f"locking={locking!r}: must be one of {LOCKING_MODES}", file=sys.stderr)
        return 2
    if workers < 1 or threads < 1:
        print("workers and threads must be >= 1", file=sys.stderr)
        return 2
    moto: EmbeddedMoto | None = None
    process: subprocess.Popen[bytes] | None = None
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        # a plain `kill` stops the demo as cleanly as Ctrl-C does
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if endpoint_url is None:
            moto = EmbeddedMoto().start()
            endpoint_url = moto.endpoint_url
        handler = SessionHandler(SessionConfig(table_name=DEMO_TABLE, locking=locking),
                                 _client(endpoint_url))
        try:
            handler.describe_table()
        except TableNotFound:
            handler.create_table()
        env = {**os.environ, ENV_ENDPOINT: endpoint_url, ENV_LOCKING: locking,
               ENV_TABLE: DEMO_TABLE}
        command = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
                   "--workers", str(workers), "--threads", str(threads),
                   "--worker-class", "gthread", "--log-level", "warning",
                   "dynamo_sessions.webdemo:create_app()"]
        print(f"dynamo-sessions demo on http://{host}:{port}/ (DynamoDB at {endpoint_url}, "
              f"locking={locking}, {workers} workers x {threads} threads); Ctrl-C stops it",
              flush=True)
        process = subprocess.Popen(command, env=env)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if moto is not None:
            moto.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
