"""Every bad delivery is refused with a precise reason and stores nothing."""

from __future__ import annotations

import json
import time

import pytest

from thred_bridge import testing
from thred_bridge.processors.stripe.webhook import sign_header
from thred_bridge.service.connections import NewConnection

pytestmark = pytest.mark.anyio


async def _stored(h: testing.Harness) -> int:
    return (await h.status()).received


async def test_bad_deliveries_are_refused_and_store_nothing(database_url: str) -> None:
    async with testing.bridge(database_url, worker=False) as h:
        event = h.world.event("charge.succeeded", h.world.add_charge(1000, "eur"))
        good = testing.stripe_delivery(event, h.secret)
        now = int(time.time())
        cases: list[tuple[str, testing.Delivery, int, str]] = [
            ("no signature", testing.Delivery(good.body, {}), 400, "header"),
            ("garbled", testing.Delivery(good.body, {"Stripe-Signature": "nonsense"}), 400, ""),
            ("wrong secret", testing.stripe_delivery(event, "whsec_wrong"), 400, "match"),
            ("stale", testing.stripe_delivery(event, h.secret, timestamp=now - 301), 400, ""),
            ("tampered", testing.Delivery(good.body.replace(b"1000", b"9000"), good.headers), 400, "match"),
        ]
        not_json = b"<xml>charge</xml>"
        cases.append(
            (
                "not JSON",
                testing.Delivery(not_json, {"Stripe-Signature": sign_header(not_json, h.secret, now)}),
                400,
                "",
            )
        )
        for name, delivery, code, word in cases:
            answer = await h.post(delivery)
            assert answer.status_code == code, name
            reason = answer.json()["error"]
            assert reason, name
            assert word.lower() in reason.lower(), (name, reason)
        assert await _stored(h) == 0

        big = json.dumps({**event, "padding": "x" * (1024 * 1024)}).encode()
        answer = await h.post(testing.Delivery(big, {"Stripe-Signature": sign_header(big, h.secret, now)}))
        assert answer.status_code == 413

        unknown = await h.post(good, url=f"{h.url}/webhooks/stripe/conn_unknown")
        assert unknown.status_code == 404
        wrong_processor = await h.post(good, url=f"{h.url}/webhooks/mollie/{h.connection.id}")
        assert wrong_processor.status_code == 404
        assert await _stored(h) == 0

        # A delivery validly signed for connection A, posted to connection B's URL.
        other = await h.bridge.connections.add(
            NewConnection("stripe", h.business_id, {"api_key": testing.STRIPE_KEY}, ("whsec_other_secret",))
        )
        crossed = await h.post(good, url=f"{h.url}/webhooks/stripe/{other.id}")
        assert crossed.status_code == 400
        assert (await h.bridge.connections.status(other)).received == 0

        # A removed connection answers 404 and stores nothing.
        await h.bridge.connections.remove(other.id)
        signed_for_other = testing.stripe_delivery(event, "whsec_other_secret")
        gone = await h.post(signed_for_other, url=f"{h.url}/webhooks/stripe/{other.id}")
        assert gone.status_code == 404

        assert (await h.post(good)).status_code == 200
        assert await _stored(h) == 1


async def test_rotation_accepts_either_secret(database_url: str) -> None:
    async with testing.bridge(database_url, worker=False) as h:
        rotated = await h.bridge.connections.add(
            NewConnection("stripe", h.business_id, {"api_key": testing.STRIPE_KEY}, ("whsec_old", "whsec_new"))
        )
        url = f"{h.url}/webhooks/stripe/{rotated.id}"
        for n, secret in enumerate(("whsec_old", "whsec_new")):
            event = h.world.event("charge.succeeded", h.world.add_charge(1000 + n, "eur"))
            assert (await h.post(testing.stripe_delivery(event, secret), url=url)).status_code == 200
        assert (await h.bridge.connections.status(rotated)).received == 2
