"""Refunds, disputes and payouts as Thred records; a payout's arithmetic always ties out."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import (
    Charge,
    DisputeCredit,
    DisputeDebit,
    Party,
    Payout,
    PayoutItem,
    Refund,
)
from thred_bridge.domain.records import Ref, fill, payout_record, payout_totals, records_for

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def charge(cid: str = "ch_1", amount: int = 10_000, fee: int = 170) -> Charge:
    return Charge("stripe", cid, eur(amount), eur(fee), AT, Party("cus_9", name="Ada"), "Order", "card")


def test_refund_books_a_refund_and_refund_payment_on_the_charge_invoice() -> None:
    refund = Refund("stripe", "re_1", "ch_1", eur(2_500), eur(0), AT, "succeeded", reason="requested_by_customer")
    records = records_for([refund, charge()])
    kinds = [(r.kind, r.external_id) for r in records]
    assert kinds == [
        ("customer", "stripe_cus_9"),
        ("invoice", "stripe_ch_1"),
        ("payment", "stripe_ch_1"),
        ("refund", "stripe_re_1"),
        ("refund_payment", "stripe_re_1"),
    ]
    refund_rec, payment_rec = records[3], records[4]
    # the refund also waits for the charge's payment (ordering only: "~" paths never reach the body)
    assert refund_rec.parents == {
        "invoice_id": Ref("invoice", "stripe_ch_1"),
        "~payment": Ref("payment", "stripe_ch_1"),
    }
    assert refund_rec.body["amount_cents"] == 2_500
    assert refund_rec.body["method"] == "STRIPE"
    assert payment_rec.parent_path == Ref("refund", "stripe_re_1")
    assert payment_rec.body["amount_cents"] == 2_500


def test_failed_refund_deletes_its_refund_payment() -> None:
    (void,) = records_for([Refund("stripe", "re_1", "ch_1", eur(2_500), eur(0), AT, "failed")])
    assert void.op == "delete"
    assert void.kind == "refund_payment"
    assert void.external_id == "stripe_re_1_void"
    assert void.parents == {"id": Ref("refund_payment", "stripe_re_1")}


def test_dispute_lost_and_won() -> None:
    debit = DisputeDebit("stripe", "dp_1", "ch_1", eur(10_000), eur(1_500), AT, reason="fraudulent")
    credit = DisputeCredit("stripe", "dp_1", "ch_1", eur(10_000), eur(1_500), AT)
    records = {(r.kind, r.external_id): r for r in records_for([debit, credit, charge()])}
    assert records[("refund_payment", "stripe_dp_1")].body["refund_processing_fee_cents"] == 1_500
    reinstated = records[("payment", "stripe_dp_1_reinstated")]
    assert reinstated.parents["customer_id"] == Ref("customer", "stripe_cus_9")
    assert reinstated.body["total_amount_cents"] == 10_000


def test_payout_lists_what_it_settles_and_ties_out() -> None:
    payout = Payout(
        "stripe", "po_1", eur(10_000 - 170 - 2_500 - 1_000 - 1_500 - 200), "paid", AT,
        (
            PayoutItem("charge", "ch_1", eur(10_000), eur(170)),
            PayoutItem("refund", "re_1", eur(-2_500), eur(0)),
            PayoutItem("dispute_debit", "dp_2", eur(-1_000), eur(1_500)),
            PayoutItem("fee", "txn_fee", eur(-200), eur(0), "Radar"),
        ),
    )  # fmt: skip
    record = payout_record(payout)
    assert record.updatable
    assert record.parents == {
        "payment_ids.0": Ref("payment", "stripe_ch_1"),
        "refund_payment_ids.0": Ref("refund_payment", "stripe_re_1"),
        "refund_payment_ids.1": Ref("refund_payment", "stripe_dp_2"),
    }
    body = fill(record.body, {"payment_ids.0": "p1", "refund_payment_ids.0": "r1", "refund_payment_ids.1": "r2"})
    assert body["payment_ids"] == ["p1"]
    assert body["refund_payment_ids"] == ["r1", "r2"]
    assert body["fee_cents"] == 170 + 1_500 + 200
    gross, refunds = 10_000, 2_500 + 1_000
    assert (
        body["paid_out_amount_cents"] == gross - refunds - body["fee_cents"] - body["additional_refunds_amount_cents"]
    )
    assert "memo" not in body


ITEM = st.tuples(
    st.sampled_from(["charge", "refund", "dispute_debit", "dispute_credit", "fee", "adjustment"]),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=-5_000, max_value=50_000),
    st.booleans(),
)


@given(st.lists(ITEM, max_size=30))
def test_payout_fields_always_explain_the_amount(raw: list[tuple[str, int, int, bool]]) -> None:
    items = []
    for n, (kind, size, fee, positive) in enumerate(raw):
        sign = {"charge": 1, "dispute_credit": 1, "refund": -1, "dispute_debit": -1, "fee": -1}.get(
            kind, 1 if positive else -1
        )
        items.append(PayoutItem(kind, f"obj_{n}", eur(sign * size), eur(fee if kind != "fee" else 0)))  # type: ignore[arg-type]
    draft = Payout("stripe", "po_x", eur(0), "paid", AT, tuple(items))
    payout = Payout("stripe", "po_x", draft.item_net, "paid", AT, tuple(items))
    body = payout_record(payout).body
    totals = payout_totals(payout)
    assert totals.net == payout.amount.minor
    assert body["fee_cents"] >= 0
    assert body["additional_refunds_amount_cents"] >= 0
    expected_net = totals.gross - totals.refunds - body["fee_cents"] - body["additional_refunds_amount_cents"]
    variance = body["paid_out_amount_cents"] - expected_net
    assert variance >= 0  # only credits Thred has no field for can remain, and they are named in the memo
    assert (variance > 0) == ("have no Thred field" in body.get("memo", ""))


def test_failed_payout_settles_nothing_and_keeps_no_items() -> None:
    items = (PayoutItem("charge", "ch_1", eur(10_000), eur(170)),)
    failed = payout_record(Payout("stripe", "po_9", eur(9_830), "failed", AT, items))
    assert failed.updatable
    assert failed.parents == {}
    body = failed.body
    assert (body["paid_out_amount_cents"], body["fee_cents"], body["payment_ids"]) == (0, 0, [])
    assert body["status"] == "failed"
    assert body["metadata"]["amount_cents"] == "9830"
    assert "returned to the stripe balance" in body["memo"]
