"""Mollie's settlements send no classic webhook: the worker lists them on a schedule
(BRIDGE_MOLLIE_SETTLEMENT_POLL_SECONDS) and queues each one that reached ``paidout`` once, as an inbox
notice; the payout is then booked exactly as a webhook would have it booked. Several pollers at once
queue it once; without an organization token nothing is asked."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge, utc_now
from thred_bridge.service.polling import Polling
from thred_bridge.simulators.mollie_api import MollieWorld, minor_of, ticking_clock

pytestmark = pytest.mark.anyio
FAST = {"BRIDGE_MOLLIE_SETTLEMENT_POLL_SECONDS": 0.2, "BRIDGE_WORKER_CONCURRENCY": 8}


def settlement_lists(world: MollieWorld) -> int:
    return sum(1 for r in world.requests if r.path == "/v2/settlements")


async def polls_pass(world: MollieWorld, count: int, timeout: float = 30) -> None:
    """Wait until the settlements list has been read ``count`` more times."""
    target, deadline = settlement_lists(world) + count, time.monotonic() + timeout
    while settlement_lists(world) < target:
        assert time.monotonic() < deadline, "the poll did not run"
        await asyncio.sleep(0.05)


async def wait_for_payouts(h: testing.MollieHarness, count: int, timeout: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        await h.drain(timeout=timeout)
        payouts: list[dict[str, object]] = (await h.books()).get("payouts", [])
        if len(payouts) >= count:
            return payouts
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(payouts)} payouts after {timeout} s, expected {count}")
        await asyncio.sleep(0.1)


async def test_a_settlement_reaching_paidout_is_booked_by_the_poll_alone(database_url: str) -> None:
    world = MollieWorld(seed=21, clock=ticking_clock(int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()), 60))
    world.pay(world.create_payment(900)["id"])
    world.settle()  # paid out long before the bridge was connected: a backfill's to import, not the poll's
    world.clock = lambda: int(time.time())
    async with testing.mollie_bridge(database_url, world=world, settings=FAST) as h:
        made = [world.create_payment(1000 + 100 * n, method="creditcard") for n in range(6)]
        for payment in made:
            world.pay(payment["id"])  # no call about any of them ever arrives
        world.refund(made[0]["id"], 300, status="refunded")
        settlement = world.settle(status="pending")
        await polls_pass(world, 3)  # a few polls see it pending: nothing is queued
        assert (await h.status()).received == 0
        world.set_settlement_status(settlement["id"], "paidout")
        (payout,) = await wait_for_payouts(h, 1)
        await polls_pass(world, 3)  # later polls see it again: queued once all the same
        status = await h.drain()
    assert (status.received, status.synced, status.failed) == (1, 1, 0)
    assert payout["external_id"] == f"mollie_{settlement['id']}"
    assert payout["paid_out_amount_cents"] == minor_of(settlement["amount"])
    assert payout["amount_variance_cents"] == 0
    assert payout["status"] == "paid"


async def test_pollers_in_several_processes_queue_a_settlement_once(database_url: str) -> None:
    world = MollieWorld(seed=22)
    async with testing.mollie_bridge(database_url, world=world, worker=False) as h:
        world.pay(world.create_payment(2500)["id"])
        world.settle()
        async with open_bridge(h.bridge.settings) as other:  # another process: its own store, its own client
            pollers = [
                Polling(b.store, b.connections, b.processors, utc_now, b.events_ready) for b in (h.bridge, other)
            ]
            found = await asyncio.gather(*(p.tick() for p in pollers for _ in range(3)))
        assert sum(found) == 1
        assert (await h.status()).received == 1


async def test_no_poll_without_an_organization_token_or_when_turned_off(database_url: str) -> None:
    world = MollieWorld(seed=23)
    async with testing.mollie_bridge(database_url, world=world, organization_token=False, settings=FAST) as h:
        world.pay(world.create_payment(2500)["id"])
        world.settle()
        await asyncio.sleep(1.0)  # about five polls
        assert (await h.status()).received == 0
        assert settlement_lists(world) == 0
    off = {"BRIDGE_MOLLIE_SETTLEMENT_POLL_SECONDS": 0}
    async with testing.mollie_bridge(database_url, world=world, worker=False, settings=off) as h:
        assert h.bridge.worker().scheduled == []
    async with testing.mollie_bridge(database_url, world=world, worker=False) as h:
        (poll,) = h.bridge.worker().scheduled
        assert poll.every == 900
