"""The simulated Stripe's units and object shapes: minor units, fees, and the JSON of balance
transactions, charges, PaymentIntents, customers, refunds, disputes and payouts.

Written again here, not imported from ``processors/stripe``, so that a mistake in the bridge's Stripe
code is not mirrored by its stand-in. Shapes follow Stripe's API reference fixtures (stripe/openapi
``fixtures3.json``) and the captures in PROCESSORS.md's examples.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

API_VERSION = "2026-10-28.endive"
Json = dict[str, Any]
DAY = 86400

# fmt: off
_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
                           "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
# fmt: on
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
ADDRESS = ("city", "country", "line1", "line2", "postal_code", "state")


def exponent(currency: str) -> int:
    """Stripe's exponent: zero-decimal list, three-decimal list, else 2 (ISK included)."""
    code = currency.lower()
    return 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2


def step(currency: str) -> int:
    """The step Stripe amounts move in: ISK in whole krónur (100), three-decimal in 10s, else 1."""
    code = currency.lower()
    return 100 if code == "isk" else 10 if code in _THREE_DECIMAL else 1


def round_to(value: Decimal, step: int, rounding: str) -> int:
    return int((value / step).quantize(Decimal(1), rounding=rounding)) * step


def convert(amount: int, currency: str, settle_in: str, rate: str | None) -> int:
    """``amount`` Stripe units of ``currency`` in ``settle_in`` at ``rate`` (None: the same currency)."""
    if rate is None:
        return amount
    shift = Decimal(10) ** (exponent(settle_in) - exponent(currency))
    return round_to(amount * Decimal(rate) * shift, step(settle_in), ROUND_HALF_EVEN)


def default_fee(amount: int, currency: str) -> int:
    """A Stripe-like fee on ``amount`` (Stripe units): 1.4% + 0.25 for EUR, 3.6% for zero-decimal
    currencies, else 2.9% + 0.30; rounded half up to the currency's step."""
    code = currency.lower()
    if code == "eur":
        raw = Decimal(amount) * Decimal("0.014") + 25
    elif code in _ZERO_DECIMAL:
        raw = Decimal(amount) * Decimal("0.036")
    else:
        raw = Decimal(amount) * Decimal("0.029") + Decimal(30) * 10 ** (exponent(code) - 2)
    return round_to(raw, step(code), ROUND_HALF_UP)


def mask_key(key: str) -> str:
    """``sk_test_****abcd``, the way Stripe quotes a key back."""
    prefix = key.rpartition("_")[0]
    return f"{prefix}_****{key[-4:]}" if prefix and len(key) > 12 else "****"


def fee_lines(
    fee: int, currency: str, *, tax: int | None = None, description: str = "Stripe processing fees"
) -> list[Json]:
    """``fee_details``: the Stripe fee, and the VAT part of it as its own ``tax`` line."""
    if not fee:
        return []
    line = {"application": None, "currency": currency}
    details = [{**line, "amount": fee - (tax or 0), "description": description, "type": "stripe_fee"}]
    if tax:
        details.append({**line, "amount": tax, "description": "VAT", "type": "tax"})
    return details


def balance_transaction(
    txn_id: str,
    amount: int,
    currency: str,
    *,
    fee: int,
    details: list[Json],
    type: str,
    category: str,
    source: str | None,
    at: int,
    rate: str | None = None,
    description: str | None = None,
    status: str = "pending",
) -> Json:
    """A balance transaction: ``amount`` and ``fee`` in the balance (settlement) currency."""
    return {
        "id": txn_id, "object": "balance_transaction", "amount": amount,
        "available_on": at + 2 * DAY, "balance_type": "payments", "created": at, "currency": currency,
        "description": description, "exchange_rate": float(rate) if rate is not None else None, "fee": fee,
        "fee_details": details, "net": amount - fee, "reporting_category": category, "source": source,
        "status": status, "type": type,
    }  # fmt: skip


def customer_object(customer_id: str, at: int, invoice_prefix: str) -> Json:
    customer: Json = dict.fromkeys(("currency", "default_source", "description", "shipping", "test_clock"))
    customer.update(id=customer_id, object="customer", balance=0, created=at, delinquent=False)
    customer.update(livemode=False, metadata={}, preferred_locales=[], tax_exempt="none")
    customer["invoice_prefix"] = invoice_prefix
    customer["invoice_settings"] = {"custom_fields": None, "default_payment_method": None, "footer": None}
    customer["next_invoice_sequence"] = 1
    return customer


def charge_object(ids: dict[str, str], amount: int, currency: str, method: str, at: int) -> Json:
    """A succeeded, captured charge (without its card details, outcome score and receipt URL)."""
    charge: Json = dict.fromkeys(
        ("application", "application_fee", "application_fee_amount", "failure_balance_transaction")
    )
    charge.update(dict.fromkeys(("failure_code", "failure_message", "on_behalf_of", "receipt_number")))
    charge.update(dict.fromkeys(("review", "shipping", "source_transfer", "statement_descriptor")))
    charge.update(dict.fromkeys(("statement_descriptor_suffix", "transfer_data", "transfer_group")))
    charge.update(id=ids["ch"], object="charge", amount=amount, amount_captured=amount, amount_refunded=0)
    charge.update(calculated_statement_descriptor="THRED DEMO", captured=True, created=at)
    charge.update(currency=currency, disputed=False, fraud_details={}, livemode=False, paid=True)
    charge.update(payment_intent=ids["pi"], payment_method=ids["pm"], refunded=False, status="succeeded")
    charge["billing_details"] = {"address": dict.fromkeys(ADDRESS), "email": None, "name": None}
    charge["billing_details"].update(phone=None, tax_id=None)
    charge["outcome"] = {"network_status": "approved_by_network", "reason": None, "risk_level": "normal"}
    charge["outcome"]["type"] = "authorized"
    charge["payment_method_details"] = {"type": method, method: {}}
    return charge


def payment_intent_object(ids: dict[str, str], charge: Json, method: str, secret: str) -> Json:
    intent: Json = dict.fromkeys(("application", "application_fee_amount", "canceled_at", "next_action"))
    intent.update(dict.fromkeys(("cancellation_reason", "last_payment_error", "on_behalf_of")))
    intent.update(dict.fromkeys(("transfer_data", "transfer_group")))
    intent.update(id=ids["pi"], object="payment_intent", amount=charge["amount"], amount_capturable=0)
    intent.update(amount_received=charge["amount"], capture_method="automatic_async", created=charge["created"])
    intent.update(client_secret=f"{ids['pi']}_secret_{secret}", confirmation_method="automatic")
    intent.update(currency=charge["currency"], customer=charge["customer"], description=charge["description"])
    intent.update(latest_charge=ids["ch"], livemode=False, metadata=dict(charge["metadata"]))
    intent.update(payment_method=ids["pm"], payment_method_types=[method], receipt_email=charge["receipt_email"])
    intent["status"] = "succeeded"
    return intent


def refund_object(refund_id: str, charge: Json, amount: int, txn_id: str | None, status: str, at: int) -> Json:
    refund: Json = dict.fromkeys(("customer", "receipt_number", "source_transfer_reversal", "transfer_reversal"))
    refund.update(id=refund_id, object="refund", amount=amount, balance_transaction=txn_id, charge=charge["id"])
    refund.update(created=at, currency=charge["currency"], metadata={}, payment_intent=charge["payment_intent"])
    refund.update(reason="requested_by_customer", status=status)
    refund["destination_details"] = {"card": {"type": "refund"}, "type": "card"}
    return refund


def dispute_object(dispute_id: str, charge: Json, reason: str, status: str, at: int) -> Json:
    """A dispute; its ``balance_transactions`` are filled in when it is read."""
    dispute: Json = {"id": dispute_id, "object": "dispute", "amount": charge["amount_captured"]}
    dispute.update(balance_transaction=None, balance_transactions=[], charge=charge["id"], created=at)
    dispute.update(currency=charge["currency"], is_charge_refundable=False, livemode=False, metadata={})
    dispute.update(payment_intent=charge["payment_intent"], reason=reason, status=status)
    dispute["evidence"] = dict.fromkeys(("customer_email_address", "customer_name", "uncategorized_text"))
    dispute["evidence_details"] = {"due_by": at + 7 * DAY, "has_evidence": False, "past_due": False}
    dispute["evidence_details"]["submission_count"] = 0
    return dispute


def payout_object(ids: dict[str, str], amount: int, currency: str, *, automatic: bool, status: str, at: int) -> Json:
    payout: Json = dict.fromkeys(("application_fee", "application_fee_amount", "failure_balance_transaction"))
    payout.update(dict.fromkeys(("failure_code", "failure_message", "original_payout", "reversed_by")))
    payout.update(id=ids["po"], object="payout", amount=amount, arrival_date=at + 2 * DAY, automatic=automatic)
    payout.update(balance_transaction=ids["txn"], created=at, currency=currency, description="STRIPE PAYOUT")
    payout.update(destination=ids["ba"], livemode=False, metadata={}, method="standard")
    payout.update(reconciliation_status="completed" if automatic else "not_applicable", source_type="card")
    payout.update(statement_descriptor=None, status=status, type="bank_account")
    payout["trace_id"] = {"status": "supported" if status == "paid" else "pending", "value": None}
    return payout
