"""A save that keeps losing races (``SessionConflict``) is answered like a lock timeout.

Optimistic writes retry a bounded number of times; when every attempt loses (here:
``max_write_retries=0`` and another request writes the session while the view runs), nothing
is written.  The adapters then answer ``503`` with ``Retry-After`` - never a 500, and never the
view's own answer, which would claim a change that is not stored.  One request at a time on
moto in-process: the rival write happens inside the view, so no concurrency is involved.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from werkzeug.test import Client

from dynamo_sessions import SessionBusy, SessionConflict
from dynamo_sessions.flask import DynamoSessionInterface
from dynamo_sessions.store import SessionStore
from dynamo_sessions.web import ENVIRON_KEY, read_cookie
from dynamo_sessions.wsgi import SessionMiddleware

from .conftest import make_table
from .web_support import make_store, stored_item, unique_name

RIVAL = {"n": 100, "rival": True}


@pytest.fixture
def store(moto_client: Any, table_name: str) -> SessionStore:
    make_table(moto_client, table_name)
    return make_store(moto_client, table_name, "optimistic", session_name=unique_name(),
                      max_write_retries=0)


def rival_writes(store: SessionStore, session_id: str) -> None:
    """Another request saves the session between this request's read and its save."""
    other = store.load(session_id)
    store.save(other, RIVAL)


def stored_data(store: SessionStore, session_id: str) -> Any:
    item = stored_item(store.client, store, session_id)
    assert item is not None
    return store.load(session_id).data


def test_both_errors_are_session_busy() -> None:
    assert issubclass(SessionConflict, SessionBusy)


def test_wsgi_answers_503_and_stores_nothing(store: SessionStore) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = environ[ENVIRON_KEY]
        session["n"] = session.get("n", 0) + 1
        if environ["PATH_INFO"] == "/race":
            rival_writes(store, session.id)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"counted"]

    client = Client(SessionMiddleware(app, store, retry_after_seconds=4))
    first = client.get("/")
    sid = read_cookie(first.headers["Set-Cookie"].split(";")[0], "session")
    assert sid is not None
    response = client.get("/race")
    assert response.status_code == 503 and response.headers["Retry-After"] == "4"
    assert response.text != "counted" and "Set-Cookie" not in response.headers
    assert stored_data(store, sid) == RIVAL


def test_flask_answers_503_and_stores_nothing(store: SessionStore) -> None:
    app = flask.Flask(__name__)
    app.session_interface = DynamoSessionInterface(store, retry_after_seconds=4)

    @app.get("/")
    def count() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return "counted"

    @app.get("/race")
    def race() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        rival_writes(store, flask.session.id)  # type: ignore[attr-defined]
        return "counted"

    client = app.test_client()
    client.get("/")
    cookie = client.get_cookie("session")
    assert cookie is not None
    response = client.get("/race")
    assert response.status_code == 503 and response.headers["Retry-After"] == "4"
    assert response.text != "counted" and "Set-Cookie" not in response.headers
    assert stored_data(store, cookie.value) == RIVAL


# --- Django -----------------------------------------------------------------------------------

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")


def _django_race_view(request: Any) -> Any:
    from django.http import HttpResponse

    from dynamo_sessions.django import backend

    request.session["n"] = request.session.get("n", 0) + 1
    rival_writes(backend().store, request.session.session_key)
    return HttpResponse("counted")


def _django_count_view(request: Any) -> Any:
    from django.http import HttpResponse

    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse("counted")


urlpatterns: list[Any] = []


@pytest.fixture
def django_store(moto_client: Any, table_name: str) -> Iterator[SessionStore]:
    import django
    from django.test import override_settings
    from django.urls import path

    django.setup()
    from dynamo_sessions.django import backend

    make_table(moto_client, table_name)
    urlpatterns[:] = [path("count", _django_count_view), path("race", _django_race_view)]
    options = {"table_name": table_name, "client": moto_client, "locking": "optimistic",
               "max_write_retries": 0, "retry_after_seconds": 4,
               "session_name": unique_name()}
    with override_settings(DYNAMO_SESSIONS=options, ROOT_URLCONF=__name__):
        yield backend().store


def test_django_answers_503_and_stores_nothing(django_store: SessionStore) -> None:
    from django.test import Client as DjangoClient

    client = DjangoClient()
    client.get("/count")
    key = client.cookies["sessionid"].value
    response = client.get("/race")
    assert response.status_code == 503 and response["Retry-After"] == "4"
    assert response.content != b"counted"
    assert stored_data(django_store, key) == RIVAL
