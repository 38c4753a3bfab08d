"""What survives concurrent requests on ONE session, on DynamoDB Local (atomic conditional
writes): counters, lists, consumed flashes, a merge past the item limit, a login racing another
tab, and a set after logout - through the handler, plain WSGI, Flask and Django.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from werkzeug.test import Client

from dynamo_sessions import (
    LockLost,
    SessionHandler,
    SessionTooLarge,
    create_store,
    item_size,
    new_session_id,
    write_units,
)
from dynamo_sessions.config import SessionConfig
from dynamo_sessions.flask import DynamoSessionInterface
from dynamo_sessions.store import SessionStore
from dynamo_sessions.web import ENVIRON_KEY, read_cookie
from dynamo_sessions.wsgi import SessionMiddleware

from .handler_support import Clock, run_threads
from .test_handler_dynamodb_local import MODES, THREADS
from .web_support import assert_retired, make_store, stored_item, unique_name

pytestmark = pytest.mark.dynamodb_local

PER_THREAD = 30


class Gate:
    """Holds one request between reading its session and saving it, until the test says go."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.go = threading.Event()

    def pause(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            assert self.go.wait(30), "the test never released the gate"

    def run_paused(self, request: Callable[[], Any], meanwhile: Callable[[], Any]) -> Any:
        """Run ``request`` (which calls ``pause``) in a thread; run ``meanwhile`` while it is
        held; then let it finish and return its result."""
        self.armed = True
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(request()))
        thread.start()
        assert self.reached.wait(30)
        try:
            meanwhile()
        finally:
            self.go.set()
            thread.join(30)
        assert result, "the paused request failed"
        return result[0]


GATE = Gate()


def hammer(requests_of_thread: Callable[[int], Callable[[int], Any]]) -> None:
    """THREADS threads at once, each making PER_THREAD requests: ``requests_of_thread(t)``
    gives thread ``t`` its request function (own client), called with ``0..PER_THREAD-1``."""
    def run(thread: int) -> None:
        request = requests_of_thread(thread)
        for i in range(PER_THREAD):
            request(i)

    assert run_threads(THREADS, run) == []


def ok(response: Any) -> None:
    assert response.status_code == 200, response.status_code


@pytest.fixture(autouse=True)
def fresh_gate() -> Iterator[None]:
    global GATE
    GATE = Gate()
    yield
    GATE.go.set()


# --- the handler (PHP protocol) ---------------------------------------------------------------


def handler_for(client: Any, local_table: str, locking: str) -> SessionHandler:
    handler = SessionHandler(SessionConfig(table_name=local_table, locking=locking), client)
    handler.open("", "PHPSESSID")
    return handler


@pytest.mark.parametrize("mode", MODES)
def test_increments_of_one_counter_are_never_lost(ddb_local_client: Any, local_table: str,
                                                  mode: str) -> None:
    """8 threads x 30 increments of ONE counter: exactly 240, in every mode (a plain
    ``data[n] = n + 1`` keeps only a fraction of them without the pessimistic lock)."""
    handler = handler_for(ddb_local_client, local_table, mode)
    sid = new_session_id()
    handler.write(sid, {"user": "ada"})

    def count(_: int) -> None:
        data = handler.read(sid)
        handler.increment(sid, "n")
        handler.write(sid, data)

    hammer(lambda _: count)
    assert handler.read(sid) == {"user": "ada", "n": THREADS * PER_THREAD}
    handler.close()


@pytest.mark.parametrize("mode", ["optimistic", "pessimistic"])
def test_appends_to_one_list_are_never_lost(ddb_local_client: Any, local_table: str,
                                            mode: str) -> None:
    """8 threads x 30 appends to ONE shared list (flash messages, a cart): all 240 kept."""
    handler = handler_for(ddb_local_client, local_table, mode)
    sid = new_session_id()
    handler.write(sid, {"cart": []})

    def adder(thread: int) -> Callable[[int], None]:
        def add(i: int) -> None:
            data = handler.read(sid)
            data["cart"].append({"thread": thread, "i": i})
            handler.write(sid, data)
        return add

    hammer(adder)
    cart = handler.read(sid)["cart"]
    assert sorted((item["thread"], item["i"]) for item in cart) == [
        (t, i) for t in range(THREADS) for i in range(PER_THREAD)]
    handler.close()


def test_counter_without_locking_merges_only_when_contended(ddb_local_client: Any,
                                                            local_table: str) -> None:
    """``locking="none"``: an uncontended save carrying an increment is one write (conditional
    on the version it read - a condition costs nothing); a plain write stays unconditional in
    effect until the session holds a counter."""
    store = make_store(ddb_local_client, local_table, "none")
    sid = new_session_id()
    session = store.load(sid)
    session.data["user"] = "ada"
    store.save(session)
    store.metrics.reset()
    session = store.load(sid)
    session.increment("n", 5)
    store.save(session)
    assert store.metrics.calls == {"GetItem": 1, "UpdateItem": 1}
    assert store.metrics.conflicts == 0
    # a plain request that read before the counter existed does not overwrite it
    plain, counting = store.load(sid), store.load(sid)
    counting.increment("n")
    store.save(counting)
    plain.data["theme"] = "dark"
    store.save(plain)
    assert store.load(sid).data == {"user": "ada", "n": 6, "theme": "dark"}


@pytest.mark.parametrize("mode", ["optimistic", "none"])
def test_a_merge_past_the_item_limit_raises_session_too_large(ddb_local_client: Any,
                                                              local_table: str, mode: str) -> None:
    rng = random.Random(7)
    store = make_store(ddb_local_client, local_table, mode)
    sid = new_session_id()
    first = store.load(sid)
    first.data["user"] = "ada"
    first.increment("n")  # without locking, a session holding a counter is merged
    store.save(first)
    ours, theirs = store.load(sid), store.load(sid)
    theirs.data["blob1"] = rng.randbytes(250_000)
    theirs.increment("n")
    store.save(theirs)
    ours.data["blob2"] = rng.randbytes(250_000)
    ours.increment("n")
    with pytest.raises(SessionTooLarge) as caught:
        store.save(ours)
    assert caught.value.size_bytes > caught.value.limit_bytes == 400 * 1024
    assert set(store.load(sid).data) == {"user", "n", "blob1"}  # theirs, untouched


# --- WSGI -------------------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """/count, /add?item=x, /get, /login (pauses at GATE), /logout-flash."""
    session = environ[ENVIRON_KEY]
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/count":
        session.increment("n")
    elif path == "/add":
        session.setdefault("cart", []).append(query.partition("=")[2])
        session.modified = True
    elif path == "/login":
        session.get("cart")  # read before the pause, as a real login checks the form
        GATE.pause()
        session.regenerate()
        session["user"] = "ada"
    elif path == "/logout-flash":
        session.destroy()
        session["flash"] = "logged out"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(dict(session)).encode()]


def wsgi_client(store: SessionStore, cookie: str | None = None) -> Client:
    client = Client(SessionMiddleware(wsgi_app, store))
    if cookie is not None:
        client.set_cookie("session", cookie)
    return client


def set_cookies(headers: Any) -> list[str]:
    return list(headers.getlist("Set-Cookie"))


def new_cookie(headers: Any, name: str = "session") -> str | None:
    for header in set_cookies(headers):
        value = read_cookie(header.split(";")[0], name)
        if value:
            return value
    return None


@pytest.mark.parametrize("mode", MODES)
def test_wsgi_increments_are_never_lost(ddb_local_client: Any, local_table: str, mode: str) -> None:
    store = make_store(ddb_local_client, local_table, mode, session_name=unique_name())
    sid = new_cookie(wsgi_client(store).get("/count").headers)
    assert sid is not None

    def counter(_: int) -> Callable[[int], None]:
        client = wsgi_client(store, sid)
        return lambda _: ok(client.get("/count"))

    hammer(counter)
    assert store.load(sid).data == {"n": 1 + THREADS * PER_THREAD}


@pytest.mark.parametrize("mode", ["optimistic", "none"])
def test_wsgi_login_racing_a_tab_keeps_the_tabs_write_and_never_logs_out(
        ddb_local_client: Any, local_table: str, mode: str) -> None:
    """Another tab's acknowledged write, made between the login's read and its save, is in
    the new session; a request still carrying the pre-login cookie afterwards gets no
    Set-Cookie at all (no deletion, no new id) and stores nothing."""
    store = make_store(ddb_local_client, local_table, mode, session_name=unique_name())
    old = new_cookie(wsgi_client(store).get("/add?item=pen").headers)
    assert old is not None
    login = GATE.run_paused(
        lambda: wsgi_client(store, old).get("/login"),
        lambda: wsgi_client(store, old).get("/add?item=ink"),
    )
    new = new_cookie(login.headers)
    assert new not in (None, old)
    assert store.load(new).data == {"cart": ["pen", "ink"], "user": "ada"}
    assert_retired(ddb_local_client, store, old)
    for path in ("/get", "/add?item=cap", "/count"):
        stale = wsgi_client(store, old).get(path)
        assert stale.status_code == 200 and set_cookies(stale.headers) == [], path
    assert_retired(ddb_local_client, store, old)
    assert store.load(new).data == {"cart": ["pen", "ink"], "user": "ada"}


@pytest.mark.parametrize("mode", MODES)
def test_wsgi_stale_cookie_after_login_gets_no_set_cookie(ddb_local_client: Any, local_table: str,
                                                          mode: str) -> None:
    """Requests still carrying the pre-login cookie, arriving after the login: served an
    empty session, never stored, no Set-Cookie - and the marker stays (pessimistic: the lock
    such a request takes on the marker is given back without deleting it)."""
    store = make_store(ddb_local_client, local_table, mode, session_name=unique_name())
    old = new_cookie(wsgi_client(store).get("/add?item=pen").headers)
    assert old is not None
    new = new_cookie(wsgi_client(store, old).get("/login").headers)
    assert new not in (None, old)
    for path in ("/get", "/add?item=cap", "/get"):
        stale = wsgi_client(store, old).get(path)
        assert set_cookies(stale.headers) == [], path
    assert stale.text == "{}"  # the cap was not stored
    assert_retired(ddb_local_client, store, old)
    assert wsgi_client(store, new).get("/get").text == "{'cart': ['pen'], 'user': 'ada'}"


@pytest.mark.parametrize("mode", MODES)
def test_retiring_costs_what_deleting_costs(ddb_local_client: Any, local_table: str,
                                            mode: str) -> None:
    """The marker replaces the old item in one write, charged like its DeleteItem would be."""
    store = make_store(ddb_local_client, local_table, mode, session_name=unique_name())
    sid = new_session_id()
    first = store.load(sid)
    first.data["blob"] = random.Random(1).randbytes(3000)
    store.save(first)
    old = store.load(sid)
    stored = stored_item(ddb_local_client, store, sid)
    assert stored is not None
    successor = store.create(new_session_id(), old.data)
    store.metrics.reset()
    store.retire(old, successor)
    assert store.metrics.calls == {"PutItem": 1}
    assert store.metrics.write_units == write_units(item_size(stored))
    assert_retired(ddb_local_client, store, sid)
    # an id that held no session (non-strict adoption) is retired all the same
    unknown = store.load(new_session_id())
    store.retire(unknown, successor)
    assert_retired(ddb_local_client, store, unknown.session_id)


@pytest.mark.parametrize("mode", MODES)
def test_retire_merges_a_write_made_to_the_old_session_meanwhile(
        ddb_local_client: Any, local_table: str, mode: str) -> None:
    """The session was stored by this request (no lock: Django's ``create`` then
    ``cycle_key``), then another request wrote it before the old id was retired."""
    store = make_store(ddb_local_client, local_table, mode, session_name=unique_name())
    sid = new_session_id()
    old = store.create(sid, {"cart": ["pen"]})
    other = store.load(sid)
    other.data["cart"] = ["pen", "ink"]
    store.save(other)
    successor = store.create(new_session_id(), {"cart": ["pen"], "user": "ada"})
    store.retire(old, successor)
    assert store.load(successor.session_id).data == {"cart": ["pen", "ink"], "user": "ada"}
    assert_retired(ddb_local_client, store, sid)


def test_pessimistic_retire_with_a_lost_lease_is_refused(ddb_local_client: Any,
                                                         local_table: str) -> None:
    clock = Clock()
    store = create_store(SessionConfig(table_name=local_table, locking="pessimistic",
                                       lock_lease_seconds=1), ddb_local_client, clock=clock)
    sid = new_session_id()
    store.create(sid, {"cart": ["pen"]})
    login = store.load(sid)
    clock.advance(2)  # the login's lease runs out; another request takes the session over
    other = store.load(sid)
    other.data["cart"] = ["pen", "ink"]
    store.save(other)
    successor = store.create(new_session_id(), {"cart": ["pen"], "user": "ada"})
    with pytest.raises(LockLost):
        store.retire(login, successor)
    assert store.load(sid).data == {"cart": ["pen", "ink"]}  # the old session, as written


@pytest.mark.parametrize("mode", MODES)
def test_wsgi_set_after_destroy_starts_a_new_session(ddb_local_client: Any, local_table: str,
                                                     mode: str) -> None:
    store = make_store(ddb_local_client, local_table, mode, session_name=unique_name())
    old = new_cookie(wsgi_client(store).get("/add?item=pen").headers)
    assert old is not None
    response = wsgi_client(store, old).get("/logout-flash")
    new = new_cookie(response.headers)
    assert new not in (None, old)
    assert stored_item(ddb_local_client, store, old) is None
    assert store.load(new).data == {"flash": "logged out"}


# --- Flask ------------------------------------------------------------------------------------


def flask_app(store: SessionStore) -> flask.Flask:
    app = flask.Flask(__name__)
    app.session_interface = DynamoSessionInterface(store)

    @app.get("/count")
    def count() -> str:
        return str(flask.session.increment("n"))  # type: ignore[attr-defined]

    @app.get("/flash")
    def flash() -> str:
        flask.flash(flask.request.args["m"])
        return "ok"

    @app.get("/show")
    def show() -> str:
        shown = flask.get_flashed_messages()
        GATE.pause()
        return repr(shown)

    @app.get("/get")
    def get() -> str:
        return repr(dict(flask.session))

    @app.get("/login")
    def login() -> str:
        flask.session.get("x")
        GATE.pause()
        flask.session.regenerate()  # type: ignore[attr-defined]
        flask.session["user"] = "ada"
        return "ok"

    @app.get("/logout-flash")
    def logout_flash() -> str:
        flask.session.destroy()  # type: ignore[attr-defined]
        flask.flash("logged out")
        return "ok"

    return app


def flask_client(app: flask.Flask, cookie: str | None = None) -> Any:
    client = app.test_client()
    if cookie is not None:
        client.set_cookie("session", cookie)
    return client


def flask_started(ddb: Any, table: str, mode: str, first: str) -> tuple[SessionStore,
                                                                       flask.Flask, str]:
    """A store and app, and the id of a session started by a first request to ``first``."""
    store = make_store(ddb, table, mode, session_name="session")
    app = flask_app(store)
    sid = new_cookie(flask_client(app).get(first).headers)
    assert sid is not None
    return store, app, sid


@pytest.mark.parametrize("mode", MODES)
def test_flask_increments_and_flashes_are_never_lost(ddb_local_client: Any, local_table: str,
                                                     mode: str) -> None:
    store, app, sid = flask_started(ddb_local_client, local_table, mode, "/count")

    def counter(thread: int) -> Callable[[int], None]:
        client = flask_client(app, sid)

        def count_and_flash(i: int) -> None:
            ok(client.get("/count"))
            if mode != "none":  # without locking, only counters are merged
                ok(client.get(f"/flash?m={thread}-{i}"))
        return count_and_flash

    hammer(counter)
    data = store.load(sid).data
    assert data["n"] == 1 + THREADS * PER_THREAD
    if mode != "none":
        assert sorted(message for _, message in data["_flashes"]) == sorted(
            f"{t}-{i}" for t in range(THREADS) for i in range(PER_THREAD))


def test_flask_consumed_flashes_leave_only_the_one_added_meanwhile(ddb_local_client: Any,
                                                                   local_table: str) -> None:
    store, app, sid = flask_started(ddb_local_client, local_table, "optimistic", "/flash?m=old")
    shown = GATE.run_paused(lambda: flask_client(app, sid).get("/show"),
                            lambda: flask_client(app, sid).get("/flash?m=new"))
    assert shown.text == "['old']"
    assert store.load(sid).data == {"_flashes": [["message", "new"]]}
    assert flask_client(app, sid).get("/show").text == "['new']"
    assert stored_item(ddb_local_client, store, sid) is None  # nothing left: deleted


def test_flask_login_racing_a_tab(ddb_local_client: Any, local_table: str) -> None:
    store, app, old = flask_started(ddb_local_client, local_table, "optimistic", "/count")
    login = GATE.run_paused(lambda: flask_client(app, old).get("/login"),
                            lambda: flask_client(app, old).get("/count"))
    new = new_cookie(login.headers)
    assert new not in (None, old)
    assert store.load(new).data == {"n": 2, "user": "ada"}
    assert_retired(ddb_local_client, store, old)
    for path in ("/get", "/count", "/flash?m=x"):
        stale = flask_client(app, old).get(path)
        assert stale.status_code == 200 and set_cookies(stale.headers) == [], path
    assert store.load(new).data == {"n": 2, "user": "ada"}


def test_flask_flash_after_logout_gets_a_new_session(ddb_local_client: Any,
                                                     local_table: str) -> None:
    store, app, old = flask_started(ddb_local_client, local_table, "optimistic", "/count")
    new = new_cookie(flask_client(app, old).get("/logout-flash").headers)
    assert new not in (None, old)
    assert stored_item(ddb_local_client, store, old) is None
    assert flask_client(app, new).get("/get").text == "{'_flashes': [['message', 'logged out']]}"


# --- Django -----------------------------------------------------------------------------------


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")


def _django_views() -> list[Any]:
    import django

    django.setup()
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    def count(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(request.session.increment("n")))  # type: ignore[attr-defined]

    def get(request: HttpRequest) -> HttpResponse:
        return HttpResponse(repr(dict(request.session.items())))

    def login(request: HttpRequest) -> HttpResponse:
        request.session.get("x")
        GATE.pause()
        request.session.cycle_key()
        request.session["user"] = "ada"
        return HttpResponse("ok")

    return [path("count", count), path("get", get), path("login", login)]


urlpatterns: list[Any] = []


@pytest.fixture
def django_client(ddb_local_client: Any, local_table: str, request: pytest.FixtureRequest) -> Any:
    from django.test import override_settings

    urlpatterns[:] = _django_views()
    mode = getattr(request, "param", "optimistic")
    options = {"table_name": local_table, "client": ddb_local_client, "locking": mode,
               "session_name": unique_name()}
    with override_settings(DYNAMO_SESSIONS=options, ROOT_URLCONF=__name__):
        from dynamo_sessions.django import backend

        yield backend().store


def django_get(path: str, cookie: str | None = None) -> Any:
    from django.test import Client as DjangoClient

    client = DjangoClient()
    if cookie is not None:
        client.cookies["sessionid"] = cookie
    return client.get(path)


@pytest.mark.parametrize("django_client", MODES, indirect=True)
def test_django_increments_are_never_lost(django_client: SessionStore) -> None:
    first = django_get("/count")
    sid = first.cookies["sessionid"].value

    hammer(lambda _: lambda _: ok(django_get("/count", sid)))
    assert django_client.load(sid).data["n"] == 1 + THREADS * PER_THREAD


def test_django_login_racing_a_tab_never_logs_out(ddb_local_client: Any,
                                                  django_client: SessionStore) -> None:
    """Django's own middleware deletes the cookie of an empty session: ours must not for a
    session that moved (the stale request's session loads as empty)."""
    old = django_get("/count").cookies["sessionid"].value
    login = GATE.run_paused(lambda: django_get("/login", old), lambda: django_get("/count", old))
    new = login.cookies["sessionid"].value
    assert new != old
    assert {k: v for k, v in django_client.load(new).data.items() if k == "n"} == {"n": 2}
    assert_retired(ddb_local_client, django_client, old)
    for path in ("/get", "/count"):
        stale = django_get(path, old)
        assert stale.status_code == 200 and "sessionid" not in stale.cookies, path
    assert django_client.load(new).data["n"] == 2
