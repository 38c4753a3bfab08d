"""``ServerClock``: the current time by DynamoDB's clock, from the ``Date`` header of its answers.

Lease and expiry decisions compare times written by many hosts; a host whose clock is off would
take live leases, keep its own abandoned ones and delete live sessions.  Every DynamoDB answer
(errors included; DynamoDB Local and moto too) carries an HTTP ``Date`` header, the server's
time in whole seconds, truncated.  The server's clock read ``T`` with ``Date <= T < Date + 1``
between the moment the request was sent and the moment its answer arrived, so each answer gives
bounds on the server's time *now*, measured on the local monotonic clock::

    Date + (now - received)  <=  server time  <  Date + 1 + (now - sent)

Bounds from successive answers are intersected (1 s + one round trip at first, narrowing to
about a round trip as answers land at different points of the server's second) and widened
by ``DRIFT`` per second since, for the local rate error.  An answer disjoint from the bounds
(the server's clock was stepped, or the machine was suspended) replaces them.  The local wall
clock plays no part once the first answer arrived: stepping it changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("dynamo_sessions")

DATE_RESOLUTION_SECONDS = 1.0
"""The ``Date`` header gives whole seconds (RFC 9110), truncated."""
DRIFT = 1e-3
"""Largest rate error assumed between the local monotonic clock and the server's (1000 ppm:
ten times a poor quartz, twice NTP's largest slew)."""
UNCERTAINTY_BUDGET_SECONDS = 1.5
"""The width of the bounds the lease defaults are designed for: the 1 s resolution of
``Date`` plus 0.5 s of round trip on the answer that gave them.  Wider bounds stay safe (no
live lease is taken, no live session deleted); they only make a waiter behind a crashed holder
wait longer by the excess."""
EXPIRY_MARGIN_SECONDS = 1.0
"""Deletes by expiry (GC, ``delete_expired_on_read``) wait this much past the earliest time the
server can be at: a margin for DynamoDB's hosts not all reading the same second."""


class ServerClock:
    """The server's time as bounds on the local monotonic clock; thread-safe, one per store.

    Calling it gives the best estimate (the middle of the bounds; the local clock before the
    first answer).  :meth:`earliest` is a time the server has certainly reached - the one to
    compare against leases and expiries written by others.  ``local`` is the local wall
    clock (only used before the first answer and for the skew warning).
    """

    def __init__(self, local: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 warning_seconds: float = 2.0) -> None:
        self.local = local
        self.monotonic = monotonic
        self.warning_seconds = warning_seconds
        self.observations = 0
        self.resets = 0
        """Answers that contradicted the bounds and replaced them."""
        self.sync_calls = 0
        """DescribeEndpoints calls made only to learn the server's time (once per clock)."""
        self._lock = threading.Lock()
        self._low = self._high = self._reference = 0.0
        self._synced = False
        self._trust_local = False
        self._warned = False

    # --- reading ------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """An answer with a ``Date`` header has been seen."""
        return self._synced

    @property
    def wants_sync(self) -> bool:
        """No answer has told the server's time yet, and none said it cannot (no ``Date``)."""
        return not (self._synced or self._trust_local)

    def bounds(self) -> tuple[float, float] | None:
        """``(earliest, latest)``: the server's time now lies between them; None before sync."""
        with self._lock:
            if not self._synced:
                return None
            return self._at(self.monotonic())

    def _at(self, moment: float) -> tuple[float, float]:
        elapsed = moment - self._reference
        spread = DRIFT * abs(elapsed)
        return self._low + elapsed - spread, self._high + elapsed + spread

    def __call__(self) -> float:
        bounds = self.bounds()
        if bounds is None:
            return self.local()
        return (bounds[0] + bounds[1]) / 2

    def earliest(self) -> float:
        """A time the server's clock has certainly reached (the local clock before sync)."""
        bounds = self.bounds()
        return self.local() if bounds is None else bounds[0]

    def uncertainty_seconds(self) -> float:
        """Width of the bounds (infinite before sync)."""
        bounds = self.bounds()
        return float("inf") if bounds is None else bounds[1] - bounds[0]

    def offset_seconds(self) -> float:
        """Estimated server time minus local wall clock time (0 before sync)."""
        return self() - self.local() if self._synced else 0.0

    # --- learning -----------------------------------------------------------------------------

    def call(self, method: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """``method(**kwargs)``, learning from its answer (a ``ClientError``'s too)."""
        sent = self.monotonic()
        try:
            response = method(**kwargs)
        except ClientError as exc:
            self.observe(exc.response, sent, self.monotonic())
            raise
        self.observe(response, sent, self.monotonic())
        return response

    def observe(self, response: Mapping[str, Any], sent: float, received: float) -> None:
        """Learn from one answer's ``Date``, sent and received at these monotonic instants."""
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        text = headers.get("date")
        try:
            date = parsedate_to_datetime(text).timestamp() if text else None
        except (TypeError, ValueError):
            date = None
        if date is None:
            self._no_date()
            return
        low, high = date, date + DATE_RESOLUTION_SECONDS + max(0.0, received - sent)
        with self._lock:
            self.observations += 1
            if self._synced:
                old_low, old_high = self._at(received)
                if old_low <= high and low <= old_high:
                    low, high = max(low, old_low), min(high, old_high)
                else:
                    self.resets += 1
            self._low, self._high, self._reference = low, high, received
            self._synced = True
            warn = not self._warned
            if warn:
                skew = self._at(self.monotonic())
                local = self.local()
                warn = skew[0] - local > self.warning_seconds or local - skew[1] > (
                    self.warning_seconds)
                self._warned = warn
        if warn:
            logger.warning(
                "this machine's clock is %+.1f s (+-%.1f) off DynamoDB's, more than "
                "clock_skew_warning_seconds=%s: leases and expiries follow DynamoDB's clock, "
                "but fix NTP here - other software on this host trusts the local clock",
                -self.offset_seconds(), self.uncertainty_seconds() / 2, self.warning_seconds,
            )

    def _no_date(self) -> None:
        with self._lock:
            if self._synced or self._trust_local:
                return
            self._trust_local = True
        logger.warning("DynamoDB's answer carried no Date header (a proxy removed it?): "
                       "lease and expiry decisions trust this machine's clock")

    def sync(self, client: Any) -> None:
        """Before the first answer, ask the server's time once (DescribeEndpoints: no capacity;
        any answer carries a ``Date``, an error too).  A transport error leaves it unsynced."""
        if not self.wants_sync:
            return
        self.sync_calls += 1
        try:
            self.call(client.describe_endpoints)
        except (ClientError, BotoCoreError) as exc:
            logger.debug("clock sync call failed: %s", exc)


def earliest(clock: Callable[[], float], client: Any) -> float:
    """A time the server has certainly reached: :meth:`ServerClock.earliest` after a sync; a
    plain callable (a test's simulated time) is taken as it is."""
    if isinstance(clock, ServerClock):
        clock.sync(client)
        return clock.earliest()
    return clock()


def latest(clock: Callable[[], float]) -> float:
    """A time the server's clock has certainly not passed yet (:meth:`ServerClock.bounds`); a
    plain callable (a test's simulated time) is taken as it is, as is an unsynced clock."""
    bounds = clock.bounds() if isinstance(clock, ServerClock) else None
    return clock() if bounds is None else bounds[1]


def expiry_cutoff(clock: Callable[[], float], client: Any) -> float:
    """Items that expired before this are expired by the server's clock too (with
    ``EXPIRY_MARGIN_SECONDS``; a plain callable is taken as it is)."""
    if isinstance(clock, ServerClock):
        return earliest(clock, client) - EXPIRY_MARGIN_SECONDS
    return clock()
