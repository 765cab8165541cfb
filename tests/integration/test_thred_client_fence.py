"""The write fence over a real socket: ThredClient against the Thred sandbox on loopback. The caller's
``before_write`` runs once more after a connection is in hand, right before the request's headers are written,
and again right before its body is; raising at either books nothing."""

from __future__ import annotations

import httpx
import pytest

from thred_bridge import testing
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.serving import serve_in_background
from thred_bridge.thred.client import ThredClient

pytestmark = pytest.mark.anyio
BUSINESS = "0f6d2c1e-4b3a-4e59-8d7c-6a5b4c3d2e1f"


class LostError(Exception):
    pass


async def test_the_fence_has_the_last_word_once_the_connection_is_open() -> None:
    calls: list[str] = []

    async def lost_on_the_wire() -> None:
        calls.append("fence")
        if len(calls) == 2:  # the first check passed; the process froze and was declared dead meanwhile
            raise LostError

    sandbox = create_sandbox(partners=dict([testing.PARTNER]))
    async with serve_in_background(sandbox) as url, ThredClient(url, *testing.PARTNER) as thred:
        with pytest.raises(LostError):
            await thred.create(BUSINESS, "customer", {"external_id": "stripe_cus_1"}, before_write=lost_on_the_wire)
        assert calls == ["fence", "fence"], "before the request, then as its headers were about to go out"
        async with httpx.AsyncClient() as client:
            counts = (await client.get(f"{url}/_sandbox/requests/count")).json()
        assert not any(route.startswith("POST") and "customers" in route for route in counts), counts

        calls.clear()
        created = await thred.create(BUSINESS, "customer", {"external_id": "stripe_cus_2"}, before_write=_open)
        assert created.created
        assert await thred.find_by_external_id(BUSINESS, "customer", "stripe_cus_1") is None


async def test_a_claim_lost_between_the_headers_and_the_body_cuts_the_request_short() -> None:
    calls: list[str] = []

    async def lost_between_the_writes() -> None:
        calls.append("fence")
        if len(calls) == 3:  # the headers went out; the process froze before the body and was declared dead
            raise LostError

    sandbox = create_sandbox(partners=dict([testing.PARTNER]))
    async with serve_in_background(sandbox) as url, ThredClient(url, *testing.PARTNER) as thred:
        with pytest.raises(LostError):
            await thred.create(
                BUSINESS, "customer", {"external_id": "stripe_cus_3"}, before_write=lost_between_the_writes
            )
        assert calls == ["fence"] * 3, "before the request, before its headers, before its body"
        assert await thred.find_by_external_id(BUSINESS, "customer", "stripe_cus_3") is None, "nothing booked"
        created = await thred.create(BUSINESS, "customer", {"external_id": "stripe_cus_3"}, before_write=_open)
        assert created.created, "the next process sends it once, as new"


async def _open() -> None:
    return None
