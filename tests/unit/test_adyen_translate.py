"""Verified Adyen items → movements, and a settlement batch → Payout (adyen/translate*.py).

The items are Adyen's OpenAPI examples (fixtures/adyen/openapi_webhook_*.json), parsed without the HMAC
check (that is test_adyen_notification's); where an example lacks a field a real delivery carries (a
dispute's originalReference), the test says so and adds it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.domain.ids import customer_external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Party, Refund
from thred_bridge.domain.payouts import payout_item_ref, payout_totals
from thred_bridge.domain.records import records_for
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.batch import summarise_batch
from thred_bridge.processors.adyen.notification import NotificationItem, parse_item
from thred_bridge.processors.adyen.report import read_report
from thred_bridge.processors.adyen.translate import to_charge, to_movements, to_party, to_refund
from thred_bridge.processors.adyen.translate_payouts import to_payout

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "adyen"
PAYMENT = "9913140798220028"
PSP = "QFQTPCQ8HXSKGK82"
EVENT_DATE = datetime(2021, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))


def _raw(code: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"openapi_webhook_{code}.json").read_text())
    item: dict[str, Any] = data["notificationItems"][0]["NotificationRequestItem"]
    return item


def _item(code: str, **change: Any) -> NotificationItem:
    return parse_item(_raw(code) | change, live=False)


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def test_capture_is_the_payments_charge() -> None:
    (charge,) = to_movements(_item("CAPTURE"))
    assert isinstance(charge, Charge)
    assert (charge.processor, charge.object_id) == ("adyen", PAYMENT)  # the payment, not the capture
    assert (charge.amount, charge.fee) == (eur(1000), eur(0))
    assert charge.occurred_at == EVENT_DATE
    assert charge.customer == Party("walkin")
    assert (charge.description, charge.reference, charge.method) == (
        "YOUR_MERCHANT_REFERENCE",
        "YOUR_MERCHANT_REFERENCE",
        "visa",
    )
    assert charge.thred_invoice_id is None
    assert dict(charge.metadata) == {
        "adyen_psp_reference": PAYMENT,
        "adyen_event_code": "CAPTURE",
        "adyen_live": "false",
        "adyen_modification_psp_reference": PSP,
        "merchant_reference": "YOUR_MERCHANT_REFERENCE",
        "fee_source": "settlement_report",
    }


def test_authorisation_books_only_an_immediately_captured_payment() -> None:
    item = _item("AUTHORISATION")
    assert to_movements(item) == []
    (charge,) = to_movements(item, immediate_capture=True, account="acct")
    assert isinstance(charge, Charge)
    assert (charge.object_id, charge.amount, charge.method, charge.account) == (PSP, eur(1000), "ach", "acct")
    assert charge.customer == Party("shopper_YOUR_SHOPPER_REFERENCE")  # tokenization.shopperReference
    assert "adyen_modification_psp_reference" not in charge.metadata
    zero = _item("AUTHORISATION", amount={"currency": "EUR", "value": 0})
    assert to_movements(zero, immediate_capture=True) == []  # a card check, not a sale


def test_capture_and_immediate_authorisation_book_the_same_record() -> None:
    capture = _item("CAPTURE", originalReference=PSP, pspReference="CAPTURE0000000001")
    (a,) = to_movements(capture)
    (b,) = to_movements(_item("AUTHORISATION"), immediate_capture=True)
    assert (a.object_id, b.object_id) == (PSP, PSP)
    assert records_for([a])[-1].external_id == records_for([b])[-1].external_id == f"adyen_{PSP}"


def test_a_refund() -> None:
    assert to_movements(_item("REFUND")) == []  # the example was refused: success "false"
    (refund,) = to_movements(_item("REFUND", success="true", reason=""))
    assert isinstance(refund, Refund)
    assert (refund.object_id, refund.charge_id, refund.amount, refund.fee) == (PSP, PAYMENT, eur(1000), eur(0))
    assert (refund.status, refund.reason, refund.occurred_at) == ("succeeded", None, EVENT_DATE)


def test_a_failed_refund_undoes_the_refund() -> None:
    (refund,) = to_movements(_item("REFUND_FAILED"))
    assert isinstance(refund, Refund)
    assert (refund.object_id, refund.charge_id, refund.status, refund.reason) == (
        PSP,
        PAYMENT,
        "failed",
        "Refund Failed",
    )
    records = records_for([refund])
    assert [(r.kind, r.op) for r in records] == [("refund_payment", "delete")]


def test_cancel_or_refund_follows_its_action() -> None:
    assert to_movements(_item("CANCEL_OR_REFUND")) == []  # modification.action: cancel
    (refund,) = to_movements(_item("CANCEL_OR_REFUND", additionalData={"modification.action": "refund"}))
    assert isinstance(refund, Refund)
    assert refund.charge_id == PAYMENT
    with pytest.raises(TranslationError, match=r"modification\.action is None, not refund or cancel"):
        to_movements(_item("CANCEL_OR_REFUND", additionalData={}))


def test_a_chargeback_is_a_dispute_debit() -> None:
    (debit,) = to_movements(_item("CHARGEBACK"))
    assert isinstance(debit, DisputeDebit)
    assert (debit.object_id, debit.charge_id, debit.amount, debit.fee) == (PSP, PAYMENT, eur(1000), eur(0))
    assert debit.reason == "Payment.TxId=300000000524534724 dispute"
    assert debit.occurred_at == EVENT_DATE


@pytest.mark.parametrize(
    ("code", "kind", "object_id"),
    [
        ("SECOND_CHARGEBACK", DisputeDebit, f"{PSP}_second_chargeback"),
        ("PREARBITRATION_LOST", DisputeDebit, f"{PSP}_prearbitration"),
        ("CHARGEBACK_REVERSED", DisputeCredit, PSP),
        ("PREARBITRATION_WON", DisputeCredit, f"{PSP}_prearbitration"),
    ],
)
def test_dispute_stages(code: str, kind: type, object_id: str) -> None:
    # Adyen's examples for these omit originalReference; real dispute webhooks carry it (the disputed payment)
    with pytest.raises(TranslationError, match="names no originalReference"):
        to_movements(_item(code))
    (movement,) = to_movements(_item(code, originalReference=PAYMENT))
    assert isinstance(movement, kind)
    assert isinstance(movement, DisputeDebit | DisputeCredit)
    assert (movement.object_id, movement.charge_id, movement.amount) == (object_id, PAYMENT, eur(1000))


def test_each_dispute_stage_is_its_own_thred_record() -> None:
    charge = to_charge(_item("CAPTURE"))
    stages = [
        to_movements(_item(code, originalReference=PAYMENT))[0]
        for code in (
            "CHARGEBACK",
            "CHARGEBACK_REVERSED",
            "SECOND_CHARGEBACK",
            "PREARBITRATION_LOST",
            "PREARBITRATION_WON",
        )
    ]
    ids = [(r.kind, r.external_id) for r in records_for([charge, *stages]) if r.kind in ("payment", "refund_payment")]
    assert sorted(ids) == [
        ("payment", f"adyen_{PAYMENT}"),
        ("payment", f"adyen_{PSP}_prearbitration_reinstated"),
        ("payment", f"adyen_{PSP}_reinstated"),
        ("refund_payment", f"adyen_{PSP}"),
        ("refund_payment", f"adyen_{PSP}_prearbitration"),
        ("refund_payment", f"adyen_{PSP}_second_chargeback"),
    ]


@pytest.mark.parametrize(
    "code",
    [
        "NOTIFICATION_OF_CHARGEBACK",
        "CAPTURE_FAILED",
        "CANCELLATION",
        "REFUNDED_REVERSED",
        "REPORT_AVAILABLE",
        "PAYOUT_THIRDPARTY",
        "PAIDOUT_REVERSED",
    ],
)
def test_events_that_move_no_money(code: str) -> None:
    assert to_movements(_item(code)) == []
    assert to_movements(_item(code), immediate_capture=True) == []


@pytest.mark.parametrize("code", ["CAPTURE", "CHARGEBACK", "CHARGEBACK_REVERSED", "AUTHORISATION"])
def test_unsuccessful_items_move_no_money(code: str) -> None:
    assert to_movements(_item(code, success="false", originalReference=PAYMENT), immediate_capture=True) == []


def test_amounts_in_adyens_minor_units() -> None:
    (charge,) = to_movements(_item("CAPTURE", amount={"currency": "CLP", "value": 150000}))
    assert charge.amount == Money(1500, "CLP")
    (charge,) = to_movements(_item("CAPTURE", amount={"currency": "IDR", "value": 15000}))
    assert charge.amount == Money(1500000, "IDR")
    with pytest.raises(
        TranslationError, match=r"Adyen CAPTURE QFQTPCQ8HXSKGK82: amount: .* not a whole CLP minor unit"
    ):
        to_movements(_item("CAPTURE", amount={"currency": "CLP", "value": 150050}))
    with pytest.raises(TranslationError, match="not in Adyen's currency table"):
        to_movements(_item("CAPTURE", amount={"currency": "XXX", "value": 1}))
    with pytest.raises(TranslationError, match="not a positive amount"):
        to_movements(_item("CAPTURE", amount={"currency": "EUR", "value": 0}))
    with pytest.raises(TranslationError, match="names no originalReference"):
        to_movements(_item("REFUND", success="true", originalReference=""))


def test_the_shopper() -> None:
    assert to_party({}) == Party("walkin")
    assert to_party({"shopperName": "Ann Lee"}) == Party("walkin")  # a name alone names no customer
    by_email = to_party({"shopperEmail": " Ann@Example.com "})
    assert by_email.key == "billing_71d4f55f72fa128d"  # sha256("ann@example.com")[:16], as Stripe's billing key
    assert by_email.email == "Ann@Example.com"
    full = to_party(
        {
            "shopperReference": "cust-9",
            "shopperEmail": "ann@example.com",
            "shopperName.firstName": "Ann",
            "shopperName.lastName": "Lee",
            "billingAddress.street": "Main St 1",
            "billingAddress.city": "Utrecht",
            "billingAddress.postalCode": "3511",
            "billingAddress.country": "NL",
        }
    )
    assert full == Party(
        key="shopper_cust-9",
        name="Ann Lee",
        email="ann@example.com",
        address_line1="Main St 1",
        city="Utrecht",
        postal_code="3511",
        country="NL",
    )
    assert customer_external_id("adyen", full.key, None) == "adyen_shopper_cust-9"


def test_an_invoice_first_charge() -> None:
    item = _item("CAPTURE", additionalData={"metadata.thred_invoice_id": "inv_123", "paymentMethod": "x"})
    assert to_charge(item).thred_invoice_id == "inv_123"


# --- settled amounts and payouts ---------------------------------------------------------------------


def _batch(name: str = "batch_complete") -> Any:
    return summarise_batch(read_report((FIXTURES / f"settlement_detail_report_{name}.csv").read_bytes()))


def test_the_settlement_line_can_supply_amount_and_fee() -> None:
    line = _batch().payments["8815000000000001"]
    item = _item("CAPTURE", originalReference="8815000000000001", amount={"currency": "EUR", "value": 10000})
    charge = to_charge(item, settled=line)
    assert (charge.amount, charge.fee) == (eur(10000), eur(290))
    assert charge.metadata["fee_source"] == "settlement_report_applied"
    refund_line = _batch().refunds["8835000000000001"]
    refund_item = _item("REFUND", success="true", pspReference="8835000000000001", originalReference="8815000000000001")
    refund = to_refund(refund_item, settled=refund_line)
    assert (refund.amount, refund.fee) == (eur(2500), eur(0))
    with pytest.raises(TranslationError, match="the given settlement line is payment 8815000000000001"):
        to_charge(_item("CAPTURE"), settled=line)


def test_a_batch_becomes_a_payout_that_adds_up() -> None:
    payout = to_payout(_batch())
    assert (payout.processor, payout.object_id, payout.status) == ("adyen", "TestMerchant_batch_42", "paid")
    assert payout.amount == eur(6735)
    assert payout.item_net == payout.amount
    assert payout.arrives_at == datetime(2024, 3, 5, 6, 0, tzinfo=timezone(timedelta(hours=1)))
    assert payout.reference == "TX1234567890XT batch 42, TestMerchant"
    assert payout.itemised
    assert dict(payout.metadata) == {
        "adyen_merchant_account": "TestMerchant",
        "adyen_batch_number": "42",
        "expected_paid_out_cents": "6735",
        "variance_cents": "0",
    }
    kinds = [(i.kind, i.object_id, i.amount.minor, i.fee.minor) for i in payout.items]
    assert kinds == [
        ("charge", "8815000000000001", 10000, 290),
        ("charge", "8815000000000002", 5000, 100),
        ("refund", "8835000000000001", -2500, 0),
        ("dispute_debit", "8845000000000003", -4000, 750),
        ("dispute_credit", "8845000000000003", 4000, 0),
        ("dispute_debit", "8845000000000003_second_chargeback", -4000, 0),
        ("fee", "batch_42_line_9", -125, 0),
        ("fee", "batch_42_line_10", -1000, 0),
        ("adjustment", "batch_42_line_11", 500, 0),
    ]
    totals = payout_totals(payout)
    assert (totals.gross, totals.refunds, totals.fees, totals.credits, totals.net) == (19000, 10500, 2265, 500, 6735)
    refs = [payout_item_ref("adyen", item) for item in payout.items]
    assert [r[1].external_id for r in refs if r is not None] == [
        "adyen_8815000000000001",
        "adyen_8815000000000002",
        "adyen_8835000000000001",
        "adyen_8845000000000003",
        "adyen_8845000000000003_reinstated",
        "adyen_8845000000000003_second_chargeback",
    ]


def test_payout_items_name_the_records_the_webhooks_booked() -> None:
    """The settlement report and the webhooks agree on ids: the payout lists what the webhooks booked."""
    payout = to_payout(_batch())
    capture = _item("CAPTURE", originalReference="8815000000000001", pspReference="8825000000000001")
    refund = _item("REFUND", success="true", pspReference="8835000000000001", originalReference="8815000000000001")
    chargeback = _item("CHARGEBACK", pspReference="8845000000000003", originalReference="8815000000000003")
    second = _item("SECOND_CHARGEBACK", pspReference="8845000000000003", originalReference="8815000000000003")
    reversed_ = _item("CHARGEBACK_REVERSED", pspReference="8845000000000003", originalReference="8815000000000003")
    booked = {(r.kind, r.external_id) for m in (capture, refund, chargeback, second, reversed_) for r in records_for(
        [to_charge(_item("CAPTURE", originalReference="8815000000000003")), *to_movements(m)]
    )}  # fmt: skip
    listed = {payout_item_ref("adyen", i) for i in payout.items} - {None}
    assert {(ref[0], ref[1].external_id) for ref in listed if ref is not None} - booked == {
        ("payment", "adyen_8815000000000002")  # its CAPTURE is not among the webhooks above
    }


def test_a_batch_with_mismatches_or_variance_says_so() -> None:
    payout = to_payout(_batch("fx_mismatch"))
    assert payout.metadata["fee_mismatch_lines"] == "3,4"
    assert payout.item_net == payout.amount == Money(3630, "USD")
    off = to_payout(_batch("smashpig_chargeback"))
    assert (off.amount.minor, off.item_net.minor, off.metadata["variance_cents"]) == (403, -480, "883")


def test_payout_refusals() -> None:
    with pytest.raises(TranslationError, match="has no MerchantPayout row: nothing was paid out"):
        to_payout(_batch("smashpig_chargeback_reversed"))
    text = (
        (FIXTURES / "settlement_detail_report_smashpig_donation.csv")
        .read_text()
        .replace(",PST,MerchantPayout", ",CST,MerchantPayout")
    )
    with pytest.raises(TranslationError, match="Creation Date/TimeZone cannot be read as a time"):
        to_payout(summarise_batch(read_report(text)))
