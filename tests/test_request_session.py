"""One per-request session object serves every adapter, and none of them tests the locking
mode (what a mode needs is the store's to say)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from dynamo_sessions import SessionConfig, SessionHandler, new_session_id
from dynamo_sessions.request import RequestSession

from .conftest import make_table

SOURCES = Path(__file__).parent.parent / "src" / "dynamo_sessions"
ADAPTERS = ["request.py", "web.py", "wsgi.py", "flask.py", "django.py", "handler.py"]


@pytest.mark.parametrize("module", ADAPTERS)
def test_no_adapter_branches_on_the_locking_mode(module: str) -> None:
    tree = ast.parse((SOURCES / module).read_text())
    uses = [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "locking"]
    assert uses == [], f"{module} reads .locking at lines {uses}"


def test_wsgi_and_flask_use_the_one_session_object(moto_client: Any) -> None:
    from dynamo_sessions import create_store
    from dynamo_sessions.flask import DynamoSession
    from dynamo_sessions.web import LazySession
    from dynamo_sessions.wsgi import SessionMiddleware

    assert LazySession is RequestSession and issubclass(DynamoSession, RequestSession)
    store = create_store(SessionConfig(table_name="unused"), moto_client)
    middleware = SessionMiddleware(lambda environ, start: [], store)
    assert type(middleware.session_for({})) is RequestSession


@pytest.mark.parametrize("mode", ["none", "optimistic", "pessimistic"])
def test_the_handler_keeps_one_request_session_per_open_session(moto_client: Any,
                                                                table_name: str,
                                                                mode: str) -> None:
    make_table(moto_client, table_name)
    handler = SessionHandler(SessionConfig(table_name=table_name, locking=mode), moto_client)
    handler.open("", "S")
    first, second = new_session_id(), new_session_id()
    handler.read(first)
    handler.read(second)
    open_now = handler._open_sessions()
    assert set(open_now) == {first, second}
    assert all(isinstance(session, RequestSession) for session in open_now.values())
    handler.write(first, {"a": 1})
    assert set(handler._open_sessions()) == {second}
    handler.close()
    assert handler._open_sessions() == {}
