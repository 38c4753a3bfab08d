"""The twin's DynamoDB item-size and capacity-unit math.

Part of the pure-Python twin; its public names are re-exported by ``_core_py`` (import them from
there, or from ``_core``).  The compiled counterpart is ``ext/_units.pxi``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._rules import MAX_NUMBER_BYTES, READ_UNIT_BYTES, WRITE_UNIT_BYTES, documented

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

