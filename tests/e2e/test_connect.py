"""Stripe Connect: a platform's events for connected accounts land in each account's own Thred business."""

from __future__ import annotations

import uuid

import pytest

from thred_bridge import testing
from thred_bridge.service.connections import NewConnection

pytestmark = pytest.mark.anyio


async def test_unmapped_account_waits_as_unrouted_then_books_once_mapped(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        account = "acct_1ConnectedShop"
        charge = h.world.add_charge(3_000, "eur", account=account)
        same_id_on_platform = h.world.add_charge(1_000, "eur")  # another object on the platform itself
        answer = await h.deliver(h.world.event("charge.succeeded", charge, account=account))
        assert answer.status_code == 200
        await h.deliver(h.world.event("charge.succeeded", same_id_on_platform))
        status = await h.drain()
        assert (status.unrouted, status.failed) == (1, 0)

        shop_business = str(uuid.uuid4())
        await h.bridge.connections.add(
            NewConnection("stripe", shop_business, {"api_key": testing.STRIPE_KEY}, (), account=account)
        )
        status = await h.drain()
        shop = await h.http.get(f"{h.thred_url}/_sandbox/state")
        books = shop.json()["businesses"]
    assert (status.unrouted, status.failed, status.synced) == (0, 0, 2)
    (shop_payment,) = books[shop_business]["payments"]
    assert shop_payment["external_id"] == f"stripe_{charge['id']}"
    assert shop_payment["metadata"]["processor_account"] == account
    (platform_payment,) = books[h.business_id]["payments"]
    assert platform_payment["external_id"] == f"stripe_{same_id_on_platform['id']}"
    (shop_customer,) = books[shop_business]["customers"]
    assert shop_customer["external_id"] == f"stripe_{account}_walkin"
