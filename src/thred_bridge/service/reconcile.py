"""Reconcile: payout by payout, what the processor settled beside what Thred holds. Read-only.

For each processor payout in the range: the processor's gross, refunds, fees, other outflows, credits and
net (recomputed from its itemised transactions), the Thred payout the bridge posted (by external id), and
every difference named: a payout or an item missing from Thred, amounts that disagree, a variance, a
Thred payout with no processor payout behind it, and what the bridge flagged when it posted (a manual
payout, credits Thred has no field for).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from thred_bridge.domain.ids import external_id
from thred_bridge.domain.movements import Payout
from thred_bridge.domain.queue import Connection
from thred_bridge.domain.records import payout_record, payout_totals
from thred_bridge.errors import ThredError
from thred_bridge.service.ports import Store


class PayoutSource(Protocol):
    """A processor that can list its payouts, itemised, for reconciliation."""

    def payouts(self, connection: Connection, since: datetime, until: datetime) -> AsyncIterator[Payout]: ...


class ThredReader(Protocol):
    async def get(self, business_id: str, kind: Any, record_id: str, *, parent_id: str | None = None) -> Any: ...


@dataclass
class PayoutCheck:
    """One payout, both sides, and what differs."""

    payout_id: str
    external_id: str
    currency: str
    status: str
    arrives_at: str
    processor: dict[str, int]
    thred: dict[str, Any] | None
    differences: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "payout_id": self.payout_id,
            "external_id": self.external_id,
            "currency": self.currency,
            "status": self.status,
            "arrives_at": self.arrives_at,
            "processor": self.processor,
            "thred": self.thred,
            "differences": self.differences,
        }


async def reconcile(
    connection: Connection,
    source: PayoutSource,
    store: Store,
    thred: ThredReader,
    since: datetime,
    until: datetime,
) -> list[PayoutCheck]:
    async with store.transaction() as tx:
        mapping = {(r.kind, r.external_id): r for r in await tx.mapping(connection.id)}
    checks = []
    async for payout in source.payouts(connection, since, until):
        checks.append(await _check(connection, payout, mapping, thred))
    return checks


async def _check(
    connection: Connection, payout: Payout, mapping: Mapping[tuple[str, str], Any], thred: ThredReader
) -> PayoutCheck:
    totals = payout_totals(payout)
    ext = external_id(payout.processor, payout.object_id)
    check = PayoutCheck(
        payout_id=payout.object_id,
        external_id=ext,
        currency=payout.amount.currency,
        status=payout.status,
        arrives_at=payout.arrives_at.isoformat(),
        processor={
            "gross_cents": totals.gross,
            "refunds_cents": totals.refunds,
            "fees_cents": totals.fees,
            "other_outflows_cents": totals.outflows,
            "credits_cents": totals.credits,
            "net_cents": payout.amount.minor,
        },
        thred=None,
    )
    if payout.itemised and totals.net != payout.amount.minor:
        check.differences.append(
            f"the processor's items add up to {totals.net}, not the {payout.amount.minor} paid out"
        )
    for ref in (*totals.payments, *totals.refund_payments):
        row = mapping.get((ref.kind, ref.external_id))
        if row is None or row.status != "sent":
            state = "never queued" if row is None else f"{row.status}: {row.last_error or 'waiting'}"
            check.differences.append(f"missing record: {ref.kind.replace('_', ' ')} {ref.external_id} ({state})")
    row = mapping.get(("payout", ext))
    if row is None or row.thred_id is None:
        state = "never queued" if row is None else f"{row.status}: {row.last_error or 'waiting'}"
        check.differences.append(f"missing record: payout {ext} is not in Thred ({state})")
        return check
    try:
        held = await thred.get(connection.business_id, "payout", row.thred_id)
    except ThredError as exc:
        check.differences.append(f"missing record: Thred cannot show payout {row.thred_id}: {exc.describe()}")
        return check
    check.thred = {
        "id": held.get("id"),
        "paid_out_amount_cents": held.get("paid_out_amount_cents"),
        "fee_cents": held.get("fee_cents"),
        "payment_count": held.get("payment_count", len(held.get("payment_ids") or held.get("payments") or [])),
        "refund_payment_count": held.get(
            "refund_payment_count", len(held.get("refund_payment_ids") or held.get("refund_payments") or [])
        ),
        "amount_variance_cents": held.get("amount_variance_cents"),
        "status": held.get("status"),
        "reconciliation_status": held.get("reconciliation_status"),
    }
    expected = payout_record(payout).body
    # money out beyond what was paid (decision 0007): booked short, the rest carried as additional refunds
    short = [mapping.get((ref.kind, ref.external_id)) for ref in totals.refund_payments]
    excess = sum(r.excess_cents or 0 for r in short if r is not None)
    unbooked = sum(1 for r in short if r is not None and r.status == "sent" and r.thred_id is None)
    expected = {**expected, "additional_refunds_amount_cents": expected["additional_refunds_amount_cents"] + excess}
    _compare(check, expected, held, len(expected["payment_ids"]), len(expected["refund_payment_ids"]) - unbooked)
    if row.status != "sent":
        check.differences.append(
            f"the latest version is not in Thred yet ({row.status}: {row.last_error or 'waiting'})"
        )
    return check


def _compare(
    check: PayoutCheck, expected: Mapping[str, Any], held: Mapping[str, Any], payments: int, refunds: int
) -> None:
    for name in ("paid_out_amount_cents", "fee_cents", "additional_refunds_amount_cents", "currency", "status"):
        if name in held and held[name] != expected[name]:
            check.differences.append(
                f"amount mismatch: {name} is {held[name]} in Thred, {expected[name]} at the processor"
            )
    if check.thred and check.thred["payment_count"] != payments:
        check.differences.append(f"Thred lists {check.thred['payment_count']} payments, the processor {payments}")
    if check.thred and check.thred["refund_payment_count"] != refunds:
        check.differences.append(
            f"Thred lists {check.thred['refund_payment_count']} refund payments, the processor {refunds}"
        )
    variance = held.get("amount_variance_cents")
    if isinstance(variance, int) and variance != 0:
        check.differences.append(f"variance of {variance} in Thred")
    if expected.get("memo") and expected["status"] not in ("failed", "canceled"):
        check.differences.append(f"flagged: {expected['memo']}")


def unmatched_thred_payouts(thred_payouts: Sequence[Mapping[str, Any]], checks: Sequence[PayoutCheck]) -> list[str]:
    """Thred payouts of this processor in the range with no processor payout behind them."""
    known = {c.external_id for c in checks}
    return [str(p.get("external_id")) for p in thred_payouts if p.get("external_id") not in known]
