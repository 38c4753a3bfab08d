"""Versioned writes: a write conditional on the version read, merged and retried on conflict.

Optimistic locking writes every session this way; without locking, a session holding a counter
(``LoadedSession.increment``) is written this way too, so that no increment is lost to a last
writer.  A write whose answer was lost finds its own token in ``writes`` on retry and is not
applied twice.
"""

from __future__ import annotations

import secrets
from typing import Any

from botocore.exceptions import ClientError

from .. import _core
from ..errors import SessionConflict, SessionGone, SessionMoved
from ..merge import merge
from ..transport.translate import is_condition_failure
from .calls import Protocol, retried
from .ids import log_id
from .item import (
    _WRITE_HISTORY,
    _WRITE_TOKEN_BYTES,
    DATA,
    EXPIRES,
    MOVED,
    VERSION,
    WRITES,
    LoadedSession,
    _check_size,
    _descends,
    _next_writes,
    _own_version,
    _same_version,
    _tells_versions,
    from_item,
)
from .steps import Operation


class Versioned(Protocol):
    """The versioned write and the merge, shared by the modes that write versions."""

    def _versioned(self, session: LoadedSession) -> bool:
        """This write carries the ``version`` attribute and is conditional on it.

        Without locking only a session holding a counter is (``increment``): its writes are
        then merged like optimistic ones, so that no increment is lost to a last writer.
        """
        return session.version is not None or bool(session.increments)

    def _overhead(self, session: LoadedSession, expires: int) -> int:
        """Item bytes other than the payload: key, expiry, version and attribute names."""
        size = (len(self._hash_key.encode()) + len(session.key.encode()) + len(DATA)
                + len(EXPIRES) + _core.number_size(str(expires)))
        if self._versioned(session) or session.version is not None:
            size += len(VERSION) + _core.number_size(str((session.version or 0) + 1))
        if self._versioned(session):
            size += len(WRITES) + _WRITE_HISTORY * _WRITE_TOKEN_BYTES
        return size

    def _moved_error(self, session: LoadedSession) -> SessionMoved:
        return SessionMoved(
            f"session {log_id(session.session_id)} was moved to a new id (login in another "
            "request); its old id is never served again and nothing was written"
        )

    def _stored(self, session: LoadedSession, payload: bytes, expires: int) -> None:
        session.payload = payload
        session.expires = expires
        session.item_exists = True
        session.increments.clear()  # applied: a later write of this session starts afresh

    def _gone(self, session: LoadedSession) -> None:
        session.payload = None
        session.expires = None
        session.version = None
        session.item_exists = False

    def _conditional(self, api: str, session: LoadedSession,
                     params: dict[str, Any]) -> Operation[tuple[bool, dict[str, Any] | None]]:
        """One conditional write: (True, None) when applied, else (False, the item as stored
        now - None when there is none)."""
        params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            yield from self._call(api, params)
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            self._conflict()
            found = exc.response.get("Item")
            return False, found if found else (yield from self._newest(session))
        return True, None

    def _newest(self, session: LoadedSession) -> Operation[dict[str, Any] | None]:
        """The item as stored now (a consistent read), after a lost race."""
        response = yield from self._call(
            "GetItem", {"Key": self._key(session.key), "ConsistentRead": True})
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _write_versioned(self, session: LoadedSession, payload: bytes,
                         expires: int) -> Operation[None]:
        """A write conditional on the version read; on conflict merged and retried."""
        # Retry schedule (measured on DynamoDB Local, 8 threads x 50 increments of one
        # session): after a lost race, retry at once on the item the failed write returned -
        # nothing fresher exists.  After a second loss in a row the session is contended:
        # back off (the compiled, jittered schedule) and re-read before writing again, since
        # a base older than the sleep would only buy another refused write; a consistent
        # GetItem costs 1 RCU per 4 KB where a refused write costs 1 WCU per KB.  Compared
        # with retrying at once every time this cut the refused writes by ~40% and the longest
        # retry chain from 33-45 to 17-27 attempts; backing off without re-reading ran out of
        # retries (SessionConflict) in most runs.
        config = self.config
        backoff: Any = None
        wait = False
        tried = 0
        for attempt in range(config.max_write_retries + 1):
            waited = wait
            if wait:
                pause = self._pause(backoff)
                if pause is None:
                    break
                yield pause
                self.metrics.add(write_retry_waits=1)
                newer = yield from self._newest(session)
                if newer is not None and _descends(newer, session):
                    payload = self._merge(session, newer, expires)
            names = {"#d": DATA, "#e": EXPIRES, "#v": VERSION, "#w": WRITES}
            new_version = (session.version or 0) + 1
            token = secrets.token_bytes(_WRITE_TOKEN_BYTES)
            values: dict[str, Any] = {
                ":d": {"B": payload}, ":e": {"N": str(expires)},
                ":nv": {"N": str(new_version)}, ":w": {"B": _next_writes(token, session.writes)},
            }
            if session.version is None and session.item_exists:
                condition = ("attribute_exists(#k) AND attribute_not_exists(#v) "
                             "AND attribute_not_exists(#m)")
                names["#k"] = self._hash_key
                names["#m"] = MOVED
            elif session.version is None:
                condition = "attribute_not_exists(#k) OR #e < :now"
                names["#k"] = self._hash_key
                values[":now"] = {"N": str(int(self.clock()))}
            else:
                condition, same_names, same_values = _same_version(session)
                names.update(same_names)
                values.update(same_values)
            tried += 1
            try:
                yield from self._call("UpdateItem", {
                    "Key": self._key(session.key),
                    "UpdateExpression": "SET #d = :d, #e = :e, #v = :nv, #w = :w",
                    "ConditionExpression": condition, "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                })
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                found = exc.response.get("Item")
                if found is not None and _own_version(found, new_version, token):
                    # Applied by an earlier attempt whose answer was lost: not again.
                    self._stored_version(session, payload, expires, values[":w"]["B"])
                    return
                if retried(exc) and found is not None and not _tells_versions(
                        found, new_version):
                    raise SessionConflict(
                        f"session {log_id(session.session_id)}: a write whose answer was lost "
                        f"was followed by {_WRITE_HISTORY} or more writes of other requests "
                        "before its retry; whether it was applied cannot be told - it is not "
                        "written again") from exc
                self._conflict()
                if backoff is None:
                    backoff = self._backoff()
                wait = attempt >= 1 and not waited
                newer = exc.response.get("Item")
                if newer is None:
                    newer = yield from self._newest(session)
                if newer is not None and not _descends(newer, session):
                    newer = None  # another session under this id: this one is gone
            else:
                self._stored_version(session, payload, expires, values[":w"]["B"])
                return
            if newer is None:
                if not session.item_exists:
                    self._gone(session)
                    continue  # an expired item was deleted meanwhile: create afresh
                self._gone(session)
                raise SessionGone(
                    f"session {log_id(session.session_id)} was deleted by another request; "
                    "not recreating it"
                )
            payload = self._merge(session, newer, expires)
        raise SessionConflict(
            f"session {log_id(session.session_id)}: gave up after {tried} write attempts "
            f"under concurrent writes (max_write_retries={config.max_write_retries}, "
            f"max_lock_wait_seconds={config.max_lock_wait_seconds}); nothing was written"
        )

    def _stored_version(self, session: LoadedSession, payload: bytes, expires: int,
                        writes: bytes) -> None:
        self._stored(session, payload, expires)
        session.version = (session.version or 0) + 1
        session.writes = writes

    def _merge(self, session: LoadedSession, newer: dict[str, Any], expires: int) -> bytes:
        """Merge this request's changes with ``newer`` (three-way, against the session as
        read: :func:`merge.merge`); make ``newer`` the new base; return the payload.

        Raises :class:`SessionMoved` for a moved session's marker and
        :class:`SessionTooLarge` when the merged session no longer fits in an item.
        """
        original = _core.decode_session(session.payload) if session.payload is not None else {}
        base = from_item(session.session_id, session.key, newer, self._cutoff())
        if base.moved:
            raise self._moved_error(session)
        merged = merge(original, session.data, base.data, session.increments)
        session.payload = base.payload
        session.version = base.version
        session.writes = base.writes
        session.item_exists = True
        session.data = merged
        self.metrics.add(merges=1)
        overhead = self._overhead(session, expires)
        payload = _core.encode_session(merged, overhead, self.config.compress)
        _check_size(overhead, payload)
        return payload
