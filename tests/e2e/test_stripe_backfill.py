"""A merchant's month imported from Stripe's history alone, with no webhooks: the backfill lists charges,
refunds, disputes and payouts, the worker books them, and Thred ends with exactly the books the webhook
path gives (every payout tied out to the cent). A backfill killed midway resumes from its cursors. The
CLI's `backfill --wait --json` and `reconcile --json` run as real processes against the same world."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiolimiter import AsyncLimiter

from tests.e2e.processes import process_env
from tests.e2e.test_stripe_month import build_month
from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.errors import ProcessorUnavailableError
from thred_bridge.processors.stripe.currency import from_stripe
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.backfill import Backfill, HistorySource, Progress
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe
from thred_bridge.simulators.stripe_world import ticking_clock

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
DAY = timedelta(days=1)
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 40 * DAY
STEP = 3600  # each object or event an hour after the one before: the month spans about 24 days
LISTS = {f"/v1/{kind}" for kind in ("charges", "refunds", "disputes", "payouts")}


def month(world: StripeWorld) -> tuple[dict[str, Any], datetime]:
    """The month of ``build_month`` on a clock that ticks from START; its expected books, and a bound past it."""
    world.clock = ticking_clock(int(START.timestamp()), STEP)
    _events, expected = build_month(world, random.Random(2026_11))
    return expected, datetime.fromtimestamp(world.clock(), UTC)


def assert_books(books: dict[str, Any], expected: dict[str, Any]) -> None:
    """The books the webhook path ends with (test_stripe_month): each payment and refund once, every payout
    tied out (variance 0) and every payment settled by exactly one payout."""
    assert Counter(p["external_id"] for p in books["payments"]).most_common(1)[0][1] == 1
    assert {p["external_id"]: p["total_amount_cents"] for p in books["payments"]} == expected["payments"]
    refunds = {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}
    assert refunds == expected["refund_payments"]
    payouts = {p["external_id"]: p for p in books["payouts"]}
    assert set(payouts) == set(expected["payouts"])
    settled: Counter[str] = Counter()
    for ext, stripe_payout in expected["payouts"].items():
        held = payouts[ext]
        assert held["amount_variance_cents"] == 0, (ext, held.get("memo"))
        assert held["status"] == stripe_payout["status"]
        paid = 0 if stripe_payout["status"] == "failed" else stripe_payout["amount"]
        assert held["paid_out_amount_cents"] == from_stripe(paid, stripe_payout["currency"]).minor
        settled.update(p["external_id"] for p in held["payments"])
    assert max(settled.values()) == 1
    assert set(settled) == set(expected["payments"])


def backfill(h: testing.Harness, **options: Any) -> Backfill:
    source: HistorySource = h.bridge.processors["stripe"]  # type: ignore[assignment]  # see history.HistoryPage
    return Backfill(h.bridge.store, source, lambda: datetime.now(UTC), AsyncLimiter(1000, 1), **options)


def list_requests(world: StripeWorld) -> Counter[str]:
    return Counter(r.path for r in world.requests if r.path in LISTS)


async def test_backfill_alone_gives_the_books_webhooks_give(database_url: str) -> None:
    async with testing.bridge(database_url, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        expected, until = month(h.world)
        progress = await backfill(h).run(h.connection, START, until)
        status = await h.drain(timeout=120)
        books = await h.books()
    assert status.failed == 0, status.failures
    assert progress.stored == progress.seen == status.synced
    assert progress.by_kind == {"charges": 218, "refunds": 16, "disputes": 2, "payouts": 5}
    assert_books(books, expected)


def small_month(world: StripeWorld) -> tuple[dict[str, Any], datetime]:
    """Enough for more than one page of charges: 110 of them, three refunds, a lost dispute, one payout."""
    world.clock = ticking_clock(int(START.timestamp()), STEP)
    expected: dict[str, Any] = {"payments": {}, "refund_payments": {}, "payouts": {}}
    charges = [world.add_charge(1000 + 7 * n, "eur") for n in range(110)]
    expected["payments"] = {f"stripe_{c['id']}": c["amount"] for c in charges}
    for made in charges[:3]:
        expected["refund_payments"][f"stripe_{world.refund(made['id'], 300)['id']}"] = 300
    expected["refund_payments"][f"stripe_{world.dispute(charges[3]['id'])['id']}"] = charges[3]["amount"]
    payout = world.payout(currency="eur")
    expected["payouts"][f"stripe_{payout['id']}"] = payout
    return expected, datetime.fromtimestamp(world.clock(), UTC)


async def test_a_killed_backfill_resumes_from_its_cursors(database_url: str) -> None:
    async with testing.bridge(database_url, worker=False, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        expected, until = small_month(h.world)
        injected: list[int] = []

        def kill_after_the_first_page(progress: Progress) -> None:
            if not injected:  # the first page is stored and its cursor saved: fail the next one for good
                injected.append(progress.requests)
                h.world.fail_next("/v1/charges", 500, times=2)  # more than max_waits=1: the run dies

        first = backfill(h, parallel=1, max_waits=1, on_change=kill_after_the_first_page)
        with pytest.raises(ExceptionGroup) as died:
            await first.run(h.connection, START, until, parts=1)
        assert died.group_contains(ProcessorUnavailableError)
        assert list_requests(h.world) == {"/v1/charges": 3}  # one page, then the second twice
        assert first.progress.stored == 100
        h.world.requests.clear()
        second = await backfill(h, parallel=1).run(h.connection, START, until, parts=1)
        # From the charges' cursor on: their second page (not the first again), then one page of each other kind.
        assert list_requests(h.world) == {"/v1/charges": 1, "/v1/refunds": 1, "/v1/disputes": 1, "/v1/payouts": 1}
        assert (second.requests, second.stored) == (4, 10 + 3 + 1 + 1)
        stop = asyncio.Event()
        worker = asyncio.create_task(h.bridge.worker(poll=0.1).run(stop))
        try:
            status = await h.drain(timeout=120)
            books = await h.books()
        finally:
            stop.set()
            await worker
    assert status.failed == 0, status.failures
    assert status.synced == 100 + 15
    assert_books(books, expected)


# --- the CLI, as real processes --------------------------------------------------------------------------


@dataclass
class Cli:
    env: dict[str, str]
    world: StripeWorld
    thred_url: str
    connection_id: str
    business_id: str
    cwd: Path

    async def run(self, *args: str) -> tuple[int, Any]:
        """``thred-bridge ARGS --json`` to the end: its exit code and its JSON."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "thred_bridge", *args, "--json",
            env=self.env, cwd=self.cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode is not None
        try:
            return proc.returncode, json.loads(out)
        except json.JSONDecodeError:
            pytest.fail(f"thred-bridge {' '.join(args)} exited {proc.returncode}: {out!r} {err.decode()[-2000:]}")

    async def books(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            state = (await client.get(f"{self.thred_url}/_sandbox/state")).json()
        books: dict[str, Any] = state["businesses"].get(self.business_id, {})
        return books


@pytest.fixture
async def cli(database_url: str, tmp_path: Path) -> AsyncIterator[Cli]:
    """The simulated Stripe and the Thred sandbox served here; the bridge configured for processes."""
    world = StripeWorld(seed=5)
    async with (
        serve_in_background(create_stripe(world, api_key=testing.STRIPE_KEY)) as stripe_url,
        serve_in_background(create_sandbox(partners=dict([testing.PARTNER]))) as thred_url,
    ):
        env = process_env(
            database_url,
            thred_url,
            BRIDGE_STRIPE_API_BASE=stripe_url,
            BRIDGE_WORKER_CONCURRENCY="8",
            BRIDGE_LOG_LEVEL="warning",
        )
        business_id = "5b0e8a52-8f1e-4c1d-9a57-0d7c5e2f9b31"
        async with open_bridge(Settings.model_validate(env), with_thred=False) as offline:
            connection = await offline.connections.add(
                NewConnection("stripe", business_id, {"api_key": testing.STRIPE_KEY}, ("whsec_" + "0" * 32,))
            )
        yield Cli(env, world, thred_url, connection.id, business_id, tmp_path)


def day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


async def test_cli_backfill_then_reconcile(cli: Cli) -> None:
    """`backfill --wait --json` books the month; `reconcile --json` then finds every payout tied out, and names
    what is missing once Stripe shows a payout the bridge never saw."""
    expected, until = month(cli.world)
    code, summary = await cli.run("backfill", cli.connection_id, "--since", day(START), "--until", day(until + DAY),
                                  "--rate", "200", "--wait")  # fmt: skip
    assert code == 0
    assert (summary["id"], summary["since"]) == (cli.connection_id, START.isoformat())
    assert summary["by_kind"] == {"charges": 218, "refunds": 16, "disputes": 2, "payouts": 5}
    assert summary["seen"] == summary["stored"] == 241
    assert summary["synced"] == {"synced": 241, "failed": 0}
    assert summary["requests"] == sum(list_requests(cli.world).values())
    assert_books(await cli.books(), expected)

    arrivals = ("--since", day(START), "--until", day(until + 3 * DAY))  # a payout arrives two days after
    code, report = await cli.run("reconcile", cli.connection_id, *arrivals)
    assert {p["external_id"] for p in report["payouts"]} == set(expected["payouts"])
    assert [(p["payout_id"], p["differences"]) for p in report["payouts"] if p["differences"]] == []
    assert (code, report["differences"]) == (0, 0)

    unseen = cli.world.add_charge(4321, "eur")  # neither delivered nor backfilled
    stray = cli.world.payout(currency="eur")
    code, report = await cli.run("reconcile", cli.connection_id, *arrivals)
    assert code == 1
    (flagged,) = [p for p in report["payouts"] if p["differences"]]
    assert (flagged["payout_id"], flagged["thred"]) == (stray["id"], None)
    assert f"missing record: payment stripe_{unseen['id']} (never queued)" in flagged["differences"]
    assert any(d.startswith(f"missing record: payout stripe_{stray['id']}") for d in flagged["differences"])
