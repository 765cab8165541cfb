"""The simulated Stripe API on a real uvicorn server on loopback, with a StripeApi pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from thred_bridge.processors.stripe.api import StripeApi
from thred_bridge.simulators.stripe_api import StripeWorld, create_app

KEY = "sk_test_51SimulatedKeyForTheBridgeTests0000abcd"
ACCOUNT = "acct_1ConnectedAccount01"
NOW = 1_762_000_000


@dataclass
class Stripe:
    world: StripeWorld
    base_url: str
    api: StripeApi


@contextlib.asynccontextmanager
async def serve_stripe(world: StripeWorld | None = None) -> AsyncIterator[Stripe]:
    """Serve ``world`` (default: seeded, with a frozen clock) until the block ends."""
    world = world or StripeWorld(seed=7, clock=lambda: NOW)
    config = uvicorn.Config(
        create_app(world, api_key=KEY),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        http="h11",
        ws="none",
        loop="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    api = StripeApi(KEY, base_url=base_url, timeout=5)
    try:
        yield Stripe(world, base_url, api)
    finally:
        await api.aclose()
        server.should_exit = True
        await task
