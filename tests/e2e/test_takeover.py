"""A crash costs seconds: claims of a SIGKILLed worker are finished by another worker process within 10 s, with
a lease of ten minutes; a worker paused past its heartbeat loses its claims and, resumed, sends none of them; a
worker told to stop (SIGTERM) exits 0 holding nothing.
Nothing reaches Thred twice: the sandbox counts every create per external id.

Real processes (`thred-bridge serve` with no worker, two `thred-bridge worker`), the Thred sandbox and the
simulated Stripe API as servers in this test, on SQLite and on Postgres.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.processes import (
    Slow,
    free_port,
    freeze,
    held_by,
    payments,
    process_env,
    spawn,
    stop_all,
    unfinished,
    wait_http,
)
from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe
from thred_bridge.store import schema

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
CHARGES = 60
BUSINESS = "7d1c0f36-2f0e-4c55-9d2b-3a4f5e6a7b8c"
TAKEOVER = 10.0  # the default BRIDGE_TAKEOVER_SECONDS


@dataclass
class Fleet:
    env: dict[str, str]
    thred: Slow
    thred_url: str
    cwd: Path
    connection_id: str
    expected: dict[str, int]
    secret: str
    world: StripeWorld


@pytest.fixture
async def fleet(database_url: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    world = StripeWorld()
    thred = Slow(create_sandbox(partners=dict([testing.PARTNER])), 0.25)  # sends wait on Thred, not on the store
    async with (
        serve_in_background(create_stripe(world, api_key=testing.STRIPE_KEY)) as stripe_url,
        serve_in_background(thred) as thred_url,
    ):
        env = process_env(
            database_url,
            thred_url,
            BRIDGE_STRIPE_API_BASE=stripe_url,
            BRIDGE_WORKERS="0",
            BRIDGE_LEASE_SECONDS="600",  # whatever comes back in seconds comes back by liveness
            BRIDGE_WORKER_CONCURRENCY="4",
            BRIDGE_LOG_LEVEL="info",
            BRIDGE_METRICS_PORT="0",
        )
        secret = "whsec_" + secrets.token_hex(12)
        async with open_bridge(Settings.model_validate(env), with_thred=False) as offline:
            connection = await offline.connections.add(
                NewConnection("stripe", BUSINESS, {"api_key": testing.STRIPE_KEY}, (secret,))
            )
        expected = {}
        for n in range(CHARGES):
            charge = world.add_charge(1000 + n, ["eur", "usd", "jpy"][n % 3])
            expected[f"stripe_{charge['id']}"] = 1000 + n
        yield Fleet(env, thred, thred_url, tmp_path, connection.id, expected, secret, world)


async def deliver_all(fleet: Fleet, client: httpx.AsyncClient, base: str) -> None:
    for external_id in fleet.expected:
        charge = fleet.world.get(external_id.removeprefix("stripe_"))
        assert charge is not None
        delivery = testing.stripe_delivery(fleet.world.event("charge.succeeded", charge), fleet.secret)
        answer = await client.post(
            f"{base}/webhooks/stripe/{fleet.connection_id}", content=delivery.body, headers=delivery.headers
        )
        assert answer.status_code == 200


def ended_as(url: str, process_id: str) -> str | None:
    engine = schema.sync_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT ended FROM processes WHERE id = :p"), {"p": process_id}).scalar()
            return None if found is None else str(found)
    finally:
        engine.dispose()


async def wait_holding(url: str, worker: subprocess.Popen[bytes]) -> tuple[str, set[int], set[int]]:
    """Wait until the worker holds claims, and return them."""
    deadline = time.monotonic() + 60
    while True:
        process, records, events = held_by(url, worker.pid)
        if process is not None and (records or events):
            return process, records, events
        assert time.monotonic() < deadline, "the worker never held a claim"
        await asyncio.sleep(0.02)


async def frozen_holding(url: str, worker: subprocess.Popen[bytes]) -> tuple[str, set[int], set[int]]:
    """Freeze the worker while it holds claims, and return what it holds frozen: read after the freeze, since
    claims seen a moment before it may be finished by then, leaving nothing to take over."""
    for _ in range(200):
        await wait_holding(url, worker)
        await freeze(worker, url)
        process, records, events = held_by(url, worker.pid)
        if process is not None and (records or events):
            return process, records, events
        worker.send_signal(signal.SIGCONT)
    raise AssertionError("the worker was never frozen holding a claim")


async def drained(fleet: Fleet, timeout: float = 120) -> Any:
    settings = Settings.model_validate(fleet.env)
    deadline = time.monotonic() + timeout
    while True:
        async with open_bridge(settings, with_thred=False) as offline:
            status = await offline.connections.status(await offline.connections.get(fleet.connection_id))
        if status.waiting == 0 and status.records_waiting == 0:
            return status
        assert time.monotonic() < deadline, f"not synced: {status}"
        await asyncio.sleep(0.25)


async def check_books(fleet: Fleet, client: httpx.AsyncClient, status: Any) -> None:
    booked = await payments(client, fleet.thred_url, BUSINESS)
    assert status.failed == 0
    assert {p["external_id"]: p["total_amount_cents"] for p in booked} == fleet.expected
    assert len(booked) == CHARGES
    doubled = {external_id: n for external_id, n in fleet.thred.creates.items() if n > 1}
    assert doubled == {}, "nothing is sent to Thred twice"
    assert len(fleet.thred.creates) == 2 * CHARGES + 1  # an invoice and a payment per charge, one walk-in customer


async def test_a_sigkilled_workers_claims_are_finished_by_another_within_seconds(
    fleet: Fleet, database_url: str
) -> None:
    port = free_port()
    procs = [spawn(["serve", "--port", str(port)], fleet.env, fleet.cwd)]
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/readyz", procs[0])
        async with httpx.AsyncClient(timeout=10) as client:
            await deliver_all(fleet, client, base)
            doomed = spawn(["worker"], fleet.env, fleet.cwd)
            procs.append(doomed)
            _, records, events = await wait_holding(database_url, doomed)
            procs.append(spawn(["worker"], fleet.env, fleet.cwd))
            await asyncio.sleep(1.0)  # the second one is up and beating; the first still holds claims
            _, records, events = await wait_holding(database_url, doomed)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            killed = time.monotonic()
            while unfinished(database_url, records, events):
                assert time.monotonic() - killed < TAKEOVER, "the dead worker's claims waited for their lease"
                await asyncio.sleep(0.05)
            status = await drained(fleet)
            await check_books(fleet, client, status)
    finally:
        stop_all(procs)


async def test_a_worker_paused_past_its_heartbeat_sends_nothing_it_lost(fleet: Fleet, database_url: str) -> None:
    port = free_port()
    procs = [spawn(["serve", "--port", str(port)], fleet.env, fleet.cwd)]
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/readyz", procs[0])
        async with httpx.AsyncClient(timeout=10) as client:
            await deliver_all(fleet, client, base)
            paused = spawn(["worker"], fleet.env, fleet.cwd)
            procs.append(paused)
            await wait_holding(database_url, paused)
            procs.append(spawn(["worker"], fleet.env, fleet.cwd))
            await asyncio.sleep(1.0)
            process, records, events = await frozen_holding(database_url, paused)
            stopped = time.monotonic()
            while unfinished(database_url, records, events):
                assert time.monotonic() - stopped < TAKEOVER + 5, "a frozen worker's claims were never taken over"
                await asyncio.sleep(0.05)
            assert ended_as(database_url, process) == "dead"
            paused.send_signal(signal.SIGCONT)  # it wakes holding claims it lost: it must send none of them
            status = await drained(fleet)
            await asyncio.sleep(1.0)  # time for anything it would wrongly send
            await check_books(fleet, client, status)
            again, _, _ = held_by(database_url, paused.pid)
            assert paused.poll() is None, "it lives on"
            assert again not in (None, process), "under a new registration"
    finally:
        stop_all(procs)


async def test_a_sigterm_stops_a_worker_cleanly_and_gives_back_what_it_holds(fleet: Fleet, database_url: str) -> None:
    port = free_port()
    procs = [spawn(["serve", "--port", str(port)], fleet.env, fleet.cwd)]
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/readyz", procs[0])
        async with httpx.AsyncClient(timeout=10) as client:
            await deliver_all(fleet, client, base)
            stopping = spawn(["worker"], fleet.env, fleet.cwd)
            procs.append(stopping)
            process, _, _ = await wait_holding(database_url, stopping)
            stopping.terminate()
            shutdown = Settings.model_validate(fleet.env).shutdown_seconds
            assert stopping.wait(timeout=shutdown + 5) == 0, "SIGTERM: in-flight work finished or given back, exit 0"
            assert ended_as(database_url, process) == "stopped"
            _, records, events = held_by_process(database_url, process)
            assert (records, events) == (set(), set()), "nothing stays claimed by a process that stopped"
            procs.append(spawn(["worker"], fleet.env, fleet.cwd))
            status = await drained(fleet)
            await check_books(fleet, client, status)
    finally:
        stop_all(procs)


def held_by_process(url: str, process: str) -> tuple[str, set[int], set[int]]:
    engine = schema.sync_engine(url)
    try:
        with engine.connect() as conn:
            records = conn.execute(text("SELECT id FROM records WHERE locked_by = :p"), {"p": process}).scalars()
            events = conn.execute(
                text("SELECT id FROM events WHERE locked_by = :p AND status = 'processing'"), {"p": process}
            ).scalars()
            return process, set(records), set(events)
    finally:
        engine.dispose()
