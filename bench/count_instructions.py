"""Instructions per request under callgrind, for the two comparisons a wall clock blurs.

Wall-clock figures on a shared or virtual machine swing by more than some of the differences
measured here, so this counts instructions instead (repeatable for the same binary and inputs):

* ``handler``: the request cycle of ``test_bench_handler.py`` (read + write of a changed ~1 KB
  session on a stubbed transport) through ``SessionHandler`` vs the same two bare boto3 calls;
* ``flask``: the Flask requests of ``test_bench_flask.py`` on its stubbed transport, ours
  (optimistic, and ``none``) vs flask-session 0.8's DynamoDB backend;
* ``aio``: the request cycle of ``test_bench_aio.py`` (``RequestSession`` read + write of a
  changed ~1 KB session on a stubbed transport) on ``AsyncSessionStore`` vs ``SessionStore``
  (batches of ``CYCLES`` requests per event-loop turn; a tenth of the rounds).

Each case runs ``SHORT`` and ``LONG`` times after a warm-up; the difference divided by
``LONG - SHORT`` cancels start-up and imports.

    python bench/count_instructions.py [handler|flask|aio]     # needs valgrind
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SHORT, LONG = 50, 250


def cycle(side: str, count: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import test_bench_handler as bench

    handler, _canned, _data = bench.cycle_fixture()
    client = handler.client
    sent: dict[str, dict[str, object]] = {}

    def capture(params: dict[str, object], model: object, **_: object) -> None:
        sent[model.name] = dict(params)  # type: ignore[attr-defined]

    client.meta.events.register("provide-client-params.dynamodb", capture)
    data = handler.read(bench.SESSION_ID)
    data["request"] = 0
    handler.write(bench.SESSION_ID, data)
    client.meta.events.unregister("provide-client-params.dynamodb", capture)
    counter = itertools.count(1)

    def through_handler() -> None:
        data = handler.read(bench.SESSION_ID)
        data["request"] = next(counter)
        handler.write(bench.SESSION_ID, data)

    def bare() -> None:
        client.get_item(**sent["GetItem"])
        client.update_item(**sent["UpdateItem"])

    run = through_handler if side == "handler" else bare
    for _ in range(20 + count):
        run()


def flask_requests(case: str, count: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import test_bench_flask as bench

    impl, kind = case.split(":")
    stub = bench.StubDynamoDB()
    apps = bench.build(
        lambda: stub.attach(bench.local_client(bench.STUB_ENDPOINT)),
        lambda: bench._attach_resource(stub, bench._resource(bench.STUB_ENDPOINT)),
    )
    client = apps["clients"][impl]
    path = bench.PATHS[kind]
    for _ in range(20 + count):
        client.get(path)


def aio_cycles(side: str, count: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import test_bench_aio as bench

    if side == "aio-async":
        run: Any = bench.AsyncCycle()
    else:
        run, _canned = bench.sync_cycle()
    for _ in range(2 + count):
        run()


def instructions(side: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, __file__, side, str(count)],
            capture_output=True, text=True, check=True,
        ).stderr
    match = re.search(r"Collected : (\d+)", out)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out}")
    return int(match.group(1))


def per_request(case: str) -> float:
    return (instructions(case, LONG) - instructions(case, SHORT)) / (LONG - SHORT)


def main(which: str) -> None:
    if which == "aio":
        sys.path.insert(0, str(Path(__file__).parent))
        from test_bench_aio import CYCLES

        short, long = SHORT // 10, LONG // 10
        counts = {side: (instructions(f"aio-{side}", long) - instructions(f"aio-{side}", short))
                  / ((long - short) * CYCLES) for side in ("sync", "async")}
        for side, count in counts.items():
            print(f"{side:6s} {count:12,.0f} instructions per request cycle")
        print(f"async / sync = {counts['async'] / counts['sync']:.3f}")
        return
    if which == "handler":
        counts = {side: per_request(side) for side in ("bare", "handler")}
        for side, count in counts.items():
            print(f"{side:8s} {count:12,.0f} instructions per cycle")
        print(f"handler / bare = {counts['handler'] / counts['bare']:.3f}")
        return
    for kind in ("read+write", "read-only", "untouched"):
        counts = {impl: per_request(f"{impl}:{kind}") for impl in ("theirs", "ours", "ours-none")}
        print(f"{kind:10s} " + "  ".join(f"{impl} {count:11,.0f}" for impl, count in
                                         counts.items())
              + f"  theirs/ours {counts['theirs'] / counts['ours']:.2f}"
              + f"  theirs/ours-none {counts['theirs'] / counts['ours-none']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1].startswith("aio-"):
        aio_cycles(sys.argv[1], int(sys.argv[2]))
    elif len(sys.argv) == 3 and ":" in sys.argv[1]:
        flask_requests(sys.argv[1], int(sys.argv[2]))
    elif len(sys.argv) == 3:
        cycle(sys.argv[1], int(sys.argv[2]))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "handler")
