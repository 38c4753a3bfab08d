"""Decoder fuzz: a million mutated payloads per core, typed errors only, bounded memory.

Mutations of valid encoded sessions (raw and zlib): bit flips, interesting bytes, truncations,
insertions, deletions, splices of two payloads, and length fields (str/bin/ext/array/map)
inflated past what remains; about a third are compressed after mutating, so that damaged
msgpack also reaches the decoder through the inflater, and some zlib streams are damaged
themselves.  Every decode must return a dict or raise CorruptSession - never MemoryError,
RecursionError, OverflowError, KeyError or any other exception.

Each core runs in a fresh interpreter whose peak resident memory (VmHWM) is reset before the
run, so that the decoder's is measured alone: the growth over the run must stay within the
stated bound (128 bytes per msgpack byte of the largest payload, tests/test_codec_limits.py)
plus a fixed allowance for the interpreter's allocator, which also catches a reference leak on
any error path.  The seed is fixed: a run is reproducible, and a failure prints the payloads
that failed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import zlib
from typing import Any

import pytest

from dynamo_sessions import _core_py

from .conftest import load_core

pytestmark = pytest.mark.slow

PAYLOADS_PER_CORE = 1_000_000
SEED = 8_2026
BYTES_PER_DECODED_BYTE = 128
ALLOCATOR_ALLOWANCE_BYTES = 8 * 1024 * 1024
UTC = dt.timezone.utc
INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC4, 0xC6,
               0xC7, 0xC9, 0xCA, 0xCB, 0xCF, 0xD3, 0xD4, 0xD6, 0xD8, 0xD9, 0xDB, 0xDC, 0xDD,
               0xDE, 0xDF, 0xE0, 0xFF]


def _session(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A small session using every msgpack form the encoder writes."""
    def leaf() -> Any:
        kind = rng.randrange(11)
        if kind == 0:
            return rng.choice([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**64 - 1, -1,
                               -33, -129, -32769, -(2**31) - 1, -(2**63)])
        if kind == 1:
            return rng.choice([0.5, -1e300, float("inf"), 1e-320])
        if kind == 2:
            return "é" * rng.randrange(3) + "x" * rng.choice([0, 5, 31, 32, 40])
        if kind == 3:
            return rng.randbytes(rng.choice([0, 3, 20]))
        if kind == 4:
            return rng.choice([
                dt.datetime(2026, 1, 1, tzinfo=UTC),  # timestamp 32
                dt.datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC),  # 64
                dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 1, 1, tzinfo=UTC),  # 96
            ])
        if kind == 5:
            return rng.choice([None, True, False])
        if kind == 6 and depth < 4:
            return _session(rng, depth + 1)
        if kind == 7 and depth < 4:
            return [leaf() for _ in range(rng.choice([0, 2, 16]))]  # fixarray / array16
        if kind == 8:
            return {f"k{i}": i for i in range(rng.choice([1, 16]))}  # fixmap / map16
        return rng.randrange(1000)

    return {f"key{i}": leaf() for i in range(rng.randint(1, 6))}


def _length_fields(body: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every length field in a valid msgpack body."""
    fields = []
    pos = 0
    widths = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4,
              0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4,
             0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
    while pos < len(body):
        c = body[pos]
        pos += 1
        if 0xA0 <= c <= 0xBF:
            pos += c & 0x1F
        elif c in fixed:
            pos += fixed[c]
        elif c in widths:
            width = widths[c]
            fields.append((pos, width))
            n = int.from_bytes(body[pos:pos + width], "big")
            pos += width
            if c < 0xDC:  # str / bin / ext: skip the data (an ext also has its type byte)
                pos += n + (0xC7 <= c <= 0xC9)
    return fields


def _pool(rng: random.Random) -> list[tuple[bytes, list[tuple[int, int]]]]:
    sessions = [_session(rng) for _ in range(60)]
    deep: Any = 1
    for _ in range(98):
        deep = [deep]
    sessions.append({"deep": deep})
    pool = []
    for session in sessions:
        payload = _core_py.encode_session(session, compress=False)
        pool.append((payload, [(offset + 2, width) for offset, width in
                               _length_fields(payload[2:])]))
    return pool


def _mutate(rng: random.Random, pool: list[tuple[bytes, list[tuple[int, int]]]]) -> bytes:
    payload, fields = pool[rng.randrange(len(pool))]
    data = bytearray(payload)
    for _ in range(1 + (rng.random() < 0.25) * rng.randrange(1, 4)):
        size = len(data)
        action = rng.randrange(8)
        if action <= 1 and size:  # bit flip
            data[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif action == 2 and size:
            data[rng.randrange(size)] = INTERESTING[rng.randrange(len(INTERESTING))]
        elif action == 3:
            del data[rng.randrange(size + 1):]
        elif action == 4:
            at = rng.randrange(size + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        elif action == 5 and size:
            at = rng.randrange(size)
            del data[at:at + rng.randint(1, 8)]
        elif action == 6:
            other = pool[rng.randrange(len(pool))][0]
            data = data[:rng.randrange(size + 1)] + other[rng.randrange(len(other) + 1):]
        elif fields:  # inflate a length field of the original layout
            offset, width = fields[rng.randrange(len(fields))]
            if offset + width <= len(data):
                old = int.from_bytes(data[offset:offset + width], "big")
                new = rng.choice([(1 << (8 * width)) - 1, old + 1, old * 2 + 1,
                                  len(data) - offset, (len(data) - offset) // 2 + 1])
                data[offset:offset + width] = min(new, (1 << (8 * width)) - 1).to_bytes(
                    width, "big")
    if len(data) >= 2 and rng.random() < 0.33:  # through the inflater
        deflated = bytearray(zlib.compress(bytes(data[2:]), 1))
        if rng.random() < 0.25 and deflated:  # damage the stream too
            deflated[rng.randrange(len(deflated))] ^= 1 << rng.randrange(8)
        return b"\xc1\x11" + bytes(deflated)
    return bytes(data)


def _decoded_bytes(payload: bytes) -> int:
    """How many msgpack bytes the decoder may read from this payload."""
    if payload[1:2] == b"\x11":
        inflater = zlib.decompressobj()
        try:
            return len(inflater.decompress(payload[2:], 1 << 21))
        except zlib.error:
            return 0
    return len(payload)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def _reset_peak_resident_bytes() -> int:
    """Reset the peak resident size (VmHWM) to the current one, and return it."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _status_bytes("VmRSS")


def fuzz(implementation: str, count: int, seed: int) -> dict[str, Any]:
    """Decode ``count`` mutated payloads; counts, failures and the peak-memory growth."""
    from dynamo_sessions.errors import CorruptSession

    core = load_core(implementation)
    rng = random.Random(seed)
    pool = _pool(rng)
    decode = core.decode_session
    for payload, _ in pool:  # warm up caches and allocator pools before measuring
        decode(payload)
    decoded = corrupt = largest = 0
    failures: list[tuple[str, str]] = []
    before = _reset_peak_resident_bytes()
    for _ in range(count):
        payload = _mutate(rng, pool)
        largest = max(largest, _decoded_bytes(payload))
        try:
            decode(payload)
            decoded += 1
        except CorruptSession:
            corrupt += 1
        except Exception as exc:  # MemoryError, RecursionError... are all Exceptions
            if len(failures) < 20:
                failures.append((payload.hex(), repr(exc)))
    after = _status_bytes("VmHWM")
    return {"decoded": decoded, "corrupt": corrupt, "failures": failures,
            "largest_decoded_bytes": largest, "peak_growth_bytes": after - before}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory from /proc: Linux")
@pytest.mark.parametrize("implementation", ["compiled", "python"])
def test_a_million_mutated_payloads_raise_only_corrupt_session_in_bounded_memory(
        implementation: str) -> None:
    load_core(implementation)  # skips (or fails under REQUIRE_EXTENSIONS) when not built
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import json, sys; from tests.test_fuzz import fuzz; "
            "print(json.dumps(fuzz(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))")
    result = subprocess.run(
        [sys.executable, "-c", code, implementation, str(PAYLOADS_PER_CORE), str(SEED)],
        capture_output=True, text=True, cwd=root, timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    print(implementation, report)
    assert report["failures"] == []
    assert report["decoded"] + report["corrupt"] == PAYLOADS_PER_CORE
    assert report["decoded"] > 1000 and report["corrupt"] > PAYLOADS_PER_CORE // 2
    bound = BYTES_PER_DECODED_BYTE * report["largest_decoded_bytes"] + ALLOCATOR_ALLOWANCE_BYTES
    assert report["peak_growth_bytes"] <= bound
