"""The one place a boto3 DynamoDB client is built: every client of the library comes from here.

The session store (so the handler and the web adapters), the command line, the demo and the
test servers' client helper call :func:`build_client`, so a client has the same timeouts, retry
mode and attempts wherever it is made - the ones of its ``SessionConfig``:

* ``connect_timeout_seconds``, ``read_timeout_seconds``: botocore's ``connect_timeout`` and
  ``read_timeout`` (a stalled call ends there, and botocore retries it);
* ``boto_retry_mode``, ``boto_max_attempts``: botocore's own retries (throttling, 5xx,
  timeouts) - ``total_max_attempts``, the first attempt included, as ``AWS_MAX_ATTEMPTS``;
* ``endpoint_url``, ``region_name``, ``profile_name``: where the calls go and with whose
  credentials (``profile_name`` is a profile of ``~/.aws/config``; without it, boto3's default
  credential chain).  Against a loopback endpoint (DynamoDB Local, moto) with no region
  configured anywhere, ``us-east-1`` is used: such servers accept any region.

``session`` is the boto3 ``Session`` to build on: by default boto3's default session (whose
service models and credentials are loaded once per process, as ``boto3.client`` does), or a
new one of ``profile_name``.  Keyword ``overrides`` are either options of botocore's
``Config`` (``max_pool_connections``, ``read_timeout``, ``retries``, ...), which replace the
configured ones, or arguments of ``session.client`` (``aws_access_key_id``, ``endpoint_url``,
``region_name``, ...).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..config import SessionConfig

LOOPBACK_REGION = "us-east-1"


def is_loopback(endpoint_url: str | None) -> bool:
    """The endpoint is on this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = urlsplit(endpoint_url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_options(config: SessionConfig) -> dict[str, Any]:
    """``config``'s timeouts and retries as options of botocore's ``Config`` (aiobotocore's
    ``AioConfig`` takes the same ones)."""
    return {
        "retries": {"mode": config.boto_retry_mode,
                    "total_max_attempts": config.boto_max_attempts},
        "connect_timeout": config.connect_timeout_seconds,
        "read_timeout": config.read_timeout_seconds,
        "tcp_keepalive": True,
    }


def botocore_config(config: SessionConfig, **overrides: Any) -> Any:
    """The botocore ``Config`` of ``config``'s timeouts and retries, ``overrides`` applied."""
    from botocore.config import Config

    options = config_options(config)
    options.update(overrides)
    return Config(**options)


def build_client(config: SessionConfig, session: Any = None, **overrides: Any) -> Any:
    """A low-level boto3 DynamoDB client with ``config``'s endpoint, region, profile, timeouts
    and botocore retries (see the module's docstring for ``overrides``)."""
    import boto3
    from botocore.config import Config

    config_overrides = {name: overrides.pop(name) for name in list(overrides)
                        if name in Config.OPTION_DEFAULTS and name != "region_name"}
    kwargs: dict[str, Any] = {"endpoint_url": config.endpoint_url,
                              "region_name": config.region_name}
    kwargs.update(overrides)
    kwargs["config"] = botocore_config(config, **config_overrides)
    # boto3's default session (its loaders cached, as boto3.client uses) unless a profile is
    # named
    if session is None and config.profile_name:
        session = boto3.Session(profile_name=config.profile_name)
    elif session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
    if kwargs["region_name"] is None and session.region_name is None and is_loopback(
            kwargs["endpoint_url"]):
        kwargs["region_name"] = LOOPBACK_REGION
    return session.client("dynamodb", **kwargs)
