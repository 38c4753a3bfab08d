"""The vocabulary between the session protocol and the transports that carry it (sans-I/O).

Every operation of a locking mode (load, save, release, delete, create, retire, ...) is a
generator: it *yields* steps and is *sent* their results, and its return value is the
operation's result.  It never touches a socket, a clock's sleep or a thread itself:

* :class:`Call` - one DynamoDB request.  The driver sends it (``api`` is DynamoDB's operation
  name, ``params`` the request as botocore takes it), stamps ``sent`` and ``received`` on the
  step (its monotonic clock, before sending and after the answer) and sends the answer (the
  response dict) back into the generator - or throws the exception the transport raised into
  it (botocore's ``ClientError`` / ``BotoCoreError``; aiobotocore raises the same classes).
* :class:`Sleep` - pause before the next attempt (``time.sleep`` / ``asyncio.sleep``); ``None``
  comes back.
* :class:`Hold` / :class:`Drop` - keep a held lock's lease renewed until dropped (a thread in a
  sync process, a task on an event loop); ``None`` comes back.

A driver is a loop around ``generator.send`` / ``generator.throw``; the same generators run on
boto3, on aiobotocore and on a recording driver with canned answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class Call:
    """One DynamoDB request; the driver stamps ``sent`` / ``received`` (monotonic seconds)."""

    api: str
    params: dict[str, Any]
    sent: float = 0.0
    received: float = 0.0


@dataclasses.dataclass(slots=True)
class Sleep:
    """Pause for ``seconds`` before going on."""

    seconds: float


@dataclasses.dataclass(slots=True)
class Hold:
    """Renew the lease of ``token``'s lock on ``key`` every half lease while ``owner`` (the
    request's session object, held weakly) lives, until :class:`Drop` or
    ``max_hold_seconds`` after ``taken_at`` (monotonic)."""

    key: str
    token: str
    lease_seconds: float
    taken_at: float
    max_hold_seconds: float
    label: str
    owner: Any


@dataclasses.dataclass(slots=True)
class Drop:
    """Stop renewing ``token``'s lease (the lock was released, or is about to be)."""

    token: str


Step = Call | Sleep | Hold | Drop
Operation = Generator[Step, Any, T]
"""An operation of the protocol: yields steps, is sent their results, returns ``T``."""
