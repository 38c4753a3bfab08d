"""What the ASGI middleware's tests share: a sessions table on DynamoDB Local behind a counting
proxy (``tests/faultproxy.py``: what reaches DynamoDB, by operation), and apps of
``tests/asgi_apps`` served by uvicorn (in a thread) on an asyncio store made from a config."""

from __future__ import annotations

import collections
import importlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.protocol.item import LOCK

from .asgi_support import UvicornThread

FRAMEWORKS = ["starlette_app", "fastapi_app", "litestar_app"]
MODES = ["none", "optimistic", "pessimistic"]
SESSION_NAME = "session"


class Served:
    """One app under uvicorn, its DynamoDB calls counted and its items readable."""

    def __init__(self, server: UvicornThread, proxy: Any, config: SessionConfig,
                 raw_client: Any) -> None:
        self.server = server
        self.url = server.url
        self.proxy = proxy
        self.config = config
        self.raw_client = raw_client
        self.reader = create_store(config.replace(locking="none", endpoint_url=None,
                                                  client=raw_client),
                                   session_name=SESSION_NAME)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def calls(self) -> collections.Counter[str]:
        """What reached DynamoDB so far, by operation."""
        return collections.Counter(self.proxy.seen)

    def item(self, session_id: str) -> dict[str, Any] | None:
        """The raw stored item of ``session_id`` (None: none)."""
        answer = self.raw_client.get_item(
            TableName=self.config.table_name, ConsistentRead=True,
            Key={self.config.hash_key: {"S": self.reader.item_key(session_id)}})
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def data(self, session_id: str) -> dict[str, Any]:
        """The stored session's data ({} for none)."""
        return self.reader.load(session_id).data

    def locked(self, session_id: str) -> bool:
        item = self.item(session_id)
        return item is not None and LOCK in item


@pytest.fixture
def serve(fault_proxy: Any, ddb_local_client: Any, local_table: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``serve(framework, locking="optimistic", **middleware_options) -> Served``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    servers: list[UvicornThread] = []

    def start(framework: str = "starlette_app", locking: str = "optimistic",
              config_options: dict[str, Any] | None = None, proxy_headers: bool = True,
              **options: Any) -> Served:
        module = importlib.import_module(f"tests.asgi_apps.{framework}")
        config = SessionConfig(table_name=local_table, endpoint_url=fault_proxy.endpoint_url,
                               region_name="us-east-1", locking=locking,
                               **(config_options or {}))
        server = UvicornThread(module.create_app(config=config, session_name=SESSION_NAME,
                                                 **options))
        server.server.config.proxy_headers = proxy_headers
        servers.append(server.start())
        return Served(server, fault_proxy, config, ddb_local_client)

    yield start
    for server in servers:
        server.stop()


def cookie_of(response: httpx.Response, name: str = "session") -> str:
    """The session id a response's ``Set-Cookie`` gives."""
    value = response.cookies.get(name)
    assert value, f"no {name} cookie in {response.headers.get_list('set-cookie')}"
    return value
