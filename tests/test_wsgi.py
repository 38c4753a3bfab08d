"""The WSGI middleware against moto (in-process mock_aws; moto server for threads)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client, create_environ, run_wsgi_app

from dynamo_sessions import ConfigError
from dynamo_sessions.store import new_session_id
from dynamo_sessions.web import ENVIRON_KEY, read_cookie, valid_cookie_id
from dynamo_sessions.wsgi import SessionMiddleware

from .conftest import make_table
from .handler_support import run_threads
from .web_support import (
    CallCounter,
    assert_retired,
    make_store,
    shared_moto_table,
    stored_item,
    unique_name,
)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Routes: /untouched, /get, /incr, /set?k=v, /login, /logout, /boom."""
    session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    if path == "/incr":
        session["n"] = session.get("n", 0) + 1
    elif path == "/set":
        key, _, value = environ["QUERY_STRING"].partition("=")
        session[key] = value
    elif path == "/login":
        session.regenerate()
        session["user"] = "ada"
    elif path == "/logout":
        session.destroy()
    elif path == "/boom":
        session["n"] = -1
        raise RuntimeError("boom")
    body = b"untouched" if path == "/untouched" else repr(dict(session)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Any, str]]:
    with shared_moto_table() as backend:
        yield backend


@pytest.fixture
def setup(shared: tuple[Any, str]) -> tuple[Any, str, str]:
    return shared[0], shared[1], unique_name()


def client_for(setup: Any, locking: str = "optimistic", **options: Any) -> Any:
    ddb, table, name = setup
    store = make_store(ddb, table, locking, session_name=name,
                       **{k: v for k, v in options.items() if k == "max_lock_wait_seconds"})
    web = {k: v for k, v in options.items() if k != "max_lock_wait_seconds"}
    return Client(SessionMiddleware(app, store, **web)), store


def cookie_value(response: Any) -> str | None:
    header = response.headers.get("Set-Cookie")
    return None if header is None else read_cookie(header.split(";")[0], "session")


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_untouched_request_makes_no_call_and_sets_no_cookie(setup: Any, locking: str) -> None:
    client, _ = client_for(setup, locking)
    counter = CallCounter(setup[0])
    client.get("/incr")
    counter.reset()
    response = client.get("/untouched")
    assert counter.total == 0
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_counter_survives_and_read_only_costs_what_the_design_says(setup: Any,
                                                                   locking: str) -> None:
    client, store = client_for(setup, locking)
    counter = CallCounter(setup[0])
    first = client.get("/incr")
    # a new session: one conditional create (and, once per store, the DescribeEndpoints
    # that learns the server's clock before the first expiry it dates)
    assert counter.calls == {"DescribeEndpoints": 1, "UpdateItem": 1}
    sid = cookie_value(first)
    assert sid is not None and valid_cookie_id(sid) and len(sid) == 43
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Max-Age" not in cookie  # a browser-session cookie by default
    assert client.get("/incr").text == "{'n': 2}"
    counter.reset()
    response = client.get("/get")
    assert response.text == "{'n': 2}"
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"
    # read-only: one read; pessimistic also takes and releases its lock
    expected = {"UpdateItem": 2} if locking == "pessimistic" else {"GetItem": 1}
    assert counter.calls == expected
    item = stored_item(setup[0], store, sid)
    assert item is not None and "lock" not in item


def test_secure_cookie_on_https_and_trusted_forwarded_proto(setup: Any) -> None:
    client, _ = client_for(setup)
    assert "Secure" in client.get("/incr", base_url="https://localhost/").headers["Set-Cookie"]
    client, _ = client_for(setup)
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "Secure" not in client.get("/incr", headers=forwarded).headers["Set-Cookie"]
    client, _ = client_for(setup, trust_forwarded_proto=True)
    assert "Secure" in client.get("/incr", headers=forwarded).headers["Set-Cookie"]
    client, _ = client_for(setup, cookie_secure=True, cookie_samesite="Strict",
                           cookie_max_age_seconds=600)
    cookie = client.get("/incr").headers["Set-Cookie"]
    assert "Secure" in cookie and "SameSite=Strict" in cookie and "Max-Age=600" in cookie


MALFORMED = {
    "oversized": "x" * 5000, "short": "a" * 42, "long": "a" * 44, "non-ascii": "é" * 43,
    "bad-char": "a" * 42 + "!", "space": "a" * 42 + " ", "path": "../../etc/passwd",
    "empty": "", "quoted-long": '"' + "a" * 43, "control": "a" * 41 + "\x00\x01",
}


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_cookie_is_no_session_and_never_reaches_dynamodb(setup: Any,
                                                                   value: str) -> None:
    ddb, table, name = setup
    middleware = SessionMiddleware(app, make_store(ddb, table, "pessimistic", name))
    counter = CallCounter(ddb)
    environ = create_environ("/get")
    # WSGI gives header values as latin-1 decoded str
    environ["HTTP_COOKIE"] = f"session={value}".encode().decode("latin-1")
    body, status, headers = run_wsgi_app(middleware, environ, buffered=True)
    assert status == "200 OK" and b"".join(body) == b"{}"
    assert counter.total == 0
    # the client's bad cookie is expired, so it stops sending it
    assert "Max-Age=0" in headers["Set-Cookie"]


def test_strict_mode_replaces_an_unknown_id(setup: Any) -> None:
    client, store = client_for(setup, "pessimistic")
    made_up = new_session_id()
    client.set_cookie("session", made_up)
    response = client.get("/incr")
    issued = cookie_value(response)
    assert issued is not None and issued != made_up
    assert stored_item(setup[0], store, made_up) is None  # no lock-only item left behind
    assert stored_item(setup[0], store, issued) is not None


def test_non_strict_mode_adopts_the_client_id(setup: Any) -> None:
    client, store = client_for(setup, "optimistic", strict=False)
    chosen = new_session_id()
    client.set_cookie("session", chosen)
    client.get("/incr")
    assert stored_item(setup[0], store, chosen) is not None


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_regenerate_moves_data_and_retires_the_old_item(setup: Any, locking: str) -> None:
    """The old item becomes a data-less marker: the old id is never served again."""
    client, store = client_for(setup, locking)
    old = cookie_value(client.get("/set?cart=3"))
    assert old is not None
    new = cookie_value(client.get("/login"))
    assert new is not None and new != old
    assert_retired(setup[0], store, old)
    assert client.get("/get").text == "{'cart': '3', 'user': 'ada'}"
    assert store.load(old).data == {}


def test_logout_deletes_the_item_and_the_cookie(setup: Any) -> None:
    client, store = client_for(setup, "pessimistic")
    sid = cookie_value(client.get("/login"))
    assert sid is not None
    response = client.get("/logout")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert stored_item(setup[0], store, sid) is None


def test_app_error_releases_the_lock_without_saving(setup: Any) -> None:
    client, store = client_for(setup, "pessimistic", max_lock_wait_seconds=0.2)
    sid = cookie_value(client.get("/incr"))
    with pytest.raises(RuntimeError):
        client.get("/boom")
    item = stored_item(setup[0], store, sid or "")
    assert item is not None and "lock" not in item
    assert client.get("/get").text == "{'n': 1}"


def test_lock_timeout_answers_503_with_retry_after_and_keeps_the_data(setup: Any) -> None:
    client, store = client_for(setup, "pessimistic", max_lock_wait_seconds=0.1,
                               lock_timeout_status=429, lock_timeout_body="busy",
                               retry_after_seconds=3)
    sid = cookie_value(client.get("/incr"))
    assert sid is not None
    other_tab = store.load(sid)  # holds the lock
    response = client.get("/incr")
    assert response.status_code == 429 and response.text == "busy"
    assert response.headers["Retry-After"] == "3"
    store.save(other_tab)
    assert client.get("/get").text == "{'n': 1}"


def stream_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    session = environ[ENVIRON_KEY]
    start_response("200 OK", [("Content-Type", "text/plain")])
    session["started"] = True  # before the first chunk: the cookie can still be sent
    yield b"a"
    session["during"] = session.get("during", 0) + 1  # while streaming: saved at the end
    yield b"b"


def test_streaming_body_gets_its_cookie_and_is_saved_at_the_end(setup: Any) -> None:
    ddb, table, name = setup
    store = make_store(ddb, table, "pessimistic", name)
    client = Client(SessionMiddleware(stream_app, store))
    response = client.get("/")
    assert response.text == "ab"
    sid = cookie_value(response)
    assert sid is not None
    assert client.get("/").text == "ab"
    loaded = store.load(sid)
    assert loaded.data == {"started": True, "during": 2}
    store.release(loaded)


def test_streaming_body_closed_early_is_released_not_saved(setup: Any) -> None:
    ddb, table, name = setup
    store = make_store(ddb, table, "pessimistic", name)
    middleware = SessionMiddleware(stream_app, store)
    sid = new_session_id()
    store.create(sid, {"during": 10})
    environ = {"PATH_INFO": "/", "HTTP_COOKIE": f"session={sid}", "wsgi.url_scheme": "http"}
    body = middleware(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert next(iter(body)) == b"a"
    next(body)  # type: ignore[call-overload]
    body.close()  # type: ignore[attr-defined]
    item = stored_item(ddb, store, sid)
    assert item is not None and "lock" not in item
    loaded = store.load(sid)
    assert loaded.data == {"during": 10}
    store.release(loaded)


def test_concurrent_tabs_keep_their_changes_with_optimistic(moto_server_client: Any,
                                                            table_name: str) -> None:
    make_table(moto_server_client, table_name)
    client, store = client_for((moto_server_client, table_name, "s"), "optimistic")
    sid = cookie_value(client.get("/set?start=1"))
    barrier = threading.Barrier(8)

    def tab(index: int) -> None:
        tab_client, _ = client_for((moto_server_client, table_name, "s"), "optimistic")
        tab_client.set_cookie("session", sid)
        barrier.wait()
        assert tab_client.get(f"/set?tab{index}=x").status_code == 200

    assert run_threads(8, tab) == []
    loaded = store.load(sid or "")
    assert loaded.data == {"start": "1", **{f"tab{i}": "x" for i in range(8)}}


def test_unknown_web_option_is_rejected(setup: Any) -> None:
    with pytest.raises(ConfigError, match="cookie_nam"):
        client_for(setup, cookie_nam="x")


def late_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"a"
    environ[ENVIRON_KEY]["late"] = True  # a new session, after the headers went out
    yield b"b"


def test_new_session_created_while_streaming_is_not_stored(setup: Any,
                                                           caplog: Any) -> None:
    ddb, table, name = setup
    counter = CallCounter(ddb)
    client = Client(SessionMiddleware(late_app, make_store(ddb, table, "optimistic", name)))
    response = client.get("/")
    assert response.text == "ab" and "Set-Cookie" not in response.headers
    assert counter.total == 0
    assert "cannot get a cookie" in caplog.text


def lazy_stream_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    session = environ[ENVIRON_KEY]
    n = session.get("n", 0)  # first access inside the body, before any output
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield str(n).encode()


def test_lock_timeout_inside_a_streamed_body_still_answers_503(setup: Any) -> None:
    ddb, table, name = setup
    store = make_store(ddb, table, "pessimistic", name, max_lock_wait_seconds=0.1)
    sid = new_session_id()
    store.create(sid, {"n": 5})
    holder = store.load(sid)
    client = Client(SessionMiddleware(lazy_stream_app, store))
    client.set_cookie("session", sid)
    response = client.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    store.save(holder)
    assert client.get("/").text == "5"
