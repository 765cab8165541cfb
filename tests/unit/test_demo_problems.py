"""The demo's verdict: what keeps the books from matching the processors is named, and nothing else."""

from __future__ import annotations

from typing import Any

from thred_bridge.entrypoints.demo import _problems
from thred_bridge.entrypoints.demo_world import Traffic


def _books(variance: int = 0, net: int = 900, amount: int = 1000) -> dict[str, list[dict[str, Any]]]:
    return {
        "payments": [{"external_id": "stripe_ch_1", "amount_cents": amount}],
        "refunds": [],
        "payouts": [{"external_id": "stripe_po_1", "net_cents": net, "variance_cents": variance}],
    }


def _traffic() -> list[Traffic]:
    return [Traffic("stripe", [], payments={"stripe_ch_1": 1000}, payouts={"stripe_po_1": 900})]


def test_books_that_match_have_no_problem() -> None:
    assert _problems(_books(), _traffic(), {"stripe": {"200": 3}}) == []


def test_each_mismatch_is_named() -> None:
    assert _problems(_books(), _traffic(), {"stripe": {"200": 2, "400": 1}}) == ["stripe: 1 deliveries answered 400"]
    assert _problems(_books(variance=-5), _traffic(), {}) == ["payout stripe_po_1: variance -5"]
    assert _problems(_books(net=899), _traffic(), {}) == ["payout stripe_po_1: 899 in Thred, 900 at stripe"]
    assert _problems(_books(amount=999), _traffic(), {}) == ["payment stripe_ch_1: 999 in Thred, 1000 at stripe"]
    missing: dict[str, list[dict[str, Any]]] = {"payments": [], "refunds": [], "payouts": []}
    assert _problems(missing, _traffic(), {}) == [
        "payment stripe_ch_1: missing in Thred, 1000 at stripe",
        "payout stripe_po_1: None in Thred, 900 at stripe",
    ]
