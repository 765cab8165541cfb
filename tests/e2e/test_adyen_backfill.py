"""Adyen history: `thred-bridge backfill ID --batches FIRST-LAST` (a real process) stores the REPORT_AVAILABLE
item Adyen would have sent for each past batch; the worker downloads each report and books one payout per
batch that ties out. A batch already announced live is not stored twice, and running the backfill again
stores nothing new: the same records as live, once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.simulators.adyen_reports import SettlementReport

pytestmark = pytest.mark.anyio


def _report(batch: int) -> SettlementReport:
    report = SettlementReport(batch=batch)
    for n in range(12):
        report.settled(f"{batch:03d}150000{n:07d}", 1000 + 111 * n + batch, 25 + n)
    report.refunded(f"{batch:03d}1500000000000", f"{batch:03d}350000{0:07d}", 400, fee=1)
    report.fee(90 + batch, f"Transaction Fees batch {batch}")
    return report


async def _backfill(h: testing.AdyenHarness, *args: str) -> tuple[int, dict[str, Any], str]:
    settings = h.bridge.settings
    assert settings.secret_key is not None
    env = {
        **os.environ,
        "BRIDGE_DATABASE_URL": settings.database_url,
        "BRIDGE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "BRIDGE_ADYEN_REPORT_HOSTS": h.reports.host,
        "BRIDGE_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "thred_bridge", "backfill", h.connection.id, *args, "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if proc.returncode == 0 else {}, err.decode()


async def test_past_batches_are_booked_once_from_their_reports(database_url: str) -> None:
    reports = {batch: _report(batch) for batch in (5, 6, 7)}
    async with testing.adyen_bridge(database_url) as h:
        for batch, report in reports.items():
            h.reports.put(
                f"settlement_detail_report_batch_{batch}.csv", report.csv(), merchant_account=h.merchant_account
            )
        # batch 6 was announced live before the backfill ran
        await h.report_available("settlement_detail_report_batch_6.csv", reports[6].csv())
        code, first, err = await _backfill(h, "--batches", "5-7", "--report-base", h.reports.url)
        assert code == 0, err
        code, again, err = await _backfill(h, "--batches", "5-7", "--report-base", h.reports.url)
        assert code == 0, err
        status = await h.drain(timeout=90)
        books = await h.books()
        downloads = sorted(path for path, answer in h.reports.files.requests if answer == 200)
    assert (first["seen"], first["stored"]) == (3, 2)
    assert (again["seen"], again["stored"]) == (3, 0)
    assert (status.received, status.failed, status.records_failed) == (3, 0, 0)
    assert downloads == sorted(
        f"/reports/download/MerchantAccount/TestMerchant/settlement_detail_report_batch_{b}.csv" for b in (5, 6, 7)
    )
    payouts = {p["external_id"]: p for p in books["payouts"]}
    assert sorted(payouts) == [f"adyen_TestMerchant_batch_{b}" for b in (5, 6, 7)]
    for batch, report in reports.items():
        payout = payouts[f"adyen_TestMerchant_batch_{batch}"]
        assert payout["paid_out_amount_cents"] == report.net_total
        assert payout["amount_variance_cents"] == 0
        assert len(payout["payment_ids"]) == 12
    assert len(books["payments"]) == 36


async def test_a_backfill_refuses_what_it_cannot_do(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, worker=False) as h:
        code, _out, err = await _backfill(h, "--batches", "7-5")
        assert code == 2
        assert "FIRST must not exceed LAST" in err
        code, _out, err = await _backfill(h, "--batches", "1-3", "--report-base", "https://reports.example.net")
        assert code == 2
        assert "reports.example.net is not in BRIDGE_ADYEN_REPORT_HOSTS" in err
        code, _out, err = await _backfill(h, "--since", "2026-01-01")
        assert code == 2
        assert "--batches" in err  # Adyen lists no history by date
        status = await h.status()
    assert status.received == 0
