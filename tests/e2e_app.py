"""The app the gunicorn end-to-end tests serve: one Flask app per locking mode, plus a plain
WSGI app behind the middleware, mounted side by side.

gunicorn loads ``tests.e2e_app:create_app()``; ``E2E_ENDPOINT_URL`` and ``E2E_TABLE`` say
where the sessions live.  Mounts: ``/none``, ``/optimistic``, ``/pessimistic``, ``/short``
(pessimistic, ``max_lock_wait_seconds=0.3``) and ``/wsgi`` (optimistic, plain WSGI).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.flask import DynamoSessionInterface, init_app
from dynamo_sessions.testing.servers import local_client
from dynamo_sessions.web import ENVIRON_KEY
from dynamo_sessions.wsgi import SessionMiddleware

MODES = {
    "none": {"locking": "none"},
    "optimistic": {"locking": "optimistic"},
    "pessimistic": {"locking": "pessimistic"},
    "short": {"locking": "pessimistic", "max_lock_wait_seconds": 0.3},
}


def store_config(mode: str, table: str) -> SessionConfig:
    return SessionConfig(table_name=table, **MODES[mode])  # type: ignore[arg-type]


def session_name(mode: str) -> str:
    return f"e2e_{mode}"


def flask_app(mode: str, client: Any, table: str) -> flask.Flask:
    app = flask.Flask(f"e2e_{mode}")
    app.config["SESSION_COOKIE_NAME"] = f"s_{mode}"
    store = create_store(store_config(mode, table), client, session_name=session_name(mode))
    init_app(app, DynamoSessionInterface(store))

    @app.get("/login")
    def login() -> Any:
        flask.session.regenerate()  # type: ignore[attr-defined]
        flask.session["user"] = "ada"
        flask.session["n"] = 0
        return {"ok": True}

    @app.get("/incr")
    def incr() -> Any:
        n = flask.session.get("n", 0)
        time.sleep(float(flask.request.args.get("hold", 0)))
        flask.session["n"] = n + 1
        tab = flask.request.args.get("tab")
        if tab is not None:
            flask.session[f"tab{tab}"] = True
        return {"n": n + 1, "user": flask.session.get("user"), "pid": os.getpid()}

    @app.get("/state")
    def state() -> Any:
        return {"session": dict(flask.session), "pid": os.getpid()}

    @app.get("/logout")
    def logout() -> Any:
        flask.session.destroy()  # type: ignore[attr-defined]
        return {"ok": True}

    return app


def plain_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ[ENVIRON_KEY]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"n": session["n"], "pid": os.getpid()}).encode()]


def health(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def create_app() -> Any:
    endpoint = os.environ["E2E_ENDPOINT_URL"]
    table = os.environ["E2E_TABLE"]
    client = local_client(endpoint)
    mounts: dict[str, Any] = {f"/{mode}": flask_app(mode, client, table) for mode in MODES}
    wsgi_store = create_store(store_config("optimistic", table), client, session_name="e2e_wsgi")
    mounts["/wsgi"] = SessionMiddleware(plain_wsgi_app, wsgi_store, cookie_name="s_wsgi")
    return DispatcherMiddleware(health, mounts)
