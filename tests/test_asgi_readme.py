"""The README's Starlette, FastAPI and Litestar snippets (``tests/readme_asgi``), each served by
uvicorn in its own process on DynamoDB Local: a cart, a login that keeps it under a new id,
and a logout that deletes it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dynamo_sessions import SessionConfig, create_store

from .asgi_support import UvicornProcess

pytestmark = pytest.mark.dynamodb_local


@pytest.mark.parametrize("example", ["starlette_example", "fastapi_example",
                                     "litestar_example"])
def test_the_readme_snippet_serves_sessions(example: str, dynamodb_local: Any,
                                            ddb_local_client: Any, local_table: str) -> None:
    env = {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local.endpoint_url,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local",
           "AWS_SECRET_ACCESS_KEY": "local", "SESSIONS_TABLE": local_table}
    reader = create_store(SessionConfig(table_name=local_table, client=ddb_local_client),
                          session_name="session")
    with UvicornProcess(f"tests.readme_asgi.{example}:app", env) as server, \
            httpx.Client(base_url=server.url, timeout=30.0) as client:
        client.post("/cart/tea")
        assert client.post("/cart/milk").json() == {"cart": ["tea", "milk"]}
        before = client.cookies["session"]
        assert client.post("/login", json={"user": "ada"}).json() == {"logins": 1}
        after = client.cookies["session"]
        assert after != before
        assert reader.load(after).data == {"cart": ["tea", "milk"], "user": "ada",
                                           "logins": 1}
        assert client.post("/logout").status_code == 200
        assert not reader.exists(after) and "session" not in client.cookies
