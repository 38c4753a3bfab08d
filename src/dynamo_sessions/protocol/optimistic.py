"""``locking="optimistic"``: versioned writes; concurrent changes are merged, not lost.

A save is conditional on the version that was read.  When another request wrote first, the
keys this request changed (set, replaced or deleted) are applied onto the newer session and
the write is retried: at once on the item the failed write returned, and after a second loss
in a row after a jittered backoff (``min/max_lock_retry_microseconds``) and a fresh read; at
most ``max_write_retries`` times and within ``max_lock_wait_seconds`` of the first conflict,
then :class:`SessionConflict`, with nothing written.  The merge is three-way against the
session as read (``merge.py``): lists and dicts keep both sides' changes, counters add their
deltas, a scalar changed by both requests takes this request's value (the later writer wins
per key).  A session deleted meanwhile (logout) is not brought back: :class:`SessionGone`; an
emptied session (logout) racing a write is merged the same way (see ``_delete_for_save``).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ..errors import SessionConflict
from ..transport.translate import is_condition_failure
from .ids import log_id
from .item import LoadedSession, _descends, _same_version
from .none import NoLocking
from .steps import Operation


class Optimistic(NoLocking):
    """``locking="optimistic"``: every write versioned (:mod:`.versioned`)."""

    locking = "optimistic"
    _creates_versions = True

    def _versioned(self, session: LoadedSession) -> bool:
        return True

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> Operation[LoadedSession]:
        return self.load(session_id, lifetime_seconds=lifetime_seconds)  # learn the version

    def _write(self, session: LoadedSession, payload: bytes, expires: int) -> Operation[None]:
        return self._write_versioned(session, payload, expires)

    def _delete_for_save(self, session: LoadedSession) -> Operation[None]:
        """Emptying the session (logout) deletes it.  When another request wrote meanwhile,
        the merge rule applies as for any write: every key this request saw is removed from
        the newer session, which is deleted if nothing is left, else keeps only what the other
        request added - a logout is never silently lost, and no concurrent update is."""
        for _attempt in range(self.config.max_write_retries + 1):
            try:
                params: dict[str, Any] = {"Key": self._key(session.key)}
                if session.version is not None:
                    condition, names, values = _same_version(session)
                    params.update(ConditionExpression=condition,
                                  ExpressionAttributeNames=names,
                                  ExpressionAttributeValues=values,
                                  ReturnValuesOnConditionCheckFailure="ALL_OLD")
                yield from self._call("DeleteItem", params)
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                self._conflict()
                newer = exc.response.get("Item")
                if newer is None:
                    newer = yield from self._newest(session)
                # Deleted meanwhile (what this request wanted), or a new session under this
                # id since: not this request's to empty.
                if newer is None or not _descends(newer, session):
                    break
                expires = int(self.clock()) + self._lifetime_of(session)
                payload = self._merge(session, newer, expires)
                if session.data:
                    yield from self._write(session, payload, expires)
                    return
                continue
            break
        else:
            raise SessionConflict(
                f"session {log_id(session.session_id)}: could not empty it under concurrent "
                f"writes (max_write_retries={self.config.max_write_retries}); nothing was written"
            )
        self._gone(session)
