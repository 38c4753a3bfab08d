"""A session deleted by one request (logout) stays deleted when another request that read it
earlier saves its stale copy afterwards - in every locking mode, on DynamoDB Local."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ReadTimeoutError
from werkzeug.test import Client, create_environ, run_wsgi_app

from dynamo_sessions.errors import LockLost, SessionGone
from dynamo_sessions.store import new_session_id
from dynamo_sessions.web import ENVIRON_KEY
from dynamo_sessions.wsgi import SessionMiddleware

from .conftest import make_table
from .web_support import CallCounter, make_store, stored_item, unique_name

pytestmark = pytest.mark.dynamodb_local


@pytest.fixture
def table(ddb_local_client: Any, table_name: str) -> Iterator[str]:
    make_table(ddb_local_client, table_name)
    yield table_name
    ddb_local_client.delete_table(TableName=table_name)


@pytest.mark.parametrize("locking", ["none", "optimistic", "pessimistic"])
def test_store_save_of_a_stale_copy_does_not_resurrect(ddb_local_client: Any, table: str,
                                                       locking: str) -> None:
    store = make_store(ddb_local_client, table, locking, session_name=unique_name())
    sid = new_session_id()
    store.create(sid, {"user": "ada"})
    stale = store.load(sid)          # request A reads the session
    store.delete(sid)                # request B logs out
    counter = CallCounter(ddb_local_client)
    with pytest.raises(LockLost if locking == "pessimistic" else SessionGone):
        store.save(stale, {"user": "ada", "n": 1})   # request A saves its copy
    assert stored_item(ddb_local_client, store, sid) is None
    assert not store.load(sid).existed
    if locking == "none":
        assert counter.calls["UpdateItem"] == 1      # the refused write; nothing else
        assert store.metrics.failed_writes == 1 and store.metrics.failed_write_units == 1.0


@pytest.mark.parametrize("locking", ["none", "optimistic"])
def test_wsgi_logout_in_another_request_is_not_undone(ddb_local_client: Any, table: str,
                                                      locking: str) -> None:
    """Request A reads, request B logs out while A runs, A then changes its copy."""
    store = make_store(ddb_local_client, table, locking, session_name=unique_name())

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = environ[ENVIRON_KEY]
        path = environ["PATH_INFO"]
        if path == "/login":
            session["user"] = "ada"
        elif path == "/logout":
            session.destroy()
        elif path == "/slow":
            assert session["user"] == "ada"
            cookie = environ["HTTP_COOKIE"]
            run_wsgi_app(middleware, create_environ("/logout", headers={"Cookie": cookie}))
            session["visits"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(dict(session)).encode()]

    middleware = SessionMiddleware(app, store)
    client = Client(middleware)
    client.get("/login")
    cookie = client.get_cookie("session")
    assert cookie is not None
    sid = cookie.value
    response = client.get("/slow")
    assert stored_item(ddb_local_client, store, sid) is None
    assert "Max-Age=0" in response.headers["Set-Cookie"]    # the client forgets the id too
    assert client.get_cookie("session") is None


def test_a_retried_none_write_that_was_applied_still_succeeds(ddb_local_client: Any,
                                                              table: str) -> None:
    """The conditional write is applied but its answer is lost; botocore retries it and the
    condition (the item exists) still holds: a success, not a false SessionGone."""
    store = make_store(ddb_local_client, table, "none", session_name=unique_name())
    sid = new_session_id()
    store.create(sid, {"n": 1})
    session = store.load(sid)
    forwarded: list[int] = []

    def apply_then_lose_the_answer(request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if not forwarded and target.endswith(b".UpdateItem"):
            headers = {k: v for k, v in request.headers.items()}
            forwarded.append(requests.post(request.url, data=request.body, headers=headers,
                                           timeout=10).status_code)
            raise ReadTimeoutError(endpoint_url=request.url)

    ddb_local_client.meta.events.register("before-send.dynamodb", apply_then_lose_the_answer)
    store.save(session, {"n": 2})
    assert forwarded == [200]                  # the first attempt was applied
    assert store.load(sid).data == {"n": 2}
