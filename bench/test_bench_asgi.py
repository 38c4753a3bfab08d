"""Sessions under ASGI: one uvicorn worker, DynamoDB Local behind a loopback proxy adding a fixed
latency per call, many concurrent clients - requests per second and p99 latency per side.

Each case (one latency) starts, for each side, a latency proxy before DynamoDB Local, a fresh
table, and one uvicorn worker (its own process; its default loop and HTTP parser, asyncio and
h11 unless uvloop / httptools are installed) serving the small Django app of
``tests/asgi_django_app.py``.  Each side's ``CLIENTS`` clients, each on its own keep-alive
connection with its own session (made in a warm-up that is not measured), then send requests:
read + write (``/rw``: the counter read, then written back plus one) and read-only (``/ro``) in
turn.  The sides measure in turn, in slices (``SLICE_ORDER``: A B B A A B), while the other
side's server idles: other work on a shared machine then weighs on both sides alike, rather
than on whichever side it happened to coincide with.  Each client checks every answer: the
counter it reads is the number of writes it made, so a lost update or an error fails the case.

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

Sides (``SIDES``; both in every case):

* ``thread-pool`` - the engine's async path before the native one
  (``tests/django_threadpool_engine.py``, on a boto3 client of ``ASGI_APP_POOL`` = 64
  connections): ``aget`` loads through ``sync_to_async(thread_sensitive=False)`` (the loop's
  default executor, min(32, cores + 4) threads), the sync middleware saves on the
  thread-sensitive thread;
* ``native`` - ``dynamo_sessions.django`` as it is: ``aload`` / ``asave`` on the event loop
  through the async store (aiobotocore, ``MAX_POOL_CONNECTIONS`` = 64 connections), the
  middleware in its async mode - no thread.

What limits each side (measured on 2 cores): ``thread-pool`` holds at most one load per
executor thread (6 on 2 cores), so at 25 ms it stays near 6 / 27 ms ~ 200 requests/s even on
an idle machine (its ``busy cores`` below 1); ``native`` is bound by its one event loop's CPU
(~1.7 ms per request: mostly aiobotocore / botocore building, signing and parsing each call,
then Django and uvicorn's h11; and Django's ASGI handler runs ``response.close`` through
``sync_to_async`` in a context of its own per request, so asgiref starts two threads per
request - one to run it, one to join that one - on both sides).  At 5 ms both are bound by
CPU, so their ratio is about that of their CPU per request.

    pytest bench/test_bench_asgi.py --benchmark-only -s      # prints the side-by-side table
    pytest bench/test_bench_asgi.py --benchmark-disable      # a short run, as a test

With ``--benchmark-disable`` (how CI runs bench/) each slice measures for a fraction of a
second: it checks that the harness works, its figures mean little.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
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
SLICE_SECONDS = 1.5
SLICE_ORDER = ("thread-pool", "native", "native", "thread-pool", "thread-pool", "native")
"""The sides' measuring slices, in turn (A B B A A B: neither side always follows the other);
each side measures ``SLICE_SECONDS`` x 3 in all."""
SMOKE_SECONDS = 0.15
"""How long a slice measures under ``--benchmark-disable``."""
KEEP_ALIVE_SECONDS = 60
"""uvicorn's keep-alive timeout here (its default, 5 s, would close a side's idle connections
while the other side measures)."""
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
SLICES: dict[tuple[str, int], list[float]] = {}
"""Requests per second of each side's slices, by (side, latency): how much they swing."""


@dataclasses.dataclass
class Client:
    """One client: its keep-alive connection (with its session's cookie), the writes it made,
    the requests it sent (the next is ``PATHS[sent % 2]``, across slices)."""

    connection: Connection
    writes: int = 0
    sent: int = 0


@dataclasses.dataclass
class Tally:
    """What one side's clients measured and saw over its slices."""

    latencies: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {path: [] for path in PATHS})
    errors: list[str] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    slices: list[float] = dataclasses.field(default_factory=list)
    """Requests per second of each slice."""
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    """CPU seconds used during the slices, by process (see :data:`PROCESSES`) and machine."""

    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())


async def ask(client: Client, tally: Tally, timed: bool = True) -> bool:
    """The client's next request, its answer checked against the writes it made; False on
    error."""
    path = PATHS[client.sent % 2]
    client.sent += 1
    sent = time.perf_counter()
    try:
        answer = await client.connection.get(path)
    except OSError as exc:
        tally.errors.append(f"{path}: {exc!r}")
        return False
    if timed:
        tally.latencies[path].append(time.perf_counter() - sent)
    client.writes += path == "/rw"
    if answer.status != 200 or answer.body != b"%d" % client.writes:
        tally.errors.append(f"{path}: {answer.status} {answer.body[:80]!r} "
                            f"(expected {client.writes})")
        return False
    return True


async def warm_up(url: str, tally: Tally) -> list[Client]:
    """``CLIENTS`` connections to ``url``, each with its session (not timed)."""
    async def one() -> Client:
        client = Client(await Connection.open(url, REQUEST_TIMEOUT_SECONDS))
        for _ in range(WARMUP_REQUESTS):
            if not await ask(client, tally, timed=False):
                break
        return client

    return list(await asyncio.gather(*(one() for _ in range(CLIENTS))))


async def burst(clients: list[Client], seconds: float, tally: Tally) -> None:
    """Every client alternates /rw and /ro for ``seconds`` (then finishes the request it is in)."""
    deadline = time.perf_counter() + seconds

    async def one(client: Client) -> None:
        while time.perf_counter() < deadline and await ask(client, tally):
            pass

    began, before = time.perf_counter(), tally.requests()
    await asyncio.gather(*(one(client) for client in clients))
    elapsed = time.perf_counter() - began
    tally.elapsed += elapsed
    tally.slices.append((tally.requests() - before) / elapsed)


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
                         f"server CPU per request x{ratio['server_cpu_ms_per_request']:.2f}; "
                         "slices' requests/s: " + ", ".join(
                             f"{side} " + " ".join(f"{value:.0f}" for value in
                                                   SLICES[(side, latency_ms)])
                             for side in ("native", "thread-pool")))
    print("\n" + "\n".join(lines))


@pytest.mark.dynamodb_local
@pytest.mark.benchmark(group="asgi")
@pytest.mark.parametrize("latency_ms", LATENCIES_MS)
def test_asgi_sessions_under_latency(benchmark: Any, warm_dynamodb_local: Any,
                                     latency_ms: int) -> None:
    """Both sides side by side: a proxy, a table and a server each, measured in turn
    (``SLICE_ORDER``), so a machine busy with other work weighs on both alike."""
    dynamodb_local = warm_dynamodb_local
    slice_seconds = SMOKE_SECONDS if benchmark.disabled else SLICE_SECONDS
    tallies = {side: Tally() for side in SIDES}
    clients: dict[str, list[Client]] = {}
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        proxies, servers = {}, {}
        for side in SIDES:
            table = f"bench-asgi-{uuid.uuid4().hex[:12]}"
            test_fixtures.make_table(local_client(dynamodb_local.endpoint_url), table)
            proxies[side] = stack.enter_context(
                LatencyProxy(dynamodb_local.endpoint_url, latency_ms / 1000))
            env = {"ASGI_APP_ENDPOINT_URL": proxies[side].endpoint_url, "ASGI_APP_TABLE": table,
                   "UVICORN_TIMEOUT_KEEP_ALIVE": str(KEEP_ALIVE_SECONDS), **SIDES[side].env}
            servers[side] = stack.enter_context(UvicornProcess(SIDES[side].app, env=env))

        def warm() -> None:
            for side in SIDES:
                clients[side] = loop.run_until_complete(warm_up(servers[side].url,
                                                                tallies[side]))

        def measure() -> None:
            for side in SLICE_ORDER:
                pids = {"server": servers[side].pid, "clients": os.getpid(),
                        "proxy": proxies[side].pid,
                        "dynamodb": dynamodb_local._process.pid}  # the plugin's DynamoDBLocal
                before = cpu_snapshot(pids)
                loop.run_until_complete(burst(clients[side], slice_seconds, tallies[side]))
                after = cpu_snapshot(pids)
                for name, value in after.items():
                    tallies[side].cpu[name] = tallies[side].cpu.get(name, 0.0) + (
                        value - before[name])

        try:
            benchmark.pedantic(measure, setup=warm, rounds=1, iterations=1)
        finally:
            for client in (client for group in clients.values() for client in group):
                client.connection.close()
            loop.run_until_complete(asyncio.sleep(0))  # the transports close
            loop.close()
        outputs = {side: server.output() for side, server in servers.items()}
    for side, tally in tallies.items():
        assert tally.errors == [], (side, tally.errors[:5], outputs[side][-2000:])
        report = json.loads(proxies[side].report)
        assert report["failures"] == [], side
        RESULTS[(side, latency_ms)] = figures = side_figures(tally, report)
        SLICES[(side, latency_ms)] = tally.slices
        benchmark.extra_info.update({f"{side}_{name}": value for name, value in figures.items()})
    benchmark.extra_info.update({"clients": CLIENTS, "latency_ms": latency_ms})


def side_figures(tally: Tally, report: dict[str, Any]) -> dict[str, float]:
    """One side's figures from its tally and its proxy's report."""
    assert all(tally.latencies[path] for path in PATHS)
    every = [value for values in tally.latencies.values() for value in values]
    requests, used = tally.requests(), tally.cpu
    return {
        "requests": float(requests),
        "seconds": tally.elapsed,
        "requests_per_second": requests / tally.elapsed,
        "p99_ms": p99_ms(every),
        "p99_rw_ms": p99_ms(tally.latencies["/rw"]),
        "p99_ro_ms": p99_ms(tally.latencies["/ro"]),
        "median_ms": statistics.median(every) * 1000,
        **{f"{name}_cpu_ms_per_request": used[name] * 1000 / requests for name in PROCESSES},
        "others_cpu_ms_per_request": (used["machine"] - sum(used[name] for name in PROCESSES))
        * 1000 / requests,
        "busy_cores": used["machine"] / tally.elapsed,
        "calls_per_request": sum(report["seen"].values())
        / (requests + CLIENTS * WARMUP_REQUESTS),  # its proxy saw the warm-up's too
    }
