"""The asyncio lease renewer's schedule (``transport/aio.py``): a renewal that hangs holds back
no other lease of the loop - and the sync renewer's (``lease.py``) same case."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dynamo_sessions.protocol.steps import Operation, Sleep

from .test_transport_aio_leases import Leases, LeaseTest, Owner
from .test_transport_aio_leases import lease_test as lease_test  # the fixture

pytestmark = pytest.mark.dynamodb_local


def test_a_hung_renewal_delays_no_other_lease(lease_test: LeaseTest) -> None:
    """One lock's renewal hangs (its call waits out the read timeout and botocore's retries:
    25 s by default, past a 7 s lease): another lock falling due meanwhile is renewed on time,
    not after it.  On the simulated clock of ``test_transport_aio_leases.py``."""
    log: list[str] = []

    async def body(client: Any, leases: Leases) -> None:
        real_renew = leases.renew

        def renew(name: str, token: str, owner: Any) -> Operation[bool]:
            log.append(name)
            if name == "slow":
                yield Sleep(100.0)  # stands for the hung call
            ours = yield from real_renew(name, token, owner)
            log.append(f"{name} renewed")
            return ours

        leases.renew = renew  # type: ignore[method-assign]
        slow, fast = Owner(), Owner()
        await leases.hold(client, "slow", "t-slow", slow)  # lease 10 s: due at +5 s
        await leases.after(2.0, lambda: True)
        await leases.hold(client, "fast", "t-fast", fast)  # due at +7 s
        await leases.after(3.0, lambda: log == ["slow"])  # the slow renewal hangs
        await leases.after(2.0, lambda: "fast renewed" in log)  # on time
        assert lease_test.renewals("fast") == 1 and lease_test.renewals("slow") == 0
        await leases.after(100.0, lambda: "slow renewed" in log)
        leases.renewer.drop("t-slow")
        leases.renewer.drop("t-fast")
        del slow, fast

    lease_test.run(body)
    assert lease_test.renewals("slow") == 1


def test_the_sync_renewer_too_lets_no_hung_renewal_delay_another() -> None:
    import threading

    from dynamo_sessions.lease import LeaseRenewer

    hung, renewed = threading.Event(), []

    class Store:
        def renew_lock(self, key: str, token: str, session: object = None) -> bool:
            if key == "slow":
                hung.wait(30)  # the hung call, until the test ends
            renewed.append(key)
            return True

    renewer, slow, fast = LeaseRenewer(), Owner(), Owner()
    now = time.monotonic()
    renewer.hold(Store(), slow, "slow", "t-slow", 0.2, now, 120.0)
    renewer.hold(Store(), fast, "fast", "t-fast", 0.4, now, 120.0)
    try:
        for _ in range(300):  # bounded: 3 s of polls
            if "fast" in renewed:
                break
            time.sleep(0.01)
        assert "fast" in renewed and "slow" not in renewed
    finally:
        hung.set()
        renewer.drop("t-slow")
        renewer.drop("t-fast")
