"""Verified Adyen webhook items → the bridge's movements. Pure: the caller verifies and stores, this reads.

Which event moves money (PROCESSORS.md §2.1, §4 fact 15; Adyen's dispute webhook docs):

- ``CAPTURE`` → :class:`Charge` for the payment (``originalReference``); ``AUTHORISATION`` too, but only for
  an immediately captured payment (``immediate_capture=True``: no CAPTURE webhook will come), and not for a
  zero-value authorisation (a card check);
- ``REFUND`` (and ``CANCEL_OR_REFUND`` whose ``modification.action`` is ``refund``) → :class:`Refund`
  ``succeeded`` on ``originalReference``; ``REFUND_FAILED`` → the same refund ``failed`` (undone);
- ``CHARGEBACK``, ``SECOND_CHARGEBACK``, ``PREARBITRATION_LOST`` → :class:`DisputeDebit`;
  ``CHARGEBACK_REVERSED``, ``PREARBITRATION_WON`` → :class:`DisputeCredit`;
- anything with ``success`` false, ``NOTIFICATION_OF_CHARGEBACK`` (an inquiry), ``CAPTURE_FAILED``,
  ``CANCELLATION``, ``REFUNDED_REVERSED`` (its money shows in the settlement report as an adjustment),
  ``REPORT_AVAILABLE`` and the rest → nothing.

A webhook carries the amount in the payment's (processing) currency and no fee: Adyen's fees are known only
from the settlement details report (§4 fact 16). So ``fee`` is zero here, and the payout built from the
report carries the fees; pass ``settled`` (the report's line for the same object) to book the settled
amount and fee instead. Object ids follow ``references``.

A connection that names its settlement currency holds every movement in another currency
(:func:`held_unless_settled_in`): Adyen converts it, and only the settlement report says to what, so the
report books it (decision 0008).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

from thred_bridge.domain.money import Money, MoneyError
from thred_bridge.domain.movements import (
    Charge,
    DisputeCredit,
    DisputeDebit,
    Movement,
    Party,
    Payout,
    Refund,
    RefundStatus,
)
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.batch import BatchLine
from thred_bridge.processors.adyen.currency import from_adyen
from thred_bridge.processors.adyen.notification import NotificationItem
from thred_bridge.processors.adyen.references import DISPUTE_STAGE_BY_EVENT_CODE, dispute_object_id

PROCESSOR = "adyen"

DISPUTE_DEBIT_CODES = frozenset({"CHARGEBACK", "SECOND_CHARGEBACK", "PREARBITRATION_LOST"})
DISPUTE_CREDIT_CODES = frozenset({"CHARGEBACK_REVERSED", "PREARBITRATION_WON"})

_ADDRESS_FIELDS = (
    ("address_line1", "billingAddress.street"),
    ("address_line2", "billingAddress.houseNumberOrName"),
    ("city", "billingAddress.city"),
    ("state", "billingAddress.stateOrProvince"),
    ("postal_code", "billingAddress.postalCode"),
    ("country", "billingAddress.country"),
)


def text_of(value: object) -> str | None:
    if isinstance(value, str) and value.strip() and value.strip() != "null":
        return value.strip()
    return None


def billing_key(email: str) -> str:
    """``billing_`` + the first 16 hex digits of the SHA-256 of the trimmed, lower-cased e-mail (as Stripe's)."""
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return f"billing_{digest[:16]}"


def to_party(additional_data: Mapping[str, object]) -> Party:
    """Who paid, from the shopper fields Adyen adds when the webhook's "shopper details" settings are on.

    ``shopperReference`` (the merchant's own customer id) → ``shopper_<ref>``; else ``shopperEmail`` →
    ``billing_<digest>``; else the connection's walk-in customer.
    """
    ad = additional_data
    reference = text_of(ad.get("shopperReference")) or text_of(ad.get("tokenization.shopperReference"))
    email = text_of(ad.get("shopperEmail"))
    if reference is None and email is None:
        return Party("walkin")
    first, last = text_of(ad.get("shopperName.firstName")), text_of(ad.get("shopperName.lastName"))
    name = text_of(ad.get("shopperName")) or (" ".join(p for p in (first, last) if p) or None)
    fields: dict[str, str | None] = {ours: text_of(ad.get(theirs)) for ours, theirs in _ADDRESS_FIELDS}
    key = f"shopper_{reference}" if reference else billing_key(email or "")
    return Party(key=key, name=name, email=email, phone=text_of(ad.get("shopperTelephone")), **fields)


def money_of(item: NotificationItem) -> Money:
    """The item's ``amount`` as Money; TranslationError naming the item if it cannot be read exactly."""
    try:
        return from_adyen(item.amount_value, item.amount_currency)
    except MoneyError as exc:
        raise TranslationError(f"{_what(item)}: amount: {exc}") from exc


def _what(item: NotificationItem) -> str:
    return f"Adyen {item.event_code} {item.psp_reference}"


def _payment_reference(item: NotificationItem) -> str:
    if item.event_code == "AUTHORISATION":
        return item.psp_reference
    if item.original_reference is None:
        raise TranslationError(f"{_what(item)} names no originalReference (the payment)")
    return item.original_reference


def _metadata(item: NotificationItem, payment: str) -> dict[str, str]:
    metadata = {
        "adyen_psp_reference": payment,
        "adyen_event_code": item.event_code,
        "adyen_live": "true" if item.live else "false",
    }
    if item.psp_reference != payment:
        metadata["adyen_modification_psp_reference"] = item.psp_reference
    if item.merchant_reference:
        metadata["merchant_reference"] = item.merchant_reference
    return metadata


def _settled(item: NotificationItem, settled: BatchLine | None, kind: str, object_id: str) -> BatchLine | None:
    if settled is not None and (settled.kind != kind or settled.object_id != object_id):
        raise TranslationError(f"{_what(item)}: the given settlement line is {settled.kind} {settled.object_id}")
    return settled


def to_charge(item: NotificationItem, *, account: str | None = None, settled: BatchLine | None = None) -> Charge:
    """A successful CAPTURE (or AUTHORISATION of an immediately captured payment) → :class:`Charge`.

    The charge is the payment (object id: its pspReference). Without ``settled`` the amount is the webhook's
    and the fee zero (metadata ``fee_source: settlement_report``); with it, the report's gross and fee.
    """
    if item.event_code not in ("CAPTURE", "AUTHORISATION") or not item.success:
        raise TranslationError(f"{_what(item)} (success {item.success}) is not a successful capture")
    payment = _payment_reference(item)
    presented = money_of(item)
    line = _settled(item, settled, "payment", payment)
    amount, fee = (line.amount, line.fee) if line else (presented, Money.zero(presented.currency))
    if amount.minor <= 0:
        raise TranslationError(f"{_what(item)} is {amount.format()}, not a positive amount")
    metadata = _metadata(item, payment)
    metadata["fee_source"] = "settlement_report" if line is None else "settlement_report_applied"
    if amount != presented:
        metadata["presentment_amount"] = format(presented.to_decimal(), "f")
        metadata["presentment_currency"] = presented.currency
    ad = item.additional_data
    return Charge(
        processor=PROCESSOR,
        object_id=payment,
        amount=amount,
        fee=fee,
        occurred_at=item.event_date,
        customer=to_party(ad),
        description=item.merchant_reference or f"Adyen payment {payment}",
        method=item.payment_method or text_of(ad.get("paymentMethod")) or "unknown",
        reference=item.merchant_reference or payment,
        account=account,
        thred_invoice_id=text_of(ad.get("metadata.thred_invoice_id")),
        metadata=metadata,
    )


def to_refund(
    item: NotificationItem,
    *,
    account: str | None = None,
    status: RefundStatus = "succeeded",
    settled: BatchLine | None = None,
) -> Refund:
    """A REFUND (or CANCEL_OR_REFUND that refunded, or REFUND_FAILED with ``status="failed"``) → :class:`Refund`.

    The refund is the modification (object id: its pspReference), on the payment named by ``originalReference``.
    """
    charge_id = _payment_reference(item)
    amount = money_of(item)
    fee = Money.zero(amount.currency)
    line = _settled(item, settled, "refund", item.psp_reference)
    if line is not None:
        amount, fee = -line.amount, line.fee
    if amount.minor <= 0:
        raise TranslationError(f"{_what(item)} is {amount.format()}, not a positive refund")
    return Refund(
        processor=PROCESSOR,
        object_id=item.psp_reference,
        charge_id=charge_id,
        amount=amount,
        fee=fee,
        occurred_at=item.event_date,
        status=status,
        account=account,
        reason=item.reason if status != "succeeded" else None,
        metadata=_metadata(item, charge_id),
    )


def to_dispute(item: NotificationItem, *, account: str | None = None) -> DisputeDebit | DisputeCredit:
    """A chargeback stage → :class:`DisputeDebit` (money taken) or :class:`DisputeCredit` (money back).

    The dispute is its pspReference (shared by all its events) and stage; the payment is ``originalReference``.
    """
    stage = DISPUTE_STAGE_BY_EVENT_CODE.get(item.event_code)
    if stage is None or not item.success:
        raise TranslationError(f"{_what(item)} is not a dispute stage that moves money")
    charge_id = _payment_reference(item)
    amount = money_of(item)
    if amount.minor <= 0:
        raise TranslationError(f"{_what(item)} is {amount.format()}, not a positive amount")
    object_id = dispute_object_id(item.psp_reference, stage)
    zero = Money.zero(amount.currency)
    if item.event_code in DISPUTE_CREDIT_CODES:
        return DisputeCredit(PROCESSOR, object_id, charge_id, amount, zero, item.event_date, account)
    code = text_of(item.additional_data.get("chargebackReasonCode"))
    reason = text_of(item.reason) or code
    return DisputeDebit(PROCESSOR, object_id, charge_id, amount, zero, item.event_date, account, reason)


def held_unless_settled_in(moved: Sequence[Movement], settlement_currency: str | None) -> list[Movement]:
    """``moved``, each movement in another currency than ``settlement_currency`` marked held (its records
    wait for the settlement report's reading); all as they are when the connection names no currency."""
    if not settlement_currency:
        return list(moved)
    return [
        m if isinstance(m, Payout) or m.amount.currency == settlement_currency else replace(m, held=True) for m in moved
    ]


def to_movements(
    item: NotificationItem, *, immediate_capture: bool = False, account: str | None = None
) -> list[Movement]:
    """A verified item → the movements it books (often none). See the module docstring for the mapping."""
    code = item.event_code
    if not item.success:
        return []
    if code == "CAPTURE" or (code == "AUTHORISATION" and immediate_capture and item.amount_value != 0):
        return [to_charge(item, account=account)]
    if code == "REFUND":
        return [to_refund(item, account=account)]
    if code == "REFUND_FAILED":
        return [to_refund(item, account=account, status="failed")]
    if code == "CANCEL_OR_REFUND":
        action = text_of(item.additional_data.get("modification.action"))
        if action == "refund":
            return [to_refund(item, account=account)]
        if action == "cancel":
            return []
        raise TranslationError(f"{_what(item)}: modification.action is {action!r}, not refund or cancel")
    if code in DISPUTE_DEBIT_CODES or code in DISPUTE_CREDIT_CODES:
        return [to_dispute(item, account=account)]
    return []
