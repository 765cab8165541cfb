"""Liveness on both databases: a dead process's claims come back by its session lock, its pid or its stale
heartbeat, never by waiting out a lease; a live one keeps and renews them; one declared dead is fenced."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from thred_bridge.domain.queue import Notice
from thred_bridge.domain.records import Record
from thred_bridge.service.liveness import Presence, ProcessLostError
from thred_bridge.service.worker import Signal
from thred_bridge.store import schema
from thred_bridge.store.presence import presence_for
from thred_bridge.store.sql import SqlStore
from thred_bridge.store.tx_base import EVENTS_CHANNEL, RECORDS_CHANNEL

pytestmark = pytest.mark.anyio
LEASE = timedelta(hours=1)  # far longer than any test: whatever comes back, comes back by liveness


def utc_now() -> datetime:
    return datetime.now(UTC)


def presence(store: SqlStore, url: str, *, host: str = "host-a", heartbeat: float = 0.2, **kw: object) -> Presence:
    return Presence(
        store, presence_for(store, url), utc_now, role="worker", heartbeat=heartbeat, takeover=heartbeat * 5,
        lease=LEASE, host=host, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def queued(store: SqlStore) -> SqlStore:
    """A connection with three records and one event waiting."""
    await fill(store)
    return store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    schema.migrate(url)
    return url


@pytest.fixture
async def sqlite_queued(sqlite_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(schema.async_engine(sqlite_url))
    await fill(store)
    yield store
    await store.aclose()


@pytest.fixture
async def pg_store(empty_postgres_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(schema.async_engine(empty_postgres_url))
    yield store
    await store.aclose()


async def fill(store: SqlStore) -> None:
    now = utc_now()
    async with store.transaction() as tx:
        row = {"id": "conn_a", "processor": "stripe", "business_id": "b-1", "account": None, "label": None}
        await tx.add_connection({**row, "credentials": "x", "webhook_secrets": "x", "created_at": now})
        await tx.add_records("conn_a", [Record("customer", f"stripe_cus_{i}", {"n": i}) for i in range(3)], None, now)
        await tx.add_events("conn_a", "stripe", [Notice("evt_1", "charge.succeeded", "ch_1", b"{}")], now)


async def claim_all(store: SqlStore, owner: str) -> tuple[list[int], list[int]]:
    async with store.transaction() as tx:
        records = await tx.claim_records(owner, utc_now(), 10, LEASE)
        events = await tx.claim_events(owner, utc_now(), 10, LEASE)
    return [r.id for r in records], [e.id for e in events]


async def claimable(store: SqlStore) -> tuple[list[bool], int]:
    """Which records another process can claim now (with their taken-over flags), and how many events."""
    async with store.transaction() as tx:
        records = await tx.claim_records("probe", utc_now(), 10, timedelta(seconds=1))
        events = await tx.claim_events("probe", utc_now(), 10, timedelta(seconds=1))
    return [r.taken_over for r in records], len(events)


async def taken_back(store: SqlStore, *, within: float) -> tuple[list[bool], int]:
    """What comes back to the queue within ``within`` seconds (plus scheduling slack) — by the living's own beats.

    Each look claims what it finds, and a takeover may commit between a look's records and its events (each
    statement sees its own moment): what each look found is added up until records and events both came back."""
    deadline = asyncio.get_running_loop().time() + within + 0.3
    records: list[bool] = []
    events = 0
    while True:
        found = await claimable(store)
        records, events = records + found[0], events + found[1]
        if (records and events) or asyncio.get_running_loop().time() > deadline:
            return records, events
        await asyncio.sleep(0.05)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_a_stale_heartbeat_gives_the_claims_to_the_living(queued: SqlStore, database_url: str) -> None:
    taken: list[int] = []
    a = presence(queued, database_url, host="host-a")
    b = presence(queued, database_url, host="host-b", on_taken_over=taken.append)
    async with a.attached():
        records, events = await claim_all(queued, a.id)
        assert (len(records), len(events)) == (3, 1)
        async with b.attached():
            assert await claimable(queued) == ([], 0), "a live holder keeps its claims"
            a._task.cancel()  # type: ignore[union-attr]  # a frozen process: it stops beating, its session stays
            frozen = asyncio.get_running_loop().time()
            assert await taken_back(queued, within=1.0) == ([True, True, True], 1)  # takeover = 5 beats = 1 s
            assert asyncio.get_running_loop().time() - frozen > a.stale, "not before its heartbeat went stale"
            assert taken == [4], "the taker counts what it took back (the metric bridge_claims_taken_over)"
            await a.tick()  # it wakes up: a beat finds it declared dead, so it sends nothing
            with pytest.raises(ProcessLostError):
                await a.fence(a.generation)


async def test_claims_taken_under_a_lost_name_come_back_at_the_next_beat(queued: SqlStore, database_url: str) -> None:
    """A frozen process declared dead may, resumed and before its own beat tells it, claim under the name it
    lost: the living sweep those claims at their next beat, flagged to be looked up in Thred first."""
    taken: list[int] = []
    a = presence(queued, database_url, host="host-a")
    b = presence(queued, database_url, host="host-b", on_taken_over=taken.append)
    async with a.attached(), b.attached():
        a._task.cancel()  # type: ignore[union-attr]  # frozen
        async with queued.transaction() as tx:
            assert await tx.take_over(a.id, utc_now(), ended="dead") is not None  # declared dead, nothing held
        records, events = await claim_all(queued, a.id)  # resumed: it claims before its beat says it is lost
        assert (len(records), len(events)) == (3, 1)
        assert await taken_back(queued, within=b.heartbeat * 2) == ([True, True, True], 1)
        assert taken == [4]
        await a.tick()
        with pytest.raises(ProcessLostError):
            await a.fence(a.generation)


async def test_a_live_process_renews_its_claims(queued: SqlStore, database_url: str) -> None:
    short = timedelta(seconds=0.5)
    a = presence(queued, database_url)
    async with a.attached():
        async with queued.transaction() as tx:
            assert len(await tx.claim_records(a.id, utc_now(), 10, short)) == 3
        await asyncio.sleep(1.0)  # twice the lease: the beats renewed it
        assert await claimable(queued) == ([], 1)
        await a.fence(a.generation)  # beating: it may send


async def test_a_process_that_stops_gives_back_what_it_holds(queued: SqlStore, database_url: str) -> None:
    a = presence(queued, database_url)
    async with a.attached():
        await claim_all(queued, a.id)
    assert await claimable(queued) == ([False, False, False], 1), "given back, not taken over: no lookup needed"


async def test_sqlite_a_gone_pid_on_this_host_is_dead_at_once(sqlite_queued: SqlStore, sqlite_url: str) -> None:
    """(On Postgres the session lock answers first: the next test.)"""
    queued, database_url = sqlite_queued, sqlite_url
    ghost = presence(queued, database_url, host="here")
    async with ghost.attached():
        await claim_all(queued, ghost.id)
        ghost._task.cancel()  # type: ignore[union-attr]
        async with queued.transaction() as tx:  # it was another process, now gone
            await tx.conn.exec_driver_sql(f"UPDATE processes SET pid = {dead_pid()} WHERE id = '{ghost.id}'")
        restarted = presence(queued, database_url, host="here")
        async with restarted.attached():  # a restart on the same file takes them as it starts, heartbeat fresh
            assert await claimable(queued) == ([True, True, True], 1)


@pytest.mark.postgres
async def test_postgres_knows_a_dead_session_at_once(pg_store: SqlStore, empty_postgres_url: str) -> None:
    queued, database_url = pg_store, empty_postgres_url
    await fill(queued)
    a, b = presence(queued, database_url, host="host-a"), presence(queued, database_url, host="host-b")
    async with a.attached():
        await claim_all(queued, a.id)
        a._task.cancel()  # type: ignore[union-attr]
        async with b.attached():
            assert await b.reap() == 0, "its heartbeat is fresh and its lock held: alive"
            await a._backend.aclose()  # the backend goes, as when the process is SIGKILLed
            assert await b.reap() == 4, "taken over at once, though its heartbeat is fresh"
            assert await claimable(queued) == ([True, True, True], 1)


# A process frozen inside an open transaction: it has locked the records it claimed, then stops (SIGSTOP).
_FROZEN_IN_A_TRANSACTION = """
import asyncio, os, signal, sys
from sqlalchemy import text
from thred_bridge.store import schema

async def main():
    engine = schema.async_engine(sys.argv[1], idle_in_transaction=float(sys.argv[3]))
    conn = await engine.connect()
    await conn.begin()
    await conn.execute(text("SELECT id FROM records WHERE locked_by = :p FOR UPDATE"), {"p": sys.argv[2]})
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)

asyncio.run(main())
"""


@pytest.mark.postgres
async def test_postgres_a_process_frozen_inside_a_transaction_does_not_hold_up_the_takeover(
    pg_store: SqlStore, empty_postgres_url: str
) -> None:
    """Frozen with row locks held, its connection stays up, so Postgres would keep the locks until it resumes or
    dies, and the taker's release would wait for them. Its engine (as bootstrap builds every one) has Postgres
    end a transaction idle for half the takeover time, which is over before its heartbeat goes stale (at least
    half the takeover time, as a heartbeat is at most a quarter): the takeover is not delayed at all."""
    queued, database_url = pg_store, empty_postgres_url
    await fill(queued)
    a, b = presence(queued, database_url, host="host-a"), presence(queued, database_url, host="host-b")
    takeover = a.heartbeat * 5  # as presence() sets it
    idle = takeover / 2
    async with a.attached():
        await claim_all(queued, a.id)
        frozen = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _FROZEN_IN_A_TRANSACTION, database_url, a.id, str(idle), stdout=subprocess.PIPE
        )
        try:
            assert frozen.stdout is not None
            assert await frozen.stdout.readline() == b"holding\n"
            a._task.cancel()  # type: ignore[union-attr]  # and a stops beating: both halves of the process frozen
            stopped = asyncio.get_running_loop().time()
            async with b.attached():
                assert await taken_back(queued, within=takeover) == ([True, True, True], 1)
                assert asyncio.get_running_loop().time() - stopped < takeover + 0.5
        finally:
            frozen.kill()
            await frozen.wait()


@pytest.mark.postgres
async def test_postgres_wakes_workers_by_notify(pg_store: SqlStore, empty_postgres_url: str) -> None:
    store, database_url = pg_store, empty_postgres_url
    events_ready, records_ready = Signal(), Signal()
    a = presence(
        store, database_url, heartbeat=5.0, wake={EVENTS_CHANNEL: events_ready, RECORDS_CHANNEL: records_ready}
    )
    async with a.attached():
        await asyncio.sleep(0.1)
        async with store.transaction() as tx:
            await tx.add_events("conn_x", "stripe", [Notice("evt_9", "charge.succeeded", "ch_9", b"{}")], utc_now())
        started = asyncio.get_running_loop().time()
        await events_ready.wait(3.0)
        assert asyncio.get_running_loop().time() - started < 1.0, "woken by NOTIFY, long before a beat or a poll"


async def test_a_renewal_skips_what_a_finishing_transaction_holds(pg_store: SqlStore, empty_postgres_url: str) -> None:
    """The worker finishing an event holds its row and then writes records; the process's renewal must neither
    wait for that row nor hold records the worker needs meanwhile (that cycle was a deadlock under load)."""
    await fill(pg_store)
    records, events = await claim_all(pg_store, "proc-a")
    before = utc_now()
    async with pg_store.engine.connect() as finishing:
        await finishing.execute(text("BEGIN"))
        await finishing.execute(text("UPDATE events SET last_error = 'finishing' WHERE id = :id"), {"id": events[0]})
        async with pg_store.transaction() as tx:  # as Presence's beat: it must not wait for the event's row
            await asyncio.wait_for(tx.renew_claims("proc-a", before, before + timedelta(hours=5)), timeout=5)
        await finishing.execute(text("UPDATE records SET last_error = 'x' WHERE id = :id"), {"id": records[0]})
        await finishing.execute(text("COMMIT"))
    async with pg_store.engine.connect() as conn:
        renewed = (await conn.execute(text("SELECT min(locked_until) FROM records"))).scalar_one()
        event_lease = (await conn.execute(text("SELECT locked_until FROM events"))).scalar_one()
    assert renewed > before + timedelta(hours=4), "the records it holds were renewed"
    assert event_lease < before + timedelta(hours=4), "the row being finished was skipped, not waited for"


async def test_what_crashed_is_given_back_not_held_for_ever(queued: SqlStore) -> None:
    """An item whose handling crashed (the store failed after the work) goes back to the queue: a live process
    renews what it holds, so no lease would ever run out on it. A record comes back flagged for a lookup."""
    from thred_bridge.service.dispatch import Dispatching
    from thred_bridge.service.process import Processing
    from thred_bridge.service.worker import _Loop

    async with queued.transaction() as tx:
        [record] = await tx.claim_records("proc-a", utc_now(), 1, LEASE)
        [event] = await tx.claim_events("proc-a", utc_now(), 1, LEASE)
    dispatching = Dispatching(queued, None, utc_now, owner="proc-a", max_attempts=5, lease=LEASE)  # type: ignore[arg-type]
    processing = Processing(queued, None, {}, utc_now, owner="proc-a", max_attempts=5, lease=LEASE)  # type: ignore[arg-type]
    items: dict[str, list[object]] = {"dispatch": [record], "process": [event]}
    for name, give_back in (("dispatch", dispatching.give_back), ("process", processing.give_back)):
        handed = list(items[name])

        async def claim(_n: int, handed: list[object] = handed) -> list[object]:
            return [handed.pop()] if handed else []

        async def crash(_item: object) -> str:
            raise ConnectionError("server closed the connection unexpectedly")

        stop = asyncio.Event()
        after = functools.partial(lambda event, _outcome: event.set(), stop)
        loop: _Loop[object] = _Loop(name, claim, crash, 4, Signal(), after, 0.05, give_back)  # type: ignore[arg-type]
        await asyncio.wait_for(loop.run(stop, grace=1), timeout=10)
    async with queued.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT locked_by, taken_over, last_error FROM records WHERE id = :i"), {"i": record.id}
            )
        ).one()
        ev = (
            await conn.execute(text("SELECT locked_by, status, last_error FROM events WHERE id = :i"), {"i": event.id})
        ).one()
    assert row[0] is None
    assert bool(row[1]) is True, "looked up in Thred before it is sent again"
    assert "ConnectionError" in row[2]
    assert ev[0] is None
    assert ev[1] == "pending"
    assert "ConnectionError" in ev[2]
