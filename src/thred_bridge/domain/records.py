"""Movements → the Thred records that book them, in the order Thred needs.

The builders live by what they book: ``sales`` (customers, invoices, payments), ``refunds`` (refunds and
refund payments) and ``payouts``; the record shape itself is in ``record_types``. This module puts them
together: every record a set of movements needs, each external id once, parents first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Movement, Payout, Refund
from thred_bridge.domain.payouts import PayoutTotals, payout_item_ref, payout_record, payout_totals
from thred_bridge.domain.record_types import ORDER, Kind, Lookup, Record, Ref, fill
from thred_bridge.domain.refunds import dispute_debit_records, refund_records
from thred_bridge.domain.sales import charge_records, customer_of, customer_record, dispute_credit_records


def records_for(movements: Sequence[Movement]) -> list[Record]:
    """Every record the movements need, each external id once (the last body of an updatable one),
    parents first. Refunds and disputes are booked on their charge's invoice record (the bridge's own or the
    one adopting an invoice-first charge's Thred invoice), which they wait for; a won-back dispute is booked
    for the charge's customer, so its charge is among the movements."""
    charges = {(m.processor, m.object_id): m for m in movements if isinstance(m, Charge)}
    seen: dict[tuple[str, str, str], Record] = {}
    for movement in movements:
        if isinstance(movement, Charge):
            made = charge_records(movement)
        elif isinstance(movement, Refund | DisputeDebit | DisputeCredit):
            charge = charges.get((movement.processor, movement.charge_id))
            if isinstance(movement, Refund):
                made = refund_records(movement)
            elif isinstance(movement, DisputeDebit):
                made = dispute_debit_records(movement)
            elif charge is None:
                raise ValueError(f"dispute credit {movement.object_id} needs its charge {movement.charge_id}")
            else:
                made = dispute_credit_records(movement, customer_of(charge))
        else:
            made = [payout_record(movement)]
        if not isinstance(movement, Payout) and movement.held:
            made = held(made)
        for record in made:
            key = (record.kind, record.external_id, record.op)
            if record.updatable or key not in seen:
                seen[key] = record
    return sorted(seen.values(), key=lambda r: (ORDER.index(r.kind), r.op == "delete"))


def held(made: Sequence[Record]) -> list[Record]:
    """A held movement's records: those that carry its money wait for a reading that is not held; its
    customer (no money, and the webhook knows the shopper where a report does not) is booked at once, and
    an undo (a failed refund's delete) waits for what it undoes as it would anyway."""
    return [r if r.kind == "customer" or r.op == "delete" else replace(r, held=True) for r in made]


__all__ = [
    "ORDER",
    "Kind",
    "Lookup",
    "PayoutTotals",
    "Record",
    "Ref",
    "charge_records",
    "customer_record",
    "fill",
    "payout_item_ref",
    "payout_record",
    "payout_totals",
    "records_for",
]
