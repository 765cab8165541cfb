"""A real worker process SIGKILLed mid-run loses nothing and duplicates nothing after a restart.

The bridge runs as real processes (`thred-bridge serve` with no in-process worker, then
`thred-bridge worker`), the Thred sandbox and the simulated Stripe API as servers in this test. The
sandbox answers slowly, so the kill lands while records are in flight.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
CHARGES = 60


class Slow:
    """ASGI wrapper: every Thred request takes a little longer, as over a real network."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app, self.delay = app, delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``thred-bridge ARGS``; its log goes to a file beside the test's database."""
    log = cwd / f"{args[0]}-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "thred_bridge", *args], env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT
        )


async def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode}: {proc.args!r}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


@pytest.fixture
async def killer_env(database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    world = StripeWorld()
    async with (
        serve_in_background(create_stripe(world, api_key=testing.STRIPE_KEY)) as stripe_url,
        serve_in_background(Slow(create_sandbox(partners=dict([testing.PARTNER])), 0.02)) as thred_url,
    ):
        env = {
            **os.environ,
            "BRIDGE_DATABASE_URL": database_url,
            "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
            "THRED_API_URL": thred_url,
            "THRED_PARTNER_ID": testing.PARTNER[0],
            "THRED_API_KEY": testing.PARTNER[1],
            "BRIDGE_STRIPE_API_BASE": stripe_url,
            "BRIDGE_WORKERS": "0",
            "BRIDGE_LEASE_SECONDS": "2",
            "BRIDGE_WORKER_CONCURRENCY": "4",
            "BRIDGE_LOG_LEVEL": "warning",
        }
        yield {"env": env, "world": world, "thred_url": thred_url, "cwd": tmp_path}


async def test_sigkilled_worker_resumes_with_nothing_lost_or_doubled(killer_env: dict[str, Any]) -> None:
    env, world, thred_url, cwd = (killer_env[k] for k in ("env", "world", "thred_url", "cwd"))
    settings = Settings.model_validate(env)
    secret = "whsec_" + secrets.token_hex(12)
    business_id = "7d1c0f36-2f0e-4c55-9d2b-3a4f5e6a7b8c"
    async with open_bridge(settings, with_thred=False) as offline:
        connection = await offline.connections.add(
            NewConnection("stripe", business_id, {"api_key": testing.STRIPE_KEY}, (secret,))
        )
    expected = {}
    for n in range(CHARGES):
        charge = world.add_charge(1000 + n, ["eur", "usd", "jpy"][n % 3])
        expected[f"stripe_{charge['id']}"] = 1000 + n
    port = _free_port()
    server = _spawn(["serve", "--port", str(port)], env, cwd)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_http(f"{base}/readyz", server)
        async with httpx.AsyncClient(timeout=10) as client:
            for charge_id in expected:
                charge = world.get(charge_id.removeprefix("stripe_"))
                assert charge is not None
                delivery = testing.stripe_delivery(world.event("charge.succeeded", charge), secret)
                url = f"{base}/webhooks/stripe/{connection.id}"
                answer = await client.post(url, content=delivery.body, headers=delivery.headers)
                assert answer.status_code == 200

            workers.append(_spawn(["worker"], env, cwd))
            booked = 0
            deadline = time.monotonic() + 60
            while booked < 10:  # kill once some, but not all, payments are in Thred
                assert time.monotonic() < deadline, "the worker booked nothing"
                booked = len(await _payments(client, thred_url, business_id))
                await asyncio.sleep(0.02)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=10)
            at_kill = len(await _payments(client, thred_url, business_id))
            assert at_kill < CHARGES, "the kill came too late to prove anything"

            workers.append(_spawn(["worker"], env, cwd))
            deadline = time.monotonic() + 90
            while True:
                async with open_bridge(settings, with_thred=False) as offline:
                    status = await offline.connections.status(connection)
                if status.waiting == 0 and status.records_waiting == 0:
                    break
                assert time.monotonic() < deadline, f"not synced after restart: {status}"
                await asyncio.sleep(0.25)
            payments = await _payments(client, thred_url, business_id)
            counts = (await client.get(f"{thred_url}/_sandbox/requests/count")).json()
    finally:
        for proc in (server, *workers):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    assert status.failed == 0
    assert status.synced == CHARGES
    assert sorted(p["external_id"] for p in payments) == sorted(expected)  # each once: none lost, none doubled
    assert {p["external_id"]: p["total_amount_cents"] for p in payments} == expected
    # At most the records in flight at the kill were sent twice (Thred answered the repeat with the same record).
    sent_payments = counts.get("POST /v1/platform/businesses/{business_id}/invoices/payments/", 0)
    assert CHARGES <= sent_payments <= CHARGES + 4


async def _payments(client: httpx.AsyncClient, thred_url: str, business_id: str) -> list[dict[str, Any]]:
    state = (await client.get(f"{thred_url}/_sandbox/state")).json()["businesses"]
    payments: list[dict[str, Any]] = state.get(business_id, {}).get("payments", [])
    return payments
