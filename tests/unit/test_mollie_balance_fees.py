"""Mollie balance transactions → the fee deducted per payment (processors/mollie/balance_fees.py), and a
settlement's costs shared out between those fees and the payout's own fee (translate_settlements)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import PayoutItem
from thred_bridge.domain.records import payout_record, payout_totals
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.balance_fees import context_value, payment_fee, payment_fees
from thred_bridge.processors.mollie.translate_settlements import CostLine, split_costs, to_payout

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mollie"


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def money(value: str) -> dict[str, str]:
    return {"currency": "EUR", "value": value}


def transaction(
    kind: str = "payment",
    initial: str = "10.00",
    deductions: str | None = "-0.29",
    result: str | None = "9.71",
    *,
    tx_id: str = "baltr_QM24QwzUWR4ev4Xfgyt29B",
    context: dict[str, Any] | None = None,
    resource: str = "balance_transaction",
) -> dict[str, Any]:
    """A balance transaction shaped as the Mollie docs' example of the list endpoint."""
    tx: dict[str, Any] = {
        "resource": resource,
        "id": tx_id,
        "type": kind,
        "initialAmount": money(initial),
        "createdAt": "2021-01-10T12:06:28+00:00",
        "context": context if context is not None else {"paymentId": "tr_7UhSN1zuXS"},
    }
    if deductions is not None:
        tx["deductions"] = money(deductions)
    if result is not None:
        tx["resultAmount"] = money(result)
    return tx


def test_the_docs_example_payment_deducts_29_cents() -> None:
    found = payment_fee(transaction())
    assert found is not None
    assert (found.transaction_id, found.payment_id, found.fee) == (
        "baltr_QM24QwzUWR4ev4Xfgyt29B",
        "tr_7UhSN1zuXS",
        eur(29),
    )


def test_a_refund_is_not_a_payment_fee() -> None:
    refund = transaction(
        "refund", "-10.00", "-0.25", "-10.25", context={"paymentId": "tr_7UhSN1zuXS", "refundId": "re_4qqhO89gsT"}
    )
    assert payment_fee(refund) is None
    assert payment_fees([refund, transaction()]) == {"tr_7UhSN1zuXS": eur(29)}


@pytest.mark.parametrize("resource", ["balance_transaction", "balance-transaction"])
def test_both_resource_spellings_and_a_nested_context(resource: str) -> None:
    nested = transaction(resource=resource, context={"type": "payment", "payment": {"paymentId": "tr_7UhSN1zuXS"}})
    assert context_value(nested, "paymentId") == "tr_7UhSN1zuXS"
    found = payment_fee(nested)
    assert found is not None
    assert found.fee == eur(29)


def test_captures_add_up_and_a_listed_twice_transaction_counts_once() -> None:
    first = transaction("capture", "6.00", "-0.20", "5.80", tx_id="baltr_capture00001")
    second = transaction("capture", "4.00", "-0.15", "3.85", tx_id="baltr_capture00002")
    assert payment_fees([first, second, first]) == {"tr_7UhSN1zuXS": eur(35)}


def test_no_deductions_is_no_fee_and_a_positive_one_gives_back() -> None:
    free = payment_fee(transaction(deductions=None, result="10.00"))
    assert free is not None
    assert free.fee == eur(0)
    back = payment_fee(transaction(deductions="0.05", result="10.05"))
    assert back is not None
    assert back.fee == eur(-5)


@pytest.mark.parametrize(
    ("tx", "reason"),
    [
        (transaction(result="9.70"), "resultAmount is not initialAmount"),
        (transaction(deductions="-0.2905", result="9.7095"), "would lose money"),
        (transaction(context={}), "names no payment"),
        (transaction(resource="payment"), "not a Mollie balance transaction"),
        (transaction(tx_id="tr_notatransaction"), "baltr_"),
        ({**transaction(), "createdAt": None}, "createdAt"),
    ],
)
def test_unreadable_transactions_are_refused(tx: dict[str, Any], reason: str) -> None:
    with pytest.raises(TranslationError, match=reason):
        payment_fee(tx)


# -------------------------------------------------------------------------------------------------- share-out


def line(gross: Decimal) -> CostLine:
    return CostLine("2024-05", "Costs", None, None, gross, None, None, "EUR")


four_decimals = st.decimals(min_value=Decimal("-500"), max_value=Decimal("5000"), places=4, allow_nan=False)
fees = st.lists(st.integers(min_value=-50, max_value=100_000), max_size=40)


@given(st.lists(four_decimals, max_size=40), fees)
def test_payment_fees_and_the_remainder_are_the_settlement_costs_exactly(costs: list[Decimal], paid: list[int]) -> None:
    split = split_costs([line(c) for c in costs], [eur(f) for f in paid], "EUR")
    reported = sum(costs, Decimal(0))
    assert split.total.minor == int((reported * 100).to_integral_value(rounding=ROUND_HALF_EVEN))
    assert split.per_payment.minor == sum(paid)
    assert split.per_payment.minor + split.remainder.minor == split.total.minor


def tied() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    def load(name: str) -> Any:
        return json.loads((FIXTURES / name).read_text(encoding="utf-8"))

    return (
        load("settlement_tied.json"),
        load("settlement_tied_payments.json")["_embedded"]["payments"],
        load("settlement_tied_refunds.json")["_embedded"]["refunds"],
        load("settlement_tied_chargebacks.json")["_embedded"]["chargebacks"],
    )


def test_with_balance_fees_each_charge_carries_its_fee_and_the_payout_the_rest() -> None:
    # Deductions as Mollie makes them, each rounded to the cent: 2.4805 → 2.48, 0.3509 → 0.35, 0.3025 → 0.30.
    deducted = {"tr_Ab3Cd4Ef5G": eur(248), "tr_Hj6Kl7Mn8P": eur(35), "tr_Qr9St2Uv3W": eur(30)}
    payout = to_payout(*tied(), fees=deducted)
    charges = [i for i in payout.items if i.kind == "charge"]
    assert [(i.object_id, i.fee) for i in charges] == list(deducted.items())
    (rest,) = [i for i in payout.items if i.kind == "fee"]
    # 13.4364 of costs, rounded once: 13.44; 3.13 deducted from the payments; 10.31 left (the refund's 0.3025,
    # the chargeback's 10.00 and the cent the per-payment rounding lost).
    assert rest == PayoutItem(
        "fee",
        "stl_R7kM2pQx9A:costs:remainder",
        eur(-1031),
        eur(0),
        "Mollie costs not deducted per payment: 13.44 EUR of costs in the settlement less 3.13 EUR deducted from its "
        "payments (refund and chargeback costs, and the rounding of each deduction to the cent)",
    )
    assert payout.item_net == payout.amount
    assert {
        k: payout.metadata[k] for k in ("fee_source", "costs_cents", "payment_fees_cents", "costs_remainder_cents")
    } == {
        "fee_source": "balance transactions",
        "costs_cents": "1344",
        "payment_fees_cents": "313",
        "costs_remainder_cents": "1031",
    }
    totals = payout_totals(payout)
    assert totals.fees == 1344
    body = payout_record(payout).body
    assert body["fee_cents"] == 1344
    assert body["paid_out_amount_cents"] == totals.gross - totals.refunds - body["fee_cents"]  # variance 0
    assert "memo" not in body


def test_a_payment_without_a_known_fee_leaves_its_cost_in_the_remainder() -> None:
    payout = to_payout(*tied(), fees={"tr_Ab3Cd4Ef5G": eur(248)})
    assert [i.fee.minor for i in payout.items if i.kind == "charge"] == [248, 0, 0]
    (rest,) = [i for i in payout.items if i.kind == "fee"]
    assert rest.amount == eur(-(1344 - 248))
    assert payout.item_net == payout.amount


def test_deductions_above_the_costs_give_a_negative_remainder_that_lowers_the_fees() -> None:
    deducted = {"tr_Ab3Cd4Ef5G": eur(1000), "tr_Hj6Kl7Mn8P": eur(300), "tr_Qr9St2Uv3W": eur(100)}
    payout = to_payout(*tied(), fees=deducted)
    (rest,) = [i for i in payout.items if i.kind == "fee"]
    assert rest.amount == eur(56)  # 13.44 − 14.00: a credit that lowers the payout's fees
    assert payout_totals(payout).fees == 1344
    assert payout.item_net == payout.amount


def test_fees_covering_the_costs_exactly_need_no_remainder_item() -> None:
    deducted = {"tr_Ab3Cd4Ef5G": eur(1000), "tr_Hj6Kl7Mn8P": eur(244), "tr_Qr9St2Uv3W": eur(100)}
    payout = to_payout(*tied(), fees=deducted)
    assert [i.kind for i in payout.items if i.kind == "fee"] == []
    assert payout.metadata["costs_remainder_cents"] == "0"


def test_a_fee_in_another_currency_is_refused() -> None:
    with pytest.raises(TranslationError, match="payment fee in USD"):
        to_payout(*tied(), fees={"tr_Ab3Cd4Ef5G": Money(248, "USD")})


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=3, max_size=3))
def test_any_per_payment_fees_tie_the_payout_out(paid: list[int]) -> None:
    settlement, payments, refunds, chargebacks = tied()
    deducted = {p["id"]: eur(f) for p, f in zip(payments, paid, strict=True)}
    payout = to_payout(settlement, payments, refunds, chargebacks, fees=deducted)
    charge_fees = sum(i.fee.minor for i in payout.items if i.kind == "charge")
    own_fee = sum(-i.amount.minor for i in payout.items if i.kind == "fee")
    assert charge_fees + own_fee == 1344
    assert payout.item_net == payout.amount
