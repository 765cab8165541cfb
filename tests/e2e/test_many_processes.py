"""Many processes on one Postgres: 3 `serve` (no worker tasks) and 3 `worker` processes, mixed Stripe, Adyen and
Mollie deliveries, shuffled, a tenth of them twice, posted concurrently to all three web processes; one worker
SIGKILLed mid-run while it holds claims, and a new one started. Nothing is lost (every payment and refund of the
world is in Thred, with its amount), nothing is doubled (the sandbox counts every create per external id), no
event or record fails, and the dead worker's claims are finished within the takeover time.

The full-size run (20,000 events, 1, 2 and 4 workers) is ``python -m bench.scale``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.fleet import fleet, mixed_traffic

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres]
EVENTS = 2_000
TAKEOVER = 10.0  # the default BRIDGE_TAKEOVER_SECONDS


@pytest.mark.timeout(420)
async def test_three_web_and_three_worker_processes_lose_nothing_and_double_nothing_through_a_kill(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    async with fleet(empty_postgres_url, tmp_path, latency=0.005) as f:
        traffic = mixed_traffic(EVENTS, seed=12, stripe=f.stripe, mollie=f.mollie, stripe_secret=f.stripe_secret)
        await f.start_web(3)
        for _ in range(3):
            f.start_worker()
        delivering = asyncio.create_task(f.deliver(traffic))
        doomed = f.workers[0]
        while f.counts()["sent"] < len(traffic.payments) // 2:  # well under way
            assert not delivering.done() or delivering.exception() is None
            await asyncio.sleep(0.2)
        held = await f.wait_holding(doomed)
        f.kill(doomed)
        killed = time.monotonic()
        while f.unfinished(held):
            assert time.monotonic() - killed < TAKEOVER, "the dead worker's claims waited for their lease"
            await asyncio.sleep(0.05)
        f.start_worker()  # the platform restarts it
        await delivering
        counts = await f.wait_drained(timeout=240)
        payments, refunds = await f.books()

    assert counts["failed"] == 0
    assert f.doubled() == {}, "nothing is sent to Thred twice"
    assert payments == traffic.payments, "every payment lands once, with its amount"
    assert refunds == traffic.refunds
    assert len(traffic.deliveries) > traffic.unique  # duplicates were delivered
    assert {key.split("_", 1)[0].split(":")[1] for key in f.thred.creates} == {"stripe", "adyen", "mollie"}
