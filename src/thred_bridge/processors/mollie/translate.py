"""Mollie payments → the bridge's movements. Pure: the caller fetches, this only reads.

The payment is read as ``GET /v2/payments/{id}?embed=refunds,chargebacks`` returns it (PROCESSORS.md §3.3).
Mollie calls the same payment webhook for its refunds and chargebacks while ``status`` stays ``paid``
(§4 fact 17), so :func:`payment_movements` always returns everything the payment has moved so far: the
charge, each refund, each chargeback (and its reversal). The bridge books each object once, however
often it is seen.

What is booked for the payment itself (:func:`charge_amount`):

- ``paid``: the amount, or ``amountCaptured`` when only part of it was captured; ``authorized`` with a
  captured amount: that amount. Anything else (``open``, ``pending``, ``authorized`` and not captured,
  ``failed``, ``canceled``, ``expired``) books nothing yet; Mollie pings again when that changes.
- In the settlement currency: ``settlementAmount`` when Mollie gives one, with the presentment amount in
  ``metadata`` when the currencies differ (movements.py). A payment Mollie does not settle (PayPal, gift
  cards: no ``settlementAmount``, or zero) is booked at its own amount, flagged ``settled_by_mollie``.
- The fee is what the caller read from the balance transactions (``fee``: the ``deductions`` of the
  payment's ``payment``/``capture`` transaction, ``balance_fees``), else zero: without the Balances API
  Mollie's costs are known per settlement only (the ``periods`` costs, §3.3) and are booked as fee items
  of the payout (``translate_settlements``).

Refunds and chargebacks are in ``translate_refunds``, settlements in ``translate_settlements``; the
readers they share are in ``fields``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, Movement, Party
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.fields import (
    PROCESSOR,
    decimal_text,
    embedded,
    id_of,
    is_mollie_id,
    money_of,
    optional_money_of,
    settled_of,
    text_of,
    time_of,
)
from thred_bridge.processors.mollie.translate_refunds import chargeback_movements, to_refund

PAYMENT_STATUSES = frozenset({"open", "pending", "authorized", "paid", "canceled", "expired", "failed"})
"""Mollie's payment statuses (PROCESSORS.md §3.3); any other is refused rather than guessed."""

BOOKABLE_STATUSES = frozenset({"paid", "authorized"})
"""Statuses in which money has (at least partly) been taken; ``authorized`` only once something is captured."""


def payment_id_of(payment: Mapping[str, Any]) -> str:
    """The payment's ``tr_…`` id; TranslationError if it is not a Mollie payment."""
    resource = payment.get("resource", "payment")
    if resource != "payment":
        raise TranslationError(f"not a Mollie payment: resource {resource!r}, id {payment.get('id')!r}"[:200])
    return id_of(payment.get("id"), "tr", "Mollie payment id")


def _captured(payment: Mapping[str, Any], amount: Money, what: str) -> Money | None:
    captured = optional_money_of(payment.get("amountCaptured"), f"{what} amountCaptured")
    if captured is None or captured.minor == 0:
        return None
    if captured.currency != amount.currency or not 0 < captured.minor <= amount.minor:
        raise TranslationError(f"{what}: captured {captured.format()} of {amount.format()}")
    return captured


def _captures_settled(payment: Mapping[str, Any], currency: str, what: str) -> Money | None:
    captures = embedded(payment, "captures", what)
    if not captures:
        return None
    total = Money.zero(currency)
    for capture in captures:
        settled = money_of(capture.get("settlementAmount"), f"{what}: capture {capture.get('id')} settlementAmount")
        if settled.currency != currency:
            raise TranslationError(f"{what}: capture {capture.get('id')} settles in {settled.currency}, not {currency}")
        total = total + settled
    return total


def charge_amount(payment: Mapping[str, Any]) -> Money | None:
    """What the payment put in the merchant's balance (see the module docstring), or None if nothing yet.

    Raises TranslationError for an unknown status or an amount that cannot be read, and for a partial
    capture in a foreign currency without its ``_embedded.captures`` (only those say what settled).
    """
    payment_id = payment_id_of(payment)
    what = f"Mollie payment {payment_id}"
    status = payment.get("status")
    if status not in PAYMENT_STATUSES:
        raise TranslationError(f"{what} has an unknown status {status!r}")
    amount = money_of(payment.get("amount"), f"{what} amount")
    captured = _captured(payment, amount, what)
    if status not in BOOKABLE_STATUSES or (status == "authorized" and captured is None):
        return None
    partial = captured is not None and captured.minor < amount.minor
    basis = captured if captured is not None and partial else amount
    settled = settled_of(payment.get("settlementAmount"), f"{what} settlementAmount")
    if settled is None or (partial and settled.currency == amount.currency):
        booked = basis
    elif not partial:
        booked = settled
    else:
        from_captures = _captures_settled(payment, settled.currency, what)
        if from_captures is None:
            raise TranslationError(
                f"{what}: {basis.format()} of {amount.format()} was captured and settles in {settled.currency}; "
                "fetch the payment with embed=captures to know the settled amount"
            )
        booked = from_captures
    if booked.minor <= 0:
        raise TranslationError(f"{what} settled as {booked.format()}, not a positive amount")
    return booked


def booking_currency(payment: Mapping[str, Any]) -> str:
    """The currency the payment (and so its refunds and chargebacks) is booked in: the settlement
    currency, or the payment's own when Mollie does not settle it."""
    payment_id = payment_id_of(payment)
    what = f"Mollie payment {payment_id}"
    settled = settled_of(payment.get("settlementAmount"), f"{what} settlementAmount")
    return settled.currency if settled is not None else money_of(payment.get("amount"), f"{what} amount").currency


def billing_key(email: str) -> str:
    """``billing_`` + the first 16 hex digits of the SHA-256 of the trimmed, lower-cased e-mail (as for Stripe)."""
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return f"billing_{digest[:16]}"


def _name(billing: Mapping[str, Any]) -> str | None:
    person = " ".join(p for p in (text_of(billing.get("givenName")), text_of(billing.get("familyName"))) if p)
    return person or text_of(billing.get("organizationName"))


def to_party(payment: Mapping[str, Any]) -> Party:
    """Who paid: the Mollie customer (``customerId``), else the billing e-mail, else the walk-in customer.

    Name, e-mail, phone and address come from ``billingAddress`` (the e-mail also from the older
    ``billingEmail``). A payment with neither a customer nor an e-mail is the connection's walk-in customer,
    whatever name the payment details carry, so walk-ins never split into many customers.
    """
    customer_id = payment.get("customerId")
    customer_id = customer_id if is_mollie_id(customer_id, "cst") else None
    billing = payment.get("billingAddress")
    billing = billing if isinstance(billing, Mapping) else {}
    email = text_of(billing.get("email")) or text_of(payment.get("billingEmail"))
    if customer_id is None and email is None:
        return Party("walkin")
    return Party(
        key=customer_id or billing_key(email or ""),
        name=_name(billing),
        email=email,
        phone=text_of(billing.get("phone")),
        address_line1=text_of(billing.get("streetAndNumber")),
        address_line2=text_of(billing.get("streetAdditional")),
        city=text_of(billing.get("city")),
        state=text_of(billing.get("region")),
        postal_code=text_of(billing.get("postalCode")),
        country=text_of(billing.get("country")),
    )


def merchant_metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's ``metadata``: an object, or a JSON object in a string (both occur); else empty."""
    raw = obj.get("metadata")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, Mapping) else {}


def _occurred_at(payment: Mapping[str, Any], what: str) -> datetime:
    for key in ("paidAt", "authorizedAt", "createdAt"):
        if payment.get(key) is not None:
            return time_of(payment.get(key), f"{what} {key}")
    raise TranslationError(f"{what} has no paidAt, authorizedAt or createdAt")


def _metadata(payment: Mapping[str, Any], payment_id: str, booked: Money) -> dict[str, str]:
    what = f"Mollie payment {payment_id}"
    amount = money_of(payment.get("amount"), f"{what} amount")
    metadata = {"mollie_payment_id": payment_id}
    if amount.currency != booked.currency:
        metadata["presentment_amount"] = decimal_text(amount)
        metadata["presentment_currency"] = amount.currency
    captured = _captured(payment, amount, what)
    if captured is not None and captured.minor < amount.minor:
        metadata["captured_amount"] = decimal_text(captured)
        metadata["authorized_amount"] = decimal_text(amount)
    settled = settled_of(payment.get("settlementAmount"), f"{what} settlementAmount")
    if settled is None:
        metadata["settled_by_mollie"] = "false"
    elif settled != booked:
        metadata["settlement_amount"] = decimal_text(settled)
    for ours, theirs in (
        ("mollie_settlement_id", "settlementId"),
        ("mollie_mode", "mode"),
        ("mollie_sequence_type", "sequenceType"),
        ("mollie_order_id", "orderId"),
    ):
        value = text_of(payment.get(theirs))
        if value:
            metadata[ours] = value
    return metadata


def to_charge(payment: Mapping[str, Any], *, account: str | None = None, fee: Money | None = None) -> Charge | None:
    """A Mollie payment → :class:`Charge`, or None while it has taken no money (see the module docstring).

    ``fee`` is what Mollie deducted from it (zero when not given). Raises TranslationError for a payment
    that cannot be read, or a fee in another currency than the booked amount.
    """
    booked = charge_amount(payment)
    if booked is None:
        return None
    if fee is not None and fee.currency != booked.currency:
        raise TranslationError(
            f"Mollie payment {payment.get('id')}: fee in {fee.currency}, booked in {booked.currency}"
        )
    payment_id = payment_id_of(payment)
    what = f"Mollie payment {payment_id}"
    invoice = merchant_metadata(payment).get("thred_invoice_id")
    return Charge(
        processor=PROCESSOR,
        object_id=payment_id,
        amount=booked,
        fee=fee if fee is not None else Money.zero(booked.currency),
        occurred_at=_occurred_at(payment, what),
        customer=to_party(payment),
        description=text_of(payment.get("description")) or f"Mollie payment {payment_id}",
        method=text_of(payment.get("method")) or "unknown",
        reference=payment_id,
        account=account,
        thred_invoice_id=text_of(invoice),
        metadata=_metadata(payment, payment_id, booked),
    )


def payment_movements(
    payment: Mapping[str, Any], *, account: str | None = None, fee: Money | None = None
) -> list[Movement]:
    """Everything a payment has moved so far: its :class:`Charge` (if it took money), a :class:`Refund` per
    ``_embedded.refunds`` entry and the dispute movements of each ``_embedded.chargebacks`` entry; ``fee``
    is the payment's own (:func:`to_charge`).

    Refunds and chargebacks are booked in the payment's :func:`booking_currency`.
    """
    payment_id = payment_id_of(payment)
    what = f"Mollie payment {payment_id}"
    currency = booking_currency(payment)
    out: list[Movement] = []
    charge = to_charge(payment, account=account, fee=fee)
    if charge is not None:
        out.append(charge)
    for refund in embedded(payment, "refunds", what):
        out.append(to_refund(refund, payment_id=payment_id, currency=currency, account=account))
    for chargeback in embedded(payment, "chargebacks", what):
        out.extend(chargeback_movements(chargeback, payment_id=payment_id, currency=currency, account=account))
    return out
