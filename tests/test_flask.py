"""The Flask session interface against moto's in-process backend."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import flask
import pytest

from dynamo_sessions import ConfigError
from dynamo_sessions.flask import DynamoSessionInterface, init_app
from dynamo_sessions.store import new_session_id

from .conftest import make_table
from .handler_support import Clock
from .web_support import (
    CallCounter,
    assert_retired,
    count_stores_built,
    make_store,
    shared_moto_table,
    stored_item,
    unique_name,
)


def make_app(**config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(config)

    @app.get("/untouched")
    def untouched() -> str:
        return "untouched"

    @app.get("/incr")
    def incr() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    @app.get("/get")
    def get() -> str:
        return repr(dict(flask.session))

    @app.get("/permanent")
    def permanent() -> str:
        flask.session.permanent = True
        flask.session["p"] = 1
        return "ok"

    @app.get("/login")
    def login() -> str:
        flask.session.regenerate()  # type: ignore[attr-defined]
        flask.session["user"] = "ada"
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        flask.session.clear()
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        flask.session["n"] = -1
        raise RuntimeError("boom")

    @app.get("/read-boom")
    def read_boom() -> str:
        flask.session.get("n")  # read only, then the view fails
        raise RuntimeError("boom")

    return app


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Any, str]]:
    with shared_moto_table() as backend:
        yield backend


@pytest.fixture
def ddb(shared: tuple[Any, str]) -> Any:
    return shared[0]


@pytest.fixture
def table_name(shared: tuple[Any, str]) -> str:
    return shared[1]


@pytest.fixture
def name() -> str:
    return unique_name()


def session_cookie(client: Any, name: str = "session") -> str | None:
    cookie = client.get_cookie(name)
    return None if cookie is None else str(cookie.value)


def test_init_app_reads_app_config(ddb: Any, table_name: str, name: str) -> None:
    app = make_app(DYNAMO_SESSIONS_TABLE_NAME=table_name, DYNAMO_SESSIONS_CLIENT=ddb,
                   DYNAMO_SESSIONS_MAX_LOCK_WAIT_SECONDS=2, DYNAMO_SESSIONS_STRICT=False)
    interface = init_app(app)
    assert interface.store.locking == "optimistic"
    assert interface.store.config.table_name == table_name
    assert interface.store.config.max_lock_wait_seconds == 2
    assert interface.options.strict is False  # not the default (True): the setting was read
    client = app.test_client()
    assert client.get("/incr").text == "1"
    assert client.get("/incr").text == "2"
    adopted = new_session_id()  # non-strict: an id the store does not know is kept
    client.set_cookie("session", adopted)
    assert client.get("/incr").text == "1"
    assert session_cookie(client) == adopted


def test_init_app_rejects_unknown_settings() -> None:
    app = make_app(DYNAMO_SESSIONS_TABEL_NAME="x")
    with pytest.raises(ConfigError, match="DYNAMO_SESSIONS_TABEL_NAME"):
        init_app(app)


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_untouched_and_read_only_requests_cost_what_the_design_says(
    ddb: Any, table_name: str, name: str, locking: str
) -> None:
    app = make_app()
    store = make_store(ddb, table_name, locking, session_name=name)
    app.session_interface = DynamoSessionInterface(store)
    client = app.test_client()
    counter = CallCounter(ddb)
    response = client.get("/incr")
    # a create (and once per store, DescribeEndpoints: the server's clock dates its expiry)
    assert counter.calls == {"DescribeEndpoints": 1, "UpdateItem": 1}
    assert response.headers["Vary"] == "Cookie"
    counter.reset()
    response = client.get("/untouched")
    assert counter.total == 0 and "Set-Cookie" not in response.headers
    counter.reset()
    response = client.get("/get")
    assert response.text == "{'n': 1}" and "Set-Cookie" not in response.headers
    assert counter.calls == ({"UpdateItem": 2} if locking == "pessimistic" else {"GetItem": 1})


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_a_response_that_read_the_session_varies_on_cookie(ddb: Any, table_name: str,
                                                           name: str, locking: str) -> None:
    """A page that only read the session is still that user's page: a shared cache must not
    serve it to another user (``Vary: Cookie``); a page that never touched it may be shared."""
    app = make_app()
    app.session_interface = DynamoSessionInterface(make_store(ddb, table_name, locking,
                                                              session_name=name))
    client = app.test_client()
    client.get("/incr")
    read_only = client.get("/get")
    assert read_only.text == "{'n': 1}" and "Set-Cookie" not in read_only.headers
    assert read_only.headers.get("Vary") == "Cookie"
    assert "Vary" not in client.get("/untouched").headers


def test_flask_cookie_settings_are_honoured(ddb: Any, table_name: str, name: str) -> None:
    app = make_app(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_DOMAIN="example.test",
                   SESSION_COOKIE_PATH="/app", SESSION_COOKIE_SAMESITE="Strict",
                   SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SECURE=True)
    app.session_interface = DynamoSessionInterface(make_store(ddb, table_name, session_name=name))
    header = app.test_client().get("/incr").headers["Set-Cookie"]
    for part in ("sid=", "Domain=example.test", "Path=/app", "SameSite=Strict", "HttpOnly",
                 "Secure"):
        assert part in header
    assert "Expires" not in header  # not permanent: a browser-session cookie


def test_secure_defaults(ddb: Any, table_name: str, name: str) -> None:
    app = make_app()
    app.session_interface = DynamoSessionInterface(make_store(ddb, table_name, session_name=name))
    plain = app.test_client().get("/incr").headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    https = app.test_client().get("/incr", base_url="https://localhost").headers["Set-Cookie"]
    assert "Secure" in https


def test_permanent_session_gets_cookie_expiry_and_item_lifetime(ddb: Any,
                                                                table_name: str, name: str) -> None:
    app = make_app(PERMANENT_SESSION_LIFETIME=datetime.timedelta(days=3))
    store = make_store(ddb, table_name, session_lifetime_seconds=600, session_name=name)
    app.session_interface = DynamoSessionInterface(store)
    client = app.test_client()
    response = client.get("/permanent")
    assert "Expires=" in response.headers["Set-Cookie"]
    sid = session_cookie(client)
    item = stored_item(ddb, store, sid or "")
    assert item is not None
    remaining = int(item["expires"]["N"]) - store.clock()
    assert 3 * 86400 - 60 < remaining <= 3 * 86400
    client.get("/incr")
    item = stored_item(ddb, store, sid or "")
    assert item is not None and int(item["expires"]["N"]) - store.clock() > 600


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_one_store_serves_permanent_and_browser_sessions(
        ddb: Any, table_name: str, name: str, locking: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A permanent session's item lives PERMANENT_SESSION_LIFETIME, another's the store's
    lifetime - both written by the one store the interface was given, no store built per
    lifetime (the lifetime travels with the save)."""
    app = make_app(PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=2))
    store = make_store(ddb, table_name, locking, session_lifetime_seconds=600, session_name=name)
    app.session_interface = DynamoSessionInterface(store)
    built = count_stores_built(monkeypatch)
    counter = CallCounter(ddb)
    permanent, browser = app.test_client(), app.test_client()
    permanent.get("/permanent")
    browser.get("/incr")
    permanent.get("/incr")  # loaded, then saved with its own lifetime
    clock_syncs = store.clock.sync_calls  # type: ignore[attr-defined]  # not in the figures
    assert counter.total == store.metrics.snapshot()["total_calls"] + clock_syncs
    permanent_item = stored_item(ddb, store, session_cookie(permanent) or "")
    browser_item = stored_item(ddb, store, session_cookie(browser) or "")
    assert permanent_item is not None and browser_item is not None
    assert 7200 - 60 < int(permanent_item["expires"]["N"]) - store.clock() <= 7200
    assert 600 - 60 < int(browser_item["expires"]["N"]) - store.clock() <= 600
    assert built == []
    assert store.metrics.operations.get("create") == 2


def test_malformed_cookie_never_reaches_dynamodb(ddb: Any, table_name: str, name: str) -> None:
    app = make_app()
    store = make_store(ddb, table_name, "pessimistic", session_name=name)
    app.session_interface = DynamoSessionInterface(store)
    client = app.test_client()
    counter = CallCounter(ddb)
    for value in ("x" * 4000, "short", "a" * 42 + "!", "a" * 44):
        client.set_cookie("session", value)
        assert client.get("/get").text == "{}"
    assert counter.total == 0


def test_fixation_attempt_gets_a_new_id_and_login_regenerates(ddb: Any,
                                                              table_name: str, name: str) -> None:
    app = make_app()
    store = make_store(ddb, table_name, "pessimistic", session_name=name)
    app.session_interface = DynamoSessionInterface(store)
    client = app.test_client()
    made_up = new_session_id()
    client.set_cookie("session", made_up)
    client.get("/incr")
    first = session_cookie(client)
    assert first is not None and first != made_up
    assert stored_item(ddb, store, made_up) is None
    client.get("/login")
    second = session_cookie(client)
    assert second is not None and second != first
    assert_retired(ddb, store, first)
    assert client.get("/get").text == "{'n': 1, 'user': 'ada'}"


def test_logout_deletes_item_and_cookie(ddb: Any, table_name: str, name: str) -> None:
    app = make_app()
    store = make_store(ddb, table_name, session_name=name)
    app.session_interface = DynamoSessionInterface(store)
    client = app.test_client()
    client.get("/login")
    sid = session_cookie(client)
    response = client.get("/logout")
    assert "session=;" in response.headers["Set-Cookie"]
    assert stored_item(ddb, store, sid or "") is None
    assert session_cookie(client) is None


def test_lock_timeout_is_a_503_with_retry_after(ddb: Any, table_name: str, name: str) -> None:
    app = make_app()
    store = make_store(ddb, table_name, "pessimistic", max_lock_wait_seconds=0.1, session_name=name)
    app.session_interface = DynamoSessionInterface(store, retry_after_seconds=2)
    client = app.test_client()
    client.get("/incr")
    sid = session_cookie(client) or ""
    other_tab = store.load(sid)
    response = client.get("/incr")
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert "busy" in response.text
    store.save(other_tab)
    assert client.get("/get").text == "{'n': 1}"


def test_lock_is_released_when_the_view_fails(ddb: Any, table_name: str, name: str) -> None:
    app = make_app(PROPAGATE_EXCEPTIONS=True)
    store = make_store(ddb, table_name, "pessimistic", max_lock_wait_seconds=0.2, session_name=name)
    init_app(app, DynamoSessionInterface(store))
    client = app.test_client()
    client.get("/incr")
    with pytest.raises(RuntimeError):
        client.get("/boom")
    item = stored_item(ddb, store, session_cookie(client) or "")
    assert item is not None and "lock" not in item
    assert client.get("/get").text == "{'n': 1}"


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("propagate", [True, False], ids=["propagated", "answered-500"])
def test_a_failed_read_only_view_releases_its_lock(ddb_local_client: Any, propagate: bool) -> None:
    """Pessimistic, on DynamoDB Local: a view that only read the session, then raised, leaves
    no lock behind - the item has no lock attribute and the next request is served (a lock
    left held would make it wait max_lock_wait_seconds and answer 503)."""
    table = f"flask-{unique_name()}"
    make_table(ddb_local_client, table)
    app = make_app(PROPAGATE_EXCEPTIONS=propagate)
    store = make_store(ddb_local_client, table, "pessimistic", max_lock_wait_seconds=0.2)
    init_app(app, DynamoSessionInterface(store))
    client = app.test_client()
    client.get("/incr")
    if propagate:
        with pytest.raises(RuntimeError):
            client.get("/read-boom")
    else:
        assert client.get("/read-boom").status_code == 500
    item = stored_item(ddb_local_client, store, session_cookie(client) or "")
    assert item is not None and "lock" not in item and "lock_until_ms" not in item
    response = client.get("/get")
    assert (response.status_code, response.text) == (200, "{'n': 1}")


@pytest.mark.dynamodb_local
def test_a_read_only_request_keeps_a_permanent_sessions_expiry(ddb_local_client: Any) -> None:
    """Pessimistic, on DynamoDB Local: a permanent session (31 days) read a day later by a
    read-only view, then by a view that fails, keeps the expiry it was written with - the lock
    take's own expiry (now + the store's 1440 s) is not left behind, nor is the expiry moved
    while under half its lifetime is used (the refresh rule of every mode)."""
    table = f"flask-{unique_name()}"
    make_table(ddb_local_client, table)
    app = make_app(PROPAGATE_EXCEPTIONS=True)  # the failed view: released at teardown
    store = make_store(ddb_local_client, table, "pessimistic", session_lifetime_seconds=1440)
    store.clock = clock = Clock()
    init_app(app, DynamoSessionInterface(store))
    client = app.test_client()
    client.get("/permanent")
    sid = session_cookie(client) or ""
    created = int((stored_item(ddb_local_client, store, sid) or {})["expires"]["N"])
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    assert created == int(clock.now) + lifetime
    clock.advance(86400)
    assert client.get("/get").text == "{'_permanent': True, 'p': 1}"
    item = stored_item(ddb_local_client, store, sid)
    assert item is not None and int(item["expires"]["N"]) == created and "lock" not in item
    with pytest.raises(RuntimeError):
        client.get("/read-boom")
    item = stored_item(ddb_local_client, store, sid)
    assert item is not None and int(item["expires"]["N"]) == created and "lock" not in item
