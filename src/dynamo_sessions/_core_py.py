"""Pure-Python twin of the compiled session core (``ext/_core_c.pyx``).

Same names, same signatures, same docstrings and the same results as the compiled module; the
test suite runs every test against both.  What both must agree on - limits, format constants,
the validation of sessions and of backoff arguments, the inflate guard, the public docstrings -
is in ``_rules``, which both import.  Three parts of the hot path live here:

* the session payload codec (standard msgpack behind a two-byte header),
* DynamoDB item-size and capacity-unit math,
* the lock-retry backoff schedule (a seedable splitmix64 stream, so that both twins draw the same
  delays from the same seed).
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from ._rules import (
    BACKOFF_MODES,
    CODEC_NONE,
    CODEC_ZLIB,
    EPOCH,
    FORMAT_VERSION,
    HEADER_BYTES,
    MASK64,
    MAX_DEPTH,
    MAX_INFLATED_BYTES,
    MAX_ITEM_BYTES,
    MAX_NUMBER_BYTES,
    MAX_PACKED_BYTES,
    PAYLOAD_MAGIC,
    READ_UNIT_BYTES,
    WRITE_UNIT_BYTES,
    ZLIB_LEVEL,
    as_dict,
    backoff_settings,
    backoff_state,
    check_session,
    documented,
    inflate,
    payload_view,
    raise_encode_error,
    raise_too_large,
)
from .errors import CorruptSession

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

_HEADER_NONE = bytes((PAYLOAD_MAGIC, FORMAT_VERSION << 4 | CODEC_NONE))
_HEADER_ZLIB = bytes((PAYLOAD_MAGIC, FORMAT_VERSION << 4 | CODEC_ZLIB))


# ==============================================================================================
# Codec
# ==============================================================================================


def _default(value: Any) -> Any:
    # Only aware datetimes in range reach here: check_session has validated everything else.
    # Integer arithmetic (not value.timestamp()) keeps microseconds exact far from the epoch.
    delta = value - EPOCH
    return msgpack.Timestamp(delta.days * 86400 + delta.seconds, delta.microseconds * 1000)


@documented
def pack_session(data: Mapping[str, Any]) -> bytes:
    session = as_dict(data)
    check_session(session)
    try:
        packed: bytes = msgpack.packb(session, use_bin_type=True, default=_default)
    except (TypeError, ValueError, OverflowError):
        # Types were validated above: what is left is a str that UTF-8 cannot encode (a lone
        # surrogate); name its key like the other errors do.
        raise_encode_error(session)
        raise  # pragma: no cover - raise_encode_error always raises
    if len(packed) > MAX_PACKED_BYTES:
        raise_too_large(len(packed))
    return packed


@documented
def encode_session(
    data: Mapping[str, Any], overhead_bytes: int = 0, compress: bool = True
) -> bytes:
    raw = pack_session(data)
    total = len(raw) + HEADER_BYTES + overhead_bytes
    if compress and total > WRITE_UNIT_BYTES:
        deflated = zlib.compress(raw, ZLIB_LEVEL)
        if write_units(len(deflated) + HEADER_BYTES + overhead_bytes) < write_units(total):
            return _HEADER_ZLIB + deflated
    return _HEADER_NONE + raw


def _reject_ext(code: int, data: bytes) -> Any:
    raise CorruptSession(f"unsupported msgpack extension type {code}")


def _check_decoded(value: Any, depth: int) -> None:
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise CorruptSession(f"session payload is nested deeper than {MAX_DEPTH} levels")
        for key, item in value.items():
            if not isinstance(key, str):
                raise CorruptSession(f"session payload has a non-str map key {key!r}")
            _check_decoded(item, depth + 1)
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            raise CorruptSession(f"session payload is nested deeper than {MAX_DEPTH} levels")
        for item in value:
            _check_decoded(item, depth + 1)


# Bytes after the type byte for msgpack's fixed-size forms, and the length-field width of the
# sized ones (str/bin/ext: that many bytes follow; array/map: that many elements).
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
          0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}
_MAP = {0xDE: 2, 0xDF: 4}
def _check_promises(data: bytes) -> None:
    """Refuse container headers that promise more elements than bytes remain.

    Every element takes at least one byte, so the elements promised by all containers still
    open may not outnumber the bytes left; msgpack allocates an array's slots when it reads
    its header, so this runs before it.  Only array16/32 headers (bytes 0xDC, 0xDD) can make
    msgpack allocate more than 15 slots (it does not presize maps): when the lengths after all
    such bytes add up to no more than the body's length, whatever they are, nothing more is
    checked.
    """
    claimed = 0
    for marker, width in ((0xDC, 2), (0xDD, 4)):
        at = data.find(marker)
        while at >= 0:
            claimed += int.from_bytes(data[at + 1:at + 1 + width], "big")
            at = data.find(marker, at + 1)
    if claimed <= len(data):
        return
    end = len(data)
    pos = 0
    promised = 1  # values announced and not yet started
    while promised and pos < end:
        c = data[pos]
        pos += 1
        promised -= 1
        if c <= 0x7F or c >= 0xE0:
            continue
        if c <= 0x8F:
            promised += 2 * (c & 0x0F)
        elif c <= 0x9F:
            promised += c & 0x0F
        elif c <= 0xBF:
            pos += c & 0x1F
        elif c in _FIXED:
            pos += _FIXED[c]
        else:
            found = _SIZED.get(c) or _EXT.get(c) or _ARRAY.get(c) or _MAP.get(c)
            if found is None:
                raise CorruptSession(f"session payload has the reserved msgpack byte 0x{c:02x}")
            width = found
            n = int.from_bytes(data[pos:pos + width], "big")
            pos += width
            if c in _ARRAY:
                promised += n
            elif c in _MAP:
                promised += 2 * n
            else:
                pos += n + (c in _EXT)
        if promised > end - pos:
            raise CorruptSession("session payload is truncated (a container runs past the end)")


@documented
def unpack_session(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    data = body if type(body) is bytes else _flat_bytes(body)
    if len(data) > MAX_PACKED_BYTES:
        raise CorruptSession(f"session payload is longer than {MAX_PACKED_BYTES} bytes")
    try:
        if 0xDC in data or 0xDD in data:  # an array16/32 header may be in there
            _check_promises(data)
        # strict_map_key: a non-str key is refused while parsing, even in a value that a later
        # duplicate key replaces (as the compiled core does); bin keys are _check_decoded's.
        value = msgpack.unpackb(
            data, raw=False, strict_map_key=True, timestamp=3, ext_hook=_reject_ext
        )
    except (CorruptSession, MemoryError):
        raise
    except Exception as exc:
        raise CorruptSession(f"session payload is not valid msgpack: {exc}") from exc
    if not isinstance(value, dict):
        raise CorruptSession(f"session payload is a {type(value).__name__}, not a map")
    try:
        _check_decoded(value, 1)
    except RecursionError as exc:  # pragma: no cover - bounded by MAX_DEPTH
        raise CorruptSession("session payload is nested too deeply") from exc
    return value


def _flat_bytes(body: object) -> bytes:
    try:
        view = memoryview(body)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:  # not a buffer, or a released memoryview
        raise CorruptSession(f"session payload cannot be read as bytes: {exc}") from exc
    if view.itemsize != 1:
        raise CorruptSession("session payload must be a flat byte buffer")
    return view.tobytes()


@documented
def decode_session(payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    data = payload if type(payload) is bytes else payload_view(payload).tobytes()
    if len(data) < HEADER_BYTES or data[0] != PAYLOAD_MAGIC:
        raise CorruptSession("session payload has no dynamo-sessions header")
    version, codec = data[1] >> 4, data[1] & 0x0F
    if version != FORMAT_VERSION:
        raise CorruptSession(f"session payload format version {version} is not supported")
    if codec == CODEC_ZLIB:
        return unpack_session(inflate(memoryview(data)[HEADER_BYTES:]))
    if codec != CODEC_NONE:
        raise CorruptSession(f"session payload codec {codec} is not supported")
    return unpack_session(data[HEADER_BYTES:])


# ==============================================================================================
# Item size and capacity units
# ==============================================================================================

_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")


@documented
def number_size(text: str) -> int:
    if not isinstance(text, str):
        raise TypeError(f"a DynamoDB number is given as a str, not {type(text).__name__}")
    match = _NUMBER.fullmatch(text)
    if match is None or not (match.group(2) or match.group(3)):
        raise ValueError(f"{text!r} is not a number")
    sign, integral, fraction, exponent = match.groups()
    fraction = fraction or ""
    digits = integral + fraction
    point = len(integral) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    stripped = stripped.rstrip("0")
    if not stripped:
        return 1
    pairs = (point - 1) // 2 - (point - len(stripped)) // 2 + 1
    terminator = sign == "-" and pairs < MAX_NUMBER_BYTES - 1
    return 1 + pairs + terminator


def _utf8_len(text: Any) -> int:
    if isinstance(text, str):
        return len(text.encode("utf-8", "surrogatepass"))
    raise TypeError(f"expected a str, not {type(text).__name__}")


def _binary_len(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    raise TypeError(f"a DynamoDB binary value is bytes, not {type(value).__name__}")


@documented
def attribute_value_size(value: Mapping[str, Any]) -> int:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise TypeError(f"an attribute value is a one-key dict like {{'S': ...}}, not {value!r}")
    for tag, inner in value.items():
        if tag == "S":
            return _utf8_len(inner)
        if tag == "B":
            return _binary_len(inner)
        if tag == "N":
            return number_size(inner)
        if tag in ("BOOL", "NULL"):
            return 1
        if tag == "M":
            if not isinstance(inner, Mapping):
                raise TypeError(f"an M value is a dict, not {type(inner).__name__}")
            return 3 + sum(
                1 + _utf8_len(key) + attribute_value_size(item) for key, item in inner.items()
            )
        if tag == "L":
            return 3 + sum(1 + attribute_value_size(item) for item in inner)
        if tag == "SS":
            return sum(_utf8_len(item) for item in inner)
        if tag == "NS":
            return sum(number_size(item) for item in inner)
        if tag == "BS":
            return sum(_binary_len(item) for item in inner)
        raise TypeError(f"unknown DynamoDB attribute type {tag!r}")
    raise AssertionError("unreachable")  # pragma: no cover


@documented
def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    if not isinstance(item, Mapping):
        raise TypeError(f"an item is a dict of attribute values, not {type(item).__name__}")
    return sum(_utf8_len(name) + attribute_value_size(value) for name, value in item.items())


@documented
def write_units(size: int) -> int:
    if size < 0:
        raise ValueError("size must be >= 0")
    return max(1, -(-size // WRITE_UNIT_BYTES))


@documented
def read_units(size: int, consistent: bool = True) -> float:
    if size < 0:
        raise ValueError("size must be >= 0")
    units = max(1, -(-size // READ_UNIT_BYTES))
    return float(units) if consistent else units / 2.0


# ==============================================================================================
# Lock-retry backoff
# ==============================================================================================

@documented
class LockRetryBackoff:
    attempt: int  # set by start()
    deadline: float
    slept_seconds: float

    def __init__(
        self,
        min_retry_microseconds: int = 10_000,
        max_retry_microseconds: int = 50_000,
        max_wait_seconds: float = 10.0,
        mode: str = "exponential",
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        (self.min_retry_microseconds, self.max_retry_microseconds, self.max_wait_seconds,
         self.mode, self._exponential) = backoff_settings(
            min_retry_microseconds, max_retry_microseconds, max_wait_seconds, mode)
        self._state = backoff_state(seed)
        self._clock, self._sleep = clock, sleep
        self.start()

    def _next_random(self) -> int:
        # splitmix64
        self._state = (self._state + 0x9E3779B97F4A7C15) & MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def start(self) -> None:
        """Begin a new wait: reset the attempt count and set the deadline from now."""
        self.attempt = 0
        self.slept_seconds = 0.0
        self.deadline = self._clock() + self.max_wait_seconds

    def next_delay_microseconds(self) -> int:
        """Draw the next delay (microseconds) of the schedule and count the attempt."""
        low = self.min_retry_microseconds
        high = self.max_retry_microseconds
        if self._exponential and self.attempt < 62:
            high = min(high, low << self.attempt) if low else high
        self.attempt += 1
        return low + self._next_random() % (high - low + 1)

    def remaining_seconds(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - self._clock())

    def wait(self) -> bool:
        """Sleep before the next attempt; ``False`` (without sleeping) once the deadline passed.

        The sleep is the next delay of the schedule, cut so that it ends at the deadline.
        """
        remaining = self.deadline - self._clock()
        if remaining <= 0:
            return False
        delay = min(self.next_delay_microseconds() / 1_000_000, remaining)
        self._sleep(delay)
        self.slept_seconds += delay
        return True
