"""One process of the soak-and-fault suite (``tests/test_soak.py``): threads of requests.

Run as ``python -m tests.soak_worker '<json plan>'``; prints one JSON document with what every
thread attempted and what was acknowledged (no pickle: the parent reads JSON).

Each thread plays one user with a private session (set, login = regenerate, logout = destroy)
and also works on the shared sessions every thread of every process hits at once: a key of its
own, appends to one list, and increments of one counter.  A request counts as acknowledged when
its save returned without error and the session was neither gone nor moved.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import traceback
from collections import Counter
from typing import Any

from dynamo_sessions import SessionConfig
from dynamo_sessions.errors import DynamoSessionsError
from dynamo_sessions.store import create_store
from dynamo_sessions.testing.servers import local_client
from dynamo_sessions.web import LazySession


class Thread:
    """One simulated user's requests and the record of what they were told."""

    def __init__(self, store: Any, plan: dict[str, Any], index: int) -> None:
        self.store = store
        self.plan = plan
        self.name = f"p{plan['process']}t{index}"
        self.rng = random.Random(f"{plan['seed']}-{self.name}")
        self.errors: Counter[str] = Counter()
        self.unhandled: list[str] = []
        self.requests = 0
        self.acknowledged = 0
        # shared sessions: per session id
        self.key_acked: dict[str, int] = {}
        self.key_attempted: dict[str, int] = {}
        self.appends_acked: dict[str, list[str]] = {}
        self.increments_acked: Counter[str] = Counter()
        self.increments_ambiguous: Counter[str] = Counter()
        # the private session
        self.private_id: str | None = None
        self.private_expected: dict[str, Any] | None = None
        self.dead_ids: list[str] = []
        self.logins = self.logouts = 0

    # --- one request ------------------------------------------------------------------------

    def _request(self, session_id: str | None, action: Any) -> LazySession | None:
        """Load lazily, run ``action`` on the session, save; None when it failed."""
        self.requests += 1
        session = LazySession(self.store, session_id, strict=True,
                              cookie_present=session_id is not None)
        try:
            action(session)
            session.save()
        except DynamoSessionsError as exc:
            self.errors[type(exc).__name__] += 1
            session.release()
            return None
        except Exception:  # anything untyped is a defect the suite reports
            self.unhandled.append(traceback.format_exc(limit=6))
            session.release()
            return None
        if session.gone or session.moved:
            self.errors["gone_or_moved"] += 1
            return None
        self.acknowledged += 1
        return session

    def shared(self, n: int) -> None:
        sid = self.rng.choice(self.plan["shared_ids"])
        kind = self.rng.choices(("key", "append", "increment"), (4, 3, 3))[0]
        if kind == "key":
            key = self.name
            self.key_attempted[sid] = n

            def action(session: LazySession) -> None:
                session[key] = n
        elif kind == "append":
            tag = f"{self.name}.{n}"

            def action(session: LazySession) -> None:
                session["log"] = [*session.get("log", []), tag]
        else:
            def action(session: LazySession) -> None:
                session.increment("hits", 1)
        done = self._request(sid, action)
        if kind == "key" and done is not None:
            self.key_acked[sid] = n
        elif kind == "append" and done is not None:
            self.appends_acked.setdefault(sid, []).append(tag)
        elif kind == "increment":
            if done is not None:
                self.increments_acked[sid] += 1
            else:
                self.increments_ambiguous[sid] += 1

    def private(self, n: int) -> None:
        if self.private_id is None:
            kind = "start"
        else:
            kind = self.rng.choices(("set", "login", "logout"), (6, 2, 2))[0]
        old = self.private_id

        def action(session: LazySession) -> None:
            if kind == "login":
                session.regenerate()
                session["user"] = self.name
            elif kind == "logout":
                session.destroy()
                return
            elif kind == "start":
                session["user"] = self.name
            session["n"] = n

        done = self._request(old, action)
        if done is None:
            # Unknown outcome: forget this session (it is not checked) and start afresh.
            self.private_id = self.private_expected = None
            return
        if kind == "logout":
            self.logouts += 1
            self.dead_ids.append(old or "")
            self.private_id = self.private_expected = None
            return
        if kind == "login":
            self.logins += 1
            self.dead_ids.append(old or "")
        self.private_id = done.id
        self.private_expected = {"user": self.name, "n": n}

    def run(self) -> None:
        for n in range(1, self.plan["requests_per_thread"] + 1):
            if self.rng.random() < self.plan["shared_share"]:
                self.shared(n)
            else:
                self.private(n)

    def report(self) -> dict[str, Any]:
        return {
            "name": self.name, "requests": self.requests, "acknowledged": self.acknowledged,
            "errors": dict(self.errors), "unhandled": self.unhandled,
            "key_acked": self.key_acked, "key_attempted": self.key_attempted,
            "appends_acked": self.appends_acked,
            "increments_acked": dict(self.increments_acked),
            "increments_ambiguous": dict(self.increments_ambiguous),
            "private_id": self.private_id, "private_expected": self.private_expected,
            "dead_ids": self.dead_ids, "logins": self.logins, "logouts": self.logouts,
        }


def main(plan: dict[str, Any]) -> dict[str, Any]:
    config = SessionConfig.from_options(plan["config"])
    client = local_client(
        plan["endpoint_url"], read_timeout=plan["read_timeout_seconds"], connect_timeout=2,
        # legacy: no client-wide retry quota.  botocore's standard mode stops retrying once a
        # burst of faults has spent it, and the store then raises DynamoUnavailable (typed)
        # for calls this suite means to see recognised after a retry.
        retries={"mode": "legacy", "total_max_attempts": plan["max_attempts"]},
        max_pool_connections=plan["threads"] + 2,
    )
    store = create_store(config, client, session_name="soak")
    threads = [Thread(store, plan, index) for index in range(plan["threads"])]
    runners = [threading.Thread(target=thread.run) for thread in threads]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    return {"threads": [thread.report() for thread in threads]}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
