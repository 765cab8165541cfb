"""Mollie payments, refunds and chargebacks → movements (processors/mollie/translate*.py).

Fixtures: ``payment_get_openapi_*``, ``refund_get_openapi``, ``chargeback_get_openapi_*`` are Mollie's API spec
examples, ``sdk_python_tests_*`` mollie-api-python's own; ``payment_partially_refunded``,
``payment_charged_back_reversed`` and ``payment_foreign_currency`` are ours.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Party, Refund
from thred_bridge.domain.records import records_for
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.mollie.translate import (
    booking_currency,
    charge_amount,
    payment_movements,
    to_charge,
    to_party,
)
from thred_bridge.processors.mollie.translate_refunds import chargeback_movements, to_refund

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mollie"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def paid(**changes: Any) -> dict[str, Any]:
    """Mollie's spec example payment (open, 10.00 EUR), made paid; ``changes`` set (None removes) fields."""
    payment = load("payment_get_openapi_1.json")
    payment.update(status="paid", paidAt="2024-03-20T09:14:02+00:00", method="ideal")
    for key, value in changes.items():
        if value is None:
            payment.pop(key, None)
        else:
            payment[key] = value
    return payment


# ---------------------------------------------------------------------------------------------------------------
# payments


def test_partially_refunded_payment() -> None:
    charge, *refunds = payment_movements(load("payment_partially_refunded.json"))
    assert charge == Charge(
        processor="mollie",
        object_id="tr_Wq3dPnK7vH",
        amount=eur(5000),
        fee=eur(0),
        occurred_at=datetime(2024, 5, 2, 9, 15, 3, tzinfo=UTC),
        customer=Party("walkin"),
        description="Order #20417",
        method="ideal",
        reference="tr_Wq3dPnK7vH",
        account=None,
        thred_invoice_id=None,
        metadata={
            "mollie_payment_id": "tr_Wq3dPnK7vH",
            "mollie_settlement_id": "stl_Bq7Y2kLm4N",
            "mollie_mode": "live",
            "mollie_sequence_type": "oneoff",
        },
    )
    assert all(isinstance(r, Refund) for r in refunds)
    assert [(r.object_id, r.charge_id, r.amount, r.fee, r.status) for r in refunds if isinstance(r, Refund)] == [
        ("re_Hq4mLx2Pt8", "tr_Wq3dPnK7vH", eur(1000), eur(0), "succeeded"),
        ("re_Vn8sKd3Rw5", "tr_Wq3dPnK7vH", eur(500), eur(0), "pending"),
        ("re_Zt6pBc9Lm1", "tr_Wq3dPnK7vH", eur(750), eur(0), "failed"),
    ]
    first = refunds[0]
    assert isinstance(first, Refund)
    assert first.occurred_at == datetime(2024, 5, 3, 11, 2, 40, tzinfo=UTC)
    assert first.reason == "Damaged item"
    assert dict(first.metadata) == {
        "mollie_refund_id": "re_Hq4mLx2Pt8",
        "mollie_payment_id": "tr_Wq3dPnK7vH",
        "mollie_settlement_id": "stl_Bq7Y2kLm4N",
        "mollie_status": "refunded",
    }


def test_charged_back_and_reversed_payment() -> None:
    charge, debit, credit = payment_movements(load("payment_charged_back_reversed.json"), account="pfl_QkEhN94Ba")
    assert isinstance(charge, Charge)
    assert charge.amount == eur(8000)
    assert charge.account == "pfl_QkEhN94Ba"
    assert charge.thred_invoice_id == "inv_thred_0042"  # metadata given as a JSON string
    assert charge.customer == Party(
        key="cst_8wmqcHMN4U",
        name="Erika Mustermann",
        email="erika@example.org",
        address_line1="Heidestraße 17",
        city="Köln",
        postal_code="51147",
        country="DE",
    )
    assert debit == DisputeDebit(
        processor="mollie",
        object_id="chb_Rm5tGx8kWq",
        charge_id="tr_Kp2wYt7sQe",
        amount=eur(8000),
        fee=eur(0),
        occurred_at=datetime(2024, 4, 2, 10, 0, 12, tzinfo=UTC),
        account="pfl_QkEhN94Ba",
        reason=None,
    )
    assert credit == DisputeCredit(
        processor="mollie",
        object_id="chb_Rm5tGx8kWq",
        charge_id="tr_Kp2wYt7sQe",
        amount=eur(8000),
        fee_returned=eur(0),
        occurred_at=datetime(2024, 4, 19, 13, 31, 55, tzinfo=UTC),
        account="pfl_QkEhN94Ba",
    )


def test_foreign_currency_payment_is_booked_in_the_settlement_currency() -> None:
    charge, refund = payment_movements(load("payment_foreign_currency.json"))
    assert isinstance(charge, Charge)
    assert charge.amount == eur(11052)
    assert charge.fee == eur(0)
    assert dict(charge.metadata) == {
        "mollie_payment_id": "tr_Fx9uQp4LmZ",
        "presentment_amount": "120.00",
        "presentment_currency": "USD",
        "mollie_settlement_id": "stl_Pw4Jd8Xs3F",
        "mollie_mode": "live",
        "mollie_sequence_type": "oneoff",
    }
    digest = hashlib.sha256(b"jane.doe@example.com").hexdigest()[:16]
    assert charge.customer == Party(
        key=f"billing_{digest}",
        name="Jane Doe",
        email="Jane.Doe@Example.com",
        address_line1="1 Market Street",
        address_line2="Suite 400",
        city="San Francisco",
        state="CA",
        postal_code="94105",
        country="US",
    )
    assert isinstance(refund, Refund)
    assert (refund.object_id, refund.amount, refund.status) == ("re_Gt2hNw6Vb4", eur(1842), "succeeded")
    assert refund.metadata["presentment_amount"] == "20.00"
    assert refund.metadata["presentment_currency"] == "USD"


def test_the_movements_become_mollie_records() -> None:
    movements = payment_movements(load("payment_partially_refunded.json"))
    external = {r.external_id for r in records_for(movements)}
    assert {"mollie_tr_Wq3dPnK7vH", "mollie_re_Hq4mLx2Pt8", "mollie_re_Vn8sKd3Rw5"} <= external
    movements = payment_movements(load("payment_charged_back_reversed.json"))
    external = {r.external_id for r in records_for(movements)}
    assert {"mollie_tr_Kp2wYt7sQe", "mollie_chb_Rm5tGx8kWq", "mollie_chb_Rm5tGx8kWq_reinstated"} <= external


def test_partially_captured_payment_books_the_captured_amount() -> None:
    charge = to_charge(load("payment_get_openapi_3.json"))
    assert charge is not None
    assert charge.amount == eur(800)
    assert charge.method == "creditcard"
    assert charge.occurred_at == datetime(2023, 6, 5, 13, 7, 12, tzinfo=UTC)
    assert dict(charge.metadata) == {
        "mollie_payment_id": "tr_oWpmDXm6sT",
        "captured_amount": "8.00",
        "authorized_amount": "10.00",
        "settlement_amount": "10.00",
        "mollie_mode": "test",
        "mollie_sequence_type": "oneoff",
    }


@pytest.mark.parametrize("name", ["payment_get_openapi_1.json", "payment_get_openapi_2.json"])
def test_open_payments_book_nothing(name: str) -> None:
    assert payment_movements(load(name)) == []


def test_open_sdk_payment_books_nothing() -> None:
    payment = load("sdk_python_tests_payment_single.json")
    assert charge_amount(payment) is None
    assert payment_movements(payment) == []
    assert to_party(payment) == Party("cst_8wmqcHMN4U")  # the customer id alone still names the customer


@pytest.mark.parametrize("status", ["open", "pending", "failed", "canceled", "expired"])
def test_statuses_without_money_book_nothing(status: str) -> None:
    assert to_charge(paid(status=status)) is None


def test_authorized_books_only_what_was_captured() -> None:
    assert to_charge(paid(status="authorized")) is None
    assert to_charge(paid(status="authorized", amountCaptured={"value": "0.00", "currency": "EUR"})) is None
    charge = to_charge(
        paid(
            status="authorized",
            paidAt=None,
            authorizedAt="2024-03-20T09:13:50+00:00",
            amountCaptured={"value": "4.00", "currency": "EUR"},
        )
    )
    assert charge is not None
    assert charge.amount == eur(400)
    assert charge.occurred_at == datetime(2024, 3, 20, 9, 13, 50, tzinfo=UTC)


def test_a_payment_mollie_does_not_settle_is_booked_at_its_own_amount() -> None:
    charge = to_charge(paid(method="paypal", amount={"value": "24.95", "currency": "GBP"}))
    assert charge is not None
    assert charge.amount == Money(2495, "GBP")
    assert charge.metadata["settled_by_mollie"] == "false"
    assert "presentment_currency" not in charge.metadata


def test_zero_decimal_presentment_currency() -> None:
    charge = to_charge(
        paid(amount={"value": "1500", "currency": "JPY"}, settlementAmount={"value": "9.12", "currency": "EUR"})
    )
    assert charge is not None
    assert charge.amount == eur(912)
    assert (charge.metadata["presentment_amount"], charge.metadata["presentment_currency"]) == ("1500", "JPY")


def test_foreign_partial_capture_needs_its_captures() -> None:
    payment = paid(
        amount={"value": "100.00", "currency": "USD"},
        amountCaptured={"value": "60.00", "currency": "USD"},
        settlementAmount={"value": "92.10", "currency": "EUR"},
    )
    with pytest.raises(TranslationError, match="embed=captures"):
        to_charge(payment)
    payment["_embedded"] = {
        "captures": [
            {"resource": "capture", "id": "cpt_mNepDkEtco", "settlementAmount": {"value": "36.84", "currency": "EUR"}},
            {"resource": "capture", "id": "cpt_wQn3Pd8sKy", "settlementAmount": {"value": "18.42", "currency": "EUR"}},
        ]
    }
    charge = to_charge(payment)
    assert charge is not None
    assert charge.amount == eur(5526)


def test_the_walkin_customer_has_no_name() -> None:
    payment = paid(details={"consumerName": "T. TEST"})
    assert to_party(payment) == Party("walkin")
    assert (
        to_party(paid(billingEmail=" X@Example.org")).key
        == "billing_" + hashlib.sha256(b"x@example.org").hexdigest()[:16]
    )
    assert (
        to_party(paid(billingAddress={"organizationName": "ACME B.V.", "email": "ap@acme.example"})).name == "ACME B.V."
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "settled"}, "unknown status 'settled'"),
        ({"id": "ord_kEn1PlbGa"}, "not a Mollie tr_ id"),
        ({"resource": "order"}, "not a Mollie payment"),
        ({"amount": {"value": 10.0, "currency": "EUR"}}, "float"),
        ({"amount": {"value": "10.001", "currency": "EUR"}}, "would lose money"),
        ({"settlementAmount": {"value": "-10.00", "currency": "EUR"}}, "not a positive amount"),
        ({"amountCaptured": {"value": "12.00", "currency": "EUR"}}, "captured 12.00 EUR of 10.00 EUR"),
        ({"paidAt": "2024-04-31T09:14:02+00:00"}, "not an ISO 8601 timestamp"),
        ({"paidAt": "2024-03-20T09:14:02"}, "no UTC offset"),
    ],
)
def test_unreadable_payments(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(TranslationError, match=reason):
        to_charge(paid(**changes))


def test_booking_currency() -> None:
    assert booking_currency(load("payment_foreign_currency.json")) == "EUR"
    assert booking_currency(paid(amount={"value": "24.95", "currency": "GBP"})) == "GBP"


# ---------------------------------------------------------------------------------------------------------------
# refunds


def test_spec_refund_without_settlement_amount() -> None:
    refund = to_refund(load("refund_get_openapi.json"), payment_id="tr_5B8cwPMGnU6qLbRvo7qEZo", currency="EUR")
    assert refund == Refund(
        processor="mollie",
        object_id="re_4qqhO89gsT",
        charge_id="tr_5B8cwPMGnU6qLbRvo7qEZo",
        amount=eur(595),
        fee=eur(0),
        occurred_at=datetime(2023, 3, 14, 17, 9, 2, tzinfo=UTC),
        status="pending",
        account=None,
        reason="Order",
        metadata={
            "mollie_refund_id": "re_4qqhO89gsT",
            "mollie_payment_id": "tr_5B8cwPMGnU6qLbRvo7qEZo",
            "mollie_status": "pending",
        },
    )


def test_sdk_refund_with_a_positive_settlement_amount() -> None:
    # mollie-api-python's fixture: settlementAmount +10.00 where the spec says it is always negative (§6).
    refund = to_refund(load("sdk_python_tests_refund_single.json"))
    assert (refund.amount, refund.charge_id, refund.status) == (eur(1000), "tr_7UhSN1zuXS", "pending")
    assert refund.occurred_at == datetime(2018, 3, 14, 17, 9, 2, tzinfo=UTC)
    assert refund.metadata["mollie_settlement_id"] == "stl_jDk30akdN"


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("queued", "pending"),
        ("pending", "pending"),
        ("processing", "pending"),
        ("refunded", "succeeded"),
        ("failed", "failed"),
        ("canceled", "canceled"),
    ],
)
def test_refund_statuses(status: str, ours: str) -> None:
    refund = load("refund_get_openapi.json")
    refund["status"] = status
    assert to_refund(refund).status == ours


def test_a_paypal_refund_settles_zero_and_is_booked_at_its_amount() -> None:
    refund = load("refund_get_openapi.json")
    refund["settlementAmount"] = {"value": "0.00", "currency": "EUR"}
    assert to_refund(refund, currency="EUR").amount == eur(595)


def test_a_foreign_refund_without_a_settlement_amount_is_not_ready() -> None:
    refund = load("refund_get_openapi.json")
    refund["amount"] = {"value": "5.95", "currency": "USD"}
    with pytest.raises(NotReadyError, match="no settlementAmount in EUR yet"):
        to_refund(refund, currency="EUR")


@pytest.mark.parametrize(
    ("changes", "kwargs", "error", "reason"),
    [
        ({"status": "done"}, {}, TranslationError, "unknown status 'done'"),
        ({}, {"payment_id": "tr_7UhSN1zuXS"}, TranslationError, "belongs to tr_5B8cwPMGnU6qLbRvo7qEZo"),
        ({"paymentId": None}, {}, TranslationError, "names no payment"),
        ({"id": "chb_n9z0tp"}, {}, TranslationError, "not a Mollie re_ id"),
        (
            {"settlementAmount": {"value": "-5.00", "currency": "GBP"}},
            {"currency": "EUR"},
            TranslationError,
            "settled in GBP",
        ),
        ({"amount": {"value": "0.00", "currency": "EUR"}}, {}, TranslationError, "moved nothing"),
    ],
)
def test_unreadable_refunds(
    changes: dict[str, Any], kwargs: dict[str, Any], error: type[Exception], reason: str
) -> None:
    refund = load("refund_get_openapi.json")
    for key, value in changes.items():
        if value is None:
            refund.pop(key)
        else:
            refund[key] = value
    with pytest.raises(error, match=reason):
        to_refund(refund, **kwargs)


def test_a_refund_embedded_without_payment_id_takes_its_payment() -> None:
    refund = load("refund_get_openapi.json")
    del refund["paymentId"]
    assert to_refund(refund, payment_id="tr_7UhSN1zuXS").charge_id == "tr_7UhSN1zuXS"


# ---------------------------------------------------------------------------------------------------------------
# chargebacks


def test_spec_chargeback_in_a_foreign_currency() -> None:
    (debit,) = chargeback_movements(load("chargeback_get_openapi_1.json"), currency="EUR")
    assert debit == DisputeDebit(
        processor="mollie",
        object_id="chb_xFzwUN4ci8HAmSGUACS4J",
        charge_id="tr_5B8cwPMGnU6qLbRvo7qEZo",
        amount=eur(3507),
        fee=eur(0),
        occurred_at=datetime(2023, 3, 14, 17, 9, 2, tzinfo=UTC),
        account=None,
        reason="AC01: Account identifier incorrect (i.e. invalid IBAN)",
    )


def test_spec_chargeback_without_reason_or_reversal() -> None:
    (debit,) = chargeback_movements(load("chargeback_get_openapi_2.json"), payment_id="tr_8bVBhk2qs4")
    assert isinstance(debit, DisputeDebit)
    assert (debit.amount, debit.charge_id, debit.reason) == (eur(1000), "tr_8bVBhk2qs4", None)


def test_sdk_chargeback_reversed() -> None:
    debit, credit = chargeback_movements(load("sdk_python_tests_payment_chargeback_single.json"), currency="EUR")
    assert isinstance(debit, DisputeDebit)
    assert isinstance(credit, DisputeCredit)
    assert (debit.amount, credit.amount, credit.fee_returned) == (eur(3507), eur(3507), eur(0))
    assert debit.occurred_at == datetime(2018, 3, 14, 17, 0, 52, tzinfo=UTC)
    assert credit.occurred_at == datetime(2018, 3, 14, 17, 0, 55, tzinfo=UTC)
    assert credit.charge_id == "tr_7UhSN1zuXS"


def test_a_chargeback_settled_in_another_currency_than_its_payment_is_refused() -> None:
    chargeback = copy.deepcopy(load("chargeback_get_openapi_1.json"))
    with pytest.raises(TranslationError, match="settled in EUR, but its payment is booked in USD"):
        chargeback_movements(chargeback, currency="USD")
    chargeback["resource"] = "refund"
    with pytest.raises(TranslationError, match="not a Mollie chargeback"):
        chargeback_movements(chargeback)
