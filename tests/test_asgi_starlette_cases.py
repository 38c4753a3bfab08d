"""Starlette's own ``SessionMiddleware`` test cases, run against ours.

Ported from encode/starlette ``tests/middleware/test_session.py`` (commit cb8f84f, BSD-3-Clause);
each test keeps the original's name, views and assertions.  What had to change, and why:

* The app is served by uvicorn (a thread) and driven by httpx, on DynamoDB Local, instead of
  Starlette's in-process ``TestClient``.
* Options are named as ours: ``max_age`` -> ``cookie_max_age_seconds`` (ours defaults to a
  browser-session cookie, Starlette's to 14 days, so ``test_session`` sets it), ``https_only``
  -> ``cookie_secure=True``, ``path`` -> ``cookie_path``, ``domain`` -> ``cookie_domain``.
* Cookie attribute names are matched case-insensitively (RFC 6265 5.2; Starlette writes
  ``path=``, we write ``Path=``).
* ``test_session_expires``: Starlette's session expires with its signed timestamp
  (``max_age=-1``); ours expires with its item, so the item's expiry is set in the past.
* ``test_invalid_session_cookie``: Starlette's bad value fails its signature; ours is not the
  shape of a session id - both are served as no session, without an error.
* ``test_secure_session``: the https client talks to a second uvicorn serving the same app
  over TLS (a self-signed certificate made with ``openssl``).

Left out: none of the seven cases - none is only about cookie signing.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.asgi import SessionMiddleware
from dynamo_sessions.protocol.item import EXPIRES

from .asgi_support import UvicornThread

pytestmark = pytest.mark.dynamodb_local


def view_session(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def update_session(request: Request) -> JSONResponse:
    data = await request.json()
    request.session.update(data)
    return JSONResponse({"session": request.session})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": request.session})


class Factory:
    """``test_client_factory``'s stand-in: serves ``app`` with uvicorn, returns an httpx
    client on it (``base_url`` ``https://...`` or ``.../<mount>`` as Starlette's)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: dict[tuple[int, bool], UvicornThread] = {}
        self.clients: list[httpx.Client] = []

    def _server(self, app: Any, tls: bool) -> UvicornThread:
        key = (id(app), tls)
        if key not in self.servers:
            server = UvicornThread(app, ready_path="/nowhere")
            if tls:
                server.server.config.ssl_certfile, server.server.config.ssl_keyfile = (
                    self._certificate())
            self.servers[key] = server
            if tls:
                server.url = ""
                self._start_tls(server)
            else:
                server.start()
        return self.servers[key]

    def _start_tls(self, server: UvicornThread) -> None:
        import threading

        from .asgi_support import listening_socket

        sock = listening_socket()
        server.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        server._thread = threading.Thread(target=server._serve, args=(sock,), daemon=True)
        server._thread.start()
        deadline = time.monotonic() + 30.0
        while True:
            try:
                httpx.get(server.url + "/nowhere", verify=False, timeout=1.0)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _certificate(self) -> tuple[str, str]:
        cert, key = self.tmp_path / "cert.pem", self.tmp_path / "key.pem"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(key), "-out", str(cert), "-days", "1",
                            "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
        return str(cert), str(key)

    def __call__(self, app: Any, base_url: str = "http://testserver",
                 cookies: dict[str, str] | None = None) -> httpx.Client:
        tls = base_url.startswith("https://")
        server = self._server(app, tls)
        mount = base_url.split("://", 1)[1].partition("/")[2]
        client = httpx.Client(base_url=server.url + ("/" + mount if mount else ""),
                              cookies=cookies, verify=False, timeout=30.0)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def test_client_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Factory]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    factory = Factory(tmp_path)
    yield factory
    factory.stop()


@pytest.fixture
def config(dynamodb_local: Any, local_table: str) -> SessionConfig:
    return SessionConfig(table_name=local_table, endpoint_url=dynamodb_local.endpoint_url,
                         region_name="us-east-1", locking="optimistic")


def session_middleware(config: SessionConfig, **options: Any) -> Middleware:
    return Middleware(SessionMiddleware, config=config, **options)


def session_app(config: SessionConfig, clear: bool = False, **options: Any) -> Starlette:
    """The cases' app: ``/view_session`` and ``/update_session`` (and ``/clear_session`` if
    ``clear``) behind the middleware on ``config`` with ``options``."""
    routes = [Route("/view_session", endpoint=view_session),
              Route("/update_session", endpoint=update_session, methods=["POST"])]
    if clear:
        routes.append(Route("/clear_session", endpoint=clear_session, methods=["POST"]))
    return Starlette(routes=routes, middleware=[session_middleware(config, **options)])


def test_session(test_client_factory: Factory, config: SessionConfig) -> None:
    app = session_app(config, clear=True, cookie_max_age_seconds=14 * 24 * 3600)
    client = test_client_factory(app)

    response = client.get("/view_session")
    assert response.json() == {"session": {}}

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # check cookie max-age
    set_cookie = response.headers["set-cookie"]
    max_age_matches = re.search(r"; Max-Age=([0-9]+);", set_cookie)
    assert max_age_matches is not None
    assert int(max_age_matches[1]) == 14 * 24 * 3600

    response = client.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}

    response = client.post("/clear_session")
    assert response.json() == {"session": {}}

    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_session_expires(test_client_factory: Factory, config: SessionConfig,
                         ddb_local_client: Any) -> None:
    app = session_app(config)
    client = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # the session expires with its item (Starlette's: with its signed timestamp)
    expired_cookie_header = response.headers["set-cookie"]
    expired_session_match = re.search(r"session=([^;]*);", expired_cookie_header)
    assert expired_session_match is not None
    expired_session_value = expired_session_match[1]
    key = create_store(config.replace(client=ddb_local_client, endpoint_url=None),
                       session_name="session").item_key(expired_session_value)
    ddb_local_client.update_item(
        TableName=config.table_name, Key={"id": {"S": key}},
        UpdateExpression="SET #e = :past", ExpressionAttributeNames={"#e": EXPIRES},
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 60)}})
    client = test_client_factory(app, cookies={"session": expired_session_value})
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_secure_session(test_client_factory: Factory, config: SessionConfig) -> None:
    app = session_app(config, clear=True, cookie_secure=True)
    secure_client = test_client_factory(app, base_url="https://testserver")
    unsecure_client = test_client_factory(app, base_url="http://testserver")

    response = unsecure_client.get("/view_session")
    assert response.json() == {"session": {}}

    response = unsecure_client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    response = unsecure_client.get("/view_session")
    assert response.json() == {"session": {}}

    response = secure_client.get("/view_session")
    assert response.json() == {"session": {}}

    response = secure_client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    response = secure_client.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}

    response = secure_client.post("/clear_session")
    assert response.json() == {"session": {}}

    response = secure_client.get("/view_session")
    assert response.json() == {"session": {}}


def test_session_cookie_subpath(test_client_factory: Factory, config: SessionConfig) -> None:
    second_app = Starlette(
        routes=[
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[session_middleware(config, cookie_path="/second_app")],
    )
    app = Starlette(routes=[Mount("/second_app", app=second_app)])
    client = test_client_factory(app, base_url="http://testserver/second_app")
    response = client.post("/update_session", json={"some": "data"})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    cookie_path_match = re.search(r"; path=(\S+);", cookie, re.IGNORECASE)
    assert cookie_path_match is not None
    cookie_path = cookie_path_match.groups()[0]
    assert cookie_path == "/second_app"


def test_invalid_session_cookie(test_client_factory: Factory, config: SessionConfig) -> None:
    app = session_app(config)
    client = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # we expect it to not raise an exception if we provide a bogus session cookie
    client = test_client_factory(app, cookies={"session": "invalid"})
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_session_cookie(test_client_factory: Factory, config: SessionConfig) -> None:
    app = session_app(config, cookie_max_age_seconds=None)
    client = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # check cookie max-age
    set_cookie = response.headers["set-cookie"]
    assert "Max-Age" not in set_cookie

    client.cookies.delete("session")
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_domain_cookie(test_client_factory: Factory, config: SessionConfig) -> None:
    app = session_app(config, cookie_domain=".example.com")
    client = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # check cookie max-age
    set_cookie = response.headers["set-cookie"]
    assert "domain=.example.com" in set_cookie.lower()

    client.cookies.delete("session")
    response = client.get("/view_session")
    assert response.json() == {"session": {}}
