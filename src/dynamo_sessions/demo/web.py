"""The served demo: a small Flask app (a per-session counter and the capacity it used) and the
multi-tab page (``/tabs``) under gunicorn, against the embedded moto server unless an endpoint
is given.

``dynamo-sessions demo --serve`` calls :func:`serve`; gunicorn loads :func:`create_demo` in each
worker, configured through ``DYNAMO_SESSIONS_DEMO_*`` environment variables.

The multi-tab page runs, in the visitor's browser, the scenario that hung the PHP app of the
story: several tabs firing requests at one session at once.  One Flask app per locking mode is
mounted under ``/tabs/<mode>`` (own cookie, all on one table); every answer of theirs carries
an ``X-Demo-Cost`` header with what that very request cost (DynamoDB calls, RCU/WCU reported,
refused conditional writes, lock wait), so the page adds up exact figures however many
gunicorn workers served the requests.
"""

from __future__ import annotations

import html
import importlib.resources
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import flask
from flask.sessions import SessionMixin
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import _core
from ..config import LOCKING_MODES, SessionConfig
from ..errors import TableNotFound
from ..flask import DynamoSessionInterface, init_app
from ..handler import SessionHandler
from ..metrics import Metrics, OperationMetrics
from ..store import create_store
from ..transport.client import is_loopback
from .workload import demo_client

DEMO_TABLE = "dynamo-sessions-demo"
ENV_ENDPOINT = "DYNAMO_SESSIONS_DEMO_ENDPOINT_URL"
ENV_LOCKING = "DYNAMO_SESSIONS_DEMO_LOCKING"
ENV_TABLE = "DYNAMO_SESSIONS_DEMO_TABLE"
ENV_MAX_LOCK_WAIT = "DYNAMO_SESSIONS_DEMO_MAX_LOCK_WAIT_SECONDS"
DEMO_MAX_LOCK_WAIT_SECONDS = 2.0
"""The demo's ``max_lock_wait_seconds``: shorter than the library's 10 s, so that the 503 a
pessimistic tab gets instead of a hang shows up within a short run."""
MAX_WORK_MS = 2000
"""Upper bound of the multi-tab page's simulated work per request (``work_ms``)."""
COST_HEADER = "X-Demo-Cost"
SERVERS = ("gunicorn", "uvicorn")
TAB_KEY = re.compile(r"t[0-9]{1,3}")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dynamo-sessions demo</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>dynamo-sessions</h1>
<p>You have seen this page <strong id="count">{count}</strong> time(s) in this session
(locking: <code>{locking}</code>, worker pid {pid}).</p>
<p><a href="/">Reload</a> &middot; <a href="/logout">End the session</a> &middot;
<a href="/tabs">Many tabs, one session: each locking mode side by side</a></p>
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
    # the configured timeouts, so that a stalled call ends where the multi-tab page's bound
    # says it does
    return demo_client(endpoint_url)


def _max_lock_wait_seconds(value: float | None) -> float:
    if value is not None:
        return value
    return float(os.environ.get(ENV_MAX_LOCK_WAIT, DEMO_MAX_LOCK_WAIT_SECONDS))


def create_app(endpoint_url: str | None = None, locking: str | None = None,
               table_name: str | None = None, client: Any = None,
               max_lock_wait_seconds: float | None = None) -> flask.Flask:
    """The demo app; arguments default to the ``DYNAMO_SESSIONS_DEMO_*`` environment."""
    endpoint_url = endpoint_url or os.environ.get(ENV_ENDPOINT) or None
    locking = locking or os.environ.get(ENV_LOCKING, "optimistic")
    table_name = table_name or os.environ.get(ENV_TABLE, DEMO_TABLE)
    config = SessionConfig(table_name=table_name, locking=locking, endpoint_url=endpoint_url,
                           max_lock_wait_seconds=_max_lock_wait_seconds(max_lock_wait_seconds))
    store = create_store(config, client or _client(endpoint_url), session_name="demo")
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


# --- the multi-tab page ---------------------------------------------------------------------


def _count_call(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """botocore ``after-call`` hook: add this DynamoDB call to the current request's cost.

    It runs in the thread making the call, so the figures are this request's own, whatever
    other threads of the worker do meanwhile.
    """
    cost: Metrics | None = flask.g.get("demo_cost") if flask.has_app_context() else None
    if cost is not None:
        add_call(cost, parsed, model)


def add_call(cost: Metrics, parsed: dict[str, Any], model: Any) -> None:
    """Add one DynamoDB call (botocore's ``after-call`` arguments) to a request's ``cost``."""
    cost.add_call(model.name, parsed.get("ConsumedCapacity"))
    error = parsed.get("Error", {}).get("Code")
    if error == "ConditionalCheckFailedException" and not parsed.get("ConsumedCapacity"):
        found = parsed.get("Item")  # charged by its size, never reported (see metrics.py)
        cost.add_failed_write(float(_core.write_units(_core.item_size(found))) if found
                              else 1.0)


def _note_operation(operation: OperationMetrics) -> None:
    """``on_operation`` hook: add a lock wait (or optimistic retry wait) to the request's cost."""
    cost: Metrics | None = flask.g.get("demo_cost") if flask.has_app_context() else None
    if cost is not None:
        add_waits(cost, operation)


def add_waits(cost: Metrics, operation: OperationMetrics) -> None:
    """Add an operation's lock waits (or optimistic retry waits) to a request's ``cost``."""
    if operation.retries:
        cost.add(lock_waits=operation.retries, lock_wait_seconds=operation.lock_wait_seconds)


class _CostReportingInterface(DynamoSessionInterface):
    """Saves the session, then tells the client in ``X-Demo-Cost`` what the request cost."""

    def save_session(self, app: flask.Flask, session: SessionMixin,
                     response: flask.Response) -> None:
        super().save_session(app, session, response)
        cost: Metrics | None = flask.g.get("demo_cost")
        if cost is None:
            return
        response.headers[COST_HEADER] = cost_header(cost)


def cost_header(cost: Metrics) -> str:
    """The ``X-Demo-Cost`` value: what one request cost (the multi-tab page adds them up)."""
    totals = cost.snapshot()
    return json.dumps({
        "calls": totals["total_calls"], "rcu": totals["read_units"],
        "wcu": totals["write_units"], "refused": totals["failed_writes"],
        "refused_wcu": totals["failed_write_units"], "waits": totals["lock_waits"],
        "wait_ms": round(totals["lock_wait_seconds"] * 1000, 1),
    })


def tabs_app(mode: str, client: Any, table_name: str,
             max_lock_wait_seconds: float) -> flask.Flask:
    """The app one locking mode's tabs talk to (mounted at ``/tabs/<mode>``).

    ``POST /start`` begins a fresh session; ``GET /bump?key=t3&work_ms=100`` reads the
    session, works ``work_ms`` (a slow query, say) and stores ``key`` + 1; ``GET /state`` shows
    the session; ``GET /metrics`` this worker's totals.
    """
    config = SessionConfig(table_name=table_name, locking=mode,
                           max_lock_wait_seconds=max_lock_wait_seconds,
                           on_operation=_note_operation)
    store = create_store(config, client, session_name=f"demo_{mode}")
    app = flask.Flask(f"{__name__}.{mode}")
    app.config["SESSION_COOKIE_NAME"] = f"demo_tabs_{mode}"
    init_app(app, _CostReportingInterface(store))

    @app.before_request
    def meter() -> None:
        flask.g.demo_cost = Metrics()

    @app.post("/start")
    def start() -> Any:
        flask.session.regenerate()  # type: ignore[attr-defined]
        flask.session["started"] = int(time.time())
        return {"locking": mode}

    @app.get("/bump")
    def bump() -> Any:
        key = flask.request.args.get("key", "")
        work_ms = flask.request.args.get("work_ms", "0")
        if not TAB_KEY.fullmatch(key) or not work_ms.isdigit() or int(work_ms) > MAX_WORK_MS:
            return {"error": f"key must match {TAB_KEY.pattern}, work_ms 0..{MAX_WORK_MS}"}, 400
        value = int(flask.session.get(key, 0)) + 1
        time.sleep(int(work_ms) / 1000)
        flask.session[key] = value
        return {"value": value, "pid": os.getpid()}

    @app.get("/state")
    def state() -> Any:
        return {"session": dict(flask.session)}

    @app.get("/metrics")
    def metrics() -> Any:
        return {"pid": os.getpid(), **store.metrics.snapshot()}

    return app


def _tabs_page(max_lock_wait_seconds: float) -> str:
    return tabs_page(flask.request.script_root + "/tabs", max_lock_wait_seconds)


def tabs_page(base: str, max_lock_wait_seconds: float) -> str:
    """The multi-tab page, its per-mode apps under ``base`` (``/tabs``)."""
    defaults = SessionConfig()
    settings = {
        "base": base,
        "modes": list(LOCKING_MODES),
        "max_lock_wait_seconds": max_lock_wait_seconds,
        "max_lock_retry_seconds": defaults.max_lock_retry_microseconds / 1e6,
        "read_timeout_seconds": defaults.read_timeout_seconds,
        "max_work_ms": MAX_WORK_MS,
    }
    page = importlib.resources.files(__package__).joinpath("webdemo_tabs.html")
    return page.read_text("utf-8").replace(
        "/*SETTINGS*/{}", json.dumps(settings).replace("</", "<\\/"))


def create_demo(endpoint_url: str | None = None, table_name: str | None = None,
                max_lock_wait_seconds: float | None = None) -> Any:
    """The served demo (a WSGI app): :func:`create_app` at ``/``, its multi-tab page at
    ``/tabs``, and one :func:`tabs_app` per locking mode under ``/tabs/<mode>``."""
    endpoint_url = endpoint_url or os.environ.get(ENV_ENDPOINT) or None
    table_name = table_name or os.environ.get(ENV_TABLE, DEMO_TABLE)
    max_wait = _max_lock_wait_seconds(max_lock_wait_seconds)
    client = _client(endpoint_url)
    client.meta.events.register("after-call.dynamodb", _count_call)
    main = create_app(endpoint_url, table_name=table_name, client=client,
                      max_lock_wait_seconds=max_wait)
    main.add_url_rule("/tabs", "tabs", lambda: _tabs_page(max_wait))
    mounts: dict[str, Any] = {f"/tabs/{mode}": tabs_app(mode, client, table_name, max_wait)
                              for mode in LOCKING_MODES}
    return DispatcherMiddleware(main, mounts)


def serve(endpoint_url: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 2, threads: int = 4, locking: str = "optimistic",
          max_lock_wait_seconds: float = DEMO_MAX_LOCK_WAIT_SECONDS,
          server: str = "gunicorn") -> int:
    """Run the demo under gunicorn (or, ``server="uvicorn"``, its ASGI twin
    :func:`.asgi.create_demo`; ``threads`` unused) until
    interrupted; returns an exit code.

    Starts the embedded moto server when ``endpoint_url`` is None and creates the demo table
    when it is missing.  The server runs as a child process (gunicorn: gthread workers), so
    the moto server's thread is never forked.
    """
    if server not in SERVERS:
        print(f"server={server!r}: must be one of {SERVERS}", file=sys.stderr)
        return 2
    if locking not in LOCKING_MODES:
        print(f"locking={locking!r}: must be one of {LOCKING_MODES}", file=sys.stderr)
        return 2
    if workers < 1 or threads < 1:
        print("workers and threads must be >= 1", file=sys.stderr)
        return 2
    if max_lock_wait_seconds < 0:
        print("max_lock_wait_seconds must be >= 0", file=sys.stderr)
        return 2
    from ..testing.servers import EmbeddedMoto  # the demo's one use of the test servers

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
               ENV_TABLE: DEMO_TABLE, ENV_MAX_LOCK_WAIT: str(max_lock_wait_seconds)}
        command = _server_command(server, host, port, workers, threads)
        if server == "uvicorn":  # the async client has no dummy credentials of its own
            local = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
            env = {**(local if is_loopback(endpoint_url) else {}), **env}
        print(f"dynamo-sessions demo on http://{host}:{port}/ under {server} (DynamoDB at "
              f"{endpoint_url}, locking={locking}, {workers} workers"
              f"{f' x {threads} threads' if server == 'gunicorn' else ''}, "
              f"max_lock_wait_seconds={max_lock_wait_seconds}); many tabs on one session: "
              f"http://{host}:{port}/tabs; Ctrl-C stops it", flush=True)
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


def _server_command(server: str, host: str, port: int, workers: int,
                    threads: int) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--factory", "--host", host, "--port",
                str(port), "--workers", str(workers), "--log-level", "warning",
                "dynamo_sessions.demo.asgi:create_demo"]
    return [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
            "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "gthread", "--log-level", "warning",
            "dynamo_sessions.demo.web:create_demo()"]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
