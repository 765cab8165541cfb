"""Stripe refunds and disputes → the bridge's movements. Pure: the caller fetches, this only reads.

Like a charge, a refund's money comes from its balance transaction, in the settlement currency
(PROCESSORS.md §4 fact 6): ``amount`` there is negative (money left the balance) and ``fee`` is what
Stripe charged for the refund. A dispute carries its own balance transactions (§4 fact 8): zero
while nothing has moved, a ``dispute`` withdrawal (−amount, +fee) once the funds are taken, and a
``dispute_reversal`` (+amount, −fee) if they come back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import DisputeCredit, DisputeDebit, Refund, RefundStatus
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.translate import (
    PROCESSOR,
    decimal_text,
    fee_summary,
    id_of,
    money_of,
    rate_text,
    text_of,
    time_of,
)

# Balance-transaction types a refund settles as: ``refund`` for charges, ``payment_refund`` for
# ``payment`` (local-method) charges (stripe-python ``balance_transaction.py`` ``type`` docstring).
REFUND_BT_TYPES = frozenset({"refund", "payment_refund"})

# Stripe's refund statuses → the bridge's. ``requires_action`` (the customer must act before the money
# leaves) is still pending.
_REFUND_STATUS: dict[str, RefundStatus] = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}

DisputeMovement = DisputeDebit | DisputeCredit


def refund_status(refund: Mapping[str, Any]) -> RefundStatus:
    """The refund's status in the bridge's terms; TranslationError for one Stripe does not document."""
    status = refund.get("status")
    mapped = _REFUND_STATUS.get(status) if isinstance(status, str) else None
    if mapped is None:
        raise TranslationError(f"Stripe refund {refund.get('id')} has an unknown status {status!r}")
    return mapped


def _check_refund_bt(refund_id: str, refund: Mapping[str, Any], bt: Mapping[str, Any]) -> None:
    bt_id = id_of(bt.get("id"))
    known = {id_of(refund.get("balance_transaction")), id_of(refund.get("failure_balance_transaction"))} - {None}
    if known and bt_id not in known:
        wanted = " or ".join(sorted(k for k in known if k))
        raise TranslationError(f"Stripe refund {refund_id} settled as {wanted}, not as the given {bt_id}")
    source = id_of(bt.get("source"))
    if source is not None and source != refund_id:
        raise TranslationError(f"Stripe balance transaction {bt_id} is for {source}, not for {refund_id}")


def _refund_money(refund_id: str, refund: Mapping[str, Any], bt: Mapping[str, Any] | None) -> tuple[Money, Money]:
    """(amount > 0, fee) in the settlement currency, from the refund's balance transaction."""
    if bt is None:  # only for a refund that failed before it moved any money: its own amount is all there is
        amount = money_of(refund.get("amount"), refund.get("currency"), f"Stripe refund {refund_id}: amount")
        return amount, Money.zero(amount.currency)
    what = f"Stripe refund {refund_id}: balance transaction {bt.get('id')}"
    amount = money_of(bt.get("amount"), bt.get("currency"), f"{what} amount")
    fee = money_of(bt.get("fee"), bt.get("currency"), f"{what} fee")
    kind = bt.get("type")
    if kind == "refund_failure":  # the money coming back (+amount) for a refund that failed
        return amount, Money.zero(amount.currency)
    if kind not in REFUND_BT_TYPES:
        raise TranslationError(f"Stripe balance transaction {bt.get('id')} has type {kind!r}, not a refund")
    if amount.minor >= 0:
        raise TranslationError(f"{what} is {amount.format()}: a refund takes money out of the balance")
    return -amount, fee


def to_refund(
    refund: Mapping[str, Any], balance_transaction: Mapping[str, Any] | None, *, account: str | None
) -> Refund:
    """A Stripe refund and its balance transaction → :class:`Refund`, in the settlement currency.

    ``balance_transaction`` is the refund's ``balance_transaction`` (or, for a failed refund, its
    ``failure_balance_transaction``); an expanded one on the refund is used when None is given. Raises
    NotReadyError for a pending or succeeded refund Stripe has not booked yet, and TranslationError for
    one that can never be booked. A ``failed`` or ``canceled`` refund becomes ``Refund(status=…)``, its
    amount from the balance transaction if there is one, else from the refund itself.
    """
    refund_id = id_of(refund.get("id"))
    if refund_id is None or refund.get("object", "refund") != "refund":
        raise TranslationError(f"not a Stripe refund: object {refund.get('object')!r}, id {refund.get('id')!r}")
    charge_id = id_of(refund.get("charge"))
    if charge_id is None:
        raise TranslationError(f"Stripe refund {refund_id} names no charge")
    status = refund_status(refund)
    bt = balance_transaction
    expanded = refund.get("balance_transaction")
    if bt is None and isinstance(expanded, Mapping):
        bt = expanded
    if bt is None and status in ("pending", "succeeded"):
        raise NotReadyError(f"Stripe refund {refund_id} has no balance transaction yet")
    if bt is not None:
        _check_refund_bt(refund_id, refund, bt)
    amount, fee = _refund_money(refund_id, refund, bt)
    if amount.minor <= 0:
        raise TranslationError(f"Stripe refund {refund_id} is {amount.format()}, not a positive amount")

    metadata: dict[str, str] = {"stripe_refund_id": refund_id, "stripe_charge_id": charge_id}
    if bt is not None:
        metadata["stripe_balance_transaction"] = str(bt.get("id"))
        fees = fee_summary(bt)
        if fees:
            metadata["fee_details"] = fees
    presentment = refund.get("currency")
    if isinstance(presentment, str) and presentment.upper() != amount.currency:
        presented = money_of(refund.get("amount"), presentment, f"Stripe refund {refund_id}: amount")
        metadata["presentment_amount"] = decimal_text(presented)
        metadata["presentment_currency"] = presented.currency
        rate = rate_text(bt.get("exchange_rate")) if bt is not None else None
        if rate is not None:
            metadata["exchange_rate"] = rate
    failure = text_of(refund.get("failure_reason"))
    if failure:
        metadata["failure_reason"] = failure
    return Refund(
        processor=PROCESSOR,
        object_id=refund_id,
        charge_id=charge_id,
        amount=amount,
        fee=fee,
        occurred_at=time_of(refund.get("created"), f"Stripe refund {refund_id}"),
        status=status,
        account=account,
        reason=text_of(refund.get("reason")),
        metadata=metadata,
    )


def _category(bt: Mapping[str, Any], amount: Money) -> str:
    """``dispute`` or ``dispute_reversal``; by the sign on API versions before ``reporting_category``."""
    category = bt.get("reporting_category")
    if category is None:
        return "dispute" if amount.minor < 0 else "dispute_reversal"
    return str(category)


def to_dispute_movements(dispute: Mapping[str, Any], *, account: str | None) -> list[DisputeMovement]:
    """A Stripe dispute → its money movements, from ``dispute.balance_transactions`` (0–2).

    ``dispute`` (funds withdrawn: amount −X, fee +F) → :class:`DisputeDebit` (X, F); ``dispute_reversal``
    (funds reinstated: +X, −F) → :class:`DisputeCredit` (X, F returned). A dispute with no balance
    transaction yet (just opened, an inquiry, or won before any money moved) → ``[]``.
    """
    dispute_id = id_of(dispute.get("id"))
    if dispute_id is None or dispute.get("object", "dispute") != "dispute":
        raise TranslationError(f"not a Stripe dispute: object {dispute.get('object')!r}, id {dispute.get('id')!r}")
    charge_id = id_of(dispute.get("charge"))
    if charge_id is None:
        raise TranslationError(f"Stripe dispute {dispute_id} names no charge")
    bts = dispute.get("balance_transactions")
    if bts is None:
        return []
    if not isinstance(bts, list):
        raise TranslationError(f"Stripe dispute {dispute_id}: balance_transactions is not a list")
    out: list[DisputeMovement] = []
    seen: set[str] = set()
    for bt in bts:
        if not isinstance(bt, Mapping):
            raise TranslationError(f"Stripe dispute {dispute_id}: balance transaction {bt!r} is not an object")
        bt_id = id_of(bt.get("id"))
        what = f"Stripe dispute {dispute_id}: balance transaction {bt_id}"
        source = id_of(bt.get("source"))
        if source is not None and source != dispute_id:
            raise TranslationError(f"{what} is for {source}")
        amount = money_of(bt.get("amount"), bt.get("currency"), f"{what} amount")
        fee = money_of(bt.get("fee"), bt.get("currency"), f"{what} fee")
        at = time_of(bt.get("created"), what)
        category = _category(bt, amount)
        if category in seen:
            raise TranslationError(f"Stripe dispute {dispute_id} has more than one {category} balance transaction")
        seen.add(category)
        if category == "dispute":
            if amount.minor >= 0:
                raise TranslationError(f"{what} is {amount.format()}: a dispute withdrawal takes money out")
            reason = text_of(dispute.get("reason"))
            out.append(DisputeDebit(PROCESSOR, dispute_id, charge_id, -amount, fee, at, account, reason))
        elif category == "dispute_reversal":
            if amount.minor <= 0:
                raise TranslationError(f"{what} is {amount.format()}: a dispute reversal brings money back")
            out.append(DisputeCredit(PROCESSOR, dispute_id, charge_id, amount, -fee, at, account))
        else:
            raise TranslationError(f"{what} has reporting category {category!r}, not dispute or dispute_reversal")
    return out
