"""A Stripe payout and the balance transactions it paid out → :class:`Payout`. Pure.

The transactions are the answer of ``GET /v1/balance_transactions?payout=po_…`` (PROCESSORS.md §1.6,
§4 fact 7), which lists only automatic payouts. The list includes the payout's own ``type: payout``
transaction (−amount), which is the payout itself and not one of its items; every other transaction
is an item, classified by ``reporting_category`` as Stripe advises (§1.5), with ``type`` as the
fallback on API versions that predate it. Amounts are in the payout's (settlement) currency.

A payout that failed or was canceled settled nothing: Stripe puts its amount back in the balance as one
``payout_failure`` (or ``payout_cancel``) transaction, which a later payout pays out. Given the failed
payout's own transactions, that later payout lists them in place of the lump, so the payments the failed
payout carried are settled by the payout that really paid them (and the totals are unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from thred_bridge.domain.movements import Payout, PayoutItem, PayoutItemKind, PayoutStatus
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.translate import PROCESSOR, id_of, money_of, text_of, time_of

_STATUSES: frozenset[PayoutStatus] = frozenset({"paid", "pending", "in_transit", "canceled", "failed"})

# reporting_category → item kind. ``payment`` is not a reporting category, but is how a ``payment``
# (local-method) transaction is sometimes described; it is a charge either way.
_BY_CATEGORY: dict[str, PayoutItemKind] = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "dispute": "dispute_debit",
    "dispute_reversal": "dispute_credit",
    "fee": "fee",
    "tax": "fee",
    "network_cost": "fee",
    "stripe_fee": "fee",
}
# type → item kind, for a transaction without a reporting_category, and for fee types whatever their category.
_BY_TYPE: dict[str, PayoutItemKind] = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "stripe_fee": "fee",
    "stripe_fx_fee": "fee",
    "tax_fee": "fee",
    "network_cost": "fee",
}
OBJECT_KINDS: frozenset[PayoutItemKind] = frozenset({"charge", "refund", "dispute_debit", "dispute_credit"})
"""Item kinds that name a Stripe object (their transaction's ``source``) booked as its own movement."""


def item_kind(bt: Mapping[str, Any]) -> PayoutItemKind:
    """What a balance transaction is, for a payout: by ``reporting_category``, then by ``type``.

    Anything that is not a charge, refund, dispute, dispute reversal or Stripe fee is an ``adjustment``
    (reserves, failed payouts credited back, failed refunds, transfers, other adjustments). So is the
    refund transaction of a refund that has since failed or been canceled (its expanded ``source`` says
    so): its money came back (a ``refund_failure``), and no refund payment stands for it in the books.
    """
    category, kind = bt.get("reporting_category"), bt.get("type")
    by_type = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    found = _BY_CATEGORY.get(category) if isinstance(category, str) and category else by_type
    if found is None and by_type == "fee":
        found = "fee"
    source = bt.get("source")
    if found == "refund" and isinstance(source, Mapping) and source.get("status") in ("failed", "canceled"):
        return "adjustment"
    return found or "adjustment"


def is_own_transaction(payout: Mapping[str, Any], bt: Mapping[str, Any]) -> bool:
    """Whether ``bt`` is the payout's own transaction (``type: payout``, its source this payout)."""
    own = id_of(payout.get("balance_transaction"))
    if own is not None and id_of(bt.get("id")) == own:
        return True
    return bt.get("type") == "payout" and id_of(bt.get("source")) == id_of(payout.get("id"))


def repaid_payout_id(bt: Mapping[str, Any]) -> str | None:
    """The failed or canceled payout whose money ``bt`` returned to the balance, if it is such a transaction."""
    if bt.get("type") not in ("payout_failure", "payout_cancel") and bt.get("reporting_category") != "payout_reversal":
        return None
    source = bt.get("source")
    if isinstance(source, Mapping) and source.get("object", "payout") != "payout":
        return None
    found = id_of(source)
    return found if found is not None and (isinstance(source, Mapping) or found.startswith("po_")) else None


def to_payout_item(bt: Mapping[str, Any], *, currency: str) -> PayoutItem:
    """One balance transaction → a :class:`PayoutItem`, signed as it moved the balance.

    A charge, refund or dispute item names its object (the transaction's ``source``, an id or the
    expanded object: ``ch_…``/``py_…``, ``re_…``, ``dp_…``); a fee or adjustment names the transaction.
    """
    bt_id = id_of(bt.get("id"))
    if bt_id is None:
        raise TranslationError(f"a Stripe balance transaction has no id: {bt!r}"[:200])
    what = f"Stripe balance transaction {bt_id}"
    amount = money_of(bt.get("amount"), bt.get("currency"), f"{what} amount")
    fee = money_of(bt.get("fee"), bt.get("currency"), f"{what} fee")
    if amount.currency != currency:
        raise TranslationError(f"{what} is in {amount.currency}, the payout in {currency}")
    kind = item_kind(bt)
    object_id = bt_id
    if kind in OBJECT_KINDS:
        source = id_of(bt.get("source"))
        if source is None:
            raise TranslationError(f"{what} ({kind}) names no source object")
        object_id = source
    return PayoutItem(kind, object_id, amount, fee, text_of(bt.get("description")) or "")


def _metadata(payout: Mapping[str, Any], payout_id: str) -> dict[str, str]:
    metadata = {"stripe_payout_id": payout_id}
    for ours, theirs in (
        ("method", "method"),
        ("reconciliation_status", "reconciliation_status"),
        ("failure_code", "failure_code"),
        ("stripe_balance_transaction", "balance_transaction"),
    ):
        value = id_of(payout.get(theirs)) if theirs == "balance_transaction" else text_of(payout.get(theirs))
        if value:
            metadata[ours] = value
    return metadata


def _reference(payout: Mapping[str, Any]) -> str | None:
    trace = payout.get("trace_id")
    value = text_of(trace.get("value")) if isinstance(trace, Mapping) else None
    return value or text_of(payout.get("statement_descriptor"))


def _items(
    payout: Mapping[str, Any],
    bts: Sequence[Mapping[str, Any]],
    currency: str,
    repaid: Mapping[str, Sequence[Mapping[str, Any]]],
    seen: frozenset[str],
) -> Iterator[PayoutItem]:
    for bt in bts:
        if is_own_transaction(payout, bt):
            continue
        failed = repaid_payout_id(bt)
        if failed is not None and failed not in seen and repaid.get(failed):
            yield from _items({"id": failed}, repaid[failed], currency, repaid, seen | {failed})
        else:
            yield to_payout_item(bt, currency=currency)


def to_payout(
    payout: Mapping[str, Any],
    balance_transactions: Sequence[Mapping[str, Any]],
    *,
    account: str | None,
    repaid: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Payout:
    """A Stripe payout and the transactions listed for it → :class:`Payout`.

    An automatic payout is itemised from ``balance_transactions`` (all pages, the payout's own
    transaction included or not); an empty list means Stripe has not reconciled it yet (NotReadyError).
    ``repaid`` maps a failed or canceled payout (``po_…``) to its own transactions: a ``payout_failure``
    for it becomes those items (recursively); without them it stays one ``adjustment``. A manual payout
    cannot be itemised (Stripe does not know what it paid out): no items, and ``itemised`` False,
    whatever is passed.
    """
    payout_id = id_of(payout.get("id"))
    if payout_id is None or payout.get("object", "payout") != "payout":
        raise TranslationError(f"not a Stripe payout: object {payout.get('object')!r}, id {payout.get('id')!r}")
    what = f"Stripe payout {payout_id}"
    amount = money_of(payout.get("amount"), payout.get("currency"), f"{what} amount")
    status = payout.get("status")
    if status not in _STATUSES:
        raise TranslationError(f"{what} has an unknown status {status!r}")
    automatic = payout.get("automatic")
    if not isinstance(automatic, bool):
        raise TranslationError(f"{what} does not say whether it is automatic")
    items: tuple[PayoutItem, ...] = ()
    if automatic:
        if not balance_transactions:
            reconciliation = payout.get("reconciliation_status")
            raise NotReadyError(f"{what} lists no balance transactions yet (reconciliation_status {reconciliation!r})")
        items = tuple(_items(payout, balance_transactions, amount.currency, repaid or {}, frozenset({payout_id})))
    return Payout(
        processor=PROCESSOR,
        object_id=payout_id,
        amount=amount,
        status=status,
        arrives_at=time_of(payout.get("arrival_date"), f"{what} arrival_date"),
        items=items,
        itemised=automatic,
        account=account,
        reference=_reference(payout),
        metadata=_metadata(payout, payout_id),
    )
