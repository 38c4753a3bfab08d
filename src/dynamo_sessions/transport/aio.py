"""The asyncio transport: the session protocol's operations run on an aiobotocore client.

:func:`run` is the driver, a loop around ``generator.send`` / ``generator.throw`` as the sync
one is (see :mod:`..protocol.steps`):

* :class:`~..protocol.steps.Call` -> ``await client.<snake_case api>(**params)``, ``sent`` and
  ``received`` stamped from the monotonic clock; the answer is sent back, or the exception
  thrown in.  aiobotocore raises botocore's own classes (``ClientError`` for DynamoDB's
  answers; for the network, aiohttp's errors become ``ConnectionClosedError``,
  ``ReadTimeoutError``, ``ConnectTimeoutError``, ``EndpointConnectionError``), so
  :mod:`.translate` judges them as it judges the sync client's, after botocore's retries.
* :class:`~..protocol.steps.Sleep` -> ``asyncio.sleep``.
* :class:`~..protocol.steps.Hold` / :class:`~..protocol.steps.Drop` -> the event loop's
  :class:`AsyncLeaseRenewer` (one task per loop, the rules of :mod:`..lease`).

**Cancellation.**  A task cancelled while it awaits a step (a client gone, a timeout) has
``asyncio.CancelledError`` thrown into the operation, so the protocol's own cleanup runs (its
``finally`` / ``except BaseException`` may still yield calls: they are run), and the driver
re-raises the cancellation when the operation ends - even if the operation swallowed it or
raised another error instead (then the cancellation's ``__cause__``).  What
must finish whatever the caller does - a lock release, the last write of a save - goes through
:func:`shielded`, which runs it to completion and only then re-raises the caller's cancellation.

:func:`build_async_client` is the asyncio twin of the sync client builder: the same options of
``SessionConfig`` (endpoint, region, profile, timeouts, botocore retry mode and attempts).
aiobotocore is imported only when a client is built (the ``async`` extra).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..lease import Held, RenewalRules
from ..metrics import logger
from ..protocol.steps import Call, Drop, Hold, Operation, Sleep, Step
from .client import LOOPBACK_REGION, config_options, is_loopback

if TYPE_CHECKING:
    from ..config import SessionConfig

T = TypeVar("T")


class AsyncDynamoClient(Protocol):
    """What the driver needs of an aiobotocore DynamoDB client (aiobotocore ships no types):
    one coroutine method per DynamoDB operation, in botocore's snake_case, and ``close``."""

    meta: Any

    async def close(self) -> None: ...


RenewOperation = Callable[[str, str, Any], Operation[bool]]
"""``renew(key, token, owner)``: the protocol's renewal of ``token``'s lease on ``key``
(``owner`` is the request's session object); returns False when the lock is no longer ours."""
Sleeper = Callable[[float], Awaitable[None]]


@functools.cache
def method_name(api: str) -> str:
    """botocore's client method for a DynamoDB operation name (``PutItem`` -> ``put_item``)."""
    from botocore import xform_name

    return str(xform_name(api))


async def run(client: AsyncDynamoClient, operation: Operation[T], *,
              renew: RenewOperation | None = None, renewer: AsyncLeaseRenewer | None = None,
              monotonic: Callable[[], float] = time.monotonic,
              sleep: Sleeper = asyncio.sleep,
              renew_run: Callable[[Operation[bool]], Awaitable[bool]] | None = None) -> T:
    """Run ``operation`` on ``client`` and return its result.

    ``renew`` is the renewal operation for the leases the operation holds (needed only by
    operations that yield :class:`Hold`); ``renewer`` defaults to the running loop's
    (:func:`loop_renewer`); ``renew_run`` runs each renewal (default: on ``client``, as this
    operation's calls - a store gives its own, on the client it has when the renewal is due).
    A cancellation while a step is awaited is thrown into ``operation`` and re-raised when it
    ends (see the module's docstring).
    """
    answer: Any = None
    failure: BaseException | None = None
    cancelled: asyncio.CancelledError | None = None
    try:
        while True:
            try:
                step: Step = (operation.send(answer) if failure is None
                              else operation.throw(failure))
            except StopIteration as done:
                if cancelled is not None:
                    raise cancelled from None  # swallowed by the operation: still cancelled
                result: T = done.value
                return result
            except Exception as exc:
                if cancelled is not None:  # replaced by another error: still cancelled
                    raise cancelled from exc
                raise
            answer, failure = None, None
            try:
                if isinstance(step, Call):
                    answer = await _call(client, step, monotonic)
                elif isinstance(step, Sleep):
                    await sleep(step.seconds)
                elif isinstance(step, Hold):
                    if renew is None:
                        raise RuntimeError(f"a Hold step on {step.label}, but run() was "
                                           "given no renew operation")
                    (renewer or loop_renewer()).hold(
                        renew_run or functools.partial(run, client, renew=renew,
                                                       renewer=renewer, monotonic=monotonic,
                                                       sleep=sleep),
                        renew, step)
                elif isinstance(step, Drop):
                    (renewer or loop_renewer()).drop(step.token)
                else:
                    raise TypeError(f"not a protocol step: {step!r}")
            except asyncio.CancelledError as exc:
                cancelled = cancelled or exc
                failure = exc
            except Exception as exc:
                failure = exc
    finally:
        operation.close()  # an operation left suspended (its own error raised) is closed


async def _call(client: AsyncDynamoClient, step: Call, monotonic: Callable[[], float]) -> Any:
    method = getattr(client, method_name(step.api))
    step.sent = monotonic()
    try:
        return await method(**step.params)
    finally:
        step.received = monotonic()


async def shielded(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when the caller is cancelled meanwhile (a lock release,
    a save's write): the caller's cancellation is re-raised after ``work`` has finished.

    ``work`` runs in its own task under ``asyncio.shield``; cancelling the caller again while it
    waits does not stop it either.  If the caller was cancelled and ``work`` failed, the failure
    is logged (the caller, being cancelled, sees ``CancelledError``).
    """
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await (asyncio.shield(task) if cancelled is None else _waited_out(task))
        except asyncio.CancelledError as exc:
            if task.cancelled():
                break  # the work itself was cancelled (not by our caller): raised below
            cancelled = cancelled or exc
        except Exception:
            break  # the work failed: raised below
    if cancelled is None:
        return task.result()
    if not task.cancelled() and task.exception() is not None:
        logger.warning("a shielded operation failed after its caller was cancelled",
                       exc_info=task.exception())
    raise cancelled


async def _waited_out(task: asyncio.Future[Any]) -> None:
    """Await ``task`` for a caller already cancelled.  In an anyio cancel scope (Starlette,
    FastAPI, Litestar and httpx run on anyio) a cancelled scope cancels its waiting tasks again
    at every turn of the loop: the wait is shielded from it too, or it would spin the loop
    until ``task`` ends.  Without anyio there is no such scope."""
    try:
        import anyio
    except ImportError:  # pragma: no cover - installed with every anyio-based framework
        await asyncio.shield(task)
        return
    with anyio.CancelScope(shield=True):
        await asyncio.shield(task)


# --- leases -----------------------------------------------------------------------------------


class _Renewal:
    """How a lease held on an event loop is renewed: ``run(renew(key, token, owner))``."""

    def __init__(self, run: Callable[[Operation[bool]], Awaitable[bool]],
                 renew: RenewOperation) -> None:
        self.run = run
        self.renew = renew

    async def renew_lock(self, key: str, token: str, owner: Any) -> bool:
        return await self.run(self.renew(key, token, owner))


class AsyncLeaseRenewer(RenewalRules):
    """Renews held locks whose lease is half used, from one task on its event loop.

    The rules are :mod:`..lease`'s: renewed every ``lease_seconds * RENEW_FRACTION`` while
    the owner (the request's session object, held weakly) lives, until dropped or
    ``max_hold_seconds`` after the lock was taken; a failed renewal is retried after
    ``RETRY_SECONDS``; a refused one (the lock is no longer ours) stops.  The task runs only
    while something is held.  ``monotonic`` and ``sleep`` are the clock it follows.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Sleeper = asyncio.sleep) -> None:
        self.monotonic = monotonic
        self.sleep = sleep
        self._held: dict[str, Held] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._renewing: set[asyncio.Future[None]] = set()
        """Renewals in flight (kept: the loop holds its tasks only weakly)."""
        self.renewed = 0
        self.lost = 0
        self.failed = 0

    def hold(self, run: Callable[[Operation[bool]], Awaitable[bool]], renew: RenewOperation,
             step: Hold) -> None:
        """Keep ``step.token``'s lock alive (each renewal is ``run(renew(key, token, owner))``)."""
        self._held[step.token] = Held.taken(
            _Renewal(run, renew), step.owner, step.key, step.token, step.lease_seconds,
            step.taken_at, step.max_hold_seconds, step.label)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="dynamo-sessions-lease")
        elif self._wake is not None:
            self._wake.set()  # a lease due sooner than the one waited for

    def drop(self, token: str | None) -> None:
        """Stop renewing ``token``'s lock (saved, released or lost)."""
        if token is not None:
            self._held.pop(token, None)

    def holding(self) -> int:
        return len(self._held)

    async def _run(self) -> None:
        try:
            while self._held:
                now = self.monotonic()
                first = min(held.due for held in self._held.values())
                if first > now:
                    await self._wait(None if first == math.inf else first - now)
                    continue
                for held in [held for held in self._held.values() if held.due <= now]:
                    # Each renewal in a task of its own: one that hangs (its read timeout,
                    # botocore's retries) holds back no other lease falling due meanwhile.
                    self.in_flight(held)
                    renewal = asyncio.ensure_future(self._renew(held))
                    self._renewing.add(renewal)
                    renewal.add_done_callback(self._renewed)
        finally:
            self._task = None

    def _renewed(self, renewal: asyncio.Future[None]) -> None:
        self._renewing.discard(renewal)
        if self._wake is not None:
            self._wake.set()  # its next due time is known now

    async def _wait(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: no lease is due before a renewal in flight ends), or until
        :meth:`hold` adds a lease or a renewal ends."""
        assert self._wake is not None
        wake = self._wake
        waker = asyncio.ensure_future(wake.wait())
        waits: list[asyncio.Future[Any]] = [waker]
        if seconds is not None:
            waits.append(asyncio.ensure_future(self.sleep(seconds)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            wake.clear()

    async def _renew(self, held: Held) -> None:
        sent, owner = self.begin_renewal(held)
        if owner is None:
            return
        try:
            ours = await held.store.renew_lock(held.key, held.token, owner)
        except Exception:
            self.warn_failed(held)
            self.renewal_failed(held, self.monotonic())
            return
        finally:
            del owner
        if self.renewal_answered(held, ours, sent):
            self.warn_lost(held)


_RENEWERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncLeaseRenewer] = (
    weakref.WeakKeyDictionary())


def loop_renewer() -> AsyncLeaseRenewer:
    """The running event loop's renewer (made with its first lock)."""
    loop = asyncio.get_running_loop()
    renewer = _RENEWERS.get(loop)
    if renewer is None:
        renewer = _RENEWERS[loop] = AsyncLeaseRenewer()
    return renewer


# --- the client -------------------------------------------------------------------------------

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, Any]] = (
    weakref.WeakKeyDictionary())


def _session(profile_name: str | None) -> Any:
    """The running loop's aiobotocore session for a profile (its loaders cached, as boto3's
    default session), or a session of its own outside a loop.  Not shared between loops: a
    session's credentials (and their refresh lock) belong to one event loop."""
    from aiobotocore.session import AioSession

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return AioSession(profile=profile_name)
    sessions = _sessions.setdefault(loop, {})
    if profile_name not in sessions:
        sessions[profile_name] = AioSession(profile=profile_name)
    return sessions[profile_name]


@functools.cache
def _bounded_pool_session() -> type[Any]:
    """aiobotocore's HTTP session whose wait for one of its pooled connections is bounded by
    the connect timeout too (aiohttp's ``connect``: pool wait + connection), as a sync
    client's never waits (urllib3 opens another): without it, a call queued behind
    ``max_pool_connections`` hung calls waits until their read timeouts and retries end."""
    import aiohttp
    from aiobotocore.httpsession import AIOHTTPSession

    class BoundedPoolSession(AIOHTTPSession):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            timeout: Any = getattr(self, "_timeout")  # noqa: B009  # untyped in aiobotocore
            self._timeout = aiohttp.ClientTimeout(sock_connect=timeout.sock_connect,
                                                  sock_read=timeout.sock_read,
                                                  connect=timeout.sock_connect)

    return BoundedPoolSession


def build_async_client(config: SessionConfig,
                       **overrides: Any) -> AbstractAsyncContextManager[AsyncDynamoClient]:
    """An aiobotocore DynamoDB client with ``config``'s endpoint, region, profile, timeouts and
    botocore retries, as an async context manager (``async with build_async_client(c) as
    client:``; it closes the client's connections on exit).

    The wait for a pooled connection is bounded by the connect timeout
    (:func:`_bounded_pool_session`).  Keyword ``overrides`` are options of aiobotocore's
    ``AioConfig`` (``max_pool_connections``, ``read_timeout``, ``connector_args``,
    ``http_session_cls``, ...), which replace the configured ones, or arguments
    of ``create_client`` (``aws_access_key_id``, ``endpoint_url``, ``region_name``, ...).
    """
    from aiobotocore.config import AioConfig

    aio_options = {"connector_args", "http_session_cls", "warm_up_loader_caches"}
    options = config_options(config)
    options.update({name: overrides.pop(name) for name in list(overrides)
                    if name != "region_name"
                    and (name in AioConfig.OPTION_DEFAULTS or name in aio_options)})
    kwargs: dict[str, Any] = {"endpoint_url": config.endpoint_url,
                              "region_name": config.region_name}
    kwargs.update(overrides)
    options.setdefault("http_session_cls", _bounded_pool_session())
    kwargs["config"] = AioConfig(**options)
    session = _session(getattr(config, "profile_name", None))
    if (kwargs["region_name"] is None and session.get_config_variable("region") is None
            and is_loopback(kwargs["endpoint_url"])):
        kwargs["region_name"] = LOOPBACK_REGION
    context: AbstractAsyncContextManager[AsyncDynamoClient] = session.create_client(
        "dynamodb", **kwargs)
    return context
