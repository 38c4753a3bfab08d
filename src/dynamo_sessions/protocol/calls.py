"""The protocol's one call step, its clock and its figures: what every locking mode shares.

:class:`Protocol` holds a store's settings (config, clock, metrics) and turns a DynamoDB
request into a :class:`~.steps.Call` step: it adds the table and ``ReturnConsumedCapacity``,
yields the step, learns the server's time from the answer (``ServerClock.observe``, an error's
answer too), counts the call's units and retries, and translates a transport error with
``transport.translate`` - the one place the protocol does so.  The clock's first sync is a
``DescribeEndpoints`` call step like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .. import _core
from ..clock import EXPIRY_MARGIN_SECONDS, ServerClock, logger
from ..config import SessionConfig
from ..errors import DynamoUnavailable
from ..metrics import Metrics, OperationMetrics, Tally, current_tally, emit
from ..transport.translate import is_condition_failure, is_transient, translate, unavailable
from .ids import item_key, log_id
from .item import LoadedSession
from .steps import Call, Operation, Sleep


def http_retries(response: dict[str, Any]) -> int:
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


def retried(exc: ClientError) -> bool:
    """botocore sent this call more than once: an earlier attempt may have been applied."""
    return http_retries(exc.response) > 0


def transient(exc: BaseException) -> bool:
    """A fault that passes (throttling, 5xx, the network; or one already translated)."""
    return isinstance(exc, DynamoUnavailable) or is_transient(exc)


class Protocol:
    """What every locking mode shares: settings, the call step, the clock, the figures.

    Stateless between operations (per-request state lives in :class:`LoadedSession`), so one
    instance serves every thread or task of a process.
    """

    locking = "none"

    def __init__(self, config: SessionConfig, session_name: str, clock: Callable[[], float],
                 metrics: Metrics, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.session_name = session_name
        self.clock = clock
        self.metrics = metrics
        self.monotonic = monotonic
        """Times lock waits and write retries (the deadline of a backoff)."""
        self.lease_clock: Callable[[], float] = time.monotonic
        """The lease renewer's clock: a lock's ``taken_at``."""
        self._table = config.table_name
        self._hash_key = config.hash_key
        self._hashed = config.hash_session_ids
        self._lifetime = config.session_lifetime_seconds
        self._refresh_fraction = config.expiry_refresh_fraction

    # --- keys ---------------------------------------------------------------------------------

    def item_key(self, session_id: str) -> str:
        """The hash key value for a session id: ``<session_name>_<id>`` (or its SHA-256)."""
        return item_key(self.session_name, session_id, self._hashed)

    def _key(self, key: str) -> dict[str, Any]:
        return {self._hash_key: {"S": key}}

    def _lifetime_of(self, session: LoadedSession) -> int:
        """The lifetime a write of ``session`` gives it: its own, else the config's."""
        lifetime = session.lifetime_seconds
        return self._lifetime if lifetime is None else lifetime

    # --- the call step ------------------------------------------------------------------------

    def _call(self, api: str, params: dict[str, Any]) -> Operation[dict[str, Any]]:
        """One DynamoDB call on the table; its answer (a refused condition is raised as the
        ``ClientError`` it is, a transport fault as ``DynamoUnavailable``)."""
        params["TableName"] = self._table
        params["ReturnConsumedCapacity"] = "TOTAL"
        call = Call(api, params)
        try:
            response: dict[str, Any] = yield call
        except ClientError as exc:
            self._refused(call, exc)
            raise
        except (HTTPClientError, BotoConnectionError) as exc:  # no answer at all
            self.metrics.add_call(api, None)
            raise unavailable(api, exc) from exc
        clock = self.clock
        if isinstance(clock, ServerClock):
            clock.observe(response, call.sent, call.received)
        self.metrics.add_call(api, response.get("ConsumedCapacity"), http_retries(response))
        return response

    def _refused(self, call: Call, exc: ClientError) -> None:
        """Learn from and count an error answer; raise its typed error when it has one."""
        clock = self.clock
        if isinstance(clock, ServerClock):
            clock.observe(exc.response, call.sent, call.received)
        response = exc.response
        self.metrics.add_call(call.api, response.get("ConsumedCapacity"), http_retries(response))
        if is_condition_failure(exc) and not response.get("ConsumedCapacity"):
            # Charged by the size of the item found (at least 1 WCU), but not reported.
            found = response.get("Item")
            self.metrics.add_failed_write(
                float(_core.write_units(_core.item_size(found))) if found else 1.0
            )
        error = translate(call.api, exc, self._table)
        if error is not None:
            raise error from exc

    # --- the clock ----------------------------------------------------------------------------

    def _unsynced(self) -> bool:
        """The clock is a :class:`ServerClock` that has not seen the server's time yet."""
        clock = self.clock
        return isinstance(clock, ServerClock) and clock.wants_sync

    def _sync(self) -> Operation[None]:
        """Ask the server's time once (DescribeEndpoints: no capacity; any answer carries a
        ``Date``, an error's too).  A transport error leaves the clock unsynced."""
        clock = self.clock
        assert isinstance(clock, ServerClock)
        clock.sync_calls += 1
        call = Call("DescribeEndpoints", {})
        try:
            response = yield call
        except ClientError as exc:
            clock.observe(exc.response, call.sent, call.received)
            logger.debug("clock sync call failed: %s", exc)
            return
        except BotoCoreError as exc:
            logger.debug("clock sync call failed: %s", exc)
            return
        clock.observe(response, call.sent, call.received)

    def _earliest(self) -> Operation[float]:
        """A time the server has certainly reached (synced first); a plain callable (a test's
        simulated time) is taken as it is."""
        clock = self.clock
        if isinstance(clock, ServerClock):
            if clock.wants_sync:
                yield from self._sync()
            return clock.earliest()
        return clock()

    def _now(self) -> Operation[float]:
        """The best estimate of the server's time now - synced first, so that the first call
        of a fresh store does not date an expiry by this machine's clock (a plain callable is
        taken as it is)."""
        if self._unsynced():
            yield from self._sync()
        return self.clock()

    def _latest(self) -> float:
        """A time the server's clock has certainly not passed yet."""
        clock = self.clock
        bounds = clock.bounds() if isinstance(clock, ServerClock) else None
        return clock() if bounds is None else bounds[1]

    def _cutoff(self) -> float:
        """Items that expired before this are expired by the server's clock too (with
        ``EXPIRY_MARGIN_SECONDS``; a plain callable is taken as it is)."""
        clock = self.clock
        if isinstance(clock, ServerClock):
            return clock.earliest() - EXPIRY_MARGIN_SECONDS
        return clock()

    # --- figures ------------------------------------------------------------------------------

    def _begin(self) -> Tally:
        """Start one operation's figures: this thread's (or task's) calls add to them."""
        tally = Tally()
        current_tally.set(tally)
        return tally

    def _report(self, operation: str, session: LoadedSession | str, tally: Tally,
                **extra: Any) -> None:
        """Count ``operation`` and hand its own figures (``tally``) to the hook."""
        current_tally.set(None)
        self.metrics.add_operation("error" if extra.get("outcome") == "error" else operation)
        hook = self.config.on_operation
        if hook is None:
            return
        sid = session.session_id if isinstance(session, LoadedSession) else session
        extra.setdefault("retries", tally.retries)
        emit(hook, OperationMetrics(
            operation=operation, session=log_id(sid) if sid else "",
            read_units=tally.read_units, write_units=tally.write_units, calls=tally.calls,
            http_retries=tally.http_retries, failed_writes=tally.failed_writes,
            failed_write_units=tally.failed_write_units, **extra,
        ))

    def _conflict(self) -> None:
        """An optimistic write found a newer version: it is merged and tried again."""
        self.metrics.add(conflicts=1)
        tally = current_tally.get()
        if tally is not None:
            tally.retries += 1

    # --- waits --------------------------------------------------------------------------------

    def _backoff(self) -> Any:
        """The compiled retry schedule for one lock wait or one contended optimistic write;
        it never sleeps itself (:meth:`_pause` yields the :class:`Sleep`)."""
        config = self.config
        return _core.LockRetryBackoff(
            config.min_lock_retry_microseconds, config.max_lock_retry_microseconds,
            config.max_lock_wait_seconds, config.lock_retry_mode, clock=self.monotonic,
        )

    @staticmethod
    def _pause(backoff: Any) -> Sleep | None:
        """The next sleep of ``backoff``'s schedule, cut to end at its deadline (counted in
        ``slept_seconds``), or None once the deadline has passed - ``backoff.wait()``'s
        delays, for the driver to sleep."""
        remaining = backoff.remaining_seconds()
        if remaining <= 0:
            return None
        delay = min(backoff.next_delay_microseconds() / 1_000_000, remaining)
        backoff.slept_seconds += delay
        return Sleep(delay)
