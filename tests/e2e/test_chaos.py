"""The chaos benchmark, small: a mixed Stripe, Adyen and Mollie world delivered one to three times to several
web processes, web and worker processes SIGKILLed every few seconds for 15 s, Thred failing 30 % of its
calls (some after the commit), and on Postgres the database server restarted half-way. Nothing lost, nothing
doubled, every payout ties out, and the books are the clean run's (``bench/chaos.py``; the large run is in the
README)."""

from __future__ import annotations

import pytest
from bench.chaos import main_async, parse

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(900)]


async def test_chaos_loses_nothing_doubles_nothing_and_ends_as_a_clean_run(database_url: str) -> None:
    db = "sqlite" if database_url.startswith("sqlite") else "postgres"
    args = parse(["--db", db, "--events", "60", "--kill-every", "3", "--chaos-seconds", "15", "--latency-ms", "20",
                  "--timeout", "600"])  # fmt: skip
    result = await main_async(args)
    figures = {k: result[k] for k in ("lost", "doubled", "variance_nonzero_payouts", "failed", "identical_to_clean")}
    assert figures == {
        "lost": 0, "doubled": 0, "variance_nonzero_payouts": 0, "failed": 0, "identical_to_clean": True,
    }, result  # fmt: skip
    assert result["refused"] == []
    assert result["kills"] >= 1
    assert result["thred_faults"] >= 1
    assert result["db_restarts"] == (1 if db == "postgres" else 0)
    assert result["deliveries"] > result["events"]  # some were delivered more than once
