"""Stripe charge + balance transaction → Charge (processors/stripe/translate.py)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Party
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.translate import (
    balance_transaction_id,
    charge_id_of_payment_intent,
    to_charge,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def vat() -> tuple[dict[str, Any], dict[str, Any]]:
    return load("event_charge_succeeded.json")["data"]["object"], load("balance_transaction_vat_fee.json")


def fx() -> tuple[dict[str, Any], dict[str, Any]]:
    return load("charge_fx_usd_eur.json"), load("balance_transaction_fx_usd_eur.json")


def jpy() -> tuple[dict[str, Any], dict[str, Any]]:
    return load("charge_jpy.json"), load("balance_transaction_jpy.json")


def test_vat_fee_with_customer_object() -> None:
    charge, bt = vat()
    result = to_charge(charge, bt, customer=load("customer.json"), account=None)
    assert result.processor == "stripe"
    assert result.object_id == "ch_3SCRUBBEDvat000000000001"
    assert result.amount == Money(50000, "EUR")
    assert result.fee == Money(892, "EUR")
    assert result.occurred_at == datetime(2025, 10, 31, 10, 0, tzinfo=UTC)
    assert result.description == "Invoice INV-2025-0042"
    assert result.method == "card"
    assert result.reference == "pi_3SCRUBBEDvat000000000001"
    assert result.thred_invoice_id == "inv_7f3a"
    assert result.account is None
    assert result.customer == Party(
        key="cus_SCRUBBEDcust01",
        name="Jana Nováková",
        email="jana.novak@example.com",
        phone="+420 600 000 000",
        address_line1="Masarykova 12",
        address_line2="Byt 4",
        city="Brno",
        postal_code="602 00",
        country="CZ",
    )
    assert dict(result.metadata) == {
        "stripe_charge_id": "ch_3SCRUBBEDvat000000000001",
        "stripe_balance_transaction": "txn_3SCRUBBEDvat000000000001",
        "stripe_payment_intent": "pi_3SCRUBBEDvat000000000001",
        "fee_details": "stripe_fee=725;tax=167",
    }


def test_fx_charge_is_booked_in_the_settlement_currency() -> None:
    charge, bt = fx()
    result = to_charge(charge, bt, customer=None, account="acct_1SCRUBBEDconnect1")
    assert result.amount == Money(912, "EUR")
    assert result.fee == Money(38, "EUR")
    assert result.account == "acct_1SCRUBBEDconnect1"
    assert result.metadata["presentment_amount"] == "10.00"
    assert result.metadata["presentment_currency"] == "USD"
    assert result.metadata["exchange_rate"] == "0.912345"
    assert result.metadata["fee_details"] == "stripe_fee=38"


def test_exchange_rate_text_is_kept_when_parsed_exactly() -> None:
    charge = load("charge_fx_usd_eur.json")
    raw = (FIXTURES / "balance_transaction_fx_usd_eur.json").read_text().replace("0.912345", "0.91000")
    bt = json.loads(raw, parse_float=Decimal)
    assert to_charge(charge, bt, customer=None, account=None).metadata["exchange_rate"] == "0.91000"


def test_fx_presentment_in_a_zero_decimal_currency() -> None:
    charge, bt = fx()
    charge.update(currency="jpy", amount=1500, amount_captured=1500)
    assert to_charge(charge, bt, customer=None, account=None).metadata["presentment_amount"] == "1500"


def test_same_currency_has_no_presentment_metadata() -> None:
    charge, bt = vat()
    meta = to_charge(charge, bt, customer=None, account=None).metadata
    assert not {"presentment_amount", "presentment_currency", "exchange_rate"} & set(meta)


def test_jpy_walk_in() -> None:
    charge, bt = jpy()
    result = to_charge(charge, bt, customer=None, account=None)
    assert result.amount == Money(5000, "JPY")
    assert result.fee == Money(180, "JPY")
    assert result.customer == Party("walkin")
    assert result.method == "konbini"
    assert result.description == "Stripe charge ch_3SCRUBBEDjpy000000000001"
    assert result.thred_invoice_id is None


def test_billing_email_names_the_customer() -> None:
    charge, bt = fx()
    party = to_charge(charge, bt, customer=None, account=None).customer
    digest = hashlib.sha256(b"buyer@example.org").hexdigest()[:16]
    assert party.key == f"billing_{digest}"
    assert (party.name, party.email) == ("Sam Buyer", "buyer@example.org")


def test_billing_email_key_ignores_case_and_spaces() -> None:
    charge, bt = vat()
    charge["customer"] = None
    party = to_charge(charge, bt, customer=None, account=None).customer
    digest = hashlib.sha256(b"jana.novak@example.com").hexdigest()[:16]
    assert party.key == f"billing_{digest}"
    assert party.email == "Jana.Novak@Example.COM"
    assert (party.city, party.country) == ("Brno", "CZ")


def test_customer_id_without_the_object_keeps_the_customer_key() -> None:
    charge, bt = vat()
    party = to_charge(charge, bt, customer=None, account=None).customer
    assert party.key == "cus_SCRUBBEDcust01"
    assert party.name == "Jana Novák"  # from billing_details


def test_expanded_customer_on_the_charge_is_used() -> None:
    charge, bt = vat()
    charge["customer"] = load("customer.json")
    assert to_charge(charge, bt, customer=None, account=None).customer.name == "Jana Nováková"


def test_deleted_customer_keeps_its_key() -> None:
    charge, bt = vat()
    deleted = {"id": "cus_SCRUBBEDcust01", "object": "customer", "deleted": True}
    assert to_charge(charge, bt, customer=deleted, account=None).customer == Party("cus_SCRUBBEDcust01")


def test_someone_elses_customer_is_refused() -> None:
    charge, bt = vat()
    with pytest.raises(TranslationError, match="belongs to cus_SCRUBBEDcust01, not to the given cus_other"):
        to_charge(charge, bt, customer={"id": "cus_other"}, account=None)


def test_no_balance_transaction_yet_is_not_ready() -> None:
    charge, bt = vat()
    charge["balance_transaction"] = None
    with pytest.raises(NotReadyError, match="no balance transaction yet"):
        balance_transaction_id(charge)
    with pytest.raises(NotReadyError, match="no balance transaction yet"):
        to_charge(charge, bt, customer=None, account=None)


def test_balance_transaction_id_reads_an_expanded_object() -> None:
    charge, bt = vat()
    assert balance_transaction_id(charge) == "txn_3SCRUBBEDvat000000000001"
    charge["balance_transaction"] = bt
    assert balance_transaction_id(charge) == "txn_3SCRUBBEDvat000000000001"
    assert to_charge(charge, bt, customer=None, account=None).amount == Money(50000, "EUR")


def test_pending_charge_is_not_ready() -> None:
    charge, bt = vat()
    charge["status"] = "pending"
    with pytest.raises(NotReadyError, match="still pending"):
        to_charge(charge, bt, customer=None, account=None)


def _break(change: dict[str, Any], bt_change: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    charge, bt = vat()
    charge.update(change)
    bt.update(bt_change)
    return charge, bt


@pytest.mark.parametrize(
    ("change", "bt_change", "reason"),
    [
        ({"status": "failed", "paid": False}, {}, r"did not succeed \(status 'failed', paid False\)"),
        ({"paid": False}, {}, "did not succeed"),
        ({"captured": False}, {}, "authorised but not captured"),
        ({}, {"type": "refund"}, "has type 'refund', not a charge or payment"),
        ({}, {"type": "adjustment"}, "has type 'adjustment'"),
        ({}, {"source": "ch_somebody_else"}, "is for ch_somebody_else, not for ch_3SCRUBBEDvat000000000001"),
        ({}, {"source": {"id": "ch_other", "object": "charge"}}, "is for ch_other"),
        ({}, {"id": "txn_other"}, "settled as txn_3SCRUBBEDvat000000000001, not as the given txn_other"),
        ({}, {"amount": 0}, "not a positive amount"),
        ({}, {"amount": "50000"}, "is not an integer"),
        ({}, {"currency": None}, "has no currency"),
        ({}, {"currency": "isk", "amount": 150}, "not a whole ISK minor unit"),
        ({"object": "refund"}, {}, "not a Stripe charge"),
        ({"created": None}, {}, "no created timestamp"),
    ],
)
def test_refusals(change: dict[str, Any], bt_change: dict[str, Any], reason: str) -> None:
    charge, bt = _break(change, bt_change)
    with pytest.raises(TranslationError, match=reason):
        to_charge(charge, bt, customer=None, account=None)


def test_payment_balance_transactions_are_accepted() -> None:
    charge, bt = _break({}, {"type": "payment"})
    assert to_charge(charge, bt, customer=None, account=None).amount == Money(50000, "EUR")


def test_isk_in_whole_kronur() -> None:
    charge, bt = _break({"currency": "isk", "amount": 1500000}, {"currency": "isk", "amount": 1500000, "fee": 0})
    bt["fee_details"] = []
    result = to_charge(charge, bt, customer=None, account=None)
    assert result.amount == Money(15000, "ISK")
    assert "fee_details" not in result.metadata


def test_partial_capture_presents_the_captured_amount() -> None:
    charge, bt = fx()
    charge["amount_captured"] = 800
    assert to_charge(charge, bt, customer=None, account=None).metadata["presentment_amount"] == "8.00"


@pytest.mark.parametrize(
    ("details", "source", "method"),
    [
        (None, {"id": "card_1", "object": "card"}, "card"),
        (None, {"id": "src_1", "object": "source", "type": "sofort"}, "sofort"),
        (None, None, "unknown"),
        ({"type": "sepa_debit", "sepa_debit": {}}, None, "sepa_debit"),
    ],
)
def test_method(details: dict[str, Any] | None, source: dict[str, Any] | None, method: str) -> None:
    charge, bt = vat()
    charge["payment_method_details"] = details
    charge["source"] = source
    assert to_charge(charge, bt, customer=None, account=None).method == method


def test_without_payment_intent_the_charge_is_the_reference() -> None:
    charge, bt = vat()
    charge["payment_intent"] = None
    result = to_charge(charge, bt, customer=None, account=None)
    assert result.reference == "ch_3SCRUBBEDvat000000000001"
    assert "stripe_payment_intent" not in result.metadata


def test_fee_details_of_one_type_are_summed() -> None:
    charge, bt = vat()
    bt["fee_details"] = [*bt["fee_details"], copy.deepcopy(bt["fee_details"][0])]
    assert to_charge(charge, bt, customer=None, account=None).metadata["fee_details"] == "stripe_fee=1450;tax=167"


@pytest.mark.parametrize(
    ("pi", "charge_id"),
    [
        ({"latest_charge": "ch_1"}, "ch_1"),
        ({"latest_charge": {"id": "ch_2", "object": "charge"}}, "ch_2"),
        (
            {"latest_charge": None, "charges": {"object": "list", "data": [{"id": "ch_new"}, {"id": "ch_old"}]}},
            "ch_new",
        ),
        ({"latest_charge": None, "charges": {"object": "list", "data": []}}, None),
        ({"latest_charge": None}, None),
        ({}, None),
    ],
)
def test_charge_id_of_payment_intent(pi: dict[str, Any], charge_id: str | None) -> None:
    assert charge_id_of_payment_intent(pi) == charge_id


def test_payment_intent_fixture() -> None:
    pi = load("event_payment_intent_succeeded.json")["data"]["object"]
    assert charge_id_of_payment_intent(pi) == "ch_3SCRUBBEDfx0000000000001"
