"""Any order and any duplication of the same Stripe deliveries ends in the same Thred books."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thred_bridge import testing

pytestmark = pytest.mark.anyio

CHARGE = st.tuples(
    st.integers(min_value=1, max_value=500_000),
    st.sampled_from(["eur", "usd", "jpy", "gbp", "kwd"]),
    st.sampled_from([None, 0, 1]),  # walk-in, or one of two known customers
    st.booleans(),  # also deliver payment_intent.succeeded
)


def _canonical(books: dict[str, Any]) -> dict[str, Any]:
    customers = {c["id"]: c["external_id"] for c in books.get("customers", [])}
    invoices = {i["id"]: i["external_id"] for i in books.get("invoices", [])}
    return {
        "customers": sorted(customers.values()),
        "invoices": sorted(
            (i["external_id"], customers[i["customer"]["id"]], i["currency"], i["total_amount_cents"])
            for i in books.get("invoices", [])
        ),
        "payments": sorted(_payment(p, customers, invoices) for p in books.get("payments", [])),
    }


def _payment(p: dict[str, Any], customers: dict[str, str], invoices: dict[str, str]) -> tuple[Any, ...]:
    allocated = tuple(invoices[a["invoice_id"]] for a in p.get("allocations", []))
    money = (p["currency"], p["total_amount_cents"], p["processing_fee_cents"])
    return (p["external_id"], customers[p["customer_id"]], *money, allocated)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(charges=st.lists(CHARGE, min_size=1, max_size=5), data=st.data())
async def test_shuffled_and_duplicated_stream_gives_identical_books(
    database_url: str, charges: list[tuple[int, str, int | None, bool]], data: st.DataObject
) -> None:
    async with testing.bridge(database_url) as h:
        known = [h.world.add_customer(name=f"Customer {n}", email=f"c{n}@example.org") for n in range(2)]
        events: list[dict[str, Any]] = []
        expected: dict[str, tuple[str, int]] = {}
        for amount, currency, who, with_intent in charges:
            step = 10 if currency == "kwd" else 1  # Stripe: the last digit of a 3-decimal amount is 0
            charge = h.world.add_charge(amount * step, currency, customer=known[who] if who is not None else None)
            expected[f"stripe_{charge['id']}"] = (currency.upper(), amount * step)
            events.append(h.world.event("charge.succeeded", charge))
            if with_intent:
                events.append(h.world.event("payment_intent.succeeded", h.world.payment_intent_of(charge)))
        doubled = events + data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="redelivered")
        order = data.draw(st.permutations(doubled), label="order")
        # Deliver in concurrent bursts, as Stripe does.
        for start in range(0, len(order), 3):
            answers = await asyncio.gather(*(h.deliver(e) for e in order[start : start + 3]))
            assert all(a.status_code == 200 for a in answers)
        status = await h.drain()
        books = _canonical(await h.books())
    assert status.failed == 0
    assert status.received == len(events)
    assert {p[0]: (p[2], p[3]) for p in books["payments"]} == expected
    assert [i[0] for i in books["invoices"]] == sorted(expected)
    for payment in books["payments"]:
        assert payment[5] == (payment[0],)  # each payment pays its own charge's invoice, in full
