"""The ASGI middleware's contract (``dynamo_sessions.asgi``), on the Starlette app of
``tests/asgi_apps`` served by uvicorn, on DynamoDB Local: cookies and ids, when it loads and
saves, streaming, WebSockets, lock timeouts, failures and disconnects."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import wsproto
import wsproto.events

from dynamo_sessions.asgi import SessionMiddleware

from . import asgi_session_support
from .asgi_session_support import cookie_of

pytestmark = pytest.mark.dynamodb_local
serve = asgi_session_support.serve  # the fixture
SLOW = pytest.mark.slow
WAIT_SECONDS = 20.0
"""Bound of every wait for the server to reach a state (a wait, not a timing assertion)."""


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS} s: {what}")
        time.sleep(0.05)


# --- cookies and ids --------------------------------------------------------------------------


def test_secure_only_over_https_and_a_forwarded_proto_only_when_trusted(serve: Any) -> None:
    https = {"X-Forwarded-Proto": "https"}
    untrusting = serve(proxy_headers=False)
    with untrusting.client() as client:
        assert "Secure" not in client.post("/cart/a", headers=https).headers["set-cookie"]
    trusting = serve(proxy_headers=False, trust_forwarded_proto=True)
    with trusting.client() as client:
        assert "; Secure;" in client.post("/cart/a", headers=https).headers["set-cookie"]
    server_https = serve()  # uvicorn itself trusts the proxy on loopback: scope scheme https
    with server_https.client() as client:
        assert "; Secure;" in client.post("/cart/a", headers=https).headers["set-cookie"]


def test_cookie_options_and_a_persistent_cookie(serve: Any) -> None:
    served = serve(cookie_name="sid", cookie_domain="example.test", cookie_path="/",
                   cookie_samesite="Strict", cookie_max_age_seconds=600)
    with httpx.Client(base_url=served.url, timeout=30.0) as client:
        header = client.post("/cart/a").headers["set-cookie"]
        sid = header.split(";")[0].split("=", 1)[1]
        assert header.split("; ")[1:] == ["Path=/", "Domain=example.test", "Max-Age=600",
                                          "HttpOnly", "SameSite=Strict"]
        again = client.get("/session", headers={"Cookie": f"sid={sid}"})
        assert again.json() == {"cart": ["a"]}
        assert again.headers["set-cookie"].startswith(f"sid={sid}; ")  # re-sent on each use


def test_strict_ids_never_adopt_an_unknown_id(serve: Any) -> None:
    served = serve()
    planted = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")  # well formed
    planted_cookie = {"Cookie": f"session={planted}"}
    with served.client() as client:
        read = client.get("/session", headers=planted_cookie)
        assert read.json() == {}
        assert "Max-Age=0" in read.headers["set-cookie"]  # unknown: the cookie is expired
        written = client.post("/cart/a", headers=planted_cookie)
        assert cookie_of(written) != planted
    assert served.item(planted) is None


def test_exclude_paths_cost_no_call_even_with_a_cookie_read_before_the_app(serve: Any) -> None:
    served = serve(exclude_paths=["/"], load="eager")
    eager = serve(load="eager")
    with eager.client() as client:
        sid = cookie_of(client.post("/cart/a"))
        before = eager.calls()
        client.get("/")
        assert eager.calls() - before == {"GetItem": 1}  # a valid cookie: loaded up front
    with served.client(cookies={"session": sid}) as client:
        before = served.calls()
        assert client.get("/").text == "ok"
        assert served.calls() == before


# --- saving: streaming, failures, lock timeouts -----------------------------------------------


def test_a_streaming_response_saves_at_its_start(serve: Any) -> None:
    served = serve()
    with served.client() as client:
        answer = client.get("/stream")
        assert answer.text == "started streamed"
        sid = cookie_of(answer)
    assert served.data(sid) == {"before": True}  # set while streaming: not saved


@pytest.mark.parametrize("locking", [pytest.param("optimistic", marks=SLOW), "pessimistic"])
def test_an_app_error_releases_the_lock_and_saves_nothing(serve: Any, locking: str) -> None:
    served = serve(locking=locking)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
        assert client.get("/boom").status_code == 500
        assert not served.locked(sid)
        assert client.get("/session").json() == {"cart": ["a"]}


def test_a_held_lock_answers_503_with_retry_after(serve: Any) -> None:
    served = serve(locking="pessimistic", config_options={"max_lock_wait_seconds": 0.5},
                   retry_after_seconds=3)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
    slow: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: slow.append(
        served.client(cookies={"session": sid}).get("/slow", params={"seconds": 3})))
    holder.start()
    try:
        wait_until(lambda: served.locked(sid), "the slow request holds the lock")
        with served.client(cookies={"session": sid}) as client:
            busy = client.get("/session")
    finally:
        holder.join(timeout=WAIT_SECONDS)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "3" and "set-cookie" not in busy.headers
    assert "busy" in busy.text
    assert [answer.status_code for answer in slow] == [200]
    assert served.data(sid) == {"cart": ["a"], "slow": True}


def test_a_save_that_keeps_losing_races_answers_503_and_no_acknowledged_change_is_lost(
        serve: Any) -> None:
    """Optimistic, no retry of a refused write: of 16 concurrent appends some lose their race;
    those are answered 503 (the app's 200 replaced, nothing written), the others are stored."""
    served = serve(locking="optimistic", config_options={"max_write_retries": 0})
    with served.client() as client:
        sid = cookie_of(client.post("/cart/first"))

    async def append_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.url, timeout=60.0,
                                     cookies={"session": sid}) as client:
            return list(await asyncio.gather(*(client.post(f"/cart/{n}") for n in range(16))))

    answers = asyncio.run(append_all())
    refused = [n for n, answer in enumerate(answers) if answer.status_code == 503]
    acknowledged = [n for n, answer in enumerate(answers) if answer.status_code == 200]
    assert sorted(refused + acknowledged) == list(range(16))
    assert refused, "no write lost its race: the test proves nothing"
    assert all(answers[n].headers["retry-after"] == "1" and "busy" in answers[n].text
               and "set-cookie" not in answers[n].headers for n in refused)
    assert sorted(served.data(sid)["cart"]) == sorted(["first", *map(str, acknowledged)])


@pytest.mark.parametrize("locking", [pytest.param("none", marks=SLOW),
                                     pytest.param("optimistic", marks=SLOW), "pessimistic"])
def test_a_client_that_disconnects_leaves_no_lock(serve: Any, locking: str) -> None:
    """uvicorn lets the view finish after the client has gone: it answers into the void, and
    the session is saved and its lock given back then."""
    served = serve(locking=locking)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
    with served.client(cookies={"session": sid}, ) as client, \
            pytest.raises(httpx.ReadTimeout):
        client.get("/slow", params={"seconds": 1}, timeout=0.2)
    wait_until(lambda: served.data(sid).get("slow") is True and not served.locked(sid),
               "the view finished, its session saved and unlocked")


class CancelOnDisconnect:
    """Cancels the app when the client goes away (what some servers and middlewares do)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cancelled = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        answered = False

        async def answer(message: Any) -> None:
            nonlocal answered
            answered = answered or (message["type"] == "http.response.body"
                                    and not message.get("more_body", False))
            await send(message)

        task = asyncio.ensure_future(self.app(scope, inbox.get, answer))

        async def watch() -> None:
            while True:
                message = await receive()
                await inbox.put(message)
                if message["type"] == "http.disconnect":
                    if not answered:  # (uvicorn also says so after a complete answer)
                        self.cancelled += 1
                        task.cancel()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            watcher.cancel()


@pytest.mark.parametrize("locking", [pytest.param("optimistic", marks=SLOW), "pessimistic"])
def test_a_cancelled_request_gives_its_lock_back_and_saves_nothing(
        serve: Any, locking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from .asgi_apps import starlette_app

    wrappers: list[CancelOnDisconnect] = []
    original = starlette_app.create_app

    def wrapped(**options: Any) -> Any:
        wrappers.append(CancelOnDisconnect(original(**options)))
        return wrappers[-1]

    monkeypatch.setattr(starlette_app, "create_app", wrapped)
    served = serve(locking=locking)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
    with served.client(cookies={"session": sid}) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/slow", params={"seconds": 30}, timeout=0.5)
    wait_until(lambda: wrappers[0].cancelled == 1, "the app was cancelled")
    wait_until(lambda: not served.locked(sid), "the lock was given back")
    assert served.data(sid) == {"cart": ["a"]}


# --- WebSockets -------------------------------------------------------------------------------


def websocket_json(url: str, path: str, cookie: str) -> Any:
    """Open a WebSocket (wsproto over a socket), return the first JSON message."""
    host, port = url.removeprefix("http://").split(":")
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    with socket.create_connection((host, int(port)), timeout=WAIT_SECONDS) as sock:
        sock.sendall(connection.send(wsproto.events.Request(
            host=host, target=path, extra_headers=[(b"cookie", cookie.encode())])))
        text = ""
        while True:
            data = sock.recv(65536)
            assert data, "the server closed the socket"
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, wsproto.events.TextMessage):
                    text += event.data
                    if event.message_finished:
                        return json.loads(text)
                elif isinstance(event, wsproto.events.RejectConnection):
                    raise AssertionError(f"rejected: {event.status_code}")


@pytest.mark.parametrize("locking", ["optimistic", "pessimistic"])
def test_a_websocket_reads_the_session_and_cannot_change_it(serve: Any, locking: str) -> None:
    served = serve(locking=locking)
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
    message = websocket_json(served.url, "/ws", f"session={sid}")
    assert message == {"session": {"cart": ["a"]}, "error": "SessionReadOnly"}
    assert not served.locked(sid)  # given back before the socket's app ran
    assert served.data(sid) == {"cart": ["a"]}


def test_store_or_config_is_required() -> None:
    with pytest.raises(TypeError, match="store= or config="):
        SessionMiddleware(lambda *args: None)


def test_a_websocket_without_a_session_cookie_costs_no_call(serve: Any) -> None:
    served = serve(locking="pessimistic")
    before = served.calls()
    message = websocket_json(served.url, "/ws", "other=1")
    assert message == {"session": {}, "error": "SessionReadOnly"}
    assert served.calls() == before


def test_session_of_a_scope_without_our_session_says_what_to_do() -> None:
    from dynamo_sessions.asgi import session_of

    with pytest.raises(LookupError, match="SessionMiddleware"):
        session_of({"type": "http", "session": {}})


def test_a_websocket_whose_session_stays_locked_is_refused(serve: Any) -> None:
    served = serve(locking="pessimistic", config_options={"max_lock_wait_seconds": 0.5})
    with served.client() as client:
        sid = cookie_of(client.post("/cart/a"))
    holder = threading.Thread(target=lambda: served.client(cookies={"session": sid}).get(
        "/slow", params={"seconds": 3}))
    holder.start()
    try:
        wait_until(lambda: served.locked(sid), "the slow request holds the lock")
        with pytest.raises(AssertionError, match="rejected: 403"):
            websocket_json(served.url, "/ws", f"session={sid}")  # closed before accept
    finally:
        holder.join(timeout=WAIT_SECONDS)
    assert served.data(sid) == {"cart": ["a"], "slow": True}
