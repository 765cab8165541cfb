"""Many bridge processes on one database, fed mixed Stripe, Adyen and Mollie traffic: the harness of the
multi-process e2e test and of ``bench.scale``.

``mixed_traffic`` builds a world (charges in three currencies on all three processors, a fifth of them partly
refunded) and the deliveries that tell the bridge about it, shuffled, a share of them twice. ``Fleet`` runs the
simulated Stripe and Mollie APIs and a Thred sandbox that answers after ``latency`` seconds and counts every
create per external id, then ``serve`` processes (no worker tasks) and ``worker`` processes as real
subprocesses; it delivers concurrently to every web process, kills and restarts workers, waits for the queue to
drain and reads the books back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from tests.e2e.processes import Slow, free_port, held_by, process_env, spawn, stop_all, unfinished, wait_http
from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.mollie_api import MollieWorld
from thred_bridge.simulators.mollie_api import create_app as create_mollie
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe
from thred_bridge.store import schema

BUSINESSES = {
    "stripe": "5b0d7a1e-3c52-4d0e-9a61-0f4e2b7c9d11",
    "adyen": "8e3f1c2a-6d74-4b9f-8c05-2a1d9e6f4b22",
    "mollie": "c47a2e90-1b3d-4f8a-b6e2-7d5c0a9f3e33",
}
ADYEN_WEBHOOK_USER = ("adyen-webhook", "webhook-password-test")
CURRENCIES = ("eur", "usd", "gbp")


@dataclass
class Traffic:
    """What happened at the processors, and the deliveries that report it (``(processor, make)``: ``make()``
    signs the delivery when it is sent, so a long run's Stripe timestamps stay fresh)."""

    deliveries: list[tuple[str, Callable[[], testing.Delivery]]]
    payments: dict[str, int]  # external id → amount in minor units, every processor's
    refunds: dict[str, int]
    unique: int  # deliveries before duplication


def mixed_traffic(
    events: int,
    *,
    seed: int,
    stripe: StripeWorld,
    mollie: MollieWorld,
    stripe_secret: str,
    duplicates: float = 0.1,
    disputes: bool = False,
    payouts: bool = False,
    copies: tuple[int, ...] | None = None,
) -> Traffic:
    """About ``events`` distinct deliveries, a third per processor (Stripe and Adyen in EUR, USD and GBP, Mollie in
    its balance's EUR), each charge refunded in part one time in five; then ``duplicates`` of them delivered
    twice, and the lot shuffled. ``disputes``: a tenth of the charges not refunded are disputed or charged back in
    full (``refunds`` names them too); ``payouts``: a Stripe payout per currency once the month is over;
    ``copies``: each delivery is sent a number of times drawn from it, instead of ``duplicates``."""
    rng = random.Random(seed)
    deliveries: list[tuple[str, Callable[[], testing.Delivery]]] = []
    payments: dict[str, int] = {}
    refunds: dict[str, int] = {}
    n = 0
    stripe_currencies: set[str] = set()
    while len(deliveries) < events:
        amount, currency = rng.randrange(500, 50_000), CURRENCIES[n % len(CURRENCIES)]
        roll = rng.random()
        refund = amount // rng.choice((2, 3, 4)) if roll < 0.2 else 0
        disputed = disputes and 0.2 <= roll < 0.3  # never after a refund: that shape is the order property's
        processor = ("stripe", "adyen", "mollie")[n % 3]
        if processor == "stripe":
            charge = stripe.add_charge(amount, currency)
            stripe_currencies.add(currency)
            payments[f"stripe_{charge['id']}"] = amount
            deliveries.append(("stripe", _stripe(stripe.event("charge.succeeded", charge), stripe_secret)))
            if refund:
                made = stripe.refund(charge["id"], refund)
                refunds[f"stripe_{made['id']}"] = refund
                deliveries.append(("stripe", _stripe(stripe.event("refund.created", made), stripe_secret)))
            if disputed:
                dispute = stripe.dispute(charge["id"])
                refunds[f"stripe_{dispute['id']}"] = amount
                withdrawn = stripe.event("charge.dispute.funds_withdrawn", stripe.get(dispute["id"]) or {})
                deliveries.append(("stripe", _stripe(withdrawn, stripe_secret)))
        elif processor == "adyen":
            psp = f"88{n:014d}"
            payments[f"adyen_{psp}"] = amount
            item = testing.adyen_item("AUTHORISATION", psp, value=amount, currency=currency.upper())
            deliveries.append(("adyen", _adyen(item)))
            for code, prefix, value in (("REFUND", "89", refund), ("CHARGEBACK", "87", amount if disputed else 0)):
                if value:
                    refunds[f"adyen_{prefix}{n:014d}"] = value
                    back = testing.adyen_item(
                        code, f"{prefix}{n:014d}", value=value, currency=currency.upper(), original_reference=psp
                    )
                    deliveries.append(("adyen", _adyen(back)))
        else:
            payment = mollie.create_payment(amount, "EUR")  # the balance's currency: other ones are issue 15's
            mollie.pay(payment["id"])
            payments[f"mollie_{payment['id']}"] = amount
            deliveries.append(("mollie", _mollie(payment["id"])))
            if refund:
                made = mollie.refund(payment["id"], refund, status="refunded")
                refunds[f"mollie_{made['id']}"] = refund
                deliveries.append(("mollie", _mollie(payment["id"])))  # Mollie calls about the payment again
            if disputed:
                chargeback = mollie.chargeback(payment["id"])
                refunds[f"mollie_{chargeback['id']}"] = amount
                deliveries.append(("mollie", _mollie(payment["id"])))
        n += 1
    if payouts:
        for code in sorted(stripe_currencies):
            paid = stripe.event("payout.paid", stripe.payout(currency=code))
            deliveries.append(("stripe", _stripe(paid, stripe_secret)))
    unique = len(deliveries)
    if copies is None:
        deliveries += rng.sample(deliveries, int(unique * duplicates))
    else:
        deliveries = [d for d in deliveries for _ in range(rng.choice(copies))]
    rng.shuffle(deliveries)
    return Traffic(deliveries, payments, refunds, unique)


def _stripe(event: dict[str, Any], secret: str) -> Callable[[], testing.Delivery]:
    return lambda: testing.stripe_delivery(event, secret)


def _adyen(item: dict[str, Any]) -> Callable[[], testing.Delivery]:
    delivery = testing.adyen_delivery([item], auth=ADYEN_WEBHOOK_USER)
    return lambda: delivery


def _mollie(payment_id: str) -> Callable[[], testing.Delivery]:
    delivery = testing.mollie_ping(payment_id)
    return lambda: delivery


@dataclass
class Held:
    process: str | None
    records: set[int]
    events: set[int]


@dataclass
class Fleet:
    env: dict[str, str]
    cwd: Path
    thred: Slow
    thred_url: str
    stripe: StripeWorld
    mollie: MollieWorld
    stripe_secret: str
    connections: dict[str, str]  # processor → connection id
    web: list[tuple[subprocess.Popen[bytes], str]] = field(default_factory=list)  # (process, base URL)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _ended: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # --- processes ------------------------------------------------------------------------------------------

    async def start_web(self, count: int) -> None:
        started = []
        for _ in range(count):
            port = free_port()
            proc = spawn(["serve", "--port", str(port)], self.env, self.cwd)
            started.append((proc, f"http://127.0.0.1:{port}"))
        self.web += started
        for proc, base in started:
            await wait_http(f"{base}/readyz", proc, timeout=60)

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = spawn(["worker"], self.env, self.cwd)
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.workers.remove(proc)
        self._ended.append(proc)

    def stop(self) -> None:
        stop_all([proc for proc, _ in self.web] + self.workers)

    # --- traffic --------------------------------------------------------------------------------------------

    async def deliver(self, traffic: Traffic, *, concurrency: int = 32) -> None:
        """Every delivery, round robin over the web processes, ``concurrency`` at once; each must be stored."""
        queue: asyncio.Queue[tuple[int, tuple[str, Callable[[], testing.Delivery]]]] = asyncio.Queue()
        for item in enumerate(traffic.deliveries):
            queue.put_nowait(item)
        refused: list[str] = []

        async def sender(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                n, (processor, make) = queue.get_nowait()
                delivery = make()
                base = self.web[n % len(self.web)][1]
                url = f"{base}/webhooks/{processor}/{self.connections[processor]}"
                for attempt in range(5):  # as a processor does: a refused or broken delivery is sent again
                    try:
                        answer = await client.post(url, content=delivery.body, headers=delivery.headers)
                    except httpx.TransportError:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    if answer.status_code == 200:
                        break
                    if answer.status_code < 500:
                        refused.append(f"{processor} {answer.status_code} {answer.text[:200]}")
                        break
                    await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    refused.append(f"{processor}: never stored")

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        assert refused == [], refused[:5]

    # --- the database ---------------------------------------------------------------------------------------

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = schema.sync_engine(self.env["BRIDGE_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params).all())
        finally:
            engine.dispose()

    def counts(self) -> dict[str, int]:
        """Events not yet handled, records not yet sent, failures, records sent."""
        [(events_left, records_left, failed, sent)] = self.query(
            "SELECT (SELECT count(*) FROM events WHERE status IN ('pending', 'processing')),"
            " (SELECT count(*) FROM records WHERE status = 'pending'),"
            " (SELECT count(*) FROM events WHERE status = 'failed')"
            " + (SELECT count(*) FROM records WHERE status = 'failed'),"
            " (SELECT count(*) FROM records WHERE status = 'sent')"
        )
        return {"events_left": events_left, "records_left": records_left, "failed": failed, "sent": sent}

    def held_by(self, proc: subprocess.Popen[bytes]) -> Held:
        return Held(*held_by(self.env["BRIDGE_DATABASE_URL"], proc.pid))

    def unfinished(self, held: Held) -> int:
        return unfinished(self.env["BRIDGE_DATABASE_URL"], held.records, held.events)

    async def wait_holding(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> Held:
        deadline = time.monotonic() + timeout
        while True:
            held = self.held_by(proc)
            if held.process is not None and (held.records or held.events):
                return held
            assert time.monotonic() < deadline, "the worker never held a claim"
            await asyncio.sleep(0.05)

    async def wait_drained(self, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if counts["events_left"] == 0 and counts["records_left"] == 0:
                return counts
            assert time.monotonic() < deadline, f"not drained in {timeout} s: {counts}"
            await asyncio.sleep(0.25)

    # --- the books ------------------------------------------------------------------------------------------

    async def books(self) -> tuple[dict[str, int], dict[str, int]]:
        """Every payment's and refund's amount in the sandbox, by external id, over the three businesses."""
        async with httpx.AsyncClient(timeout=60) as client:
            state = (await client.get(f"{self.thred_url}/_sandbox/state")).json()["businesses"]
        payments: dict[str, int] = {}
        refunds: dict[str, int] = {}
        for business in BUSINESSES.values():
            books = state.get(business, {})
            payments |= {p["external_id"]: p["total_amount_cents"] for p in books.get("payments", [])}
            refunds |= {r["external_id"]: r["amount_cents"] for r in books.get("refunds", [])}
        return payments, refunds

    def doubled(self) -> dict[str, int]:
        return {key: n for key, n in self.thred.creates.items() if n > 1}


@contextlib.asynccontextmanager
async def fleet(
    database_url: str,
    cwd: Path,
    *,
    latency: float,
    settings: dict[str, str] | None = None,
    worlds: tuple[StripeWorld, MollieWorld, str] | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> AsyncIterator[Fleet]:
    """The simulated processors and a slow, counting Thred sandbox in this event loop; one connection per
    processor in the database; no bridge process yet (``start_web``, ``start_worker``). ``worlds`` (Stripe's,
    Mollie's and the Stripe webhook secret) replays a world another fleet already served; ``wrap`` puts an ASGI
    middleware in front of Thred (faults)."""
    stripe, mollie, stripe_secret = worlds or (StripeWorld(), MollieWorld(), "whsec_" + secrets.token_hex(12))
    thred = Slow(create_sandbox(partners=dict([testing.PARTNER])), latency)
    stripe_app = create_stripe(stripe, api_key=testing.STRIPE_KEY)
    mollie_app = create_mollie(mollie, api_key=testing.MOLLIE_API_KEY)
    async with (
        serve_in_background(stripe_app) as stripe_url,
        serve_in_background(mollie_app) as mollie_url,
        serve_in_background(wrap(thred) if wrap else thred) as thred_url,
    ):
        env = process_env(
            database_url,
            thred_url,
            BRIDGE_STRIPE_API_BASE=stripe_url,
            BRIDGE_MOLLIE_API_BASE=mollie_url,
            BRIDGE_MOLLIE_SETTLEMENT_POLL_SECONDS="0",
            BRIDGE_WORKERS="0",
            BRIDGE_LEASE_SECONDS="600",  # whatever comes back in seconds comes back by liveness
            BRIDGE_LOG_LEVEL="warning",
            BRIDGE_DB_POOL_SIZE="6",  # 3 web + 4 workers × (6 + 3 + 1) stay under Postgres's 100
            BRIDGE_DB_MAX_OVERFLOW="3",
            **(settings or {}),
        )
        adyen = {"capture": "immediate", "webhook_user": ADYEN_WEBHOOK_USER[0]}
        adyen["webhook_password"] = ADYEN_WEBHOOK_USER[1]
        new = {
            "stripe": NewConnection("stripe", BUSINESSES["stripe"], {"api_key": testing.STRIPE_KEY}, (stripe_secret,)),
            "adyen": NewConnection(
                "adyen", BUSINESSES["adyen"], adyen, (testing.ADYEN_HMAC_KEY,), account=testing.ADYEN_MERCHANT
            ),
            "mollie": NewConnection("mollie", BUSINESSES["mollie"], {"api_key": testing.MOLLIE_API_KEY}, ()),
        }
        async with open_bridge(Settings.model_validate(env), with_thred=False) as offline:
            connections = {name: (await offline.connections.add(c)).id for name, c in new.items()}
        running = Fleet(env, cwd, thred, thred_url, stripe, mollie, stripe_secret, connections)
        try:
            yield running
        finally:
            running.stop()
