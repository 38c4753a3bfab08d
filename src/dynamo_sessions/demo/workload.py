"""The main job: a session workload under each locking mode, with what it cost.

Simulated users make sequential requests (read the session, bump a counter, write it back), and
several "tabs" hit one shared session at the same moment, each bumping its own key.  Afterwards
the stored totals are compared with the increments made: the difference is lost updates.

Without ``endpoint_url`` the demo starts ``dynamo_sessions.testing.servers.EmbeddedMoto``
(moto's server in a child process on 127.0.0.1, one request at a time, so conditional writes are
atomic as in DynamoDB), imported only then.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import LOCKING_MODES, SessionConfig
from ..errors import DynamoSessionsError
from ..handler import SessionHandler
from ..store import new_session_id
from ..transport.client import build_client, is_loopback

COLUMNS = ("mode", "requests", "reads", "writes", "refused", "RCU", "WCU", "refused WCU*",
           "lock waits", "conflicts", "errors", "lost updates", "p50 ms", "p99 ms")

LEGEND = (
    "reads: GetItem calls.  writes: successful UpdateItem/DeleteItem calls (a pessimistic read "
    "takes the\nlock with one).  refused: conditional writes refused (lock held, version moved "
    "on).  RCU/WCU: as the\nserver reported them - moto reports flat figures (0.5 per GetItem "
    "and UpdateItem, 1 per DeleteItem,\nwhatever the size); DynamoDB Local and DynamoDB report "
    "exact units (--endpoint-url).  *A refused write\nis charged by the size of the item it "
    "found (>= 1 WCU) but never reported: refused WCU is computed\nfrom that item's size.  "
    "errors: LockTimeout/SessionConflict answered (HTTP 503), not counted as lost."
)

@contextmanager
def _endpoint(endpoint_url: str | None) -> Iterator[str]:
    if endpoint_url:
        yield endpoint_url
        return
    from ..testing.servers import EmbeddedMoto  # the demo's one use of the test servers

    with EmbeddedMoto() as server:
        yield server.endpoint_url


def demo_client(endpoint_url: str | None, config: SessionConfig | None = None) -> Any:
    """The demo's client (the one client builder, 32 connections for its threads); a local
    server (loopback) gets dummy credentials - it takes any."""
    local = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return build_client((config or SessionConfig()).replace(endpoint_url=endpoint_url),
                        max_pool_connections=32, **(local if is_loopback(endpoint_url) else {}))


def _request(handler: SessionHandler, session_id: str, key: str,
             latencies: list[float]) -> bool:
    start = time.perf_counter()
    try:
        data = handler.read(session_id)
        data[key] = int(data.get(key, 0)) + 1
        handler.write(session_id, data)
        return True
    except DynamoSessionsError:
        handler.close()
        return False
    finally:
        latencies.append(time.perf_counter() - start)


def run_mode(client: Any, mode: str, users: int, requests: int, tabs: int,
             base: SessionConfig | None = None) -> dict[str, Any]:
    """Run the workload with ``locking=mode`` on a fresh table; return the row of figures.
    The store's other options are ``base``'s (the command line's)."""
    config = (base or SessionConfig()).replace(
        table_name=f"demo-{mode}-{new_session_id()[:8]}", locking=mode, client=None)
    handler = SessionHandler(config, client)
    handler.create_table()
    handler.metrics.reset()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(session_id: str, key: str, count: int) -> None:
        own: list[float] = []
        failed = sum(not _request(handler, session_id, key, own) for _ in range(count))
        with lock:
            latencies.extend(own)
            errors[0] += failed

    user_ids = [new_session_id() for _ in range(users)]
    shared = new_session_id()
    threads = [threading.Thread(target=run, args=(sid, "visits", requests)) for sid in user_ids]
    threads += [threading.Thread(target=run, args=(shared, f"tab{i}", requests))
                for i in range(tabs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = handler.metrics.snapshot()
    expected = (users + tabs) * requests - errors[0]
    stored = sum(handler.read(sid).get("visits", 0) for sid in user_ids)
    stored += sum(handler.read(shared).get(f"tab{i}", 0) for i in range(tabs))
    handler.close()
    handler.delete_table(wait=False)
    calls: dict[str, int] = metrics["calls"]
    writes = sum(n for api, n in calls.items() if api != "GetItem")
    ordered = sorted(latencies)
    return {
        "mode": mode,
        "requests": len(latencies),
        "reads": calls.get("GetItem", 0),
        "writes": writes - metrics["failed_writes"],
        "refused": metrics["failed_writes"],
        "RCU": metrics["read_units"],
        "WCU": metrics["write_units"],
        "refused WCU*": metrics["failed_write_units"],
        "lock waits": metrics["lock_waits"],
        "conflicts": metrics["conflicts"],
        "errors": errors[0],
        "lost updates": expected - stored,
        "p50 ms": statistics.median(ordered) * 1000 if ordered else 0.0,
        "p99 ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        if ordered else 0.0,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table, with a legend saying what each figure is."""
    cells = [[_cell(row[column]) for column in COLUMNS] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells))
              for i, column in enumerate(COLUMNS)]
    lines = ["  ".join(column.rjust(width) for column, width in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
              for line in cells]
    return "\n".join([*lines, "", LEGEND])


def _cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def run(endpoint_url: str | None = None, users: int = 8, requests: int = 20, tabs: int = 8,
        modes: tuple[str, ...] = LOCKING_MODES,
        config: SessionConfig | None = None) -> list[dict[str, Any]]:
    """Run every mode against ``endpoint_url`` (a local moto server when None); the stores'
    and the client's other options are ``config``'s."""
    with _endpoint(endpoint_url) as url:
        client = demo_client(url, config)
        return [run_mode(client, mode, users, requests, tabs, config) for mode in modes]
