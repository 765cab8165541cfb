"""`thred-bridge demo`: the whole product on embedded defaults, with a month of simulated business on Stripe,
Adyen and Mollie.

A temporary SQLite database, the Thred sandbox, the simulated Stripe and Mollie APIs and an Adyen report host,
and the bridge's own web server and worker, all on loopback. Each processor's signed webhooks (demo_world.py:
charges in several currencies, a partial refund, disputes lost and won, an Adyen batch with its settlement
report, a Mollie settlement; duplicated and shuffled) go to the bridge over HTTP; the demo waits until every
connection is synced, then prints what landed in Thred: payments, refunds and each payout with its gross,
refunds, fees, net and variance, as Thred computes them. ``ok`` only when every delivery was answered 2xx,
nothing failed, every payment and payout is in Thred as the processor made it, and every variance is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from thred_bridge import testing
from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.money import Money
from thred_bridge.entrypoints.demo_world import (
    ADYEN_MERCHANT,
    Traffic,
    adyen_setup,
    adyen_traffic,
    mollie_traffic,
    stripe_traffic,
)
from thred_bridge.entrypoints.output import print_json
from thred_bridge.entrypoints.web import create_app
from thred_bridge.observe import configure_logging
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.mollie_api import MollieWorld
from thred_bridge.simulators.mollie_api import create_app as create_mollie
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe

STRIPE_KEY = "sk_test_demo_" + "0" * 24
PROCESSORS = ("stripe", "adyen", "mollie")


@dataclass
class Simulated:
    """The processors' side: their APIs on loopback, and each one's traffic."""

    settings: dict[str, str]
    connections: list[NewConnection]
    traffic: list[Traffic]


def run_demo(*, json_output: bool = False, timeout: float = 60.0) -> int:
    console = Console(highlight=False, quiet=json_output)
    with tempfile.TemporaryDirectory(prefix="thred-bridge-demo-") as tmp:
        return asyncio.run(_demo(Path(tmp), console, json_output, timeout))


async def _demo(tmp: Path, console: Console, json_output: bool, timeout: float) -> int:
    started = time.perf_counter()
    business_id = str(uuid.uuid4())
    async with _processors(business_id) as simulated:
        settings = Settings.model_validate(
            {
                "BRIDGE_DATABASE_URL": f"sqlite:///{tmp / 'demo.db'}",
                "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
                "BRIDGE_LOG_LEVEL": "warning",
                **simulated.settings,
            }
        )
        configure_logging("warning")
        async with open_bridge(settings) as bridge:
            connections = {c.processor: await bridge.connections.add(c) for c in simulated.connections}
            console.print(f"[bold]thred-bridge demo[/bold]: Thred sandbox at {bridge.thred_url}")
            stop = asyncio.Event()
            worker = asyncio.create_task(bridge.worker(poll=0.2).run(stop))
            async with serve_in_background(create_app(bridge)) as bridge_url:
                codes = {}
                for traffic in simulated.traffic:
                    url = f"{bridge_url}/webhooks/{traffic.processor}/{connections[traffic.processor].id}"
                    console.print(f"{traffic.processor}: {len(traffic.deliveries)} signed webhooks to {url}")
                    codes[traffic.processor] = await _deliver(url, traffic)
                failures = await _wait_synced(bridge, [c.id for c in connections.values()], timeout)
            stop.set()
            await worker
            books = await _books(bridge, business_id)
    problems = failures + _problems(books, simulated.traffic, codes)
    elapsed = time.perf_counter() - started
    ok = not problems
    if json_output:
        print_json({"ok": ok, **books, "deliveries": codes, "problems": problems, "seconds": round(elapsed, 2)})
    else:
        _render(console, books, codes, problems, elapsed)
    return 0 if ok else 1


@contextlib.asynccontextmanager
async def _processors(business_id: str) -> AsyncIterator[Simulated]:
    """Stripe's and Mollie's APIs and Adyen's report host on loopback, each world's traffic, and the three
    connections a merchant would add (fresh webhook secrets; the simulators' test keys)."""
    rng = random.Random(11)
    stripe_world, mollie_world = StripeWorld(seed=7), MollieWorld(seed=5)
    stripe_secret, mollie_secret = "whsec_" + secrets.token_hex(16), secrets.token_urlsafe(24)
    adyen = adyen_setup()
    mollie_api = create_mollie(
        mollie_world, api_key=testing.MOLLIE_API_KEY, organization_token=testing.MOLLIE_ORGANIZATION_TOKEN
    )
    async with (
        serve_in_background(create_stripe(stripe_world, api_key=STRIPE_KEY)) as stripe_url,
        serve_in_background(mollie_api) as mollie_url,
        testing.report_host(*adyen.report_user) as reports,
    ):
        traffic = [
            stripe_traffic(stripe_world, stripe_secret),
            adyen_traffic(adyen, lambda name, content: reports.put(name, content, merchant_account=ADYEN_MERCHANT)),
            mollie_traffic(mollie_world, mollie_secret),
        ]
        for t in traffic:
            t.shuffled(rng, repeats=3)
        adyen_credentials = {
            "capture": "delayed", "settlement_currency": "EUR",
            "webhook_user": adyen.webhook_auth[0], "webhook_password": adyen.webhook_auth[1],
            "report_user": adyen.report_user[0], "report_password": adyen.report_user[1],
        }  # fmt: skip
        mollie_credentials = {
            "api_key": testing.MOLLIE_API_KEY, "organization_token": testing.MOLLIE_ORGANIZATION_TOKEN
        }  # fmt: skip
        yield Simulated(
            {
                "BRIDGE_STRIPE_API_BASE": stripe_url,
                "BRIDGE_MOLLIE_API_BASE": mollie_url,
                "BRIDGE_ADYEN_REPORT_HOSTS": reports.host,
            },
            [
                NewConnection("stripe", business_id, {"api_key": STRIPE_KEY}, (stripe_secret,), label="demo"),
                NewConnection(
                    "adyen", business_id, adyen_credentials, (adyen.hmac_key,), account=ADYEN_MERCHANT, label="demo"
                ),
                NewConnection("mollie", business_id, mollie_credentials, (mollie_secret,), label="demo"),
            ],
            traffic,
        )


async def _deliver(url: str, traffic: Traffic) -> dict[str, int]:
    """POST every delivery, a few at a time as processors do; the count of each answer's status."""
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(delivery: testing.Delivery) -> int:
            async with gate:
                return (await client.post(url, content=delivery.body, headers=delivery.headers)).status_code

        answers = await asyncio.gather(*(post(d) for d in traffic.deliveries))
    return {str(code): n for code, n in sorted(Counter(answers).items())}


async def _wait_synced(bridge: Bridge, connection_ids: list[str], timeout: float) -> list[str]:
    """Wait until nothing waits on any connection; what failed (or is still waiting at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [await bridge.connections.status(await bridge.connections.get(c)) for c in connection_ids]
        if all(s.waiting == 0 and s.records_waiting == 0 for s in statuses):
            return [f"{s.processor}: {kind} failed: {error}" for s in statuses for _id, kind, error in s.failures]
        if time.monotonic() > deadline:
            return [f"{s.processor}: not synced after {timeout:.0f} s" for s in statuses if s.waiting]
        bridge.events_ready.set()
        await asyncio.sleep(0.1)


def _processor(external_id: str) -> str:
    return external_id.split("_", 1)[0]


async def _books(bridge: Bridge, business_id: str) -> dict[str, list[dict[str, Any]]]:
    """What Thred holds for the business: payments, refund payments, and payouts with Thred's own figures."""
    assert bridge.thred is not None
    customers = {c["id"]: c async for c in bridge.thred.list(business_id, "customer")}
    payments = []
    async for p in bridge.thred.list(business_id, "payment"):
        customer = customers.get(p.get("customer_id", ""), {})
        payments.append(
            {
                "processor": _processor(p["external_id"]),
                "external_id": p["external_id"],
                "customer": customer.get("individual_name") or customer.get("company_name") or "",
                "currency": p["currency"],
                "amount_cents": p["total_amount_cents"],
                "fee_cents": p.get("processing_fee_cents") or 0,
                "thred_id": p["id"],
            }
        )
    refunds = []
    async for r in bridge.thred.list(business_id, "refund"):
        refunds.append(
            {
                "processor": _processor(r["external_id"]),
                "external_id": r["external_id"],
                "memo": r.get("memo") or "",
                "amount_cents": r["amount_cents"],
                "thred_id": r["id"],
            }
        )
    payouts = []
    async for held in bridge.thred.list(business_id, "payout"):
        payout = await bridge.thred.get(business_id, "payout", held["id"])  # the list may leave figures out
        payouts.append(
            {
                "processor": _processor(payout["external_id"]),
                "external_id": payout["external_id"],
                "currency": payout["currency"],
                "gross_cents": payout.get("gross_payments_amount_cents"),
                "refunds_cents": (payout.get("total_refunds_amount_cents") or 0)
                + (payout.get("additional_refunds_amount_cents") or 0),
                "fees_cents": payout.get("fee_cents"),
                "net_cents": payout.get("paid_out_amount_cents"),
                "variance_cents": payout.get("amount_variance_cents"),
                "payments": payout.get("payment_count"),
                "refund_payments": payout.get("refund_payment_count"),
                "thred_id": payout["id"],
            }
        )
    order = {p: n for n, p in enumerate(PROCESSORS)}

    def key(row: dict[str, Any]) -> tuple[int, str, str]:
        return order.get(row["processor"], len(order)), str(row.get("currency", "")), row["external_id"]

    return {
        "payments": sorted(payments, key=key),
        "refunds": sorted(refunds, key=key),
        "payouts": sorted(payouts, key=key),
    }


def _problems(
    books: dict[str, list[dict[str, Any]]], traffic: list[Traffic], codes: dict[str, dict[str, int]]
) -> list[str]:
    """Everything that keeps the books from matching the processors: refused deliveries, payments and payouts
    missing or with other amounts, payouts that do not tie out."""
    problems = [
        f"{processor}: {n} deliveries answered {code}"
        for processor, answers in codes.items()
        for code, n in answers.items()
        if not code.startswith("2")
    ]
    payments = {p["external_id"]: p["amount_cents"] for p in books["payments"]}
    payouts = {p["external_id"]: p for p in books["payouts"]}
    for t in traffic:
        for ext, amount in t.payments.items():
            if payments.get(ext) != amount:
                problems.append(f"payment {ext}: {payments.get(ext, 'missing')} in Thred, {amount} at {t.processor}")
        for ext, net in t.payouts.items():
            held = payouts.get(ext)
            if held is None or held["net_cents"] != net:
                problems.append(f"payout {ext}: {held and held['net_cents']} in Thred, {net} at {t.processor}")
    for p in books["payouts"]:
        if p["variance_cents"] != 0:
            problems.append(f"payout {p['external_id']}: variance {p['variance_cents']}")
    return problems


def _money(minor: Any, currency: str) -> str:
    return Money(minor, currency).format() if isinstance(minor, int) else "-"


def _amount(minor: Any, currency: str) -> str:
    """The amount without its currency (the table has a column for it)."""
    return f"{Money(minor, currency).to_decimal():,}" if isinstance(minor, int) else "-"


def _render(
    console: Console,
    books: dict[str, list[dict[str, Any]]],
    codes: dict[str, dict[str, int]],
    problems: list[str],
    elapsed: float,
) -> None:
    for processor in PROCESSORS:
        payments = [p for p in books["payments"] if p["processor"] == processor]
        table = Table(title=f"{processor.title()}: invoice payments in Thred")
        for column in ("external id", "customer", "amount", "fee"):
            table.add_column(column, justify="right" if column in ("amount", "fee") else "left")
        for p in payments:
            table.add_row(
                p["external_id"], p["customer"], _money(p["amount_cents"], p["currency"]),
                _money(p["fee_cents"], p["currency"]),
            )  # fmt: skip
        console.print(table)
        refunds = [r for r in books["refunds"] if r["processor"] == processor]
        if refunds:
            listed = ", ".join(f"{r['memo']} ({r['amount_cents']})" for r in refunds)
            console.print(f"refunds and chargebacks (minor units): {listed}", markup=False)
        answers = ", ".join(f"{n}× {code}" for code, n in codes.get(processor, {}).items())
        console.print(f"webhook answers: {answers}\n")
    table = Table(title="Payouts in Thred: gross − refunds − fees = net, to the cent")
    for column in ("payout", "cur", "items", "gross", "refunds", "fees", "net", "variance"):
        table.add_column(column, justify="left" if column in ("payout", "cur") else "right")
    for p in books["payouts"]:
        c = p["currency"]
        amounts = [_amount(p[k], c) for k in ("gross_cents", "refunds_cents", "fees_cents", "net_cents")]
        style = "green" if p["variance_cents"] == 0 else "red"
        variance = f"[{style}]{_amount(p['variance_cents'], c)}[/{style}]"
        table.add_row(p["external_id"], c, f"{p['payments']}+{p['refund_payments']}", *amounts, variance)
    console.print(table)
    for problem in problems:
        console.print(f"[red]{problem}[/red]", markup=True)
    verdict = (
        "[green]every payment landed once, to the cent, and every payout ties out[/green]"
        if not problems
        else "[red]the books do not match[/red]"
    )
    console.print(f"{verdict} ({elapsed:.1f} s)")
