"""Exactly once under any interleaving: a Hypothesis state machine over ingest, the worker and Thred.

The world is a Stripe month (charges, one in USD settled in EUR, a partial refund, a lost dispute of a refunded
charge: money out beyond what was paid, and the payout). The machine's rules deliver any event (again, too),
make Thred's next calls fail (500 or 503 before the write, 500 after it committed, 429 with Retry-After), run
the worker until it stops moving, or run it for a few milliseconds and stop it (a SIGTERM: it stops claiming and
gives back what it holds). After every step each Thred record is there at most once; at the end, every event
delivered and the worker drained (through the faults not yet met), the books are the world's: every payment
once at its settled amount, what each invoice refunded, and the payout ties out. SQLite and Postgres, a fresh
database for every example.

A process killed outright is not a rule here: it is a separate process by nature, and
``test_takeover.py`` and ``test_many_processes.py`` kill them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from tests.conftest import _conninfo
from thred_bridge import testing
from thred_bridge.store import schema
from thred_bridge.store.tables import metadata

pytestmark = pytest.mark.slow

FAULTS = st.sampled_from([(500, "before"), (503, "before"), (500, "after"), (429, "before")])
PATHS = st.sampled_from(["/customers/", "/invoices/", "/invoices/payments/", "/refunds/", "/payouts/"])
KINDS = ("customers", "invoices", "payments", "refunds", "refund_payments", "payouts")


def _fresh(url: str, folder: Path, n: int) -> str:
    """An empty, migrated database for one example: a new SQLite file, or the run's Postgres emptied."""
    if url.startswith("sqlite"):
        fresh = f"sqlite:///{folder / f'bridge-{n}.db'}"
        schema.migrate(fresh)
        return fresh
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY")
    return url


class ExactlyOnce(RuleBasedStateMachine):
    database_url = ""
    folder = Path()
    examples = 0

    def __init__(self) -> None:
        super().__init__()
        ExactlyOnce.examples += 1
        self.runner = asyncio.Runner()
        url = _fresh(self.database_url, self.folder, self.examples)
        self.context = testing.bridge(url, worker=False)
        self.h: testing.Harness = self.runner.run(self.context.__aenter__())
        self.events, self.expected = self._world()
        self.delivered: set[int] = set()
        self.faults_left = 4  # each is a retry with backoff (1, 2, 4, 8 s): bounded, so the end drains in time

    def _world(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        w = self.h.world
        events: list[dict[str, Any]] = []
        payments: dict[str, int] = {}
        charges = [
            w.add_charge(4_000, "eur", fee=60),
            w.add_charge(2_500, "usd", settlement_currency="eur", exchange_rate="0.9214", fee=40),
            w.add_charge(9_900, "eur", fee=120),
        ]
        for charge in charges:
            payments[f"stripe_{charge['id']}"] = (w.get(charge["balance_transaction"]) or {})["amount"]
            events.append(w.event("charge.succeeded", charge))
        refund = w.refund(charges[0]["id"], 1_500)
        events.append(w.event("refund.created", refund))
        dispute = w.dispute(charges[0]["id"])  # all 4,000, though 1,500 went back already
        events.append(w.event("charge.dispute.funds_withdrawn", w.get(dispute["id"]) or {}))
        payout = w.payout(currency="eur")
        events.append(w.event("payout.paid", payout))
        refunded = {f"stripe_{charges[0]['id']}": 4_000}  # the invoice refunds what was paid; 1,500 is carried
        return events, {"payments": payments, "refunded": refunded, "payout": payout["amount"], "excess": 1_500}

    def _run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    @rule(n=st.integers(min_value=0, max_value=5))
    def deliver(self, n: int) -> None:
        answer = self._run(self.h.deliver(self.events[n]))
        assert answer.status_code == 200, answer.text
        self.delivered.add(n)

    @precondition(lambda self: self.faults_left > 0)
    @rule(fault=FAULTS, path=PATHS, times=st.integers(min_value=1, max_value=2))
    def thred_fails(self, fault: tuple[int, str], path: str, times: int) -> None:
        times = min(times, self.faults_left)
        self.faults_left -= times
        status, when = fault
        spec = {"path_contains": path, "status": status, "times": times, "method": "POST", "when": when}
        self._run(self.h.http.post(f"{self.h.thred_url}/_sandbox/faults", json=spec))

    @rule()
    def work(self) -> None:
        self._run(self._work(None))

    @rule(ms=st.integers(min_value=0, max_value=60))
    def work_then_stop(self, ms: int) -> None:
        self._run(self._work(ms / 1000))

    async def _work(self, seconds: float | None) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self.h.bridge.worker(poll=0.05).run(stop))
        if seconds is None:
            await self.h.settle()
        else:
            await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(task, 30)

    @invariant()
    def each_record_at_most_once(self) -> None:
        books = self._run(self.h.books())
        for kind in KINDS:
            counts = Counter(r["external_id"] for r in books.get(kind, []))
            assert all(n == 1 for n in counts.values()), (kind, counts)

    def teardown(self) -> None:
        try:
            self._run(self._settle_all())
        finally:
            with contextlib.suppress(Exception):
                self._run(self.context.__aexit__(None, None, None))
            self.runner.close()

    async def _settle_all(self) -> None:
        h = self.h
        for n in range(len(self.events)):
            if n not in self.delivered:
                assert (await h.deliver(self.events[n])).status_code == 200
        # Faults not yet met stay: the last ones are met here (at most four, so the retries end in time).
        stop = asyncio.Event()
        task = asyncio.create_task(h.bridge.worker(poll=0.05).run(stop))
        try:
            status = await h.drain(timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        books = await h.books()
        assert (status.failed, status.records_failed) == (0, 0), status.failures
        payments = {p["external_id"]: p["total_amount_cents"] for p in books["payments"]}
        assert payments == self.expected["payments"]
        assert sum(r["amount_cents"] for r in books["refund_payments"]) == 4_000
        (payout,) = books["payouts"]
        assert payout["paid_out_amount_cents"] == self.expected["payout"]
        assert payout["amount_variance_cents"] == 0
        assert payout["additional_refunds_amount_cents"] == self.expected["excess"]


def test_any_interleaving_of_deliveries_faults_and_worker_runs_books_each_object_once(database_url: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ExactlyOnce.database_url, ExactlyOnce.folder, ExactlyOnce.examples = database_url, Path(folder), 0
        run_state_machine_as_test(
            ExactlyOnce,
            settings=settings(
                max_examples=5,
                stateful_step_count=14,
                deadline=None,
                phases=(Phase.explicit, Phase.reuse, Phase.generate),
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
