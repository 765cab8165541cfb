"""Mollie as a :class:`~thred_bridge.processors.base.Processor`: verify deliveries, and for a stored event
fetch the current state of what it is about (trust comes from the fetch, never from the body), then
translate.

**Ingest** (``webhook``): a delivery with an ``X-Mollie-Signature`` header is a next-gen event, verified
against the connection's secrets (any of several signatures, any secret: rotation) and deduplicated on its
event id. Without one it is a classic ping: a form body ``id=<Mollie id>``, refused (400, not stored) when
that is not a well-formed id of a known resource, accepted otherwise, even for an id Mollie does not know.

**Classic pings are never deduplicated away.** Mollie pings the same payment for every change (paid, each
refund, each chargeback, §3.1), and a ping carries nothing but the id. A time-bucketed event id would drop
a ping that lands in the bucket of one already processed, and with it the change it announces. So every
delivery gets its own event id (``tr_…@<receipt ms>.<process token>.<sequence>``) and the inbox stores
each; the pings of one payment share its object key, so they are processed one at a time, in order.
Coalescing happens there instead: a ping *received before* a fetch of the same object that this process
completed successfully is answered from that fetch (the state it read is at least as new as the change
the ping announced, since Mollie pings after the change), without calling Mollie again. Only pings
received by this same process are coalesced (the token in the event id says so), so the comparison is
between two readings of one counter, not between clocks. A ping that comes after the last fetch always
fetches; so no change is lost, and a burst of N pings queued behind a fetch costs one call.

**Payments** (classic ``tr_…`` pings; next-gen ``payment.*``, ``refund.*``, ``chargeback.*``,
``capture.*``): ``GET /v2/payments/{id}?embed=refunds,chargebacks,captures`` → the charge, every refund
and every chargeback (``translate.payment_movements``). The outbox books each object once.

**Settlements** (classic ``stl_…`` pings; next-gen ``payout.*`` and ``balance-transaction.created`` events
naming a settlement): need the connection's organization access token (credential
``organization_token``). Without one nothing is fetched: the event is done with nothing booked, and
``status`` says payouts are off and why (:meth:`MollieProcessor.notes`). With one: the settlement, every
page of its payments, refunds and chargebacks, the charges of what it settled (payments of refunds and
chargebacks it settled but not their payment are fetched), then the payout (``translate_settlements``).

**Fees per payment** (``balance_ledger``, ``balance_fees``): with an organization token that may read
balances (``balances.read``), each payment is booked with the fee Mollie deducted from it, the
``deductions`` of its ``payment``/``capture`` transaction in the balance of its settlement currency. A
paid, Mollie-settled payment whose transaction is not in the balance yet waits (NotReadyError, retried)
rather than being booked without its fee. The settlement reads the same transactions, so each charge
item of the payout carries the fee its payment was booked with, and the payout's own fee is the rest of
the settlement's costs (``translate_settlements``). When the Balances API answers 401 or 403 (a token
without ``balances.read``), fees fall back to the settlement's costs (payments at fee 0, the costs as fee
items of the payout); ``status`` says so, and the Balances API is asked again after
:data:`BALANCE_RETRY_AFTER`.

**History and the settlement poll** (``history``): :meth:`MollieProcessor.history_page` pages the payments
and settlements lists for the backfill (newest first, ``from`` cursor, no date filter: one slice per kind),
and :meth:`MollieProcessor.poll` lists settlements for the worker's schedule; both offer what they find as
classic calls about it, so it is booked by the fetch-and-translate path above.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import structlog

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, HistoryPage, Notice
from thred_bridge.errors import NotReadyError, ProcessorError, TranslationError
from thred_bridge.processors.mollie import history, webhook
from thred_bridge.processors.mollie.api import DEFAULT_BASE_URL, MAX_THREADS, ListedResource, MollieApi
from thred_bridge.processors.mollie.balance_ledger import BalanceLedger, is_access_refused
from thred_bridge.processors.mollie.fields import is_mollie_id, settled_of, text_of, time_of
from thred_bridge.processors.mollie.translate import booking_currency, charge_amount, payment_id_of, payment_movements
from thred_bridge.processors.mollie.translate_refunds import chargeback_movements, to_refund
from thred_bridge.processors.mollie.translate_settlements import to_payout

log = structlog.get_logger("thred_bridge.mollie")

SETTLEMENT_EVENT_TYPES = frozenset(
    {
        "payout.initiated",
        "payout.processing-at-bank",
        "payout.completed",
        "payout.canceled",
        "payout.failed",
        "balance-transaction.created",
    }
)
"""Next-gen events that may announce a settlement's progress (§3.2): booked when they name one."""

ORGANIZATION_TOKEN = "organization_token"  # noqa: S105 - the name of a credential, not one
API_KEY = "api_key"
COALESCE_MEMORY = 4096
"""Objects whose last successful fetch this process remembers, for coalescing classic pings."""
POLL_LOOKBACK = timedelta(days=35)
"""How far back (by ``createdAt``) the settlement poll reads the settlements list."""
POLL_CLOCK_MARGIN = timedelta(hours=1)
"""Slack when comparing Mollie's whole-second timestamps with when the connection was added."""
POLL_MAX_PAGES = 4
"""Most settlement list pages one poll reads (250 each: years of daily settlements)."""
BALANCE_RETRY_AFTER = 900.0
"""Seconds before the Balances API is asked again after it refused the organization token (401/403)."""
NOT_BOOKED_RETRY = 30.0
"""Seconds before a payment whose balance transaction Mollie has not written yet is fetched again."""


def fees_fallback_note(connection: Connection) -> str:
    """What ``status`` says while the organization token may not read balances."""
    return (
        f"fees per payment are off for {connection.id}: the Mollie organization token may not read balances "
        "(the Balances API answered 401/403; it needs balances.read), so payments are booked with fee 0 and "
        "each settlement's costs are booked as the payout's fees"
    )


def payouts_off_note(connection: Connection) -> str | None:
    """Why a Mollie connection books no payouts, or None when it can."""
    if connection.processor != "mollie" or connection.credentials.get(ORGANIZATION_TOKEN):
        return None
    return (
        "payouts are off: Mollie settlements need an organization access token (access_…), and this "
        "connection has only a profile API key; payments, refunds and chargebacks still sync. Add one with "
        "`thred-bridge connections add mollie … --organization-token access_…`"
    )


class MollieProcessor:
    """Mollie deliveries and fetches; one API client per connection."""

    name = "mollie"
    media_types = frozenset({"application/x-www-form-urlencoded", "application/json"})  # classic, next-gen

    def __init__(self, api_base: str = DEFAULT_BASE_URL, *, max_threads: int = MAX_THREADS) -> None:
        self._api_base = api_base
        self._apis: dict[str, tuple[tuple[str, str], MollieApi]] = {}
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._token = secrets.token_hex(4)
        self._received = itertools.count(1)
        self._fetched: OrderedDict[tuple[str, str], tuple[int, list[Movement]]] = OrderedDict()
        self._ledgers: dict[tuple[str, str], BalanceLedger] = {}
        self._balance_ids: dict[tuple[str, str], str | None] = {}  # (connection, currency) → balance id
        self._balances_refused: dict[str, float] = {}  # connection → when (monotonic) Mollie refused

    # ------------------------------------------------------------------------------------------ ingest

    def verify(
        self, body: bytes, headers: Mapping[str, str], connection: Connection, now: datetime
    ) -> Sequence[Notice]:
        signatures = webhook.header_values(headers, webhook.SIGNATURE_HEADER)
        if signatures:
            webhook.verify_signature(body, signatures, connection.webhook_secrets)
            event = webhook.parse_event(body)
            handled = event.handled or (event.type in SETTLEMENT_EVENT_TYPES and _settlement_id(event) is not None)
            return [Notice(event.id, event.type, event.object_key, bytes(body), None, handled)]
        ping = webhook.parse_classic(body)
        receipt = f"{int(now.timestamp() * 1000)}.{self._token}.{next(self._received)}"
        return [
            Notice(
                event_id=f"{ping.resource_id}@{receipt}",
                event_type=ping.event_type,
                object_key=ping.resource_id,
                body=bytes(body),
                account=None,
                handled=ping.handled,
            )
        ]

    def notes(self, connection: Connection) -> Sequence[str]:
        """What ``status`` should say about the connection beyond its counts."""
        note = payouts_off_note(connection)
        if note is not None:
            return [note]
        return [fees_fallback_note(connection)] if self._refused(connection) else []

    # ------------------------------------------------------------------------------------------ history

    history_kinds: Sequence[str] = history.HISTORY_KINDS
    history_sliceable = False
    """Mollie's lists have no date filter: every time slice would page from the newest (``history``)."""

    async def history_page(
        self, connection: Connection, kind: str, since: datetime, until: datetime, cursor: str | None
    ) -> HistoryPage:
        """One list page (250, newest first, from ``cursor``) of payments or settlements, those created in
        ``[since, until)`` as classic calls about them; the cursor is None once the page reaches past
        ``since``. Settlements need the organization token: without one there is nothing to list."""
        if kind not in history.HISTORY_KINDS:
            raise ValueError(f"Mollie history has no kind {kind!r}; it lists {', '.join(history.HISTORY_KINDS)}")
        if kind == "settlements" and payouts_off_note(connection) is not None:
            log.info("mollie.backfill_settlements_skipped", connection=connection.id, reason="no organization token")
            return HistoryPage((), None)
        resource: ListedResource = "settlements" if kind == "settlements" else "payments"
        objects, following = await self._api(connection).list_page(resource, cursor)
        notices, past = history.select(kind, objects, since, until)
        return HistoryPage(notices, None if past else following)

    async def poll(self, connection: Connection, now: datetime) -> Sequence[Notice]:
        """The settlement poll: settlements that reached ``paidout`` since the connection was added (and in
        the last :data:`POLL_LOOKBACK`), as the classic calls a backfill would offer for them. The inbox
        deduplicates their event ids (``bf_stl_….paidout``), so each settlement state is queued once,
        whichever process polled or backfilled it first. Nothing without an organization token."""
        if payouts_off_note(connection) is not None:
            return []
        api = self._api(connection)
        floor = now - POLL_LOOKBACK
        found: list[Notice] = []
        cursor: str | None = None
        for _ in range(POLL_MAX_PAGES):
            settlements, cursor = await api.list_page("settlements", cursor)
            for settlement in settlements:
                if settlement.get("status") != "paidout":
                    continue
                settled = settlement.get("settledAt") or settlement.get("createdAt")
                settled_at = time_of(settled, f"Mollie settlement {settlement.get('id')!r}")
                if settled_at < connection.created_at - POLL_CLOCK_MARGIN:
                    continue  # paid out before the bridge was connected: a backfill's to import
                made = history.notice("settlements", settlement)
                if made is not None:
                    found.append(made)
            if cursor is None or not settlements:
                break
            if history.created_of(settlements[-1], "Mollie settlement") < floor:
                break
        return found

    # ------------------------------------------------------------------------------------------ process

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement]:
        if event.event_type.endswith(".ping"):
            ping = webhook.parse_classic(event.body)
            if ping.resource == "payment":
                return await self._payment(connection, ping.resource_id, self._received_seq(event.event_id))
            if ping.resource == "settlement":
                return await self._settlement(connection, ping.resource_id)
            # Refunds and chargebacks are pinged on their payment's webhook URL; one named alone cannot be
            # fetched without its payment id, and its payment's own ping books it.
            log.info("mollie.ping_ignored", event_id=event.event_id, resource=ping.resource)
            return []
        parsed = webhook.parse_event(event.body)
        if parsed.type in SETTLEMENT_EVENT_TYPES:
            settlement_id = _settlement_id(parsed)
            return [] if settlement_id is None else await self._settlement(connection, settlement_id)
        if not parsed.handled:
            return []
        if parsed.payment_id is None:
            raise TranslationError(f"Mollie event {parsed.id} ({parsed.type}) names no payment")
        return await self._payment(connection, parsed.payment_id, None)

    def _received_seq(self, event_id: str) -> int | None:
        """The receipt sequence of a classic ping this process received, else None."""
        _, _, receipt = event_id.partition("@")
        parts = receipt.split(".")
        if len(parts) == 3 and parts[1] == self._token and parts[2].isdigit():
            return int(parts[2])
        return None

    async def _payment(self, connection: Connection, payment_id: str, received: int | None) -> list[Movement]:
        key = (connection.id, payment_id)
        cached = self._fetched.get(key)
        if received is not None and cached is not None and received <= cached[0]:
            return list(cached[1])  # a fetch that started after this ping arrived already read its change
        started = next(self._received) - 1  # every ping numbered up to here arrived before this fetch
        payment = await self._api(connection).payment(payment_id)
        moved = payment_movements(payment, fee=await self._payment_fee(connection, payment))
        self._fetched[key] = (started, moved)
        self._fetched.move_to_end(key)
        while len(self._fetched) > COALESCE_MEMORY:
            self._fetched.popitem(last=False)
        return list(moved)

    async def _settlement(self, connection: Connection, settlement_id: str) -> list[Movement]:
        note = payouts_off_note(connection)
        if note is not None:
            log.info("mollie.settlement_skipped", connection=connection.id, settlement=settlement_id, reason=note)
            return []
        api = self._api(connection)
        settlement = await api.settlement(settlement_id)
        async with anyio.create_task_group() as tg:
            lists: dict[str, list[dict[str, Any]]] = {}

            async def read(kind: Any) -> None:
                lists[kind] = await api.settlement_items(settlement, kind)

            for kind in ("payments", "refunds", "chargebacks"):
                tg.start_soon(read, kind)
        fees = await self._settlement_fees(connection, settlement, lists["payments"])
        payout = to_payout(settlement, lists["payments"], lists["refunds"], lists["chargebacks"], fees=fees)
        currency = payout.amount.currency
        moved: list[Movement] = []
        booked: set[str] = set()
        for payment in lists["payments"]:
            fee = fees.get(str(payment.get("id"))) if fees is not None else None
            moved += payment_movements({k: v for k, v in payment.items() if k != "_embedded"}, fee=fee)
            booked.add(str(payment.get("id")))
        missing = {
            str(obj.get("paymentId"))
            for obj in (*lists["refunds"], *lists["chargebacks"])
            if obj.get("paymentId") not in booked and is_mollie_id(obj.get("paymentId"), "tr")
        }
        for payment_id in sorted(missing):  # their charges (and refunds, chargebacks) must be in Thred first
            fetched = await api.payment(payment_id)
            if booking_currency(fetched) != currency:
                raise TranslationError(f"Mollie payment {payment_id} is booked in {booking_currency(fetched)}")
            moved += payment_movements(fetched, fee=await self._payment_fee(connection, fetched))
        for refund in lists["refunds"]:
            moved.append(to_refund(refund, currency=currency))
        for chargeback in lists["chargebacks"]:
            moved += chargeback_movements(chargeback, currency=currency)
        moved.append(payout)
        return _once(moved)

    # ------------------------------------------------------------------------------------------ fees

    def _refused(self, connection: Connection) -> bool:
        """Whether the Balances API refused this connection's token less than BALANCE_RETRY_AFTER ago."""
        at = self._balances_refused.get(connection.id)
        if at is None:
            return False
        if time.monotonic() - at < BALANCE_RETRY_AFTER:
            return True
        del self._balances_refused[connection.id]
        return False

    def _refuse(self, connection: Connection, exc: ProcessorError) -> None:
        log.warning("mollie.balances_refused", connection=connection.id, status=exc.status)
        self._balances_refused[connection.id] = time.monotonic()

    async def _ledger(self, connection: Connection, *, currency: str, balance_id: str | None) -> BalanceLedger | None:
        """The ledger of ``balance_id``, or of the balance holding ``currency``; None without balance access
        or when no balance holds that currency."""
        if payouts_off_note(connection) is not None or self._refused(connection):
            return None
        api = self._api(connection)
        if balance_id is None:
            key = (connection.id, currency)
            if key not in self._balance_ids:
                self._balance_ids[key] = await _balance_holding(api, currency)
            balance_id = self._balance_ids[key]
            if balance_id is None:
                return None
        ledger = self._ledgers.get((connection.id, balance_id))
        if ledger is None or ledger.api is not api:
            ledger = self._ledgers[(connection.id, balance_id)] = BalanceLedger(api, balance_id)
        return ledger

    async def _payment_fee(
        self, connection: Connection, payment: Mapping[str, Any], *, balance_id: str | None = None, wait: bool = True
    ) -> Money | None:
        """The fee Mollie deducted from ``payment`` (its balance transaction's ``deductions``), or None when
        there is nothing to read: the payment took no money, Mollie does not settle it, or the connection may
        not read balances (the fallback). Raises NotReadyError, when ``wait``, for a paid payment whose
        transaction Mollie has not written yet."""
        if charge_amount(payment) is None:
            return None
        payment_id = payment_id_of(payment)
        if settled_of(payment.get("settlementAmount"), f"Mollie payment {payment_id} settlementAmount") is None:
            return None  # PayPal, gift cards: not in the Mollie balance
        try:
            ledger = await self._ledger(connection, currency=booking_currency(payment), balance_id=balance_id)
            if ledger is None:
                return None
            paid_at = _paid_at(payment)
            fee = await ledger.fee_for(payment_id, paid_at)
        except ProcessorError as exc:
            if not is_access_refused(exc):
                raise
            self._refuse(connection, exc)
            return None
        if fee is None and wait and ledger.covers(paid_at):
            raise NotReadyError(
                f"Mollie has not written the balance transaction of payment {payment_id} yet (its fee)",
                retry_after=NOT_BOOKED_RETRY,
            )
        return fee

    async def _settlement_fees(
        self, connection: Connection, settlement: Mapping[str, Any], payments: Sequence[Mapping[str, Any]]
    ) -> dict[str, Money] | None:
        """Payment id → fee for the settlement's payments, from its balance's transactions (newest payment
        first, so the ledger reads the list downwards once); None (the settlement's costs instead) when the
        connection may not read balances."""
        if payouts_off_note(connection) is not None or self._refused(connection):
            return None
        balance_id = text_of(settlement.get("balanceId"))
        if not payments:  # nothing to look up: ask once whether the token may read balances at all
            try:
                await self._api(connection).balance(balance_id or "primary")
            except ProcessorError as exc:
                if not is_access_refused(exc):
                    raise
                self._refuse(connection, exc)
                return None
            return {}
        fees: dict[str, Money] = {}
        for payment in sorted(payments, key=lambda p: str(p.get("paidAt") or p.get("createdAt")), reverse=True):
            fee = await self._payment_fee(connection, payment, balance_id=balance_id, wait=False)
            if self._refused(connection):
                return None
            if fee is not None:
                fees[payment_id_of(payment)] = fee
        return fees

    def _api(self, connection: Connection) -> MollieApi:
        credentials = (connection.credentials.get(API_KEY, ""), connection.credentials.get(ORGANIZATION_TOKEN, ""))
        held = self._apis.get(connection.id)
        if held is None or held[0] != credentials:
            api = MollieApi(
                credentials[0],
                organization_token=credentials[1] or None,
                base_url=self._api_base,
                limiter=self._limiter,
            )
            if held is not None:
                held[1].close()
            self._balances_refused.pop(connection.id, None)  # a new token may read balances: ask again
            self._apis[connection.id] = (credentials, api)
            return api
        return held[1]

    async def aclose(self) -> None:
        for _, api in self._apis.values():
            api.close()
        self._apis.clear()


async def _balance_holding(api: MollieApi, currency: str) -> str | None:
    """The id of the balance a payment settled in ``currency`` lands in: the primary balance when it holds
    that currency, else the first other balance that does; None when none does."""
    primary = await api.balance("primary")
    if primary.get("currency") == currency:
        return str(primary.get("id"))
    for balance in await api.balances():
        if balance.get("currency") == currency and balance.get("status", "active") == "active":
            return str(balance.get("id"))
    return None


def _paid_at(payment: Mapping[str, Any]) -> datetime:
    for key in ("paidAt", "authorizedAt", "createdAt"):
        if payment.get(key) is not None:
            return time_of(payment.get(key), f"Mollie payment {payment.get('id')} {key}")
    raise TranslationError(f"Mollie payment {payment.get('id')} has no paidAt, authorizedAt or createdAt")


def _settlement_id(event: webhook.MollieEvent) -> str | None:
    """The settlement a next-gen payout or balance-transaction event is about, if it names one."""
    if is_mollie_id(event.entity_id, "stl"):
        return event.entity_id
    entity = event.entity or {}
    context = entity.get("context")
    for value in (
        entity.get("settlementId"),
        context.get("settlementId") if isinstance(context, Mapping) else None,
    ):
        if is_mollie_id(value, "stl"):
            return value
    return None


def _once(movements: list[Movement]) -> list[Movement]:
    """Each (kind, object) once, the last seen winning (a fetched payment's view is the newest)."""
    seen: dict[tuple[str, str], Movement] = {}
    for movement in movements:
        seen[(type(movement).__name__, movement.object_id)] = movement
    return list(seen.values())
