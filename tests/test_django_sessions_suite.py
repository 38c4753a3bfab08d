"""Django's own session tests against ``SESSION_ENGINE = "dynamo_sessions.django"``.

The tests are Django 5.2's ``SessionTestsMixin`` and ``SessionMiddlewareTests``, vendored in
``tests/vendor/django_sessions_tests`` (license and every adaptation listed there).  Each runs in
all three locking modes on DynamoDB Local; the middleware tests run once with Django's
``SessionMiddleware`` (what ``SESSION_ENGINE`` alone gives) and once with ours.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
django.setup()

from django.test import SimpleTestCase, override_settings  # noqa: E402

from dynamo_sessions import django as engine  # noqa: E402
from dynamo_sessions.testing.servers import DynamoDBLocal, local_client  # noqa: E402

from .conftest import make_table  # noqa: E402
from .vendor.django_sessions_tests import tests as django_tests  # noqa: E402
from .web_support import unique_name  # noqa: E402

pytestmark = pytest.mark.dynamodb_local


@pytest.fixture(scope="module")
def django_table(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[Any, str]]:
    client = local_client(dynamodb_local.endpoint_url)
    name = f"django-{uuid.uuid4().hex[:12]}"
    make_table(client, name)
    yield client, name
    client.delete_table(TableName=name)


@pytest.fixture(scope="class", autouse=True)
def dynamo_engine(request: pytest.FixtureRequest, dynamodb_local: DynamoDBLocal,
                  django_table: tuple[Any, str]) -> Iterator[None]:
    """The engine on DynamoDB Local in the class's locking mode (its own key prefix): given
    a boto3 client (its async methods on a thread), or - ``native`` classes - the endpoint
    (its async methods on the event loop, through the async store)."""
    client, table = django_table
    options = {"table_name": table, "client": client, "locking": request.cls.locking,
               "session_name": unique_name()}
    credentials = {}
    if getattr(request.cls, "native", False):
        del options["client"]
        options.update(endpoint_url=dynamodb_local.endpoint_url, region_name="us-east-1")
        credentials = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    with override_settings(DYNAMO_SESSIONS=options), mock.patch.dict(os.environ, credentials):
        yield


class OurMiddleware:
    """Runs Django's middleware tests with ``dynamo_sessions.django.SessionMiddleware``."""

    def setUp(self) -> None:
        patcher = mock.patch.object(django_tests, "SessionMiddleware", engine.SessionMiddleware)
        patcher.start()
        self.addCleanup(patcher.stop)  # type: ignore[attr-defined]
        super().setUp()  # type: ignore[misc]


class EngineSessionTests(django_tests.SessionTestsMixin):
    """Django's store tests on ``dynamo_sessions.django.SessionStore`` (each subclass names its
    locking mode, and ``native`` for the async methods on the event loop)."""

    backend = engine.SessionStore


class TestSessionStoreNone(EngineSessionTests, SimpleTestCase):
    locking = "none"


class TestSessionStoreOptimistic(EngineSessionTests, SimpleTestCase):
    locking = "optimistic"


class TestSessionStorePessimistic(EngineSessionTests, SimpleTestCase):
    locking = "pessimistic"


class TestSessionStoreNoneNative(EngineSessionTests, SimpleTestCase):
    locking = "none"
    native = True


class TestSessionStoreOptimisticNative(EngineSessionTests, SimpleTestCase):
    locking = "optimistic"
    native = True


class TestSessionStorePessimisticNative(EngineSessionTests, SimpleTestCase):
    locking = "pessimistic"
    native = True


class TestDjangoMiddlewareNone(django_tests.SessionMiddlewareTests):
    locking = "none"


class TestDjangoMiddlewareOptimistic(django_tests.SessionMiddlewareTests):
    locking = "optimistic"


class TestDjangoMiddlewarePessimistic(django_tests.SessionMiddlewareTests):
    locking = "pessimistic"


class TestOurMiddlewareNone(OurMiddleware, django_tests.SessionMiddlewareTests):
    locking = "none"


class TestOurMiddlewareOptimistic(OurMiddleware, django_tests.SessionMiddlewareTests):
    locking = "optimistic"


class TestOurMiddlewarePessimistic(OurMiddleware, django_tests.SessionMiddlewareTests):
    locking = "pessimistic"
