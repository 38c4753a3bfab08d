"""Moving a session to a new id (login): the old id gets a data-less ``moved`` marker.

A request still carrying the old id then finds the marker: it is never served that session
(nor a new one under that id), and is never answered with a cookie-deleting header because of
the move.  The marker expires after ``MOVED_MARKER_SECONDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _core
from ..errors import SessionConflict
from ..merge import merge
from .ids import log_id
from .item import (
    DATA,
    EXPIRES,
    MOVED,
    MOVED_MARKER_SECONDS,
    VERSION,
    LoadedSession,
    _same_version,
    from_item,
)
from .steps import Drop, Operation

if TYPE_CHECKING:
    from .none import NoLocking


def retire(mode: NoLocking, old: LoadedSession, successor: LoadedSession) -> Operation[None]:
    """Leave a data-less marker at the id ``old`` was moved from (login): ``successor``
    holds the session now, already stored under its new id.

    The marker replaces the old item only if it is unchanged since ``old`` was read - the
    same write cost as deleting it.  When another request wrote the old session meanwhile,
    its changes are merged into ``successor`` (saved) and the marker retried; a session
    deleted or moved meanwhile is left as it is.
    """
    expires = int((yield from mode._now())) + MOVED_MARKER_SECONDS
    for _attempt in range(mode.config.max_write_retries + 1):
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        condition = mode._unchanged(old, names, values)
        params: dict[str, Any] = {
            "Item": {**mode._key(old.key), MOVED: {"BOOL": True}, EXPIRES: {"N": str(expires)}},
            "ConditionExpression": condition, "ExpressionAttributeNames": names,
        }
        if values:
            params["ExpressionAttributeValues"] = values
        applied, newer = yield from mode._conditional("PutItem", old, params)
        if applied or newer is None or MOVED in newer:
            break  # retired; or deleted or moved meanwhile (or this marker's answer lost)
        yield from mode._changed_while_moving(old)
        theirs = from_item(old.session_id, old.key, newer, mode._cutoff())
        base = _core.decode_session(old.payload) if old.payload is not None else {}
        yield from mode._save_successor(successor, merge(base, successor.data, theirs.data))
        old.payload, old.version, old.item_exists = theirs.payload, theirs.version, True
        old.writes = theirs.writes
    else:
        raise SessionConflict(
            f"session {log_id(old.session_id)}: could not retire its old id under "
            f"concurrent writes (max_write_retries={mode.config.max_write_retries}); the "
            "session is stored under its new id"
        )
    if old.lock_token is not None:
        yield Drop(old.lock_token)
    old.lock_token = None
    mode._gone(old)


def unchanged(mode: NoLocking, session: LoadedSession, names: dict[str, str],
              values: dict[str, Any]) -> str:
    """A condition true while the item is as ``session`` read it (fills names/values)."""
    if session.version is not None:
        condition, same_names, same_values = _same_version(session)
        names.update(same_names)
        values.update(same_values)
        return condition
    names["#d"] = DATA
    if session.payload is not None:
        names["#v"] = VERSION
        values[":d"] = {"B": session.payload}
        return "#d = :d AND attribute_not_exists(#v)"
    names["#m"], names["#e"] = MOVED, EXPIRES
    values[":now"] = {"N": str(int(mode.clock()))}
    return "attribute_not_exists(#d) AND attribute_not_exists(#m) OR #e < :now"
