"""A Mollie settlement and what it settled → Payout (processors/mollie/translate_settlements.py).

Fixtures: ``settlement_get_openapi`` and the ``settlement_*_list_openapi`` lists are Mollie's API spec examples
(the lists do not belong to that settlement's totals), ``sdk_python_tests_settlement_single`` is
mollie-api-python's; ``settlement_tied*`` is ours: 3 payments, a refund, a chargeback and costs over two
months, which tie out to the cent.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import PayoutItem
from thred_bridge.domain.records import payout_record, payout_totals
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.translate_settlements import CostLine, cost_lines, to_payout

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mollie"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def listed(name: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = load(name)["_embedded"][key]
    return items


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def tied() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        load("settlement_tied.json"),
        listed("settlement_tied_payments.json", "payments"),
        listed("settlement_tied_refunds.json", "refunds"),
        listed("settlement_tied_chargebacks.json", "chargebacks"),
    )


def test_our_settlement_ties_out_to_the_cent() -> None:
    payout = to_payout(*tied(), account="pfl_QkEhN94Ba")
    assert payout.processor == "mollie"
    assert payout.object_id == "stl_R7kM2pQx9A"
    assert payout.amount == eur(8655)
    assert payout.status == "paid"
    assert payout.arrives_at == datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
    assert payout.reference == "1234567.2405.01"
    assert payout.account == "pfl_QkEhN94Ba"
    assert payout.itemised
    zero = eur(0)
    assert payout.items == (
        PayoutItem("charge", "tr_Ab3Cd4Ef5G", eur(10000), zero, "Order #20301"),
        PayoutItem("charge", "tr_Hj6Kl7Mn8P", eur(1999), zero, "Order #20322"),
        PayoutItem("charge", "tr_Qr9St2Uv3W", eur(4550), zero, "Subscription May"),
        PayoutItem("refund", "re_Xy4Za5Bc6D", eur(-2000), zero, "Partial refund #20301"),
        PayoutItem("dispute_debit", "chb_Ef7Gh8Jk9L", eur(-4550), zero, "MD06: Refund request by end customer"),
        PayoutItem(
            "fee",
            "stl_R7kM2pQx9A:costs:2024-04:1",
            eur(-248),
            zero,
            "Mollie costs 2024-04: Credit card ×1 (gross 2.4805, net 2.0500, VAT 0.4305 EUR)",
        ),
        PayoutItem(
            "fee",
            "stl_R7kM2pQx9A:costs:2024-04:2",
            eur(-31),  # 0.3025 and the SEPA line's 0.3025 have the largest remainder; the earlier takes the cent
            zero,
            "Mollie costs 2024-04: Refunds Credit card ×1 (gross 0.3025, net 0.2500, VAT 0.0525 EUR)",
        ),
        PayoutItem(
            "fee",
            "stl_R7kM2pQx9A:costs:2024-05:3",
            eur(-35),
            zero,
            "Mollie costs 2024-05: iDEAL ×1 (gross 0.3509, net 0.2900, VAT 0.0609 EUR)",
        ),
        PayoutItem(
            "fee",
            "stl_R7kM2pQx9A:costs:2024-05:4",
            eur(-30),
            zero,
            "Mollie costs 2024-05: SEPA Direct Debit ×1 (gross 0.3025, net 0.2500, VAT 0.0525 EUR)",
        ),
        PayoutItem(
            "fee",
            "stl_R7kM2pQx9A:costs:2024-05:5",
            eur(-1000),
            zero,
            "Mollie costs 2024-05: Chargebacks SEPA Direct Debit ×1 (gross 10.0000, net 10.0000 EUR)",
        ),
    )
    # 165.49 - 20.00 - 45.50 - 13.44 (13.4364 rounded once) = 86.55, what reached the bank.
    assert payout.item_net == payout.amount
    assert dict(payout.metadata) == {
        "mollie_settlement_id": "stl_R7kM2pQx9A",
        "mollie_status": "paidout",
        "mollie_invoice_id": "inv_Hz8qWm3Ka2",
        "mollie_balance_id": "bal_3kUf4yU2nT",
        "costs_gross_exact": "13.4364",
    }


def test_our_settlement_as_a_thred_payout() -> None:
    payout = to_payout(*tied())
    totals = payout_totals(payout)
    assert (totals.gross, totals.refunds, totals.fees, totals.outflows, totals.credits) == (16549, 6550, 1344, 0, 0)
    assert totals.net == 8655
    record = payout_record(payout)
    assert record.external_id == "mollie_stl_R7kM2pQx9A"
    assert record.body["paid_out_amount_cents"] == 8655
    assert record.body["fee_cents"] == 1344
    assert record.body["reference_number"] == "1234567.2405.01"
    assert "memo" not in record.body  # it adds up
    assert [ref.external_id for ref in totals.payments] == [
        "mollie_tr_Ab3Cd4Ef5G",
        "mollie_tr_Hj6Kl7Mn8P",
        "mollie_tr_Qr9St2Uv3W",
    ]
    assert [ref.external_id for ref in totals.refund_payments] == ["mollie_re_Xy4Za5Bc6D", "mollie_chb_Ef7Gh8Jk9L"]


def test_spec_settlement_costs_round_once() -> None:
    # 86.10 - 43.20 - (2.5410 + 0.6050) = 39.75: the costs are 3.15, not 2.54 + 0.60.
    settlement = load("settlement_get_openapi.json")
    payout = to_payout(settlement, [], [], [])
    assert [(i.kind, i.object_id, i.amount) for i in payout.items] == [
        ("fee", "stl_jDk30akdN:costs:2024-04:1", eur(-254)),
        ("fee", "stl_jDk30akdN:costs:2024-04:2", eur(-61)),
    ]
    assert eur(8610) - eur(4320) + payout.item_net == payout.amount == eur(3975)
    assert payout.reference == "1234567.2404.03"
    assert payout.arrives_at == datetime(2024, 4, 6, 9, 41, 44, tzinfo=UTC)
    assert payout.metadata["costs_gross_exact"] == "3.1460"


def test_spec_settlement_with_the_spec_lists() -> None:
    payout = to_payout(
        load("settlement_get_openapi.json"),
        listed("settlement_payments_list_openapi.json", "payments"),
        listed("settlement_refunds_list_openapi.json", "refunds"),
        listed("settlement_chargebacks_list_openapi.json", "chargebacks"),
    )
    assert [(i.kind, i.object_id, i.amount) for i in payout.items[:3]] == [
        ("charge", "tr_5B8cwPMGnU6qLbRvo7qEZo", eur(7500)),  # no settlementAmount: its own EUR amount
        ("refund", "re_4qqhO89gsT", eur(-595)),  # likewise
        ("dispute_debit", "chb_xFzwUN4ci8HAmSGUACS4J", eur(-3507)),  # USD 43.38 settled as EUR -35.07
    ]
    assert payout.item_net == eur(7500 - 595 - 3507 - 315)
    # The spec's lists are not that settlement's: the record says the items do not add up.
    assert payout_record(payout).body["memo"] == "the items do not add up to the amount paid out"


def test_sdk_settlement_with_a_single_digit_month_and_a_positive_refund_line() -> None:
    payout = to_payout(load("sdk_python_tests_settlement_single.json"), [], [], [])
    assert payout.status == "pending"  # "open"
    assert [(i.object_id, i.amount) for i in payout.items] == [
        ("stl_jDk30akdN:costs:2018-04:1", eur(-254)),
        ("stl_jDk30akdN:costs:2018-04:2", eur(-61)),
    ]
    assert payout.arrives_at == datetime(2018, 4, 6, 9, 41, 44, tzinfo=UTC)


def test_listed_settlement_has_no_periods() -> None:
    (settlement,) = listed("settlements_list_openapi.json", "settlements")
    payout = to_payout(settlement, [], [], [])
    assert payout.items == ()
    assert payout.amount == eur(3975)
    assert payout.arrives_at == datetime(2024, 4, 6, 9, 41, 44, tzinfo=UTC)
    del settlement["settledAt"]  # then createdAt, which is 2024-04-31 in Mollie's example
    with pytest.raises(TranslationError, match="not an ISO 8601 timestamp"):
        to_payout(settlement, [], [], [])


def test_cost_lines_are_exact() -> None:
    lines = cost_lines(load("settlement_get_openapi.json"))
    assert lines == [
        CostLine("2024-04", "iDEAL", "ideal", 6, Decimal("2.5410"), Decimal("2.1000"), Decimal("0.4410"), "EUR"),
        CostLine(
            "2024-04", "Refunds iDEAL", "refund", 2, Decimal("0.6050"), Decimal("0.5000"), Decimal("0.1050"), "EUR"
        ),
    ]


def test_a_cost_line_without_gross_is_net_plus_vat() -> None:
    settlement = load("settlement_get_openapi.json")
    cost = settlement["periods"]["2024"]["04"]["costs"][0]
    cost["amountGross"] = None
    assert cost_lines(settlement)[0].gross == Decimal("2.5410")


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("open", "pending"),
        ("pending", "pending"),
        ("processing-at-bank", "in_transit"),
        ("paidout", "paid"),
        ("failed", "failed"),
    ],
)
def test_statuses(status: str, ours: str) -> None:
    settlement = load("settlement_get_openapi.json")
    settlement["status"] = status
    assert to_payout(settlement, [], [], []).status == ours


def test_a_failed_refund_in_a_settlement_is_an_adjustment() -> None:
    settlement, payments, refunds, chargebacks = tied()
    refunds[0]["status"] = "failed"
    payout = to_payout(settlement, payments, refunds, chargebacks)
    assert payout.items[3] == PayoutItem("adjustment", "re_Xy4Za5Bc6D", eur(-2000), eur(0), "Partial refund #20301")


def test_a_positive_refund_settlement_amount_still_takes_money_out() -> None:
    settlement, payments, refunds, chargebacks = tied()
    refunds[0]["settlementAmount"] = {"currency": "EUR", "value": "20.00"}  # the SDK fixture's sign
    assert to_payout(settlement, payments, refunds, chargebacks).item_net == eur(8655)


def mutated(change: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    settlement, payments, refunds, chargebacks = copy.deepcopy(tied())
    if change == "twice":
        payments.append(payments[0])
    elif change == "elsewhere":
        refunds[0]["settlementId"] = "stl_jDk30akdN"
    elif change == "currency":
        payments[1]["settlementAmount"] = {"currency": "GBP", "value": "17.10"}
    elif change == "negative":
        payments[1]["settlementAmount"] = {"currency": "EUR", "value": "-19.99"}
    elif change == "cost currency":
        settlement["periods"]["2024"]["05"]["costs"][0]["amountGross"]["currency"] = "GBP"
    elif change == "cost decimals":
        settlement["periods"]["2024"]["05"]["costs"][0]["amountGross"]["value"] = "0.35091"
    elif change == "status":
        settlement["status"] = "paid"
    elif change == "month":
        settlement["periods"]["2024"]["13"] = {"costs": []}
    elif change == "periods":
        settlement["periods"] = ["2024"]
    elif change == "id":
        settlement["id"] = "1234567.2405.01"
    elif change == "payment id":
        payments[0]["id"] = "re_Xy4Za5Bc6D"
    return settlement, payments, refunds, chargebacks


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("twice", "lists tr_Ab3Cd4Ef5G twice"),
        ("elsewhere", "was settled in stl_jDk30akdN, not in stl_R7kM2pQx9A"),
        ("currency", "settled in GBP"),
        ("negative", "settled as a negative amount"),
        ("cost currency", "mixes currencies"),
        ("cost decimals", "0.35091 EUR has more than 4 decimals"),
        ("status", "unknown status 'paid'"),
        ("month", r"periods\['2024'\]\['13'\] is not a month"),
        ("periods", "periods is not an object"),
        ("id", "not a Mollie stl_ id"),
        ("payment id", "not a Mollie tr_ id"),
    ],
)
def test_unreadable_settlements(change: str, reason: str) -> None:
    with pytest.raises(TranslationError, match=reason):
        to_payout(*mutated(change))
