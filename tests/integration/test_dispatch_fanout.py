"""A record many others wait on (one walk-in customer for thousands of invoices) hands its children to
the dispatch loop, which sends them ``concurrency`` at a time, instead of sending them one after another
in its own task; a record with a few children still takes them along."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from thred_bridge.domain.records import Record, Ref
from thred_bridge.service.dispatch import INLINE_CHILDREN, Dispatching
from thred_bridge.store.sql import SqlStore

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Created:
    id: str


class RecordingThred:
    """Creates whatever it is asked to, with sequential ids, and remembers the order."""

    def __init__(self) -> None:
        self.created: list[tuple[str, Mapping[str, Any]]] = []
        self._ids = itertools.count(1)

    async def create(self, business_id: str, kind: Any, body: Mapping[str, Any], **_: Any) -> Created:
        assert business_id == "b-1"
        self.created.append((kind, body))
        return Created(f"t-{next(self._ids)}")

    async def get(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("no lookups here")

    async def delete(self, *_: Any, **__: Any) -> None:
        raise AssertionError("no deletes here")

    async def find_by_external_id(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("nothing is taken over here")


def invoices(customer: str, n: int) -> list[Record]:
    return [
        Record(
            "invoice",
            f"stripe_ch_{customer}_{i}",
            {"external_id": f"stripe_ch_{customer}_{i}", "customer_id": None},
            parents={"customer_id": Ref("customer", f"stripe_{customer}")},
        )
        for i in range(n)
    ]


async def queue(store: SqlStore, planned: list[Record]) -> None:
    async with store.transaction() as tx:
        row = {"id": "conn_a", "processor": "stripe", "business_id": "b-1", "account": None, "label": None}
        await tx.add_connection({**row, "credentials": "x", "webhook_secrets": "x", "created_at": NOW})
        await tx.add_records("conn_a", planned, None, NOW)


@pytest.mark.parametrize("children", [INLINE_CHILDREN, INLINE_CHILDREN + 1, 50])
async def test_many_children_go_back_to_the_loop(store: SqlStore, children: int) -> None:
    await queue(
        store, [Record("customer", "stripe_walk_in", {"external_id": "stripe_walk_in"}), *invoices("walk_in", children)]
    )
    thred, wakes = RecordingThred(), []
    dispatching = Dispatching(
        store, thred, lambda: NOW, owner="w", max_attempts=3, lease=timedelta(seconds=30),
        wake=lambda: wakes.append(1),
    )  # fmt: skip
    (customer,) = await dispatching.claim(16)
    assert await dispatching.handle(customer) == "sent"
    inline = children <= INLINE_CHILDREN
    assert not (inline and children >= 50), "fifty children are never sent one by one in one task"
    assert len(thred.created) == (1 + children if inline else 1)
    assert wakes == ([] if inline else [1])
    left = await dispatching.claim(1000)
    assert len(left) == (0 if inline else children)  # every one is ready, for the loop's tasks
    assert all(r.resolved == {"customer_id": "t-1"} for r in left)


async def test_what_a_payout_settles_hands_the_payout_to_the_loop(store: SqlStore) -> None:
    payments = [Record("payment", f"stripe_ch_{i}", {"amount_cents": 100}) for i in range(3)]
    payout = Record(
        "payout", "stripe_po_1", {"payment_ids": [None] * 3},
        parents={f"payment_ids.{i}": Ref("payment", p.external_id) for i, p in enumerate(payments)},
        updatable=True,
    )  # fmt: skip
    await queue(store, [*payments, payout])
    thred, wakes = RecordingThred(), []
    dispatching = Dispatching(
        store, thred, lambda: NOW, owner="w", max_attempts=3, lease=timedelta(seconds=30),
        wake=lambda: wakes.append(1),
    )  # fmt: skip
    for claimed in await dispatching.claim(16):
        assert await dispatching.handle(claimed) == "sent"
    assert [kind for kind, _ in thred.created] == ["payment"] * 3  # the payout was not tested after each one
    assert wakes == [1, 1, 1]
    (ready,) = await dispatching.claim(16)  # the loop finds it ready once all are sent
    assert ready.kind == "payout"
    assert sorted(ready.resolved.values()) == ["t-1", "t-2", "t-3"]


class FencedThred(RecordingThred):
    """Calls the fence right before each write, as the Thred client does; the fence finds the process lost."""

    async def create(self, business_id: str, kind: Any, body: Mapping[str, Any], **kw: Any) -> Created:
        await kw["before_write"]()
        return await super().create(business_id, kind, body)


async def test_a_claim_lost_right_before_the_write_is_left_to_its_new_holder(store: SqlStore) -> None:
    """Declared dead between the claim and the write (the client's own fence says so): the record is neither
    sent nor failed nor retried by this process; it stays pending for whoever took it over."""
    from thred_bridge.service.liveness import ProcessLostError

    await queue(store, [Record("customer", "stripe_walk_in", {"external_id": "stripe_walk_in"})])
    fences = 0

    async def fence() -> None:
        nonlocal fences
        fences += 1
        if fences > 1:  # the first check, at the start, passes; the one right before the write does not
            raise ProcessLostError("process w was declared dead; its claims were taken over")

    thred = FencedThred()
    dispatching = Dispatching(
        store, thred, lambda: NOW, owner="w", max_attempts=3, lease=timedelta(seconds=30), fence=fence
    )
    (customer,) = await dispatching.claim(16)
    with pytest.raises(ProcessLostError):
        await dispatching.handle(customer)
    assert thred.created == []
    async with store.engine.connect() as conn:
        row = (await conn.exec_driver_sql("SELECT status, last_error FROM records")).mappings().one()
    assert row["status"] == "pending"
    assert row["last_error"] is None, "no error written under a claim this process no longer holds"
