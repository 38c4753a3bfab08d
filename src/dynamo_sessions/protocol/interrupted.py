"""Giving back a pessimistic lock take that was interrupted in flight.

A take whose caller stopped waiting for its answer (an asyncio task cancelled - a client gone,
a timeout - or a ``KeyboardInterrupt``) may have been applied all the same.  Its lock is given
back as a release after a read-only request would give it (``pessimistic.release``), by
conditions alone - this request never saw the item:

* a lock-only item (a new session's, or one whose session had expired before the take: its
  ``prior_expires`` is past) is deleted;
* any other gets back the expiry it had before the lock (``prior_expires``; none: none);
* a lock that is not this take's token is not touched (the take was not applied, or its lease
  has passed and another request holds the lock).

It never raises: a lock it cannot give back ends with its lease.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..metrics import logger
from ..transport.translate import is_condition_failure
from .ids import log_id
from .item import DATA, EXPIRES, LOCK, LOCK_UNTIL_MS, MOVED, PRIOR_EXPIRES
from .steps import Operation

if TYPE_CHECKING:
    from .pessimistic import Pessimistic

_LOCK_ONLY = ("#l = :t AND attribute_not_exists(#m) AND (attribute_not_exists(#d) OR "
              "(attribute_type(#pe, :n) AND #pe < :cutoff))")


def taking(mode: Pessimistic, key: str, token: str, session_id: str,
           params: dict[str, Any]) -> Operation[dict[str, Any]]:
    """``mode``'s lock take of ``token`` on ``key`` (the UpdateItem ``params``); interrupted in
    flight, it is given back (:func:`give_back`) before the interruption goes on."""
    try:
        response: dict[str, Any] = yield from mode._call("UpdateItem", params)
    except (GeneratorExit, Exception):
        raise
    except BaseException:  # cancelled, interrupted: the take may have been applied
        yield from give_back(mode, key, token, session_id)
        raise
    return response


def give_back(mode: Pessimistic, key: str, token: str, session_id: str) -> Operation[None]:
    """Undo the take of ``token``'s lock on ``key``, if it was applied (see the module)."""
    names = {"#l": LOCK, "#pe": PRIOR_EXPIRES}
    values: dict[str, Any] = {":t": {"S": token}, ":n": {"S": "N"}}
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("DeleteItem", {"ConditionExpression": _LOCK_ONLY,
                        "ExpressionAttributeNames": {**names, "#d": DATA, "#m": MOVED},
                        "ExpressionAttributeValues": {
                            **values, ":cutoff": {"N": str(math.ceil(mode._cutoff()))}}}),
        ("UpdateItem", {"UpdateExpression": "SET #e = #pe REMOVE #l, #lu, #pe",
                        "ConditionExpression": "#l = :t AND attribute_type(#pe, :n)",
                        "ExpressionAttributeNames": {**names, "#e": EXPIRES,
                                                     "#lu": LOCK_UNTIL_MS},
                        "ExpressionAttributeValues": values}),
        ("UpdateItem", {"UpdateExpression": "REMOVE #l, #lu, #pe, #e",
                        "ConditionExpression": "#l = :t",
                        "ExpressionAttributeNames": {**names, "#e": EXPIRES,
                                                     "#lu": LOCK_UNTIL_MS},
                        "ExpressionAttributeValues": {":t": values[":t"]}}),
    ]
    try:
        for api, params in attempts:
            try:
                yield from mode._call(api, {"Key": mode._key(key), **params})
                return
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
        # every condition refused: the lock is not this take's (it was not applied)
    except Exception as exc:
        logger.warning("session %s: an interrupted lock take could not be given back (%s); "
                       "it ends with its lease", log_id(session_id), exc)
