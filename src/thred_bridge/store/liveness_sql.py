"""Liveness queries: processes register and beat; a dead one's claims are taken over by the living.

A claim (an event in ``processing`` with its object's lease, a record with ``locked_until``) names the process
that holds it in ``locked_by``. A process is dead when it said it stopped, when its heartbeat is stale, or, on
Postgres, as soon as the session advisory lock it took at registration is free: Postgres releases it when that
connection's backend goes, so a SIGKILLed process is known dead at the next look, whatever its heartbeat says.
Taking over is releasing: the claims go back to the queue (records marked ``taken_over``) and are claimed again
as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, literal_column, select, text, tuple_, update

from thred_bridge.domain.queue import ProcessRow, TakenOver
from thred_bridge.store.tables import MONEY_OUT_KEYS, UTCDateTime, events, leases, processes, records
from thred_bridge.store.tx_base import EVENTS_CHANNEL, RECORDS_CHANNEL, TxBase

LOCK_SPACE = 0x7B21  # the first key of every process's advisory lock (the second is its ``lock_key``)

# The advisory locks granted in this database, as Postgres lists them for a two-key lock.
_HELD_LOCK: Any = (
    select(literal_column("1"))
    .select_from(text("pg_locks"))
    .where(
        text("pg_locks.locktype = 'advisory'"),
        text("pg_locks.granted"),
        text("pg_locks.objsubid = 2"),
        text(f"pg_locks.classid = {LOCK_SPACE}"),
        text("pg_locks.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
        literal_column("pg_locks.objid::bigint") == processes.c.lock_key,
    )
)


class LivenessQueries(TxBase):
    async def register_process(
        self, process_id: str, lock_key: int | None, host: str, pid: int, role: str, now: datetime
    ) -> None:
        await self.conn.execute(
            processes.insert().values(
                id=process_id, lock_key=lock_key, host=host, pid=pid, role=role, started_at=now, heartbeat_at=now
            )
        )

    async def beat(self, process_id: str, now: datetime) -> bool:
        """The process is alive at ``now``; False when it was declared dead (or stopped) meanwhile."""
        result = await self.conn.execute(
            update(processes)
            .where(processes.c.id == process_id, processes.c.stopped_at.is_(None))
            .values(heartbeat_at=now)
        )
        return bool(result.rowcount)

    async def renew_claims(self, process_id: str, now: datetime, until: datetime) -> None:
        """Extend every claim the process holds (a live but slow process keeps what it is working on).

        A row another transaction has locked is skipped, not waited for (``SKIP LOCKED``): it is one of this
        process's own items being finished right now, and a renewal that waited for it while holding the rows
        it had renewed already could deadlock with that very transaction (which inserts records the renewal
        may hold). The next beat renews whatever is still held."""
        held_records = (
            select(records.c.id)
            .where(records.c.locked_by == process_id, records.c.status == "pending", records.c.locked_until >= now)
            .with_for_update(skip_locked=True)
        )
        await self.conn.execute(update(records).where(records.c.id.in_(held_records)).values(locked_until=until))
        held_events = (
            select(events.c.id)
            .where(events.c.locked_by == process_id, events.c.status == "processing")
            .with_for_update(skip_locked=True)
        )
        await self.conn.execute(update(events).where(events.c.id.in_(held_events)).values(locked_until=until))
        key = (leases.c.connection_id, leases.c.object_key)
        held_leases = (
            select(*key)
            .where(leases.c.owner == process_id, leases.c.object_key.not_like(MONEY_OUT_KEYS))
            .with_for_update(skip_locked=True)
        )  # an invoice's money-out turn lapses on its own if a crash inside the process never gave it back
        await self.conn.execute(update(leases).where(tuple_(*key).in_(held_leases)).values(expires_at=until))

    async def living_processes(self, now: datetime, stale_after: timedelta) -> Sequence[ProcessRow]:
        """Every process not yet known to have ended: whether its heartbeat is older than ``stale_after`` and,
        on Postgres, whether its session lock is held. Postgres judges staleness by its own clock, which wrote
        the heartbeats (``now`` is for SQLite, whose heartbeats this host's clock wrote)."""
        if self.dialect == "postgresql":
            stale: Any = processes.c.heartbeat_at < func.now() - stale_after
            held: Any = exists(_HELD_LOCK)
        else:
            stale = processes.c.heartbeat_at < bindparam("stale_before", now - stale_after, type_=UTCDateTime())
            held = literal_column("NULL")
        columns = [processes.c.id, processes.c.host, processes.c.pid, processes.c.role]
        rows = (
            await self.conn.execute(
                select(*columns, stale.label("stale"), held.label("held"))
                .where(processes.c.stopped_at.is_(None))
                .order_by(processes.c.started_at)
            )
        ).all()
        return [
            ProcessRow(r.id, r.host, r.pid, r.role, bool(r.stale), None if r.held is None else bool(r.held))
            for r in rows
        ]

    async def take_over(self, process_id: str, now: datetime, *, ended: str) -> TakenOver | None:
        """Declare the process ended and put its claims back in the queue; None when another process did first.

        ``ended`` is ``dead`` when another process takes over, ``stopped`` when the process releases its own
        claims as it exits. Records it held are marked ``taken_over`` only when it died: it may have sent them
        just before, and the next sender looks first."""
        result = await self.conn.execute(
            update(processes)
            .where(processes.c.id == process_id, processes.c.stopped_at.is_(None))
            .values(stopped_at=now, ended=ended)
        )
        if not result.rowcount:
            return None
        released: dict[str, Any] = {"locked_until": None, "locked_by": None}
        if ended == "dead":
            released["taken_over"] = True
        moved_records = await self.conn.execute(
            update(records).where(records.c.locked_by == process_id).values(**released)
        )
        moved_events = await self.conn.execute(
            update(events)
            .where(events.c.locked_by == process_id, events.c.status == "processing")
            .values(status="pending", next_attempt_at=now, locked_until=None, locked_by=None)
        )
        await self.conn.execute(delete(leases).where(leases.c.owner == process_id))
        await self.conn.execute(
            update(events).where(events.c.locked_by == process_id).values(locked_by=None)
        )  # any other status: the claim had ended already, only the name was left
        if moved_events.rowcount:
            await self.notify(EVENTS_CHANNEL)
        if moved_records.rowcount:
            await self.notify(RECORDS_CHANNEL)
        return TakenOver(events=moved_events.rowcount or 0, records=moved_records.rowcount or 0)

    async def release_orphans(self, now: datetime) -> TakenOver:
        """Put back in the queue the claims still named for a process that has ended.

        ``take_over`` releases what the dead held when it is declared dead; a process frozen at that moment may
        still, once resumed and before its next beat tells it so, claim under the name it lost. Those claims
        would wait out their lease: every live process sweeps them at each beat. A row another transaction
        holds is skipped (the next beat finds it), as in :meth:`renew_claims`."""
        ended = select(processes.c.id).where(processes.c.stopped_at.is_not(None))
        orphan_records = (
            select(records.c.id)
            .where(records.c.locked_by.in_(ended), records.c.status == "pending")
            .with_for_update(skip_locked=True)
        )
        moved_records = await self.conn.execute(
            update(records)
            .where(records.c.id.in_(orphan_records))
            .values(locked_until=None, locked_by=None, taken_over=True)
        )
        orphan_events = (
            select(events.c.id)
            .where(events.c.locked_by.in_(ended), events.c.status == "processing")
            .with_for_update(skip_locked=True)
        )
        moved_events = await self.conn.execute(
            update(events)
            .where(events.c.id.in_(orphan_events))
            .values(status="pending", next_attempt_at=now, locked_until=None, locked_by=None)
        )
        await self.conn.execute(delete(leases).where(leases.c.owner.in_(ended)))
        if moved_events.rowcount:
            await self.notify(EVENTS_CHANNEL)
        if moved_records.rowcount:
            await self.notify(RECORDS_CHANNEL)
        return TakenOver(events=moved_events.rowcount or 0, records=moved_records.rowcount or 0)

    async def forget_processes(self, before: datetime) -> int:
        """Drop the rows of processes that ended before ``before`` (their claims are long gone)."""
        result = await self.conn.execute(
            delete(processes).where(and_(processes.c.stopped_at.is_not(None), processes.c.stopped_at < before))
        )
        return result.rowcount or 0

    async def process_counts(self) -> dict[str, int]:
        """Processes by role that are not known to have ended."""
        rows = await self.conn.execute(
            select(processes.c.role, func.count()).where(processes.c.stopped_at.is_(None)).group_by(processes.c.role)
        )
        return {str(role): int(n) for role, n in rows.all()}


__all__ = ["LOCK_SPACE", "LivenessQueries"]
