"""Money in: customers, invoices and invoice payments for charges (and for disputes won back)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from thred_bridge.domain.ids import customer_external_id, external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeCredit, Party
from thred_bridge.domain.record_types import AFTER, Lookup, Record, Ref, when


def customer_record(processor: str, party: Party, account: str | None) -> Record:
    ext = customer_external_id(processor, party.key, account)
    body: dict[str, Any] = {"external_id": ext, "individual_name": party.display_name, "status": "active"}
    optional = {
        "email": party.email,
        "mobile_phone": party.phone,
        "address_line1": party.address_line1,
        "address_line2": party.address_line2,
        "city": party.city,
        "state_county": party.state,
        "postal_code": party.postal_code,
        "country": party.country,
    }
    body.update({k: v for k, v in optional.items() if v})
    body["metadata"] = {"processor": processor, "processor_customer": party.key}
    return Record("customer", ext, body)


def invoice_record(
    ext: str,
    customer: Ref | Lookup,
    amount: Money,
    at: datetime,
    memo: str,
    line_ext: str,
    metadata: Mapping[str, str],
) -> Record:
    """One invoice with one line for the whole amount, for a customer to wait for or to read from Thred."""
    body = {
        "external_id": ext,
        "customer_id": None,
        "sent_at": when(at),
        "due_at": when(at),
        "currency": amount.currency,
        "invoice_type": "invoice",
        "memo": memo,
        "line_items": [{"external_id": line_ext, "description": memo, "quantity": 1, "unit_price": amount.minor}],
        "metadata": dict(metadata),
    }
    if isinstance(customer, Ref):
        return Record("invoice", ext, body, parents={"customer_id": customer})
    return Record("invoice", ext, body, lookups={"customer_id": customer})


def payment_record(
    ext: str,
    amount: Money,
    at: datetime,
    *,
    customer: Ref | Lookup,
    invoice: Ref | str,
    method: str,
    reference: str,
    fee: Money | None,
    processor: str,
    metadata: Mapping[str, str],
) -> Record:
    """An invoice payment of ``amount`` allocated in full to one invoice (a record to wait for, or a Thred id)."""
    body: dict[str, Any] = {
        "external_id": ext,
        "customer_id": None,
        "total_amount_cents": amount.minor,
        "currency": amount.currency,
        "allocations": [{"invoice_id": invoice if isinstance(invoice, str) else None, "amount_cents": amount.minor}],
        "payment_date": at.date().isoformat(),
        "payment_method": method,
        "payment_reference": reference,
        "processing_fee_cents": fee.minor if fee else 0,
        "payment_processor": processor,
        "metadata": dict(metadata),
    }
    parents: dict[str, Ref] = {}
    lookups: dict[str, Lookup] = {}
    if isinstance(customer, Ref):
        parents["customer_id"] = customer
    else:
        lookups["customer_id"] = customer
    if isinstance(invoice, Ref):
        parents["allocations.0.invoice_id"] = invoice
    return Record("payment", ext, body, parents=parents, idempotency_key=ext, lookups=lookups)


def charge_records(charge: Charge) -> list[Record]:
    """Customer → invoice (one line for the charge) → invoice payment with the processor's fee.

    An invoice-first merchant names the Thred invoice a charge pays (``thred_invoice_id``): then only the
    payment is booked, on that invoice, for that invoice's customer (read from Thred when it is sent), and
    the charge's invoice record adopts the named invoice (:func:`adopted_invoice`).
    """
    ext = external_id(charge.processor, charge.object_id)
    metadata = {"processor": charge.processor, **charge.metadata}
    if charge.account:
        metadata["processor_account"] = charge.account

    def paying(customer: Ref | Lookup, invoice: Ref | str) -> Record:
        return payment_record(
            ext, charge.amount, charge.occurred_at, customer=customer, invoice=invoice, method=charge.method,
            reference=charge.reference or charge.object_id, fee=charge.fee, processor=charge.processor,
            metadata=metadata,
        )  # fmt: skip

    if charge.thred_invoice_id:
        payment = paying(customer_of(charge), charge.thred_invoice_id)
        # sent once the invoice is read: a wrong id fails one record, and the payment waits behind it
        after = {**payment.parents, AFTER + "invoice": Ref("invoice", ext)}
        return [adopted_invoice(ext, charge.thred_invoice_id), dataclasses.replace(payment, parents=after)]
    customer = customer_record(charge.processor, charge.customer, charge.account)
    cust = Ref("customer", customer.external_id)
    line = external_id(charge.processor, charge.object_id, "line")
    invoice = invoice_record(ext, cust, charge.amount, charge.occurred_at, charge.description, line, metadata)
    payment = paying(cust, Ref("invoice", ext))
    return [customer, invoice, payment]


def adopted_invoice(ext: str, thred_invoice_id: str) -> Record:
    """The charge's invoice record ``ext`` standing for an existing Thred invoice: nothing is created, the
    dispatcher reads it from Thred (a missing or another business's invoice fails with Thred's 404). A
    refund or dispute that knows only the charge's external id (an Adyen REFUND, whatever order it came in)
    waits for it and lands on that invoice; the first record of ``ext`` queued wins (the outbox keeps one)."""
    return Record("invoice", ext, {"id": thred_invoice_id}, op="adopt")


def customer_of(charge: Charge) -> Ref | Lookup:
    """The Thred customer a charge was booked for (an invoice-first charge's: its invoice's)."""
    if charge.thred_invoice_id:
        return Lookup("invoice", charge.thred_invoice_id, "customer.id")
    return Ref("customer", customer_external_id(charge.processor, charge.customer.key, charge.account))


def dispute_credit_records(credit: DisputeCredit, customer: Ref | Lookup) -> list[Record]:
    """The disputed amount came back: a new invoice and payment for the charge's customer."""
    ext = external_id(credit.processor, credit.object_id, "reinstated")
    memo = f"Dispute {credit.object_id} reinstated (charge {credit.charge_id})"
    metadata = {"processor": credit.processor, "dispute": credit.object_id, "charge": credit.charge_id}
    line = external_id(credit.processor, credit.object_id, "reinstated_line")
    invoice = invoice_record(ext, customer, credit.amount, credit.occurred_at, memo, line, metadata)
    payment = payment_record(
        ext, credit.amount, credit.occurred_at, customer=customer, invoice=Ref("invoice", ext),
        method="dispute_reversal", reference=credit.object_id, fee=None, processor=credit.processor,
        metadata={"processor": credit.processor, "fee_returned_cents": str(credit.fee_returned.minor)},
    )  # fmt: skip
    return [invoice, payment]
