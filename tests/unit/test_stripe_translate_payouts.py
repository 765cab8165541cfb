"""A Stripe payout and its balance transactions → Payout (processors/stripe/translate_payouts.py).

Fixtures: ``event_payout_paid.json`` wraps the real payout po_1HN84z (phil9690/stripe_api_mock) in a
constructed envelope, and ``balance_transactions_payout_po_1HN84z.json`` is the real ``?payout=`` list
printed after it; ``payout_mixed.json`` and its list are ours, one transaction of every kind.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money
from thred_bridge.domain.records import payout_record, payout_totals
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.translate_payouts import item_kind, to_payout, to_payout_item

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def real() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return load("event_payout_paid.json")["data"]["object"], load("balance_transactions_payout_po_1HN84z.json")["data"]


def mixed() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return load("payout_mixed.json"), load("balance_transactions_payout_mixed.json")["data"]


def test_real_payout_repays_an_earlier_failed_one() -> None:
    payout, bts = real()
    result = to_payout(payout, bts, account=None)
    assert result.processor == "stripe"
    assert result.object_id == "po_1HN84zFBTNPFnHZBwVxSjVft"
    assert result.amount == Money(49108, "EUR")
    assert result.status == "paid"
    assert result.arrives_at == datetime(2020, 9, 8, tzinfo=UTC)
    assert result.itemised
    assert result.reference is None
    (item,) = result.items  # the payout's own type=payout transaction is not an item
    assert (item.kind, item.object_id, item.amount, item.fee) == (
        "adjustment",
        "txn_1GMtkuFBTNPFnHZBW38bdtFu",
        Money(49108, "EUR"),
        Money(0, "EUR"),
    )
    assert item.description == "REFUND FOR PAYOUT (STRIPE PAYOUT)"
    assert dict(result.metadata) == {
        "stripe_payout_id": "po_1HN84zFBTNPFnHZBwVxSjVft",
        "method": "standard",
        "stripe_balance_transaction": "txn_1HN84zFBTNPFnHZBRE5YzZtX",
    }
    totals = payout_totals(result)
    assert (totals.credits, totals.net) == (49108, 49108)


def test_the_payout_that_repays_a_failed_one_lists_what_the_failed_one_carried() -> None:
    payout, bts = real()
    failed = load("balance_transactions_payout_po_1GHiN6.json")["data"]
    result = to_payout(payout, bts, account=None, repaid={"po_1GHiN6FBTNPFnHZBSiareiWD": failed})
    (item,) = result.items
    assert (item.kind, item.object_id, item.amount, item.fee) == (
        "charge",
        "ch_1GHAoVFBTNPFnHZBX03eqWg3",
        Money(50000, "EUR"),
        Money(892, "EUR"),
    )
    t = payout_totals(result)
    assert (t.gross, t.fees, t.credits, t.net) == (50000, 892, 0, 49108)
    assert result.item_net == result.amount
    unknown = to_payout(payout, bts, account=None, repaid={"po_1GHiN6FBTNPFnHZBSiareiWD": []})
    assert [i.kind for i in unknown.items] == ["adjustment"]  # not listed: the lump stays


def test_repaid_payouts_nest_and_never_loop() -> None:
    def bt(n: int, amount: int, type_: str, source: object) -> dict[str, Any]:
        category = {"payout_failure": "payout_reversal", "charge": "charge", "payout": "payout"}[type_]
        made: dict[str, Any] = {"id": f"txn_{n}", "amount": amount, "fee": 0, "currency": "eur", "type": type_}
        return made | {"reporting_category": category, "source": source}

    payout = {"id": "po_3", "object": "payout", "amount": 300, "currency": "eur", "status": "paid"}
    payout |= {"arrival_date": 1_762_000_000, "automatic": True, "balance_transaction": "txn_30"}
    bts = [bt(30, -300, "payout", "po_3"), bt(31, 300, "payout_failure", {"id": "po_2", "object": "payout"})]
    repaid = {
        "po_2": [bt(20, -300, "payout", "po_2"), bt(21, 100, "charge", "ch_2"), bt(22, 200, "payout_failure", "po_1")],
        "po_1": [bt(11, 150, "charge", "ch_1"), bt(12, 50, "payout_failure", "po_3")],  # po_3 again: kept as is
    }
    result = to_payout(payout, bts, account=None, repaid=repaid)
    assert [(i.kind, i.object_id) for i in result.items] == [
        ("charge", "ch_2"),
        ("charge", "ch_1"),
        ("adjustment", "txn_12"),
    ]
    assert result.item_net == result.amount


def test_every_kind_of_item() -> None:
    payout, bts = mixed()
    result = to_payout(payout, bts, account="acct_1")
    assert result.account == "acct_1"
    assert result.reference == "EU2025110400001"
    assert result.metadata["reconciliation_status"] == "completed"
    assert [(i.kind, i.object_id, i.amount.minor, i.fee.minor) for i in result.items] == [
        ("adjustment", "txn_3SCRUBBEDpayout0rsv00001", -1000, 0),
        ("fee", "txn_3SCRUBBEDpayout0fee00001", -300, 0),
        ("dispute_credit", "dp_1SCRUBBEDdispute0000001", 5000, -1500),
        ("dispute_debit", "dp_1SCRUBBEDdispute0000001", -5000, 1500),
        ("adjustment", "txn_3SCRUBBEDpayout0rfail001", 700, 0),
        ("refund", "re_3SCRUBBEDpayout00000001", -2500, 0),
        ("adjustment", "txn_3SCRUBBEDpayout0pofail01", 20000, 0),
        ("charge", "py_3SCRUBBEDpayout00000001", 4000, 80),
        ("charge", "ch_3SCRUBBEDpayout00000001", 10000, 170),  # an expanded source gives its id
    ]
    assert result.item_net == result.amount == Money(30650, "EUR")
    t = payout_totals(result)
    assert (t.gross, t.refunds, t.fees, t.outflows, t.credits) == (19000, 7500, 550, 1000, 20700)
    assert t.net == 30650
    assert "do not add up" not in payout_record(result).body.get("memo", "")


def test_statement_descriptor_is_the_fallback_reference() -> None:
    payout, bts = mixed()
    payout.update(trace_id={"status": "pending", "value": None}, statement_descriptor="THRED PAYOUT 42")
    assert to_payout(payout, bts, account=None).reference == "THRED PAYOUT 42"


def test_manual_payout_has_no_items() -> None:
    payout, bts = mixed()
    payout.update(automatic=False, reconciliation_status="not_applicable")
    for given_bts in ([], bts):
        result = to_payout(payout, given_bts, account=None)
        assert (result.itemised, result.items) == (False, ())
    assert "manual payout" in payout_record(result).body["memo"]


def test_automatic_payout_not_reconciled_yet_is_not_ready() -> None:
    payout, _ = mixed()
    payout["reconciliation_status"] = "in_progress"
    with pytest.raises(NotReadyError, match="lists no balance transactions yet \\(reconciliation_status 'in_progress'"):
        to_payout(payout, [], account=None)


@pytest.mark.parametrize("status", ["paid", "pending", "in_transit", "canceled", "failed"])
def test_statuses(status: str) -> None:
    payout, bts = mixed()
    payout["status"] = status
    assert to_payout(payout, bts, account=None).status == status


def test_failed_payout_names_its_failure() -> None:
    payout, bts = mixed()
    payout.update(status="failed", failure_code="account_closed")
    assert to_payout(payout, bts, account=None).metadata["failure_code"] == "account_closed"


def test_negative_payout_debits_the_bank() -> None:
    payout, bts = mixed()
    bts = [bt for bt in bts if bt["type"] in {"payout", "refund", "stripe_fee"}]
    payout["amount"] = -2800
    result = to_payout(payout, bts, account=None)
    assert result.amount == result.item_net == Money(-2800, "EUR")


def _refuse(change: dict[str, Any]) -> dict[str, Any]:
    payout, _ = mixed()
    payout.update(change)
    return payout


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"object": "transfer"}, "not a Stripe payout"),
        ({"status": "reversed"}, "unknown status 'reversed'"),
        ({"automatic": None}, "does not say whether it is automatic"),
        ({"amount": "1.00"}, "is not an integer"),
        ({"currency": "isk", "amount": 150}, "not a whole ISK minor unit"),
        ({"arrival_date": None}, "has no timestamp"),
    ],
)
def test_payout_refusals(change: dict[str, Any], reason: str) -> None:
    _, bts = mixed()
    with pytest.raises(TranslationError, match=reason):
        to_payout(_refuse(change), bts, account=None)


def test_a_transaction_in_another_currency_is_refused() -> None:
    payout, bts = mixed()
    bts[3]["currency"] = "usd"
    with pytest.raises(TranslationError, match="is in USD, the payout in EUR"):
        to_payout(payout, bts, account=None)


def test_a_charge_transaction_without_source_is_refused() -> None:
    payout, bts = mixed()
    bts[-1]["source"] = None
    with pytest.raises(TranslationError, match=r"\(charge\) names no source object"):
        to_payout(payout, bts, account=None)


@pytest.mark.parametrize(
    ("category", "type_", "kind"),
    [
        ("charge", "charge", "charge"),
        ("charge", "payment", "charge"),
        (None, "payment", "charge"),
        ("refund", "payment_refund", "refund"),
        (None, "refund", "refund"),
        ("dispute", "adjustment", "dispute_debit"),
        ("dispute_reversal", "adjustment", "dispute_credit"),
        ("fee", "stripe_fee", "fee"),
        ("fee", "stripe_fx_fee", "fee"),
        ("tax", "tax_fee", "fee"),
        ("network_cost", "network_cost", "fee"),
        ("other_adjustment", "stripe_fee", "fee"),
        (None, "tax_fee", "fee"),
        ("risk_reserved_funds", "reserve_transaction", "adjustment"),
        ("payout_reversal", "payout_failure", "adjustment"),
        ("refund_failure", "refund_failure", "adjustment"),
        ("other_adjustment", "adjustment", "adjustment"),
        ("platform_earning", "application_fee", "adjustment"),
        (None, "transfer", "adjustment"),
        (None, None, "adjustment"),
    ],
)
def test_item_kind(category: str | None, type_: str | None, kind: str) -> None:
    assert item_kind({"reporting_category": category, "type": type_}) == kind


@pytest.mark.parametrize(("status", "kind"), [("succeeded", "refund"), ("pending", "refund"), ("failed", "adjustment")])
def test_a_refund_that_failed_since_is_an_adjustment(status: str, kind: str) -> None:
    source = {"id": "re_1", "object": "refund", "status": status}
    bt = {"id": "txn_1", "amount": -500, "fee": 0, "currency": "eur", "type": "refund", "reporting_category": "refund"}
    item = to_payout_item(bt | {"source": source}, currency="EUR")
    assert item.kind == kind
    assert item.object_id == ("re_1" if kind == "refund" else "txn_1")


# ---- properties --------------------------------------------------------------------------------------

# (Stripe currency, ISO currency, Stripe's step, Stripe units per ISO minor unit)
CURRENCIES = [("jpy", "JPY", 1, 1), ("isk", "ISK", 100, 100), ("kwd", "KWD", 10, 1), ("eur", "EUR", 1, 1)]
KINDS = [
    ("charge", "charge", "ch_"),
    ("payment", "charge", "py_"),
    ("refund", "refund", "re_"),
    ("adjustment", "dispute", "dp_"),
    ("adjustment", "dispute_reversal", "dp_"),
    ("stripe_fee", "fee", None),
    ("tax_fee", "tax", None),
    ("network_cost", "network_cost", None),
    ("reserve_transaction", "risk_reserved_funds", None),
    ("payout_failure", "payout_reversal", "po_"),
    ("refund_failure", "refund_failure", "re_"),
    ("adjustment", "other_adjustment", None),
]


@st.composite
def payouts(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """A payout and its transactions in one currency; the last value is Stripe units per ISO minor unit."""
    code, _, step, per_minor = draw(st.sampled_from(CURRENCIES))
    units = st.integers(min_value=-(10**9), max_value=10**9).map(lambda n: n * step)
    bts: list[dict[str, Any]] = []
    for n in range(draw(st.integers(min_value=1, max_value=25))):
        type_, category, prefix = draw(st.sampled_from(KINDS))
        amount, fee = draw(units), draw(units)
        source = f"{prefix}{n}" if prefix else None
        bts.append(
            {"id": f"txn_{n}", "object": "balance_transaction", "amount": amount, "fee": fee, "net": amount - fee}
            | {"currency": code, "type": type_, "reporting_category": category, "source": source, "created": n}
        )
    total = sum(bt["net"] for bt in bts)
    own = {"id": "txn_own", "amount": -total, "fee": 0, "net": -total, "currency": code, "type": "payout"}
    bts.insert(draw(st.integers(min_value=0, max_value=len(bts))), own | {"source": "po_1"})
    payout = {"id": "po_1", "object": "payout", "amount": total, "currency": code, "status": "paid"}
    payout |= {"arrival_date": 1_762_000_000, "automatic": True, "balance_transaction": "txn_own"}
    return payout, bts, per_minor


@given(payouts())
def test_payout_totals_always_tie_out(case: tuple[dict[str, Any], list[dict[str, Any]], int]) -> None:
    payout, bts, per_minor = case
    result = to_payout(payout, bts, account=None)
    assert len(result.items) == len(bts) - 1
    t = payout_totals(result)
    assert t.gross - t.refunds - t.fees - t.outflows + t.credits == t.net
    assert t.net == sum(i.amount.minor - i.fee.minor for i in result.items) == result.item_net.minor
    assert result.item_net == result.amount
    assert result.amount.minor * per_minor == payout["amount"]


@given(
    st.sampled_from(CURRENCIES),
    st.integers(min_value=-(10**12), max_value=10**12),
)
def test_payout_amounts_convert_exactly(currency: tuple[str, str, int, int], n: int) -> None:
    code, iso, step, per_minor = currency
    payout = {"id": "po_1", "object": "payout", "amount": n * step, "currency": code, "status": "in_transit"}
    payout |= {"arrival_date": 1_762_000_000, "automatic": False}
    result = to_payout(payout, [], account=None)
    assert result.amount.currency == iso
    assert result.amount.minor * per_minor == n * step
    assert result.amount.to_decimal() * 10 ** {"JPY": 0, "ISK": 2, "KWD": 3, "EUR": 2}[iso] == n * step


@given(st.integers(min_value=1, max_value=10**9).filter(lambda n: n % 100))
def test_fractional_isk_is_refused(n: int) -> None:
    bt = {"id": "txn_1", "amount": n, "fee": 0, "currency": "isk", "type": "charge", "source": "ch_1"}
    with pytest.raises(TranslationError, match="not a whole ISK minor unit"):
        to_payout_item(bt, currency="ISK")
