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
from typing import Any, Literal

from thred_bridge.domain.ids import customer_external_id, external_id
from thred_bridge.domain.movements import Charge, Party

Kind = Literal["customer", "invoice", "payment", "refund", "refund_payment", "payout"]
ORDER: tuple[Kind, ...] = ("customer", "invoice", "payment", "refund", "refund_payment", "payout")


@dataclass(frozen=True, slots=True)
class Ref:
    """A parent record, by kind and external id."""

    kind: Kind
    external_id: str


@dataclass(frozen=True, slots=True)
class Record:
    """One Thred create request, waiting for ``parents`` (body path → parent)."""

    kind: Kind
    external_id: str
    body: Mapping[str, Any]
    parents: Mapping[str, Ref] = field(default_factory=dict)
    idempotency_key: str | None = None
    parent_path: Ref | None = None  # the record whose id is part of the URL (a refund payment's refund)


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
    """Customer → invoice (one line for the charge) → invoice payment with the processor's fee."""
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


def records_for(movements: Sequence[Charge]) -> list[Record]:
    """Every record the movements need, each external id once, parents first."""
    seen: dict[tuple[str, str], Record] = {}
    for movement in movements:
        for record in charge_records(movement):
            seen.setdefault((record.kind, record.external_id), record)
    return sorted(seen.values(), key=lambda r: ORDER.index(r.kind))


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
