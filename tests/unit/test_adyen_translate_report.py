"""A settlement batch's rows → the movements that book it, the payout last (``translate_report``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Payout, Refund
from thred_bridge.domain.records import records_for
from thred_bridge.processors.adyen.batch import summarise_batch
from thred_bridge.processors.adyen.report import read_report
from thred_bridge.processors.adyen.translate_report import report_movements

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "adyen"
AT = datetime(2024, 3, 6, tzinfo=UTC)


def test_a_complete_batch_books_its_payments_refunds_disputes_and_payout() -> None:
    rows = list(read_report((FIXTURES / "settlement_detail_report_batch_complete.csv").read_bytes()))
    summary = summarise_batch(rows, merchant_account="TestMerchant")
    moved = report_movements(summary, {r.line: r for r in rows}, fallback_at=AT)
    charges = [(m.object_id, m.amount.minor, m.fee.minor) for m in moved if isinstance(m, Charge)]
    assert charges[:2] == [("8815000000000001", 10000, 290), ("8815000000000002", 5000, 100)]
    assert charges[2] == ("8815000000000003", 4000, 0)  # the reinstated payment's customer comes from it
    refunds = [(m.object_id, m.charge_id, m.amount.minor) for m in moved if isinstance(m, Refund)]
    assert refunds == [("8835000000000001", "8815000000000001", 2500)]
    debits = [(m.object_id, m.amount.minor, m.fee.minor) for m in moved if isinstance(m, DisputeDebit)]
    assert debits == [
        ("8845000000000003", 4000, 750),
        ("8845000000000003_second_chargeback", 4000, 0),
    ]
    credits = [(m.object_id, m.amount.minor) for m in moved if isinstance(m, DisputeCredit)]
    assert credits == [("8845000000000003", 4000)]
    payout = moved[-1]
    assert isinstance(payout, Payout)
    assert payout.object_id == "TestMerchant_batch_42"
    assert payout.amount.minor == 6735
    assert payout.item_net == payout.amount
    assert all(m.occurred_at.tzinfo is not None for m in moved if isinstance(m, Charge))
    records = records_for(moved)
    assert [r.external_id for r in records if r.kind == "payout"] == ["adyen_TestMerchant_batch_42"]
    assert {r.external_id for r in records if r.kind == "customer"} == {"adyen_walkin"}
