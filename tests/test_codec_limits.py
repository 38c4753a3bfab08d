"""The encoder refuses what the decoder refuses, and decoding is bounded by the payload's size.

Both cores (``core`` fixture) share one set of rules (``dynamo_sessions._rules``): a session the
encoder accepts always decodes back, and a stored item, however damaged, costs the decoder at
most a bounded number of objects and bytes - never a MemoryError, only CorruptSession.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_sessions import _core_py, _rules
from dynamo_sessions.errors import CorruptSession, SessionEncodeError, SessionTooLarge

from .conftest import load_core

UTC = dt.timezone.utc
EAST = dt.timezone(dt.timedelta(hours=23, minutes=59))
WEST = dt.timezone(dt.timedelta(hours=-23, minutes=-59))
BYTES_PER_DECODED_BYTE = 128
"""The stated memory bound: decoding n bytes of msgpack allocates at most 128 n bytes."""


def _cores() -> list[ModuleType]:
    return [load_core("compiled"), _core_py]


# --- A: the encoder refuses what the decoder would refuse -------------------------------------

OUT_OF_RANGE_DATETIMES = [
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),  # 0000-12-31T23:00Z
    dt.datetime(1, 1, 1, 23, 58, tzinfo=EAST),
    dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-1))),  # year 10000
    dt.datetime(9999, 12, 31, 0, 2, tzinfo=WEST),
]


@pytest.mark.parametrize("when", OUT_OF_RANGE_DATETIMES, ids=range(len(OUT_OF_RANGE_DATETIMES)))
def test_datetime_outside_utc_years_1_to_9999_is_refused_at_encode(core: ModuleType,
                                                                    when: dt.datetime) -> None:
    """It used to be written, and every later read of the session was CorruptSession."""
    session = {"ok": 1, "cart": [{"added": when}]}
    with pytest.raises(SessionEncodeError) as info:
        core.encode_session(session)
    assert info.value.key == "cart[0].added"
    with pytest.raises(SessionEncodeError) as twin:
        _core_py.encode_session(session)
    assert str(info.value) == str(twin.value)


IN_RANGE_EDGES = [
    dt.datetime(1, 1, 1, tzinfo=UTC),
    dt.datetime(1, 1, 1, 23, 59, tzinfo=EAST),  # 0001-01-01T00:00Z
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(9999, 12, 31, 0, 0, 59, 999999, tzinfo=WEST),  # 9999-12-31T23:59:59.999999Z
]


@pytest.mark.parametrize("when", IN_RANGE_EDGES, ids=range(len(IN_RANGE_EDGES)))
def test_datetimes_at_the_edges_of_the_range_round_trip(core: ModuleType,
                                                       when: dt.datetime) -> None:
    assert core.decode_session(core.encode_session({"t": when})) == {"t": when}


def test_session_over_the_packed_limit_is_refused_even_when_it_compresses(
        core: ModuleType) -> None:
    """A session over the limit that zlib shrinks to a few KB was written and then unreadable."""
    limit = _rules.MAX_PACKED_BYTES
    fits = {"z": b"\x00" * (limit - 9)}  # map(1) + fixstr "z" + bin32 header: 8 bytes
    assert len(core.pack_session(fits)) == limit - 1
    payload = core.encode_session(fits)
    assert payload[1] & 0x0F == _rules.CODEC_ZLIB and len(payload) < 8 * 1024
    assert core.decode_session(payload) == fits
    for too_large in ({"z": b"\x00" * (limit - 7)}, {"z": [0] * limit}):
        for encode in (core.encode_session, core.pack_session):
            with pytest.raises(SessionTooLarge) as info:
                encode(too_large)
            assert info.value.limit_bytes == limit
            assert info.value.size_bytes > limit


def test_decoder_refuses_more_than_the_encoder_can_write(core: ModuleType) -> None:
    limit = _rules.MAX_PACKED_BYTES
    body = b"\x81\xa1z\xc6" + (limit - 7).to_bytes(4, "big") + b"\x00" * (limit - 7)
    assert len(body) == limit + 1
    for payload in (b"\xc1\x11" + zlib.compress(body, 9), b"\xc1\x10" + body):
        with pytest.raises(CorruptSession):
            core.decode_session(payload)
    with pytest.raises(CorruptSession):
        core.unpack_session(body)
    assert core.decode_session(b"\xc1\x11" + zlib.compress(body[:4] + (limit - 8).to_bytes(
        4, "big") + body[8:-1], 9)) == {"z": b"\x00" * (limit - 8)}


# Sessions of every kind of value, including the values just outside each rule.
_edge_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=st.sampled_from([UTC, EAST, WEST, dt.timezone(dt.timedelta(hours=5))]),
) | st.sampled_from(OUT_OF_RANGE_DATETIMES)
_leaves = (st.none() | st.booleans() | st.floats() | st.text(max_size=6) | st.binary(max_size=6)
           | st.integers(_rules.INT_MIN - 2, _rules.INT_MAX + 2)
           | st.sampled_from([_rules.INT_MIN - 1, _rules.INT_MIN, _rules.INT_MAX,
                              _rules.INT_MAX + 1, "a\ud800"])
           | _edge_datetimes)
_values = st.recursive(
    _leaves,
    lambda children: st.lists(children, max_size=3) | st.tuples(children)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=10,
)


def _nest(value: Any, depth: int, as_dict: bool) -> Any:
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


_sessions = st.builds(
    lambda base, deep, depth, as_dict, blob: {**base, **({"deep": _nest(deep, depth, as_dict)}
                                                         if depth else {}), **blob},
    st.dictionaries(st.text(max_size=6), _values, max_size=5),
    _values, st.sampled_from([0, 0, 97, 98, 99, 100]), st.booleans(),
    st.sampled_from([{}] * 8 + [{"blob": b"\x01" * (_rules.MAX_PACKED_BYTES - 20)},
                     {"blob": b"\x01" * (_rules.MAX_PACKED_BYTES - 15)}]),
)


def _normal(value: Any) -> Any:
    """What a value decodes to: tuples as lists, datetimes in UTC."""
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).replace(fold=0)
    if isinstance(value, bytes) and len(value) > 64:
        return len(value), zlib.crc32(value)  # a short repr
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(item) for item in value]
    return value


@settings(max_examples=200, deadline=None)
@given(_sessions)
def test_property_every_encodable_session_round_trips_every_other_is_refused_at_encode(
        session: dict[str, Any]) -> None:
    outcomes = []
    for core in _cores():
        try:
            payload = core.encode_session(session)
        except (SessionEncodeError, SessionTooLarge) as exc:
            outcomes.append((type(exc), str(exc)))
            continue
        outcomes.append(payload)
        back = core.decode_session(payload)  # never CorruptSession for what was written
        assert repr(_normal(back)) == repr(_normal(session))  # repr: NaN-proof, exact
    assert outcomes[0] == outcomes[1]


# --- B: decoding is bounded by the payload ----------------------------------------------------


def _bombs() -> dict[str, bytes]:
    """Small items that made the decoders build far more than the item's size."""
    inflate = 64 * 1024 * 1024
    array = b"\x81\xa1a\xdd" + (inflate - 8).to_bytes(4, "big") + b"\x90" * (inflate - 8)
    nested = b"\x81\xa1a" + (b"\xdf" + (100_000).to_bytes(4, "big") + b"\xa0") * 99
    nested_lists = b"\x81\xa1a" + (b"\xdd" + (200_000).to_bytes(4, "big")) * 99
    return {
        "zlib 64 MiB of empty lists": b"\xc1\x11" + zlib.compress(array, 9),  # ~65 KB
        "99 nested maps claiming 100,000 entries": b"\xc1\x10" + nested.ljust(400_000, b"\xc0"),
        "99 nested lists claiming 200,000 items": b"\xc1\x10"
        + nested_lists.ljust(400_000, b"\xc0"),
    }


_BOMB_SCRIPT = textwrap.dedent("""
    import resource, sys, zlib
    from dynamo_sessions.errors import CorruptSession
    from tests.test_codec_limits import _bombs
    from tests.conftest import load_core
    payloads = _bombs()
    core = load_core(sys.argv[1])
    with open("/proc/self/status") as status:
        vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    headroom = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, vm + headroom))
    for name, payload in payloads.items():
        try:
            core.decode_session(payload)
            print(name, "decoded")
        except CorruptSession:
            print(name, "CorruptSession")
        except BaseException as exc:
            print(name, type(exc).__name__)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
@pytest.mark.parametrize("implementation", ["compiled", "python"])
def test_decompression_and_allocation_bombs_are_corrupt_under_a_memory_limit(
        implementation: str) -> None:
    """A 65 KB item used to cost 4.5 GB (MemoryError under a limit); now it is CorruptSession
    within BYTES_PER_DECODED_BYTE * MAX_INFLATED_BYTES of address space."""
    headroom = BYTES_PER_DECODED_BYTE * _rules.MAX_INFLATED_BYTES + 32 * 1024 * 1024
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT, implementation, str(headroom)],
        capture_output=True, text=True, cwd=root, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{name} CorruptSession" for name in _bombs()]


def _peak_bytes(decode: Any, payload: bytes) -> int:
    tracemalloc.start()
    try:
        with contextlib.suppress(CorruptSession):
            decode(payload)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _worst_cases(size: int) -> dict[str, bytes]:
    """msgpack bodies of about ``size`` bytes that build the most memory per byte."""
    n = size - 8
    return {
        "empty lists": b"\x81\xa1a\xdd" + n.to_bytes(4, "big") + b"\x90" * n,
        "empty maps": b"\x81\xa1a\xdd" + n.to_bytes(4, "big") + b"\x80" * n,
        "one-entry maps": b"\x81\xa1a\xdd" + (n // 3).to_bytes(4, "big")
        + b"\x81\xa0\xc0" * (n // 3),
        "two-byte strings": b"\x81\xa1a\xdd" + (n // 3).to_bytes(4, "big") + b"\xa2ab" * (n // 3),
        "timestamps": b"\x81\xa1a\xdd" + (n // 6).to_bytes(4, "big")
        + b"\xd6\xff\x00\x00\x00\x01" * (n // 6),
        "nested claims": (b"\x81\xa1a" + (b"\xdf" + (n // 4).to_bytes(4, "big") + b"\xa0") * 99
                          ).ljust(size, b"\xc0"),
        "nested list claims": (b"\x81\xa1a" + (b"\xdd" + (n // 2).to_bytes(4, "big")) * 99
                               ).ljust(size, b"\xc0"),
    }


@pytest.mark.parametrize("shape", list(_worst_cases(64)))
def test_memory_while_decoding_is_at_most_128_bytes_per_msgpack_byte(core: ModuleType,
                                                                    shape: str) -> None:
    size = 200_000
    body = _worst_cases(size)[shape]
    for payload in (b"\xc1\x10" + body, b"\xc1\x11" + zlib.compress(body, 9)):
        peak = _peak_bytes(core.decode_session, payload)
        assert peak <= BYTES_PER_DECODED_BYTE * len(body) + 64 * 1024, (shape, peak)
