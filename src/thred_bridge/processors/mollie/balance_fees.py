"""Mollie balance transactions → the fee Mollie deducted from each payment. Pure: the caller fetches.

A balance transaction (``GET /v2/balances/{id}/transactions``, PROCESSORS.md §3.3) is one movement of the
balance: ``initialAmount`` (what was to move), ``deductions`` (what Mollie withheld: negative, optional)
and ``resultAmount`` = initial + deductions. For a ``payment`` (and a ``capture`` of an authorised
payment) the deductions are the payment's fee, rounded by Mollie to a real amount as the money came in;
Mollie's docs: "any differences between these realtime rounded amounts and the final invoice will be
compensated when the invoice is generated" (the settlement's 4-decimal costs are that final figure, and
``translate_settlements`` carries the difference on the payout).

Shapes accepted, since the docs disagree (§6): ``resource`` ``balance_transaction`` or
``balance-transaction``; ``context`` flat (``{"paymentId": …}``, the docs' examples) or nested per type
(``{"payment": {"paymentId": …}}``, the spec's schema).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from thred_bridge.domain.money import Money, MoneyError
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.fields import id_of, is_mollie_id, text_of, time_of
from thred_bridge.processors.mollie.money import fee_of_deductions, parse_amount

RESOURCES = frozenset({"balance_transaction", "balance-transaction"})
FEE_TYPES = frozenset({"payment", "capture"})
"""Transaction types whose deductions are the fee of the payment in their context."""


@dataclass(frozen=True, slots=True)
class PaymentFee:
    """What one ``payment``/``capture`` transaction deducted from the payment it names."""

    transaction_id: str
    payment_id: str
    fee: Money
    created_at: datetime


def context_value(transaction: Mapping[str, Any], key: str) -> object:
    """``context.<key>``, flat or one level down (``context.<type>.<key>``); None when absent."""
    context = transaction.get("context")
    if not isinstance(context, Mapping):
        return None
    if key in context:
        return context[key]
    for nested in context.values():
        if isinstance(nested, Mapping) and key in nested:
            return nested[key]
    return None


def created_of(transaction: Mapping[str, Any]) -> datetime:
    """The transaction's ``createdAt``."""
    return time_of(transaction.get("createdAt"), f"Mollie balance transaction {transaction.get('id')!r} createdAt")


def payment_fee(transaction: Mapping[str, Any]) -> PaymentFee | None:
    """The fee a ``payment`` or ``capture`` transaction deducted (positive), or None for any other type.

    Raises TranslationError for a transaction that cannot be read, names no payment, or whose
    ``resultAmount`` is not ``initialAmount + deductions``.
    """
    resource = transaction.get("resource", "balance_transaction")
    if resource not in RESOURCES:
        raise TranslationError(f"not a Mollie balance transaction: resource {resource!r}"[:200])
    transaction_id = id_of(transaction.get("id"), "baltr", "Mollie balance transaction id")
    if text_of(transaction.get("type")) not in FEE_TYPES:
        return None
    what = f"Mollie balance transaction {transaction_id}"
    payment_id = context_value(transaction, "paymentId")
    if not is_mollie_id(payment_id, "tr"):
        raise TranslationError(f"{what} ({transaction.get('type')}) names no payment: {payment_id!r}"[:200])
    try:
        initial = parse_amount(transaction.get("initialAmount"), f"{what} initialAmount")
        raw = transaction.get("deductions")
        fee = Money.zero(initial.currency) if raw is None else fee_of_deductions(raw, f"{what} deductions")
        result = transaction.get("resultAmount")
        if result is not None and parse_amount(result, f"{what} resultAmount") != initial - fee:
            raise TranslationError(f"{what}: resultAmount is not initialAmount + deductions")
    except MoneyError as exc:
        raise TranslationError(str(exc)) from exc
    return PaymentFee(transaction_id, payment_id, fee, created_of(transaction))


def payment_fees(transactions: Iterable[Mapping[str, Any]]) -> dict[str, Money]:
    """Payment id → the total its ``payment`` and ``capture`` transactions deducted (each transaction
    counted once, however often it is listed)."""
    seen: set[str] = set()
    fees: dict[str, Money] = {}
    for transaction in transactions:
        found = payment_fee(transaction)
        if found is None or found.transaction_id in seen:
            continue
        seen.add(found.transaction_id)
        held = fees.get(found.payment_id)
        fees[found.payment_id] = found.fee if held is None else held + found.fee
    return fees
