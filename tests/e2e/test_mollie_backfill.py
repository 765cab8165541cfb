"""A Mollie month imported by the backfill alone, with no webhook at all: it pages payments (newest first,
``from`` cursor, no date filter) and settlements, the worker books them, and Thred ends with exactly the
state the live classic-webhook path gives. A backfill killed midway resumes from its saved cursor. The
CLI's `backfill --wait --json` runs as a real process against the same month."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiolimiter import AsyncLimiter

from tests.e2e.processes import process_env
from tests.e2e.test_mollie_settlement import build_month
from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.errors import ProcessorUnavailableError
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.backfill import Backfill, HistorySource, Progress
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.mollie_api import MollieWorld, minor_of, ticking_clock
from thred_bridge.simulators.mollie_api import create_app as create_mollie

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
DAY = timedelta(days=1)
START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = 2 * 3600  # each reading of Mollie's clock two hours after the one before: the month spans ~4 weeks
VOLATILE = frozenset(
    {"id", "business_id", "created_at", "updated_at", "processed_at", "allocated_at", "allocation_date", "paid_at",
     "imported_at", "activation_at"}
)  # fmt: skip
"""Fields the sandbox fills from its own clock or ids, not from what the bridge sent."""
ORDERED_BY_CREATION = frozenset({"invoice_number", "target_description"})
"""Fields the sandbox numbers in the order records arrive (``INV-00042``): the order differs, the records not."""


def world_of_a_month() -> tuple[MollieWorld, dict[str, Any], datetime]:
    """The same month every call: ~150 paid payments, refunds, a chargeback, then one paid-out settlement."""
    world = MollieWorld(seed=6, clock=ticking_clock(int(START.timestamp()), STEP))
    expected: dict[str, Any] = dict(build_month(world, random.Random(2026_06)))
    expected["settlement"] = world.settle()
    return world, expected, datetime.fromtimestamp(world.clock(), UTC)


def backfill(h: testing.MollieHarness, **options: Any) -> Backfill:
    source: HistorySource = h.bridge.processors["mollie"]  # type: ignore[assignment]  # the optional protocol
    return Backfill(h.bridge.store, source, lambda: datetime.now(UTC), AsyncLimiter(1000, 1), **options)


def normalised(books: dict[str, Any]) -> dict[str, Any]:
    """The books with the sandbox's own ids replaced by the external ids they stand for, its clock's fields
    dropped and every list sorted: what two runs that booked the same things must agree on."""
    names: dict[str, str] = {}

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("id"), str) and isinstance(value.get("external_id"), str):
                names[value["id"]] = value["external_id"]
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items() if k not in VOLATILE | ORDERED_BY_CREATION}
        if isinstance(value, list):
            return sorted((rewrite(v) for v in value), key=repr)
        if isinstance(value, str) and value in names:
            return f"→{names[value]}"
        return value

    collect(books)
    rewritten: dict[str, Any] = rewrite({k: v for k, v in books.items() if k != "business"})  # the sandbox's own
    return rewritten


async def test_backfill_alone_gives_the_state_live_webhooks_give(database_url: str) -> None:
    world, expected, until = world_of_a_month()
    settlement = expected["settlement"]
    async with testing.mollie_bridge(database_url, world=world, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        for start in range(0, len(pings := [p["id"] for p in world.listed("payment")]), 16):
            await asyncio.gather(*(h.ping(p) for p in pings[start : start + 16]))
        await h.ping(settlement["id"])
        live_status = await h.drain(timeout=240)
        live = await h.books()
    assert live_status.failed == 0, live_status.failures

    world, _, _ = world_of_a_month()  # the very same month, in a fresh bridge and a fresh Thred
    async with testing.mollie_bridge(database_url, world=world, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        progress = await backfill(h).run(h.connection, START, until + DAY)
        status = await h.drain(timeout=240)
        books = await h.books()
        lists = Counter(r.path for r in world.requests if r.path in ("/v2/payments", "/v2/settlements"))
    assert status.failed == 0, status.failures
    assert progress.by_kind == {"payments": 150, "settlements": 1}
    assert progress.stored == progress.seen == status.synced == 151
    assert lists == {"/v2/payments": 1, "/v2/settlements": 1}  # one slice per kind, whatever `parts` says
    assert {p["external_id"]: p["total_amount_cents"] for p in books["payments"]} == expected["payments"]
    refunds = {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}
    assert refunds == expected["refund_payments"]
    (payout,) = books["payouts"]
    assert (payout["external_id"], payout["amount_variance_cents"]) == (f"mollie_{settlement['id']}", 0)
    assert payout["paid_out_amount_cents"] == minor_of(settlement["amount"])
    assert normalised(books) == normalised(live)


async def test_the_range_is_honoured_and_a_second_run_stores_nothing(database_url: str) -> None:
    world = MollieWorld(seed=8, clock=ticking_clock(int(START.timestamp()), 3600))
    async with testing.mollie_bridge(database_url, world=world, worker=False) as h:
        made = [world.create_payment(1000 + n) for n in range(60)]  # one an hour: 2.5 days
        for payment in made[::2]:
            world.pay(payment["id"])  # the others stay open: nothing to book, not offered
        since, until = START + DAY, START + 2 * DAY
        inside = {p["id"] for p in made[::2] if since <= datetime.fromisoformat(p["createdAt"]) < until}
        first = await backfill(h).run(h.connection, since, until)
        again = await backfill(h).run(h.connection, since, until + timedelta(seconds=1))  # other slices: read again
    assert first.stored == first.seen == len(inside) == 12
    assert (again.seen, again.stored) == (12, 0)  # the inbox holds every one already


async def test_without_an_organization_token_only_payments_are_listed(database_url: str) -> None:
    world = MollieWorld(seed=10, clock=ticking_clock(int(START.timestamp()), 600))
    async with testing.mollie_bridge(database_url, world=world, worker=False, organization_token=False) as h:
        for n in range(5):
            world.pay(world.create_payment(900 + n)["id"])
        world.settle()
        progress = await backfill(h).run(h.connection, START, START + DAY)
    assert progress.by_kind == {"payments": 5, "settlements": 0}
    assert [r.path for r in world.requests] == ["/v2/payments"]  # never asked for settlements with the key


async def test_a_killed_backfill_resumes_from_its_cursor(database_url: str) -> None:
    world = MollieWorld(seed=9, clock=ticking_clock(int(START.timestamp()), 600))
    async with testing.mollie_bridge(database_url, world=world, worker=False) as h:
        for n in range(300):  # two pages of payments (250 a page)
            world.pay(world.create_payment(700 + n)["id"])
        settlement = world.settle()
        until = datetime.fromtimestamp(world.clock(), UTC) + DAY
        injected: list[int] = []

        def kill_after_the_first_page(progress: Progress) -> None:
            if not injected:  # the first page is stored and its cursor saved: fail the next one for good
                injected.append(progress.requests)
                world.fail_next("/v2/payments", 500, times=2)  # more than max_waits=1: the run dies

        first = backfill(h, parallel=1, max_waits=1, on_change=kill_after_the_first_page)
        with pytest.raises(ExceptionGroup) as died:
            await first.run(h.connection, START, until)
        assert died.group_contains(ProcessorUnavailableError)
        assert first.progress.stored == 250
        listed = [r for r in world.requests if r.path == "/v2/payments"]
        assert [r.status for r in listed] == [200, 500, 500]
        world.requests.clear()
        second = await backfill(h, parallel=1).run(h.connection, START, until)
        # From the saved cursor: the second page of payments (not the first again), then the settlements.
        assert [(r.path, "from=" in r.query) for r in world.requests] == [
            ("/v2/payments", True),
            ("/v2/settlements", False),
        ]
        assert (second.requests, second.stored) == (2, 50 + 1)
        stop = asyncio.Event()
        worker = asyncio.create_task(h.bridge.worker(poll=0.1).run(stop))
        try:
            status = await h.drain(timeout=240)
            books = await h.books()
        finally:
            stop.set()
            await worker
    assert status.failed == 0, status.failures
    assert len(books["payments"]) == 300
    (payout,) = books["payouts"]
    assert (payout["external_id"], payout["amount_variance_cents"]) == (f"mollie_{settlement['id']}", 0)


# --- the CLI, as a real process --------------------------------------------------------------------------


async def test_cli_backfill_wait_books_the_month(database_url: str, tmp_path: Path) -> None:
    """`thred-bridge backfill ID --since … --until … --wait --json` for a Mollie connection, as a process."""
    world, expected, until = world_of_a_month()
    mollie = create_mollie(world, api_key=testing.MOLLIE_API_KEY, organization_token=testing.MOLLIE_ORGANIZATION_TOKEN)
    async with (
        serve_in_background(mollie) as mollie_url,
        serve_in_background(create_sandbox(partners=dict([testing.PARTNER]))) as thred_url,
    ):
        env = process_env(
            database_url,
            thred_url,
            BRIDGE_MOLLIE_API_BASE=mollie_url,
            BRIDGE_WORKER_CONCURRENCY="8",
            BRIDGE_LOG_LEVEL="warning",
        )
        business_id = str(uuid.uuid4())
        credentials = {"api_key": testing.MOLLIE_API_KEY, "organization_token": testing.MOLLIE_ORGANIZATION_TOKEN}
        async with open_bridge(Settings.model_validate(env), with_thred=False) as offline:
            connection = await offline.connections.add(NewConnection("mollie", business_id, credentials, ()))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "thred_bridge", "backfill", connection.id, "--since", START.strftime("%Y-%m-%d"),
            "--until", (until + DAY).strftime("%Y-%m-%d"), "--rate", "200", "--parallel", "4", "--wait", "--json",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
        assert proc.returncode == 0, err.decode()[-2000:]
        summary = json.loads(out)
        async with httpx.AsyncClient() as client:
            books = (await client.get(f"{thred_url}/_sandbox/state")).json()["businesses"][business_id]
    assert summary["by_kind"] == {"payments": 150, "settlements": 1}
    assert summary["seen"] == summary["stored"] == 151
    assert summary["synced"] == {"synced": 151, "failed": 0}
    assert summary["requests"] == 2  # one page of each kind: --parallel cuts no slices for Mollie
    assert {p["external_id"]: p["total_amount_cents"] for p in books["payments"]} == expected["payments"]
    (payout,) = books["payouts"]
    assert (payout["external_id"], payout["amount_variance_cents"]) == (f"mollie_{expected['settlement']['id']}", 0)
