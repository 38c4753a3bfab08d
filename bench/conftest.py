"""Realistic session dicts for the benchmarks, both core implementations, and the canned HTTP
answer of the benchmarks' stubbed transports.

The sessions are what web apps keep: a user profile, a CSRF token, flash messages, a cart, A/B
flags, timestamps.  Sizes are of the packed msgpack payload: small ~200 B, typical ~1 KB,
large ~8 KB (and 2-3 KB ones for compression).
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

UTC = dt.timezone.utc
_NOW = dt.datetime(2026, 11, 23, 19, 5, 42, 123456, tzinfo=UTC)


def _token(seed: int, length: int = 43) -> str:
    """A urlsafe-looking token (deterministic, so every run measures the same bytes)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    state = seed * 2654435761 % 2**32
    out = []
    for _ in range(length):
        state = (state * 1103515245 + 12345) % 2**31
        out.append(alphabet[state % 64])
    return "".join(out)


def _cart_item(i: int) -> dict[str, Any]:
    return {
        "sku": f"SKU-{10_000 + i * 37}",
        "name": f"Organic cotton t-shirt, size {'SMLX'[i % 4]}",
        "qty": 1 + i % 3,
        "unit_price": 19.99 + i,
        "added_at": _NOW - dt.timedelta(minutes=5 * i),
    }


def _signed_in(fresh: bool, id_seed: int, id_length: int, csrf_seed: int) -> dict[str, Any]:
    """What Flask-Login and a CSRF guard keep in a signed-in user's session."""
    return {
        "_user_id": "8213",
        "_fresh": fresh,
        "_id": _token(id_seed, id_length),
        "csrf_token": _token(csrf_seed),
    }


def small_session() -> dict[str, Any]:
    return {
        **_signed_in(True, 6, 64, 1),
        "locale": "en_US",
        "last_seen": _NOW,
        "visits": 17,
    }


def typical_session() -> dict[str, Any]:
    return {
        **_signed_in(False, 2, 40, 3),
        "user": {
            "id": 8213, "name": "Jeremy Lin", "email": "jeremy.lin@example.com",
            "roles": ["customer", "beta"], "plan": "pro", "verified": True,
            "tz": "Europe/Berlin", "avatar": None,
        },
        "prefs": {"theme": "dark", "currency": "EUR", "newsletter": False, "page_size": 25},
        "cart": [_cart_item(i) for i in range(4)],
        "flash": [
            {"category": "success", "message": "Your address was saved."},
            {"category": "info", "message": "Free shipping on orders over 50 EUR."},
        ],
        "ab": {"checkout_v2": "B", "search_ranker": "control"},
        "recently_viewed": [10_037, 10_074],
        "login_at": _NOW - dt.timedelta(hours=3),
        "last_seen": _NOW,
        "visits": 17,
    }


def large_session() -> dict[str, Any]:
    session = typical_session()
    session["cart"] = [_cart_item(i) for i in range(62)]
    session["recently_viewed"] = list(range(10_000, 10_000 + 100 * 37, 37))
    session["flash"] = session["flash"] * 3
    session["checkout_draft"] = {
        "shipping": {"name": "Jeremy Lin", "street": "Friedrichstraße 123", "zip": "10117",
                     "city": "Berlin", "country": "DE", "phone": "+49 30 1234567"},
        "billing_same": True,
        "notes": "Please leave the parcel with the neighbour on the 2nd floor. " * 4,
        "coupon": None,
    }
    session["search_history"] = [f"organic cotton shirt size {s}" for s in "SMLX" * 5]
    session["oauth"] = {"provider": "github", "access_token": _token(4, 40),
                        "refresh_token": _token(5, 60), "expires_at": _NOW}
    return session


def cart_session(items: int) -> dict[str, Any]:
    """A typical session with a fuller cart (2-3 KB for the compression measurements)."""
    session = typical_session()
    session["cart"] = [_cart_item(i) for i in range(items)]
    return session


SESSIONS = {"small": small_session, "typical": typical_session, "large": large_session}
"""The three sizes of the encode + size check + decode benchmarks."""
COMPRESSION_SESSIONS = {"2k": lambda: cart_session(18), "3k": lambda: cart_session(28),
                        "8k": large_session}
"""Sessions over one write unit, where compression may pay."""


def load_core(name: str) -> ModuleType:
    """The compiled (``_core_c``) or pure-Python (``_core_py``) core; a compiled core that does
    not import is an error here, unless DYNAMO_SESSIONS_NO_EXTENSIONS asks for the twin only."""
    if name == "compiled" and os.environ.get("DYNAMO_SESSIONS_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("DYNAMO_SESSIONS_NO_EXTENSIONS is set: no compiled rows")
    return importlib.import_module(
        "dynamo_sessions._core_c" if name == "compiled" else "dynamo_sessions._core_py"
    )


@pytest.fixture(params=["compiled", "python"], scope="session")
def core(request: pytest.FixtureRequest) -> ModuleType:
    """The compiled core or its pure-Python twin, so every figure has both rows."""
    return load_core(request.param)


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def canned_response(request: Any, body: bytes, request_id: str) -> AWSResponse:
    """A 200 DynamoDB answer carrying ``body``, for a botocore ``before-send`` handler (the
    benchmarks' stubbed transports: nothing is sent)."""
    return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0",
                                          "x-amzn-RequestId": request_id}, _Body(body))
