"""`thred-bridge demo`: the whole pipeline on embedded defaults, with simulated Stripe traffic.

A temporary SQLite database, the Thred sandbox, a simulated Stripe API and the bridge's own web
server and worker, all on loopback. About twenty signed charge webhooks (several currencies, a
zero-decimal one, an FX charge, duplicates, both event kinds for one charge, shuffled) go to the
bridge over HTTP; the demo waits until they are synced, then prints what landed in Thred.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.money import Money
from thred_bridge.entrypoints.output import print_json
from thred_bridge.entrypoints.web import create_app
from thred_bridge.processors.stripe.currency import from_stripe
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe

API_KEY = "sk_test_demo_" + "0" * 24
WEBHOOK_SECRET = "whsec_demo_" + "0" * 24

# (amount in Stripe units, currency, settlement currency, exchange rate, customer index or None, billing e-mail)
CHARGES: list[tuple[int, str, str | None, str | None, int | None, str | None]] = [
    (2500, "eur", None, None, 0, None),
    (1999, "eur", None, None, 1, None),
    (4200, "eur", None, None, 0, None),
    (15000, "eur", None, None, None, "ines@example.org"),
    (899, "eur", None, None, None, None),
    (12000, "usd", None, None, 2, None),
    (3450, "usd", None, None, 2, None),
    (5000, "usd", "eur", "0.9215", 1, None),
    (7550, "gbp", None, None, 3, None),
    (2000, "gbp", None, None, None, "sam@example.co.uk"),
    (4800, "jpy", None, None, 4, None),
    (12800, "jpy", None, None, 4, None),
    (300, "jpy", None, None, None, None),
    (9900, "eur", None, None, 1, None),
    (650, "eur", None, None, None, None),
    (250000, "isk", None, None, 5, None),
    (18000, "sek", None, None, None, "lina@example.se"),
]
CUSTOMERS: list[dict[str, str | None]] = [
    {"name": "Ada Lovelace", "email": "ada@example.org"},
    {"name": "Brasserie Nord BV", "email": "ap@brasserie-nord.example"},
    {"name": "Grace Hopper", "email": "grace@example.com"},
    {"name": "Alan Turing", "email": "alan@example.co.uk"},
    {"name": "Yamada Taro", "email": "taro@example.jp"},
    {"name": "Björk Guðmundsdóttir", "email": "bjork@example.is"},
]


def run_demo(*, json_output: bool = False, timeout: float = 60.0) -> int:
    console = Console(highlight=False, quiet=json_output)
    with tempfile.TemporaryDirectory(prefix="thred-bridge-demo-") as tmp:
        return asyncio.run(_demo(Path(tmp), console, json_output, timeout))


async def _demo(tmp: Path, console: Console, json_output: bool, timeout: float) -> int:
    started = time.perf_counter()
    world = StripeWorld(seed=7)
    async with serve_in_background(create_stripe(world, api_key=API_KEY)) as stripe_url:
        settings = Settings.model_validate(
            {
                "BRIDGE_DATABASE_URL": f"sqlite:///{tmp / 'demo.db'}",
                "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
                "BRIDGE_STRIPE_API_BASE": stripe_url,
                "BRIDGE_LOG_LEVEL": "warning",
            }
        )
        async with open_bridge(settings) as bridge:
            from thred_bridge.observe import configure_logging

            configure_logging("warning")
            business_id = str(uuid.uuid4())
            connection = await bridge.connections.add(
                NewConnection("stripe", business_id, {"api_key": API_KEY}, (WEBHOOK_SECRET,), label="demo")
            )
            console.print(
                f"[bold]thred-bridge demo[/bold]: Thred sandbox at {bridge.thred_url}, Stripe simulated at {stripe_url}"
            )
            stop = asyncio.Event()
            worker = asyncio.create_task(bridge.worker(poll=0.2).run(stop))
            async with serve_in_background(create_app(bridge)) as bridge_url:
                url = f"{bridge_url}/webhooks/stripe/{connection.id}"
                expected, deliveries = _traffic(world)
                console.print(f"sending {len(deliveries)} signed webhooks ({len(expected)} charges) to {url}")
                codes = await _deliver(url, deliveries)
                synced = await _wait_synced(bridge, connection.id, timeout)
            stop.set()
            await worker
            books = await _books(bridge, business_id)
    elapsed = time.perf_counter() - started
    ok = synced and _matches(books, expected)
    if json_output:
        print_json({"ok": ok, "deliveries": codes, "payments": books, "seconds": round(elapsed, 2)})
    else:
        _render(console, books, codes, ok, elapsed)
    return 0 if ok else 1


def _traffic(world: StripeWorld) -> tuple[dict[str, Money], list[tuple[bytes, dict[str, str]]]]:
    """The charges, and their signed deliveries: duplicated, doubled by event kind, shuffled."""
    rng = random.Random(11)
    customers = [world.add_customer(name=c["name"], email=c["email"]) for c in CUSTOMERS]
    expected: dict[str, Money] = {}
    events: list[dict[str, Any]] = []
    for i, (amount, currency, settle, rate, cust, email) in enumerate(CHARGES):
        charge = world.add_charge(
            amount, currency, settlement_currency=settle, exchange_rate=rate,
            customer=customers[cust] if cust is not None else None, billing_email=email,
            description=f"Order #{1001 + i}",
        )  # fmt: skip
        bt = world.balance_transaction_of(charge)
        expected[charge["id"]] = from_stripe(bt["amount"], bt["currency"])
        events.append(world.event("charge.succeeded", charge))
        if i % 3 == 0:
            events.append(world.event("payment_intent.succeeded", world.payment_intent_of(charge)))
    events.append(world.event("customer.created", customers[0]))  # stored, counted as ignored
    deliveries = [world.signed_delivery(e, WEBHOOK_SECRET) for e in events]
    deliveries += rng.sample(deliveries, 3)  # Stripe delivers some events twice
    rng.shuffle(deliveries)
    return expected, deliveries


async def _deliver(url: str, deliveries: list[tuple[bytes, dict[str, str]]]) -> dict[int, int]:
    codes: dict[int, int] = defaultdict(int)
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(*(client.post(url, content=b, headers=h) for b, h in deliveries))
    for answer in answers:
        codes[answer.status_code] += 1
    return dict(codes)


async def _wait_synced(bridge: Bridge, connection_id: str, timeout: float) -> bool:
    connection = await bridge.connections.get(connection_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await bridge.connections.status(connection)
        if status.waiting == 0 and status.records_waiting == 0:
            return status.failed == 0
        await asyncio.sleep(0.1)
    return False


async def _books(bridge: Bridge, business_id: str) -> list[dict[str, Any]]:
    assert bridge.thred is not None
    customers = {c["id"]: c async for c in bridge.thred.list(business_id, "customer")}
    rows = []
    async for p in bridge.thred.list(business_id, "payment"):
        customer = customers.get(p.get("customer_id", ""), {})
        rows.append(
            {
                "external_id": p["external_id"],
                "customer": customer.get("individual_name") or customer.get("company_name") or "",
                "currency": p["currency"],
                "amount_cents": p["total_amount_cents"],
                "fee_cents": p.get("processing_fee_cents", 0),
                "thred_id": p["id"],
            }
        )
    return sorted(rows, key=lambda r: (r["currency"], r["external_id"]))


def _matches(books: list[dict[str, Any]], expected: dict[str, Money]) -> bool:
    got = {r["external_id"]: Money(r["amount_cents"], r["currency"]) for r in books}
    return got == {f"stripe_{k}": v for k, v in expected.items()}


def _render(console: Console, books: list[dict[str, Any]], codes: dict[int, int], ok: bool, elapsed: float) -> None:
    table = Table(title="Invoice payments in Thred", show_lines=False)
    for column in ("external id", "customer", "amount", "Stripe fee", "Thred id"):
        table.add_column(column, justify="right" if column in ("amount", "Stripe fee") else "left")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in books:
        paid, fee = Money(r["amount_cents"], r["currency"]), Money(r["fee_cents"], r["currency"])
        table.add_row(r["external_id"], r["customer"], paid.format(), fee.format(), r["thred_id"][:8] + "…")
        t = totals[r["currency"]]
        t[0], t[1], t[2] = t[0] + 1, t[1] + paid.minor, t[2] + fee.minor
    console.print(table)
    summary = Table(title="Totals per currency")
    for column in ("currency", "payments", "gross", "fees", "net"):
        summary.add_column(column, justify="right")
    for currency, (n, gross, fees) in sorted(totals.items()):
        summary.add_row(currency, str(n), Money(gross, currency).format(), Money(fees, currency).format(),
                        Money(gross - fees, currency).format())  # fmt: skip
    console.print(summary)
    console.print(f"webhook answers: {', '.join(f'{n}× {c}' for c, n in sorted(codes.items()))}")
    verdict = "[green]every charge landed once, to the cent[/green]" if ok else "[red]the books do not match[/red]"
    console.print(f"{verdict} ({elapsed:.1f} s)")
