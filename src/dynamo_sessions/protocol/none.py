"""``locking="none"``: the base rules every mode starts from, as operations (generators).

One GetItem per load; the last writer wins - but a deleted session is never written back
(:class:`SessionGone`), a session moved to a new id is never written over, and a session
holding a counter (``LoadedSession.increment``) is written like an optimistic one.  Unchanged
data writes nothing unless the expiry is due for a refresh; emptied data deletes the item.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from .. import _core
from ..errors import SessionExists, SessionGone
from ..transport.translate import is_condition_failure
from . import moved
from .calls import retried
from .ids import log_id
from .item import (
    _WRITE_TOKEN_BYTES,
    DATA,
    EXPIRES,
    MOVED,
    VERSION,
    WRITES,
    LoadedSession,
    _check_size,
    _next_writes,
    _number,
    check_lifetime,
    expired,
    from_item,
)
from .steps import Operation
from .versioned import Versioned


class NoLocking(Versioned):
    """``locking="none"``: plain reads and writes; the last writer wins, but a session
    deleted by another request is not brought back (:class:`SessionGone`)."""

    _creates_versions = False
    """``create`` writes version 1 (and a write token)."""
    load_waits = False
    """A load may wait for another request (a lock): then it must be awaited on an event
    loop, never carried out blocking on the loop's thread (the holder could not go on)."""

    # --- load ---------------------------------------------------------------------------------

    def load(self, session_id: str, *,
             lifetime_seconds: int | None = None) -> Operation[LoadedSession]:
        """Read a session.  An absent or expired one loads as empty; a read error is raised.

        Raises :class:`CorruptSession` when the stored bytes cannot be decoded: a broken item
        is never silently replaced by an empty session.
        """
        key = self.item_key(session_id)
        check_lifetime(lifetime_seconds)
        tally = self._begin()
        try:
            response = yield from self._call("GetItem", {
                "Key": self._key(key), "ConsistentRead": self.config.consistent_read})
            item = response.get("Item")
            if item is not None and self._unsynced():
                yield from self._sync()
            cutoff = self._cutoff()
            session = from_item(session_id, key, item, cutoff)
            if expired(item, session) and self.config.delete_expired_on_read:
                yield from self._delete_if_expired(key, cutoff)
                session.item_exists = False
                session.version = None  # a later write creates the item afresh
            session.lifetime_seconds = lifetime_seconds
        except GeneratorExit:
            raise
        except BaseException:
            self._report("read", session_id, tally, outcome="error")
            raise
        self._report("read", session, tally)
        return session

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> Operation[LoadedSession]:
        """A session to write that this request has not read: without locking, a blind
        write needs no read (no call); a locking mode loads it (takes the lock, learns the
        version) - callers need not know the mode."""
        check_lifetime(lifetime_seconds)
        return LoadedSession(session_id=session_id, key=self.item_key(session_id), data={},
                             item_exists=True, lifetime_seconds=lifetime_seconds)
        yield  # a generator, like every operation  # pragma: no cover

    def writable(self, session: LoadedSession) -> bool:
        """``session`` can be saved as it is (False: load it again first - a pessimistic
        session whose lock was given back, or that this request created unlocked)."""
        return True

    def _delete_if_expired(self, key: str, now: float) -> Operation[None]:
        try:
            yield from self._call("DeleteItem", {
                "Key": self._key(key), "ConditionExpression": "#e < :now",
                "ExpressionAttributeNames": {"#e": EXPIRES},
                "ExpressionAttributeValues": {":now": {"N": str(int(now))}},
            })
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            # refreshed meanwhile: not ours to delete

    # --- save ---------------------------------------------------------------------------------

    def save(self, session: LoadedSession, data: Mapping[str, Any] | None = None, *,
             lifetime_seconds: int | None = None) -> Operation[bool]:
        """Store ``data`` (default: ``session.data``) and release any lock; True on success.

        ``lifetime_seconds`` replaces the session's lifetime from now on (``None``: keep it).
        Unchanged data (same bytes as read) writes nothing unless the expiry is due for a
        refresh; empty data deletes the item (unless ``session.keep_empty``).  On any error
        the stored session is left as it was and the lock is released before it is raised.
        """
        if data is not None:
            session.data = dict(data)
        check_lifetime(lifetime_seconds)
        if lifetime_seconds is not None:
            session.lifetime_seconds = lifetime_seconds
        tally = self._begin()
        try:
            outcome = yield from self._save(session)
        except GeneratorExit:
            raise
        except BaseException:
            yield from self.release(session)
            self._report("write", session, tally, outcome="error")
            raise
        self._report(outcome, session, tally)
        return True

    def _save(self, session: LoadedSession) -> Operation[str]:
        now = yield from self._now()
        if session.moved:
            if session.data:
                raise self._moved_error(session)
            yield from self._keep(session)
            return "unchanged"  # the marker stays as it is
        if not session.data and not session.keep_empty:
            if session.item_exists or session.lock_token:
                yield from self._delete_for_save(session)
                return "delete"
            return "unchanged"
        expires = int(now) + self._lifetime_of(session)
        overhead = self._overhead(session, expires)
        payload = _core.encode_session(session.data, overhead, self.config.compress)
        if payload == session.payload:
            if self._expiry_due(session, now):
                yield from self._refresh(session, expires)
                return "refresh"
            yield from self._keep(session)
            return "unchanged"
        _check_size(overhead, payload)
        yield from self._write(session, payload, expires)
        return "write"

    def _expiry_due(self, session: LoadedSession, now: float) -> bool:
        return (session.expires is None
                or session.expires - now < self._refresh_fraction * self._lifetime_of(session))

    def _write(self, session: LoadedSession, payload: bytes, expires: int) -> Operation[None]:
        if self._versioned(session):
            yield from self._write_versioned(session, payload, expires)
            return
        # Last writer wins - unless another request has meanwhile deleted the session (a
        # logout is not undone: SessionGone), made it hold a counter (it has a version now:
        # merge, so that its increments survive) or moved it to a new id (a marker: never
        # written over).  The condition costs nothing when it holds; a retry of a write that
        # was applied finds the item as it left it and succeeds.
        condition = "attribute_not_exists(#v) AND attribute_not_exists(#m)"
        names = {"#d": DATA, "#e": EXPIRES, "#v": VERSION, "#m": MOVED}
        existed = session.existed
        if existed:
            condition = "attribute_exists(#k) AND " + condition
            names["#k"] = self._hash_key
        applied, newer = yield from self._conditional("UpdateItem", session, {
            "Key": self._key(session.key), "UpdateExpression": "SET #d = :d, #e = :e",
            "ConditionExpression": condition, "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":d": {"B": payload}, ":e": {"N": str(expires)}},
        })
        if applied:
            self._stored(session, payload, expires)
            return
        if newer is None:
            self._gone(session)
            if existed:
                raise SessionGone(
                    f"session {log_id(session.session_id)} was deleted by another request; "
                    "not recreating it"
                )
        else:
            payload = self._merge(session, newer, expires)
        yield from self._write_versioned(session, payload, expires)

    def _refresh(self, session: LoadedSession, expires: int) -> Operation[None]:
        try:
            yield from self._call("UpdateItem", {
                "Key": self._key(session.key), "UpdateExpression": "SET #e = :e",
                "ConditionExpression": "attribute_exists(#k)",
                "ExpressionAttributeNames": {"#e": EXPIRES, "#k": self._hash_key},
                "ExpressionAttributeValues": {":e": {"N": str(expires)}},
            })
            session.expires = expires
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            # deleted meanwhile (logout in another tab): do not bring it back

    def _keep(self, session: LoadedSession) -> Operation[None]:
        """Nothing to write (unchanged data, no refresh due): the item stays as it is (a
        locking mode gives its lock back)."""
        yield from ()

    def _delete_for_save(self, session: LoadedSession) -> Operation[None]:
        yield from self._call("DeleteItem", {"Key": self._key(session.key)})
        self._gone(session)

    def release(self, session: LoadedSession) -> Operation[None]:
        """Give up any lock without writing (no-op without pessimistic locking)."""
        yield from ()

    # --- other operations ---------------------------------------------------------------------

    def delete(self, session_id: str) -> Operation[bool]:
        """Delete a session (logout, ``session_destroy``); True whether or not it existed."""
        tally = self._begin()
        try:
            yield from self._call("DeleteItem", {"Key": self._key(self.item_key(session_id))})
        except GeneratorExit:
            raise
        except BaseException:
            self._report("delete", session_id, tally, outcome="error")
            raise
        self._report("delete", session_id, tally)
        return True

    def exists(self, session_id: str) -> Operation[bool]:
        """True when a live (unexpired) session is stored under ``session_id``."""
        tally = self._begin()
        response = yield from self._call("GetItem", {
            "Key": self._key(self.item_key(session_id)),
            "ConsistentRead": self.config.consistent_read,
            "ProjectionExpression": "#e, #m",
            "ExpressionAttributeNames": {"#e": EXPIRES, "#m": MOVED},
        })
        self._report("exists", session_id, tally)
        item = response.get("Item")
        if item is None or MOVED in item:
            return False
        expires = _number(item, EXPIRES, session_id)
        return expires is None or expires >= self.clock()

    def create(self, session_id: str, data: Mapping[str, Any], *,
               lifetime_seconds: int | None = None) -> Operation[LoadedSession]:
        """Store a new session only if no live item has that id (else :class:`SessionExists`);
        it lives ``lifetime_seconds`` (``None``: the config's)."""
        key = self.item_key(session_id)
        check_lifetime(lifetime_seconds)
        now = yield from self._now()
        session = LoadedSession(session_id=session_id, key=key, data=dict(data),
                                lifetime_seconds=lifetime_seconds)
        expires = int(now) + self._lifetime_of(session)
        overhead = self._overhead(session, expires)
        payload = _core.encode_session(session.data, overhead, self.config.compress)
        _check_size(overhead, payload)
        names = {"#d": DATA, "#e": EXPIRES, "#k": self._hash_key}
        values: dict[str, Any] = {":d": {"B": payload}, ":e": {"N": str(expires)},
                                  ":now": {"N": str(int(now))}}
        update = "SET #d = :d, #e = :e"
        if self._creates_versions:
            update += ", #v = :v, #w = :w"
            names.update({"#v": VERSION, "#w": WRITES})
            session.writes = _next_writes(secrets.token_bytes(_WRITE_TOKEN_BYTES), b"")
            values.update({":v": {"N": "1"}, ":w": {"B": session.writes}})
        tally = self._begin()
        try:
            yield from self._call("UpdateItem", {
                "Key": self._key(key), "UpdateExpression": update,
                "ConditionExpression": "attribute_not_exists(#k) OR #e < :now",
                "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            })
        except ClientError as exc:
            # The id is new and unknown to anyone else until this request answers: an item
            # holding exactly this write is this call's own earlier attempt (answer lost).
            found = exc.response.get("Item") or {}
            own = (is_condition_failure(exc) and retried(exc)
                   and found.get(DATA) == values[":d"] and found.get(EXPIRES) == values[":e"]
                   and found.get(WRITES, values.get(":w")) == values.get(":w"))
            if not own:
                self._report("create", session, tally, outcome="error")
                if is_condition_failure(exc):
                    raise SessionExists(
                        f"a session with id {log_id(session_id)}... exists") from exc
                raise
        self._report("create", session, tally)
        self._stored(session, payload, expires)
        session.version = 1 if self._creates_versions else None
        return session

    # --- moving a session to a new id (login) -------------------------------------------------

    def retire(self, old: LoadedSession, successor: LoadedSession) -> Operation[None]:
        """Leave a data-less marker at the id ``old`` was moved from: :func:`moved.retire`."""
        return moved.retire(self, old, successor)

    def _changed_while_moving(self, old: LoadedSession) -> Operation[None]:
        """Another request wrote the old session while it was being moved: merged (without
        locking); a pessimistic store raises :class:`LockLost` (its lease was lost)."""
        yield from ()

    def _save_successor(self, successor: LoadedSession,
                        data: dict[str, Any]) -> Operation[None]:
        """Store what another request added to the old session under the new id."""
        yield from self.save(successor, data)

    def _unchanged(self, session: LoadedSession, names: dict[str, str],
                   values: dict[str, Any]) -> str:
        """A condition true while the item is as ``session`` read it (fills names/values)."""
        return moved.unchanged(self, session, names, values)
