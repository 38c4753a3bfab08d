"""``dynamo_sessions.quart`` through a real server: uvicorn (in a thread of this process, so the
tests read the store's own call counts) serving ``tests/asgi_quart_app.py``, driven by httpx, on
DynamoDB Local - calls made, concurrent requests on one session, 503, cancelled requests,
login and logout, the README's snippet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import quart

from dynamo_sessions.errors import ConfigError, SessionNotLoaded
from dynamo_sessions.testing.servers import DynamoDBLocal

from . import asgi_session_checks as checks
from .asgi_quart_app import make_app
from .asgi_support import UvicornThread

pytestmark = pytest.mark.dynamodb_local

COOKIE = "session"


quart_table = checks.table_fixture("quart_table", "quart")


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    checks.dummy_credentials(monkeypatch)


class Served:
    """The app under uvicorn, its interface (the store's figures) and an httpx client."""

    def __init__(self, app: quart.Quart, server: UvicornThread) -> None:
        self.app = app
        self.interface: Any = app.session_interface
        self.url = server.url

    @property
    def calls(self) -> dict[str, int]:
        return dict(self.interface.store.metrics.calls)

    def reset(self) -> None:
        self.interface.store.metrics.reset()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def serve(dynamodb_local: DynamoDBLocal, table: str, **options: Any) -> Any:
    app = make_app(table_name=table, endpoint_url=dynamodb_local.endpoint_url,
                   region_name="us-east-1", **options)
    app.config["SESSION_COOKIE_NAME"] = COOKIE
    return app


@pytest.fixture(params=checks.LOCKINGS)
def served(request: pytest.FixtureRequest, dynamodb_local: DynamoDBLocal,
           quart_table: tuple[Any, str]) -> Iterator[Served]:
    app = serve(dynamodb_local, quart_table[1], locking=request.param,
                max_lock_wait_seconds=20)
    with UvicornThread(app) as server:
        yield Served(app, server)


@contextlib.contextmanager
def new_session(served: Served) -> Iterator[httpx.Client]:
    """A client holding a new session (its counter at 1)."""
    with served.client() as client:
        answer = client.get("/rw")
        assert answer.status_code == 200 and answer.text == "1"
        assert COOKIE in client.cookies
        yield client


@contextlib.contextmanager
def pessimistic_session(dynamodb_local: DynamoDBLocal, table: str, max_lock_wait_seconds: float
                        ) -> Iterator[tuple[Served, httpx.Client, str, str]]:
    """A new session under the pessimistic lock, served with ``max_lock_wait_seconds``:
    (the app served, the session's client, its cookie, its item's key)."""
    app = serve(dynamodb_local, table, locking="pessimistic",
                max_lock_wait_seconds=max_lock_wait_seconds)
    with UvicornThread(app) as server:
        served = Served(app, server)
        with new_session(served) as client:
            cookie = client.cookies[COOKIE]
            yield served, client, cookie, served.interface.store.item_key(cookie)


def test_untouched_request_makes_no_call_and_read_only_one_get_item(served: Served) -> None:
    with new_session(served) as client:
        served.reset()
        assert client.get("/").text == "ok"
        assert served.calls == {}
        answer = client.get("/ro")
        assert answer.text == "1" and "set-cookie" not in answer.headers
        assert "Cookie" in answer.headers["vary"]
        read_only = {"GetItem": 1} if served.interface.store.locking != "pessimistic" \
            else {"UpdateItem": 2}  # the lock taken, then given back
        assert served.calls == read_only


# Counters (increment) in every mode; a plain read-modify-write is serialized by the
# pessimistic lock only, so it runs in that mode alone.
@pytest.mark.parametrize(("served", "path"), [
    *[(locking, "/inc") for locking in checks.LOCKINGS], ("pessimistic", "/rw")],
    indirect=["served"])
def test_concurrent_requests_on_one_session_lose_no_update(served: Served, path: str) -> None:
    locking = served.interface.store.locking
    with new_session(served) as client:
        cookie = client.cookies[COOKIE]
        responses = asyncio.run(checks.concurrently(served.url, {COOKIE: cookie}, path))
        answers = [answer.text for answer in responses]
        assert [answer.status_code for answer in responses] == [200] * checks.CONCURRENT
        final = int(client.get("/ro").text)
    assert final == 1 + checks.CONCURRENT  # increments travel as deltas in every mode
    if locking == "pessimistic":
        assert sorted(map(int, answers)) == list(range(2, checks.CONCURRENT + 2))


def test_login_regenerates_the_id_and_logout_deletes_the_session(served: Served) -> None:
    with new_session(served) as client:
        old = client.cookies[COOKIE]
        assert client.get("/login").text == "1"
        new = client.cookies[COOKIE]
        assert new != old
        with served.client() as stale:
            stale.cookies.set(COOKIE, old)
            assert stale.get("/ro").text == "0"  # the old id is never served again
        assert client.get("/ro").text == "1"
        answer = client.get("/logout")
        assert answer.status_code == 200
        assert COOKIE not in client.cookies  # the cookie is expired
        with served.client() as after:
            after.cookies.set(COOKIE, new)
            assert after.get("/ro").text == "0"


def test_an_unknown_id_is_never_adopted(served: Served) -> None:
    with served.client() as client:
        answer = client.get("/rw", headers={"Cookie": f"{COOKIE}={'A' * 43}"})
        assert answer.text == "1"
        assert answer.cookies[COOKIE] != "A" * 43


def test_a_failed_view_stores_nothing_and_leaves_no_lock(served: Served) -> None:
    with new_session(served) as client:
        assert client.get("/fail").status_code == 500
        assert client.get("/rw").text == "2"  # served at once: no lock left behind


def test_a_client_that_goes_away_leaves_no_lock(dynamodb_local: DynamoDBLocal,
                                                quart_table: tuple[Any, str]) -> None:
    ddb, table = quart_table
    with pessimistic_session(dynamodb_local, table, 20) as (served, client, cookie, item_key):
        checks.go_away_while_holding(served.url, {COOKIE: cookie}, ddb, table, item_key)
        checks.wait_for(lambda: not checks.locked(ddb, table, item_key))
        assert client.get("/rw").text == "2"


def test_a_session_locked_past_the_wait_answers_503(dynamodb_local: DynamoDBLocal,
                                                    quart_table: tuple[Any, str]) -> None:
    ddb, table = quart_table
    with pessimistic_session(dynamodb_local, table, 0.2) as (served, client, cookie, item_key):

        async def read(other: httpx.AsyncClient) -> httpx.Response:
            return await other.get("/ro")

        answer = checks.go_away_while_holding(served.url, {COOKIE: cookie}, ddb, table,
                                              item_key, read)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert "no-store" in answer.headers["cache-control"]
        checks.wait_for(lambda: not checks.locked(ddb, table, item_key))
        assert client.get("/rw").text == "2"


def test_autoload_loads_before_the_view(dynamodb_local: DynamoDBLocal,
                                        quart_table: tuple[Any, str]) -> None:
    app = serve(dynamodb_local, quart_table[1], locking="optimistic", autoload=True)

    @app.get("/sync-read")
    async def sync_read() -> str:
        return str(quart.session.get("n", 0))  # no await: loaded before the view

    with UvicornThread(app) as server:
        served = Served(app, server)
        with new_session(served) as client:
            served.reset()
            assert client.get("/sync-read").text == "1"
            assert served.calls == {"GetItem": 1}
            served.reset()
            assert client.get("/").text == "ok"
            assert served.calls == {"GetItem": 1}  # autoload: paid by every request


def test_unknown_settings_are_rejected() -> None:
    app = quart.Quart(__name__)
    app.config["DYNAMO_SESSIONS_NO_SUCH_OPTION"] = 1
    from dynamo_sessions.quart import init_app

    with pytest.raises(ConfigError):
        init_app(app)


def test_a_websocket_saves_the_handshakes_session_when_it_closes(
        dynamodb_local: DynamoDBLocal, quart_table: tuple[Any, str]) -> None:
    app = serve(dynamodb_local, quart_table[1], locking="optimistic")

    async def scenario() -> list[str]:
        client = app.test_client()
        assert await (await client.get("/rw")).get_data(as_text=True) == "1"
        async with client.websocket("/ws") as socket:
            answers = []
            for _ in range(3):
                await socket.send("inc")
                answers.append(await socket.receive())
            await socket.send("done")
        await asyncio.sleep(0)
        answers.append(await (await client.get("/ro")).get_data(as_text=True))
        store: Any = app.session_interface.store
        store.metrics.reset()
        async with app.test_client().websocket("/ws") as fresh:  # no cookie: a new session
            await fresh.send("inc")
            answers.append(await fresh.receive())
            await fresh.send("done")
        await asyncio.sleep(0)
        answers.append(str(store.metrics.total_calls))  # never stored: no client has its id
        await store.aclose()
        return answers

    assert asyncio.run(scenario()) == ["2", "3", "4", "4", "1", "0"]


def test_the_readme_snippet(dynamodb_local: DynamoDBLocal,
                            quart_table: tuple[Any, str]) -> None:
    from quart import Quart, session

    from dynamo_sessions.quart import init_app

    app = Quart(__name__)
    app.config["DYNAMO_SESSIONS_TABLE_NAME"] = quart_table[1]  # README: "sessions"
    app.config["DYNAMO_SESSIONS_ENDPOINT_URL"] = dynamodb_local.endpoint_url  # (the test's)
    app.config["DYNAMO_SESSIONS_REGION_NAME"] = "us-east-1"
    init_app(app)

    @app.get("/visits")
    async def visits() -> str:
        await session.load()
        return str(session.increment("visits"))

    with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert [client.get("/visits").text for _ in range(3)] == ["1", "2", "3"]


def test_data_used_before_the_load_raises_session_not_loaded(
        dynamodb_local: DynamoDBLocal, quart_table: tuple[Any, str]) -> None:
    app = serve(dynamodb_local, quart_table[1], locking="optimistic")
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/no-await")
    async def no_await() -> str:
        return str(quart.session.get("n", 0))  # no 'await session.load()' first

    async def scenario() -> str:
        client = app.test_client()
        assert await (await client.get("/no-await")).get_data(as_text=True) == "0"  # no cookie
        await client.get("/rw")
        try:
            with pytest.raises(SessionNotLoaded, match=r"await session\.load\(\)"):
                await client.get("/no-await")
        finally:
            await app.session_interface.store.aclose()  # type: ignore[attr-defined]
        return "checked"

    assert asyncio.run(scenario()) == "checked"
