"""One SessionHandler shared by threads that use different session names (moto, in-process):
each thread's ``open()`` chooses its own namespace, never another thread's."""

from __future__ import annotations

import threading
from typing import Any

from dynamo_sessions import SessionConfig, SessionHandler, new_session_id

from .conftest import make_table
from .handler_support import raw_item, run_threads

THREADS = 4
ROUNDS = 20


def test_session_names_are_per_thread(moto_client: Any, table_name: str) -> None:
    make_table(moto_client, table_name)
    handler = SessionHandler(SessionConfig(table_name=table_name, hash_session_ids=False),
                             moto_client)
    barrier = threading.Barrier(THREADS)
    sid = new_session_id()  # the same id in every namespace
    wrong: list[str] = []

    def run(index: int) -> None:
        name = f"APP{index}"
        for n in range(ROUNDS):
            handler.open("", name)
            barrier.wait()  # every thread has opened its own name before any reads
            data = handler.read(sid)
            if data and data.get("app") != name:
                wrong.append(f"{name} read {data.get('app')}'s session")
            handler.write(sid, {"app": name, "n": n})
            handler.close()
            barrier.wait()

    assert run_threads(THREADS, run) == []
    assert wrong == []
    for index in range(THREADS):
        item = raw_item(moto_client, table_name, f"APP{index}_{sid}")
        assert item is not None
    handler.open("", "APP0")
    assert handler.read(sid) == {"app": "APP0", "n": ROUNDS - 1}
    assert handler.store.item_key(sid) == f"APP0_{sid}"
