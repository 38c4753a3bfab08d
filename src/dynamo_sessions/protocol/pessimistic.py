"""``locking="pessimistic"``: a lease lock with an owner and an expiry.

``load`` takes the lock with one conditional UpdateItem that also returns the item (``lock`` =
a random owner token, ``lock_until_ms`` = its expiry, ``prior_expires`` = the expiry before
the lock); a lock whose lease has passed is taken over; after ``max_lock_wait_seconds`` it
raises :class:`LockTimeout` - no session, no lock touched.  While held, the lease is renewed
(a :class:`~.steps.Hold` step).  ``save`` and ``release`` act only while this request still
owns the lock, and remove all three attributes (an unlocked item has no ``lock``, as in PHP);
a save whose lease was taken over raises :class:`LockLost` instead of overwriting the newer
holder's data.

While locked, ``expires`` is the take's (now + the load's lifetime), so that TTL cannot delete
the item under its holder and an orphaned lock expires.  Giving the lock back without writing
data (a release; an unchanged save whose expiry is not due for a refresh) puts back the expiry
the session had before the lock: a read-only request neither cuts a long session down to the
load's lifetime nor stretches a short one (a moved marker's 300 s).  A holder that crashed
leaves its take's expiry; the request that takes the lock over once the lease has passed reads
the session's own (``prior_expires``), keeps it there while it holds the lock (its take over
is a request of its own: :mod:`.take`) and gives that back.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from ..errors import CorruptSession, LockLost, LockTimeout
from ..metrics import logger
from ..transport.translate import is_condition_failure
from . import interrupted
from .calls import retried, transient
from .ids import log_id
from .item import (
    _LOCK_BYTES,
    DATA,
    EXPIRES,
    LOCK,
    LOCK_UNTIL_MS,
    PRIOR_EXPIRES,
    LoadedSession,
    _before_lock,
    check_lifetime,
    from_item,
)
from .none import NoLocking
from .steps import Drop, Hold, Operation, Sleep
from .take import attribute, crashed, giving_back, take_params, taken_over

_LEASE_MARGIN_MS = 1000
_RELEASE_ROUNDS = 2  # rounds of botocore's attempts a lock release gets


class Pessimistic(NoLocking):
    """``locking="pessimistic"``: the lease lock."""

    locking = "pessimistic"
    load_waits = True

    def load(self, session_id: str, *,
             lifetime_seconds: int | None = None) -> Operation[LoadedSession]:
        key = self.item_key(session_id)
        check_lifetime(lifetime_seconds)
        token = secrets.token_urlsafe(16)  # _LOCK_TOKEN_BYTES characters
        config = self.config
        backoff = self._backoff()
        tally = self._begin()
        retries = 0
        lease_ms = int(config.lock_lease_seconds * 1000)
        lifetime = self._lifetime if lifetime_seconds is None else lifetime_seconds
        over = False  # taking over a crashed holder's lock (take.py)
        while True:
            # Take over only a lease the server's clock has certainly passed; date a new one
            # from that same earliest time, so a fast local clock cannot stretch it.  The
            # expiry too is dated once synced (a fresh store's first take).
            now_ms = int((yield from self._earliest()) * 1000)
            expires = int(self.clock()) + lifetime
            taken_at = self.lease_clock()
            try:
                # ALL_OLD tells what was stored (its own expiry included: an expired session
                # reads as absent) and nothing for a new item; ``expires`` is always set, so
                # TTL cannot delete the item under the holder and an orphaned lock expires.
                # On failure the item comes back too (no extra charge): it sizes the WCU
                # DynamoDB charges for the failed attempt but does not report.
                # The old expiry is kept in the item while locked (PRIOR_EXPIRES, NULL for none;
                # a take over a crashed holder keeps the one it holds: take.py).
                response = yield from interrupted.taking(self, key, token, session_id, take_params(
                    self._key(key), token, now_ms, now_ms + lease_ms, expires, over))
                break
            except ClientError as exc:
                if not is_condition_failure(exc):
                    self._report("lock", session_id, tally, outcome="error")
                    raise
                found = exc.response.get("Item")
                if found is not None and found.get(LOCK) == {"S": token}:
                    # Our own earlier attempt took it (its answer was lost): the item as it
                    # was before is the one found, less the lock, with its old expiry back.
                    response = {"Attributes": _before_lock(found)}
                    break
                if not over and crashed(found, now_ms):
                    over = True
                    continue  # a crashed holder's: taken over at once (take.py)
                over = False
            retries += 1
            tally.retries = retries
            pause = self._pause(backoff)
            if pause is None:
                waited = backoff.slept_seconds
                self.metrics.add(lock_waits=retries, lock_wait_seconds=waited, lock_timeouts=1)
                self._report("lock", session_id, tally, lock_wait_seconds=waited,
                             outcome="timeout")
                raise LockTimeout(
                    f"session {log_id(session_id)} stayed locked for {waited:.2f}s "
                    f"(max_lock_wait_seconds={config.max_lock_wait_seconds}); no session data "
                    "was returned - answer 503 and let the client retry"
                )
            yield pause
        waited = backoff.slept_seconds
        if retries:
            self.metrics.add(lock_waits=retries, lock_wait_seconds=waited)
        # The session's own expiry (None: nothing stored), not the take's: a lock given back
        # without a write puts it back.
        session = LoadedSession(session_id=session_id, key=key, data={}, lock_token=token,
                                item_exists=True, lock_wait_seconds=waited,
                                lock_until_ms=now_ms + lease_ms,
                                lifetime_seconds=lifetime_seconds)
        yield Hold(key, token, config.lock_lease_seconds, taken_at,
                   config.max_lock_hold_seconds, log_id(session_id), session)
        old = taken_over(response.get("Attributes"))
        if old:
            try:
                loaded = from_item(session_id, key, old, self._cutoff())
            except CorruptSession:
                # Keep the undecodable item as it was (no delete, its old expiry back, so a
                # broken session still expires): only give the lock back.
                yield Drop(token)
                yield from self._release(session, *giving_back(old.get(EXPIRES)))
                self._report("lock", session, tally, lock_wait_seconds=waited,
                             outcome="error")
                raise
            session.data, session.payload = loaded.data, loaded.payload
            session.moved, session.expires = loaded.moved, loaded.expires
        self._report("lock", session, tally, lock_wait_seconds=waited)
        return session

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> Operation[LoadedSession]:
        return self.load(session_id, lifetime_seconds=lifetime_seconds)  # take the lock

    def writable(self, session: LoadedSession) -> bool:
        return session.lock_token is not None

    def renew_lock(self, key: str, token: str,
                   session: LoadedSession | None = None) -> Operation[bool]:
        """Extend the lease of ``token``'s lock on ``key`` (``lease.LeaseRenewer`` asks for
        it); False when the lock is no longer ours.  Only ``lock_until_ms`` is set, and only
        while ``lock`` holds the token: a released lock stays released, a deleted item stays
        deleted, and a retry after a lost answer finds the token and succeeds again."""
        until_ms = int((yield from self._earliest()) * 1000
                       + self.config.lock_lease_seconds * 1000)
        try:
            yield from self._call("UpdateItem", {
                "Key": self._key(key), "UpdateExpression": "SET #lu = :until",
                "ConditionExpression": "#l = :t",
                "ExpressionAttributeNames": {"#l": LOCK, "#lu": LOCK_UNTIL_MS},
                "ExpressionAttributeValues": {":t": {"S": token},
                                              ":until": {"N": str(until_ms)}},
            })
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            return False
        if session is not None:
            session.lock_until_ms = until_ms  # this request's lease now ends later
        return True

    def save(self, session: LoadedSession, data: Mapping[str, Any] | None = None, *,
             lifetime_seconds: int | None = None) -> Operation[bool]:
        if session.lock_token is not None:  # the save releases the lock (or gives it back)
            yield Drop(session.lock_token)
        return (yield from super().save(session, data, lifetime_seconds=lifetime_seconds))

    def _overhead(self, session: LoadedSession, expires: int) -> int:
        # Room for the lock attributes: a stored session must still fit when it is locked
        # again (DynamoDB refuses a lock that would take the item past the limit).
        return super()._overhead(session, expires) + _LOCK_BYTES

    def _versioned(self, session: LoadedSession) -> bool:
        return False  # the lock serialises writes (increments included)

    def _unchanged(self, session: LoadedSession, names: dict[str, str],
                   values: dict[str, Any]) -> str:
        if session.lock_token is None:  # stored by this request (create), not locked
            return super()._unchanged(session, names, values)
        names["#l"] = LOCK
        values[":t"] = {"S": session.lock_token}
        return "#l = :t"

    def _save_successor(self, successor: LoadedSession,
                        data: dict[str, Any]) -> Operation[None]:
        if successor.lock_token is not None:
            yield from super()._save_successor(successor, data)
            return
        # created by this request: lock it to write
        locked = yield from self.load(successor.session_id,
                                      lifetime_seconds=successor.lifetime_seconds)
        yield from self.save(locked, data)
        successor.data, successor.payload, successor.expires = data, locked.payload, locked.expires

    def _changed_while_moving(self, old: LoadedSession) -> Operation[None]:
        if old.lock_token is None:
            return  # not locked by this request: merged as without locking
        yield Drop(old.lock_token)
        old.lock_token = None
        raise LockLost(
            f"session {log_id(old.session_id)}: the lock lease "
            f"({self.config.lock_lease_seconds}s) expired and another request took the session "
            "while it was being moved to a new id; the move was refused"
        )

    def _write(self, session: LoadedSession, payload: bytes, expires: int) -> Operation[None]:
        yield from self._update_owned(
            session, "SET #d = :d, #e = :e REMOVE #l, #lu, #pe",
            {":d": {"B": payload}, ":e": {"N": str(expires)}}, {"#d": DATA, "#e": EXPIRES},
            raise_lost=True,
        )
        self._stored(session, payload, expires)

    def _keep(self, session: LoadedSession) -> Operation[None]:
        if session.lock_token is not None:  # the lock goes back, the expiry as it was
            yield from self._update_owned(session, *giving_back(attribute(session.expires)),
                                          raise_lost=False)

    def _refresh(self, session: LoadedSession, expires: int) -> Operation[None]:
        # A refresh is due (an unchanged session's _keep otherwise); releasing is a write
        # anyway: refreshing the expiry in it costs nothing more.
        yield from self._update_owned(session, "SET #e = :e REMOVE #l, #lu, #pe",
                                      {":e": {"N": str(expires)}}, {"#e": EXPIRES},
                                      raise_lost=False)
        session.expires = expires

    def _own_attempt_applied(self, session: LoadedSession, exc: ClientError,
                             retried_before: bool = False) -> bool:
        """A call conditional on this request's lock found the lock gone: was it removed by
        an earlier attempt of this very call (applied, its answer lost, then retried)?

        Only a retried call can have been applied before.  While this request's lease runs
        (by its clock, with a margin), nobody else may take the lock (a take needs it absent
        or expired), so the one thing that removes it is this request's own write - unless
        the item is gone (a destroy elsewhere): then nothing can be told, and it was not.
        """
        if not (retried_before or retried(exc)) or exc.response.get("Item") is None:
            return False
        until = session.lock_until_ms
        return until is not None and self._latest() * 1000 < until - _LEASE_MARGIN_MS

    def _update_owned(self, session: LoadedSession, update: str, values: dict[str, Any],
                      names: dict[str, str], raise_lost: bool,
                      retried_before: bool = False) -> Operation[None]:
        if session.lock_token is None:
            raise LockLost(f"session {log_id(session.session_id)} is not locked by this request")
        try:
            yield from self._call("UpdateItem", {
                "Key": self._key(session.key), "UpdateExpression": update,
                "ConditionExpression": "#l = :t",
                "ExpressionAttributeNames": {"#l": LOCK, "#lu": LOCK_UNTIL_MS,
                                             "#pe": PRIOR_EXPIRES, **names},
                "ExpressionAttributeValues": {":t": {"S": session.lock_token}, **values},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            })
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if self._own_attempt_applied(session, exc, retried_before):
                session.lock_token = None
                return
            session.lock_token = None
            if raise_lost:
                raise LockLost(
                    f"session {log_id(session.session_id)}: the lock lease "
                    f"({self.config.lock_lease_seconds}s) expired and another request took "
                    "the session; this write was refused so as not to overwrite its data"
                ) from exc
            logger.warning("session %s: lock lease was lost before release",
                           log_id(session.session_id))
            return
        session.lock_token = None

    def _delete_for_save(self, session: LoadedSession,
                         retried_before: bool = False) -> Operation[None]:
        if session.lock_token is None:
            raise LockLost(f"session {log_id(session.session_id)} is not locked by this request")
        try:
            yield from self._call("DeleteItem", {
                "Key": self._key(session.key), "ConditionExpression": "#l = :t",
                "ExpressionAttributeNames": {"#l": LOCK},
                "ExpressionAttributeValues": {":t": {"S": session.lock_token}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            })
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            session.lock_token = None
            if exc.response.get("Item") is None or self._own_attempt_applied(
                    session, exc, retried_before):
                self._gone(session)  # gone, as this delete wanted (by it or by another)
                return
            raise LockLost(
                f"session {log_id(session.session_id)}: lock lease lost before delete"
            ) from exc
        session.lock_token = None
        self._gone(session)

    def release(self, session: LoadedSession) -> Operation[None]:
        """Release the lock if this request still owns it; never raises for a lost lease.

        A lock-only item (a new or expired session that got no data) is deleted; any other
        gets back the expiry it had before the lock.  A release never refreshes it: it has no
        lifetime to give (the load's may be the config's, not the session's own - a Django
        ``set_expiry``, a Flask permanent session - and a moved marker keeps its 300 s).
        """
        if session.lock_token is None:
            return
        yield Drop(session.lock_token)
        tally = self._begin()
        yield from self._release(session, *giving_back(attribute(session.expires)),
                                 lock_only=session.payload is None and not session.moved)
        self._report("release", session, tally)

    def _release(self, session: LoadedSession, update: str, values: dict[str, Any],
                 names: dict[str, str], lock_only: bool = False) -> Operation[None]:
        """Give the lock back with ``update`` (a ``lock_only`` item is deleted); never raises.

        A release that botocore gave up on (throttled, 5xx, network) - typically right after
        a save that failed the same way - is tried for another ``_RELEASE_ROUNDS - 1`` rounds
        of botocore's attempts, after a pause of ``max_lock_retry_microseconds``: a lock left
        behind blocks every request on the session until its lease ends.  A later round
        that finds its own earlier round applied counts as released.
        """
        pause = self.config.max_lock_retry_microseconds / 1e6
        for round_ in range(_RELEASE_ROUNDS):
            try:
                if lock_only:
                    try:
                        yield from self._delete_for_save(session, retried_before=round_ > 0)
                    except LockLost:
                        logger.warning("session %s: lock lease was lost before release",
                                       log_id(session.session_id))
                else:
                    yield from self._update_owned(session, update, values, names,
                                                  raise_lost=False, retried_before=round_ > 0)
                return
            except Exception as exc:
                if round_ + 1 < _RELEASE_ROUNDS and transient(exc):
                    logger.warning("session %s: lock release failed (%s); trying again",
                                   log_id(session.session_id), type(exc).__name__)
                    yield Sleep(pause)
                    continue
                logger.exception("session %s: could not release the lock; it expires by its "
                                 "lease", log_id(session.session_id))
                session.lock_token = None
                return
