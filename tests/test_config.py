"""SessionConfig: every PHP option is accepted under its guide name and value; bad ones are not.

How each option changes behaviour is shown against a server in ``test_handler_moto.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dynamo_sessions import ConfigError, SessionConfig
from dynamo_sessions.config import make_client
from dynamo_sessions.web import WebOptions

# The guide's "example with all of the configuration options specified", verbatim.
GUIDE_EXAMPLE: dict[str, Any] = {
    "table_name": "sessions",
    "hash_key": "id",
    "session_lifetime": 3600,
    "consistent_read": True,
    "locking_strategy": None,
    "automatic_gc": 0,
    "gc_batch_size": 50,
    "max_lock_wait_time": 15,
    "min_lock_retry_microtime": 5000,
    "max_lock_retry_microtime": 50000,
}


def test_defaults_are_the_php_handlers() -> None:
    config = SessionConfig()
    assert (config.table_name, config.hash_key, config.session_lifetime_seconds) == (
        "sessions", "id", 1440)
    assert config.consistent_read is True
    assert config.locking == "none"
    assert config.automatic_gc is False
    assert (config.gc_batch_size, config.gc_operation_delay_seconds) == (25, 0)
    assert config.max_lock_wait_seconds == 10
    assert (config.min_lock_retry_microseconds, config.max_lock_retry_microseconds) == (
        10_000, 50_000)


# Every option's default, as README.md ("Ours on top") and the docstrings in config.py /
# web.py state it.  Each one is a promise (the lease must be shorter than a lock wait, the
# refresh fraction decides how many reads cost a write): a changed default fails here first.
DOCUMENTED_DEFAULTS: dict[str, Any] = {
    "table_name": "sessions", "hash_key": "id", "session_lifetime_seconds": 1440,
    "consistent_read": True, "locking": "none", "automatic_gc": False, "gc_probability": 1,
    "gc_divisor": 100, "gc_batch_size": 25, "gc_operation_delay_seconds": 0.0,
    "gc_mode": "conditional", "gc_segments": 1, "max_lock_wait_seconds": 10.0,
    "min_lock_retry_microseconds": 10_000, "max_lock_retry_microseconds": 50_000,
    "lock_retry_mode": "exponential", "lock_lease_seconds": 7.0,
    "max_lock_hold_seconds": 120.0, "clock_skew_warning_seconds": 2.0,
    "expiry_refresh_fraction": 0.5, "delete_expired_on_read": True, "max_write_retries": 64,
    "compress": True, "hash_session_ids": True, "boto_retry_mode": "standard",
    "boto_max_attempts": 5, "connect_timeout_seconds": 2.0, "read_timeout_seconds": 5.0,
    "endpoint_url": None, "region_name": None, "profile_name": None, "client": None,
    "on_operation": None,
}

DOCUMENTED_WEB_DEFAULTS: dict[str, Any] = {
    "cookie_name": "session", "cookie_domain": None, "cookie_path": "/",
    "cookie_httponly": True, "cookie_samesite": "Lax", "cookie_secure": "auto",
    "trust_forwarded_proto": False, "cookie_max_age_seconds": None, "strict": True,
    "id_pattern": r"[A-Za-z0-9_-]{43}", "lock_timeout_status": 503,
    "lock_timeout_body": "This session is busy with another request (another tab?). "
                         "Please retry in a moment.",
    "retry_after_seconds": 1, "environ_key": "dynamo_sessions.session",
}


def test_every_default_is_the_documented_one() -> None:
    """All options, not only the PHP ones: a new option must be added here with its value."""
    config = SessionConfig()
    assert {name: getattr(config, name) for name in SessionConfig.option_names()} == \
        DOCUMENTED_DEFAULTS
    for name, value in DOCUMENTED_DEFAULTS.items():  # 7 and 7.0 compare equal: pin the type
        assert type(getattr(config, name)) is type(value), name


def test_every_web_default_is_the_documented_one() -> None:
    options = WebOptions()
    names = [field.name for field in dataclasses.fields(WebOptions)]
    assert {name: getattr(options, name) for name in names} == DOCUMENTED_WEB_DEFAULTS


def test_guide_example_carries_over() -> None:
    config = SessionConfig.from_php_options(GUIDE_EXAMPLE)
    assert config.table_name == "sessions"
    assert config.hash_key == "id"
    assert config.session_lifetime_seconds == 3600
    assert config.consistent_read is True
    assert config.locking == "none"
    assert config.automatic_gc is False
    assert config.gc_batch_size == 25  # 50 is sent as BatchWriteItems of 25, as PHP does
    assert config.max_lock_wait_seconds == 15
    assert config.min_lock_retry_microseconds == 5000
    assert config.max_lock_retry_microseconds == 50000
    assert config.hash_session_ids is False  # PHP's raw <name>_<id> keys


@pytest.mark.parametrize(("value", "mode"), [
    (None, "none"), ("null", "none"), ("pessimistic", "pessimistic"),
    ("pessemistic", "pessimistic"), ("PESSEMISTIC", "pessimistic"), ("optimistic", "optimistic"),
])
def test_locking_strategy_values(value: Any, mode: str) -> None:
    assert SessionConfig.from_php_options({"locking_strategy": value}).locking == mode


def test_other_php_keys_and_ini_strings() -> None:
    client = object()
    config = SessionConfig.from_php_options({
        "gc_operation_delay": "0.5", "automatic_gc": "1", "consistent_read": 0,
        "session_lifetime": "60", "dynamodb_client": client,
    })
    assert config.gc_operation_delay_seconds == 0.5
    assert config.automatic_gc is True
    assert config.consistent_read is False
    assert config.session_lifetime_seconds == 60
    assert config.client is client


@pytest.mark.parametrize("options", [
    {"locking_strategy": "optimistc"},
    {"locking_strategy": 1},
    {"automatic_gc": 2},
    {"consistent_read": "yes"},
    {"session_lifetime": 0},
    {"session_lifetime": "an hour"},
    {"gc_batch_size": 0},
    {"max_lock_wait_time": -1},
    {"min_lock_retry_microtime": 60_000},  # above the default max of 50000
    {"table_name": ""},
    {"table_name": "ab"},
    {"hash_key": 5},
])
def test_php_out_of_range_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SessionConfig.from_php_options(options)


def test_unknown_php_option_rejected_with_the_guide_list() -> None:
    with pytest.raises(ConfigError, match="session_locking") as raised:
        SessionConfig.from_php_options({"session_locking": False})  # the blog's option
    assert "locking_strategy" in str(raised.value)


def test_unknown_option_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="did you mean 'max_lock_wait_seconds'"):
        SessionConfig.from_options({"max_lock_wait_second": 3})
    with pytest.raises(TypeError):
        SessionConfig(max_lock_wait_time=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(("name", "value"), [
    ("session_lifetime_seconds", 1.5), ("session_lifetime_seconds", True),
    ("consistent_read", 1), ("locking", "pessemistic"), ("gc_batch_size", 26),
    ("lock_lease_seconds", 0), ("expiry_refresh_fraction", 1.5), ("max_write_retries", -1),
    ("boto_retry_mode", "fast"), ("boto_max_attempts", 0), ("lock_retry_mode", "linear"),
    ("gc_mode", "scan"), ("read_timeout_seconds", 0), ("on_operation", "print"),
])
def test_python_options_validated(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        SessionConfig(**{name: value})


def test_replace_validates_and_keeps_the_client() -> None:
    from dynamo_sessions.testing.servers import local_client

    client = local_client("http://127.0.0.1:9")  # a real client (holds locks): shared, not copied
    config = SessionConfig(client=client).replace(locking="optimistic")
    assert config.locking == "optimistic" and config.client is client
    with pytest.raises(ConfigError):
        config.replace(locking="sometimes")
    with pytest.raises(ConfigError, match="did you mean 'locking'"):
        config.replace(lockin="optimistic")


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_client_made_from_config_has_the_retry_mode(mode: str) -> None:
    config = SessionConfig(boto_retry_mode=mode, boto_max_attempts=7, region_name="us-east-1",
                           connect_timeout_seconds=1.5, read_timeout_seconds=3.0,
                           endpoint_url="http://127.0.0.1:9")
    client = make_client(config, aws_access_key_id="x", aws_secret_access_key="y")
    assert client.meta.config.retries == {"mode": mode, "total_max_attempts": 7}
    assert client.meta.config.connect_timeout == 1.5
    assert client.meta.config.read_timeout == 3.0
    assert client.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_store_without_a_client_makes_one_with_the_retry_mode(mode: str) -> None:
    from dynamo_sessions import SessionHandler

    config = SessionConfig(boto_retry_mode=mode, boto_max_attempts=4, region_name="us-east-1",
                           endpoint_url="http://127.0.0.1:9")
    handler = SessionHandler(config)
    assert handler.client.meta.config.retries == {"mode": mode, "total_max_attempts": 4}
    assert handler.client.meta.endpoint_url == "http://127.0.0.1:9"
