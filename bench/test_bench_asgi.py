"""Sessions under ASGI: one uvicorn worker, DynamoDB Local behind a loopback proxy adding a fixed
latency per call, many concurrent clients - requests per second and p99 latency per side.

Each case starts a latency proxy before DynamoDB Local, a fresh table, and one uvicorn worker
(its own process; its default loop and HTTP parser, asyncio and h11 unless uvloop / httptools
are installed) serving the small Django app of ``tests/asgi_django_app.py``.  ``CLIENTS``
clients, each on its own keep-alive connection with its own session (made in a warm-up that is
not measured), then send requests for ``MEASURE_SECONDS``: read + write (``/rw``: the counter
read, then written back plus one) and read-only (``/ro``) in turn.  Each client checks every
answer: the counter it reads is the number of writes it made, so a lost update or an error
fails the case.

The harness is the same for both sides, and as lean as it can be, because on a small machine
it shares the cores with the server it measures (on 2 cores, every millisecond of CPU the
harness spends per request is one the server does not get):

* the clients - ``tests/httpload.py``, 64 connections on ``asyncio.Protocol`` in this process,
  writing a fixed GET and reading the status, ``Set-Cookie`` and the (chunked) body: ~0.07 ms
  of CPU per request, where httpx spent ~0.6 ms (real HTTP to uvicorn all the same);
* the latency proxy - ``tests/latencyproxy.py`` in its own process: the pause is a timer of
  one event loop (concurrent calls pause side by side, none queues behind another) and bytes
  go through as they came: ~0.12 ms per request, where ``tests/faultproxy.py``'s thread per
  connection spent ~0.25 ms;
* DynamoDB Local - real, in memory, warmed up first (``JVM_WARMUP_CYCLES``): its JIT would
  otherwise make whichever case runs first pay several times the CPU per call.

Reported per case: requests/s, p99 (all, read + write, read-only), the CPU time per request of
each process (``server``: uvicorn, all its threads; ``clients``: this process; ``proxy``;
``ddb``: DynamoDB Local's JVM; ``others``: the rest of the machine - other work on a shared
machine shows there), the busy cores (all of the machine's CPU time over the case's seconds:
near the core count, requests/s follow the server's share of CPU, not the latency) and the
DynamoDB calls per request (the warm-up's included, as the proxy counts them all).

Sides (``SIDES``, one parametrize entry each):

* ``thread-pool`` - the engine's async path before the native one
  (``tests/django_threadpool_engine.py``, on a boto3 client of ``ASGI_APP_POOL`` = 64
  connections): ``aget`` loads through ``sync_to_async(thread_sensitive=False)`` (the loop's
  default executor, min(32, cores + 4) threads), the sync middleware saves on the
  thread-sensitive thread;
* ``native`` - ``dynamo_sessions.django`` as it is: ``aload`` / ``asave`` on the event loop
  through the async store (aiobotocore, ``MAX_POOL_CONNECTIONS`` = 64 connections), the
  middleware in its async mode - no thread.

    pytest bench/test_bench_asgi.py --benchmark-only -s      # prints the side-by-side table
    pytest bench/test_bench_asgi.py --benchmark-disable      # a short run, as a test

With ``--benchmark-disable`` (how CI runs bench/) each case measures for a fraction of a
second: it checks that the harness works, its figures mean little.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import conftest as test_fixtures
from tests.asgi_support import LatencyProxy, UvicornProcess, cpu_seconds
from tests.httpload import Connection

from dynamo_sessions import SessionConfig, create_store
from dynamo_sessions.testing.servers import local_client

pytest_plugins = ["dynamo_sessions.testing.plugin"]
"""``dynamodb_local``: DynamoDB Local for the whole run (the plugin's fixture; it fails rather
than skips when ``DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL`` is set)."""

CLIENTS = 64
LATENCIES_MS = [5, 25]
MEASURE_SECONDS = 3.0
SMOKE_SECONDS = 0.3
"""How long a case measures under ``--benchmark-disable``."""
WARMUP_REQUESTS = 2
"""Per client, before measuring: the session's creation and one read (not timed)."""
REQUEST_TIMEOUT_SECONDS = 30.0
JVM_WARMUP_CYCLES = 4000
"""Session cycles (load, then save: 2 calls) run on DynamoDB Local before the first case, when
measuring: its JVM's JIT compiles the calls' code in the first few thousand (the first 2,000
calls cost it ~4x the CPU of later ones), which would weigh on whichever case runs first."""
JVM_WARMUP_THREADS = 8
PATHS = ("/rw", "/ro")


@dataclasses.dataclass(frozen=True)
class Side:
    """One way of serving the app: its ASGI import string and environment."""

    app: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)


SIDES = {
    "thread-pool": Side("tests.asgi_django_app:application", {
        "ASGI_APP_ASYNC": "thread",
        "ASGI_APP_SESSION_ENGINE": "tests.django_threadpool_engine",
        "ASGI_APP_MIDDLEWARE": "tests.django_threadpool_engine.SessionMiddleware"}),
    "native": Side("tests.asgi_django_app:application", {"ASGI_APP_ASYNC": "native"}),
}
RESULTS: dict[tuple[str, int], dict[str, float]] = {}


@dataclasses.dataclass
class Run:
    """One case's clients: their warm-up gate, the deadline, what they measured and saw."""

    ready: asyncio.Event
    """Set when every client has warmed up (or failed to)."""
    start: asyncio.Event
    deadline: float = 0.0
    warmed: int = 0
    latencies: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {path: [] for path in PATHS})
    errors: list[str] = dataclasses.field(default_factory=list)

    def arrived(self) -> None:
        self.warmed += 1
        if self.warmed == CLIENTS:
            self.ready.set()

    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())


async def one_client(url: str, run: Run) -> None:
    """Warm up (make the session), wait for the start, then alternate /rw and /ro until the
    deadline; every answer is checked against the writes this client made."""
    try:
        client = await Connection.open(url, REQUEST_TIMEOUT_SECONDS)
    except OSError as exc:
        run.errors.append(f"connect: {exc!r}")
        run.arrived()
        return
    writes = 0
    try:
        try:
            for number in range(WARMUP_REQUESTS):
                path = PATHS[number % 2]
                answer = await client.get(path)
                writes += path == "/rw"
                if answer.status != 200 or answer.body != b"%d" % writes:
                    run.errors.append(f"warm-up {path}: {answer.status} {answer.body[:80]!r}")
                    return
        except OSError as exc:
            run.errors.append(f"warm-up: {exc!r}")
            return
        finally:
            run.arrived()
        await run.start.wait()
        number = 0
        while time.perf_counter() < run.deadline:
            path = PATHS[number % 2]
            number += 1
            sent = time.perf_counter()
            try:
                answer = await client.get(path)
            except OSError as exc:
                run.errors.append(f"{path}: {exc!r}")
                return
            run.latencies[path].append(time.perf_counter() - sent)
            writes += path == "/rw"
            if answer.status != 200 or answer.body != b"%d" % writes:
                run.errors.append(f"{path}: {answer.status} {answer.body[:80]!r} "
                                  f"(expected {writes})")
    finally:
        client.close()


class Load:
    """``CLIENTS`` clients on one event loop: :meth:`warm_up` (not timed), then :meth:`measure`
    (timed: ``seconds`` of requests)."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url = url
        self.seconds = seconds
        self.loop = asyncio.new_event_loop()
        self.run = Run(asyncio.Event(), asyncio.Event())
        self.tasks: list[asyncio.Task[None]] = []
        self.elapsed = 0.0

    def warm_up(self) -> None:
        async def warm_up() -> None:
            self.tasks = [asyncio.create_task(one_client(self.url, self.run))
                          for _ in range(CLIENTS)]
            await asyncio.wait_for(self.run.ready.wait(),
                                   timeout=REQUEST_TIMEOUT_SECONDS * WARMUP_REQUESTS)

        self.loop.run_until_complete(warm_up())

    def measure(self) -> None:
        async def measure() -> None:
            began = time.perf_counter()
            self.run.deadline = began + self.seconds
            self.run.start.set()
            await asyncio.gather(*self.tasks)
            self.elapsed = time.perf_counter() - began

        self.loop.run_until_complete(measure())

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        self.loop.close()


PROCESSES = ("server", "clients", "proxy", "dynamodb")
"""The processes whose CPU time a case measures: uvicorn, this process (the load generator),
the latency proxy, DynamoDB Local's JVM."""


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every process, every core; ``/proc/stat``)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each of ``pids`` and (``machine``) by the whole machine."""
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()},
            "machine": machine_busy_seconds()}


def p99_ms(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000 if len(values) > 1 else float("nan")


@pytest.fixture(scope="module")
def warm_dynamodb_local(dynamodb_local: Any, request: Any) -> Any:
    """DynamoDB Local, its JVM warmed up (when measuring) by ``JVM_WARMUP_CYCLES`` session
    cycles of the sync store - the calls both sides make - on a table of its own."""
    if request.config.getoption("benchmark_disable"):
        return dynamodb_local
    table = f"bench-asgi-warmup-{uuid.uuid4().hex[:12]}"
    client = local_client(dynamodb_local.endpoint_url, max_pool_connections=JVM_WARMUP_THREADS)
    test_fixtures.make_table(client, table)
    store = create_store(SessionConfig(table_name=table, locking="optimistic"), client)

    def cycles(thread: int) -> None:
        for number in range(JVM_WARMUP_CYCLES // JVM_WARMUP_THREADS):
            session = store.load(f"{thread:02d}{number:041d}")
            store.save(session, {"n": number})

    with concurrent.futures.ThreadPoolExecutor(JVM_WARMUP_THREADS) as pool:
        list(pool.map(cycles, range(JVM_WARMUP_THREADS)))
    client.delete_table(TableName=table)
    return dynamodb_local


@pytest.fixture(scope="module", autouse=True)
def side_by_side() -> Iterator[None]:
    """Print every case's figures side by side once the module's cases have run."""
    yield
    if not RESULTS:
        return
    lines = [f"ASGI sessions, {CLIENTS} clients, one uvicorn worker, read+write and read-only "
             f"requests in turn; {os.cpu_count()} cores",
             f"{'':>23} {'':>9} {'':>8} {'':>8} {'':>8} {'':>8} "
             f"{'CPU ms per request':-^39} {'busy':>5} {'calls/':>6}",
             f"{'side':>14} {'latency':>8} {'requests':>9} {'req/s':>8} {'p99 ms':>8} "
             f"{'p99 rw':>8} {'p99 ro':>8} {'server':>7} {'clients':>7} {'proxy':>7} "
             f"{'ddb':>7} {'others':>7} {'cores':>5} {'req':>6}"]
    for (side, latency_ms), figures in sorted(RESULTS.items()):
        lines.append(f"{side:>14} {latency_ms:>6}ms {figures['requests']:>9.0f} "
                     f"{figures['requests_per_second']:>8.1f} {figures['p99_ms']:>8.1f} "
                     f"{figures['p99_rw_ms']:>8.1f} {figures['p99_ro_ms']:>8.1f} "
                     + " ".join(f"{figures[f'{name}_cpu_ms_per_request']:>7.2f}"
                                for name in (*PROCESSES, "others"))
                     + f" {figures['busy_cores']:>5.2f} {figures['calls_per_request']:>6.2f}")
    for latency_ms in LATENCIES_MS:
        native = RESULTS.get(("native", latency_ms))
        pool = RESULTS.get(("thread-pool", latency_ms))
        if native and pool:
            ratio = {name: native[name] / pool[name] for name in
                     ("requests_per_second", "p99_ms", "server_cpu_ms_per_request")}
            lines.append(f"native / thread-pool at {latency_ms} ms: requests/s "
                         f"x{ratio['requests_per_second']:.2f}, p99 x{ratio['p99_ms']:.2f}, "
                         f"server CPU per request x{ratio['server_cpu_ms_per_request']:.2f}")
    print("\n" + "\n".join(lines))


@pytest.mark.dynamodb_local
@pytest.mark.benchmark(group="asgi")
@pytest.mark.parametrize("side", SIDES)  # innermost: the sides of one latency run in turn,
@pytest.mark.parametrize("latency_ms", LATENCIES_MS)  # so a busy machine moves both alike
def test_asgi_sessions_under_latency(benchmark: Any, warm_dynamodb_local: Any, side: str,
                                     latency_ms: int) -> None:
    dynamodb_local = warm_dynamodb_local
    table = f"bench-asgi-{uuid.uuid4().hex[:12]}"
    test_fixtures.make_table(local_client(dynamodb_local.endpoint_url), table)
    seconds = SMOKE_SECONDS if benchmark.disabled else MEASURE_SECONDS
    with LatencyProxy(dynamodb_local.endpoint_url, latency_ms / 1000) as proxy:
        env = {"ASGI_APP_ENDPOINT_URL": proxy.endpoint_url, "ASGI_APP_TABLE": table,
               **SIDES[side].env}
        with UvicornProcess(SIDES[side].app, env=env) as server:
            load = Load(server.url, seconds)
            pids = {"server": server.pid, "clients": os.getpid(), "proxy": proxy.pid,
                    "dynamodb": dynamodb_local._process.pid}  # the plugin's DynamoDBLocal
            cpu: list[dict[str, float]] = []

            def warm_up() -> None:
                load.warm_up()
                cpu.append(cpu_snapshot(pids))

            try:
                benchmark.pedantic(load.measure, setup=warm_up, rounds=1, iterations=1)
                cpu.append(cpu_snapshot(pids))
            finally:
                load.close()
            output = server.output()
    run, elapsed = load.run, load.elapsed
    assert run.errors == [], (run.errors[:5], output[-2000:])
    report = json.loads(proxy.report)
    assert report["failures"] == []
    assert all(run.latencies[path] for path in PATHS)
    every = [value for values in run.latencies.values() for value in values]
    used = {name: cpu[1][name] - cpu[0][name] for name in cpu[0]}
    figures = {
        "requests": float(run.requests()),
        "requests_per_second": run.requests() / elapsed,
        "p99_ms": p99_ms(every),
        "p99_rw_ms": p99_ms(run.latencies["/rw"]),
        "p99_ro_ms": p99_ms(run.latencies["/ro"]),
        "median_ms": statistics.median(every) * 1000,
        **{f"{name}_cpu_ms_per_request": used[name] * 1000 / run.requests()
           for name in PROCESSES},
        "others_cpu_ms_per_request": (used["machine"] - sum(used[name] for name in PROCESSES))
        * 1000 / run.requests(),
        "busy_cores": used["machine"] / elapsed,
        "calls_per_request": sum(report["seen"].values())
        / (run.requests() + CLIENTS * WARMUP_REQUESTS),  # the proxy saw the warm-up's too
    }
    RESULTS[(side, latency_ms)] = figures
    benchmark.extra_info.update({"clients": CLIENTS, "latency_ms": latency_ms,
                                 "seconds": round(elapsed, 3), **figures})
