"""REPORT_AVAILABLE → the settlement details report downloaded from a local report host (Basic auth) → one
Thred payout per batch that ties out, with the payments the webhooks never delivered booked from the report;
and a report URL the allowlist does not name is never fetched."""

from __future__ import annotations

import pytest

from thred_bridge import testing
from thred_bridge.simulators.adyen_reports import SettlementReport

pytestmark = pytest.mark.anyio

BATCH = 7
FILE = f"settlement_detail_report_batch_{BATCH}.csv"


def _psp(n: int) -> str:
    return f"88150000{n:08d}"


def _report() -> tuple[SettlementReport, dict[str, int]]:
    """250 payments, 30 refunds, 10 chargebacks, 9 fee rows (+ the payout row: 300 rows)."""
    report = SettlementReport(batch=BATCH)
    gross = {_psp(n): 1000 + 37 * n for n in range(250)}
    for n, (psp, amount) in enumerate(gross.items()):
        report.settled(psp, amount, 20 + n % 7, reference=f"order-{n}", method="mc" if n % 3 else "visa")
    for n in range(30):
        report.refunded(_psp(n), f"88350000{n:08d}", 500, fee=n % 2)
    for n in range(30, 40):
        report.chargeback(_psp(n), f"88450000{n:08d}", gross[_psp(n)], fee=750)
    for n in range(9):
        report.fee(125 + n, f"Transaction Fees day {n + 1}")
    return report, gross


@pytest.mark.parametrize("layout", ["legacy", "new"])
async def test_a_300_row_report_books_one_payout_with_variance_0(database_url: str, layout: str) -> None:
    report, gross = _report()
    content = report.csv(layout)
    assert content.count(b"\r\n") == 301  # header + 300 rows
    async with testing.adyen_bridge(database_url) as h:
        # Some of the batch arrived as webhooks first: 20 captures and 5 refunds.
        seen = [
            h.item("CAPTURE", f"88250000{n:08d}", value=gross[_psp(n)], original_reference=_psp(n)) for n in range(20)
        ]
        seen += [h.item("REFUND", f"88350000{n:08d}", value=500, original_reference=_psp(n)) for n in range(5)]
        assert (await h.deliver(*seen)).content == b"[accepted]"
        answer = await h.report_available(FILE, content)
        assert answer.content == b"[accepted]"
        assert (await h.report_available(FILE, content)).content == b"[accepted]"  # redelivered: one event
        status = await h.drain(timeout=90)
        books = await h.books()
        downloads = list(h.reports.files.requests)
    assert (status.received, status.failed, status.records_failed) == (26, 0, 0)
    assert downloads == [(f"/reports/download/MerchantAccount/TestMerchant/{FILE}", 200)]
    (payout,) = books["payouts"]
    assert payout["external_id"] == f"adyen_TestMerchant_batch_{BATCH}"
    assert payout["currency"] == "EUR"
    assert payout["paid_out_amount_cents"] == report.net_total
    assert payout["amount_variance_cents"] == 0
    payments = {p["id"]: p for p in books["payments"]}
    assert sorted(payments[i]["external_id"] for i in payout["payment_ids"]) == sorted(f"adyen_{p}" for p in gross)
    assert {p["external_id"]: p["total_amount_cents"] for p in books["payments"]} == {
        f"adyen_{p}": amount for p, amount in gross.items()
    }
    refund_payments = {r["id"]: r for r in books["refund_payments"]}
    listed = sorted(refund_payments[i]["external_id"] for i in payout["refund_payment_ids"])
    expected = [f"adyen_88350000{n:08d}" for n in range(30)] + [f"adyen_88450000{n:08d}" for n in range(30, 40)]
    assert listed == sorted(expected)
    fees = (
        sum(20 + n % 7 for n in range(250)) + sum(n % 2 for n in range(30)) + 750 * 10 + sum(125 + n for n in range(9))
    )
    assert payout["fee_cents"] == fees
    refunded = 30 * 500 + sum(gross[_psp(n)] for n in range(30, 40))
    assert report.net_total == sum(gross.values()) - refunded - fees


async def test_a_report_url_outside_the_allowlist_is_refused(database_url: str) -> None:
    report, _gross = _report()
    async with testing.adyen_bridge(database_url) as h:
        elsewhere = f"https://reports.example.net/reports/download/MerchantAccount/TestMerchant/{FILE}"
        answer = await h.report_available(FILE, report.csv(), url=elsewhere)
        assert answer.content == b"[accepted]"
        status = await h.drain()
        books = await h.books()
        downloads = list(h.reports.files.requests)
    assert status.failed == 1
    ((_event, event_type, error),) = status.failures
    assert event_type == "REPORT_AVAILABLE"
    assert "host reports.example.net is not in BRIDGE_ADYEN_REPORT_HOSTS" in error
    assert downloads == []
    assert not books.get("payouts")
    assert not books.get("payments")


async def test_download_failures_retry_when_transient_and_fail_with_the_reason_when_not(database_url: str) -> None:
    report, _gross = _report()
    async with testing.adyen_bridge(database_url, report_user=("report@Company.TestCompany", "wrong")) as h:
        await h.report_available(FILE, report.csv())
        status = await h.drain()
    assert status.failed == 1
    assert "credentials were refused (401)" in status.failures[0][2]
    async with testing.adyen_bridge(database_url) as h:
        h.reports.files.fail_next(503, times=2)
        await h.report_available(FILE, report.csv())
        status = await h.drain(timeout=60)
        books = await h.books()
        codes = [code for _path, code in h.reports.files.requests]
    assert codes == [503, 503, 200]
    assert status.failed == 0
    (payout,) = books["payouts"]
    assert payout["amount_variance_cents"] == 0


async def test_a_report_before_its_webhooks_books_each_payment_once(database_url: str) -> None:
    report = SettlementReport(batch=3)
    report.settled(_psp(1), 2500, 40, reference="order-1")
    report.settled(_psp(2), 1800, 30)
    report.refunded(_psp(1), "8835000000000001", 1000)
    async with testing.adyen_bridge(database_url) as h:
        await h.report_available("settlement_detail_report_batch_3.csv", report.csv("new"))
        await h.drain()
        late = [
            h.item("CAPTURE", "8825000000000001", value=2500, original_reference=_psp(1)),
            h.item("REFUND", "8835000000000001", value=1000, original_reference=_psp(1)),
            h.item("AUTHORISATION", _psp(2), value=1800),
        ]
        assert (await h.deliver(*late)).content == b"[accepted]"
        other = h.item(
            "REPORT_AVAILABLE", "received_payments_report_2026_03_02.csv", value=0, reason="https://x.example/r"
        )
        assert (await h.deliver(other)).content == b"[accepted]"  # not a settlement report: stored, ignored
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.failed, status.ignored) == (5, 0, 1)
    payments = {p["external_id"]: (p["total_amount_cents"], p["processing_fee_cents"]) for p in books["payments"]}
    assert payments == {f"adyen_{_psp(1)}": (2500, 40), f"adyen_{_psp(2)}": (1800, 30)}
    assert [r["external_id"] for r in books["refunds"]] == ["adyen_8835000000000001"]
    (payout,) = books["payouts"]
    assert (payout["paid_out_amount_cents"], payout["amount_variance_cents"]) == (2500 - 40 + 1800 - 30 - 1000, 0)
