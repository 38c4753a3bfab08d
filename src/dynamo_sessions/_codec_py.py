"""The twin's session codec: standard msgpack behind the two-byte dynamo-sessions header.

Part of the pure-Python twin; its public names are re-exported by ``_core_py`` (import them from
there, or from ``_core``).  The compiled counterpart is ``ext/_encode.pxi`` and ``ext/_decode.pxi``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import msgpack

from ._rules import (
    CODEC_NONE,
    CODEC_ZLIB,
    EPOCH,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAX_DEPTH,
    MAX_PACKED_BYTES,
    PAYLOAD_MAGIC,
    WRITE_UNIT_BYTES,
    ZLIB_LEVEL,
    as_dict,
    check_session,
    documented,
    inflate,
    payload_view,
    raise_encode_error,
    raise_too_large,
)
from ._units_py import write_units
from .errors import CorruptSession

_HEADER_NONE = bytes((PAYLOAD_MAGIC, FORMAT_VERSION << 4 | CODEC_NONE))
_HEADER_ZLIB = bytes((PAYLOAD_MAGIC, FORMAT_VERSION << 4 | CODEC_ZLIB))


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

