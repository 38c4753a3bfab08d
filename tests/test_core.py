"""The session core, run against both implementations (``core`` fixture: compiled / python)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
from types import ModuleType

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_sessions import _core_py
from dynamo_sessions.errors import CorruptSession, SessionEncodeError

UTC = dt.timezone.utc

SESSION = {
    "user": "jeremy", "role": "admin", "n": 42, "neg": -(2**63), "big": 2**64 - 1,
    "pi": 3.5, "ok": True, "none": None, "raw": b"\x00\xff", "cart": [1, "two", [3.0]],
    "nested": {"a": {"b": {"c": []}}},
    "at": dt.datetime(2026, 11, 22, 12, 30, 1, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
}


def test_round_trip_every_supported_type(core: ModuleType) -> None:
    back = core.decode_session(core.encode_session(SESSION))
    assert back == SESSION
    assert back["at"].tzinfo is not None and back["at"].utcoffset() == dt.timedelta(0)


def test_tuples_come_back_as_lists(core: ModuleType) -> None:
    assert core.decode_session(core.encode_session({"t": (1, 2)})) == {"t": [1, 2]}


def test_output_is_standard_msgpack_and_same_in_both_twins(core: ModuleType) -> None:
    payload = core.encode_session(SESSION, compress=False)
    assert payload == _core_py.encode_session(SESSION, compress=False)
    assert msgpack.unpackb(payload[2:], raw=False, timestamp=3) == SESSION


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"obj": object()}, "obj"),
        ({"cart": [1, {"when": dt.datetime(2026, 1, 1)}]}, "cart[1].when"),
        ({"big": 2**64}, "big"),
        ({"m": {1: "x"}}, "m[1]"),
        ({"s": {"a", "b"}}, "s"),
    ],
)
def test_unsupported_value_names_its_key(core: ModuleType, data: dict[str, object],
                                        key: str) -> None:
    with pytest.raises(SessionEncodeError) as info:
        core.encode_session(data)
    assert info.value.key == key


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x81\xa1a\x01", b"\xc1\x10\x81\xa1a", b"\xc1\x20\x80", b"\xc1\x1f\x80",
     b"\xc1\x11garbage", b"\xc1\x10\x92\x01\x02", b"\xc1\x10\x81\x01\x01",
     b"\xc1\x10\x80\x00", b"\xc1\x10\x81\xa1a\xc7\x01\x05\x00"],
)
def test_malformed_bytes_raise_corrupt_session(core: ModuleType, payload: bytes) -> None:
    with pytest.raises(CorruptSession):
        core.decode_session(payload)


def test_non_bytes_payload_is_corrupt(core: ModuleType) -> None:
    with pytest.raises(CorruptSession):
        core.decode_session("not bytes")  # type: ignore[arg-type]


def test_compression_only_when_it_saves_write_units(core: ModuleType) -> None:
    small = {"token": "x" * 500}
    assert core.encode_session(small)[1] & 0x0F == 0  # fits one unit: never compressed
    repetitive = {"cart": [{"sku": "SKU-1", "qty": 1}] * 400}
    raw = core.encode_session(repetitive, compress=False)
    packed = core.encode_session(repetitive)
    assert packed[1] & 0x0F == 1
    assert core.write_units(len(packed)) < core.write_units(len(raw))
    assert core.decode_session(packed) == core.decode_session(raw)
    random_bytes = {"blob": os.urandom(3000)}  # incompressible: stays raw
    assert core.encode_session(random_bytes)[1] & 0x0F == 0


@pytest.mark.parametrize(("size", "wcu", "rcu", "rcu_eventual"),
                         [(0, 1, 1.0, 0.5), (1024, 1, 1.0, 0.5), (1025, 2, 1.0, 0.5),
                          (4096, 4, 1.0, 0.5), (4097, 5, 2.0, 1.0)])
def test_capacity_units(core: ModuleType, size: int, wcu: int, rcu: float,
                        rcu_eventual: float) -> None:
    assert core.write_units(size) == wcu
    assert core.read_units(size, True) == rcu
    assert core.read_units(size, False) == rcu_eventual


def test_backoff_seeded_schedules_match_across_twins(core: ModuleType) -> None:
    ours = core.LockRetryBackoff(1000, 50_000, 10.0, seed=7)
    twin = _core_py.LockRetryBackoff(1000, 50_000, 10.0, seed=7)
    delays = [ours.next_delay_microseconds() for _ in range(20)]
    assert delays == [twin.next_delay_microseconds() for _ in range(20)]
    assert all(1000 <= d <= 50_000 for d in delays)
    assert delays[0] == 1000  # exponential: the first delay is the minimum


def test_backoff_never_sleeps_past_the_deadline(core: ModuleType) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    backoff = core.LockRetryBackoff(10_000, 400_000, 1.0, mode="uniform", seed=1,
                                    clock=lambda: now[0], sleep=sleep)
    while backoff.wait():
        pass
    assert sum(slept) == pytest.approx(1.0)
    assert all(0 < s <= 0.4 for s in slept)
    assert backoff.wait() is False


def test_backoff_really_sleeps(core: ModuleType) -> None:
    import time

    backoff = core.LockRetryBackoff(20_000, 20_000, 1.0, seed=3)
    start = time.monotonic()
    assert backoff.wait()
    assert time.monotonic() - start >= backoff.slept_seconds == pytest.approx(0.02)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary()
    | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), values, max_size=8))
def test_property_round_trip_and_msgpack_cross_check(session: dict[str, object]) -> None:
    for core in _cores():
        payload = core.encode_session(session, compress=False)
        assert core.decode_session(payload) == session
        assert msgpack.unpackb(payload[2:], raw=False) == session
        assert core.decode_session(b"\xc1\x10" + msgpack.packb(session, use_bin_type=True)) \
            == session


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_property_arbitrary_bytes_only_raise_corrupt_session(data: bytes) -> None:
    for core in _cores():
        for payload in (data, b"\xc1\x10" + data, b"\xc1\x11" + data):
            with contextlib.suppress(CorruptSession):
                core.decode_session(payload)


def _cores() -> list[ModuleType]:
    cores: list[ModuleType] = [_core_py]
    try:
        from dynamo_sessions import _core_c  # type: ignore[attr-defined]

        cores.append(_core_c)
    except ImportError:
        pass
    return cores


def test_implementation_flag_matches_the_environment() -> None:
    """Fails when the compiled core was expected (CI) but did not load."""
    code = "import dynamo_sessions as d; print(d.IMPLEMENTATION)"
    forced = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "DYNAMO_SESSIONS_NO_EXTENSIONS": "1"}, check=True)
    assert forced.stdout.strip() == "python"
    from .conftest import REQUIRE_EXTENSIONS

    if REQUIRE_EXTENSIONS:
        import dynamo_sessions

        assert dynamo_sessions.IMPLEMENTATION == "compiled"
