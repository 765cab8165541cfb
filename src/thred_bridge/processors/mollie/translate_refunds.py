"""Mollie refunds and chargebacks → the bridge's movements. Pure: the caller fetches, this only reads.

Amounts are booked in the payment's settlement currency, from ``settlementAmount``: "the amount deducted
from your account balance", which the spec says is **always negative** for both, while mollie-api-python's
own fixture has a positive refund ``settlementAmount`` (PROCESSORS.md §3.3, §6). Either sign is read as
money leaving the balance (the movements carry positive amounts). When Mollie gives no settlement amount
(or zero: a refund Mollie did not process, e.g. PayPal), the object's own ``amount`` is used if it is in
the booking currency.

Refund statuses, as the Stripe translator treats its own (``stripe/translate_refunds.py``): ``queued``,
``pending`` and ``processing`` are a pending refund (booked; it may still fail), ``refunded`` succeeded,
and ``failed`` / ``canceled`` become ``Refund(status="failed" | "canceled")`` so a refund already booked
is undone. Mollie reports no fee per refund or chargeback: those costs are on the settlement, so the
``fee`` here is zero.

A chargeback has no status: it is a :class:`DisputeDebit` when received and, once ``reversedAt`` is set,
also a :class:`DisputeCredit` for the same amount at that time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import DisputeCredit, DisputeDebit, Refund, RefundStatus
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.mollie.fields import (
    PROCESSOR,
    decimal_text,
    id_of,
    money_of,
    settled_of,
    text_of,
    time_of,
)

REFUND_STATUSES: dict[str, RefundStatus] = {
    "queued": "pending",  # waiting for enough balance; money has not left yet, but it is committed
    "pending": "pending",
    "processing": "pending",
    "refunded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
"""Mollie's refund statuses (PROCESSORS.md §3.3) → the bridge's."""

DisputeMovement = DisputeDebit | DisputeCredit


def refund_status(refund: Mapping[str, Any]) -> RefundStatus:
    """The refund's status in the bridge's terms; TranslationError for one Mollie does not document."""
    status = refund.get("status")
    mapped = REFUND_STATUSES.get(status) if isinstance(status, str) else None
    if mapped is None:
        raise TranslationError(f"Mollie refund {refund.get('id')} has an unknown status {status!r}")
    return mapped


def settled_amount(obj: Mapping[str, Any], currency: str | None, what: str) -> Money:
    """The positive amount a refund, chargeback or settled payment moved, in the booking ``currency``.

    ``|settlementAmount|`` when Mollie gives a non-zero one, else ``|amount|``. When that is not in
    ``currency``: NotReadyError if it is the object's own amount (Mollie has not said yet what it is in the
    booking currency), TranslationError if it is a settlement amount (the objects disagree).
    """
    settled = settled_of(obj.get("settlementAmount"), f"{what} settlementAmount")
    moved = settled if settled is not None else money_of(obj.get("amount"), f"{what} amount")
    moved = Money(abs(moved.minor), moved.currency)
    if currency is not None and moved.currency != currency:
        if settled is not None:
            raise TranslationError(f"{what} settled in {moved.currency}, but its payment is booked in {currency}")
        raise NotReadyError(f"{what} is {moved.format()} and gives no settlementAmount in {currency} yet")
    if moved.minor == 0:
        raise TranslationError(f"{what} moved nothing")
    return moved


def _payment_id(obj: Mapping[str, Any], payment_id: str | None, what: str) -> str:
    given = obj.get("paymentId")
    if given is None:
        if payment_id is None:
            raise TranslationError(f"{what} names no payment")
        return payment_id
    found = id_of(given, "tr", f"{what} paymentId")
    if payment_id is not None and found != payment_id:
        raise TranslationError(f"{what} belongs to {found}, not to {payment_id}")
    return found


def _metadata(obj: Mapping[str, Any], moved: Money, what: str, **ids: str) -> dict[str, str]:
    metadata = dict(ids)
    own = money_of(obj.get("amount"), f"{what} amount")
    if own.currency != moved.currency:
        metadata["presentment_amount"] = decimal_text(Money(abs(own.minor), own.currency))
        metadata["presentment_currency"] = own.currency
    settlement = text_of(obj.get("settlementId"))
    if settlement:
        metadata["mollie_settlement_id"] = settlement
    return metadata


def to_refund(
    refund: Mapping[str, Any],
    *,
    payment_id: str | None = None,
    currency: str | None = None,
    account: str | None = None,
) -> Refund:
    """A Mollie refund → :class:`Refund` on its payment, in the booking ``currency`` (see the module docstring).

    ``payment_id`` is the payment it was embedded in (checked against its ``paymentId``); ``currency`` the
    payment's booking currency (checked; None skips the check). Raises TranslationError for a refund that
    cannot be read, NotReadyError for one in a foreign currency with no settlement amount yet.
    """
    resource = refund.get("resource", "refund")
    if resource != "refund":
        raise TranslationError(f"not a Mollie refund: resource {resource!r}, id {refund.get('id')!r}"[:200])
    refund_id = id_of(refund.get("id"), "re", "Mollie refund id")
    what = f"Mollie refund {refund_id}"
    charge_id = _payment_id(refund, payment_id, what)
    status = refund_status(refund)
    amount = settled_amount(refund, currency, what)
    metadata = _metadata(refund, amount, what, mollie_refund_id=refund_id, mollie_payment_id=charge_id)
    metadata["mollie_status"] = str(refund.get("status"))
    return Refund(
        processor=PROCESSOR,
        object_id=refund_id,
        charge_id=charge_id,
        amount=amount,
        fee=Money.zero(amount.currency),
        occurred_at=time_of(refund.get("createdAt"), f"{what} createdAt"),
        status=status,
        account=account,
        reason=text_of(refund.get("description")),
        metadata=metadata,
    )


def chargeback_reason(chargeback: Mapping[str, Any]) -> str | None:
    """``"AC01: Account identifier incorrect …"`` from ``reason{code, description}`` (SEPA Direct Debit only)."""
    reason = chargeback.get("reason")
    if not isinstance(reason, Mapping):
        return None
    parts = [p for p in (text_of(reason.get("code")), text_of(reason.get("description"))) if p]
    return ": ".join(parts) or None


def chargeback_movements(
    chargeback: Mapping[str, Any],
    *,
    payment_id: str | None = None,
    currency: str | None = None,
    account: str | None = None,
) -> list[DisputeMovement]:
    """A Mollie chargeback → ``[DisputeDebit]``, or ``[DisputeDebit, DisputeCredit]`` once it is reversed.

    Arguments as for :func:`to_refund`. The credit is for the amount the debit took, at ``reversedAt``.
    """
    resource = chargeback.get("resource", "chargeback")
    if resource != "chargeback":
        raise TranslationError(f"not a Mollie chargeback: resource {resource!r}, id {chargeback.get('id')!r}"[:200])
    chargeback_id = id_of(chargeback.get("id"), "chb", "Mollie chargeback id")
    what = f"Mollie chargeback {chargeback_id}"
    charge_id = _payment_id(chargeback, payment_id, what)
    amount = settled_amount(chargeback, currency, what)
    zero = Money.zero(amount.currency)
    out: list[DisputeMovement] = [
        DisputeDebit(
            processor=PROCESSOR,
            object_id=chargeback_id,
            charge_id=charge_id,
            amount=amount,
            fee=zero,
            occurred_at=time_of(chargeback.get("createdAt"), f"{what} createdAt"),
            account=account,
            reason=chargeback_reason(chargeback),
        )
    ]
    reversed_at = chargeback.get("reversedAt")
    if reversed_at is not None:
        out.append(
            DisputeCredit(
                processor=PROCESSOR,
                object_id=chargeback_id,
                charge_id=charge_id,
                amount=amount,
                fee_returned=zero,
                occurred_at=time_of(reversed_at, f"{what} reversedAt"),
                account=account,
            )
        )
    return out
