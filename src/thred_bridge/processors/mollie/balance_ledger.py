"""What this process has read of a Mollie balance's transactions: the fee Mollie deducted from each payment.

Mollie's ``GET /v2/balances/{id}/transactions`` has no filter (only ``from`` and ``limit``, newest first),
so a payment's transaction is found by reading the list. :class:`BalanceLedger` keeps one contiguous
window of it, from the newest transaction read down to the oldest, and the payment fees in that window
(``balance_fees``). To answer for a payment it reads, at most:

1. from the top of the list down to the newest transaction it already holds (what arrived since), then
2. further down from the oldest it holds, until the window reaches back past the payment's ``paidAt``
   (less :data:`CLOCK_MARGIN`) or the list ends.

So a burst of calls costs about one page per new payment, and a backfill reads the list once, in order,
not once per payment. A payment's deduction never changes once made, so nothing read goes stale; the
window is dropped whole when it grows past :data:`MAX_PAYMENTS` payments. One lock per balance: calls
for the same balance read in turn, and each finds what the one before it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio

from thred_bridge.domain.money import Money
from thred_bridge.errors import ProcessorError
from thred_bridge.processors.mollie.api import PAGE_SIZE, MollieApi
from thred_bridge.processors.mollie.balance_fees import created_of, payment_fee

CLOCK_MARGIN = timedelta(hours=1)
"""How far before a payment's ``paidAt`` its transaction may be stamped (clocks, and capture delays)."""
MAX_PAYMENTS = 500_000
"""Payment fees held per balance before the window is dropped and read again (about 100 MB)."""
MAX_PAGES_PER_LOOKUP = 400
"""Most pages one lookup reads (100,000 transactions): a payment older than that is not searched further."""


class BalanceLedger:
    """The payment fees of one Mollie balance, read through one :class:`MollieApi` (module docstring)."""

    def __init__(
        self, api: MollieApi, balance_id: str, *, max_payments: int = MAX_PAYMENTS, page_size: int = PAGE_SIZE
    ) -> None:
        self.api = api
        self.balance_id = balance_id
        self._max_payments = max_payments
        self._page_size = page_size
        self._lock = anyio.Lock()
        self._reset()

    def _reset(self) -> None:
        self.fees: dict[str, Money] = {}
        self._seen: set[str] = set()
        self._newest: str | None = None  # id of the newest transaction in the window
        self._older: str | None = None  # ``from`` of the page below the window, None at the end of the list
        self._oldest_at: datetime | None = None
        self._read_any = False
        self.pages_read = 0

    async def fee_for(self, payment_id: str, paid_at: datetime) -> Money | None:
        """What Mollie deducted from ``payment_id`` (paid at ``paid_at``), or None when its transaction is
        not in the balance (not yet, or never: the window reaches past ``paid_at`` without it)."""
        async with self._lock:
            if payment_id in self.fees:
                return self.fees[payment_id]
            if len(self.fees) > self._max_payments:
                self._reset()
            pages = 0
            await self._read_new()
            pages += 1
            while payment_id not in self.fees and self._reaches_above(paid_at - CLOCK_MARGIN):
                if pages >= MAX_PAGES_PER_LOOKUP:
                    break
                await self._read_older()
                pages += 1
            return self.fees.get(payment_id)

    def covers(self, paid_at: datetime) -> bool:
        """Whether the window reaches back past ``paid_at`` (less the margin), or to the end of the list:
        a payment paid then that is not in it has no transaction (yet)."""
        return self._read_any and not self._reaches_above(paid_at - CLOCK_MARGIN)

    def _reaches_above(self, floor: datetime) -> bool:
        """Whether there is more of the list below the window, and the window does not yet reach ``floor``."""
        return self._older is not None and self._oldest_at is not None and self._oldest_at >= floor

    async def _read_new(self) -> None:
        """Read from the top of the list down to the newest transaction already held."""
        cursor: str | None = None
        first_id: str | None = None
        while True:
            items, following = await self._page(cursor)
            if first_id is None and items:
                first_id = str(items[0].get("id"))
            known = next((i for i, tx in enumerate(items) if tx.get("id") == self._newest), None)
            self._take(items if known is None else items[:known])
            if not self._read_any:  # the first page ever read: the window is this page
                self._read_any = True
                self._older = following
                if items:
                    self._oldest_at = created_of(items[-1])
                break
            if known is not None or following is None:
                break
            cursor = following
        if first_id is not None:
            self._newest = first_id

    async def _read_older(self) -> None:
        items, following = await self._page(self._older)
        self._take(items)
        self._older = following
        if items:
            self._oldest_at = created_of(items[-1])

    async def _page(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        self.pages_read += 1
        return await self.api.balance_transactions_page(self.balance_id, cursor, limit=self._page_size)

    def _take(self, transactions: Sequence[dict[str, Any]]) -> None:
        for transaction in transactions:
            found = payment_fee(transaction)
            if found is None or found.transaction_id in self._seen:
                continue
            self._seen.add(found.transaction_id)
            held = self.fees.get(found.payment_id)
            self.fees[found.payment_id] = found.fee if held is None else held + found.fee


def is_access_refused(exc: ProcessorError) -> bool:
    """Whether Mollie refused the organization token on the Balances API (no ``balances.read``): 401 or 403."""
    return exc.status in (401, 403)
