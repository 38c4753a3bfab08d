"""The Django session engine against moto's in-process backend: what Django's own tests
(``test_django_sessions_suite.py``) do not check - calls made, item lifetimes, the key rule's
edges, lock release and 503 in the middleware."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import django
import pytest
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
django.setup()

from django.contrib.sessions.backends.base import CreateError, UpdateError  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from dynamo_sessions import ConfigError  # noqa: E402
from dynamo_sessions.config import LOCKING_MODES as LOCKINGS  # noqa: E402
from dynamo_sessions.django import SessionStore, backend  # noqa: E402
from dynamo_sessions.store import new_session_id  # noqa: E402

from .conftest import make_table  # noqa: E402
from .django_async_support import saved_and_reopened  # noqa: E402
from .web_support import (  # noqa: E402
    CallCounter,
    assert_retired,
    count_stores_built,
    shared_moto_table,
    stored_item,
    unique_name,
)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Any, str]]:
    with shared_moto_table() as backend:
        yield backend


@pytest.fixture(params=LOCKINGS)
def locking(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(shared: tuple[Any, str], locking: str) -> Iterator[Any]:
    ddb, table_name = shared
    options = {"table_name": table_name, "client": ddb, "locking": locking,
               "max_lock_wait_seconds": 0.3, "session_name": unique_name()}
    with override_settings(DYNAMO_SESSIONS=options):
        yield ddb


def item_of(ddb: Any, key: str) -> dict[str, Any] | None:
    return stored_item(ddb, backend().store, key)


def test_new_session_is_empty_and_has_no_key(engine: Any) -> None:
    session = SessionStore()
    assert session.is_empty() and session.session_key is None
    assert dict(session.items()) == {}


def test_save_and_load(engine: Any) -> None:
    session = SessionStore()
    session["cat"] = "meow"
    session.save()
    key = session.session_key
    assert key is not None and len(key) == 43
    again = SessionStore(key)
    assert again["cat"] == "meow"
    assert again.exists(key)


def test_invalid_and_unknown_keys_are_never_adopted(engine: Any) -> None:
    counter = CallCounter(engine)
    for bad in ("", "short", "x" * 300, "é" * 43):
        session = SessionStore(bad)
        assert session.session_key is None
        assert session.load() == {}
    assert counter.total == 0
    unknown = new_session_id()
    session = SessionStore(unknown)
    session.load()
    assert session.session_key is None
    assert not session.exists(unknown) and not session.exists(None)
    session["a"] = 1
    session.save()
    assert session.session_key not in (None, unknown)
    assert item_of(engine, unknown) is None


def test_cycle_key_keeps_the_data_under_a_new_key_and_retires_the_old(engine: Any) -> None:
    session = SessionStore()
    session["user"] = "ada"
    session.save()
    old = session.session_key
    session = SessionStore(old)
    session.load()
    session.cycle_key()
    session.save()
    session.release_lock()
    new = session.session_key
    assert new != old and new is not None
    assert_retired(engine, backend().store, old or "")
    assert SessionStore(new)["user"] == "ada"


def test_flush_deletes_the_item_and_the_key(engine: Any) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    key = session.session_key
    session.flush()
    assert session.session_key is None and dict(session.items()) == {}
    assert item_of(engine, key or "") is None


def test_save_must_create_on_a_taken_key_raises_create_error(engine: Any) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    clash = SessionStore()
    clash._session_key = session.session_key
    clash["b"] = 2
    with pytest.raises(CreateError):
        clash.save(must_create=True)
    clash.release_lock()
    assert SessionStore(session.session_key)["a"] == 1


def test_save_after_another_request_deleted_a_loaded_session(engine: Any) -> None:
    s1 = SessionStore()
    s1["data"] = 1
    s1.save()
    reader = SessionStore(s1.session_key)
    assert reader["data"] == 1
    SessionStore(s1.session_key).delete()
    reader["data"] = 2
    with pytest.raises(UpdateError):
        reader.save()  # every mode, "none" included: a logout is not undone
    assert item_of(engine, s1.session_key or "") is None


def test_emptied_session_keeps_its_key_and_item(engine: Any) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    key = session.session_key
    again = SessionStore(key)
    del again["a"]
    again.save()
    again.release_lock()
    assert again.session_key == key and item_of(engine, key or "") is not None
    stored = SessionStore(key)
    assert stored.load() == {} and stored.session_key == key  # still a known key
    stored.release_lock()
    stored.flush()
    assert item_of(engine, key or "") is None  # only delete()/flush() removes it


@pytest.mark.parametrize("key", [
    "12345678",                              # Django's shortest
    "abcdefghijklmnopqrstuvwxyz012345",      # Django's database backend (32 of [a-z0-9])
    "A-b_c.d~e:f" * 23 + "xyz",              # 256 cookie-safe characters, the longest
], ids=["8-chars", "django-db-key", "256-chars"])
@pytest.mark.parametrize("hashed", [True, False], ids=["hashed-at-rest", "raw-at-rest"])
def test_keys_django_accepts_are_accepted_and_a_known_one_is_used(engine: Any, key: str,
                                                                  hashed: bool) -> None:
    options = {**settings.DYNAMO_SESSIONS, "hash_session_ids": hashed}
    with override_settings(DYNAMO_SESSIONS=options):
        assert backend().store.item_key(key).endswith(key) is not hashed
        fresh = SessionStore(key)
        assert fresh.session_key == key
        assert fresh.load() == {} and fresh.session_key is None  # unknown: never adopted
        fresh.release_lock()
        backend().store.create(key, {"user": "ada"})  # e.g. migrated from the database backend
        known = SessionStore(key)
        assert known["user"] == "ada" and known.session_key == key
        known["visits"] = 1
        known.save()
        assert SessionStore(key).get("visits") == 1
        SessionStore(key).delete()
        assert item_of(engine, key) is None


@pytest.mark.parametrize("key", [
    "1234567",                               # Django: under 8 characters
    "x" * 257,                               # over the store's and the cookie parser's limit
    "abc,defghij",                           # not a cookie-octet (PHP's ids may have it)
    "abc defghij", 'abc"defghij', "abc;defghij", "abc\\defghij", "abc/defghij",
    "abcdéfghij",
], ids=["7-chars", "257-chars", "comma", "space", "dquote", "semicolon", "backslash", "slash",
        "non-ascii"])
def test_keys_outside_what_a_cookie_and_the_store_carry_are_rejected(engine: Any,
                                                                     key: str) -> None:
    counter = CallCounter(engine)
    session = SessionStore(key)
    assert session.session_key is None and session.load() == {}
    assert not session.exists(key)
    assert counter.total == 0


def test_set_expiry_sets_the_item_lifetime_and_expires(engine: Any) -> None:
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(120)
    session.save()
    item = item_of(engine, session.session_key or "")
    assert item is not None
    assert 100 < int(item["expires"]["N"]) - backend().store.clock() <= 120
    session.set_expiry(timedelta(days=30))
    session.save()
    session.release_lock()
    item = item_of(engine, session.session_key or "")
    assert item is not None
    assert int(item["expires"]["N"]) - backend().store.clock() > 29 * 86400
    assert SessionStore(session.session_key).get_expiry_age() > 29 * 86400


def test_set_expiry_60_is_written_by_the_one_store(engine: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """set_expiry(60) gives the item 60 s, on create and on every later save, through the
    backend's one store: no store is built per lifetime."""
    store = backend().store
    built = count_stores_built(monkeypatch)
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(60)
    session.save()
    key = session.session_key or ""
    item = item_of(engine, key)
    assert item is not None and 50 < int(item["expires"]["N"]) - store.clock() <= 60
    again = SessionStore(key)
    again["a"] = 2
    again.save()
    again.release_lock()
    item = item_of(engine, key)
    assert item is not None and 50 < int(item["expires"]["N"]) - store.clock() <= 60
    assert built == [] and backend().store is store
    assert store.metrics.operations.get("create") == 1


def test_default_lifetime_is_session_cookie_age(engine: Any) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    item = item_of(engine, session.session_key or "")
    assert item is not None
    remaining = int(item["expires"]["N"]) - backend().store.clock()
    assert settings.SESSION_COOKIE_AGE - 60 < remaining <= settings.SESSION_COOKIE_AGE


def expired_and_live(ddb: Any) -> tuple[str, str]:
    """Two saved sessions: one whose item expired an hour ago (TTL has not come by), one live."""
    keys = []
    for value in ("gone", "kept"):
        session = SessionStore()
        session["a"] = value
        session.save()
        session.release_lock()
        assert session.session_key is not None
        keys.append(session.session_key)
    store = backend().store
    ddb.update_item(TableName=store.config.table_name, Key={"id": {"S": store.item_key(keys[0])}},
                    UpdateExpression="SET expires = :e",
                    ExpressionAttributeValues={":e": {"N": str(int(store.clock()) - 3600)}})
    return keys[0], keys[1]


def assert_cleared(ddb: Any, expired: str, live: str) -> None:
    assert item_of(ddb, expired) is None  # deleted from the table, not only unreadable
    live_item = item_of(ddb, live)
    assert live_item is not None
    assert SessionStore(live)["a"] == "kept"


def test_clear_expired_deletes_the_expired_and_keeps_the_live(engine: Any) -> None:
    expired, live = expired_and_live(engine)
    SessionStore.clear_expired()
    assert_cleared(engine, expired, live)


def test_async_variants(engine: Any) -> None:
    async def scenario() -> None:
        session, other = await saved_and_reopened(SessionStore)
        key = session.session_key
        other.release_lock()
        assert await session.aincrement("x", 2) == 3
        await session.asave()
        await session.acycle_key()
        assert not await session.aexists(key)
        await session.aflush()
        assert session.session_key is None
        expired, live = expired_and_live(engine)
        await SessionStore.aclear_expired()
        assert_cleared(engine, expired, live)

    asyncio.run(scenario())


# --- through the middleware -------------------------------------------------------------------


def test_middleware_untouched_makes_no_call(engine: Any) -> None:
    client = Client()
    client.get("/incr")
    counter = CallCounter(engine)
    response = client.get("/untouched")
    assert counter.total == 0 and "sessionid" not in response.cookies


def test_middleware_login_logout_and_secure_cookie(engine: Any) -> None:
    client = Client()
    assert client.get("/incr").content == b"1"
    old = client.cookies["sessionid"].value
    response = client.get("/login", secure=True)
    new = response.cookies["sessionid"].value
    assert new != old and response.cookies["sessionid"]["secure"] is True
    assert_retired(engine, backend().store, old)
    assert client.get("/get").content == b"{'n': 1, 'user': 'ada'}"
    client.get("/logout")
    assert item_of(engine, new) is None


@pytest.mark.parametrize("locking", ["pessimistic"])
def test_middleware_releases_a_read_only_lock_and_answers_503(engine: Any) -> None:
    client = Client()
    client.get("/incr")
    key = client.cookies["sessionid"].value
    assert client.get("/get").content == b"{'n': 1}"
    item = item_of(engine, key)
    assert item is not None and "lock" not in item  # released though nothing was saved
    other_tab = backend().store.load(key)
    response = client.get("/incr")
    assert response.status_code == 503 and response["Retry-After"] == "1"
    backend().store.release(other_tab)
    assert client.get("/get").content == b"{'n': 1}"


@pytest.mark.dynamodb_local
@pytest.mark.parametrize("expiry", [60, 86400])
def test_a_read_only_request_keeps_a_set_expiry(ddb_local_client: Any, expiry: int) -> None:
    """Pessimistic, on DynamoDB Local: a session given ``set_expiry`` (shorter or longer than
    the store's 1440 s) and then only read by a request keeps the expiry it was saved with -
    the middleware's release of the read-only lock gives the lock take's expiry back."""
    table = f"django-{unique_name()}"
    make_table(ddb_local_client, table)
    options = {"table_name": table, "client": ddb_local_client, "locking": "pessimistic",
               "session_lifetime_seconds": 1440, "session_name": unique_name()}
    with override_settings(DYNAMO_SESSIONS=options):
        session = SessionStore()
        session["n"] = 1
        session.set_expiry(expiry)
        session.save()
        key = session.session_key or ""
        item = item_of(ddb_local_client, key)
        assert item is not None
        created = int(item["expires"]["N"])
        assert expiry - 60 < created - backend().store.clock() <= expiry
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        assert client.get("/get").content == b"{'n': 1, '_session_expiry': %d}" % expiry
        item = item_of(ddb_local_client, key)
        assert item is not None and "lock" not in item
        assert int(item["expires"]["N"]) == created


@pytest.mark.parametrize(("hashed", "name_chars", "refused"),
                         [(False, 1791, False), (False, 1792, True), (True, 1984, True)])
def test_session_name_must_leave_room_for_the_id_in_a_dynamodb_key(
        shared: tuple[Any, str], hashed: bool, name_chars: int, refused: bool) -> None:
    ddb, table_name = shared
    options = {"table_name": table_name, "client": ddb, "hash_session_ids": hashed,
               "session_name": "s" * name_chars}
    with override_settings(DYNAMO_SESSIONS=options):
        if refused:
            with pytest.raises(ConfigError, match="session_name is too long"):
                SessionStore()
        else:
            SessionStore()
