"""Public test helpers: signed Stripe deliveries and a whole bridge on loopback.

``async with testing.bridge(database_url) as h`` runs, in this event loop, a simulated Stripe API,
the Thred sandbox and the bridge's web app and worker, each a real HTTP server on 127.0.0.1, with one
Stripe connection ready. Nothing in the product imports this module.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.queue import Connection, ConnectionStatus
from thred_bridge.entrypoints.web import create_app
from thred_bridge.processors.stripe.webhook import sign_header
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe

STRIPE_KEY = "sk_test_bridge_" + "1" * 24
PARTNER = ("partner-test", "partner-key-test")


@dataclass(frozen=True, slots=True)
class Delivery:
    body: bytes
    headers: dict[str, str]


def stripe_delivery(event: Mapping[str, Any], secret: str, *, timestamp: int | None = None) -> Delivery:
    """The bytes and headers Stripe would POST for ``event``, really signed with ``secret``."""
    import json

    body = json.dumps(event, indent=2).encode()
    t = int(time.time()) if timestamp is None else timestamp
    return Delivery(body, {"Content-Type": "application/json", "Stripe-Signature": sign_header(body, secret, t)})


@dataclass
class Harness:
    """A running bridge with one Stripe connection, its Stripe world and its Thred sandbox."""

    bridge: Bridge
    url: str
    connection: Connection
    secret: str
    world: StripeWorld
    thred_url: str
    business_id: str
    http: httpx.AsyncClient

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/stripe/{self.connection.id}"

    async def post(self, delivery: Delivery, *, url: str | None = None) -> httpx.Response:
        return await self.http.post(url or self.webhook_url, content=delivery.body, headers=delivery.headers)

    async def deliver(self, event: Mapping[str, Any]) -> httpx.Response:
        return await self.post(stripe_delivery(event, self.secret))

    async def status(self) -> ConnectionStatus:
        return await self.bridge.connections.status(self.connection)

    async def drain(self, timeout: float = 30.0) -> ConnectionStatus:
        """Wait until nothing is waiting (events or records); raise if that takes over ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status()
            if status.waiting == 0 and status.records_waiting == 0:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"still waiting after {timeout} s: {status}")
            await self._nudge()

    async def _nudge(self) -> None:
        self.bridge.events_ready.set()
        self.bridge.records_ready.set()
        await _sleep(0.05)

    async def books(self) -> dict[str, Any]:
        """The sandbox's records of this connection's business."""
        answer = await self.http.get(f"{self.thred_url}/_sandbox/state")
        answer.raise_for_status()
        state: dict[str, Any] = answer.json()["businesses"].get(self.business_id, {})
        return state

    async def fault(self, path_contains: str, status: int, *, times: int = 1, **extra: Any) -> None:
        """Make the sandbox fail the next ``times`` matching requests with ``status``."""
        body = {"path_contains": path_contains, "status": status, "times": times, **extra}
        (await self.http.post(f"{self.thred_url}/_sandbox/faults", json=body)).raise_for_status()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def bridge(
    database_url: str, *, worker: bool = True, settings: Mapping[str, Any] | None = None
) -> AsyncIterator[Harness]:
    """Run the whole bridge on loopback against a fresh sandbox and a simulated Stripe."""
    world = StripeWorld()
    secret = "whsec_" + secrets.token_hex(16)
    async with (
        serve_in_background(create_stripe(world, api_key=STRIPE_KEY)) as stripe_url,
        serve_in_background(create_sandbox(partners=dict([PARTNER]))) as thred_url,
    ):
        config = Settings.model_validate(
            {
                "BRIDGE_DATABASE_URL": database_url,
                "THRED_API_URL": thred_url,
                "THRED_PARTNER_ID": PARTNER[0],
                "THRED_API_KEY": PARTNER[1],
                "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
                "BRIDGE_STRIPE_API_BASE": stripe_url,
                **(settings or {}),
            }
        )
        async with open_bridge(config) as running:
            business_id = str(uuid.uuid4())
            connection = await running.connections.add(
                NewConnection("stripe", business_id, {"api_key": STRIPE_KEY}, (secret,))
            )
            stop = None
            async with contextlib.AsyncExitStack() as stack:
                url = await stack.enter_async_context(serve_in_background(create_app(running)))
                http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
                if worker:
                    import asyncio

                    stop = asyncio.Event()
                    task = asyncio.create_task(running.worker(poll=0.1).run(stop))

                    async def _stop() -> None:
                        assert stop is not None
                        stop.set()
                        await task

                    stack.push_async_callback(_stop)
                yield Harness(running, url, connection, secret, world, thred_url, business_id, http)
