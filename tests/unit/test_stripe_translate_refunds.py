"""Stripe refunds and disputes → Refund, DisputeDebit, DisputeCredit (processors/stripe/translate_refunds.py).

Fixtures: ``refund.json`` is the partial refund inside pay-rails' ``charge.refunded`` fixture;
``event_charge_dispute_*.json`` are dj-stripe's dispute fixtures (evidence scrubbed); the FX refund and
the refund balance transactions are ours.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Party
from thred_bridge.domain.records import records_for
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.translate_refunds import refund_status, to_dispute_movements, to_refund

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"
CHARGE = "ch_3LQOJoKXBGcbgpbZ1ZhroS8X"
DISPUTE = "dp_1JAyTwJSZQVUcJYgPqasUEn1"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def plain() -> tuple[dict[str, Any], dict[str, Any]]:
    return load("refund.json"), load("balance_transaction_refund.json")


def fx() -> tuple[dict[str, Any], dict[str, Any]]:
    return load("refund_fx_usd_eur.json"), load("balance_transaction_refund_fx_usd_eur.json")


def dispute(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = load(name)["data"]["object"]
    return obj


# ---- refunds -----------------------------------------------------------------------------------------


def test_partial_refund() -> None:
    refund, bt = plain()
    result = to_refund(refund, bt, account=None)
    assert result.processor == "stripe"
    assert result.object_id == "re_3LQOJoKXBGcbgpbZ10i9Mg75"
    assert result.charge_id == CHARGE
    assert result.amount == Money(500, "USD")
    assert result.fee == Money(0, "USD")
    assert result.status == "succeeded"
    assert result.reason == "requested_by_customer"
    assert result.occurred_at == datetime.fromtimestamp(1658982465, UTC)
    assert result.account is None
    assert dict(result.metadata) == {
        "stripe_refund_id": "re_3LQOJoKXBGcbgpbZ10i9Mg75",
        "stripe_charge_id": CHARGE,
        "stripe_balance_transaction": "txn_3LQOJoKXBGcbgpbZ1z7g9uuP",
    }


def test_fx_refund_is_in_the_settlement_currency() -> None:
    refund, bt = fx()
    result = to_refund(refund, bt, account="acct_1SCRUBBEDconnect1")
    assert result.amount == Money(365, "EUR")
    assert result.account == "acct_1SCRUBBEDconnect1"
    assert result.metadata["presentment_amount"] == "4.00"
    assert result.metadata["presentment_currency"] == "USD"
    assert result.metadata["exchange_rate"] == "0.912345"


def test_refund_fee_is_kept_as_given() -> None:
    refund, bt = plain()
    bt.update(fee=30, net=-530)
    bt["fee_details"] = [{"amount": 30, "currency": "usd", "type": "stripe_fee", "application": None}]
    result = to_refund(refund, bt, account=None)
    assert result.fee == Money(30, "USD")
    assert result.metadata["fee_details"] == "stripe_fee=30"


def test_expanded_balance_transaction_is_used() -> None:
    refund, bt = plain()
    refund["balance_transaction"] = bt
    assert to_refund(refund, None, account=None).amount == Money(500, "USD")


def test_payment_refund_type_is_a_refund() -> None:
    refund, bt = plain()
    bt["type"] = "payment_refund"
    assert to_refund(refund, bt, account=None).amount == Money(500, "USD")


@pytest.mark.parametrize("status", ["pending", "succeeded", "requires_action"])
def test_no_balance_transaction_yet_is_not_ready(status: str) -> None:
    refund, _ = plain()
    refund.update(status=status, balance_transaction=None)
    with pytest.raises(NotReadyError, match="no balance transaction yet"):
        to_refund(refund, None, account=None)


def test_requires_action_is_pending() -> None:
    refund, bt = plain()
    refund["status"] = "requires_action"
    assert to_refund(refund, bt, account=None).status == "pending"


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_failed_or_canceled_without_balance_transaction_uses_the_refund(status: str) -> None:
    refund, _ = fx()
    refund.update(status=status, balance_transaction=None, failure_reason="expired_or_canceled_card")
    result = to_refund(refund, None, account=None)
    assert result.status == status
    assert result.amount == Money(400, "USD")
    assert result.fee == Money(0, "USD")
    assert result.metadata["failure_reason"] == "expired_or_canceled_card"
    (void,) = records_for([result])
    assert (void.op, void.external_id) == ("delete", "stripe_re_3SCRUBBEDfx0000000000001_void")


def test_failed_with_its_balance_transaction_keeps_the_settled_amount() -> None:
    refund, bt = fx()
    refund.update(status="failed", failure_balance_transaction="txn_back")
    result = to_refund(refund, bt, account=None)
    assert (result.status, result.amount) == ("failed", Money(365, "EUR"))


def test_failed_with_the_refund_failure_transaction() -> None:
    refund, bt = fx()
    refund.update(status="failed", failure_balance_transaction="txn_back")
    back = {**bt, "id": "txn_back", "amount": 365, "net": 365, "type": "refund_failure"}
    back["reporting_category"] = "refund_failure"
    assert to_refund(refund, back, account=None).amount == Money(365, "EUR")


def test_unknown_refund_status() -> None:
    with pytest.raises(TranslationError, match="unknown status 'reversed'"):
        refund_status({"id": "re_1", "status": "reversed"})


def _refuse(change: dict[str, Any], bt_change: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    refund, bt = plain()
    refund.update(change)
    bt.update(bt_change)
    return refund, bt


@pytest.mark.parametrize(
    ("change", "bt_change", "reason"),
    [
        ({"object": "charge"}, {}, "not a Stripe refund"),
        ({"id": None}, {}, "not a Stripe refund"),
        ({"charge": None}, {}, "names no charge"),
        ({"status": "lost"}, {}, "unknown status"),
        ({}, {"id": "txn_other"}, "settled as txn_3LQOJoKXBGcbgpbZ1z7g9uuP, not as the given txn_other"),
        ({}, {"source": "re_other"}, "is for re_other"),
        ({}, {"type": "charge"}, "has type 'charge', not a refund"),
        ({}, {"amount": 500}, "a refund takes money out"),
        ({}, {"amount": 0}, "a refund takes money out"),
        ({}, {"currency": None}, "has no currency"),
        ({}, {"currency": "isk", "amount": -150}, "not a whole ISK minor unit"),
        ({"created": None}, {}, "has no timestamp"),
    ],
)
def test_refund_refusals(change: dict[str, Any], bt_change: dict[str, Any], reason: str) -> None:
    refund, bt = _refuse(change, bt_change)
    with pytest.raises(TranslationError, match=reason):
        to_refund(refund, bt, account=None)


def test_isk_refund_in_whole_kronur() -> None:
    refund, bt = _refuse({"currency": "isk", "amount": 250000}, {"currency": "isk", "amount": -250000})
    assert to_refund(refund, bt, account=None).amount == Money(2500, "ISK")


# ---- disputes ----------------------------------------------------------------------------------------


def test_dispute_created_with_funds_withdrawn() -> None:
    (debit,) = to_dispute_movements(dispute("event_charge_dispute_created.json"), account=None)
    assert debit == DisputeDebit(
        processor="stripe",
        object_id=DISPUTE,
        charge_id="ch_fakefakefakefakefake0001",
        amount=Money(1000, "USD"),
        fee=Money(1500, "USD"),
        occurred_at=datetime.fromtimestamp(1625755540, UTC),
        account=None,
        reason="fraudulent",
    )


def test_dispute_reinstated_gives_debit_and_credit() -> None:
    debit, credit = to_dispute_movements(dispute("event_charge_dispute_funds_reinstated.json"), account="acct_1")
    assert isinstance(debit, DisputeDebit)
    assert (debit.amount, debit.fee, debit.account) == (Money(1000, "USD"), Money(1500, "USD"), "acct_1")
    assert credit == DisputeCredit(
        processor="stripe",
        object_id=DISPUTE,
        charge_id="ch_fakefakefakefakefake0001",
        amount=Money(1000, "USD"),
        fee_returned=Money(1500, "USD"),
        occurred_at=datetime.fromtimestamp(1625755608, UTC),
        account="acct_1",
    )


def test_dispute_movements_become_records_with_their_charge() -> None:
    moved = to_dispute_movements(dispute("event_charge_dispute_funds_reinstated.json"), account=None)
    charge = Charge(
        "stripe",
        "ch_fakefakefakefakefake0001",
        Money(1000, "USD"),
        Money(59, "USD"),
        datetime(2021, 7, 8, tzinfo=UTC),
        Party("cus_1"),
        "Order",
        "card",
    )
    kinds = [(r.kind, r.external_id) for r in records_for([*moved, charge])]
    assert ("refund_payment", f"stripe_{DISPUTE}") in kinds
    assert ("payment", f"stripe_{DISPUTE}_reinstated") in kinds


@pytest.mark.parametrize("bts", [[], None])
def test_dispute_without_money_moved_is_nothing(bts: list[Any] | None) -> None:
    obj = load("event_charge_dispute_created.json")["data"]["object"]
    obj["balance_transactions"] = bts
    assert to_dispute_movements(obj, account=None) == []


def test_dispute_without_reporting_category_goes_by_sign() -> None:
    obj = dispute("event_charge_dispute_funds_reinstated.json")
    for bt in obj["balance_transactions"]:
        del bt["reporting_category"]
    assert [type(m) for m in to_dispute_movements(obj, account=None)] == [DisputeDebit, DisputeCredit]


def _broken(change: Any) -> dict[str, Any]:
    obj = copy.deepcopy(dispute("event_charge_dispute_funds_reinstated.json"))
    change(obj)
    return obj


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(object="charge"), "not a Stripe dispute"),
        (lambda d: d.update(charge=None), "names no charge"),
        (lambda d: d.update(balance_transactions="txn_1"), "is not a list"),
        (lambda d: d["balance_transactions"].__setitem__(0, "txn_1"), "is not an object"),
        (lambda d: d["balance_transactions"][1].update(reporting_category="dispute"), "more than one dispute"),
        (lambda d: d["balance_transactions"][0].update(amount=1000), "a dispute withdrawal takes money out"),
        (lambda d: d["balance_transactions"][1].update(amount=-1000), "a dispute reversal brings money back"),
        (lambda d: d["balance_transactions"][0].update(reporting_category="fee"), "reporting category 'fee'"),
        (lambda d: d["balance_transactions"][0].update(source="dp_other"), "is for dp_other"),
        (lambda d: d["balance_transactions"][0].update(created=None), "has no timestamp"),
    ],
)
def test_dispute_refusals(change: Any, reason: str) -> None:
    with pytest.raises(TranslationError, match=reason):
        to_dispute_movements(_broken(change), account=None)
