"""The connection layer: load, save, release and delete one session item in DynamoDB.

Three strategies share one item layout, compatible with the PHP handler's (hash key
``<session_name>_<session_id>``, ``data`` binary, ``expires`` epoch seconds = the TTL attribute):

* ``SessionStore`` (``locking="none"``): one GetItem per load; last writer wins - but a
  deleted session is never written back, and a session holding a counter
  (``LoadedSession.increment``) is written like an optimistic one.
* ``PessimisticSessionStore``: a lease lock. One conditional UpdateItem takes the lock
  (``lock`` = a random owner token, ``lock_until_ms`` = its expiry, ``prior_expires`` = the
  expiry before the lock) and returns the item; an expired lease is taken over; saves and
  releases are conditional on still owning the lock, and remove all three (an unlocked item
  has no ``lock``, as in PHP).
* ``OptimisticSessionStore``: ``version`` attribute and ``writes`` (the last writes' tokens); a
  save is conditional on the version read; on conflict this request's changes are merged with
  the newer session (three-way, per key: ``merge.py``; counters as deltas) and retried.

A session moved to a new id (login) leaves a data-less ``moved`` marker at its old key
(:meth:`SessionStore.retire`): that id is never served or written again.

Every call may have been applied although its answer was lost (botocore then retries it): the
retry recognises its own lock token, write token or lease, and never reports its own success
as a conflict, nor applies it twice.

Strategies are chosen once, by :func:`create_store`.  A store is stateless between requests and
safe to share across threads; per-request state lives in :class:`LoadedSession`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import _core
from .clock import ServerClock, earliest, expiry_cutoff, latest
from .config import SessionConfig, make_client
from .errors import (
    ConfigError,
    CorruptSession,
    DynamoUnavailable,
    LockLost,
    LockTimeout,
    NotACounter,
    SessionConflict,
    SessionExists,
    SessionGone,
    SessionMoved,
    SessionTooLarge,
    TableNotFound,
)
from .lease import RENEWER
from .merge import Number, is_number, merge
from .metrics import Metrics, OperationMetrics, Tally, current_tally, emit, logger

DATA = "data"
EXPIRES = "expires"
LOCK = "lock"
LOCK_UNTIL_MS = "lock_until_ms"
PRIOR_EXPIRES = "prior_expires"
"""While locked: the ``expires`` the item had before the lock was taken (NULL: none), so that
a lock take whose answer was lost still tells an expired session from a live one, and a failed
read restores it; removed with the lock."""
VERSION = "version"
MOVED = "moved"
MOVED_MARKER_SECONDS = 300
"""How long the data-less marker a moved session leaves at its old id lives: long enough for
the requests in flight at login, which still carry the old cookie, to learn that it moved."""
WRITES = "writes"
"""Optimistic mode: the tokens of the last writes, newest first, ``_WRITE_TOKEN_BYTES`` each;
entry ``i`` made version ``version - i``.  A write whose answer was lost finds its own token
there on retry instead of merging and writing again."""

_WRITE_TOKEN_BYTES = 4
_WRITE_HISTORY = 4  # entries kept: a lost write is recognised after up to 3 writes by others
_LEASE_MARGIN_MS = 1000
_RELEASE_ROUNDS = 2  # rounds of botocore's attempts a lock release gets
_TRANSIENT_CODES = {"ThrottlingException", "ProvisionedThroughputExceededException",
                    "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable"}

_LOCK_TOKEN_BYTES = 22  # secrets.token_urlsafe(16)
_LOCK_BYTES = (len(LOCK) + _LOCK_TOKEN_BYTES + len(LOCK_UNTIL_MS)
               + _core.number_size("9" * 13)  # epoch milliseconds until the year 2286
               + len(PRIOR_EXPIRES) + _core.number_size("9" * 10))
_SESSION_ID = re.compile(r"[A-Za-z0-9_\-.,~:]{1,256}")


def new_session_id() -> str:
    """A fresh session id: 256 bits from ``secrets``, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def is_valid_session_id(session_id: object) -> bool:
    """True for a str of 1..256 characters from ``[A-Za-z0-9_-.,~:]`` (PHP's ids included)."""
    return isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None


def log_id(session_id: str) -> str:
    """What logs and metrics show for a session: a short hash, never the id itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


@dataclasses.dataclass
class LoadedSession:
    """One request's view of a session: the data, and what is needed to save it cheaply."""

    session_id: str
    key: str
    data: dict[str, Any]
    payload: bytes | None = None
    """The stored ``data`` bytes as read (None: nothing stored); an equal payload is not
    rewritten."""
    expires: int | None = None
    version: int | None = None
    lock_token: str | None = None
    lock_until_ms: int | None = None
    """This request's lease ends then (its own clock), while it holds the lock."""
    writes: bytes = b""
    """The stored write tokens (optimistic mode), as read."""
    item_exists: bool = False
    """An item is stored under the key (possibly a lock-only or expired one)."""
    lock_wait_seconds: float = 0.0
    keep_empty: bool = False
    """Save emptied data as an empty session instead of deleting the item (Django's contract:
    only ``delete()`` removes a session)."""
    increments: dict[str, Number] = dataclasses.field(default_factory=dict)
    """Deltas added by :meth:`increment` since the last write: merged as deltas, never lost."""
    moved: bool = False
    """The item is the marker a session moved to a new id leaves behind (never served)."""
    lifetime_seconds: int | None = None
    """How long the item lives after each write (None: ``session_lifetime_seconds``); the
    expiry refresh threshold follows it."""

    @property
    def existed(self) -> bool:
        """A live session with data was found."""
        return self.payload is not None

    def increment(self, key: str, by: Number = 1) -> Number:
        """Add ``by`` to the number under ``key`` (0 when absent); return the new value.

        No concurrent request can lose the delta: a pessimistic lock serialises it; an
        optimistic write (and in ``locking="none"`` the versioned write a session holding a
        counter gets) adds it onto the newer value when another request wrote first.
        """
        current = self.data.get(key, 0)
        if not is_number(by) or not is_number(current):
            raise NotACounter(
                f"increment({key!r}, by={by!r}): the value and the delta must be int or float "
                f"(not bool), the stored value is {type(current).__name__}"
            )
        value: Number = current + by
        self.data[key] = value
        self.increments[key] = self.increments.get(key, 0) + by
        return value


def _check_lifetime(lifetime_seconds: int | None) -> None:
    if lifetime_seconds is not None and (not isinstance(lifetime_seconds, int)
                                         or isinstance(lifetime_seconds, bool)
                                         or lifetime_seconds <= 0):
        raise ConfigError(f"lifetime_seconds={lifetime_seconds!r}: must be a whole number "
                          "of seconds > 0 (or None for session_lifetime_seconds)")


def _check_size(overhead: int, payload: bytes) -> None:
    size = overhead + len(payload)
    if size > _core.MAX_ITEM_BYTES:
        raise SessionTooLarge(
            f"session is {size} bytes as a DynamoDB item, over the {_core.MAX_ITEM_BYTES}"
            "-byte limit; nothing was written - keep large data out of the session",
            size, _core.MAX_ITEM_BYTES,
        )


def _is_condition_failure(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _unavailable(api: str, exc: BaseException) -> DynamoUnavailable:
    code = (exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError)
            else type(exc).__name__)
    return DynamoUnavailable(
        f"DynamoDB {api} failed past botocore's retries ({code}): it may or may not have been "
        "applied; retry the request later (boto_max_attempts, boto_retry_mode, "
        "read_timeout_seconds set how hard botocore tries)"
    )


def _transient(exc: BaseException) -> bool:
    """A fault that passes (throttling, 5xx, the network), not an answer about the item."""
    if isinstance(exc, DynamoUnavailable):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status >= 500
    return isinstance(exc, (HTTPClientError, BotoConnectionError))


def _http_retries(response: dict[str, Any]) -> int:
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


def _retried(exc: ClientError) -> bool:
    """botocore sent this call more than once: an earlier attempt may have been applied."""
    return _http_retries(exc.response) > 0


class SessionStore:
    """``locking="none"``: plain reads and writes; the last writer wins, but a session
    deleted by another request is not brought back (:class:`SessionGone`)."""

    locking = "none"
    def __init__(
        self,
        config: SessionConfig | None = None,
        client: Any = None,
        session_name: str = "PHPSESSID",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self.client = client or self.config.client or make_client(self.config)
        self.session_name = session_name
        self.clock: Callable[[], float] = clock or ServerClock(
            warning_seconds=self.config.clock_skew_warning_seconds)
        """The best estimate of the current time: by default a :class:`ServerClock`, which
        DynamoDB's answers keep on the server's clock; any other callable (a test's simulated
        time) is taken as it is."""
        self.monotonic: Callable[[], float] = time.monotonic
        """Times lock waits and write retries (replaceable in tests, with ``sleep``)."""
        self.sleep: Callable[[float], Any] = time.sleep
        self.metrics = Metrics()
        self._table = self.config.table_name
        self._hash_key = self.config.hash_key
        self._names = {"#k": self._hash_key, "#d": DATA, "#e": EXPIRES}
        self._lifetime = self.config.session_lifetime_seconds

    # --- keys ---------------------------------------------------------------------------------

    def item_key(self, session_id: str) -> str:
        """The hash key value for a session id: ``<session_name>_<id>`` (or its SHA-256)."""
        if not is_valid_session_id(session_id):
            raise ValueError(
                "session id must be 1..256 characters of [A-Za-z0-9_-.,~:]; "
                "use new_session_id() to make one"
            )
        if self.config.hash_session_ids:
            return f"{self.session_name}_{hashlib.sha256(session_id.encode()).hexdigest()}"
        return f"{self.session_name}_{session_id}"

    def _key(self, key: str) -> dict[str, Any]:
        return {self._hash_key: {"S": key}}

    # --- calls --------------------------------------------------------------------------------

    def _call(self, api: str, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        kwargs["TableName"] = self._table
        kwargs["ReturnConsumedCapacity"] = "TOTAL"
        try:
            response: dict[str, Any] = self._send(method, kwargs)
        except ClientError as exc:
            self.metrics.add_call(api, exc.response.get("ConsumedCapacity"),
                                  _http_retries(exc.response))
            if _is_condition_failure(exc) and not exc.response.get("ConsumedCapacity"):
                # Charged by the size of the item found (at least 1 WCU), but not reported.
                found = exc.response.get("Item")
                self.metrics.add_failed_write(
                    float(_core.write_units(_core.item_size(found))) if found else 1.0
                )
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise TableNotFound(self._table) from exc
            if _transient(exc):
                raise _unavailable(api, exc) from exc
            raise
        except (HTTPClientError, BotoConnectionError) as exc:  # no answer at all
            self.metrics.add_call(api, None)
            raise _unavailable(api, exc) from exc
        self.metrics.add_call(api, response.get("ConsumedCapacity"), _http_retries(response))
        return response

    def _send(self, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """One call; its answer's ``Date`` keeps a :class:`ServerClock` on the server's time."""
        if isinstance(self.clock, ServerClock):
            return self.clock.call(method, **kwargs)
        return method(**kwargs)

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

    def _backoff(self) -> Any:
        """The compiled retry schedule for one lock wait or one contended optimistic write."""
        config = self.config
        return _core.LockRetryBackoff(
            config.min_lock_retry_microseconds, config.max_lock_retry_microseconds,
            config.max_lock_wait_seconds, config.lock_retry_mode,
            clock=self.monotonic, sleep=self.sleep,
        )

    def _lifetime_of(self, session: LoadedSession) -> int:
        """The seconds ``session``'s item lives after a write (its own, else the config's)."""
        return session.lifetime_seconds or self._lifetime

    # --- load ---------------------------------------------------------------------------------

    def load(self, session_id: str, *, lifetime_seconds: int | None = None) -> LoadedSession:
        """Read a session.  An absent or expired one loads as empty; a read error is raised.

        ``lifetime_seconds`` (None: ``session_lifetime_seconds``) is how long the item lives
        after this request's write.  Raises :class:`CorruptSession` when the stored bytes
        cannot be decoded: a broken item is never silently replaced by an empty session.
        """
        key = self.item_key(session_id)
        _check_lifetime(lifetime_seconds)
        tally = self._begin()
        try:
            response = self._call(
                "GetItem", self.client.get_item, Key=self._key(key),
                ConsistentRead=self.config.consistent_read,
            )
            session = self._from_item(session_id, key, response.get("Item"))
            session.lifetime_seconds = lifetime_seconds
        except BaseException:
            self._report("read", session_id, tally, outcome="error")
            raise
        self._report("read", session, tally)
        return session

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> LoadedSession:
        """A session to write that this request has not read: without locking a blind
        write needs no read (no call); a locking mode loads it (takes the lock, learns the
        version) - callers need not know the mode."""
        return LoadedSession(session_id=session_id, key=self.item_key(session_id), data={},
                             item_exists=True, lifetime_seconds=lifetime_seconds)

    def writable(self, session: LoadedSession) -> bool:
        """``session`` can be saved as it is (False: load it again first - a pessimistic
        session whose lock was given back, or that this request created unlocked)."""
        return True

    def _from_item(self, session_id: str, key: str, item: dict[str, Any] | None,
                   expire: bool = True) -> LoadedSession:
        session = LoadedSession(session_id=session_id, key=key, data={})
        if item is None:
            return session
        session.item_exists = True
        session.expires = _number(item, EXPIRES, session_id)
        session.version = _number(item, VERSION, session_id, integer=True)
        session.writes = _binary(item, WRITES, session_id) or b""
        now = expiry_cutoff(self.clock, self.client)  # expired by the server's clock too
        if session.expires is not None and session.expires < now:
            if expire and self.config.delete_expired_on_read:
                self._delete_if_expired(key, now)
                session.item_exists = False
                session.version = None  # a later write creates the item afresh
            session.expires = None
            return session
        if MOVED in item:
            session.moved = True  # a marker: no data, and its id is never served again
            return session
        payload = _binary(item, DATA, session_id)
        if payload is not None:
            session.data = _core.decode_session(payload)
            session.payload = payload
        return session

    def _delete_if_expired(self, key: str, now: float) -> None:
        try:
            self._call(
                "DeleteItem", self.client.delete_item, Key=self._key(key),
                ConditionExpression="#e < :now",
                ExpressionAttributeNames={"#e": EXPIRES},
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            # refreshed meanwhile: not ours to delete

    # --- save ---------------------------------------------------------------------------------

    def save(self, session: LoadedSession, data: Mapping[str, Any] | None = None, *,
             lifetime_seconds: int | None = None) -> bool:
        """Store ``data`` (default: ``session.data``) and release any lock; True on success.

        The item then lives ``lifetime_seconds`` (None: the session's own lifetime, else
        ``session_lifetime_seconds``).  Unchanged data (same bytes as read) writes nothing
        unless the expiry is due for a refresh; empty data deletes the item (unless
        ``session.keep_empty``).  On any error the stored session is left as it was and the
        lock is released before it is raised.
        """
        _check_lifetime(lifetime_seconds)
        if lifetime_seconds is not None:
            session.lifetime_seconds = lifetime_seconds
        if data is not None:
            session.data = dict(data)
        tally = self._begin()
        try:
            outcome = self._save(session)
        except BaseException:
            self.release(session)
            self._report("write", session, tally, outcome="error")
            raise
        self._report(outcome, session, tally)
        return True

    def _save(self, session: LoadedSession) -> str:
        now = self.clock()
        if session.moved:
            if session.data:
                raise self._moved_error(session)
            return "unchanged"  # the marker stays as it is
        if not session.data and not session.keep_empty:
            if session.item_exists or session.lock_token:
                self._delete_for_save(session)
                return "delete"
            return "unchanged"
        expires = int(now) + self._lifetime_of(session)
        overhead = self._overhead(session, expires)
        payload = _core.encode_session(session.data, overhead, self.config.compress)
        if payload == session.payload:
            if session.lock_token or self._expiry_due(session, now):
                self._refresh(session, expires)
                return "refresh"
            return "unchanged"
        _check_size(overhead, payload)
        self._write(session, payload, expires)
        return "write"

    def _moved_error(self, session: LoadedSession) -> SessionMoved:
        return SessionMoved(
            f"session {log_id(session.session_id)} was moved to a new id (login in another "
            "request); its old id is never served again and nothing was written"
        )

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

    def _expiry_due(self, session: LoadedSession, now: float) -> bool:
        refresh_below = self.config.expiry_refresh_fraction * self._lifetime_of(session)
        return session.expires is None or session.expires - now < refresh_below

    def _write(self, session: LoadedSession, payload: bytes, expires: int) -> None:
        if self._versioned(session):
            self._write_versioned(session, payload, expires)
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
        applied, newer = self._conditional(
            "UpdateItem", self.client.update_item, session, Key=self._key(session.key),
            UpdateExpression="SET #d = :d, #e = :e", ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":d": {"B": payload}, ":e": {"N": str(expires)}},
        )
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
        self._write_versioned(session, payload, expires)

    def _conditional(self, api: str, method: Callable[..., Any], session: LoadedSession,
                     **kwargs: Any) -> tuple[bool, dict[str, Any] | None]:
        """One conditional write: (True, None) when applied, else (False, the item as stored
        now - None when there is none)."""
        try:
            self._call(api, method, ReturnValuesOnConditionCheckFailure="ALL_OLD", **kwargs)
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            self._conflict()
            return False, exc.response.get("Item") or self._newest(session)
        return True, None

    def _stored(self, session: LoadedSession, payload: bytes, expires: int) -> None:
        session.payload = payload
        session.expires = expires
        session.item_exists = True
        session.increments.clear()  # applied: a later write of this session starts afresh

    def _write_versioned(self, session: LoadedSession, payload: bytes, expires: int) -> None:
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
                if not backoff.wait():
                    break
                self.metrics.add(write_retry_waits=1)
                newer = self._newest(session)
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
                self._call(
                    "UpdateItem", self.client.update_item, Key=self._key(session.key),
                    UpdateExpression="SET #d = :d, #e = :e, #v = :nv, #w = :w",
                    ConditionExpression=condition, ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if not _is_condition_failure(exc):
                    raise
                found = exc.response.get("Item")
                if found is not None and _own_version(found, new_version, token):
                    # Applied by an earlier attempt whose answer was lost: not again.
                    self._stored_version(session, payload, expires, values[":w"]["B"])
                    return
                if _retried(exc) and found is not None and not _tells_versions(
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
                    newer = self._newest(session)
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

    def _newest(self, session: LoadedSession) -> dict[str, Any] | None:
        """The item as stored now (a consistent read), after a lost race."""
        item: dict[str, Any] | None = self._call(
            "GetItem", self.client.get_item, Key=self._key(session.key), ConsistentRead=True,
        ).get("Item")
        return item

    def _merge(self, session: LoadedSession, newer: dict[str, Any], expires: int) -> bytes:
        """Merge this request's changes with ``newer`` (three-way, against the session as
        read: :func:`merge.merge`); make ``newer`` the new base; return the payload.

        Raises :class:`SessionMoved` for a moved session's marker and
        :class:`SessionTooLarge` when the merged session no longer fits in an item.
        """
        original = _core.decode_session(session.payload) if session.payload is not None else {}
        base = self._from_item(session.session_id, session.key, newer, expire=False)
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

    def _refresh(self, session: LoadedSession, expires: int) -> None:
        try:
            self._call(
                "UpdateItem", self.client.update_item, Key=self._key(session.key),
                UpdateExpression="SET #e = :e", ConditionExpression="attribute_exists(#k)",
                ExpressionAttributeNames={"#e": EXPIRES, "#k": self._hash_key},
                ExpressionAttributeValues={":e": {"N": str(expires)}},
            )
            session.expires = expires
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            # deleted meanwhile (logout in another tab): do not bring it back

    def _delete_for_save(self, session: LoadedSession) -> None:
        self._call("DeleteItem", self.client.delete_item, Key=self._key(session.key))
        self._gone(session)

    def _gone(self, session: LoadedSession) -> None:
        session.payload = None
        session.expires = None
        session.version = None
        session.item_exists = False

    def release(self, session: LoadedSession) -> None:
        """Give up any lock without writing (no-op without pessimistic locking)."""

    # --- other operations ---------------------------------------------------------------------

    def delete(self, session_id: str) -> bool:
        """Delete a session (logout, ``session_destroy``); True whether or not it existed."""
        tally = self._begin()
        try:
            self._call("DeleteItem", self.client.delete_item,
                       Key=self._key(self.item_key(session_id)))
        except BaseException:
            self._report("delete", session_id, tally, outcome="error")
            raise
        self._report("delete", session_id, tally)
        return True

    def retire(self, old: LoadedSession, successor: LoadedSession) -> None:
        """Leave a data-less marker at the id ``old`` was moved from (login): ``successor``
        holds the session now, already stored under its new id.

        The marker replaces the old item only if it is unchanged since ``old`` was read -
        the same write cost as deleting it.  When another request wrote the old session
        meanwhile, its changes are merged into ``successor`` (saved) and the marker retried;
        a session deleted or moved meanwhile is left as it is.  A request still carrying the
        old id then finds the marker: it is never served that session (nor a new one under
        that id), and is never answered with a cookie-deleting header because of the move.
        The marker expires after ``MOVED_MARKER_SECONDS``.
        """
        expires = int(self.clock()) + MOVED_MARKER_SECONDS
        for _attempt in range(self.config.max_write_retries + 1):
            names: dict[str, str] = {}
            values: dict[str, Any] = {}
            condition = self._unchanged(old, names, values)
            applied, newer = self._conditional(
                "PutItem", self.client.put_item, old,
                Item={**self._key(old.key), MOVED: {"BOOL": True}, EXPIRES: {"N": str(expires)}},
                ConditionExpression=condition, ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
            if applied or newer is None or MOVED in newer:
                break  # retired; or deleted or moved meanwhile (or this marker's answer lost)
            self._changed_while_moving(old)
            theirs = self._from_item(old.session_id, old.key, newer, expire=False)
            base = _core.decode_session(old.payload) if old.payload is not None else {}
            self._save_successor(successor, merge(base, successor.data, theirs.data))
            old.payload, old.version, old.item_exists = theirs.payload, theirs.version, True
            old.writes = theirs.writes
        else:
            raise SessionConflict(
                f"session {log_id(old.session_id)}: could not retire its old id under "
                f"concurrent writes (max_write_retries={self.config.max_write_retries}); the "
                "session is stored under its new id"
            )
        RENEWER.drop(old.lock_token)
        old.lock_token = None
        self._gone(old)

    def _unchanged(self, session: LoadedSession, names: dict[str, str],
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
        values[":now"] = {"N": str(int(self.clock()))}
        return "attribute_not_exists(#d) AND attribute_not_exists(#m) OR #e < :now"

    def _changed_while_moving(self, old: LoadedSession) -> None:
        """Another request wrote the old session while it was being moved: merged (without
        locking); a pessimistic store raises :class:`LockLost` (its lease was lost)."""

    def _save_successor(self, successor: LoadedSession, data: dict[str, Any]) -> None:
        """Store what another request added to the old session under the new id."""
        self.save(successor, data)

    def exists(self, session_id: str) -> bool:
        """True when a live (unexpired) session is stored under ``session_id``."""
        tally = self._begin()
        response = self._call(
            "GetItem", self.client.get_item, Key=self._key(self.item_key(session_id)),
            ConsistentRead=self.config.consistent_read,
            ProjectionExpression="#e, #m", ExpressionAttributeNames={"#e": EXPIRES, "#m": MOVED},
        )
        self._report("exists", session_id, tally)
        item = response.get("Item")
        if item is None or MOVED in item:
            return False
        expires = _number(item, EXPIRES, session_id)
        return expires is None or expires >= self.clock()

    def create(self, session_id: str, data: Mapping[str, Any], *,
               lifetime_seconds: int | None = None) -> LoadedSession:
        """Store a new session only if no live item has that id (else :class:`SessionExists`);
        it lives ``lifetime_seconds`` (None: ``session_lifetime_seconds``)."""
        key = self.item_key(session_id)
        _check_lifetime(lifetime_seconds)
        now = self.clock()
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
        if self.locking == "optimistic":
            update += ", #v = :v, #w = :w"
            names.update({"#v": VERSION, "#w": WRITES})
            session.writes = _next_writes(secrets.token_bytes(_WRITE_TOKEN_BYTES), b"")
            values.update({":v": {"N": "1"}, ":w": {"B": session.writes}})
        tally = self._begin()
        try:
            self._call(
                "UpdateItem", self.client.update_item, Key=self._key(key),
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(#k) OR #e < :now",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            # The id is new and unknown to anyone else until this request answers: an item
            # holding exactly this write is this call's own earlier attempt (answer lost).
            found = exc.response.get("Item") or {}
            own = (_is_condition_failure(exc) and _retried(exc)
                   and found.get(DATA) == values[":d"] and found.get(EXPIRES) == values[":e"]
                   and found.get(WRITES, values.get(":w")) == values.get(":w"))
            if not own:
                self._report("create", session, tally, outcome="error")
                if _is_condition_failure(exc):
                    raise SessionExists(
                        f"a session with id {log_id(session_id)}... exists") from exc
                raise
        self._report("create", session, tally)
        self._stored(session, payload, expires)
        session.version = 1 if self.locking == "optimistic" else None
        return session


class OptimisticSessionStore(SessionStore):
    """``locking="optimistic"``: versioned writes; concurrent changes are merged, not lost.

    A save is conditional on the version that was read.  When another request wrote first,
    the keys this request changed (set, replaced or deleted) are applied onto the newer
    session and the write is retried: at once on the item the failed write returned, and
    after a second loss in a row after a jittered backoff (``min/max_lock_retry_microseconds``)
    and a fresh read; at most ``max_write_retries`` times and within ``max_lock_wait_seconds``
    of the first conflict, then :class:`SessionConflict`, with nothing written.
    The merge is three-way against the session as read (``merge.py``): lists and dicts keep
    both sides' changes, counters add their deltas, a scalar changed by both requests takes
    this request's value (the later writer wins per key).
    A session deleted meanwhile (logout) is not brought back: :class:`SessionGone`; an emptied
    session (logout) racing a write is merged the same way (see ``_delete_for_save``).
    """

    locking = "optimistic"
    def _versioned(self, session: LoadedSession) -> bool:
        return True

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> LoadedSession:
        return self.load(session_id, lifetime_seconds=lifetime_seconds)  # learn the version

    def _write(self, session: LoadedSession, payload: bytes, expires: int) -> None:
        self._write_versioned(session, payload, expires)

    def _delete_for_save(self, session: LoadedSession) -> None:
        """Emptying the session (logout) deletes it.  When another request wrote meanwhile,
        the merge rule applies as for any write: every key this request saw is removed from
        the newer session, which is deleted if nothing is left, else keeps only what the other
        request added - a logout is never silently lost, and no concurrent update is."""
        for _attempt in range(self.config.max_write_retries + 1):
            try:
                if session.version is None:
                    self._call("DeleteItem", self.client.delete_item, Key=self._key(session.key))
                else:
                    condition, names, values = _same_version(session)
                    self._call(
                        "DeleteItem", self.client.delete_item, Key=self._key(session.key),
                        ConditionExpression=condition, ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values,
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
            except ClientError as exc:
                if not _is_condition_failure(exc):
                    raise
                self._conflict()
                newer = exc.response.get("Item")
                if newer is None:
                    newer = self._newest(session)
                # Deleted meanwhile (what this request wanted), or a new session under this
                # id since: not this request's to empty.
                if newer is None or not _descends(newer, session):
                    break
                expires = int(self.clock()) + self._lifetime_of(session)
                payload = self._merge(session, newer, expires)
                if session.data:
                    self._write(session, payload, expires)
                    return
                continue
            break
        else:
            raise SessionConflict(
                f"session {log_id(session.session_id)}: could not empty it under concurrent "
                f"writes (max_write_retries={self.config.max_write_retries}); nothing was written"
            )
        self._gone(session)


class PessimisticSessionStore(SessionStore):
    """``locking="pessimistic"``: a lease lock with an owner and an expiry.

    ``load`` takes the lock with one conditional UpdateItem that also returns the item; a lock
    whose lease has passed is taken over; after ``max_lock_wait_seconds`` it raises
    :class:`LockTimeout` - no session, no lock touched.  ``save`` and ``release`` act only while
    this request still owns the lock; a save whose lease was taken over raises
    :class:`LockLost` instead of overwriting the newer holder's data.
    """

    locking = "pessimistic"

    def load_for_write(self, session_id: str, *,
                       lifetime_seconds: int | None = None) -> LoadedSession:
        return self.load(session_id, lifetime_seconds=lifetime_seconds)  # take the lock

    def writable(self, session: LoadedSession) -> bool:
        return session.lock_token is not None

    def load(self, session_id: str, *, lifetime_seconds: int | None = None) -> LoadedSession:
        key = self.item_key(session_id)
        _check_lifetime(lifetime_seconds)
        lifetime = lifetime_seconds or self._lifetime
        token = secrets.token_urlsafe(16)  # _LOCK_TOKEN_BYTES characters
        config = self.config
        backoff = self._backoff()
        tally = self._begin()
        retries = 0
        lease_ms = int(config.lock_lease_seconds * 1000)
        while True:
            expires = int(self.clock()) + lifetime
            # Take over only a lease the server's clock has certainly passed; date a new one
            # from that same earliest time, so a fast local clock cannot stretch it.
            now_ms = int(earliest(self.clock, self.client) * 1000)
            taken_at = time.monotonic()
            try:
                # ALL_OLD tells what was stored (its own expiry included: an expired session
                # reads as absent) and nothing for a new item; ``expires`` is always set, so
                # TTL cannot delete the item under the holder and an orphaned lock expires.
                # On failure the item comes back too (no extra charge): it sizes the WCU
                # DynamoDB charges for the failed attempt but does not report.
                # The old expiry is kept in the item while locked (PRIOR_EXPIRES, NULL for none).
                response = self._call(
                    "UpdateItem", self.client.update_item, Key=self._key(key),
                    UpdateExpression=("SET #l = :t, #lu = :until, #pe = if_not_exists(#e, :null),"
                                      " #e = :e"),
                    # A lease that is not a number (written badly elsewhere) never ends: taken.
                    ConditionExpression=("attribute_not_exists(#l) OR #lu < :now OR "
                                         "(attribute_exists(#lu) AND NOT attribute_type(#lu, :n))"),
                    ExpressionAttributeNames={"#l": LOCK, "#lu": LOCK_UNTIL_MS, "#e": EXPIRES,
                                              "#pe": PRIOR_EXPIRES},
                    ExpressionAttributeValues={
                        ":t": {"S": token}, ":until": {"N": str(now_ms + lease_ms)},
                        ":now": {"N": str(now_ms)}, ":e": {"N": str(expires)},
                        ":null": {"NULL": True}, ":n": {"S": "N"},
                    },
                    ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                break
            except ClientError as exc:
                if not _is_condition_failure(exc):
                    self._report("lock", session_id, tally, outcome="error")
                    raise
                found = exc.response.get("Item")
                if found is not None and found.get(LOCK) == {"S": token}:
                    # Our own earlier attempt took it (its answer was lost): the item as it
                    # was before is the one found, less the lock, with its old expiry back.
                    response = {"Attributes": _before_lock(found)}
                    break
            retries += 1
            tally.retries = retries
            if not backoff.wait():
                waited = backoff.slept_seconds
                self.metrics.add(lock_waits=retries, lock_wait_seconds=waited, lock_timeouts=1)
                self._report("lock", session_id, tally, lock_wait_seconds=waited,
                             outcome="timeout")
                raise LockTimeout(
                    f"session {log_id(session_id)} stayed locked for {waited:.2f}s "
                    f"(max_lock_wait_seconds={config.max_lock_wait_seconds}); no session data "
                    "was returned - answer 503 and let the client retry"
                )
        waited = backoff.slept_seconds
        if retries:
            self.metrics.add(lock_waits=retries, lock_wait_seconds=waited)
        session = LoadedSession(session_id=session_id, key=key, data={}, lock_token=token,
                                item_exists=True, lock_wait_seconds=waited, expires=expires,
                                lock_until_ms=now_ms + lease_ms,
                                lifetime_seconds=lifetime_seconds)
        RENEWER.hold(self, session, key, token, config.lock_lease_seconds, taken_at,
                     config.max_lock_hold_seconds, log_id(session_id))
        old = response.get("Attributes")
        if old:
            try:
                loaded = self._from_item(session_id, key, old, expire=False)
            except CorruptSession:
                # Keep the undecodable item as it was (no delete, its old expiry back, so a
                # broken session still expires): only give the lock back.
                RENEWER.drop(token)
                if EXPIRES in old:
                    self._release(session, "SET #e = :e REMOVE #l, #lu, #pe",
                                  {":e": old[EXPIRES]}, {"#e": EXPIRES})
                else:
                    self._release(session, "REMOVE #l, #lu, #pe, #e", {}, {"#e": EXPIRES})
                self._report("lock", session, tally, lock_wait_seconds=waited,
                             outcome="error")
                raise
            session.data, session.payload = loaded.data, loaded.payload
            session.moved = loaded.moved
        self._report("lock", session, tally, lock_wait_seconds=waited)
        return session

    def renew_lock(self, key: str, token: str, session: LoadedSession | None = None) -> bool:
        """Extend the lease of ``token``'s lock on ``key`` (``lease.LeaseRenewer`` calls it);
        False when the lock is no longer ours.  Only ``lock_until_ms`` is set, and only while
        ``lock`` holds the token: a released lock stays released, a deleted item stays deleted,
        and a retry after a lost answer finds the token and succeeds again."""
        until_ms = int(earliest(self.clock, self.client) * 1000
                       + self.config.lock_lease_seconds * 1000)
        try:
            self._call(
                "UpdateItem", self.client.update_item, Key=self._key(key),
                UpdateExpression="SET #lu = :until", ConditionExpression="#l = :t",
                ExpressionAttributeNames={"#l": LOCK, "#lu": LOCK_UNTIL_MS},
                ExpressionAttributeValues={":t": {"S": token}, ":until": {"N": str(until_ms)}},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            return False
        if session is not None:
            session.lock_until_ms = until_ms  # this request's lease now ends later
        return True

    def save(self, session: LoadedSession, data: Mapping[str, Any] | None = None, *,
             lifetime_seconds: int | None = None) -> bool:
        RENEWER.drop(session.lock_token)  # the save releases the lock (or gives it back)
        return super().save(session, data, lifetime_seconds=lifetime_seconds)

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

    def _save_successor(self, successor: LoadedSession, data: dict[str, Any]) -> None:
        if successor.lock_token is not None:
            super()._save_successor(successor, data)
            return
        locked = self.load(successor.session_id,  # created by this request: lock it to write
                           lifetime_seconds=successor.lifetime_seconds)
        self.save(locked, data)
        successor.data, successor.payload, successor.expires = data, locked.payload, locked.expires

    def _changed_while_moving(self, old: LoadedSession) -> None:
        if old.lock_token is None:
            return  # not locked by this request: merged as without locking
        RENEWER.drop(old.lock_token)
        old.lock_token = None
        raise LockLost(
            f"session {log_id(old.session_id)}: the lock lease "
            f"({self.config.lock_lease_seconds}s) expired and another request took the session "
            "while it was being moved to a new id; the move was refused"
        )

    def _write(self, session: LoadedSession, payload: bytes, expires: int) -> None:
        self._update_owned(
            session, "SET #d = :d, #e = :e REMOVE #l, #lu, #pe",
            {":d": {"B": payload}, ":e": {"N": str(expires)}}, {"#d": DATA, "#e": EXPIRES},
            raise_lost=True,
        )
        self._stored(session, payload, expires)

    def _refresh(self, session: LoadedSession, expires: int) -> None:
        # Releasing is a write anyway: refreshing the expiry in it costs nothing more.
        self._update_owned(session, "SET #e = :e REMOVE #l, #lu, #pe", {":e": {"N": str(expires)}},
                           {"#e": EXPIRES}, raise_lost=False)
        session.expires = expires

    def _own_attempt_applied(self, session: LoadedSession, exc: ClientError,
                             retried: bool = False) -> bool:
        """A call conditional on this request's lock found the lock gone: was it removed by
        an earlier attempt of this very call (applied, its answer lost, then retried)?

        Only a retried call can have been applied before.  While this request's lease runs
        (by its clock, with a margin), nobody else may take the lock (a take needs it absent
        or expired), so the one thing that removes it is this request's own write - unless
        the item is gone (a destroy elsewhere): then nothing can be told, and it was not.
        """
        if not (retried or _retried(exc)) or exc.response.get("Item") is None:
            return False
        until = session.lock_until_ms
        return until is not None and latest(self.clock) * 1000 < until - _LEASE_MARGIN_MS

    def _update_owned(self, session: LoadedSession, update: str, values: dict[str, Any],
                      names: dict[str, str], raise_lost: bool, retried: bool = False) -> None:
        if session.lock_token is None:
            raise LockLost(f"session {log_id(session.session_id)} is not locked by this request")
        try:
            self._call(
                "UpdateItem", self.client.update_item, Key=self._key(session.key),
                UpdateExpression=update, ConditionExpression="#l = :t",
                ExpressionAttributeNames={"#l": LOCK, "#lu": LOCK_UNTIL_MS, "#pe": PRIOR_EXPIRES,
                                          **names},
                ExpressionAttributeValues={":t": {"S": session.lock_token}, **values},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            if self._own_attempt_applied(session, exc, retried):
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

    def _delete_for_save(self, session: LoadedSession, retried: bool = False) -> None:
        if session.lock_token is None:
            raise LockLost(f"session {log_id(session.session_id)} is not locked by this request")
        try:
            self._call(
                "DeleteItem", self.client.delete_item, Key=self._key(session.key),
                ConditionExpression="#l = :t", ExpressionAttributeNames={"#l": LOCK},
                ExpressionAttributeValues={":t": {"S": session.lock_token}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            session.lock_token = None
            if exc.response.get("Item") is None or self._own_attempt_applied(session, exc,
                                                                             retried):
                self._gone(session)  # gone, as this delete wanted (by it or by another)
                return
            raise LockLost(
                f"session {log_id(session.session_id)}: lock lease lost before delete"
            ) from exc
        session.lock_token = None
        self._gone(session)

    def release(self, session: LoadedSession) -> None:
        """Release the lock if this request still owns it; never raises for a lost lease.

        A lock-only item (a new or expired session that got no data) is deleted.
        """
        if session.lock_token is None:
            return
        RENEWER.drop(session.lock_token)
        tally = self._begin()
        self._release(session, "REMOVE #l, #lu, #pe", {}, {},
                      lock_only=session.payload is None and not session.moved)
        self._report("release", session, tally)

    def _release(self, session: LoadedSession, update: str, values: dict[str, Any],
                 names: dict[str, str], lock_only: bool = False) -> None:
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
                        self._delete_for_save(session, retried=round_ > 0)
                    except LockLost:
                        logger.warning("session %s: lock lease was lost before release",
                                       log_id(session.session_id))
                else:
                    self._update_owned(session, update, values, names, raise_lost=False,
                                       retried=round_ > 0)
                return
            except Exception as exc:
                if round_ + 1 < _RELEASE_ROUNDS and _transient(exc):
                    logger.warning("session %s: lock release failed (%s); trying again",
                                   log_id(session.session_id), type(exc).__name__)
                    self.sleep(pause)
                    continue
                logger.exception("session %s: could not release the lock; it expires by its "
                                 "lease", log_id(session.session_id))
                session.lock_token = None
                return


def _malformed(session_id: str, name: str, value: Any, expected: str) -> CorruptSession:
    shown = next(iter(value), "?") if isinstance(value, dict) else type(value).__name__
    return CorruptSession(
        f"session {log_id(session_id)}: the {name} attribute ({shown}) is not {expected} - an "
        "item written by someone else (another serializer, PHP's serialize(), a hand edit) "
        "cannot be read; nothing was changed"
    )


def _number(item: dict[str, Any], name: str, session_id: str,
            integer: bool = False) -> int | None:
    """The integer in number attribute ``name`` (None when absent); else CorruptSession."""
    value = item.get(name)
    if value is None:
        return None
    text = value.get("N") if isinstance(value, dict) and len(value) == 1 else None
    expected = "a whole number >= 0" if integer else "a number of epoch seconds"
    try:
        number = float(text) if isinstance(text, str) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or (integer and (number != int(number) or number < 0)):
        raise _malformed(session_id, name, value, expected)
    return int(number)


def _binary(item: dict[str, Any], name: str, session_id: str) -> bytes | None:
    """The bytes of binary attribute ``name`` (None when absent); else CorruptSession."""
    value = item.get(name)
    if value is None:
        return None
    data = value.get("B") if isinstance(value, dict) and len(value) == 1 else None
    if not isinstance(data, (bytes, bytearray)):
        raise _malformed(session_id, name, value, "binary (B)")
    return bytes(data)


def _same_version(session: LoadedSession) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A condition that the item is still the version read: its number and, when it has them,
    its write tokens - a session deleted and written again up to the same number (a logout,
    then a new session under the id) is another item, and is not overwritten or deleted."""
    names = {"#v": VERSION}
    values: dict[str, Any] = {":v": {"N": str(session.version)}}
    if not session.writes:
        return "#v = :v", names, values
    names["#w"] = WRITES
    values[":rw"] = {"B": session.writes}
    return "#v = :v AND #w = :rw", names, values


def _next_writes(token: bytes, writes: bytes) -> bytes:
    """The write tokens after a write with ``token`` on an item holding ``writes``: always
    ``_WRITE_HISTORY`` entries (zeros for none), so an item does not grow as it is written."""
    size = _WRITE_HISTORY * _WRITE_TOKEN_BYTES
    return (token + writes)[:size].ljust(size, b"\0")


def _own_version(item: dict[str, Any], version: int, token: bytes) -> bool:
    """``item`` shows that the write of ``version`` with ``token`` was applied."""
    try:
        stored = int(item[VERSION]["N"])
        writes = bytes(item[WRITES]["B"])
    except (KeyError, TypeError, ValueError):
        return False
    start = (stored - version) * _WRITE_TOKEN_BYTES
    return start >= 0 and writes[start:start + _WRITE_TOKEN_BYTES] == token


def _descends(item: dict[str, Any], session: LoadedSession) -> bool:
    """``item`` is a later version of the one ``session`` read (or it cannot be told: no
    tokens, or more writes since than the tokens cover) - not a session deleted and
    started again under the same id, into which this request's changes must not go."""
    if not session.writes or session.version is None:
        return True
    try:
        stored = int(item[VERSION]["N"])
        writes = bytes(item[WRITES]["B"])
    except (KeyError, TypeError, ValueError):
        return False  # the item read had tokens; one without is another item
    start = (stored - session.version) * _WRITE_TOKEN_BYTES
    if start < 0:
        return False
    if start >= len(writes):
        return True
    return writes[start:start + _WRITE_TOKEN_BYTES] == session.writes[:_WRITE_TOKEN_BYTES]


def _tells_versions(item: dict[str, Any], version: int) -> bool:
    """``item`` can tell whether ``version`` was written by a given token (or it is older)."""
    try:
        stored = int(item[VERSION]["N"])
    except (KeyError, TypeError, ValueError):
        return True  # no version: not a write of ours
    writes = item.get(WRITES, {}).get("B", b"")
    return stored < version or (stored - version) * _WRITE_TOKEN_BYTES < len(writes)


def _before_lock(item: dict[str, Any]) -> dict[str, Any]:
    """The item as it was before this request's lock take: no lock, its old expiry."""
    old = {name: value for name, value in item.items()
           if name not in (LOCK, LOCK_UNTIL_MS, PRIOR_EXPIRES, EXPIRES)}
    prior = item.get(PRIOR_EXPIRES)
    if prior is not None and "NULL" not in prior:
        old[EXPIRES] = prior
    return old


STORES: dict[str, type[SessionStore]] = {
    "none": SessionStore,
    "pessimistic": PessimisticSessionStore,
    "optimistic": OptimisticSessionStore,
}


def create_store(config: SessionConfig | None = None, client: Any = None,
                 session_name: str = "PHPSESSID",
                 clock: Callable[[], float] | None = None) -> SessionStore:
    """The store for ``config.locking``: the one place the strategy is chosen."""
    config = config or SessionConfig()
    return STORES[config.locking](config, client, session_name, clock)
