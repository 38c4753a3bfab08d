"""The requests the store sends, scenario by scenario, recorded as golden transcripts.

The transcripts in ``tests/protocol_golden/`` were recorded with the store as it was before it
became a protocol run by a driver (``python3 -m tests.protocol_golden_scenarios``);
``test_protocol_golden.py`` runs the same scenarios on today's code and compares every request
(API name and parameters, as botocore was given them), every lock-wait sleep and every
outcome.  Random tokens (lock, write, backoff jitter) come from a seeded source and the time
from a test clock, so a transcript is exact; the one scenario on the ``ServerClock`` blanks
the epoch times it sends.  A fix that changes a request on purpose re-records them (the
command above) and names each changed request in its commit message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.store import LoadedSession, SessionStore

from .conftest import make_table
from .handler_support import Clock, FakeTimer

GOLDEN = Path(__file__).parent / "protocol_golden"
MODES = ["none", "optimistic", "pessimistic"]
START = 1_800_000_000.25
A, B = "session-a", "session-b"


@contextlib.contextmanager
def seeded_secrets() -> Iterator[None]:
    """``secrets.token_urlsafe`` / ``token_bytes`` / ``randbits`` drawn from a counter."""
    counter = itertools.count()

    def draw(size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(f"golden-{next(counter)}".encode()).digest()
        return out[:size]

    saved = secrets.token_urlsafe, secrets.token_bytes, secrets.randbits
    secrets.token_urlsafe = lambda size=32: base64.urlsafe_b64encode(  # type: ignore[assignment]
        draw(size or 32)).rstrip(b"=").decode()
    secrets.token_bytes = lambda size=32: draw(size or 32)  # type: ignore[assignment]
    secrets.randbits = lambda bits: int.from_bytes(draw((bits + 7) // 8), "big")
    try:
        yield
    finally:
        secrets.token_urlsafe, secrets.token_bytes, secrets.randbits = saved  # type: ignore[assignment]


def jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def blank_times(value: Any) -> Any:
    """Epoch seconds / milliseconds in number attributes become ``<time>``."""
    if isinstance(value, dict):
        if set(value) == {"N"} and isinstance(value["N"], str) and len(value["N"]) >= 10:
            return {"N": "<time>"}
        return {key: blank_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [blank_times(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**9:
        return "<time>"
    return value


def outcome(result: Any) -> Any:
    if isinstance(result, LoadedSession):
        return {"data": result.data, "expires": result.expires, "version": result.version,
                "existed": result.existed, "locked": result.lock_token is not None,
                "moved": result.moved, "item_exists": result.item_exists,
                "lifetime_seconds": result.lifetime_seconds}
    return result


class Run:
    """One scenario's store and what it sent."""

    def __init__(self, session: boto3.session.Session, table: str, mode: str,
                 server_clock: bool = False, **options: Any) -> None:
        self.client = session.client("dynamodb", config=Config(retries={"mode": "standard"}))
        self.setup = session.client("dynamodb")
        self.table = table
        self.clock = Clock()
        self.clock.now = START
        config = SessionConfig(table_name=table, locking=mode, **options)
        self.store: SessionStore = create_store(config, self.client, session_name="S",
                                                clock=None if server_clock else self.clock)
        self.timer = FakeTimer().install(self.store)
        self.sent: list[Any] = []
        self.client.meta.events.register("provide-client-params.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append({"api": model.name, "params": jsonable(params)})

    def op(self, name: str, call: Callable[[], Any]) -> Any:
        sleeps = len(self.timer.sleeps)
        try:
            result = call()
        except Exception as exc:
            self.sent.append({"op": name, "raised": type(exc).__name__,
                              "sleeps": self.timer.sleeps[sleeps:]})
            return exc
        self.sent.append({"op": name, "result": jsonable(outcome(result)),
                          "sleeps": self.timer.sleeps[sleeps:]})
        return result

    def put_raw(self, key_id: str, **attributes: Any) -> None:
        self.setup.put_item(TableName=self.table,
                            Item={"id": {"S": self.store.item_key(key_id)}, **attributes})


def _saved(run: Run, data: dict[str, Any]) -> None:
    store = run.store
    session = run.op("load", lambda: store.load(A))
    run.op("save", lambda: store.save(session, data))


def s_new_write(run: Run) -> None:
    store = run.store
    session = run.op("load", lambda: store.load(A))
    run.op("save", lambda: store.save(session, {"n": 1, "u": "x"}))


def s_existing(run: Run) -> None:
    store = run.store
    _saved(run, {"n": 1})
    session = run.op("load", lambda: store.load(A))
    run.op("save", lambda: store.save(session, {"n": 2}))
    session = run.op("load", lambda: store.load(A))
    run.op("save unchanged", lambda: store.save(session))
    run.clock.advance(store.config.session_lifetime_seconds * 0.6)
    session = run.op("load", lambda: store.load(A))
    run.op("save refresh", lambda: store.save(session))
    session = run.op("load", lambda: store.load(A, lifetime_seconds=60))
    run.op("save lifetime", lambda: store.save(session, {"n": 3}, lifetime_seconds=90))
    session = run.op("load", lambda: store.load(A))
    run.op("save empty", lambda: store.save(session, {}))
    session = run.op("load", lambda: store.load(A))
    run.op("release", lambda: store.release(session))


def s_expired(run: Run) -> None:
    store = run.store
    _saved(run, {"n": 1})
    run.clock.advance(store.config.session_lifetime_seconds + 10)
    session = run.op("load", lambda: store.load(A))
    run.op("save", lambda: store.save(session, {"n": 5}))


def s_malformed(run: Run) -> None:
    store = run.store
    live = {"N": str(int(START) + 3600)}
    run.put_raw(A, data={"B": b"\x00\xffnot a payload"}, expires=live)
    run.op("load", lambda: store.load(A))
    run.put_raw(B, data={"B": b"x"}, expires={"S": "tomorrow"})
    run.op("load", lambda: store.load(B))
    run.put_raw(A, data={"S": "php"})
    run.op("load", lambda: store.load(A))
    run.op("exists", lambda: store.exists(B))


def s_conflict(run: Run) -> None:
    store = run.store
    _saved(run, {"a": 1, "l": [1]})
    first = run.op("load", lambda: store.load(A))
    if store.locking == "pessimistic":
        run.op("save", lambda: store.save(first, {"a": 2}))
        return
    second = run.op("load", lambda: store.load(A))
    second.data["b"] = 2
    run.op("save second", lambda: store.save(second))
    first.data["c"] = 3
    first.data["l"].append(2)
    run.op("save first", lambda: store.save(first))
    first = run.op("load", lambda: store.load(A))
    second = run.op("load", lambda: store.load(A))
    first.increment("n")
    second.increment("n", 2)
    run.op("save second", lambda: store.save(second))
    run.op("save first", lambda: store.save(first))
    session = run.op("load", lambda: store.load(A))
    run.op("release", lambda: store.release(session))


def s_gone(run: Run) -> None:
    store = run.store
    _saved(run, {"a": 1})
    session = run.op("load", lambda: store.load(A))
    run.op("delete", lambda: store.delete(A))
    session.data["x"] = 1
    run.op("save", lambda: store.save(session))
    _saved(run, {"a": 1})
    session = run.op("load", lambda: store.load(A))
    run.op("release", lambda: store.release(session))
    session = run.op("load", lambda: store.load(B))
    run.op("release new", lambda: store.release(session))


def s_create_retire(run: Run) -> None:
    store = run.store
    run.op("create", lambda: store.create(A, {"u": 1}))
    run.op("create again", lambda: store.create(A, {"u": 2}))
    run.op("exists", lambda: store.exists(A))
    run.op("exists new", lambda: store.exists("session-c"))
    old = run.op("load", lambda: store.load(A))
    successor = run.op("create successor", lambda: store.create(B, old.data))
    run.op("retire", lambda: store.retire(old, successor))
    moved = run.op("load moved", lambda: store.load(A))
    run.op("save moved", lambda: store.save(moved, {"x": 1}))
    if store.locking == "pessimistic":
        return
    old = run.op("load", lambda: store.load(B))
    other = store.load(B)
    other.data["late"] = 1
    run.op("save other", lambda: store.save(other))
    successor = run.op("create successor", lambda: store.create("session-c", old.data))
    run.op("retire raced", lambda: store.retire(old, successor))
    session = run.op("load successor", lambda: store.load("session-c"))
    run.op("release", lambda: store.release(session))


def s_lock_busy(run: Run) -> None:
    store: Any = run.store
    held = run.op("load", lambda: store.load(A))
    if store.locking != "pessimistic":
        run.op("save", lambda: store.save(held, {"k": 1}))
        return
    run.op("load busy", lambda: store.load(A))
    run.op("renew", lambda: store.renew_lock(held.key, held.lock_token or "", held))
    run.op("renew lost", lambda: store.renew_lock(held.key, "not-the-token"))
    run.op("save", lambda: store.save(held, {"k": 1}))


def s_server_clock(run: Run) -> None:
    store = run.store
    session = run.op("load", lambda: store.load(A))
    run.op("save", lambda: store.save(session, {"n": 1}))
    session = run.op("load", lambda: store.load(A))
    run.op("save", lambda: store.save(session, {}))


SCENARIOS: dict[str, tuple[Callable[[Run], None], dict[str, Any]]] = {
    "new_write": (s_new_write, {}),
    "existing": (s_existing, {}),
    "expired": (s_expired, {}),
    "expired_kept": (s_expired, {"delete_expired_on_read": False}),
    "malformed": (s_malformed, {}),
    "conflict": (s_conflict, {}),
    "gone": (s_gone, {}),
    "create_retire": (s_create_retire, {}),
    "lock_busy": (s_lock_busy, {"max_lock_wait_seconds": 0.05}),
    "server_clock": (s_server_clock, {"server_clock": True}),
}


def transcript(mode: str, name: str) -> list[Any]:
    """Run scenario ``name`` in ``mode`` on moto; the requests and outcomes, as JSON data."""
    from moto import mock_aws

    scenario, options = SCENARIOS[name]
    options = dict(options)
    server_clock = options.pop("server_clock", False)
    with mock_aws(), seeded_secrets():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="local",
                                        aws_secret_access_key="local")
        setup = session.client("dynamodb")
        make_table(setup, "golden")
        run = Run(session, "golden", mode, server_clock=server_clock, **options)
        scenario(run)
        sent = run.sent
    result: list[Any] = json.loads(json.dumps(sent, default=repr))
    return blank_times(result) if server_clock else result


def golden_path(mode: str) -> Path:
    return GOLDEN / f"{mode}.json"


def record() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for mode in MODES:
        data = {name: transcript(mode, name) for name in SCENARIOS}
        golden_path(mode).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(mode, sum(len(v) for v in data.values()), "entries", file=sys.stderr)


if __name__ == "__main__":
    record()
