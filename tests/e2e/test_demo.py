"""`thred-bridge demo --json` on a fresh temporary database, as a new user runs it: Stripe, Adyen and Mollie
traffic through the webhook routes, and every payout ties out in Thred. The document's ``ok`` and ``payouts``
fields are pinned (other tools read them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
PINNED = {
    "processor", "external_id", "currency", "gross_cents", "refunds_cents", "fees_cents", "net_cents",
    "variance_cents",
}  # fmt: skip


def test_the_demo_books_three_processors_and_every_payout_ties_out() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "thred_bridge", "demo", "--json"], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    document = json.loads(done.stdout)
    assert document["ok"] is True, document["problems"]
    assert document["problems"] == []
    payouts = document["payouts"]
    assert {p["processor"] for p in payouts} == {"stripe", "adyen", "mollie"}
    assert {p["currency"] for p in payouts if p["processor"] == "stripe"} >= {"EUR", "USD", "JPY"}
    for payout in payouts:
        assert payout.keys() >= PINNED
        assert payout["variance_cents"] == 0, payout
        assert payout["gross_cents"] - payout["refunds_cents"] - payout["fees_cents"] == payout["net_cents"], payout
        assert payout["external_id"].startswith(payout["processor"] + "_")
    refunds = {r["processor"] for r in document["refunds"]}
    assert refunds == {"stripe", "adyen", "mollie"}, "a refund or chargeback on each"
    answers = {processor: set(codes) for processor, codes in document["deliveries"].items()}
    assert answers == {"stripe": {"200"}, "adyen": {"200"}, "mollie": {"200"}}
    assert document["seconds"] < 30
