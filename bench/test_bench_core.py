"""The session core against its twin, bare msgpack and msgspec, side by side per session size.

Run the figures:  python3 -m pytest bench/test_bench_core.py --benchmark-only \
    --benchmark-group-by=group --benchmark-min-rounds=200 --benchmark-columns=min,median,mean,ops
Every benchmark also checks its result (a round trip, a size), so with ``--benchmark-disable``
(CI) this file is an ordinary, failing-when-wrong test module.

Groups:
* ``roundtrip <size>``: encode + size check + decode, as a request does it.  The compiled and
  python rows run ``encode_session`` (header, compression decision), ``write_units(item_size(
  item))`` on the DynamoDB item and ``decode_session``; the bare msgpack and msgspec rows run
  their encoder, ``len() + overhead`` units arithmetic and their decoder (no header, no
  compression decision, no item walk - the floor a specialised codec can approach).
* ``encode <size>`` / ``decode <size>``: the codec alone (``pack_session`` / ``unpack_session``).
* ``item_size``: the capacity-unit walk over a session item, compiled vs python.
* ``compress <size>``: zlib-1 / zstd-1 / lz4 compress + decompress of the packed session; the
  write units it saves are in ``extra_info``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import msgpack
import msgspec
import pytest

from conftest import COMPRESSION_SESSIONS, SESSIONS, load_core
from dynamo_sessions import _core_py

SIZES = list(SESSIONS)
IMPLEMENTATIONS = ["compiled", "python", "msgpack", "msgspec"]
ITEM_KEY = {"id": {"S": "8f14e45fceea167a5a36dedd4bea2543b2b6d8e3f8bd14c0a3f0e6b2d3a1c9e7"},
            "expires": {"N": "1800000000"}}
OVERHEAD_BYTES = _core_py.item_size({**ITEM_KEY, "data": {"B": b""}})

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


def _item(payload: bytes) -> dict[str, Any]:
    return {**ITEM_KEY, "data": {"B": payload}}


def _units(size: int) -> int:
    return max(1, -(-size // 1024))


def _roundtrip(implementation: str) -> Callable[[dict[str, Any]], tuple[dict[str, Any], int]]:
    """encode + size check + decode; returns (decoded session, write units)."""
    if implementation in ("compiled", "python"):
        core = load_core(implementation)
        encode, decode = core.encode_session, core.decode_session
        item_size, write_units = core.item_size, core.write_units

        def run(session: dict[str, Any]) -> tuple[dict[str, Any], int]:
            payload = encode(session, OVERHEAD_BYTES)
            units = write_units(item_size(_item(payload)))
            return decode(payload), units

        return run
    if implementation == "msgpack":

        def run(session: dict[str, Any]) -> tuple[dict[str, Any], int]:
            payload = msgpack.packb(session, use_bin_type=True, datetime=True)
            units = _units(len(payload) + OVERHEAD_BYTES)
            return msgpack.unpackb(payload, timestamp=3), units

        return run

    def run(session: dict[str, Any]) -> tuple[dict[str, Any], int]:
        payload = _ENCODER.encode(session)
        units = _units(len(payload) + OVERHEAD_BYTES)
        return _DECODER.decode(payload), units

    return run


def _codec(implementation: str) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    if implementation in ("compiled", "python"):
        core = load_core(implementation)
        return core.pack_session, core.unpack_session
    if implementation == "msgpack":
        return (lambda s: msgpack.packb(s, use_bin_type=True, datetime=True),
                lambda b: msgpack.unpackb(b, timestamp=3))
    return _ENCODER.encode, _DECODER.decode


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", SIZES)
def test_roundtrip(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = f"roundtrip {size}"
    session = SESSIONS[size]()
    run = _roundtrip(implementation)
    decoded, units = benchmark(run, session)
    assert decoded == session
    if implementation in ("compiled", "python"):
        stored = _core_py.encode_session(session, OVERHEAD_BYTES)  # header, maybe compressed
    else:
        stored = _core_py.pack_session(session)
    assert units == _units(OVERHEAD_BYTES + len(stored))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_codec(benchmark: Any, direction: str, size: str, implementation: str) -> None:
    """Groups ``encode <size>`` and ``decode <size>``: the codec alone, one way."""
    benchmark.group = f"{direction} {size}"
    session = SESSIONS[size]()
    encode, decode = _codec(implementation)
    packed = _core_py.pack_session(session)
    if direction == "encode":
        assert benchmark(encode, session) == packed  # standard msgpack: the same bytes
    else:
        assert benchmark(decode, packed) == session


@pytest.mark.parametrize("size", SIZES)
def test_item_size(benchmark: Any, core: ModuleType, size: str) -> None:
    benchmark.group = f"item_size {size}"
    item = {**_item(_core_py.encode_session(SESSIONS[size](), OVERHEAD_BYTES)),
            "lock_owner": {"S": "req-1f3a"}, "lock_expires": {"N": "1700000123.25"},
            "version": {"N": "42"}, "tags": {"L": [{"S": "web"}, {"M": {"n": {"N": "1"}}}]}}
    size_bytes = benchmark(core.item_size, item)
    assert size_bytes == _core_py.item_size(item)


def _compressors() -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    import lz4.block
    import zstandard

    zstd_in, zstd_out = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
    return {
        "zlib-1": (lambda raw: zlib.compress(raw, 1), zlib.decompress),
        "zstd-1": (zstd_in.compress, zstd_out.decompress),
        "lz4": (lambda raw: lz4.block.compress(raw, store_size=True), lz4.block.decompress),
    }


@pytest.mark.parametrize("codec", ["zlib-1", "zstd-1", "lz4"])
@pytest.mark.parametrize("size", list(COMPRESSION_SESSIONS))
def test_compress(benchmark: Any, size: str, codec: str) -> None:
    """compress + decompress; extra_info has the write units before/after and saved per µs."""
    benchmark.group = f"compress {size}"
    raw = _core_py.pack_session(COMPRESSION_SESSIONS[size]())
    compress, decompress = _compressors()[codec]
    packed = compress(raw)
    assert benchmark(lambda: decompress(compress(raw))) == raw
    before = _units(len(raw) + 2 + OVERHEAD_BYTES)
    after = _units(len(packed) + 2 + OVERHEAD_BYTES)
    benchmark.extra_info.update(raw_bytes=len(raw), packed_bytes=len(packed),
                                units_before=before, units_after=after)
    if benchmark.stats is not None:  # None under --benchmark-disable
        median_us = benchmark.stats.stats.median * 1e6
        benchmark.extra_info["units_saved_per_us"] = round((before - after) / median_us, 4)
    assert after <= before
