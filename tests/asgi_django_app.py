"""A small Django app served over ASGI (``tests.asgi_django_app:application``, for uvicorn):
async views on ``request.session``, through the session engine named by the environment.

Meant to be loaded by the server (``tests/asgi_support.py``'s ``UvicornProcess``): importing it
makes it the process's Django settings.  Environment (read once, at import):

* ``ASGI_APP_ENDPOINT_URL`` - DynamoDB's endpoint (DynamoDB Local, or a proxy before it);
* ``ASGI_APP_TABLE`` - the sessions table (it must exist);
* ``ASGI_APP_LOCKING`` - the locking mode (default ``optimistic``, the engine's default);
* ``ASGI_APP_POOL`` - the client's connection pool (default 64: as many connections as a
  benchmark's concurrent clients, so neither side pays for connections it cannot keep);
* ``ASGI_APP_SESSION_ENGINE`` / ``ASGI_APP_MIDDLEWARE`` - the engine and its middleware
  (default ``dynamo_sessions.django``; ``tests.django_threadpool_engine`` is the async path as
  it was before the native one: the sync store on a thread pool);
* ``ASGI_APP_ASYNC`` - ``native`` (default): the engine is given its endpoint, region and
  (dummy) credentials, so its async methods run on the event loop through the async store;
  ``thread``: it is given a boto3 client (``ASGI_APP_POOL`` connections), which its async
  methods run on a worker thread.

Views: ``/`` never touches the session; ``/rw`` reads the counter ``n`` and writes it back
plus one; ``/ro`` only reads it (both answer the counter as text); ``/inc`` adds one with
``aincrement``; ``/cycle`` and ``/flush`` call ``acycle_key`` / ``aflush``; ``/hold`` reads
the session, then waits for a minute (a client that gives up before its answer); ``/calls``
answers the DynamoDB calls the engine's stores made so far, by API, as JSON, and then forgets
them (the tests' call counts).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from dynamo_sessions.testing.servers import local_client

from .django_async_support import read_only, read_write, untouched

# This module is the app's settings, whatever the parent (a test run whose other modules set
# their own settings module) left in the environment the server inherited.
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.asgi_django_app"

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True
ROOT_URLCONF = "tests.asgi_django_app"
SESSION_ENGINE = os.environ.get("ASGI_APP_SESSION_ENGINE", "dynamo_sessions.django")
MIDDLEWARE = [os.environ.get("ASGI_APP_MIDDLEWARE", "dynamo_sessions.django.SessionMiddleware")]
DYNAMO_SESSIONS: dict[str, Any] = {
    "table_name": os.environ.get("ASGI_APP_TABLE", "sessions"),
    "locking": os.environ.get("ASGI_APP_LOCKING", "optimistic"),
}
if os.environ.get("ASGI_APP_ASYNC", "native") == "native":
    DYNAMO_SESSIONS.update(endpoint_url=os.environ.get("ASGI_APP_ENDPOINT_URL"),
                           region_name="us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")  # DynamoDB Local takes any
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
else:
    DYNAMO_SESSIONS["client"] = local_client(
        os.environ.get("ASGI_APP_ENDPOINT_URL") or None,
        max_pool_connections=int(os.environ.get("ASGI_APP_POOL", "64")))


async def increment(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(await request.session.aincrement("n")))


async def cycle(request: HttpRequest) -> HttpResponse:
    await request.session.acycle_key()
    return HttpResponse(str(await request.session.aget("n", 0)))


async def flush(request: HttpRequest) -> HttpResponse:
    await request.session.aflush()
    return HttpResponse("flushed")


async def hold(request: HttpRequest) -> HttpResponse:
    await request.session.aget("n", 0)
    await asyncio.sleep(60)
    return HttpResponse("held")


async def calls(request: HttpRequest) -> JsonResponse:
    from dynamo_sessions.django import backend

    made: dict[str, int] = {}
    for store in (backend().store, backend().async_store):
        if store is not None:
            for api, count in store.metrics.calls.items():
                made[api] = made.get(api, 0) + count
            store.metrics.reset()
    return JsonResponse(made)


urlpatterns = [path("", untouched), path("rw", read_write), path("ro", read_only),
               path("inc", increment), path("cycle", cycle), path("flush", flush),
               path("hold", hold), path("calls", calls)]


def _no_database_signals() -> None:
    """This app has no database: disconnect ``django.db``'s per-request receivers.

    They are sync functions (``reset_queries``, ``close_old_connections``), so under ASGI
    Django runs them through ``sync_to_async`` at the start and the end of every request - two
    hops to a thread made for the request - whatever the session engine; without a database
    they do nothing.  (Set ``ASGI_APP_DB_SIGNALS=1`` to keep them.)
    """
    from django.core import signals
    from django.db import close_old_connections, reset_queries

    signals.request_started.disconnect(reset_queries)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)


def __getattr__(name: str) -> Any:
    """``application``, made on first use (after this module, the settings, is loaded)."""
    if name == "application":
        from django.core.asgi import get_asgi_application

        global application
        application = get_asgi_application()
        if os.environ.get("ASGI_APP_DB_SIGNALS", "") in ("", "0"):
            _no_database_signals()
        return application
    raise AttributeError(name)
