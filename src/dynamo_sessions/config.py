"""``SessionConfig``: every option of the PHP DynamoDB session handler, with units in the names.

``SessionConfig.from_php_options({...})`` takes the PHP guide's own keys and values, so a config
can be carried over as it is; ``SessionConfig.from_options({...})`` takes ours from a mapping
(config files, environment).  Unknown options and out-of-range values raise ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConfigError

MAX_LIFETIME_SECONDS = 1000 * 365 * 86400
"""Longest session lifetime taken (1000 years): an expiry past it is no one's intent, and far
beyond it an expiry outgrows the 38 digits a DynamoDB number holds."""
LOCKING_MODES = ("none", "pessimistic", "optimistic")
LOCK_RETRY_MODES = ("exponential", "uniform")
GC_MODES = ("conditional", "batch")
BOTO_RETRY_MODES = ("standard", "adaptive", "legacy")


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """Options of a session store; all have defaults (the PHP handler's where it has one)."""

    table_name: str = "sessions"
    """DynamoDB table holding the sessions."""
    hash_key: str = "id"
    """Name of the table's string hash key; it holds ``<session_name>_<session_id>``."""
    session_lifetime_seconds: int = 1440
    """Lifetime of an inactive session (PHP's ``session.gc_maxlifetime`` default)."""
    consistent_read: bool = True
    """Strongly consistent GetItem (1 RCU per 4 KB) rather than eventual (half)."""
    locking: str = "none"
    """``none`` (last writer wins), ``pessimistic`` (a lease lock) or ``optimistic``
    (versioned writes that merge concurrent changes; recommended for multi-tab apps)."""
    automatic_gc: bool = False
    """Run garbage collection from ``open()`` with probability ``gc_probability/gc_divisor``
    (PHP style). Off by default: enable TTL and run ``dynamo-sessions gc`` off-peak instead."""
    gc_probability: int = 1
    gc_divisor: int = 100
    gc_batch_size: int = 25
    """Keys per BatchWriteItem (batch mode) or deletes in flight (conditional mode); 1..25."""
    gc_operation_delay_seconds: float = 0.0
    """Pause between the service operations of a garbage collection."""
    gc_mode: str = "conditional"
    """``conditional``: each delete is conditional on the item still being expired and unlocked
    (never deletes a session refreshed after the scan saw it). ``batch``: the PHP handler's
    BatchWriteItem deletes - fewer calls, but a session refreshed between the scan and the
    delete is lost."""
    gc_segments: int = 1
    """Parallel Scan segments of a garbage collection."""
    max_lock_wait_seconds: float = 10.0
    """Longest a request waits for a session lock before ``LockTimeout`` (pessimistic), or
    keeps retrying a contended write before ``SessionConflict`` (optimistic)."""
    min_lock_retry_microseconds: int = 10_000
    max_lock_retry_microseconds: int = 50_000
    """Bounds of the jittered delay between lock attempts (and contended optimistic retries)."""
    lock_retry_mode: str = "exponential"
    """``exponential`` backoff with jitter, or ``uniform`` random delays as in PHP."""
    lock_lease_seconds: float = 7.0
    """A lock lapses this long after it was taken or last renewed.  A working holder's lock is
    renewed once half of it is used (one thread per process, see ``lease.py``), so only a dead
    holder's lock lapses: within one lease (plus the clock's uncertainty), which is inside
    ``max_lock_wait_seconds`` - the request waiting behind a crashed holder is served."""
    max_lock_hold_seconds: float = 120.0
    """Renewals stop after a lock was held this long: a hung request loses its lock (its save
    raises ``LockLost``) instead of locking its user out."""
    clock_skew_warning_seconds: float = 2.0
    """Log a warning (once) when this machine's clock is certainly more than this far from
    DynamoDB's.  Lease and expiry decisions follow DynamoDB's clock (its ``Date`` headers)
    whatever the skew; the warning is for the other software on the host."""
    expiry_refresh_fraction: float = 0.5
    """An unchanged session's expiry is rewritten only when less than this share of its
    lifetime remains, so most read-only requests cost no write."""
    delete_expired_on_read: bool = True
    """Delete (conditionally) an expired item found by a read, as PHP does; TTL would too."""
    max_write_retries: int = 64
    """Optimistic mode: merge-and-retry attempts before ``SessionConflict`` (the retries also
    stop at ``max_lock_wait_seconds``).  Each refused write costs at least 1 WCU; 8 requests
    hammering one session need up to ~25."""
    compress: bool = True
    """Compress a payload when that lowers the write units of the item."""
    hash_session_ids: bool = True
    """Store SHA-256 of the session id instead of the id itself, so a leaked table or backup
    holds no usable session ids.  On by default; ``from_php_options`` turns it off, because a
    table shared with the PHP handler must keep PHP's ``<session_name>_<id>`` keys."""
    boto_retry_mode: str = "standard"
    """botocore retry mode for clients the store creates (throttling, 5xx, timeouts)."""
    boto_max_attempts: int = 5
    """Attempts per call in all, the first included (as ``AWS_MAX_ATTEMPTS``)."""
    connect_timeout_seconds: float = 2.0
    read_timeout_seconds: float = 5.0
    endpoint_url: str | None = None
    """DynamoDB endpoint (``http://127.0.0.1:8000`` for DynamoDB Local); ``None``: AWS's."""
    region_name: str | None = None
    """AWS region; ``None``: the profile's or the environment's (``us-east-1`` for a loopback
    endpoint when none is configured anywhere)."""
    profile_name: str | None = None
    """Profile of ``~/.aws/config`` the client takes its credentials (and region) from;
    ``None``: boto3's default credential chain."""
    client: Any = None
    """A low-level boto3 DynamoDB client (PHP's ``dynamodb_client``); made from the options
    above when not given."""
    on_operation: Callable[..., Any] | None = None
    """Called after every DynamoDB call with an ``OperationMetrics`` (metrics hook)."""

    def __post_init__(self) -> None:
        def need(condition: bool, option: str, what: str) -> None:
            if not condition:
                raise ConfigError(f"{option}={getattr(self, option)!r}: {what}")

        for name in ("table_name", "hash_key"):
            need(isinstance(getattr(self, name), str) and bool(getattr(self, name)), name,
                 "must be a non-empty string")
        for name in ("endpoint_url", "region_name", "profile_name"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, str) and bool(value)), name,
                 "must be a non-empty string or None")
        need(3 <= len(self.table_name) <= 255, "table_name", "must be 3..255 characters")
        for name in ("consistent_read", "automatic_gc", "delete_expired_on_read", "compress",
                     "hash_session_ids"):
            need(isinstance(getattr(self, name), bool), name, "must be True or False")
        for name in ("session_lifetime_seconds", "gc_probability", "gc_divisor", "gc_batch_size",
                     "gc_segments", "min_lock_retry_microseconds", "max_lock_retry_microseconds",
                     "max_write_retries", "boto_max_attempts"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), name,
                 "must be an integer")
        for name in ("gc_operation_delay_seconds", "max_lock_wait_seconds", "lock_lease_seconds",
                     "max_lock_hold_seconds", "clock_skew_warning_seconds",
                     "expiry_refresh_fraction", "connect_timeout_seconds",
                     "read_timeout_seconds"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool), name,
                 "must be a number")
        need(self.locking in LOCKING_MODES, "locking", f"must be one of {LOCKING_MODES}")
        need(self.lock_retry_mode in LOCK_RETRY_MODES, "lock_retry_mode",
             f"must be one of {LOCK_RETRY_MODES}")
        need(self.gc_mode in GC_MODES, "gc_mode", f"must be one of {GC_MODES}")
        need(self.boto_retry_mode in BOTO_RETRY_MODES, "boto_retry_mode",
             f"must be one of {BOTO_RETRY_MODES}")
        need(0 < self.session_lifetime_seconds <= MAX_LIFETIME_SECONDS,
             "session_lifetime_seconds", f"must be 1..{MAX_LIFETIME_SECONDS} (1000 years)")
        need(self.gc_probability >= 0, "gc_probability", "must be >= 0")
        need(self.gc_divisor > 0, "gc_divisor", "must be > 0")
        need(1 <= self.gc_batch_size <= 25, "gc_batch_size",
             "must be 1..25 (BatchWriteItem takes at most 25 requests)")
        need(1 <= self.gc_segments <= 1_000_000, "gc_segments", "must be 1..1000000")
        need(self.gc_operation_delay_seconds >= 0, "gc_operation_delay_seconds", "must be >= 0")
        need(self.max_lock_wait_seconds >= 0, "max_lock_wait_seconds", "must be >= 0")
        need(self.min_lock_retry_microseconds >= 0, "min_lock_retry_microseconds",
             "must be >= 0")
        need(self.max_lock_retry_microseconds >= self.min_lock_retry_microseconds,
             "max_lock_retry_microseconds", "must be >= min_lock_retry_microseconds")
        need(self.lock_lease_seconds > 0, "lock_lease_seconds", "must be > 0")
        need(self.max_lock_hold_seconds > 0, "max_lock_hold_seconds", "must be > 0")
        need(self.clock_skew_warning_seconds > 0, "clock_skew_warning_seconds", "must be > 0")
        need(0.0 <= self.expiry_refresh_fraction <= 1.0, "expiry_refresh_fraction",
             "must be between 0 and 1")
        need(self.max_write_retries >= 0, "max_write_retries", "must be >= 0")
        need(self.boto_max_attempts >= 1, "boto_max_attempts", "must be >= 1")
        need(self.connect_timeout_seconds > 0, "connect_timeout_seconds", "must be > 0")
        need(self.read_timeout_seconds > 0, "read_timeout_seconds", "must be > 0")
        need(self.on_operation is None or callable(self.on_operation), "on_operation",
             "must be callable")

    # --- construction from mappings -----------------------------------------------------------

    @classmethod
    def option_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def _reject_unknown(cls, names: Iterable[str]) -> None:
        known = cls.option_names()
        unknown = [name for name in names if name not in known]
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(str(name), known, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError("unknown session option(s): " + ", ".join(hints))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SessionConfig:
        """Build from a mapping of our option names; unknown names raise ``ConfigError``."""
        cls._reject_unknown(options)
        return cls(**dict(options))

    def replace(self, **changes: Any) -> SessionConfig:
        """A copy with some options changed (validated like the original; the client is shared,
        not copied)."""
        self._reject_unknown(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_php_options(cls, options: Mapping[str, Any]) -> SessionConfig:
        """Build from the PHP handler's option array, keys and values as in its guide.

        ``locking_strategy``: ``None``/``'null'`` -> ``none``, ``'pessimistic'`` (and the
        guide's spelling ``'pessemistic'``) -> ``pessimistic``; ``'optimistic'`` is ours.
        ``automatic_gc`` and ``consistent_read`` take PHP's 0/1 or a bool; numbers may be
        given as PHP's ini strings (``'3600'``).  ``session_lifetime`` defaults, as in PHP, to
        ``session.gc_maxlifetime`` (1440).  ``gc_batch_size`` above 25 (the guide's example
        uses 50) is sent as batches of 25, the most one BatchWriteItem takes - as PHP's
        write batch does - so it is taken as 25; below 1 it is rejected.
        """
        renames = {
            "table_name": "table_name",
            "hash_key": "hash_key",
            "session_lifetime": "session_lifetime_seconds",
            "consistent_read": "consistent_read",
            "locking_strategy": "locking",
            "automatic_gc": "automatic_gc",
            "gc_batch_size": "gc_batch_size",
            "gc_operation_delay": "gc_operation_delay_seconds",
            "max_lock_wait_time": "max_lock_wait_seconds",
            "min_lock_retry_microtime": "min_lock_retry_microseconds",
            "max_lock_retry_microtime": "max_lock_retry_microseconds",
            "dynamodb_client": "client",
        }
        unknown = [key for key in options if key not in renames]
        if unknown:
            raise ConfigError(
                "unknown PHP session handler option(s): "
                + ", ".join(repr(key) for key in unknown)
                + f"; the guide's options are {sorted(renames)}"
            )
        ours: dict[str, Any] = {"hash_session_ids": False}  # PHP stores the raw id
        for key, value in options.items():
            name = renames[key]
            if name == "locking":
                value = _php_locking(value)
            elif name in ("automatic_gc", "consistent_read"):
                if value not in (0, 1, True, False, "0", "1"):
                    raise ConfigError(f"{key}={value!r}: must be a boolean or 0/1")
                value = value in (1, True, "1")
            elif name not in ("client", "table_name", "hash_key") and isinstance(value, str):
                value = _php_number(key, value)
            if name == "gc_batch_size" and isinstance(value, int) and value > 25:
                value = 25
            ours[name] = value
        return cls.from_options(ours)


def _php_number(key: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: must be a number") from None


def _php_locking(value: Any) -> str:
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "")):
        return "none"
    if isinstance(value, str) and value.lower() in ("pessimistic", "pessemistic"):
        return "pessimistic"
    if isinstance(value, str) and value.lower() == "optimistic":
        return "optimistic"
    raise ConfigError(
        f"locking_strategy={value!r}: must be null, 'null', 'pessimistic' or 'optimistic'"
    )


def make_client(config: SessionConfig, **overrides: Any) -> Any:
    """``transport.client.build_client``, the one client builder (kept under this name)."""
    from .transport.client import build_client

    return build_client(config, **overrides)
