"""Signed Adyen Standard-webhook batches → the bridge over HTTP → the Thred sandbox: every item verified on
its own, refusals that store nothing, and exact books whatever the order and however often it arrives."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from thred_bridge import testing

pytestmark = pytest.mark.anyio

PAYMENT = "8815000000000001"
CAPTURE = "8825000000000001"
REFUND = "8835000000000001"
DISPUTE = "8845000000000001"
OTHER_KEY = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
SHOPPER = {"shopperReference": "shopper-42", "shopperEmail": "ada@example.org", "shopperName": "Ada Lovelace"}


def _items(h: testing.AdyenHarness) -> dict[str, dict[str, Any]]:
    order = {"merchant_reference": "order-1"}
    return {
        "authorisation": h.item(
            "AUTHORISATION", PAYMENT, value=10000, operations=["CANCEL", "CAPTURE", "REFUND"],
            additional_data=SHOPPER, **order,
        ),
        "capture": h.item("CAPTURE", CAPTURE, value=10000, original_reference=PAYMENT, additional_data=SHOPPER,
                          **order),
        "refund": h.item("REFUND", REFUND, value=2500, original_reference=PAYMENT, **order),
        "chargeback": h.item(
            "CHARGEBACK", DISPUTE, value=7500, original_reference=PAYMENT, reason="Fraud",
            additional_data={"chargebackReasonCode": "10.4"}, **order,
        ),
        # Signed with another key: refused, logged, never stored.
        "forged": h.item("CAPTURE", "8825000000000099", value=99999, original_reference="8815000000000099",
                         hmac_key=OTHER_KEY),
    }  # fmt: skip


async def test_a_batch_delivered_twice_and_out_of_order_books_exactly_once(database_url: str) -> None:
    async with testing.adyen_bridge(database_url) as h:
        items = _items(h)
        money_out = [items["refund"], items["forged"], items["chargeback"]]  # before the capture they refund
        money_in = [items["capture"], items["authorisation"]]
        for batch in (money_out, money_in, list(reversed(money_out)), money_in):
            answer = await h.deliver(*batch)
            assert answer.status_code == 200
            assert answer.content == b"[accepted]"
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.failed) == (4, 0)  # the forged item was never stored
    (customer,) = books["customers"]
    assert customer["external_id"] == "adyen_shopper_shopper-42"
    assert customer["email"] == "ada@example.org"
    (invoice,) = books["invoices"]
    assert (invoice["external_id"], invoice["total_amount_cents"], invoice["currency"]) == (
        f"adyen_{PAYMENT}",
        10000,
        "EUR",
    )
    assert invoice["customer"]["id"] == customer["id"]
    (payment,) = books["payments"]
    assert (payment["external_id"], payment["total_amount_cents"], payment["processing_fee_cents"]) == (
        f"adyen_{PAYMENT}",
        10000,
        0,  # Adyen's fees come with the settlement report
    )
    assert payment["payment_processor"] == "adyen"
    refunds = {r["external_id"]: r["amount_cents"] for r in books["refunds"]}
    assert refunds == {f"adyen_{REFUND}": 2500, f"adyen_{DISPUTE}": 7500}
    assert {r["invoice_id"] for r in books["refunds"]} == {invoice["id"]}
    refund_payments = {r["external_id"]: r["amount_cents"] for r in books["refund_payments"]}
    assert refund_payments == {f"adyen_{REFUND}": 2500, f"adyen_{DISPUTE}": 7500}
    assert not books.get("payouts")


async def test_immediate_capture_books_the_authorisation(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, capture="immediate") as h:
        answer = await h.deliver(h.item("AUTHORISATION", PAYMENT, value=4200, merchant_reference="order-9"))
        assert answer.content == b"[accepted]"
        refused = await h.deliver(h.item("AUTHORISATION", "8815000000000002", value=100, success=False))
        assert refused.content == b"[accepted]"  # stored, books nothing
        await h.drain()
        books = await h.books()
    assert [(p["external_id"], p["total_amount_cents"]) for p in books["payments"]] == [(f"adyen_{PAYMENT}", 4200)]
    assert [c["external_id"] for c in books["customers"]] == ["adyen_walkin"]


async def test_bad_hmac_only_is_400_and_stores_nothing(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, worker=False) as h:
        forged = h.item("CAPTURE", CAPTURE, value=10000, original_reference=PAYMENT, hmac_key=OTHER_KEY)
        tampered = h.item("REFUND", REFUND, value=2500, original_reference=PAYMENT)
        tampered["NotificationRequestItem"]["amount"]["value"] = 250000
        unsigned = h.item("REFUND", REFUND, value=2500, original_reference=PAYMENT, hmac_key=None)
        answer = await h.deliver(forged, tampered, unsigned)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert "item 0: bad HMAC signature" in error
        assert "item 1: bad HMAC signature" in error
        assert "item 2: bad HMAC signature" in error
        assert OTHER_KEY not in error
        assert testing.ADYEN_HMAC_KEY not in error
        assert (await h.status()).received == 0


async def test_another_merchant_accounts_items_are_refused(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, worker=False) as h:
        theirs = h.item("CAPTURE", CAPTURE, value=10000, original_reference=PAYMENT, merchant_account="Elsewhere")
        answer = await h.deliver(theirs)
        assert answer.status_code == 400
        assert "Elsewhere" in answer.json()["error"]
        mixed = await h.deliver(theirs, h.item("AUTHORISATION", PAYMENT, value=10000))
        assert mixed.content == b"[accepted]"
        assert (await h.status()).received == 1


async def test_wrong_or_missing_basic_auth_is_401(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, worker=False) as h:
        item = h.item("AUTHORISATION", PAYMENT, value=10000)
        for auth in (None, ("adyen-webhook", "wrong"), ("someone", h.webhook_auth[1] if h.webhook_auth else "")):
            answer = await h.post(testing.adyen_delivery([item], auth=auth))
            assert answer.status_code == 401, auth
            assert answer.headers["www-authenticate"].startswith("Basic")
        garbled = testing.adyen_delivery([item])
        garbled.headers["Authorization"] = "Basic " + base64.b64encode(b"no-colon").decode() + "!!"
        assert (await h.post(garbled)).status_code == 401
        assert (await h.status()).received == 0
        assert (await h.deliver(item)).content == b"[accepted]"
        assert (await h.status()).received == 1


async def test_without_basic_auth_configured_none_is_needed(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, worker=False, webhook_auth=None) as h:
        answer = await h.deliver(h.item("AUTHORISATION", PAYMENT, value=10000))
        assert answer.status_code == 200
        assert answer.content == b"[accepted]"


async def test_a_reversed_chargeback_and_a_failed_refund(database_url: str) -> None:
    async with testing.adyen_bridge(database_url) as h:
        capture = h.item("CAPTURE", CAPTURE, value=5000, original_reference=PAYMENT)
        chargeback = h.item("CHARGEBACK", DISPUTE, value=5000, original_reference=PAYMENT)
        reversed_ = h.item("CHARGEBACK_REVERSED", DISPUTE, value=5000, original_reference=PAYMENT)
        for item in (reversed_, chargeback, capture):  # newest first
            assert (await h.deliver(item)).content == b"[accepted]"
        await h.drain()
        second = "8815000000000002"
        refund = h.item("REFUND", REFUND, value=1000, original_reference=second)
        capture_second = h.item("CAPTURE", "8825000000000002", value=3000, original_reference=second)
        assert (await h.deliver(refund, capture_second)).content == b"[accepted]"
        await h.drain()
        refund_payments_before = {r["external_id"] for r in (await h.books())["refund_payments"]}
        failed = h.item("REFUND_FAILED", REFUND, value=1000, original_reference=second, reason="Refund declined")
        assert (await h.deliver(failed)).content == b"[accepted]"
        status = await h.drain()
        books = await h.books()
    assert status.failed == 0
    payments = {p["external_id"]: p["total_amount_cents"] for p in books["payments"]}
    assert payments == {
        f"adyen_{PAYMENT}": 5000,
        f"adyen_{DISPUTE}_reinstated": 5000,
        "adyen_8815000000000002": 3000,
    }
    assert refund_payments_before == {f"adyen_{DISPUTE}", f"adyen_{REFUND}"}
    assert {r["external_id"] for r in books["refund_payments"]} == {f"adyen_{DISPUTE}"}


async def test_a_100_item_batch_is_accepted_well_under_adyens_10_seconds(database_url: str) -> None:
    async with testing.adyen_bridge(database_url, worker=False) as h:
        items = [h.item("CAPTURE", f"88250000{n:08d}", value=1000 + n, original_reference=f"88150000{n:08d}")
                 for n in range(100)]  # fmt: skip
        started = time.perf_counter()
        answer = await h.deliver(*items)
        elapsed = time.perf_counter() - started
        assert answer.content == b"[accepted]"
        assert (await h.status()).received == 100
    assert elapsed < 2.0, f"{elapsed:.3f} s"
