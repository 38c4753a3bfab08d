"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, in front of a real DynamoDB API server.

botocore talks to the proxy as it would to DynamoDB (keep-alive connections included); the proxy
reads each request whole, picks it out by its ``X-Amz-Target`` (``DynamoDB_20120810.UpdateItem``
-> ``UpdateItem``) and body, and either forwards it or injects one fault:

* ``drop_before``  - close the client's connection; nothing is forwarded.
* ``drop_after``   - forward, read the whole answer, close the client's connection without it:
  the write WAS applied, the client never learns it.
* ``delay``        - hold the request past the client's read timeout, then close; never forwarded.
* ``delay_after``  - forward at once (applied), withhold the answer past the read timeout, close.
* ``delay_late``   - hold past the read timeout, close the client's connection, *then* forward:
  the original lands after (or alongside) the client's retry.
* ``http500``      - answer HTTP 500 ``InternalServerError`` JSON; nothing is forwarded.
* ``http502``      - answer HTTP 502 with an HTML page and no DynamoDB error code (a load
  balancer or proxy in between that lost its upstream); nothing is forwarded.
* ``throttle``     - answer HTTP 400 ``ProvisionedThroughputExceededException`` (or
  ``throttle_code``) JSON; nothing is forwarded.

Two ways to drive it, usable together (scripted rules are consulted first):

* :meth:`FaultProxy.script` - "the next N requests of this operation (whose body contains this
  text) get this fault";
* :meth:`FaultProxy.randomly` - a seeded random mode with a rate per kind, for soak runs.

``latency_seconds`` adds a fixed pause before every request is handled (the round trip of a
real network, for benchmarks); connections do not wait for each other, as each has its thread.

It is thread-safe (one thread per client connection, at most ``max_connections``), counts what
it injected by kind (:attr:`injected`) and what it saw by operation (:attr:`seen`), and stops
cleanly (:meth:`stop`, or use it as a context manager).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

KINDS = ("drop_before", "drop_after", "delay", "delay_after", "delay_late", "http500",
         "http502", "throttle")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "proxy-connection", "te", "trailer", "upgrade"}
_MAX_HEADER_LINES = 200
_MAX_BODY_BYTES = 32 * 1024 * 1024


class _Request:
    def __init__(self, method: str, path: str, headers: list[tuple[str, str]],
                 body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        self.operation = target.rsplit(".", 1)[-1]
        self.text = body.decode("utf-8", "replace")


class _Rule:
    def __init__(self, kind: str, operation: str, count: int, contains: str,
                 then: Callable[[], Any] | None) -> None:
        self.kind = kind
        self.operation = operation
        self.count = count
        self.contains = contains
        self.then = then

    def matches(self, request: _Request) -> bool:
        return self.count > 0 and request.operation == self.operation and (
            self.contains in request.text)


class FaultProxy:
    """A fault-injecting proxy from ``127.0.0.1:<free port>`` to ``upstream_url``."""

    def __init__(self, upstream_url: str, delay_seconds: float = 1.0,
                 throttle_code: str = "ProvisionedThroughputExceededException",
                 max_connections: int = 256, upstream_timeout_seconds: float = 30.0,
                 latency_seconds: float = 0.0) -> None:
        rest = upstream_url.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.partition(":")
        self.upstream = (host, int(port or 80))
        self.delay_seconds = delay_seconds
        """How long ``delay*`` faults hold a request: set it above the client's read timeout."""
        self.throttle_code = throttle_code
        self.max_connections = max_connections
        self.upstream_timeout_seconds = upstream_timeout_seconds
        self.latency_seconds = latency_seconds
        """Pause before handling each request (a network's round trip)."""
        self.pausing = 0
        self.peak_pausing = 0
        """Requests in their latency pause now, and at most at once so far."""
        self.injected: collections.Counter[str] = collections.Counter()
        """Faults injected so far, by kind."""
        self.seen: collections.Counter[str] = collections.Counter()
        """Requests received so far, by operation (faulted ones included)."""
        self.callback_errors: list[BaseException] = []
        """What a script's ``then`` callback raised (:meth:`counts` raises the first)."""
        self._rules: list[_Rule] = []
        self._rates: dict[str, float] = {}
        self._random_operations: set[str] | None = None
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.endpoint_url = ""

    # --- driving it ---------------------------------------------------------------------------

    def script(self, kind: str, operation: str, count: int = 1, contains: str = "",
               then: Callable[[], Any] | None = None) -> None:
        """The next ``count`` ``operation`` requests whose body contains ``contains`` get
        ``kind`` (rules are consulted in the order they were added).

        ``then`` runs after the fault, before the client's connection is closed (or answered):
        with ``drop_after`` it runs strictly between the applied request and the client's
        retry - another request "right after" a write whose answer was lost.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
        with self._lock:
            self._rules.append(_Rule(kind, operation, count, contains, then))

    def randomly(self, rates: dict[str, float], seed: int = 0,
                 operations: set[str] | None = None) -> None:
        """From now on, inject each kind with probability ``rates[kind]`` per request (of
        ``operations`` only, when given); ``{}`` turns the random mode off."""
        unknown = set(rates) - set(KINDS)
        if unknown or sum(rates.values()) > 1.0:
            raise ValueError(f"rates must be kinds of {KINDS} summing to <= 1: {rates}")
        with self._lock:
            self._rates = dict(rates)
            self._rng = random.Random(seed)
            self._random_operations = operations

    def clear(self) -> None:
        """Forget every scripted rule and the random mode."""
        with self._lock:
            self._rules.clear()
            self._rates = {}

    def pending(self) -> int:
        """Scripted faults not yet injected."""
        with self._lock:
            return sum(rule.count for rule in self._rules)

    def counts(self) -> dict[str, int]:
        """A snapshot of :attr:`injected`; raises what a ``then`` callback raised (it runs in
        the proxy's thread, where an error would otherwise go unseen)."""
        with self._lock:
            if self.callback_errors:
                raise AssertionError("a scripted callback failed") from self.callback_errors[0]
            return dict(self.injected)

    def _then(self, then: Callable[[], Any]) -> None:
        try:
            then()
        except BaseException as exc:
            with self._lock:
                self.callback_errors.append(exc)
            raise

    def _choose(self, request: _Request) -> tuple[str | None, Callable[[], Any] | None]:
        with self._lock:
            self.seen[request.operation] += 1
            kind: str | None = None
            then = None
            for rule in self._rules:
                if rule.matches(request):
                    rule.count -= 1
                    kind, then = rule.kind, rule.then
                    break
            if kind is None and self._rates and (
                    self._random_operations is None
                    or request.operation in self._random_operations):
                draw = self._rng.random()
                for name, rate in self._rates.items():
                    if draw < rate:
                        kind = name
                        break
                    draw -= rate
            if kind is not None:
                self.injected[kind] += 1
            return kind, then

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.2)
        self._listener = listener
        self.endpoint_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._acceptor = threading.Thread(target=self._accept, name="faultproxy-accept",
                                          daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, and wait (bounded) for the threads."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _close(sock)
        for thread in threads:
            thread.join(timeout=self.delay_seconds + 5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._threads) >= self.max_connections:
                    _close(client)
                    continue
                thread = threading.Thread(target=self._serve, args=(client,),
                                          name="faultproxy-conn", daemon=True)
                self._sockets.add(client)
                self._threads.add(thread)
            thread.start()

    # --- one client connection ----------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        upstream: http.client.HTTPConnection | None = None
        reader = client.makefile("rb")
        try:
            while not self._stopping.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                kind, then = self._choose(request)
                if self.latency_seconds:
                    self._pause()
                if kind in ("http500", "http502", "throttle"):
                    if then is not None:
                        self._then(then)
                    client.sendall(self._error(kind))
                    continue
                if kind in ("delay", "delay_late"):
                    self._stopping.wait(self.delay_seconds)
                    if kind == "delay_late":
                        _close(client)
                        upstream = self._forward(upstream, request)[0]
                if kind in ("drop_after", "delay_after"):
                    upstream, answer = self._forward(upstream, request)
                    if kind == "delay_after":
                        self._stopping.wait(self.delay_seconds)
                if then is not None:
                    self._then(then)
                if kind is not None:
                    return
                upstream, answer = self._forward(upstream, request)
                client.sendall(answer)
        except OSError:
            return
        finally:
            reader.close()
            _close(client)
            if upstream is not None:
                upstream.close()
            with self._lock:
                self._sockets.discard(client)
                self._threads.discard(threading.current_thread())

    def _pause(self) -> None:
        with self._lock:
            self.pausing += 1
            self.peak_pausing = max(self.peak_pausing, self.pausing)
        try:
            self._stopping.wait(self.latency_seconds)
        finally:
            with self._lock:
                self.pausing -= 1

    def _forward(self, upstream: http.client.HTTPConnection | None,
                 request: _Request) -> tuple[http.client.HTTPConnection, bytes]:
        """Send ``request`` upstream (reusing the connection) and return its whole answer."""
        for attempt in (1, 2):
            if upstream is None:
                upstream = http.client.HTTPConnection(*self.upstream,
                                                      timeout=self.upstream_timeout_seconds)
            try:
                upstream.putrequest(request.method, request.path, skip_host=True,
                                    skip_accept_encoding=True)
                for name, value in request.headers:
                    if name.lower() not in _HOP_BY_HOP:
                        upstream.putheader(name, value)
                upstream.putheader("Content-Length", str(len(request.body)))
                upstream.endheaders(request.body)
                response = upstream.getresponse()
                body = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                upstream.close()  # a stale keep-alive connection to the server: once more
                upstream = None
                if attempt == 2:
                    raise
        assert upstream is not None
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        head += [f"{name}: {value}" for name, value in response.getheaders()
                 if name.lower() not in _HOP_BY_HOP]
        head.append(f"Content-Length: {len(body)}")
        return upstream, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    def _error(self, kind: str) -> bytes:
        if kind == "http502":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(page)) + page
        status, code = ((500, "InternalServerError") if kind == "http500"
                        else (400, self.throttle_code))
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                           "message": f"injected by faultproxy ({kind})"}).encode()
        reason = "Internal Server Error" if status == 500 else "Bad Request"
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.0\r\n"
                f"x-amzn-RequestId: faultproxy-{time.monotonic_ns()}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode("latin-1") + body


def _read_request(reader: Any) -> _Request | None:
    """One HTTP/1.1 request (Content-Length or chunked body), or None at end of stream."""
    line = reader.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = reader.readline(65537)
    if not line:
        return None
    method, path, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: list[tuple[str, str]] = []
    for _ in range(_MAX_HEADER_LINES):
        raw = reader.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    fields = {name.lower(): value for name, value in headers}
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(reader.readline(65537).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                reader.readline(65537)
                break
            body += reader.read(size)
            reader.readline(65537)
            if len(body) > _MAX_BODY_BYTES:
                raise OSError("request body too large")
    else:
        length = int(fields.get("content-length", "0"))
        if length > _MAX_BODY_BYTES:
            raise OSError("request body too large")
        body = reader.read(length) if length else b""
    return _Request(method, path, headers, body)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.faultproxy UPSTREAM_URL [--seed N] [--delay-seconds S]
    [--latency-seconds S] [KIND=RATE ...]``

    Runs the proxy in random mode for other processes: prints its endpoint URL on the first
    line of stdout, runs until stdin closes, then prints the injected counts as JSON.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.faultproxy")
    parser.add_argument("upstream_url")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay-seconds", type=float, default=1.0)
    parser.add_argument("--latency-seconds", type=float, default=0.0)
    parser.add_argument("rates", nargs="*", help="KIND=RATE, e.g. drop_after=0.01")
    args = parser.parse_intermixed_args(argv)
    rates = {kind: float(rate) for kind, _, rate in (r.partition("=") for r in args.rates)}
    with FaultProxy(args.upstream_url, delay_seconds=args.delay_seconds,
                    latency_seconds=args.latency_seconds) as proxy:
        proxy.randomly(rates, seed=args.seed)
        print(proxy.endpoint_url, flush=True)
        sys.stdin.read()
        counts = proxy.counts()
    print(json.dumps({"injected": counts, "seen": dict(proxy.seen)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
