"""An Adyen payment processed in EUR and settled in GBP is booked once, in GBP, at the report's converted
amount, whichever of its webhooks and its settlement report comes first (decision 0008): the payout is one
currency and its variance is 0; the webhook's reading waits (held) and leaves nothing behind."""

from __future__ import annotations

from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.simulators.adyen_reports import SettlementReport, converted

pytestmark = pytest.mark.anyio

BATCH = 12
FILE = f"settlement_detail_report_batch_{BATCH}.csv"
RATE = "0.8512"
EUR_PAYMENT, GBP_PAYMENT, REFUND, CHARGEBACK_PAYMENT, DISPUTE = (
    "8815000000000101", "8815000000000102", "8835000000000101", "8815000000000103", "8845000000000103",
)  # fmt: skip
SHOPPER = {"shopperReference": "cust-42", "shopperEmail": "ada@example.org", "shopperName": "Ada Lovelace"}


def _report() -> SettlementReport:
    report = SettlementReport(batch=BATCH, currency="GBP")
    report.settled(EUR_PAYMENT, None, 120, reference="order-eur", processed=("EUR", 10_000, RATE))
    report.settled(GBP_PAYMENT, 5_000, 60, reference="order-gbp")
    report.refunded(EUR_PAYMENT, REFUND, None, processed=("EUR", 2_000, RATE))
    report.settled(CHARGEBACK_PAYMENT, None, 40, processed=("EUR", 3_000, RATE))
    report.chargeback(CHARGEBACK_PAYMENT, DISPUTE, None, 1_500, processed=("EUR", 3_000, RATE))
    report.fee(99)
    return report


def _webhooks(h: testing.AdyenHarness) -> list[dict[str, Any]]:
    return [
        h.item("CAPTURE", EUR_PAYMENT + "C", value=10_000, currency="EUR", original_reference=EUR_PAYMENT,
               additional_data=SHOPPER),
        h.item("CAPTURE", GBP_PAYMENT + "C", value=5_000, currency="GBP", original_reference=GBP_PAYMENT),
        h.item("REFUND", REFUND, value=2_000, currency="EUR", original_reference=EUR_PAYMENT),
        h.item("CAPTURE", CHARGEBACK_PAYMENT + "C", value=3_000, currency="EUR", original_reference=CHARGEBACK_PAYMENT),
        h.item("CHARGEBACK", DISPUTE, value=3_000, currency="EUR", original_reference=CHARGEBACK_PAYMENT),
    ]  # fmt: skip


def _gbp(minor: int) -> int:
    return converted(("EUR", minor, RATE), "GBP")


def _check_books(books: dict[str, Any], report: SettlementReport) -> None:
    payments = {p["external_id"]: p for p in books["payments"]}
    assert {k: (p["currency"], p["total_amount_cents"]) for k, p in payments.items()} == {
        f"adyen_{EUR_PAYMENT}": ("GBP", _gbp(10_000)),
        f"adyen_{GBP_PAYMENT}": ("GBP", 5_000),
        f"adyen_{CHARGEBACK_PAYMENT}": ("GBP", _gbp(3_000)),
    }
    fx = payments[f"adyen_{EUR_PAYMENT}"]["metadata"]
    assert (fx["presentment_currency"], fx["presentment_amount"], fx["exchange_rate"]) == ("EUR", "100.00", RATE)
    assert {i["currency"] for i in books["invoices"]} == {"GBP"}
    assert len(books["invoices"]) == 3
    refunds = {r["external_id"]: r["refunded_amount"] for r in books["refunds"]}
    assert sorted(refunds) == [f"adyen_{REFUND}", f"adyen_{DISPUTE}"]
    assert sorted(r["amount_cents"] for r in books["refund_payments"]) == sorted([_gbp(2_000), _gbp(3_000)])
    (payout,) = books["payouts"]
    assert payout["currency"] == "GBP"
    assert payout["paid_out_amount_cents"] == report.net_total
    assert payout["amount_variance_cents"] == 0
    assert len(payout["payment_ids"]) == 3
    assert len(payout["refund_payment_ids"]) == 2


async def test_webhooks_first_are_held_and_the_report_books_them_in_the_settlement_currency(
    database_url: str,
) -> None:
    report = _report()
    async with testing.adyen_bridge(database_url, settlement_currency="GBP") as h:
        assert (await h.deliver(*_webhooks(h))).content == b"[accepted]"
        before = await h.drain()
        early = await h.books()
        await h.report_available(FILE, report.csv("new"))
        after = await h.drain(timeout=60)
        books = await h.books()
    # Before the report: the GBP payment is booked; the EUR ones wait (two invoices and payments, the refund
    # and its refund payment, the chargeback's refund and refund payment); their customers are booked.
    assert [p["external_id"] for p in early["payments"]] == [f"adyen_{GBP_PAYMENT}"]
    assert not early.get("refunds")
    assert (before.failed, before.waiting, before.records_held) == (0, 0, 8)
    assert "shopper_cust-42" in {c["external_id"].removeprefix("adyen_") for c in early["customers"]}
    assert (after.failed, after.waiting, after.records_held, after.records_failed) == (0, 0, 0, 0)
    _check_books(books, report)
    customers = {c["id"]: c["external_id"] for c in books["customers"]}
    (eur,) = [p for p in books["payments"] if p["external_id"] == f"adyen_{EUR_PAYMENT}"]
    assert customers[eur["customer_id"]].endswith("shopper_cust-42")  # the webhook knew the shopper


async def test_a_report_first_books_them_and_the_late_webhooks_change_nothing(database_url: str) -> None:
    report = _report()
    async with testing.adyen_bridge(database_url, settlement_currency="GBP") as h:
        await h.report_available(FILE, report.csv("legacy"))
        await h.drain(timeout=60)
        first = await h.books()
        assert (await h.deliver(*_webhooks(h))).content == b"[accepted]"
        status = await h.drain()
        books = await h.books()
    _check_books(books, report)
    assert (status.failed, status.waiting, status.records_failed) == (0, 0, 0)
    assert status.records_held == 0  # a held reading of a record already there is not kept
    for kind in ("invoices", "payments", "refunds", "refund_payments", "payouts"):
        assert len(books[kind]) == len(first[kind]), kind


async def test_without_a_settlement_currency_the_payout_fails_with_threds_reason(database_url: str) -> None:
    """Booked at once in EUR, a payment cannot be listed on a GBP payout, and Thred cannot change a completed
    payment's currency: the report's event fails, saying so, rather than book the payout short."""
    report = _report()
    async with testing.adyen_bridge(database_url) as h:
        await h.deliver(*_webhooks(h)[:1])
        await h.drain()
        await h.report_available(FILE, report.csv())
        status = await h.drain(timeout=60)
        books = await h.books()
    assert status.failed == 1
    ((_event, event_type, error),) = status.failures
    assert event_type == "REPORT_AVAILABLE"
    assert "EUR" in error
    assert "GBP" in error
    assert not books.get("payouts")
