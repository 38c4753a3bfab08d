"""dynamo-sessions: web sessions in Amazon DynamoDB.

``IMPLEMENTATION`` tells which core is loaded: ``"compiled"`` (Cython, ``ext/``) or ``"python"``.
"""

from __future__ import annotations

from ._core import (
    IMPLEMENTATION,
    LockRetryBackoff,
    decode_session,
    encode_session,
    item_size,
    read_units,
    write_units,
)
from .config import SessionConfig
from .errors import (
    ConfigError,
    CorruptSession,
    DynamoSessionsError,
    DynamoUnavailable,
    GcThrottled,
    LockLost,
    LockTimeout,
    NotACounter,
    SessionBusy,
    SessionConflict,
    SessionEncodeError,
    SessionExists,
    SessionGone,
    SessionMoved,
    SessionTooLarge,
    TableExists,
    TableNotFound,
)
from .handler import SessionHandler
from .metrics import Metrics, OperationMetrics
from .ops.gc import GcInterrupted, GcResult
from .store import LoadedSession, SessionStore, create_store, new_session_id
from .transport.client import build_client as make_client

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION",
    "ConfigError",
    "CorruptSession",
    "DynamoSessionsError",
    "DynamoUnavailable",
    "GcInterrupted",
    "GcResult",
    "GcThrottled",
    "LoadedSession",
    "LockLost",
    "LockRetryBackoff",
    "LockTimeout",
    "Metrics",
    "NotACounter",
    "OperationMetrics",
    "SessionBusy",
    "SessionConfig",
    "SessionConflict",
    "SessionEncodeError",
    "SessionExists",
    "SessionGone",
    "SessionHandler",
    "SessionMoved",
    "SessionStore",
    "SessionTooLarge",
    "TableExists",
    "TableNotFound",
    "__version__",
    "create_store",
    "decode_session",
    "encode_session",
    "item_size",
    "make_client",
    "new_session_id",
    "read_units",
    "write_units",
]
