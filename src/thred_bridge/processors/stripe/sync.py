"""Stripe as a :class:`~thred_bridge.processors.base.Processor`: verify deliveries, and for a stored
event fetch the current state of what it is about (trust comes from the fetch, not the body), then
translate.

Per event type:

- a charge's payment (``charge.succeeded``, ``charge.captured``, ``payment_intent.succeeded``): the
  charge, its balance transaction and customer → a :class:`Charge`; nothing while it is only authorised.
- refunds (``charge.refunded``: every refund of the charge; ``charge.refund.updated``, ``refund.*``: the
  one refund): each refund and its balance transaction, plus the charge's own movements, so a refund
  that arrives before its charge still finds the charge's records (``records_for`` dedupes).
- disputes (``charge.dispute.*``): the dispute's withdrawal and reinstatement, plus the charge's.
- payouts (``payout.*``): the payout; for an automatic one, every balance transaction it paid out (all
  pages, sources expanded), those of any failed payout whose money it pays out again, and the movements
  of every charge, refund and dispute among them. A manual payout is booked with totals only.

Every fetch sends ``Stripe-Account`` for a connected account's event (§1.7).

History: :meth:`StripeProcessor.history_page` lists charges, refunds, disputes and payouts for the
backfill as webhook-shaped notices (``history``); :meth:`StripeProcessor.payouts` lists payouts by
arrival date, each itemised as the worker books it, for ``reconcile``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from thred_bridge.domain.movements import Movement, Payout
from thred_bridge.domain.queue import ClaimedEvent, Connection, HistoryPage, Notice
from thred_bridge.errors import NotReadyError, PayloadError, ProcessorError, TranslationError
from thred_bridge.processors.stripe import history, translate, webhook
from thred_bridge.processors.stripe.api import StripeApi
from thred_bridge.processors.stripe.translate_payouts import item_kind, repaid_payout_id, to_payout
from thred_bridge.processors.stripe.translate_refunds import to_dispute_movements, to_refund


class _Fetch:
    """The fetches for one event. Each charge and customer is read at most once, and each charge's
    movement given once: the movements of one event go into one list."""

    def __init__(self, api: StripeApi, account: str | None) -> None:
        self.api = api
        self.account = account
        self._charges: set[str] = set()
        self._customers: dict[str, Mapping[str, Any] | None] = {}
        self._booked: list[Movement] = []  # charges translated while their payout was being listed

    async def customer(self, customer_id: str) -> Mapping[str, Any] | None:
        """The customer, or None for a deleted one (the charge is then booked on its billing details)."""
        if customer_id not in self._customers:
            try:
                found: Mapping[str, Any] | None = await self.api.customer(customer_id, account=self.account)
            except ProcessorError as exc:
                if exc.status != 404:
                    raise
                found = None
            self._customers[customer_id] = None if found is None or found.get("deleted") else found
        return self._customers[customer_id]

    async def charge(
        self, charge_id: str, charge: Mapping[str, Any] | None = None, bt: Mapping[str, Any] | None = None
    ) -> list[Movement]:
        """The charge's movement: ``[Charge]``; ``[]`` while it is authorised but not captured, or when this
        event already has it.

        ``charge`` and ``bt`` are used when the caller already has them (an expanded list source).
        """
        if charge_id in self._charges:
            return []
        self._charges.add(charge_id)
        if charge is None:
            charge = await self.api.charge(charge_id, account=self.account)
        if charge.get("status") == "succeeded" and charge.get("captured") is False:
            return []  # authorised only: booked at capture, for the captured amount
        if bt is None:
            expanded = charge.get("balance_transaction")
            if isinstance(expanded, Mapping):
                bt = expanded
            else:
                txn = translate.balance_transaction_id(charge)
                bt = await self.api.balance_transaction(txn, account=self.account)
        customer = None
        customer_ref = charge.get("customer")
        customer_id = translate.id_of(customer_ref)
        if customer_id is not None and not isinstance(customer_ref, Mapping):
            customer = await self.customer(customer_id)
        return [translate.to_charge(charge, bt, customer=customer, account=self.account)]

    async def refund(self, refund: Mapping[str, Any], bt: Mapping[str, Any] | None = None) -> list[Movement]:
        """The refund's movement, and its charge's.

        A failed or canceled refund that never had a balance transaction moved no money and was never
        booked, so there is nothing to undo: ``[]``.
        """
        ref = refund.get("balance_transaction")
        if bt is None and isinstance(ref, Mapping):
            bt = ref
        txn = translate.id_of(ref)
        if bt is None and txn is None and refund.get("status") in ("failed", "canceled"):
            return []
        if bt is None and txn is not None:
            bt = await self.api.balance_transaction(txn, account=self.account)
        moved: list[Movement] = [to_refund(refund, bt, account=self.account)]
        charge_id = translate.id_of(refund.get("charge"))
        if charge_id is not None:
            moved += await self.charge(charge_id)
        return moved

    async def dispute(self, dispute: Mapping[str, Any]) -> list[Movement]:
        """The dispute's money movements and its charge's; ``[]`` while no money has moved."""
        moved: list[Movement] = list(to_dispute_movements(dispute, account=self.account))
        charge_id = translate.id_of(dispute.get("charge"))
        if not moved or charge_id is None:
            return moved
        return await self.charge(charge_id) + moved

    async def payout(self, payout_id: str) -> list[Movement]:
        """The payout and, for an automatic one, the movements of every charge, refund and dispute it paid,
        including those of a failed payout whose money it pays out again."""
        payout = await self.api.payout(payout_id, account=self.account)
        moved, paid = await self.itemised(payout, book_charges=True)
        return [moved, *self._booked, *await self._paid(paid)]

    async def itemised(
        self, payout: Mapping[str, Any], *, book_charges: bool = False
    ) -> tuple[Payout, list[dict[str, Any]]]:
        """The payout as a movement (itemised when automatic), and the balance transactions it pays: its
        own and those of every failed payout whose money it pays out again. NotReadyError while Stripe has
        not itemised an automatic payout yet. With ``book_charges``, the charges among them are translated
        as they are listed (see :meth:`_listed`)."""
        payout_id = translate.id_of(payout.get("id"))
        if payout.get("automatic") is not True or payout_id is None:
            return to_payout(payout, [], account=self.account), []
        bts = await self._listed(payout_id, book_charges)
        repaid = await self._repaid(payout_id, bts, book_charges)
        paid = [*bts, *(bt for listed in repaid.values() for bt in listed)]
        return to_payout(payout, bts, account=self.account, repaid=repaid), paid

    async def _listed(self, payout_id: str, book_charges: bool) -> list[dict[str, Any]]:
        """The payout's balance transactions, each charge's expanded source cut down to its id once it has
        been translated (or right away, when the charges are not booked): a 10,000-charge payout otherwise
        held every charge's full JSON in memory until the end (~120 MB)."""
        kept: list[dict[str, Any]] = []
        async for listed in self.api.list_balance_transactions(payout=payout_id, account=self.account):
            source = listed.get("source")
            source_id = translate.id_of(source)
            if item_kind(listed) == "charge" and isinstance(source, Mapping) and source_id is not None:
                if book_charges:
                    self._booked += await self.charge(source_id, source, listed)
                listed = {**listed, "source": {"id": source_id, "object": source.get("object", "charge")}}  # noqa: PLW2901
            kept.append(listed)
        return kept

    async def _repaid(
        self, payout_id: str, bts: list[dict[str, Any]], book_charges: bool
    ) -> dict[str, list[dict[str, Any]]]:
        """The transactions of each failed or canceled (automatic) payout whose money comes back in ``bts``,
        and in theirs, and so on."""
        repaid: dict[str, list[dict[str, Any]]] = {}
        seen, queue = {payout_id}, list(bts)
        while queue:
            bt = queue.pop()
            failed = repaid_payout_id(bt)
            if failed is None or failed in seen:
                continue
            seen.add(failed)
            source = bt.get("source")
            failed_payout = (
                source if isinstance(source, Mapping) else await self.api.payout(failed, account=self.account)
            )
            if failed_payout.get("automatic") is True:
                repaid[failed] = await self._listed(failed, book_charges)
                queue += repaid[failed]
        return repaid

    async def _paid(self, bts: list[dict[str, Any]]) -> list[Movement]:
        """The movements of every charge, refund and dispute in ``bts`` (from ``itemised(book_charges=True)``,
        whose charges are booked already), from their expanded sources.

        A refund that has since failed is an adjustment there (``item_kind``), left to its own events.
        """
        moved: list[Movement] = []
        # Charges first, so a refund or dispute of one fetches nothing more.
        for bt in bts:
            source = bt.get("source")
            if item_kind(bt) == "charge" and (source_id := translate.id_of(source)) is not None:
                moved += await self.charge(source_id, source if isinstance(source, Mapping) else None, bt)
        disputes: set[str] = set()
        for bt in bts:
            kind, source = item_kind(bt), bt.get("source")
            source_id = translate.id_of(source)
            if source_id is None:
                continue
            if kind == "refund":
                refund = (
                    source if isinstance(source, Mapping) else await self.api.refund(source_id, account=self.account)
                )
                moved += await self.refund(refund, bt)
            elif kind in ("dispute_debit", "dispute_credit") and source_id not in disputes:
                disputes.add(source_id)
                dispute = (
                    source if isinstance(source, Mapping) else await self.api.dispute(source_id, account=self.account)
                )
                moved += await self.dispute(dispute)
        return moved


class StripeProcessor:
    """Stripe deliveries and fetches; one API client per connection key."""

    name = "stripe"
    media_types = frozenset({"application/json"})
    history_kinds: Sequence[str] = history.HISTORY_KINDS

    def __init__(self, api_base: str, *, timeout: float = 20.0) -> None:
        self._api_base = api_base
        self._timeout = timeout
        self._apis: dict[str, StripeApi] = {}

    def verify(
        self, body: bytes, headers: Mapping[str, str], connection: Connection, now: datetime
    ) -> Sequence[Notice]:
        webhook.verify(body, headers.get("stripe-signature"), connection.webhook_secrets, now)
        event = webhook.parse_event(body)
        if connection.account and event.account and event.account != connection.account:
            raise PayloadError(f"event for account {event.account}; this connection is for {connection.account}")
        # A charge's events, its refunds' and its disputes' share one key (one at a time); a payout's by its id.
        return [
            Notice(
                event_id=event.id,
                event_type=event.type,
                object_key=event.object_key,
                body=body,
                account=event.account,
                handled=event.handled,
            )
        ]

    async def history_page(
        self, connection: Connection, kind: str, since: datetime, until: datetime, cursor: str | None
    ) -> HistoryPage:
        """One page of the connection's ``kind`` (charges, refunds, disputes, payouts) created in
        ``[since, until)``, after ``cursor``, as webhook-shaped notices (``history``)."""
        return await history.history_page(self._api(connection), connection, kind, since, until, cursor)

    async def payouts(self, connection: Connection, since: datetime, until: datetime) -> AsyncIterator[Payout]:
        """Every payout arriving in ``[since, until)``, newest first, itemised exactly as the worker books it
        (the movements of what it paid are not fetched). A payout Stripe has not itemised yet comes with
        totals only (``itemised`` False; its ``reconciliation_status`` in the metadata)."""
        api = self._api(connection)
        fetch = _Fetch(api, connection.account)
        arriving = history.window(since, until)
        async for listed in api.list_all("payouts", arrival_date=arriving, account=connection.account):
            try:
                payout, _paid = await fetch.itemised(listed)
            except NotReadyError:
                payout = to_payout({**listed, "automatic": False}, [], account=connection.account)
            yield payout

    def _api(self, connection: Connection) -> StripeApi:
        api = self._apis.get(connection.id)
        if api is None:
            api = StripeApi(connection.credentials["api_key"], base_url=self._api_base, timeout=self._timeout)
            self._apis[connection.id] = api
        return api

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement]:
        parsed = webhook.parse_event(event.body)
        if not parsed.handled:
            return []
        fetch = _Fetch(self._api(connection), parsed.account or connection.account)
        if parsed.type in webhook.CHARGE_TYPES or parsed.type == "charge.refunded":
            if parsed.charge_id is None:
                raise TranslationError(f"Stripe event {parsed.id} ({parsed.type}) names no charge")
            if parsed.type != "charge.refunded":
                return await fetch.charge(parsed.charge_id)
            moved = await fetch.charge(parsed.charge_id)
            async for refund in fetch.api.list_refunds_for_charge(parsed.charge_id, account=fetch.account):
                moved += await fetch.refund(refund)
            return moved
        object_id = _object_id(parsed)
        if parsed.type in webhook.REFUND_TYPES:
            return await fetch.refund(await fetch.api.refund(object_id, account=fetch.account))
        if parsed.type in webhook.DISPUTE_TYPES:
            return await fetch.dispute(await fetch.api.dispute(object_id, account=fetch.account))
        return await fetch.payout(object_id)

    async def aclose(self) -> None:
        for api in self._apis.values():
            await api.aclose()
        self._apis.clear()


_OBJECT_OF = {"refund": webhook.REFUND_TYPES, "dispute": webhook.DISPUTE_TYPES, "payout": webhook.PAYOUT_TYPES}


def _object_id(parsed: webhook.StripeEvent) -> str:
    """The id of the refund, dispute or payout the event is about; TranslationError if it is not one."""
    for kind, types in _OBJECT_OF.items():
        if parsed.type in types:
            if parsed.object_type != kind or parsed.object_id is None:
                raise TranslationError(f"Stripe event {parsed.id} ({parsed.type}) does not carry a {kind}")
            return parsed.object_id
    raise TranslationError(f"Stripe event {parsed.id}: no route for {parsed.type}")
