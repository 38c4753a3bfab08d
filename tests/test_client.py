"""The one client builder (``transport.client.build_client``, also ``dynamo_sessions.make_client``
and ``config.make_client``): every client carries its ``SessionConfig``'s timeouts, retries,
endpoint, region and profile; overrides reach botocore's ``Config`` or the client."""

from __future__ import annotations

from pathlib import Path

import pytest

import dynamo_sessions
from dynamo_sessions import SessionConfig
from dynamo_sessions.config import make_client
from dynamo_sessions.transport.client import build_client, is_loopback

LOCAL = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def test_the_public_names_are_the_one_builder() -> None:
    assert dynamo_sessions.make_client is build_client
    client = make_client(SessionConfig(endpoint_url="http://127.0.0.1:9",
                                       read_timeout_seconds=7.5), **LOCAL)
    assert client.meta.config.read_timeout == 7.5


def test_a_client_carries_the_configs_timeouts_and_retries() -> None:
    config = SessionConfig(endpoint_url="http://127.0.0.1:9", region_name="eu-west-1",
                           connect_timeout_seconds=1.25, read_timeout_seconds=3.5,
                           boto_retry_mode="adaptive", boto_max_attempts=7)
    client = build_client(config, **LOCAL)
    botocore_config = client.meta.config
    assert (botocore_config.connect_timeout, botocore_config.read_timeout) == (1.25, 3.5)
    assert botocore_config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert botocore_config.tcp_keepalive is True
    assert (client.meta.region_name, client.meta.endpoint_url) == ("eu-west-1",
                                                                   "http://127.0.0.1:9")


def test_overrides_reach_botocores_config_or_the_client() -> None:
    """``max_pool_connections`` is a botocore ``Config`` option: it once went to
    ``session.client`` and raised ``TypeError`` (the served demo's client)."""
    client = build_client(SessionConfig(endpoint_url="http://127.0.0.1:9"),
                          max_pool_connections=32, read_timeout=60, **LOCAL)
    assert client.meta.config.max_pool_connections == 32
    assert client.meta.config.read_timeout == 60
    assert client.meta.config.connect_timeout == SessionConfig().connect_timeout_seconds


def test_a_loopback_endpoint_needs_no_region(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    import boto3

    session = boto3.Session()
    client = build_client(SessionConfig(endpoint_url="http://localhost:8000"), session, **LOCAL)
    assert client.meta.region_name == "us-east-1"
    assert is_loopback("http://[::1]:8000") and is_loopback("http://127.0.0.2")
    assert not is_loopback("https://dynamodb.eu-west-1.amazonaws.com") and not is_loopback(None)


def test_a_profile_gives_the_region_and_credentials(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[profile sessions]\nregion = ap-south-1\n")
    (tmp_path / "credentials").write_text(
        "[sessions]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    client = build_client(SessionConfig(profile_name="sessions"))
    assert client.meta.region_name == "ap-south-1"
    assert client._request_signer._credentials.access_key == "AKIDPROFILE"


@pytest.mark.parametrize("name", ["endpoint_url", "region_name", "profile_name"])
def test_where_options_are_strings_or_none(name: str) -> None:
    with pytest.raises(dynamo_sessions.ConfigError, match=name):
        SessionConfig(**{name: ""})  # type: ignore[arg-type]
    with pytest.raises(dynamo_sessions.ConfigError, match=name):
        SessionConfig(**{name: 8000})  # type: ignore[arg-type]
