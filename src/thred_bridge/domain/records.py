"""Movements → the Thred records that book them, in the order Thred needs.

A :class:`Record` is one Thred create request: its kind, its external id, its body in Thred's
field names, and ``parents`` — body fields that hold the Thred id of another record, named by
that record's (kind, external id). The outbox sends a record only once its parents are sent, and
fills those fields with their Thred ids then; so records wait for their parents whatever order the
processor's events arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from thred_bridge.domain.ids import customer_external_id, external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import (
    Charge,
    DisputeCredit,
    DisputeDebit,
    Movement,
    Party,
    Payout,
    PayoutItem,
    Refund,
)

Kind = Literal["customer", "invoice", "payment", "refund", "refund_payment", "payout"]
ORDER: tuple[Kind, ...] = ("customer", "invoice", "payment", "refund", "refund_payment", "payout")


@dataclass(frozen=True, slots=True)
class Ref:
    """A parent record, by kind and external id."""

    kind: Kind
    external_id: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """A body field read from an existing Thred record at send time (``field`` is a dotted path)."""

    kind: Kind
    thred_id: str
    field: str


@dataclass(frozen=True, slots=True)
class Record:
    """One Thred create request, waiting for ``parents`` (body path → parent)."""

    kind: Kind
    external_id: str
    body: Mapping[str, Any]
    parents: Mapping[str, Ref] = field(default_factory=dict)
    idempotency_key: str | None = None
    parent_path: Ref | None = None  # the record whose id is part of the URL (a refund payment's refund)
    op: Literal["create", "delete"] = "create"  # delete: remove the record named by parents["id"]
    updatable: bool = False  # a newer body replaces a stored one and is sent again (payouts)
    lookups: Mapping[str, Lookup] = field(default_factory=dict)  # body path → a field of a Thred record


def _iso(charge: Charge) -> str:
    return charge.occurred_at.isoformat().replace("+00:00", "Z")


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


def charge_records(charge: Charge) -> list[Record]:
    """Customer → invoice (one line for the charge) → invoice payment with the processor's fee.

    An invoice-first merchant names the Thred invoice a charge pays (``thred_invoice_id``): then only the
    payment is booked, on that invoice, for that invoice's customer (read from Thred when it is sent).
    """
    if charge.thred_invoice_id:
        return [_invoice_first_payment(charge, charge.thred_invoice_id)]
    customer = customer_record(charge.processor, charge.customer, charge.account)
    cust_ref = Ref("customer", customer.external_id)
    ext = external_id(charge.processor, charge.object_id)
    metadata = {"processor": charge.processor, **charge.metadata}
    if charge.account:
        metadata["processor_account"] = charge.account
    invoice = Record(
        "invoice",
        ext,
        {
            "external_id": ext,
            "customer_id": None,
            "sent_at": _iso(charge),
            "due_at": _iso(charge),
            "currency": charge.amount.currency,
            "invoice_type": "invoice",
            "memo": charge.description,
            "line_items": [
                {
                    "external_id": external_id(charge.processor, charge.object_id, "line"),
                    "description": charge.description,
                    "quantity": 1,
                    "unit_price": charge.amount.minor,
                }
            ],
            "metadata": metadata,
        },
        parents={"customer_id": cust_ref},
    )
    payment = Record(
        "payment",
        ext,
        {
            "external_id": ext,
            "customer_id": None,
            "total_amount_cents": charge.amount.minor,
            "currency": charge.amount.currency,
            "allocations": [{"invoice_id": None, "amount_cents": charge.amount.minor}],
            "payment_date": charge.occurred_at.date().isoformat(),
            "payment_method": charge.method,
            "payment_reference": charge.reference or charge.object_id,
            "processing_fee_cents": charge.fee.minor,
            "payment_processor": charge.processor,
            "metadata": metadata,
        },
        parents={"customer_id": cust_ref, "allocations.0.invoice_id": Ref("invoice", ext)},
        idempotency_key=ext,
    )
    return [customer, invoice, payment]


def _invoice_first_payment(charge: Charge, invoice_id: str) -> Record:
    ext = external_id(charge.processor, charge.object_id)
    metadata = {"processor": charge.processor, **charge.metadata}
    if charge.account:
        metadata["processor_account"] = charge.account
    return Record(
        "payment",
        ext,
        {
            "external_id": ext,
            "customer_id": None,
            "total_amount_cents": charge.amount.minor,
            "currency": charge.amount.currency,
            "allocations": [{"invoice_id": invoice_id, "amount_cents": charge.amount.minor}],
            "payment_date": charge.occurred_at.date().isoformat(),
            "payment_method": charge.method,
            "payment_reference": charge.reference or charge.object_id,
            "processing_fee_cents": charge.fee.minor,
            "payment_processor": charge.processor,
            "metadata": metadata,
        },
        idempotency_key=ext,
        lookups={"customer_id": Lookup("invoice", invoice_id, "customer.id")},
    )


def _when(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def refund_method(processor: str) -> str:
    """Thred's refund-payment method for money returned through a processor."""
    return "STRIPE" if processor == "stripe" else "CREDIT_CARD"


def _refund_pair(
    processor: str, ext: str, invoice: str | Ref, amount: Money, fee: Money, at: datetime, memo: str, reference: str
) -> list[Record]:
    """A refund on the charge's invoice (by Thred id for an invoice-first charge), and the refund payment."""
    refund = Record(
        "refund",
        ext,
        {
            "external_id": ext,
            "invoice_id": invoice if isinstance(invoice, str) else None,
            "method": refund_method(processor),
            "amount_cents": amount.minor,
            "completed_at": _when(at),
            "processor": processor,
            "memo": memo,
            "reference_number": reference,
        },
        parents={} if isinstance(invoice, str) else {"invoice_id": invoice},
    )
    payment = Record(
        "refund_payment",
        ext,
        {
            "external_id": ext,
            "amount_cents": amount.minor,
            "method": refund_method(processor),
            "completed_at": _when(at),
            "processor": processor,
            "refund_processing_fee_cents": max(fee.minor, 0),
            "memo": memo,
        },
        parent_path=Ref("refund", ext),
    )
    return [refund, payment]


def refund_records(refund: Refund, invoice_id: str | None = None) -> list[Record]:
    """A booked refund; one that failed or was canceled removes its refund payment instead."""
    ext = external_id(refund.processor, refund.object_id)
    if refund.status in ("failed", "canceled"):
        return [
            Record(
                "refund_payment",
                external_id(refund.processor, refund.object_id, "void"),
                {"reason": f"refund {refund.status}"},
                parents={"id": Ref("refund_payment", ext)},
                parent_path=Ref("refund", ext),
                op="delete",
            )
        ]
    memo = refund.reason or f"{refund.processor.title()} refund {refund.object_id}"
    invoice = invoice_id or Ref("invoice", external_id(refund.processor, refund.charge_id))
    return _refund_pair(
        refund.processor, ext, invoice, refund.amount, refund.fee, refund.occurred_at, memo, refund.object_id
    )


def dispute_debit_records(debit: DisputeDebit, invoice_id: str | None = None) -> list[Record]:
    """The disputed amount went back to the cardholder: a refund and refund payment, the fee on it."""
    ext = external_id(debit.processor, debit.object_id)
    memo = f"Dispute {debit.object_id}" + (f" ({debit.reason})" if debit.reason else "")
    invoice = invoice_id or Ref("invoice", external_id(debit.processor, debit.charge_id))
    return _refund_pair(
        debit.processor, ext, invoice, debit.amount, debit.fee, debit.occurred_at, memo, debit.object_id
    )


def dispute_credit_records(credit: DisputeCredit, customer: str | Lookup) -> list[Record]:
    """The disputed amount came back: a new invoice and payment for the charge's customer."""
    ext = external_id(credit.processor, credit.object_id, "reinstated")
    memo = f"Dispute {credit.object_id} reinstated (charge {credit.charge_id})"
    cust = Ref("customer", customer) if isinstance(customer, str) else None
    lookups = {} if isinstance(customer, str) else {"customer_id": customer}
    invoice = Record(
        "invoice",
        ext,
        {
            "external_id": ext,
            "customer_id": None,
            "sent_at": _when(credit.occurred_at),
            "due_at": _when(credit.occurred_at),
            "currency": credit.amount.currency,
            "invoice_type": "invoice",
            "memo": memo,
            "line_items": [
                {
                    "external_id": external_id(credit.processor, credit.object_id, "reinstated_line"),
                    "description": memo,
                    "quantity": 1,
                    "unit_price": credit.amount.minor,
                }
            ],
            "metadata": {"processor": credit.processor, "dispute": credit.object_id, "charge": credit.charge_id},
        },
        parents={"customer_id": cust} if cust else {},
        lookups=lookups,
    )
    payment = Record(
        "payment",
        ext,
        {
            "external_id": ext,
            "customer_id": None,
            "total_amount_cents": credit.amount.minor,
            "currency": credit.amount.currency,
            "allocations": [{"invoice_id": None, "amount_cents": credit.amount.minor}],
            "payment_date": credit.occurred_at.date().isoformat(),
            "payment_method": "dispute_reversal",
            "payment_reference": credit.object_id,
            "processing_fee_cents": 0,
            "payment_processor": credit.processor,
            "metadata": {"processor": credit.processor, "fee_returned_cents": str(credit.fee_returned.minor)},
        },
        parents={**({"customer_id": cust} if cust else {}), "allocations.0.invoice_id": Ref("invoice", ext)},
        lookups=lookups,
        idempotency_key=ext,
    )
    return [invoice, payment]


@dataclass(frozen=True, slots=True)
class PayoutTotals:
    """A payout in Thred's terms: gross payments − refunds − fees − other outflows + credits = paid out."""

    gross: int
    refunds: int
    fees: int
    outflows: int
    credits: int
    payments: tuple[Ref, ...]
    refund_payments: tuple[Ref, ...]

    @property
    def net(self) -> int:
        return self.gross - self.refunds - self.fees - self.outflows + self.credits


def payout_item_ref(processor: str, item: PayoutItem) -> tuple[str, Ref] | None:
    """The Thred record an item settles: ("payment" | "refund_payment", ref), or None for a bare fee."""
    if item.kind == "charge":
        return "payment", Ref("payment", external_id(processor, item.object_id))
    if item.kind == "dispute_credit":
        return "payment", Ref("payment", external_id(processor, item.object_id, "reinstated"))
    if item.kind in ("refund", "dispute_debit"):
        return "refund_payment", Ref("refund_payment", external_id(processor, item.object_id))
    return None


def payout_totals(payout: Payout) -> PayoutTotals:
    gross = refunds = fees = outflows = credits = 0
    payments: list[Ref] = []
    refund_payments: list[Ref] = []
    for item in payout.items:
        fees += item.fee.minor
        target = payout_item_ref(payout.processor, item)
        if target is not None and target[0] == "payment":
            gross += item.amount.minor
            payments.append(target[1])
        elif target is not None:
            refunds += -item.amount.minor
            refund_payments.append(target[1])
        elif item.kind == "fee":
            fees += -item.amount.minor
        elif item.amount.minor < 0:
            outflows += -item.amount.minor
        else:
            credits += item.amount.minor
    return PayoutTotals(gross, refunds, fees, outflows, credits, tuple(payments), tuple(refund_payments))


def payout_record(payout: Payout) -> Record:
    """One Thred payout, upserted by external id, listing the Thred ids of what it settles.

    Thred has no field for money that came in without a payment (a returned fee, a reserve released, a
    failed payout credited back): such credits lower the fees first, then the other outflows; what is
    still left shows as the payout's variance, with a memo, and ``reconcile`` flags it.
    """
    if payout.status in ("failed", "canceled"):
        return _unpaid_payout_record(payout)
    t = payout_totals(payout)
    fee_cents, left = max(t.fees, 0), t.credits + max(-t.fees, 0)  # fees given back net to a credit
    absorbed = min(fee_cents, left)
    fee_cents, left = fee_cents - absorbed, left - absorbed
    absorbed = min(t.outflows, left)
    outflow_cents, left = t.outflows - absorbed, left - absorbed
    ext = external_id(payout.processor, payout.object_id)
    notes = []
    if not payout.itemised:
        notes.append("manual payout: the processor does not itemise it (totals only)")
    if left:
        notes.append(f"credits of {Money(left, payout.amount.currency).format()} have no Thred field")
    expected = t.gross - t.refunds - fee_cents - outflow_cents
    if payout.itemised and payout.amount.minor != expected + left:
        notes.append("the items do not add up to the amount paid out")
    body: dict[str, Any] = {
        "external_id": ext,
        "processor": payout.processor,
        "processor_payout_id": payout.object_id,
        "paid_out_amount_cents": payout.amount.minor,
        "fee_cents": fee_cents,
        "additional_refunds_amount_cents": outflow_cents,
        "currency": payout.amount.currency,
        "status": payout.status,
        "completed_at": _when(payout.arrives_at),
        "payment_ids": [None] * len(t.payments),
        "refund_payment_ids": [None] * len(t.refund_payments),
        "metadata": {
            "processor": payout.processor,
            "gross_cents": str(t.gross),
            "refunds_cents": str(t.refunds),
            "fees_cents": str(t.fees),
            "other_outflows_cents": str(t.outflows),
            "credits_cents": str(t.credits),
            **payout.metadata,
        },
    }
    if payout.reference:
        body["reference_number"] = payout.reference
    if notes:
        body["memo"] = "; ".join(notes)
    parents = {f"payment_ids.{i}": ref for i, ref in enumerate(t.payments)}
    parents.update({f"refund_payment_ids.{i}": ref for i, ref in enumerate(t.refund_payments)})
    return Record("payout", ext, body, parents=parents, updatable=True)


def _unpaid_payout_record(payout: Payout) -> Record:
    """A payout that failed or was canceled settled nothing: no money reached the bank, and what it carried
    goes back to the processor balance and into a later payout, which lists those payments instead."""
    ext = external_id(payout.processor, payout.object_id)
    body: dict[str, Any] = {
        "external_id": ext,
        "processor": payout.processor,
        "processor_payout_id": payout.object_id,
        "paid_out_amount_cents": 0,
        "fee_cents": 0,
        "additional_refunds_amount_cents": 0,
        "currency": payout.amount.currency,
        "status": payout.status,
        "completed_at": _when(payout.arrives_at),
        "payment_ids": [],
        "refund_payment_ids": [],
        "memo": f"payout {payout.status}: {payout.amount.format()} returned to the {payout.processor} balance; "
        "what it carried is listed in the payout that paid it out again",
        "metadata": {"processor": payout.processor, "amount_cents": str(payout.amount.minor), **payout.metadata},
    }
    if payout.reference:
        body["reference_number"] = payout.reference
    return Record("payout", ext, body, updatable=True)


def movement_records(movement: Movement) -> list[Record]:
    if isinstance(movement, Charge):
        return charge_records(movement)
    if isinstance(movement, Refund):
        return refund_records(movement)
    if isinstance(movement, DisputeDebit):
        return dispute_debit_records(movement)
    if isinstance(movement, DisputeCredit):
        raise TypeError("a dispute credit needs its charge's customer: use records_for")
    return [payout_record(movement)]


def records_for(movements: Sequence[Movement]) -> list[Record]:
    """Every record the movements need, each external id once (the last body of an updatable one),
    parents first. A dispute credit is booked for the customer of its charge, found among the movements."""
    charges = {(m.processor, m.object_id): m for m in movements if isinstance(m, Charge)}
    seen: dict[tuple[str, str, str], Record] = {}
    for movement in movements:
        if isinstance(movement, Refund | DisputeDebit | DisputeCredit):
            charge = charges.get((movement.processor, movement.charge_id))
            invoice_id = charge.thred_invoice_id if charge else None
            if isinstance(movement, Refund):
                made = refund_records(movement, invoice_id)
            elif isinstance(movement, DisputeDebit):
                made = dispute_debit_records(movement, invoice_id)
            else:
                if charge is None:
                    raise ValueError(f"dispute credit {movement.object_id} needs its charge {movement.charge_id}")
                made = dispute_credit_records(movement, _customer_of(charge))
        else:
            made = movement_records(movement)
        for record in made:
            key = (record.kind, record.external_id, record.op)
            if record.updatable or key not in seen:
                seen[key] = record
    return sorted(seen.values(), key=lambda r: (ORDER.index(r.kind), r.op == "delete"))


def _customer_of(charge: Charge) -> str | Lookup:
    if charge.thred_invoice_id:
        return Lookup("invoice", charge.thred_invoice_id, "customer.id")
    return customer_external_id(charge.processor, charge.customer.key, charge.account)


def fill(body: Mapping[str, Any], resolved: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``body`` with each dotted path in ``resolved`` set to its Thred id.

    Paths are dotted keys with list indexes (``allocations.0.invoice_id``).
    """
    out: Any = _deep_copy(body)
    for path, value in resolved.items():
        target = out
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    assert isinstance(out, dict)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_copy(v) for v in value]
    return value
