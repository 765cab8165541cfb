"""Outbox queries: records queued with their parents, claimed when ready, sent, retried or failed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Integer, and_, bindparam, case, delete, exists, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import Row

from thred_bridge.domain import json_codec
from thred_bridge.domain.queue import ClaimedRecord
from thred_bridge.domain.records import Lookup, Record, Ref
from thred_bridge.store.tables import (
    MONEY_OUT_KEYS,
    URL_PARENT,
    UTCDateTime,
    connections,
    events,
    leases,
    record_parents,
    records,
)
from thred_bridge.store.tx_base import RECORDS_CHANNEL, TxBase

LOOKUPS = "$lookups"
_ADD_RECORDS: dict[tuple[str, bool], Any] = {}


# The dispatch path's statements, built once: building a select with an alias per call cost more CPU
# than running it (SQLAlchemy's column proxies and cache keys), at thousands of records a minute.
_parent = records.alias("parent")
_PARENT_JOIN = and_(
    _parent.c.connection_id == record_parents.c.connection_id,
    _parent.c.kind == record_parents.c.kind,
    _parent.c.external_id == record_parents.c.external_id,
)
# Each path's Thred id, NULL while that parent is unsent. ``status`` is tested here, not in the WHERE: given
# ``parent.status = 'sent'`` there, SQLite's planner walked ix_records_due over every sent record for each claim
# instead of the parents' unique keys.
_PARENT_IDS = (
    select(record_parents.c.path, case((_parent.c.status == "sent", _parent.c.thred_id)))
    .select_from(record_parents.join(_parent, _PARENT_JOIN))
    .where(record_parents.c.record_id == bindparam("record_id"))
)
# The same for the records of a claim at once: one statement per claim, not one per record.
_PARENT_IDS_OF = (
    select(record_parents.c.record_id, record_parents.c.path, case((_parent.c.status == "sent", _parent.c.thred_id)))
    .select_from(record_parents.join(_parent, _PARENT_JOIN))
    .where(record_parents.c.record_id.in_(bindparam("record_ids", expanding=True)))
)
STREAM_PARENTS_ABOVE = 64 * 1024  # a record whose parents' JSON is longer reads its parent ids in pages
PARENT_PAGE = 2_000
_LEASE_RECORDS = (
    update(records)
    .where(records.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        locked_until=bindparam("until", type_=UTCDateTime()),
        locked_by=bindparam("owner"),
        attempts=records.c.attempts + 1,
    )
)
_CLAIMED_ROWS = (
    select(records, connections.c.business_id)
    .join(connections, connections.c.id == records.c.connection_id)
    .where(records.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(records.c.id)
)
_MARK_SENT = (
    update(records)
    .where(records.c.id == bindparam("record_id"))
    .values(
        status="sent",
        thred_id=bindparam("thred_id"),
        sent_at=bindparam("now", type_=UTCDateTime()),
        locked_until=None,
        locked_by=None,
        taken_over=False,
        last_error=None,
    )
    .returning(records.c.connection_id, records.c.kind, records.c.external_id)
)
_MARK_SENT_MANY = (  # executemany: several records that finished together, marked in one round trip
    update(records)
    .where(records.c.id == bindparam("record_id"))
    .values(
        status="sent",
        thred_id=bindparam("thred_id"),
        sent_at=bindparam("now", type_=UTCDateTime()),
        locked_until=None,
        locked_by=None,
        taken_over=False,
        last_error=None,
    )
)
_sent = records.alias("sent")
_CHILDREN_OF = (  # the records waiting on each of several parents, by the parents' record ids
    select(_sent.c.id, record_parents.c.record_id)
    .select_from(
        _sent.join(
            record_parents,
            and_(
                record_parents.c.connection_id == _sent.c.connection_id,
                record_parents.c.kind == _sent.c.kind,
                record_parents.c.external_id == _sent.c.external_id,
            ),
        )
    )
    .where(_sent.c.id.in_(bindparam("ids", expanding=True)))
)
_CHILDREN = (
    select(record_parents.c.record_id)
    .where(
        record_parents.c.connection_id == bindparam("connection_id"),
        record_parents.c.kind == bindparam("kind"),
        record_parents.c.external_id == bindparam("external_id"),
    )
    .limit(bindparam("limit", type_=Integer()))
)
_PICK: dict[str, Any] = {}
CLAIM_WINDOW = 256  # due records looked at per step of a claim
RECORDS_PER_STATEMENT = 500  # records queued per multi-row insert
LINKS_PER_STATEMENT = 2_000  # parent links per executemany (a payout of 50,000 payments has 50,000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MONEY_OUT_TURN = timedelta(seconds=30)  # longest a live process holds an invoice's turn if never given back


def padded(ids: Sequence[int]) -> list[int]:
    """``ids`` lengthened to the next power of two (at least 8) by repeating the last: an IN list's length is in
    the statement's text, so without this nearly every claim was a new statement for SQLAlchemy to render and
    for the driver and the database to parse; repeats change nothing an IN matches."""
    out = list(ids)
    if not out:
        return out
    size = 8
    while size < len(out):
        size *= 2
    out.extend([out[-1]] * (size - len(out)))
    return out


def _money_out_key(invoice_external_id: str) -> str:
    return MONEY_OUT_KEYS.replace("%", invoice_external_id)


def _claimable() -> list[Any]:
    """Pending, due and not leased at ``now``."""
    now = bindparam("now", type_=UTCDateTime())
    return [
        records.c.status == "pending",
        records.c.next_attempt_at <= now,
        or_(records.c.locked_until.is_(None), records.c.locked_until < now),
    ]


def _window_statement(*, by_id: bool) -> Any:
    """The next ``CLAIM_WINDOW`` due, free, pending records after a (next_attempt_at, id) key, in due order:
    ix_records_due yields them as they are, so this reads a window, never the whole queue."""
    where = [
        *_claimable(),
        tuple_(records.c.next_attempt_at, records.c.id)
        > tuple_(bindparam("after_at", type_=UTCDateTime()), bindparam("after_id", type_=Integer())),
    ]
    if by_id:
        where.append(records.c.id.in_(bindparam("ids", expanding=True)))
    return (
        select(records.c.id, records.c.next_attempt_at)
        .where(*where)
        .order_by(records.c.next_attempt_at, records.c.id)
        .limit(CLAIM_WINDOW)
    )


_WINDOW = {False: _window_statement(by_id=False), True: _window_statement(by_id=True)}


def _pick_statement() -> Any:
    """Of a window's records, those none of whose parents is missing or unsent, oldest due first.

    Tested a window at a time: one statement over the whole queue made Postgres anti-join and sort every
    due record for each claim (60 ms at 20,000 waiting records), and SQLite test and sort them all."""
    unsent_parent = (
        select(record_parents.c.record_id)
        .select_from(record_parents.outerjoin(_parent, _PARENT_JOIN))
        .where(
            record_parents.c.record_id == records.c.id,
            # A delete of something never queued has nothing to wait for: it is a no-op.
            or_(and_(_parent.c.id.is_(None), records.c.op != "delete"), _parent.c.status != "sent"),
        )
    )
    # Claimable is tested again: the window is read without locks, and a claim that committed since leased some
    # of its records. Postgres re-tests these conditions on a row's newest version when it locks it; without
    # them two workers (or the loop and a record's inline children) both claimed and sent one record.
    return (
        select(records.c.id)
        .where(records.c.id.in_(bindparam("window", expanding=True)), *_claimable(), ~exists(unsent_parent))
        .order_by(records.c.next_attempt_at, records.c.id)
        .limit(bindparam("limit", type_=Integer()))
    )


class OutboxQueries(TxBase):
    queued = 0  # records written by this transaction's ``add_records`` (the store may ANALYZE after a large one)

    async def add_records(
        self, connection_id: str, planned: Iterable[Record], event_id: int | None, now: datetime
    ) -> None:
        """Queue records. One already there is kept as it is, unless it is updatable (a payout) and the new
        body differs: then the new body replaces it and it is sent again.

        A payout can plan tens of thousands of records, so they are written ``RECORDS_PER_STATEMENT`` at a
        time, not one per statement: a multi-row insert per kind of conflict handling, then the parents of
        what was written. Chunks keep memory flat: one 20,000-row statement cost 70 MB at its peak, and
        ``planned`` is read as it goes (it may be a plan spooled to disk). A record planned twice in one
        chunk is deduplicated here; across chunks the statements' conflict handling does the same (the
        first plan kept, an updatable record's differing body replacing it)."""
        chunk: dict[tuple[str, str], Record] = {}
        for record in planned:
            key = (record.kind, record.external_id)
            if key in chunk and not record.updatable:
                continue
            chunk[key] = record
            if len(chunk) == RECORDS_PER_STATEMENT:
                await self._add_chunk(connection_id, list(chunk.values()), event_id, now)
                chunk = {}
        if chunk:
            await self._add_chunk(connection_id, list(chunk.values()), event_id, now)

    async def _add_chunk(
        self, connection_id: str, chunk: Sequence[Record], event_id: int | None, now: datetime
    ) -> None:
        by_key: dict[tuple[str, str], Record] = {(r.kind, r.external_id): r for r in chunk}
        written: list[tuple[int, str, str]] = []
        replaced = 0
        for upsert in (False, True):
            rows = {(r.kind, r.external_id): self._row(connection_id, r, event_id, now)
                    for r in chunk if r.updatable is upsert}  # fmt: skip
            if rows:
                result = await self.conn.execute(self._add_records_stmt(upsert), list(rows.values()))
                new = [(r.id, r.kind, r.external_id) for r in result.all()]
                written.extend(new)
                if not upsert and len(new) < len(rows):
                    kept = set(rows).difference((kind, ext) for _, kind, ext in new)
                    replaced += await self._replace_held(
                        connection_id, [rows[k] for k in kept if rows[k]["status"] == "pending"]
                    )
        self.queued += len(written) + replaced
        if written or replaced:
            await self.notify(RECORDS_CHANNEL)
        if not written:
            return
        await self.conn.execute(
            delete(record_parents).where(record_parents.c.record_id.in_([record_id for record_id, _, _ in written]))
        )
        links: list[dict[str, Any]] = []
        for record_id, kind, external_id in written:
            for path, ref in _parent_paths(by_key[(kind, external_id)]):
                links.append({"record_id": record_id, "path": path, "connection_id": connection_id,
                              "kind": ref.kind, "external_id": ref.external_id})  # fmt: skip
                if len(links) == LINKS_PER_STATEMENT:
                    await self.conn.execute(insert(record_parents), links)
                    links = []
        if links:
            await self.conn.execute(insert(record_parents), links)

    async def _replace_held(self, connection_id: str, planned: Sequence[dict[str, Any]]) -> int:
        """Of records already there, those held get the body of ``planned`` (rows not held) and are sent; their
        parents and links stay (the held reading knew the customer). Returns how many were replaced."""
        if not planned:
            return 0
        by_key = {(row["kind"], row["external_id"]): row for row in planned}
        held = await self.conn.execute(
            select(records.c.id, records.c.kind, records.c.external_id).where(
                records.c.connection_id == connection_id,
                records.c.kind.in_({kind for kind, _ in by_key}),
                records.c.external_id.in_({ext for _, ext in by_key}),
                records.c.status == "held",
            )
        )
        replaced = 0
        for record_id, kind, external_id in held.all():
            row = by_key.get((kind, external_id))
            if row is None:
                continue
            done = await self.conn.execute(
                update(records)
                .where(records.c.id == record_id, records.c.status == "held")
                .values(
                    body=row["body"],
                    status="pending",
                    attempts=0,
                    next_attempt_at=row["next_attempt_at"],
                    last_error=None,
                    event_id=row["event_id"],
                )
            )
            replaced += done.rowcount
        return replaced

    @staticmethod
    def _row(connection_id: str, record: Record, event_id: int | None, now: datetime) -> dict[str, Any]:
        return {
            "connection_id": connection_id,
            "kind": record.kind,
            "external_id": record.external_id,
            "body": orjson.dumps(_stored_body(record), option=orjson.OPT_SORT_KEYS).decode(),
            "parents": orjson.dumps({k: [r.kind, r.external_id] for k, r in record.parents.items()}).decode(),
            "parent_path": (
                orjson.dumps([record.parent_path.kind, record.parent_path.external_id]).decode()
                if record.parent_path
                else None
            ),
            "idempotency_key": record.idempotency_key,
            "op": record.op,
            "status": "held" if record.held else "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "event_id": event_id,
            "created_at": now,
        }

    def _add_records_stmt(self, upsert: bool) -> Any:
        """Built once per dialect and kind of conflict handling, so its compiled form is cached."""
        key = (self.dialect, upsert)
        stmt = _ADD_RECORDS.get(key)
        if stmt is not None:
            return stmt
        stmt = self._insert(records)
        if upsert:
            excluded = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=["connection_id", "kind", "external_id"],
                set_={
                    "body": excluded.body,
                    "parents": excluded.parents,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": excluded.next_attempt_at,
                    "last_error": None,
                    "event_id": excluded.event_id,
                },
                # a payout that settles other payments for the same body (same count, same totals) changes too
                where=or_(records.c.body != excluded.body, records.c.parents != excluded.parents),
            )
        else:
            # Not DO UPDATE ... WHERE held: Postgres locks every conflicting row for that, held or not, so a
            # plan naming thousands of existing records would hold them all until it commits.
            stmt = stmt.on_conflict_do_nothing(index_elements=["connection_id", "kind", "external_id"])
        stmt = stmt.returning(records.c.id, records.c.kind, records.c.external_id)
        _ADD_RECORDS[key] = stmt
        return stmt

    async def claim_records(
        self, owner: str, now: datetime, limit: int, lease: timedelta, *, ids: Sequence[int] | None = None
    ) -> list[ClaimedRecord]:
        """Due records whose parents are all sent, leased to ``owner`` until ``now + lease`` (``locked_until``;
        ``locked_by`` names the holder, so its claims are taken over when it dies)."""
        pick = _PICK.get(self.dialect)
        if pick is None:
            pick = _PICK[self.dialect] = self._lock(_pick_statement())
        params: dict[str, Any] = {"now": now, "after_at": _EPOCH, "after_id": 0}
        if ids is not None:
            params["ids"] = padded(ids)
        picked: list[int] = []
        if ids is not None and len(ids) <= CLAIM_WINDOW:  # a few named records: they are the window
            chosen = await self.conn.execute(pick, {"window": padded(ids), "limit": limit, "now": now})
            picked.extend(r.id for r in chosen.all())
            limit = 0
        while len(picked) < limit:
            window = (await self.conn.execute(_WINDOW[ids is not None], params)).all()
            if not window:
                break
            chosen = await self.conn.execute(
                pick, {"window": padded([r.id for r in window]), "limit": limit - len(picked), "now": now}
            )
            picked.extend(r.id for r in chosen.all())
            if len(window) < CLAIM_WINDOW:
                break
            params["after_at"], params["after_id"] = window[-1].next_attempt_at, window[-1].id
        if not picked:
            return []
        await self.conn.execute(_LEASE_RECORDS, {"ids": padded(picked), "until": now + lease, "owner": owner})
        rows = (await self.conn.execute(_CLAIMED_ROWS, {"ids": padded(picked)})).all()
        few = [row.id for row in rows if len(row.parents) <= STREAM_PARENTS_ABOVE]
        resolved: dict[int, dict[str, str]] = {record_id: {} for record_id in few}
        if few:
            for record_id, path, thred_id in await self.conn.execute(_PARENT_IDS_OF, {"record_ids": padded(few)}):
                if thred_id is not None:
                    resolved[record_id][path] = thred_id
        claimed = []
        for row in rows:
            found = resolved.get(row.id)
            claimed.append(self._claimed(row, found if found is not None else await self._thred_ids(row.id, many=True)))
        return claimed

    @staticmethod
    def _claimed(row: Row[Any], resolved: dict[str, str]) -> ClaimedRecord:
        body = json_codec.loads(row.body)
        lookups = {path: Lookup(*spec) for path, spec in body.pop(LOOKUPS, {}).items()}
        parent_id = resolved.pop(URL_PARENT, None)
        return ClaimedRecord(
            id=row.id,
            connection_id=row.connection_id,
            business_id=row.business_id,
            kind=row.kind,
            external_id=row.external_id,
            body=body,
            lookups=lookups,
            resolved=resolved,
            parent_id=parent_id,
            idempotency_key=row.idempotency_key,
            op=row.op,
            attempts=row.attempts + 1,
            event_id=row.event_id,
            taken_over=bool(row.taken_over),
            excess_cents=int(row.excess_cents or 0),
        )

    async def _thred_ids(self, record_id: int, *, many: bool) -> dict[str, str]:
        """The Thred id at each path of the record whose parent is sent (the URL parent's under ``URL_PARENT``),
        through its ``record_parents`` rows: one join, however many parents (a payout names thousands; one OR
        term per parent overflows SQLite's expression depth). ``many``: read in pages, so only the map is held
        (a payout of 50,000 payments: its rows held whole were 15 MB more at the claim's peak)."""
        params = {"record_id": record_id}
        if not many:
            rows = await self.conn.execute(_PARENT_IDS, params)
            return {path: thred_id for path, thred_id in rows if thred_id is not None}
        ids: dict[str, str] = {}
        result = await self.conn.stream(_PARENT_IDS, params)
        async for page in result.partitions(PARENT_PAGE):
            ids.update((path, thred_id) for path, thred_id in page if thred_id is not None)
        return ids

    async def record_sent(
        self,
        record_id: int,
        thred_id: str | None,
        now: datetime,
        *,
        children_limit: int | None = None,
        excess_cents: int | None = None,
    ) -> list[int]:
        """Mark sent; returns the ids of the records waiting on it (at most ``children_limit``), which may
        now be ready. ``excess_cents``: a refund booked short (decision 0007), kept on it and on its refund
        payment, which is booked short by as much."""
        row = (await self.conn.execute(_MARK_SENT, {"record_id": record_id, "thred_id": thred_id, "now": now})).first()
        if row is None:
            return []
        if excess_cents is not None:
            await self.conn.execute(
                update(records)
                .where(
                    records.c.connection_id == row.connection_id,
                    records.c.external_id == row.external_id,
                    records.c.kind.in_((row.kind, "refund_payment")),
                )
                .values(excess_cents=excess_cents)
            )
        children = await self.conn.execute(
            _CHILDREN,
            {"connection_id": row.connection_id, "kind": row.kind, "external_id": row.external_id,
             "limit": children_limit if children_limit is not None else 2**31 - 1},
        )  # fmt: skip
        return list(dict.fromkeys(c.record_id for c in children.all()))  # a record may wait on it at two paths

    async def records_sent(
        self, sent: Sequence[tuple[int, str | None, int | None]], now: datetime
    ) -> dict[int, list[int]]:
        """Mark several records sent at once, each ``(record id, Thred id, excess cents or None)`` as
        :meth:`record_sent` does one; returns, for each that others wait on, the ids of those records."""
        if not sent:
            return {}
        await self.conn.execute(
            _MARK_SENT_MANY,
            [{"record_id": record_id, "thred_id": thred_id, "now": now} for record_id, thred_id, _ in sent],
        )
        for record_id, _, excess_cents in sent:
            if excess_cents is not None:  # a refund booked short (rare): kept on it and on its refund payment
                row = (
                    await self.conn.execute(
                        select(records.c.connection_id, records.c.kind, records.c.external_id).where(
                            records.c.id == record_id
                        )
                    )
                ).first()
                if row is not None:
                    await self.conn.execute(
                        update(records)
                        .where(
                            records.c.connection_id == row.connection_id,
                            records.c.external_id == row.external_id,
                            records.c.kind.in_((row.kind, "refund_payment")),
                        )
                        .values(excess_cents=excess_cents)
                    )
        found: dict[int, dict[int, None]] = {}
        ids = [record_id for record_id, _, _ in sent]
        for parent_id, child_id in await self.conn.execute(_CHILDREN_OF, {"ids": padded(ids)}):
            found.setdefault(parent_id, {})[child_id] = None  # a record may wait on it at two paths
        children = {parent_id: list(waiting) for parent_id, waiting in found.items()}
        return children

    async def money_out_turn(
        self, connection_id: str, refund_record_id: int, holder: str, now: datetime
    ) -> tuple[bool, int | None]:
        """Take the turn to book money out of a refund record's invoice, and read what is left refundable on it.

        One refund of an invoice at a time, in the order they were queued (a lease on the invoice, held by
        ``holder``, the process, for at most :data:`MONEY_OUT_TURN`: given back by :meth:`end_money_out_turn`,
        never renewed by the process's beat, and released with its claims when it dies; an earlier refund
        still waiting goes first): two read at once would each see room the other takes. Returns
        (False, None) while it is not its turn. The room is the payments the
        bridge booked on that invoice record less the refunds it booked there (each short by its excess), or
        None when it booked no payment there (Thred alone knows)."""
        own = record_parents.alias("own")
        invoice = await self.conn.scalar(
            select(own.c.external_id).where(own.c.record_id == refund_record_id, own.c.path == "invoice_id")
        )
        if invoice is None:
            return True, None
        on_invoice = select(record_parents.c.record_id).where(
            record_parents.c.connection_id == connection_id,
            record_parents.c.kind == "invoice",
            record_parents.c.external_id == invoice,
        )
        earlier = await self.conn.scalar(
            select(func.count()).where(
                records.c.id.in_(on_invoice),
                records.c.id < refund_record_id,
                records.c.kind == "refund",
                records.c.op == "create",
                records.c.status == "pending",
            )
        )
        if earlier:  # queued before it: booked first, so the order of the queue decides which one is cut short
            return False, None
        if not await self.take_lease(connection_id, _money_out_key(invoice), holder, now, now + MONEY_OUT_TURN):
            return False, None
        rows = (
            await self.conn.execute(
                select(records.c.kind, records.c.body, records.c.excess_cents).where(
                    records.c.id.in_(on_invoice),
                    records.c.kind.in_(("payment", "refund")),
                    records.c.op == "create",
                    records.c.status == "sent",
                )
            )
        ).all()
        paid = refunded = 0
        payments = 0
        for kind, body, excess in rows:
            fields = json_codec.loads(body)
            if kind == "payment":
                payments += 1
                paid += int(fields.get("total_amount_cents") or 0)
            else:
                refunded += int(fields.get("amount_cents") or 0) - int(excess or 0)
        return True, (paid - refunded if payments else None)

    async def end_money_out_turn(self, connection_id: str, refund_record_id: int, holder: str) -> None:
        """Give back the turn on the refund record's invoice that :meth:`money_out_turn` gave ``holder``."""
        own = record_parents.alias("own")
        invoice = await self.conn.scalar(
            select(own.c.external_id).where(own.c.record_id == refund_record_id, own.c.path == "invoice_id")
        )
        if invoice is None:
            return
        await self.conn.execute(
            delete(leases).where(
                leases.c.connection_id == connection_id,
                leases.c.object_key == _money_out_key(invoice),
                leases.c.owner == holder,
            )
        )

    async def defer_record(self, record_id: int, due: datetime) -> None:
        """Put a claimed record back, due at ``due``, without counting an attempt (it waited for its turn)."""
        await self.conn.execute(
            update(records)
            .where(records.c.id == record_id)
            .values(next_attempt_at=due, locked_until=None, locked_by=None, attempts=records.c.attempts - 1)
        )

    async def excess_settled(self, connection_id: str, record_id: int) -> list[tuple[str, int, str | None]]:
        """The refund payments a payout record settles that were booked short: (external id, excess, the
        external id of the invoice record the money went out of)."""
        settled, refund, link = records.alias("settled"), records.alias("refund"), record_parents.alias("link")
        listed = select(record_parents.c.external_id).where(
            record_parents.c.record_id == record_id, record_parents.c.kind == "refund_payment"
        )
        same_refund = and_(
            refund.c.connection_id == settled.c.connection_id,
            refund.c.kind == "refund",
            refund.c.external_id == settled.c.external_id,
        )
        rows = await self.conn.execute(
            select(settled.c.external_id, settled.c.excess_cents, link.c.external_id)
            .select_from(
                settled.join(refund, same_refund).outerjoin(
                    link, and_(link.c.record_id == refund.c.id, link.c.path == "invoice_id")
                )
            )
            .where(
                settled.c.connection_id == connection_id,
                settled.c.kind == "refund_payment",
                settled.c.excess_cents > 0,
                settled.c.external_id.in_(listed),
            )
            .order_by(settled.c.external_id)
        )
        return [(str(ext), int(excess), None if invoice is None else str(invoice)) for ext, excess, invoice in rows]

    async def retry_record(self, record_id: int, due: datetime, error: str) -> None:
        await self.conn.execute(
            update(records)
            .where(records.c.id == record_id)
            .values(next_attempt_at=due, locked_until=None, locked_by=None, last_error=error)
        )

    async def fail_record(self, record_id: int, error: str) -> None:
        """The record failed for good, and so does every record waiting on it (they cannot be sent),
        each with the event that asked for it, so `status` shows them and `replay` requeues them."""
        queue: list[tuple[int, str]] = [(record_id, error)]
        while queue:
            current, message = queue.pop()
            row = (
                await self.conn.execute(
                    update(records)
                    .where(records.c.id == current, records.c.status != "sent")
                    .values(status="failed", locked_until=None, locked_by=None, last_error=message)
                    .returning(records.c.event_id, records.c.connection_id, records.c.kind, records.c.external_id)
                )
            ).first()
            if row is None:
                continue
            if row.event_id is not None:  # an event keeps its first (root-cause) error
                await self.conn.execute(
                    update(events)
                    .where(events.c.id == row.event_id, events.c.status != "failed")
                    .values(status="failed", locked_until=None, locked_by=None, last_error=message)
                )
            children = await self.conn.execute(
                select(record_parents.c.record_id).where(
                    record_parents.c.connection_id == row.connection_id,
                    record_parents.c.kind == row.kind,
                    record_parents.c.external_id == row.external_id,
                )
            )
            blocked = f"waiting on {row.kind} {row.external_id}, which failed: {error}"
            queue.extend((child, blocked) for child in dict.fromkeys(c.record_id for c in children.all()))

    async def give_back_record(self, record_id: int, owner: str, due: datetime, error: str) -> None:
        """A claim whose handling crashed goes back, due at ``due``, marked ``taken_over``: it may have reached
        Thred before the crash, so whoever claims it next looks it up there before sending it."""
        await self.conn.execute(
            update(records)
            .where(records.c.id == record_id, records.c.locked_by == owner, records.c.status == "pending")
            .values(next_attempt_at=due, locked_until=None, locked_by=None, last_error=error, taken_over=True)
        )

    async def release_record(self, record_id: int) -> None:
        """Give back a claim without counting an attempt (the worker is stopping)."""
        await self.conn.execute(
            update(records)
            .where(records.c.id == record_id)
            .values(locked_until=None, locked_by=None, attempts=records.c.attempts - 1)
        )


def _stored_body(record: Record) -> dict[str, Any]:
    """The body as stored: Thred's fields, plus the lookups under a key Thred never sees."""
    if not record.lookups:
        return dict(record.body)
    specs = {path: [spec.kind, spec.thred_id, spec.field] for path, spec in record.lookups.items()}
    return {**record.body, LOOKUPS: specs}


def _parent_paths(record: Record) -> list[tuple[str, Ref]]:
    """Each path of the record that waits on a parent; the parent in its URL under ``URL_PARENT``."""
    paths = list(record.parents.items())
    if record.parent_path:
        paths.append((URL_PARENT, record.parent_path))
    return paths
