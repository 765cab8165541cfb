"""Stripe history against the simulated Stripe API on a real uvicorn server: list pages by ``created``
(and payouts by ``arrival_date``), the backfill's webhook-shaped notices, 429s, Connect scoping, and the
itemised payouts reconcile reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiolimiter import AsyncLimiter

from tests.integration.stripe_support import ACCOUNT, KEY, NOW, Stripe, serve_stripe
from thred_bridge.domain.movements import Payout
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice
from thred_bridge.errors import ProcessorUnavailableError
from thred_bridge.processors.stripe.history import HISTORY_KINDS
from thred_bridge.processors.stripe.sync import StripeProcessor
from thred_bridge.processors.stripe.webhook import parse_event
from thred_bridge.service.backfill import Backfill, HistorySource
from thred_bridge.simulators.stripe_world import StripeWorld, ticking_clock
from thred_bridge.store.sql import SqlStore

pytestmark = pytest.mark.anyio
MANY = 105  # more than one page (100) of every kind


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def connection(account: str | None = None) -> Connection:
    name = f"conn_{account or 'platform'}"
    return Connection(name, "stripe", "biz_1", account, None, {"api_key": KEY}, ("whsec_1",), at(NOW))


@dataclass
class Served:
    stripe: Stripe
    processor: StripeProcessor

    @property
    def world(self) -> StripeWorld:
        return self.stripe.world

    async def everything(self, kind: str, since: int, until: int, conn: Connection) -> tuple[list[Notice], int]:
        """Every notice of ``kind`` in ``[since, until)``, page after page, and how many pages it took."""
        notices: list[Notice] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await self.processor.history_page(conn, kind, at(since), at(until), cursor)
            pages += 1
            notices += page.notices
            cursor = page.cursor
            if cursor is None:
                return notices, pages

    def list_requests(self, resource: str) -> int:
        return sum(r.path == f"/v1/{resource}" for r in self.world.requests)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve_stripe(StripeWorld(seed=11, clock=ticking_clock(NOW))) as stripe:
        processor = StripeProcessor(stripe.base_url)
        try:
            yield Served(stripe, processor)
        finally:
            await processor.aclose()


def busy_world(world: StripeWorld, *, account: str | None = None) -> dict[str, list[str]]:
    """``MANY`` charges, refunds, disputes and payouts (each payout sweeps a charge of its own)."""
    made: dict[str, list[str]] = {kind: [] for kind in HISTORY_KINDS}
    for n in range(MANY):
        refunded = world.add_charge(1000 + n, "usd", account=account)
        disputed = world.add_charge(2000 + n, "usd", account=account)
        made["charges"] += [refunded["id"], disputed["id"]]
        made["refunds"].append(world.refund(refunded["id"], 100, account=account)["id"])
        made["disputes"].append(world.dispute(disputed["id"], account=account)["id"])
        made["payouts"].append(world.payout(currency="usd", account=account)["id"])
    return made


async def test_every_kind_pages_past_100_into_webhook_shaped_notices(served: Served) -> None:
    made = busy_world(served.world)
    authorised = served.world.add_charge(5000, "usd", captured=False)  # nothing to book: skipped
    until = served.world.clock()
    conn = connection()
    for kind in HISTORY_KINDS:
        notices, pages = await served.everything(kind, NOW, until, conn)
        listed = len(made[kind]) + (kind == "charges")  # the authorised charge is listed, then skipped
        assert pages == served.list_requests(kind) == -(-listed // 100) >= 2
        assert sorted(n.event_id for n in notices) == sorted(f"bf_{i}" for i in made[kind])
        assert all(n.handled and n.account is None for n in notices)
        for notice in notices:
            event = parse_event(notice.body)
            assert (event.id, event.type, event.object_key) == (notice.event_id, notice.event_type, notice.object_key)
            assert event.object_id == notice.event_id.removeprefix("bf_")
            assert json.loads(notice.body)["created"] == (served.world.get(event.object_id) or {})["created"]
    charges, _ = await served.everything("charges", NOW, until, conn)
    assert f"bf_{authorised['id']}" not in {n.event_id for n in charges}
    assert {n.event_type for n in charges} == {"charge.succeeded"}
    refund = served.world.get(made["refunds"][0]) or {}
    refunds, _ = await served.everything("refunds", NOW, until, conn)
    first = next(n for n in refunds if n.event_id == f"bf_{refund['id']}")
    assert (first.event_type, first.object_key) == ("refund.updated", refund["charge"])  # the charge's key
    disputes, _ = await served.everything("disputes", NOW, until, conn)
    assert {n.event_type for n in disputes} == {"charge.dispute.updated"}
    payouts, _ = await served.everything("payouts", NOW, until, conn)
    assert {n.event_type for n in payouts} == {"payout.paid"}
    assert {n.object_key for n in payouts} == set(made["payouts"])


async def test_created_range_includes_since_and_excludes_until(served: Served) -> None:
    world, api = served.world, served.stripe.api
    made = [world.add_charge(1000 + n, "eur") for n in range(6)]
    created = [c["created"] for c in made]
    assert created == sorted(set(created))  # the ticking clock: every charge a later second
    data, cursor = await api.list_page("charges", created=(created[1], created[4]))
    assert [c["id"] for c in data] == [c["id"] for c in reversed(made[1:4])]  # newest first
    assert cursor is None
    conn = connection()
    notices, _ = await served.everything("charges", created[4], created[5] + 1, conn)
    assert [n.event_id for n in notices] == [f"bf_{made[5]['id']}", f"bf_{made[4]['id']}"]
    half = await served.processor.history_page(
        conn, "charges", at(created[0]), at(created[0]) + (at(1) - at(0)) / 2, None
    )
    assert [n.event_id for n in half.notices] == [f"bf_{made[0]['id']}"]  # a fractional bound is exact


async def test_payouts_by_arrival_date_are_itemised_as_the_worker_books_them(served: Served) -> None:
    world, conn = served.world, connection()
    for n in range(3):
        world.add_charge(5000 + n, "eur")
    first = world.payout(currency="eur")
    world.fail_payout(first["id"])
    world.add_charge(7000, "eur")
    second = world.payout(currency="eur")
    world.add_charge(8000, "eur")
    third = world.payout(currency="eur")
    assert first["arrival_date"] < second["arrival_date"] < third["arrival_date"]
    listed = [p async for p in served.processor.payouts(conn, at(first["arrival_date"]), at(third["arrival_date"]))]
    assert [p.object_id for p in listed] == [second["id"], first["id"]]  # until is exclusive; newest first
    booked = await served.processor.movements(claimed(world.event("payout.paid", second)), conn)
    assert listed[0] == booked[0]
    assert isinstance(listed[0], Payout)
    assert len(listed[0].items) == 4  # its own charge and the failed payout's three, listed in place of the lump
    assert listed[1].status == "failed"
    world.add_charge(9000, "eur")
    waiting = world.payout(currency="eur", reconciled=False)  # Stripe has not itemised it yet
    (shown,) = [p async for p in served.processor.payouts(conn, at(waiting["arrival_date"]), at(NOW + 10**6))]
    assert (shown.object_id, shown.itemised, shown.items) == (waiting["id"], False, ())
    assert shown.metadata["reconciliation_status"] == "in_progress"
    data, _ = await served.stripe.api.list_page("payouts", created=(second["created"], second["created"] + 1))
    assert [p["id"] for p in data] == [second["id"]]
    with pytest.raises(ValueError, match="arrival_date"):
        await served.stripe.api.list_page("charges", arrival_date=(0, 1))


def claimed(event: dict[str, object]) -> ClaimedEvent:
    body = json.dumps(event).encode()
    return ClaimedEvent(1, "conn_platform", "stripe", str(event["id"]), str(event["type"]), "k", None, body, 1)


async def test_a_429_names_its_retry_after_and_the_same_page_then_answers(served: Served) -> None:
    for n in range(150):
        served.world.add_charge(1000 + n, "usd")
    until, conn = served.world.clock(), connection()
    page = await served.processor.history_page(conn, "charges", at(NOW), at(until), None)
    assert len(page.notices) == 100
    assert page.cursor is not None
    served.world.fail_next("/v1/charges", 429, retry_after=3)
    with pytest.raises(ProcessorUnavailableError) as caught:
        await served.processor.history_page(conn, "charges", at(NOW), at(until), page.cursor)
    assert (caught.value.status, caught.value.retry_after) == (429, 3.0)
    rest = await served.processor.history_page(conn, "charges", at(NOW), at(until), page.cursor)
    assert len(rest.notices) == 50
    assert rest.cursor is None
    assert not {n.event_id for n in page.notices} & {n.event_id for n in rest.notices}


async def test_the_backfill_waits_out_a_429_and_stores_each_object_once(served: Served, store: SqlStore) -> None:
    made = busy_world(served.world)
    until, conn = served.world.clock(), connection()
    served.world.fail_next("/v1/payouts", 429, retry_after=1)
    source: HistorySource = served.processor
    backfill = Backfill(store, source, lambda: at(NOW), AsyncLimiter(1000, 1), parallel=4)
    progress = await backfill.run(conn, at(NOW), at(until), parts=2)
    assert progress.waits == 1
    assert progress.stored == sum(len(ids) for ids in made.values())
    assert progress.by_kind == {kind: len(made[kind]) for kind in HISTORY_KINDS}
    again = await Backfill(store, source, lambda: at(NOW), AsyncLimiter(1000, 1)).run(conn, at(NOW), at(until), parts=2)
    assert (again.stored, again.requests) == (0, 0)  # every slice is done: nothing fetched again


async def test_a_connected_account_lists_only_its_own_history(served: Served) -> None:
    world = served.world
    world.add_account(ACCOUNT)
    mine = world.add_charge(4200, "usd", account=ACCOUNT)
    platform = world.add_charge(4300, "usd")
    world.refund(mine["id"], 200, account=ACCOUNT)
    until = world.clock()
    notices, _ = await served.everything("charges", NOW, until, connection(ACCOUNT))
    assert [n.event_id for n in notices] == [f"bf_{mine['id']}"]
    assert world.requests[-1].account == ACCOUNT
    (notice,) = notices
    assert (notice.account, notice.object_key) == (ACCOUNT, f"{ACCOUNT}/{mine['id']}")
    assert json.loads(notice.body)["account"] == ACCOUNT
    refunds, _ = await served.everything("refunds", NOW, until, connection(ACCOUNT))
    assert [n.object_key for n in refunds] == [f"{ACCOUNT}/{mine['id']}"]
    theirs, _ = await served.everything("charges", NOW, until, connection())
    assert [n.event_id for n in theirs] == [f"bf_{platform['id']}"]
    assert world.requests[-1].account is None
    assert "account" not in json.loads(theirs[0].body)
