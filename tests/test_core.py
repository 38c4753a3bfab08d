"""The session core, run against both implementations (``core`` fixture: compiled / python)."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import inspect
import math
import os
import struct
import subprocess
import sys
import types
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_sessions import _core, _core_py, _rules
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


aware_datetimes = st.datetimes(
    timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                               dt.timezone(dt.timedelta(hours=-8))]),
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary()
    | st.floats(allow_nan=False) | aware_datetimes,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
sessions = st.dictionaries(st.text(max_size=10), values, max_size=8)


def _unpack_like_the_twin(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, timestamp=3)


@settings(max_examples=150, deadline=None)
@given(sessions)
def test_property_round_trip_and_msgpack_cross_check(session: dict[str, object]) -> None:
    """Both twins write the same bytes, which the msgpack package reads back as the session;
    both read msgpack's own bytes as msgpack does."""
    twin_payload = _core_py.encode_session(session, compress=False)
    for core in _cores():
        payload = core.encode_session(session, compress=False)
        assert payload == twin_payload
        assert core.decode_session(payload) == session
        assert _unpack_like_the_twin(payload[2:]) == session
        theirs = msgpack.packb(session, use_bin_type=True, datetime=True)
        assert core.unpack_session(theirs) == _unpack_like_the_twin(theirs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_property_arbitrary_bytes_only_raise_corrupt_session(data: bytes) -> None:
    """Any bytes: a session (a dict) or CorruptSession - the same in both twins - and bytes
    without the header are never a session."""
    for core in _cores():
        for payload in (data, b"\xc1\x10" + data, b"\xc1\x11" + data):
            outcome = _decode_outcome(core, payload)
            assert outcome is CorruptSession or type(outcome) is dict
            assert repr(outcome) == repr(_decode_outcome(_core_py, payload))  # NaN-proof
        if data[:1] != b"\xc1":
            assert _decode_outcome(core, data) is CorruptSession


def _decode_outcome(core: ModuleType, payload: bytes) -> Any:
    try:
        return core.decode_session(payload)
    except CorruptSession:
        return CorruptSession


@settings(max_examples=200, deadline=None)
@given(sessions, st.data())
def test_property_mutated_payloads_decode_alike_or_are_corrupt(
    session: dict[str, object], data: st.DataObject
) -> None:
    """Flipped, cut and spliced bytes of real payloads (plain and zlib): CorruptSession or the
    same dict in both twins - never another exception."""
    compressed = data.draw(st.booleans())
    payload = bytearray(_core_py.encode_session(session, compress=False))
    if compressed:
        payload = bytearray(b"\xc1\x11" + zlib.compress(bytes(payload[2:]), 1))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, max(0, len(payload) - 1)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if action == "flip" and payload:
            payload[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del payload[position:]
        elif action == "insert":
            payload[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif payload:
            del payload[position]
    outcomes = [repr(_decode_outcome(core, bytes(payload))) for core in _cores()]  # NaN-proof
    assert all(outcome == outcomes[0] for outcome in outcomes)


# --- both twins agree: API, bytes, errors ---------------------------------------------------

PUBLIC_FUNCTIONS = ["encode_session", "decode_session", "pack_session", "unpack_session",
                    "item_size", "attribute_value_size", "number_size", "write_units",
                    "read_units"]
PUBLIC_CONSTANTS = ["MAX_ITEM_BYTES", "WRITE_UNIT_BYTES", "READ_UNIT_BYTES", "PAYLOAD_MAGIC",
                    "FORMAT_VERSION", "CODEC_NONE", "CODEC_ZLIB", "HEADER_BYTES", "MAX_DEPTH",
                    "MAX_INFLATED_BYTES", "ZLIB_LEVEL", "BACKOFF_MODES", "MAX_PACKED_BYTES",
                    "MAX_NUMBER_BYTES"]
BACKOFF_API = ["start", "next_delay_microseconds", "remaining_seconds", "wait"]


def test_public_names_docstrings_and_signatures_match_the_twin(core: ModuleType) -> None:
    for name in PUBLIC_FUNCTIONS:
        ours, twin = getattr(core, name), getattr(_core_py, name)
        assert ours.__doc__ == twin.__doc__, name
        ours_params = [(p.name, p.kind, p.default)
                       for p in inspect.signature(ours).parameters.values()]
        twin_params = [(p.name, p.kind, p.default)
                       for p in inspect.signature(twin).parameters.values()]
        assert ours_params == twin_params, name
    for name in PUBLIC_CONSTANTS:
        assert getattr(core, name) == getattr(_core_py, name), name
    assert core.LockRetryBackoff.__doc__ == _core_py.LockRetryBackoff.__doc__
    for name in BACKOFF_API:
        assert getattr(core.LockRetryBackoff, name).__doc__ == \
            getattr(_core_py.LockRetryBackoff, name).__doc__, name
    assert all(hasattr(_core, name) for name in PUBLIC_FUNCTIONS)


def _outcome(function: Callable[..., Any], *args: Any) -> Any:
    """The result, or the error as (type, message, key) - to compare the twins."""
    try:
        return function(*args)
    except Exception as exc:
        return type(exc), str(exc), getattr(exc, "key", None)


class Color(enum.IntEnum):
    RED = 1


class Shade(str, enum.Enum):
    DARK = "dark"


class Money(float):
    pass


class Cart(list):  # type: ignore[type-arg]
    pass


class Flags(dict):  # type: ignore[type-arg]
    pass


class Blob(bytes):
    pass


class Moment(dt.datetime):
    pass


Point = collections.namedtuple("Point", "x y")


def _reordered() -> collections.OrderedDict[str, int]:
    ordered = collections.OrderedDict(a=1, b=2, c=3)
    ordered.move_to_end("a")  # items() order now differs from the dict's storage order
    return ordered


SUBCLASS_SESSIONS = [
    {"color": Color.RED, "shade": Shade.DARK, "price": Money(9.5), "cart": Cart([1, Cart([2])])},
    {"flags": Flags(a=1, b=Flags(c=[])), "ordered": _reordered(), "blob": Blob(b"\x00")},
    {"point": Point(1, 2), "at": Moment(2026, 1, 1, tzinfo=UTC)},
    {"counts": collections.Counter("aab"), "dd": collections.defaultdict(list, a=[1])},
    Flags(top="level"),
    _reordered(),
    types.MappingProxyType({"read": "only"}),
]


@pytest.mark.parametrize("session", SUBCLASS_SESSIONS, ids=range(len(SUBCLASS_SESSIONS)))
def test_subclasses_and_mappings_are_encoded_like_the_twin(core: ModuleType,
                                                          session: Any) -> None:
    """Subclasses of str/int/float/bytes/dict/list/tuple/datetime are stored as their base
    type (a dict subclass in its own items() order); any Mapping is accepted at the top."""
    payload = core.encode_session(session, compress=False)
    assert payload == _core_py.encode_session(session, compress=False)
    assert core.decode_session(payload) == _core_py.decode_session(payload)


UNSUPPORTED = [
    {"obj": object()},
    {"cart": [1, {"when": dt.datetime(2026, 1, 1)}]},
    {"d": {"x": [dt.date(2026, 1, 1)]}},
    {"big": 2**64}, {"small": -(2**63) - 1}, {"deep": [[2**70]]},
    {"m": {1: "x"}}, {"m": {(1, 2): "x"}}, {"m": {b"k": 1}}, {"m": {None: 1}},
    {1: "top"},
    {"s": {"a", "b"}}, {"ba": bytearray(b"x")}, {"mv": memoryview(b"x")},
    {"proxy": types.MappingProxyType({"a": 1})}, {"c": 1 + 2j}, {"f": frozenset()},
    {"surrogate": "a\ud800b"}, {"list": ["ok", "\udfff"]}, {"k": {"\ud800": 1}},
    {"a": "\ud800", "b": object()},  # the twin checks types before text: "b" is named
    {"a": 2**64, "b": object()},
    {"nested": {"tz": dt.datetime(2026, 1, 1, tzinfo=None), "ok": 1}},
    [("not", "a mapping")], "text", None, 42,
]


def _nested(depth: int, container: str) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value} if container == "dict" else [value]
    return {"top": value}


TOO_DEEP = [_nested(99, "dict"), _nested(99, "list"), _nested(100, "dict"), _nested(100, "list")]


@pytest.mark.parametrize("session", [*UNSUPPORTED, *TOO_DEEP],
                         ids=range(len(UNSUPPORTED) + len(TOO_DEEP)))
def test_errors_match_the_twin(core: ModuleType, session: Any) -> None:
    """The same SessionEncodeError (message and key path) as the twin, for every failure."""
    ours = _outcome(core.encode_session, session)
    assert ours == _outcome(_core_py.encode_session, session)
    assert _outcome(core.pack_session, session) == _outcome(_core_py.pack_session, session)


def test_depth_limit(core: ModuleType) -> None:
    assert core.decode_session(core.encode_session(_nested(99, "list"))) == _nested(99, "list")
    with pytest.raises(SessionEncodeError) as info:
        core.encode_session(_nested(100, "dict"))
    assert info.value.key == "top" + ".k" * 99
    too_deep = b"\xc1\x10\x81\xa1k" + b"\x91" * 100 + b"\x01"
    with pytest.raises(CorruptSession):
        core.decode_session(too_deep)
    just_deep_enough = too_deep[:5] + too_deep[6:]  # the map and 99 lists: 100 levels
    assert core.decode_session(just_deep_enough) == {"k": _nested(99, "list")["top"]}


INT_EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
             2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1,
             -(2**63)]


def _datetime_edges() -> list[dt.datetime]:
    return [
        dt.datetime(1970, 1, 1, tzinfo=UTC),  # timestamp 32
        dt.datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC),  # 2**32 - 1: still 32
        dt.datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),  # 64
        dt.datetime(2026, 11, 23, 19, 0, 0, 1, tzinfo=UTC),  # nanoseconds: 64
        dt.datetime(2514, 5, 30, 1, 53, 4, tzinfo=UTC),  # past 2**34 s: 96
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # negative: 96
        dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59, 999999,
                                                      tzinfo=UTC),
        dt.datetime(1, 1, 1, 23, tzinfo=dt.timezone(dt.timedelta(hours=23))),
        dt.datetime(2026, 3, 29, 2, 30,
                    tzinfo=dt.timezone(dt.timedelta(seconds=-1, microseconds=7))),
        dt.datetime(2000, 2, 29, 12, tzinfo=dt.timezone(dt.timedelta(hours=-12))),
    ]


def test_every_msgpack_form_is_byte_identical_to_the_twin(core: ModuleType) -> None:
    """Smallest int forms, str/bin/array/map length classes, floats, timestamp 32/64/96."""
    session: dict[str, Any] = {
        "ints": INT_EDGES,
        "strs": ["", "x" * 31, "x" * 32, "é" * 127, "x" * 255, "x" * 256, "x" * 65535,
                 "x" * 65536, "✓𝄞"],
        "bins": [b"", b"x" * 255, b"x" * 256, b"x" * 65535, b"x" * 65536],
        "lists": [[0] * 15, [0] * 16, [0] * 65535, [0] * 65536, ()],
        "maps": [{str(i): i for i in range(n)} for n in (0, 15, 16, 65536)],
        "floats": [0.0, -0.0, 1.5, 1e308, 5e-324, math.inf, -math.inf],
        "when": _datetime_edges(),
    }
    payload = core.encode_session(session, compress=False)
    assert payload == _core_py.encode_session(session, compress=False)
    back = core.decode_session(payload)
    assert back == _unpack_like_the_twin(payload[2:])
    assert back["when"] == session["when"]
    nan = core.pack_session({"nan": math.nan})
    assert nan == _core_py.pack_session({"nan": math.nan})
    assert math.isnan(core.unpack_session(nan)["nan"])


def test_float32_and_old_raw_strings_decode_like_msgpack(core: ModuleType) -> None:
    raw = b"\x82\xa1f\xca" + struct.pack(">f", 1.25) + b"\xa1s\xda\x00\x02ab"
    assert core.unpack_session(raw) == {"f": 1.25, "s": "ab"} == _core_py.unpack_session(raw)


@pytest.mark.parametrize(
    "body",
    [
        b"\x81\xa1a\xd6\xff", b"\x81\xa1a\xd5\xff\x00\x00",  # truncated / 2-byte timestamp
        b"\x81\xa1a\xd7\xff" + ((10**9) << 34 | 5).to_bytes(8, "big"),  # ns >= 10**9
        b"\x81\xa1a\xc7\x0c\xff" + b"\x00" * 4 + (2**62).to_bytes(8, "big"),  # past 9999
        b"\x81\xa1a\xc7\x0c\xff" + b"\x00" * 4 + (-(2**62)).to_bytes(8, "big", signed=True),
        b"\x81\xa1a\xc7\x04\x05\x00\x00\x00\x00",  # other ext type
        b"\x81\xa1a\xc1", b"\x81\xa1a\xdd\xff\xff\xff\xff", b"\x81\xa1a\xdf\x00\x01\x00\x00",
        b"\x81\xa1a\xdb\xff\xff\xff\xff", b"\x81\xa1a\xc6\x00\x00\x00\x09abc",
        b"\x81\xa2\xc3\x28\x01", b"\x81\xa1a\xa3\xed\xa0\x80",  # invalid UTF-8, surrogate
        b"\x81\xc4\x01k\x01", b"\x81\x01\x01", b"\x81\xc0\x01", b"\x81\x91\x01\x01",
        b"\x91\x01", b"\xa1a", b"\x01", b"\x80\x80", b"",
        b"\xde\x00\x02\xa1a\x01",
    ],
)
def test_unpack_rejects_what_msgpack_or_the_twin_rejects(core: ModuleType, body: bytes) -> None:
    with pytest.raises(CorruptSession):
        core.unpack_session(body)
    with pytest.raises(CorruptSession):
        _core_py.unpack_session(body)


def test_timestamp_forms_decode_like_msgpack(core: ModuleType) -> None:
    for when in _datetime_edges():
        for body in (msgpack.packb({"t": when}, datetime=True),
                     _core_py.pack_session({"t": when})):
            assert core.unpack_session(body) == _unpack_like_the_twin(body)
    ext8_form = b"\x81\xa1t\xc7\x04\xff\x00\x00\x00\x01"  # timestamp 32 in an ext 8
    assert core.unpack_session(ext8_form) == _unpack_like_the_twin(ext8_form)


def test_buffers_of_every_kind_decode_alike(core: ModuleType) -> None:
    payload = core.encode_session(SESSION)
    doubled = bytes(b for byte in payload for b in (byte, 0))
    for given_payload in (payload, bytearray(payload), memoryview(payload),
                          memoryview(doubled)[::2], memoryview(b"xx" + payload)[2:]):
        assert core.decode_session(given_payload) == SESSION
        assert core.unpack_session(given_payload[2:]) == SESSION
    for bad in (memoryview(b"\x00" * 8).cast("I"), memoryview(b"\xc1\x10\x80").cast("B", (1, 3))):
        with pytest.raises(CorruptSession):
            core.decode_session(bad)
    released = memoryview(payload)
    released.release()
    for decode in (core.decode_session, core.unpack_session):
        with pytest.raises(CorruptSession):
            decode(released)
    for not_bytes in ("text", 42, None, memoryview(b"\x81\xa1a\x01\x00\x00").cast("H")):
        with pytest.raises(CorruptSession):
            core.unpack_session(not_bytes)


def test_zlib_payloads_are_bounded_and_checked(core: ModuleType) -> None:
    body = _core_py.pack_session({"a": "x" * 1000})
    ok = b"\xc1\x11" + zlib.compress(body, 1)
    assert core.decode_session(ok) == {"a": "x" * 1000}
    for bad in (ok[:-1], ok + b"\x00", b"\xc1\x11garbage", b"\xc1\x11" + zlib.compress(b"\x01")):
        with pytest.raises(CorruptSession):
            core.decode_session(bad)


# --- item size: the compiled walk agrees with the twin ----------------------------------------

number_text = st.one_of(
    st.text(alphabet="0123456789+-.eE", max_size=12),
    st.builds(lambda sign, i, f, e: f"{sign}{i}{f}{e}",
              st.sampled_from(["", "-", "+"]), st.from_regex(r"[0-9]{0,40}", fullmatch=True),
              st.sampled_from(["", "."]) | st.from_regex(r"\.[0-9]{0,40}", fullmatch=True),
              st.sampled_from([""]) | st.from_regex(r"[eE][+-]?[0-9]{1,25}", fullmatch=True)),
)


@settings(max_examples=300, deadline=None)
@given(number_text)
def test_property_number_size_matches_the_twin(text: str) -> None:
    expected = _outcome(_core_py.number_size, text)
    for core in _cores():
        assert _outcome(core.number_size, text) == expected


attribute_values = st.recursive(
    st.builds(lambda s: {"S": s}, st.text(max_size=20))
    | st.builds(lambda b: {"B": b}, st.binary(max_size=20))
    | st.builds(lambda n: {"N": str(n)}, st.integers() | st.floats(allow_nan=False,
                                                                    allow_infinity=False))
    | st.builds(lambda b: {"BOOL": b}, st.booleans()) | st.just({"NULL": True})
    | st.builds(lambda ss: {"SS": ss}, st.lists(st.text(max_size=5), max_size=3))
    | st.builds(lambda ns: {"NS": [str(n) for n in ns]}, st.lists(st.integers(), max_size=3))
    | st.builds(lambda bs: {"BS": bs}, st.lists(st.binary(max_size=5), max_size=3)),
    lambda children: st.builds(lambda items: {"L": items}, st.lists(children, max_size=3))
    | st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), attribute_values, max_size=5))
def test_property_item_size_matches_the_twin(item: dict[str, Any]) -> None:
    expected = _core_py.item_size(item)
    for core in _cores():
        assert core.item_size(item) == expected


# Sizes DynamoDB Local charged (tests/test_item_size_dynamodb_local.py measures them at unit
# boundaries): a negative number whose digits fill all 20 base-100 pairs has no terminator.
MEASURED_NUMBER_SIZES = [
    ("0", 1), ("-0", 1), ("1", 2), ("-1", 3), ("-123", 4), ("-0.5", 3), (".5", 2), ("5.", 2),
    ("1E-130", 2), ("-1E-130", 3), ("9.9999999999999999999999999999999999999E+125", 20),
    ("-9.9999999999999999999999999999999999999E+125", 21), ("-" + "1" * 37, 21),
    ("-" + "1" * 36, 20), ("-3.2816838659626943959804484237041101727", 21),
    ("-32.816838659626943959804484237041101727", 21),
    ("-1.0000000000000000000000000000000000001", 21),
    ("-0.0005208093972980635139693716487059640235", 21),
    ("-8.529196110011284036545326151675810026E-112", 21),
    ("-100000000000000000000000000000000000010", 21), ("-241777.631", 7),
    ("-17439.15000806360837783533740", 16), ("+0.2586834497869073662", 11),
    ("+1682.88360759838675650889957903289218", 19), ("1.70434E-41", 4),
]


@pytest.mark.parametrize(("text", "size"), MEASURED_NUMBER_SIZES)
def test_number_size_is_what_dynamodb_local_charged(core: ModuleType, text: str,
                                                    size: int) -> None:
    assert core.number_size(text) == size


@pytest.mark.parametrize(
    "value",
    [{"S": "a\ud800"}, {"S": "é✓𝄞"}, {"B": bytearray(b"abc")}, {"B": memoryview(b"abcd")},
     {"B": "text"}, {"B": "\ud800"}, {"L": ({"N": "1"},)}, {"M": types.MappingProxyType({})},
     {"M": []}, {"L": 5}, {"N": 5}, {"S": b"x"}, {"X": "?"}, {"SS": "abc"}, {},
     {"S": "a", "N": "1"}, [], types.MappingProxyType({"N": "12"}),
     {"N": "1e999999999999999999999999"}, {"N": "\u0661"}, {"N": " 1"}, {"N": "1 "},
     {"N": "1_0"}, {"N": "0x10"}, {"N": "."}],
)
def test_attribute_value_size_edge_cases_match_the_twin(core: ModuleType, value: Any) -> None:
    assert _outcome(core.attribute_value_size, value) == \
        _outcome(_core_py.attribute_value_size, value)
    item = {"name": value}
    assert _outcome(core.item_size, item) == _outcome(_core_py.item_size, item)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 4097, 2**62, 2**70, -1, 1.5,
                                  True])
def test_units_match_the_twin_for_any_size(core: ModuleType, size: Any) -> None:
    assert _outcome(core.write_units, size) == _outcome(_core_py.write_units, size)
    for consistent in (True, False, None, 1):
        assert _outcome(core.read_units, size, consistent) == \
            _outcome(_core_py.read_units, size, consistent)


@pytest.mark.parametrize(
    ("low", "high", "mode", "seed"),
    [(0, 0, "exponential", 1), (0, 50_000, "exponential", 2), (1, 2**63, "exponential", -5),
     (10, 2**64 - 1, "uniform", 2**80 + 3), (0, 2**64 - 1, "uniform", 9), (7, 7, "uniform", 0)],
)
def test_backoff_schedules_match_the_twin_at_the_edges(core: ModuleType, low: int, high: int,
                                                       mode: str, seed: int) -> None:
    ours = core.LockRetryBackoff(low, high, 1.0, mode=mode, seed=seed)
    twin = _core_py.LockRetryBackoff(low, high, 1.0, mode=mode, seed=seed)
    assert [ours.next_delay_microseconds() for _ in range(70)] == \
        [twin.next_delay_microseconds() for _ in range(70)]
    assert (ours.attempt, ours.mode, ours.min_retry_microseconds, ours.max_retry_microseconds,
            ours.max_wait_seconds) == (twin.attempt, twin.mode, twin.min_retry_microseconds,
                                       twin.max_retry_microseconds, twin.max_wait_seconds)


@pytest.mark.parametrize("args", [(-1, 5), (5, 4), (1, 2, -1.0), (1, 2, math.nan),
                                  (1, 2, 1.0, "linear")])
def test_backoff_rejects_bad_arguments_like_the_twin(core: ModuleType, args: tuple[Any, ...]
                                                     ) -> None:
    assert _outcome(core.LockRetryBackoff, *args)[:2] == \
        _outcome(_core_py.LockRetryBackoff, *args)[:2]


def test_rules_come_from_the_one_shared_module(core: ModuleType) -> None:
    """Each core's constants are _rules' own objects and its docstrings _rules.DOCS: a rule
    copied into a core (a second 1_048_576, a second text) fails here."""
    for name in PUBLIC_CONSTANTS:
        assert getattr(core, name) is getattr(_rules, name), name
    for name, doc in _rules.DOCS.items():
        assert getattr(core, name).__doc__ == doc, name


@pytest.mark.parametrize("args", [(-1, 5), (5, 4), (1, 2, -1.0), (1, 2, math.nan),
                                  (1, 2, 1.0, "linear")])
def test_backoff_checks_arguments_after_good_ones_too(core: ModuleType,
                                                      args: tuple[Any, ...]) -> None:
    """The compiled core keeps the last arguments it checked: other ones are checked again."""
    core.LockRetryBackoff(1, 2, 1.0, "uniform", 1)
    with pytest.raises(ValueError):
        core.LockRetryBackoff(*args)


def test_backoff_settings_follow_each_construction_like_the_twin(core: ModuleType) -> None:
    """Alternating, repeated and equal-but-distinct arguments (int / float / bool / str
    subclass) give the settings and delays the twin gives for each construction."""

    class Mode(str):
        pass

    arguments: list[tuple[Any, ...]] = [
        (1000, 50_000, 10.0, "uniform"), (1000, 50_000, 10.0, "uniform"),
        (1000, 50_000, 10.0, "exponential"), (10**3, 5 * 10**4, 10, "exponential"),
        (True, 50_000, 10.0, "uniform"), (1000, 50_000, 2.5, Mode("uniform")),
        (1000, 60_000, 10.0, "uniform"), (1000, 50_000, 10.0, "uniform"),
    ]
    for args in arguments:
        ours = core.LockRetryBackoff(*args, seed=11)
        twin = _core_py.LockRetryBackoff(*args, seed=11)
        assert (ours.min_retry_microseconds, ours.max_retry_microseconds, ours.max_wait_seconds,
                ours.mode) == (twin.min_retry_microseconds, twin.max_retry_microseconds,
                               twin.max_wait_seconds, twin.mode), args
        assert [ours.next_delay_microseconds() for _ in range(8)] == \
            [twin.next_delay_microseconds() for _ in range(8)], args


def _cores() -> list[ModuleType]:
    """The twin and the compiled core, for the tests comparing them.  A compiled core that does
    not load fails the test unless ``DYNAMO_SESSIONS_NO_EXTENSIONS`` asks for the twin alone:
    silently dropping it would compare the twin with itself."""
    try:
        from dynamo_sessions import _core_c  # type: ignore[attr-defined]
    except ImportError as exc:
        if _core.NO_EXTENSIONS:
            return [_core_py]
        pytest.fail(f"the compiled core did not load ({exc}): build it (python3 setup.py "
                    "build_ext --inplace) or set DYNAMO_SESSIONS_NO_EXTENSIONS=1")
    assert _core_c is not _core_py
    return [_core_py, _core_c]


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
