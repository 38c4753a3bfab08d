"""Pure-Python twin of the compiled session core (``ext/_core_c.pyx``).

Same names, same signatures, same docstrings and the same results as the compiled module; the
test suite runs every test against both.  What both must agree on - limits, format constants,
the validation of sessions and of backoff arguments, the inflate guard, the public docstrings -
is in ``_rules``, which both import.  This module is the twin's public face; the three parts of
the hot path live in private modules it re-exports (as ``ext/_core_c.pyx`` includes its parts):

* ``_codec_py``: the session payload codec (standard msgpack behind a two-byte header),
* ``_units_py``: DynamoDB item-size and capacity-unit math,
* ``_backoff_py``: the lock-retry backoff schedule (a seedable splitmix64 stream, so that both
  twins draw the same delays from the same seed).
"""

from __future__ import annotations

from ._backoff_py import LockRetryBackoff
from ._codec_py import decode_session, encode_session, pack_session, unpack_session
from ._rules import (
    BACKOFF_MODES,
    CODEC_NONE,
    CODEC_ZLIB,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAX_DEPTH,
    MAX_INFLATED_BYTES,
    MAX_ITEM_BYTES,
    MAX_NUMBER_BYTES,
    MAX_PACKED_BYTES,
    PAYLOAD_MAGIC,
    READ_UNIT_BYTES,
    WRITE_UNIT_BYTES,
    ZLIB_LEVEL,
)
from ._units_py import attribute_value_size, item_size, number_size, read_units, write_units

__all__ = [
    "BACKOFF_MODES",
    "CODEC_NONE",
    "CODEC_ZLIB",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAX_DEPTH",
    "MAX_INFLATED_BYTES",
    "MAX_ITEM_BYTES",
    "MAX_NUMBER_BYTES",
    "MAX_PACKED_BYTES",
    "PAYLOAD_MAGIC",
    "READ_UNIT_BYTES",
    "WRITE_UNIT_BYTES",
    "ZLIB_LEVEL",
    "LockRetryBackoff",
    "attribute_value_size",
    "decode_session",
    "encode_session",
    "item_size",
    "number_size",
    "pack_session",
    "read_units",
    "unpack_session",
    "write_units",
]

# The parts' public names are this module's (as the compiled core's are ``_core_c``'s): reprs,
# help() and documentation tools name the twin's public module, not the private part.
for _name in ("LockRetryBackoff", "attribute_value_size", "decode_session", "encode_session",
              "item_size", "number_size", "pack_session", "read_units", "unpack_session",
              "write_units"):
    globals()[_name].__module__ = __name__
del _name
