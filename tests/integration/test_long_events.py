"""An event that takes longer than one lease (a payout of many thousand charges) is worked on once:
its worker renews the lease, so no other worker claims it meanwhile; a worker that stops renewing
loses it as before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from thred_bridge.crypto import Vault
from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice
from thred_bridge.service.connections import Connections, NewConnection
from thred_bridge.service.process import Processing
from thred_bridge.store.sql import SqlStore

pytestmark = pytest.mark.anyio
LEASE = timedelta(seconds=0.4)


class SlowProcessor:
    """A processor whose API answers after ``delay`` seconds; it counts how often it was asked."""

    name = "stripe"
    media_types = frozenset({"application/json"})

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    def verify(self, *_delivery: object) -> Sequence[Notice]:
        raise AssertionError("deliveries are stored directly in this test")

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement]:
        assert event.connection_id == connection.id
        self.calls += 1
        await asyncio.sleep(self.delay)
        return []

    async def aclose(self) -> None:
        return None


def utc_now() -> datetime:
    return datetime.now(UTC)


async def test_a_long_event_is_processed_once(store: SqlStore) -> None:
    connections = Connections(store, Vault(Fernet.generate_key().decode()), utc_now)
    added = await connections.add(NewConnection("stripe", "b-1", {"api_key": "sk_test_x"}, ["whsec_x"]))
    async with store.transaction() as tx:
        notice = Notice("evt_po", "payout.paid", "po_1", b'{"id": "evt_po"}')
        await tx.add_events(added.id, "stripe", [notice], utc_now())
    slow = SlowProcessor(delay=6 * LEASE.total_seconds())

    def worker(owner: str) -> Processing:
        return Processing(
            store, connections, {"stripe": slow}, utc_now, owner=owner, max_attempts=5, lease=LEASE
        )  # fmt: skip

    busy, other = worker("busy"), worker("other")
    (event,) = await busy.claim(1)
    handling = asyncio.create_task(busy.handle(event))
    stolen: list[ClaimedEvent] = []
    while not handling.done():  # another worker polls all along
        stolen.extend(await other.claim(1))
        await asyncio.sleep(LEASE.total_seconds() / 4)
    assert await handling == "done"
    assert stolen == []
    assert slow.calls == 1
    async with store.transaction() as tx:
        assert (await tx.event_counts(added.id))["done"] == 1
