"""Stripe JSON → the bridge's movements. Pure: the caller fetches, this only reads.

A Stripe charge becomes a :class:`Charge` whose amount and fee come from its balance transaction,
in the settlement currency (PROCESSORS.md §4 facts 5 and 6): the charge's own ``amount`` is in the
presentment currency and carries no fee. The presentment amount and the exchange rate travel in
``metadata`` when the two currencies differ.

Refunds and disputes are in ``translate_refunds``, payouts in ``translate_payouts``; the small readers
they share (``id_of``, ``money_of``, ``time_of``, ``text_of``) live here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from thred_bridge.domain.money import Money, MoneyError
from thred_bridge.domain.movements import Charge, Party
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.currency import from_stripe

PROCESSOR = "stripe"

# Balance-transaction types a charge can settle as: ``charge`` for cards and most methods,
# ``payment`` for some local methods (balance_transaction.py ``type`` docstring in stripe-python).
CHARGE_BT_TYPES = frozenset({"charge", "payment"})


def id_of(value: object) -> str | None:
    """The id of an expandable field: the string itself, or the expanded object's ``id``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        inner = value.get("id")
        return inner if isinstance(inner, str) and inner else None
    return None


def charge_id_of_payment_intent(pi: Mapping[str, Any]) -> str | None:
    """The charge a PaymentIntent settled with: ``latest_charge`` (id or expanded object); on API
    versions before 2022-11-15, ``charges.data[0]`` (newest first)."""
    latest = id_of(pi.get("latest_charge"))
    if latest:
        return latest
    charges = pi.get("charges")
    data = charges.get("data") if isinstance(charges, Mapping) else None
    if isinstance(data, list) and data:
        return id_of(data[0])
    return None


def balance_transaction_id(charge: Mapping[str, Any]) -> str:
    """The id of the charge's balance transaction, to fetch it.

    Raises NotReadyError while it is null: on API versions from 2024-04-10 capture is asynchronous,
    so ``charge.succeeded`` can arrive before Stripe has booked the money and known the fee (fact 5).
    """
    txn = id_of(charge.get("balance_transaction"))
    if txn is None:
        raise NotReadyError(f"Stripe charge {charge.get('id')} has no balance transaction yet (the fee is not known)")
    return txn


def text_of(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _address(party: dict[str, str | None], address: object) -> None:
    if not isinstance(address, Mapping):
        return
    for ours, theirs in (
        ("address_line1", "line1"),
        ("address_line2", "line2"),
        ("city", "city"),
        ("state", "state"),
        ("postal_code", "postal_code"),
        ("country", "country"),
    ):
        party[ours] = text_of(address.get(theirs))


def billing_key(email: str) -> str:
    """``billing_`` + the first 16 hex digits of the SHA-256 of the trimmed, lower-cased e-mail."""
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return f"billing_{digest[:16]}"


def to_party(charge: Mapping[str, Any], customer: Mapping[str, Any] | None) -> Party:
    """Who paid: the Stripe customer, else the billing e-mail, else the connection's walk-in customer.

    A charge that names a ``cus_…`` always gets that key, even when the customer object was not
    fetched (then name and e-mail come from ``billing_details``), so one customer never splits in two.
    """
    charge_customer = charge.get("customer")
    if customer is None and isinstance(charge_customer, Mapping):
        customer = charge_customer
    customer_id = id_of(charge_customer)
    billing = charge.get("billing_details")
    billing = billing if isinstance(billing, Mapping) else {}
    fields: dict[str, str | None] = {}
    if customer is not None:
        given = id_of(customer)
        if given is None:
            raise TranslationError(f"Stripe charge {charge.get('id')}: the customer object has no id")
        if customer_id is not None and given != customer_id:
            raise TranslationError(
                f"Stripe charge {charge.get('id')} belongs to {customer_id}, not to the given {given}"
            )
        # A deleted customer is {"id", "object", "deleted": true}: the key survives, the details don't.
        fields = {"name": text_of(customer.get("name")), "email": text_of(customer.get("email"))}
        fields["phone"] = text_of(customer.get("phone"))
        _address(fields, customer.get("address"))
        return Party(key=given, **fields)
    email = text_of(billing.get("email"))
    if customer_id is None and email is None:
        return Party("walkin")
    fields = {"name": text_of(billing.get("name")), "email": email, "phone": text_of(billing.get("phone"))}
    _address(fields, billing.get("address"))
    return Party(key=customer_id or billing_key(email or ""), **fields)


def _method(charge: Mapping[str, Any]) -> str:
    details = charge.get("payment_method_details")
    kind = details.get("type") if isinstance(details, Mapping) else None
    if isinstance(kind, str) and kind:
        return kind
    # Charges made before payment_method_details existed (2019) paid with a legacy ``source``: a Card
    # object (``object: "card"``) or a Source whose ``type`` names the method. Anything else is unknown.
    source = charge.get("source")
    if isinstance(source, Mapping):
        if source.get("object") == "card":
            return "card"
        legacy = source.get("type")
        if isinstance(legacy, str) and legacy:
            return legacy
    return "unknown"


def decimal_text(money: Money) -> str:
    return format(money.to_decimal(), "f")


def rate_text(rate: object) -> str | None:
    """The BT's ``exchange_rate`` as text: a float prints as its shortest round-trip form, which is the
    JSON number Stripe sent; a string or Decimal (a caller that parsed floats exactly) is kept as is."""
    if rate is None or isinstance(rate, bool):
        return None
    if isinstance(rate, str | Decimal | int | float):
        return str(rate)
    raise TranslationError(f"exchange_rate is not a number: {rate!r}")


def fee_summary(bt: Mapping[str, Any]) -> str | None:
    totals: dict[str, int] = {}
    details = bt.get("fee_details")
    for item in details if isinstance(details, list) else []:
        if not isinstance(item, Mapping):
            continue
        kind, amount = item.get("type"), item.get("amount")
        if isinstance(kind, str) and isinstance(amount, int) and not isinstance(amount, bool):
            totals[kind] = totals.get(kind, 0) + amount
    return ";".join(f"{k}={v}" for k, v in totals.items()) or None


def money_of(amount: object, currency: object, what: str) -> Money:
    """A Stripe integer amount in ``currency`` → Money; TranslationError naming ``what`` if it cannot be read."""
    if not isinstance(currency, str):
        raise TranslationError(f"{what} has no currency")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TranslationError(f"{what} is not an integer: {amount!r}")
    try:
        return from_stripe(amount, currency)
    except MoneyError as exc:
        raise TranslationError(f"{what}: {exc}") from exc


def time_of(value: object, what: str) -> datetime:
    """A Stripe Unix timestamp → an aware UTC datetime; TranslationError naming ``what`` if there is none."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TranslationError(f"{what} has no timestamp")
    return datetime.fromtimestamp(value, UTC)


def _money(amount: object, currency: object, what: str, charge_id: str) -> Money:
    return money_of(amount, currency, f"Stripe charge {charge_id}: {what}")


def _check_settled(charge: Mapping[str, Any], charge_id: str) -> None:
    status = charge.get("status")
    if status == "pending":
        raise NotReadyError(f"Stripe charge {charge_id} is still pending")
    if status != "succeeded" or charge.get("paid") is not True:
        raise TranslationError(
            f"Stripe charge {charge_id} did not succeed (status {status!r}, paid {charge.get('paid')!r})"
        )
    if charge.get("captured") is not True:
        raise TranslationError(f"Stripe charge {charge_id} is authorised but not captured")


def _check_balance_transaction(charge: Mapping[str, Any], bt: Mapping[str, Any], charge_id: str) -> None:
    wanted = balance_transaction_id(charge)
    bt_id = id_of(bt.get("id"))
    if bt_id != wanted:
        raise TranslationError(f"Stripe charge {charge_id} settled as {wanted}, not as the given {bt_id}")
    kind = bt.get("type")
    if kind not in CHARGE_BT_TYPES:
        raise TranslationError(f"Stripe balance transaction {bt_id} has type {kind!r}, not a charge or payment")
    source = id_of(bt.get("source"))
    if source is not None and source != charge_id:
        raise TranslationError(f"Stripe balance transaction {bt_id} is for {source}, not for {charge_id}")


def to_charge(
    charge: Mapping[str, Any],
    balance_transaction: Mapping[str, Any],
    *,
    customer: Mapping[str, Any] | None,
    account: str | None,
) -> Charge:
    """A succeeded, captured Stripe charge and its balance transaction → :class:`Charge`.

    Raises NotReadyError while Stripe has not booked it (no balance transaction yet, or pending), and
    TranslationError for a charge that can never become a payment (failed, uncaptured, wrong BT).
    """
    charge_id = id_of(charge.get("id"))
    if charge_id is None or charge.get("object", "charge") != "charge":
        raise TranslationError(f"not a Stripe charge: object {charge.get('object')!r}, id {charge.get('id')!r}")
    _check_settled(charge, charge_id)
    bt = balance_transaction
    _check_balance_transaction(charge, bt, charge_id)
    amount = _money(bt.get("amount"), bt.get("currency"), "balance transaction amount", charge_id)
    fee = _money(bt.get("fee"), bt.get("currency"), "balance transaction fee", charge_id)
    if amount.minor <= 0:
        raise TranslationError(f"Stripe charge {charge_id} settled as {amount.format()}, not a positive amount")

    metadata: dict[str, str] = {"stripe_charge_id": charge_id, "stripe_balance_transaction": str(bt["id"])}
    payment_intent = id_of(charge.get("payment_intent"))
    if payment_intent:
        metadata["stripe_payment_intent"] = payment_intent
    presentment_currency = charge.get("currency")
    if isinstance(presentment_currency, str) and presentment_currency.upper() != amount.currency:
        captured = charge.get("amount_captured")
        raw = captured if isinstance(captured, int) and captured > 0 else charge.get("amount")
        presented = _money(raw, presentment_currency, "charge amount", charge_id)
        metadata["presentment_amount"] = decimal_text(presented)
        metadata["presentment_currency"] = presented.currency
        rate = rate_text(bt.get("exchange_rate"))
        if rate is not None:
            metadata["exchange_rate"] = rate
    fees = fee_summary(bt)
    if fees:
        metadata["fee_details"] = fees

    created = charge.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise TranslationError(f"Stripe charge {charge_id} has no created timestamp")
    charge_metadata = charge.get("metadata")
    invoice = charge_metadata.get("thred_invoice_id") if isinstance(charge_metadata, Mapping) else None
    return Charge(
        processor=PROCESSOR,
        object_id=charge_id,
        amount=amount,
        fee=fee,
        occurred_at=datetime.fromtimestamp(created, UTC),
        customer=to_party(charge, customer),
        description=text_of(charge.get("description")) or f"Stripe charge {charge_id}",
        method=_method(charge),
        reference=payment_intent or charge_id,
        account=account,
        thred_invoice_id=text_of(invoice),
        metadata=metadata,
    )
