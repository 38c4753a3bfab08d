"""``LeaseRenewer``: keeps the session locks of a working request alive, one thread per process.

The lease is short (``lock_lease_seconds``, 7 s by default) so that a crashed holder - its
process killed, its renewals stopped - frees the session within one lease, inside a waiter's
``max_lock_wait_seconds``.  A holder that is alive but slow keeps its lock: every lock whose
lease is half used is renewed by one conditional UpdateItem (``SET lock_until_ms`` only while
``lock`` still holds this request's token), so a renewal never brings back a released lock and
a retried renewal whose first answer was lost succeeds again, unchanged.  One daemon thread
serves the whole process (it sleeps until the next renewal is due) and sends each due renewal
on a short-lived thread of its own, so a renewal hanging on its read timeout and botocore's
retries holds back no other lock's; a forked child starts with no locks and its own thread.

Cost: a renewal is a write of the whole item (1 WCU per KB, as the take), paid only by requests
that hold a lock longer than half a lease - one per ``lock_lease_seconds / 2`` they hold it.
Renewals stop after ``max_lock_hold_seconds``, so a hung request does not lock its user out, and
as soon as the request's session object is gone (a lock taken and forgotten, never saved or
released): such a lock lapses within one lease, as a crashed holder's does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .metrics import logger

RENEW_FRACTION = 0.5
"""A lease is renewed once this share of it has passed."""
RETRY_SECONDS = 0.5
"""Pause before retrying a renewal that failed (throttled, or no answer after botocore's
retries)."""


class Renewable(Protocol):
    def renew_lock(self, key: str, token: str, session: Any = None) -> bool:
        """Extend the lease of ``token`` on ``key`` (and say so in ``session``); False when the
        lock is no longer ours."""


@dataclasses.dataclass
class Held:
    """One held lock, as a renewer keeps it (``store`` renews it: a :class:`Renewable` here,
    the asyncio renewal in ``transport/aio.py``)."""

    store: Any
    owner: weakref.ref[Any]
    key: str
    token: str
    lease_seconds: float
    due: float
    renew_until: float
    label: str

    @classmethod
    def taken(cls, store: Any, owner: Any, key: str, token: str, lease_seconds: float,
              taken_at: float, max_hold_seconds: float, label: str) -> Held:
        """A lock taken at monotonic ``taken_at``: first due after ``RENEW_FRACTION`` of it."""
        return cls(store, weakref.ref(owner), key, token, lease_seconds,
                   taken_at + lease_seconds * RENEW_FRACTION, taken_at + max_hold_seconds,
                   label)


class RenewalRules:
    """The rules both renewers follow (this module's thread, ``transport/aio.py``'s task):
    when a lease is no longer renewed, and what a renewal's answer or failure does.
    ``renewal_failed`` and ``renewal_answered`` run under the caller's lock, if it has one,
    and log nothing (the ``warn_*`` methods do, outside it)."""

    _held: dict[str, Held]
    monotonic: Callable[[], float]
    renewed: int
    lost: int
    failed: int

    @staticmethod
    def in_flight(held: Held) -> None:
        """A renewal of ``held`` is sent: it is due again only once answered or failed
        (:meth:`renewal_answered`, :meth:`renewal_failed` set its next due time)."""
        held.due = math.inf

    def begin_renewal(self, held: Held) -> tuple[float, Any]:
        """``(sent, owner)`` for renewing ``held`` now - or ``owner`` None when it was dropped
        instead: its owner is gone (the request forgot its session without releasing it) or
        it is past ``max_lock_hold_seconds``."""
        sent = self.monotonic()
        owner = held.owner()
        if owner is not None and sent > held.renew_until:
            logger.warning("session %s: lock held past max_lock_hold_seconds; no longer renewed "
                           "(its lease lapses; a later save raises LockLost if it was taken)",
                           held.label)
            owner = None
        if owner is None:
            self.drop(held.token)
        return sent, owner

    def renewal_failed(self, held: Held, now: float) -> None:
        self.failed += 1
        held.due = now + RETRY_SECONDS

    def renewal_answered(self, held: Held, ours: bool, sent: float) -> bool:
        """Record a renewal's answer; True when the lock turned out lost (to be logged)."""
        if held.token not in self._held:
            return False  # saved or released meanwhile: the refused renewal is expected
        if ours:
            self.renewed += 1
            held.due = sent + held.lease_seconds * RENEW_FRACTION
            return False
        self.lost += 1
        self._held.pop(held.token, None)
        return True

    def drop(self, token: str | None) -> None:
        raise NotImplementedError

    @staticmethod
    def warn_failed(held: Held) -> None:
        logger.warning("session %s: lock renewal failed; retrying in %ss", held.label,
                       RETRY_SECONDS, exc_info=True)

    @staticmethod
    def warn_lost(held: Held) -> None:
        logger.warning("session %s: lock lost before its renewal (lease lapsed and taken over); "
                       "this request's save will raise LockLost", held.label)


class LeaseRenewer(RenewalRules):
    """Renews held locks whose lease is half used; ``hold`` when taken, ``drop`` when done."""

    def __init__(self, monotonic: Any = time.monotonic) -> None:
        self.monotonic = monotonic
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, Held] = {}
        self._thread: threading.Thread | None = None
        self.renewed = 0
        self.lost = 0
        self.failed = 0

    def hold(self, store: Renewable, owner: Any, key: str, token: str, lease_seconds: float,
             taken_at: float, max_hold_seconds: float, label: str = "") -> None:
        """Keep ``token``'s lock on ``key`` (taken at monotonic ``taken_at``) alive while
        ``owner`` (the request's session object) exists."""
        held = Held.taken(store, owner, key, token, lease_seconds, taken_at, max_hold_seconds,
                          label)
        with self._cond:
            self._held[token] = held
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="dynamo-sessions-lease")
                self._thread.start()
            self._cond.notify()

    def drop(self, token: str | None) -> None:
        """Stop renewing ``token``'s lock (saved, released or lost)."""
        if token is None:
            return
        with self._cond:
            self._held.pop(token, None)

    def holding(self) -> int:
        with self._cond:
            return len(self._held)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._due()
                for held in due:
                    self.in_flight(held)
            for held in due:  # each on a thread of its own: a hung one holds back no other
                threading.Thread(target=self._renew_and_wake, args=(held,), daemon=True,
                                 name="dynamo-sessions-lease-renewal").start()

    def _due(self) -> list[Held]:
        """Wait (under the condition) until some lease is due; return those."""
        while True:
            now = self.monotonic()
            first = min((held.due for held in self._held.values()), default=math.inf)
            if first > now:
                self._cond.wait(None if first == math.inf else first - now)
                continue
            return [held for held in self._held.values() if held.due <= now]

    def _renew_and_wake(self, held: Held) -> None:
        try:
            self._renew(held)
        finally:
            with self._cond:
                self._cond.notify()  # its next due time is known now

    def _renew(self, held: Held) -> None:
        sent, owner = self.begin_renewal(held)
        if owner is None:
            return
        try:
            ours = held.store.renew_lock(held.key, held.token, owner)
        except Exception:
            self.warn_failed(held)
            with self._cond:
                self.renewal_failed(held, self.monotonic())
            return
        with self._cond:
            lost = self.renewal_answered(held, ours, sent)
        if lost:
            self.warn_lost(held)


RENEWER = LeaseRenewer()
"""The process's renewer (one thread, started with the first lock)."""
os.register_at_fork(after_in_child=RENEWER._reset)
