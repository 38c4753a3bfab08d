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
from .errors import (
    ConfigError,
    CorruptSession,
    DynamoSessionsError,
    LockLost,
    LockTimeout,
    SessionConflict,
    SessionEncodeError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    TableNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION",
    "ConfigError",
    "CorruptSession",
    "DynamoSessionsError",
    "LockLost",
    "LockRetryBackoff",
    "LockTimeout",
    "SessionConflict",
    "SessionEncodeError",
    "SessionExists",
    "SessionGone",
    "SessionTooLarge",
    "TableNotFound",
    "__version__",
    "decode_session",
    "encode_session",
    "item_size",
    "read_units",
    "write_units",
]
