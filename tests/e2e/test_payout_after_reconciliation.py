"""A payout that fails after Thred reconciled it cannot be updated: the bridge says so, it does not pretend."""

from __future__ import annotations

import pytest

from thred_bridge import testing

pytestmark = pytest.mark.anyio


async def test_failed_payout_after_reconciliation_is_flagged_with_threds_reason(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        for amount in (2_000, 3_500):
            h.world.add_charge(amount, "eur")
        payout = h.world.payout(currency="eur")
        await h.deliver(h.world.event("payout.paid", payout))
        assert (await h.drain()).failed == 0
        (held,) = (await h.books())["payouts"]
        assert held["status"] == "paid"
        path = f"{h.thred_url}/v1/platform/businesses/{h.business_id}/payouts/{held['id']}/reconcile/"
        token = await h.http.post(f"{h.thred_url}/v1/platform/{h.business_id}/oauth2/token/",
                                  headers={"Authorization": f"Bearer {await _partner_token(h)}"})  # fmt: skip
        business_token = token.json()["access_token"]
        (await h.http.post(path, headers={"Authorization": f"Bearer {business_token}"})).raise_for_status()

        failed = h.world.fail_payout(payout["id"])
        await h.deliver(h.world.event("payout.failed", failed))
        status = await h.drain()
        (still,) = (await h.books())["payouts"]
    assert still["status"] == "paid"  # Thred kept its reconciled payout
    ((_, event_type, error),) = status.failures
    assert event_type == "payout.failed"
    assert "409" in error
    assert "payout_reconciled" in error


async def _partner_token(h: testing.Harness) -> str:
    answer = await h.http.post(
        f"{h.thred_url}/v1/platform/oauth2/token/",
        auth=testing.PARTNER,
        data={"grant_type": "client_credentials"},
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token
