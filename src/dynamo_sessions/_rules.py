"""The session core's rules, in one place: the compiled core and its twin both import them.

Limits, payload-format constants, the validation that names a value which cannot be stored, the
lock-retry backoff's argument checks, the inflate guard and the public docstrings (:data:`DOCS`)
live here, so that the two implementations cannot drift apart and the encoder refuses exactly
what the decoder refuses (the compiled core copies the numbers into C variables at import):

* a session packs to at most :data:`MAX_PACKED_BYTES` of msgpack, and a payload may not inflate
  (or, uncompressed, hold) more than that;
* an aware datetime is stored only if its UTC instant is in years 1..9999 (what the decoder can
  turn back into a ``datetime``);
* integers are in msgpack's 64-bit range, containers at most :data:`MAX_DEPTH` deep, dict keys
  are str, text is valid UTF-8.
"""

from __future__ import annotations

import datetime as _dt
import secrets
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .errors import CorruptSession, SessionEncodeError, SessionTooLarge

# --- DynamoDB limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/) -------
MAX_ITEM_BYTES = 409_600
"""DynamoDB's item size limit: 400 KB, attribute names included."""
WRITE_UNIT_BYTES = 1_024
"""One write capacity unit covers up to 1 KB of item."""
READ_UNIT_BYTES = 4_096
"""One strongly consistent read capacity unit covers up to 4 KB of item."""
MAX_NUMBER_BYTES = 21
"""The most bytes DynamoDB counts for a number: 1 exponent byte and 20 base-100 digit bytes (38
significant digits); a negative number this long has no terminator byte (measured on DynamoDB
Local, tests/test_item_size_dynamodb_local.py)."""

# --- payload format ---------------------------------------------------------------------------
PAYLOAD_MAGIC = 0xC1
"""First byte of every payload: 0xC1 is never used by msgpack, so no bare msgpack is mistaken."""
FORMAT_VERSION = 1
CODEC_NONE = 0
CODEC_ZLIB = 1
HEADER_BYTES = 2
MAX_DEPTH = 100
"""Deepest nesting of lists and dicts accepted, the session dict itself counting as 1."""
MAX_PACKED_BYTES = 1_048_576
"""The largest session, as packed msgpack before compression (1 MiB, 2.56 times the item
limit).  The encoder refuses more (:class:`SessionTooLarge`); the decoder refuses a payload
that inflates to more, which bounds the objects a stored item can make the decoder build."""
MAX_INFLATED_BYTES = MAX_PACKED_BYTES
"""A compressed payload may not inflate past this (a guard against decompression bombs)."""
ZLIB_LEVEL = 1

INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1
MIN_TIMESTAMP_SECONDS = -62_135_596_800
"""0001-01-01T00:00:00Z in seconds since the epoch: the earliest instant a datetime holds."""
MAX_TIMESTAMP_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z in seconds since the epoch: the latest (whole) second a datetime holds."""
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

# --- lock-retry backoff -------------------------------------------------------------------------
BACKOFF_MODES = ("exponential", "uniform")
MASK64 = (1 << 64) - 1
"""The splitmix64 state is a 64-bit unsigned integer."""


def utc_seconds(value: _dt.datetime) -> tuple[int, int]:
    """(seconds since the epoch, microseconds) of an aware datetime, exact far from the epoch."""
    delta = value - EPOCH
    return delta.days * 86400 + delta.seconds, delta.microseconds


# --- validation: names the first value that cannot be stored ----------------------------------


def path_of(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _too_deep(path: str) -> SessionEncodeError:
    return SessionEncodeError(
        f"session value {path!r} is nested deeper than {MAX_DEPTH} levels", path
    )


def check_encodable(value: Any, path: str, depth: int) -> None:
    """Raise :class:`SessionEncodeError` for the first value inside ``value`` that the decoder
    would refuse (or msgpack cannot represent); text encoding is checked separately."""
    if value is None or isinstance(value, (str, bytes, bool, float)):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise SessionEncodeError(
                f"session value {path!r}: integer {value} is outside msgpack's 64-bit range; "
                "store it as a string",
                path,
            )
        return
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        for key, item in value.items():
            if not isinstance(key, str):
                raise SessionEncodeError(
                    f"session value {path!r}: dict key {key!r} is not a str; "
                    "only str keys can be stored",
                    path_of(path, key),
                )
            check_encodable(item, path_of(path, key), depth + 1)
        return
    if isinstance(value, (list, tuple)):
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        for index, item in enumerate(value):
            check_encodable(item, path_of(path, index), depth + 1)
        return
    if isinstance(value, _dt.datetime):
        if value.utcoffset() is None:
            raise SessionEncodeError(
                f"session value {path!r}: naive datetime {value!r} has no time zone; attach "
                "one (e.g. tzinfo=datetime.timezone.utc) - it is stored as a UTC instant",
                path,
            )
        if not 1 < value.year < 9999 and not (  # a UTC offset is less than a day
                MIN_TIMESTAMP_SECONDS <= utc_seconds(value)[0] <= MAX_TIMESTAMP_SECONDS):
            raise SessionEncodeError(
                f"session value {path!r}: datetime {value.isoformat()} is outside years "
                "1..9999 in UTC, so it could not be read back; store it as a string",
                path,
            )
        return
    raise SessionEncodeError(
        f"session value {path!r} of type {type(value).__name__} cannot be stored; supported: "
        "None, bool, int, float, str, bytes, list, tuple, dict with str keys, aware datetime",
        path,
    )


def check_session(session: Mapping[Any, Any]) -> None:
    """Raise :class:`SessionEncodeError` naming the first key or value that cannot be stored
    (types and ranges; text encoding is :func:`raise_text_error`'s)."""
    for key, value in session.items():
        if not isinstance(key, str):
            raise SessionEncodeError(
                f"session key {key!r} is not a str; only str keys can be stored", repr(key)
            )
        check_encodable(value, key, 2)


def _unencodable_text(value: Any, path: str) -> tuple[str, UnicodeEncodeError] | None:
    """(path, error) of the first str (dict key or value) that UTF-8 cannot encode, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path, exc
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unencodable_text(key, path_of(path, key))
            if found is None:
                found = _unencodable_text(item, path_of(path, key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unencodable_text(item, path_of(path, index))
            if found is not None:
                return found
    return None


def raise_encode_error(session: Mapping[Any, Any]) -> None:
    """Raise the :class:`SessionEncodeError` for a session that failed to pack: the first bad
    type or range in the twin's order, else the first str UTF-8 cannot encode (a lone
    surrogate)."""
    check_session(session)
    found = _unencodable_text(session, "")
    if found is None:  # pragma: no cover - nothing else is known to fail
        raise SessionEncodeError("session cannot be encoded", "")
    path, exc = found
    raise SessionEncodeError(f"session value {path!r} cannot be encoded: {exc}", path) from exc


def raise_too_large(size: int) -> None:
    """Raise :class:`SessionTooLarge` for a session that packs to ``size`` bytes (more than
    MAX_PACKED_BYTES)."""
    raise SessionTooLarge(
        f"session packs to {size} bytes of msgpack, over the {MAX_PACKED_BYTES}-byte "
        "limit of a session (before compression); keep large data out of the session",
        size, MAX_PACKED_BYTES,
    )


def as_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if isinstance(data, Mapping):
        return dict(data)
    raise SessionEncodeError(
        f"a session must be a mapping with str keys, not {type(data).__name__}", ""
    )


def payload_view(payload: object) -> memoryview:
    """A flat, contiguous byte view of a payload given as bytes, bytearray or memoryview;
    :class:`CorruptSession` for anything else (a released or multi-byte-item view)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise CorruptSession(f"session payload must be bytes, not {type(payload).__name__}")
    try:
        view = memoryview(payload)
    except ValueError as exc:  # a released memoryview
        raise CorruptSession(f"session payload cannot be read: {exc}") from exc
    if view.ndim != 1 or view.itemsize != 1:
        raise CorruptSession("session payload must be a flat byte buffer")
    if not view.c_contiguous:  # a strided view: read a contiguous copy
        view = memoryview(view.tobytes())
    return view


def inflate(body: bytes | memoryview) -> bytes:
    """The msgpack body of a zlib payload, refused (:class:`CorruptSession`) when damaged, cut,
    followed by other bytes, or inflating past :data:`MAX_INFLATED_BYTES`."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise CorruptSession(f"compressed session payload is damaged: {exc}") from exc
    if inflater.unconsumed_tail:
        raise CorruptSession(f"session payload inflates past {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise CorruptSession("compressed session payload is truncated or has trailing bytes")
    return out


def backoff_settings(
    min_retry_microseconds: int, max_retry_microseconds: int, max_wait_seconds: float, mode: str
) -> tuple[int, int, float, str, bool]:
    """A LockRetryBackoff's checked arguments: (min and max delay in microseconds, the wait in
    seconds, the mode as the very str of :data:`BACKOFF_MODES` it equals - a str subclass such as
    a StrEnum member is kept as plain str -, whether it is exponential); ``ValueError`` for a
    mode not in :data:`BACKOFF_MODES`, a negative or inverted delay range, a negative or NaN
    wait.  The same arguments always give the same settings (the compiled core keeps the last
    ones)."""
    if mode not in BACKOFF_MODES:
        raise ValueError(f"mode must be one of {BACKOFF_MODES}, not {mode!r}")
    min_us = int(min_retry_microseconds)
    max_us = int(max_retry_microseconds)
    if min_us < 0 or max_us < min_us:
        raise ValueError("need 0 <= min_retry_microseconds <= max_retry_microseconds")
    if not max_wait_seconds >= 0:
        raise ValueError("max_wait_seconds must be >= 0")
    mode = BACKOFF_MODES[BACKOFF_MODES.index(mode)]
    return min_us, max_us, float(max_wait_seconds), mode, mode == "exponential"


def backoff_state(seed: int | None) -> int:
    """The first splitmix64 state of a LockRetryBackoff: from ``seed``, else from ``secrets``."""
    return (secrets.randbits(64) if seed is None else int(seed)) & MASK64


# --- docstrings of the public names: one text for both cores ----------------------------------

DOCS = {
    "pack_session": """Encode a session mapping as plain msgpack (no header, no compression).

    Raises :class:`SessionEncodeError` naming the key of the first value that cannot be stored,
    :class:`SessionTooLarge` when it packs to more than ``MAX_PACKED_BYTES``.
    """,
    "encode_session": """Encode a session mapping into the bytes stored in the item's ``data`` attribute.

    The result is a two-byte header (0xC1, format version << 4 | codec) and standard msgpack
    (bin types, timestamp extension for aware datetimes).  ``overhead_bytes`` is the size of the
    rest of the item (key, expiry, lock attributes); with ``compress`` the payload is zlib-
    compressed only when that lowers the number of 1 KB write units the whole item needs.
    Raises :class:`SessionEncodeError` naming the key of a value that cannot be stored, and
    :class:`SessionTooLarge` for a session over ``MAX_PACKED_BYTES`` packed: whatever this
    returns, :func:`decode_session` reads back.
    """,  # noqa: E501 - the first line as help() shows it
    "unpack_session": """Decode plain msgpack (no header) into a session dict.

    Raises :class:`CorruptSession` for anything that is not a msgpack map with str keys holding
    supported values, or longer than ``MAX_PACKED_BYTES``; never another exception.  Memory and
    time are linear in the body's length: every object built takes at least one byte of it,
    and a container that promises more elements than bytes remain is refused before it is
    allocated.
    """,
    "decode_session": """Decode bytes made by :func:`encode_session` back into a session dict.

    Datetimes come back as aware datetimes in UTC, tuples as lists.  Any malformed input
    (wrong type, truncated, wrong header, unknown version or codec, garbage, unsupported
    types) raises :class:`CorruptSession` - never another exception.  Decoding is bounded by
    the payload: a compressed one inflates to at most ``MAX_INFLATED_BYTES`` (and at most 1032
    times its own length, deflate's limit), and no more objects are built than there are
    msgpack bytes, so a stored item of n bytes costs O(min(1032 n, MAX_INFLATED_BYTES)) time
    and memory (tests/test_codec_limits.py: at most 128 bytes of memory per msgpack byte).
    """,
    "number_size": """Bytes DynamoDB counts for a number given as its decimal string.

    DynamoDB stores numbers as base-100 digit pairs aligned on the decimal point, after
    dropping leading and trailing zero pairs, plus one exponent byte, plus a terminator byte
    for a negative number unless its pairs fill all 20 (``MAX_NUMBER_BYTES``); zero takes one
    byte.  Raises ``ValueError`` for a malformed number.
    """,
    "attribute_value_size": """Bytes DynamoDB counts for one low-level attribute value such as ``{"S": "abc"}``.

    Lists and maps cost 3 bytes plus 1 byte per element (and a map element's key length).
    """,  # noqa: E501 - the first line as help() shows it
    "item_size": (
        "Bytes DynamoDB counts for a low-level item: UTF-8 attribute-name lengths plus values."
    ),
    "write_units": (
        "Write capacity units for writing an item of ``size`` bytes (1 KB units, at least 1)."
    ),
    "read_units": """Read capacity units for reading an item of ``size`` bytes.

    4 KB units, at least 1; an eventually consistent read costs half.
    """,
    "LockRetryBackoff": """Delays between attempts to take a session lock (or to retry an optimistic write).

    ``exponential`` (default): the n-th delay is drawn uniformly from
    ``[min, min(max, min * 2**n)]`` microseconds (exponential backoff with jitter).
    ``uniform``: every delay is drawn uniformly from ``[min, max]``, as the PHP handler does.
    ``wait()`` never sleeps past ``max_wait_seconds`` after ``start()``: the last sleep is cut
    to end at the deadline, and ``wait()`` returns ``False`` once the deadline has passed.
    A ``seed`` makes the schedule reproducible (both twins draw the same delays).
    """,  # noqa: E501 - the first line as help() shows it
}
"""The docstring of every public function and class of the cores, by name (the methods' one-line
docstrings stay in the classes: Cython fixes a method's docstring when it compiles)."""

_Documented = TypeVar("_Documented", bound=Callable[..., Any])


def documented(obj: _Documented) -> _Documented:
    """Give a public function or class of a core its docstring from :data:`DOCS`."""
    obj.__doc__ = DOCS[obj.__name__]
    return obj
