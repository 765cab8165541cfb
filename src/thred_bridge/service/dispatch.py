"""Outbox → Thred: each record is sent once its parents are, then marked sent, due later, or failed.

A record's children (the invoice after its customer, the payment after its invoice) are claimed in
the same transaction that marks it sent and sent right after, in the same task, so one charge's
chain does not wait for the next poll. A record many others wait on (the walk-in customer of ten
thousand invoices, the payments of a payout) wakes the dispatch loop instead, which sends them
``concurrency`` at a time: one task sending them one after another would be the bottleneck.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import structlog

from thred_bridge.domain.payouts import carry_excess
from thred_bridge.domain.queue import ClaimedRecord
from thred_bridge.domain.records import Lookup, fill
from thred_bridge.domain.refunds import booked_short, within_room
from thred_bridge.domain.retry import next_due
from thred_bridge.errors import TRANSIENT, ThredError, describe, retry_after_of
from thred_bridge.service.batching import GroupCommit
from thred_bridge.service.liveness import ProcessLostError
from thred_bridge.service.ports import Clock, Store, ThredApi

log = structlog.get_logger("thred_bridge.dispatch")
INLINE_CHILDREN = 4  # at most this many children follow their parent in its task; more wake the loop
# The children of what a payout settles go back to the loop too: one of them is the payout, and testing
# whether thousands of parents are all sent, after each one is, made a large payout's dispatch quadratic.
SETTLED_KINDS = frozenset({"payment", "refund_payment"})
TURN_WAIT = timedelta(milliseconds=200)  # a refund waiting for its invoice's turn tries again after 1-2 of these


@dataclasses.dataclass(frozen=True, slots=True)
class _Sent:
    record: ClaimedRecord
    thred_id: str | None
    excess_cents: int | None  # a refund booked short (decision 0007)


class Dispatching:
    """Claims ready records and creates them in Thred."""

    def __init__(
        self,
        store: Store,
        thred: ThredApi,
        clock: Clock,
        *,
        owner: str,
        max_attempts: int,
        lease: timedelta,
        on_record: Callable[[str], None] = lambda _outcome: None,
        on_batch: Callable[[int], None] = lambda _records: None,
        wake: Callable[[], None] = lambda: None,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._fence = fence
        self._on_record = on_record
        self._on_batch = on_batch
        self._wake = wake
        self._store = store
        self._thred = thred
        self._clock = clock
        self.owner = owner
        self._max_attempts = max_attempts
        self._lease = lease
        # Records sent together are marked sent together: one transaction for all that finished meanwhile.
        self._marks: GroupCommit[_Sent, list[ClaimedRecord]] = GroupCommit(self._mark_sent)

    async def claim(self, limit: int) -> list[ClaimedRecord]:
        async with self._store.transaction() as tx:
            return await tx.claim_records(self.owner, self._clock(), limit, self._lease)

    async def handle(self, first: ClaimedRecord) -> str:
        """Send ``first`` and then each child it unblocks; returns the first record's outcome."""
        queue = [first]
        first_outcome = ""
        while queue:
            record = queue.pop(0)
            outcome, children = await self._send_one(record)
            self._on_record(outcome)
            first_outcome = first_outcome or outcome
            queue.extend(children)
        return first_outcome

    async def _send_one(self, record: ClaimedRecord) -> tuple[str, list[ClaimedRecord]]:
        """Send one record. A refund takes its invoice's money-out turn first (one at a time per invoice, so each
        reads what is left refundable after the one before: decision 0007), or waits a moment for it."""
        if record.kind != "refund" or record.op != "create":
            return await self._send_claimed(record, None)
        now = self._clock()
        async with self._store.transaction() as tx:  # held by the process: its death gives the turn back at once
            turn, room = await tx.money_out_turn(record.connection_id, record.id, self.owner, now)
            if not turn:
                await tx.defer_record(record.id, now + TURN_WAIT * (1 + random.random()))
        if not turn:
            log.info("record.waits_its_turn", record=record.id, kind=record.kind, external_id=record.external_id)
            return "deferred", []
        try:
            return await self._send_claimed(record, room)
        finally:
            async with self._store.transaction() as tx:
                await tx.end_money_out_turn(record.connection_id, record.id, self.owner)

    async def _send_claimed(self, record: ClaimedRecord, room: int | None) -> tuple[str, list[ClaimedRecord]]:
        bound = log.bind(
            record=record.id, kind=record.kind, external_id=record.external_id, connection=record.connection_id
        )
        if self._fence is not None:
            # raises ProcessLostError when this claim was taken over; checked again by the client right before
            # the write goes out, since a token, a lookup or a pause may come between
            await self._fence()
        try:
            record, excess = self._within_room(record, room)
            if excess and not record.body.get("amount_cents"):
                thred_id = None  # all of it beyond what was refundable: nothing to book, the payout carries it
            else:
                thred_id = await self._already_sent(record) if record.taken_over else None
                if thred_id is None:
                    thred_id = await self._apply(record)
        except TRANSIENT as exc:
            message = describe(exc)
            if record.attempts >= self._max_attempts:
                await self._fail(
                    record, f"gave up after {record.attempts} attempts: {message}", thred_request_id=_request_id(exc)
                )
                return "failed", []
            due = next_due(record.attempts, self._clock(), random.random(), retry_after_of(exc))
            bound.info("record.retry", error=message, due=due.isoformat(), thred_request_id=_request_id(exc))
            async with self._store.transaction() as tx:
                await tx.retry_record(record.id, due, message)
            return "retry", []
        except ThredError as exc:
            await self._fail(record, describe(exc), thred_request_id=exc.request_id)
            return "failed", []
        except ProcessLostError:
            raise  # the client's last fence: declared dead, the claim is another's now; nothing to write
        except Exception as exc:
            bound.exception("record.crashed")
            await self._fail(record, f"internal error ({type(exc).__name__}): {exc}")
            return "failed", []
        ready = await self._marks.submit(
            _Sent(record, thred_id, excess if record.kind == "refund" and excess else None)
        )
        bound.debug("record.sent", thred_id=thred_id, op=record.op)
        return "sent", ready

    async def _mark_sent(self, batch: Sequence[_Sent]) -> list[list[ClaimedRecord]]:
        """Mark records that finished together sent, in one transaction, and claim the children each unblocks
        that follow it in its task (at most ``INLINE_CHILDREN``; more, or a settled kind's, wake the loop)."""
        now = self._clock()
        follows: dict[int, int] = {}  # child record id → the index in ``batch`` of the parent it follows
        wake = False
        async with self._store.transaction() as tx:
            children = await tx.records_sent([(s.record.id, s.thred_id, s.excess_cents) for s in batch], now)
            for index, sent in enumerate(batch):
                waiting = children.get(sent.record.id, ())
                if len(waiting) > INLINE_CHILDREN or (waiting and sent.record.kind in SETTLED_KINDS):
                    wake = True
                    continue
                for child in waiting:
                    follows.setdefault(child, index)
            ready = (
                await tx.claim_records(self.owner, now, len(follows), self._lease, ids=list(follows)) if follows else []
            )
        if wake:
            self._wake()
        claimed: list[list[ClaimedRecord]] = [[] for _ in batch]
        for child_record in ready:
            claimed[follows[child_record.id]].append(child_record)
        self._on_batch(len(batch))
        log.debug("records.sent", records=len(batch), children=len(ready))
        return claimed

    async def settled(self) -> None:
        """Wait until every record sent has been marked so."""
        await self._marks.settled()

    async def give_back(self, record: ClaimedRecord, error: str) -> None:
        """After a crash outside the record's own error handling (the store failed after Thred answered): back in
        the queue with backoff, to be looked up in Thred before it is sent again."""
        due = next_due(record.attempts, self._clock(), random.random(), None)
        async with self._store.transaction() as tx:
            await tx.give_back_record(record.id, self.owner, due, error)

    def _within_room(self, record: ClaimedRecord, room: int | None) -> tuple[ClaimedRecord, int]:
        """The record as it may be booked, and by how much it was cut: a refund beyond what its payment left
        refundable (``room``) is booked for what is left, its refund payment (claimed after it) for as much, and
        the excess goes on the payout (decision 0007)."""
        if record.op != "create" or record.kind not in ("refund", "refund_payment"):
            return record, 0
        amount = int(record.body.get("amount_cents") or 0)
        if record.kind == "refund":
            booked, excess = within_room(amount, room)
        else:
            excess = min(record.excess_cents, amount)
            booked = amount - excess
        if not excess:
            return record, 0
        log.info("record.booked_short", kind=record.kind, external_id=record.external_id, booked=booked, excess=excess)
        return dataclasses.replace(record, body=booked_short(record.body, booked, excess)), excess

    async def _already_sent(self, record: ClaimedRecord) -> str | None:
        """The Thred id of a taken-over record that its dead holder had sent already, else None (send it).

        A payout is an upsert that a later plan may change: it counts as sent only when what Thred holds has
        the same top-level figures as the body to send."""
        if record.op != "create":
            return None
        found: Any = await self._thred.find_by_external_id(
            record.business_id, record.kind, record.external_id, parent_id=record.parent_id
        )
        if not isinstance(found, dict) or not isinstance(found.get("id"), str):
            return None
        if record.kind == "payout":
            scalars = {k: v for k, v in record.body.items() if isinstance(v, str | int | bool) or v is None}
            if any(found.get(k) != v for k, v in scalars.items() if k in found):
                return None
        log.info("record.found_sent", kind=record.kind, external_id=record.external_id, thred_id=found["id"])
        return str(found["id"])

    async def _apply(self, record: ClaimedRecord) -> str | None:
        """Create (or upsert) the record in Thred, delete the one it names, or read the one it adopts (a
        missing or foreign one fails with Thred's 404); returns the Thred id
        (None: a delete of something that was never booked, which leaves nothing to do)."""
        if record.op == "delete":
            target = record.resolved.get("id")
            if target is None:
                return None
            try:
                await self._thred.delete(
                    record.business_id, record.kind, target, parent_id=record.parent_id, before_write=self._fence
                )
            except ThredError as exc:
                if exc.status != 404:  # already gone: the goal is reached
                    raise
            return target
        if record.op == "adopt":  # an existing Thred record (an invoice-first invoice): it must be there
            held: Any = await self._thred.get(record.business_id, record.kind, str(record.body["id"]))
            if not isinstance(held, dict) or not isinstance(held.get("id"), str):
                raise ThredError(f"Thred {record.kind} {record.body['id']} could not be read")
            return str(held["id"])
        resolved = record.resolved  # a payout's names thousands: copied only when a lookup adds to it
        if record.lookups:
            resolved = {**resolved}
            for path, lookup in record.lookups.items():
                resolved[path] = await self._look_up(record.business_id, lookup)
        body = fill(record.body, resolved)
        if record.kind == "payout":
            async with self._store.transaction() as tx:
                body = carry_excess(body, await tx.excess_settled(record.connection_id, record.id))
        created = await self._thred.create(
            record.business_id,
            record.kind,
            body,
            parent_id=record.parent_id,
            idempotency_key=record.idempotency_key,
            before_write=self._fence,
        )
        return created.id

    async def _look_up(self, business_id: str, lookup: Lookup) -> str:
        """A field of an existing Thred record (an invoice-first charge's customer: its invoice's)."""
        held: Any = await self._thred.get(business_id, lookup.kind, lookup.thred_id)
        value: Any = held
        for key in lookup.field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None and lookup.field.endswith(".id"):  # a flat ``customer_id`` instead of ``customer.id``
            value = held.get(lookup.field.replace(".id", "_id")) if isinstance(held, dict) else None
        if not isinstance(value, str) or not value:
            raise ThredError(f"Thred {lookup.kind} {lookup.thred_id} has no {lookup.field}")
        return value

    async def _fail(self, record: ClaimedRecord, error: str, *, thred_request_id: str | None = None) -> None:
        log.warning(
            "record.failed", record=record.id, kind=record.kind, external_id=record.external_id,
            connection=record.connection_id, error=error, thred_request_id=thred_request_id,
        )  # fmt: skip
        async with self._store.transaction() as tx:
            await tx.fail_record(record.id, error)


def _request_id(exc: BaseException) -> str | None:
    """The request id Thred gave its answer, to quote to Thred's support (None when no answer came)."""
    return exc.request_id if isinstance(exc, ThredError) else None
