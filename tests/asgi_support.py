"""Real servers for the ASGI tests and benchmarks: uvicorn serving an app on a free loopback
port, and a latency proxy in front of DynamoDB Local - each in its own process, started and
stopped with bounded waits.

* :class:`UvicornProcess` - ``uvicorn`` (one worker, its default asyncio loop and HTTP
  implementation) serving ``module:attribute`` in a child process, on a listening socket this
  process bound first (so the port is never raced), ``env`` added to the child's environment.
  ``start()`` returns once the server answers HTTP; ``stop()`` ends it (SIGTERM, then SIGKILL).
  ``UVICORN_TIMEOUT_KEEP_ALIVE`` in ``env`` replaces uvicorn's keep-alive timeout (5 s).
* :class:`UvicornThread` - the same for an app object, in a thread of this process (for tests
  that look into the app's objects); ``stop()`` asks uvicorn to exit and joins the thread.
* :class:`LatencyProxy` - ``tests/latencyproxy.py`` in a child process: a fixed pause per
  request (a network's round trip) on a timer of one event loop, so concurrent clients do not
  wait for each other, the pause costs no CPU of the process under test, and a call costs the
  proxy little CPU (a benchmark on a small machine should measure the server, not the proxy).

All are context managers; their URLs are ``http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 10.0


def listening_socket() -> socket.socket:
    """A TCP socket listening on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(1024)
    return sock


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_answering(url: str, timeout_seconds: float, alive: Any = None) -> None:
    """Return once ``url`` answers HTTP (any status); raise after ``timeout_seconds`` or as
    soon as ``alive()`` is false (the server died)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if alive is not None and not alive():
            raise RuntimeError(f"the server for {url} exited before answering")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_seconds} s") from None
            time.sleep(0.05)


class _Managed:
    """Context-manager plumbing: ``start`` on enter, ``stop`` on exit."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment (its ``PYTHONPATH`` too) plus ``env``; the child runs in the
    repository, so ``tests.*`` imports there."""
    return {**os.environ, **(env or {})}


def _stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


class UvicornProcess(_Managed):
    """``app`` (``"module:attribute"``) under uvicorn in a child process."""

    def __init__(self, app: str, env: dict[str, str] | None = None, ready_path: str = "/",
                 startup_timeout_seconds: float = 30.0) -> None:
        self.app = app
        self.env = env
        self.ready_path = ready_path
        self.startup_timeout_seconds = startup_timeout_seconds
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> UvicornProcess:
        sock = listening_socket()
        self.url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.asgi_support", self.app, str(sock.fileno())],
                pass_fds=(sock.fileno(),), env=_child_env(self.env), cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        finally:
            sock.close()  # the child has its own copy
        try:
            wait_until_answering(self.url + self.ready_path, self.startup_timeout_seconds,
                                 lambda: self._process is not None
                                 and self._process.poll() is None)
        except BaseException as exc:
            output = self.output()
            self.stop()
            raise RuntimeError(f"uvicorn serving {self.app} did not start:\n{output}") from exc
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the server has used so far (Linux ``/proc``)."""
        return cpu_seconds(self.pid)

    def output(self) -> str:
        """What the server printed so far (warnings and errors: access logs are off)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self._process is not None:
            _stop_process(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class UvicornThread(_Managed):
    """An ASGI app object under uvicorn in a thread of this process."""

    def __init__(self, app: Any, ready_path: str = "/",
                 startup_timeout_seconds: float = 30.0) -> None:
        import uvicorn

        self.app = app
        self.ready_path = ready_path
        self.startup_timeout_seconds = startup_timeout_seconds
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.url = ""
        self._thread: threading.Thread | None = None

    def start(self) -> UvicornThread:
        sock = listening_socket()
        self.url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                        name="uvicorn-test-server")
        self._thread.start()
        try:
            wait_until_answering(self.url + self.ready_path, self.startup_timeout_seconds,
                                 self._thread.is_alive)
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            self.server.run(sockets=[sock])

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            self._thread = None


class LatencyProxy(_Managed):
    """``tests/latencyproxy.py`` in front of ``upstream_url`` in a child process, pausing
    ``latency_seconds`` before each request."""

    def __init__(self, upstream_url: str, latency_seconds: float,
                 startup_timeout_seconds: float = 30.0) -> None:
        self.upstream_url = upstream_url
        self.latency_seconds = latency_seconds
        self.startup_timeout_seconds = startup_timeout_seconds
        self.endpoint_url = ""
        self.report = ""
        """The proxy's closing line (JSON: requests ``seen`` by operation, ``peak_pausing``),
        after :meth:`stop`."""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> LatencyProxy:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.latencyproxy", self.upstream_url,
             "--latency-seconds", str(self.latency_seconds)],
            env=_child_env(None), cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], self.startup_timeout_seconds)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the latency proxy did not start (it printed {line!r})")
        self.endpoint_url = line.strip()
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.report, _ = process.communicate(input="", timeout=STOP_TIMEOUT_SECONDS)
        _stop_process(process)


def serve(app: str, fd: int) -> None:
    """The child of :class:`UvicornProcess`: uvicorn serving ``app`` on the inherited socket."""
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_keep_alive=int(os.environ.get("UVICORN_TIMEOUT_KEEP_ALIVE",
                                                                  "5")))
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
