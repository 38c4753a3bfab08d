"""The pessimistic lock take's request, and what the item it found tells (no I/O).

A take is one conditional UpdateItem.  A *fresh* take (no lock; or a lapsed lock without
``prior_expires`` - the PHP handler's, or one written elsewhere) keeps the item's expiry in
``prior_expires``.  The lock of a holder that crashed holds the session's own expiry there
already, and its ``expires`` is that holder's take's: a take *over* it (:data:`TAKE_OVER`,
conditional on a lapsed lease holding one) keeps ``prior_expires`` as it is - so that the
retry of a take whose answer was lost and the give-back of an interrupted one (which read
the session's expiry from the item they locked) give back the session's own, not the crashed
take's.  The first attempt is always a fresh take: only a take over a crashed holder pays a
second one.
"""

from __future__ import annotations

from typing import Any

from ..errors import CorruptSession
from .item import EXPIRES, LOCK, LOCK_UNTIL_MS, PRIOR_EXPIRES, _before_lock, _exact, _number

TAKE = "SET #l = :t, #lu = :until, #pe = if_not_exists(#e, :null), #e = :e"
TAKE_OVER = "SET #l = :t, #lu = :until, #e = :e"
# A lease that is not a number (written badly elsewhere) never ends: taken.
_LAPSED = "(#lu < :now OR (attribute_exists(#lu) AND NOT attribute_type(#lu, :n)))"
FREE = f"attribute_not_exists(#l) OR (attribute_not_exists(#pe) AND {_LAPSED})"
CRASHED = f"attribute_exists(#pe) AND {_LAPSED}"


def take_params(key: dict[str, Any], token: str, now_ms: int, until_ms: int, expires: int,
                over: bool) -> dict[str, Any]:
    """The UpdateItem taking ``token``'s lock: fresh, or ``over`` a crashed holder's."""
    values: dict[str, Any] = {":t": {"S": token}, ":until": {"N": str(until_ms)},
                              ":now": {"N": str(now_ms)}, ":e": {"N": str(expires)},
                              ":n": {"S": "N"}}
    if over:
        update, condition = TAKE_OVER, CRASHED
    else:
        update, condition = TAKE, FREE
        values[":null"] = {"NULL": True}
    return {
        "Key": key, "UpdateExpression": update, "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#l": LOCK, "#lu": LOCK_UNTIL_MS, "#e": EXPIRES,
                                     "#pe": PRIOR_EXPIRES},
        "ExpressionAttributeValues": values,
        "ReturnValues": "ALL_OLD", "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def crashed(found: dict[str, Any] | None, now_ms: int) -> bool:
    """``found`` (a refused fresh take's item) holds a lock to take over keeping its
    ``prior_expires``: one with it, its lease passed by ``now_ms`` (or not a number).  None
    (a server that does not return the item of a refused write) cannot tell: tried, as the
    take over's own condition decides - else a crashed holder's lock would never be taken."""
    if found is None:
        return True
    if LOCK not in found or PRIOR_EXPIRES not in found:
        return False
    lease = found.get(LOCK_UNTIL_MS)
    if lease is None:
        return False  # no lease: not ours to judge
    text = lease.get("N") if isinstance(lease, dict) and len(lease) == 1 else None
    number = _exact(text) if isinstance(text, str) else None
    return number is None or number < now_ms


def taken_over(old: dict[str, Any] | None) -> dict[str, Any] | None:
    """The item a lock take found: one still locked by a holder that never gave the lock back
    (crashed) is the session as that holder found it, its expiry the one kept in
    ``prior_expires`` - unless that is malformed (written elsewhere): then as it stands.  On
    an unlocked item ``prior_expires`` (a hand edit) says nothing: the item stands too."""
    prior = None if old is None else old.get(PRIOR_EXPIRES)
    if old is None or prior is None or LOCK not in old:
        return old
    if prior != {"NULL": True}:
        try:
            _number(old, PRIOR_EXPIRES, "")
        except CorruptSession:
            return old
    return _before_lock(old)


def attribute(expires: int | None) -> dict[str, Any] | None:
    return None if expires is None else {"N": str(expires)}


def giving_back(expires: dict[str, Any] | None) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The update, values and names that remove this request's lock and put back ``expires``,
    the item's expiry before the lock (None: it had none)."""
    if expires is None:
        return "REMOVE #l, #lu, #pe, #e", {}, {"#e": EXPIRES}
    return "SET #e = :e REMOVE #l, #lu, #pe", {":e": expires}, {"#e": EXPIRES}
