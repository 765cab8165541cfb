"""The demo's merchant: a month of business on Stripe, Adyen and Mollie, as the processors would send it.

Each processor's world is built in its simulator (the simulated Stripe and Mollie APIs, Adyen's report host)
and comes with the signed deliveries its processor would POST to the bridge — duplicated and shuffled, as
processors deliver — and what the books must hold afterwards: every payment's amount and every payout's net.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from thred_bridge import testing
from thred_bridge.processors.stripe.currency import from_stripe
from thred_bridge.simulators.adyen_reports import SettlementReport, converted
from thred_bridge.simulators.mollie_api import MollieWorld, minor_of
from thred_bridge.simulators.stripe_api import StripeWorld


@dataclass
class Traffic:
    """One processor's deliveries and the books they must give (external id → minor units)."""

    processor: str
    deliveries: list[testing.Delivery]
    payments: dict[str, int] = field(default_factory=dict)
    payouts: dict[str, int] = field(default_factory=dict)

    def shuffled(self, rng: random.Random, repeats: int) -> None:
        """Some deliveries twice (every processor retries), and all of them out of order."""
        self.deliveries += rng.sample(self.deliveries, min(repeats, len(self.deliveries)))
        rng.shuffle(self.deliveries)


# --- Stripe ----------------------------------------------------------------------------------------------

# (amount in Stripe units, currency, settlement currency, exchange rate, customer index or None, billing e-mail)
STRIPE_CHARGES: list[tuple[int, str, str | None, str | None, int | None, str | None]] = [
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
    (250000, "isk", None, None, 5, None),
    (18000, "sek", None, None, None, "lina@example.se"),
]
STRIPE_CUSTOMERS: list[dict[str, str]] = [
    {"name": "Ada Lovelace", "email": "ada@example.org"},
    {"name": "Brasserie Nord BV", "email": "ap@brasserie-nord.example"},
    {"name": "Grace Hopper", "email": "grace@example.com"},
    {"name": "Alan Turing", "email": "alan@example.co.uk"},
    {"name": "Yamada Taro", "email": "taro@example.jp"},
    {"name": "Björk Guðmundsdóttir", "email": "bjork@example.is"},
]


def stripe_traffic(world: StripeWorld, secret: str) -> Traffic:
    """Charges in six currencies (one settled in another), a partial refund, a dispute lost and one won, and a
    payout per currency sweeping all of it."""
    customers = [world.add_customer(name=c["name"], email=c["email"]) for c in STRIPE_CUSTOMERS]
    traffic = Traffic("stripe", [])
    events: list[dict[str, Any]] = []
    charges = []
    for i, (amount, currency, settle, rate, cust, email) in enumerate(STRIPE_CHARGES):
        charge = world.add_charge(
            amount, currency, settlement_currency=settle, exchange_rate=rate,
            customer=customers[cust] if cust is not None else None, billing_email=email,
            description=f"Order #{1001 + i}",
        )  # fmt: skip
        charges.append(charge)
        bt = world.balance_transaction_of(charge)
        traffic.payments[f"stripe_{charge['id']}"] = from_stripe(bt["amount"], bt["currency"]).minor
        events.append(world.event("charge.succeeded", charge))
        if i % 3 == 0:
            events.append(world.event("payment_intent.succeeded", world.payment_intent_of(charge)))
    refund = world.refund(charges[0]["id"], 1000)
    events.append(world.event("refund.created", refund))
    lost = world.dispute(charges[3]["id"])
    events.append(world.event("charge.dispute.funds_withdrawn", lost))
    events.append(world.event("charge.dispute.closed", world.lose_dispute(lost["id"])))
    won = world.dispute(charges[5]["id"])
    events.append(world.event("charge.dispute.funds_withdrawn", won))
    reinstated = world.win_dispute(won["id"])
    events.append(world.event("charge.dispute.funds_reinstated", reinstated))
    traffic.payments[f"stripe_{won['id']}_reinstated"] = charges[5]["amount"]  # the money that came back
    for currency in sorted({c[2] or c[1] for c in STRIPE_CHARGES}):
        payout = world.payout(currency=currency)
        traffic.payouts[f"stripe_{payout['id']}"] = from_stripe(payout["amount"], currency).minor
        events.append(world.event("payout.paid", payout))
    events.append(world.event("customer.created", customers[0]))  # stored, counted as ignored
    traffic.deliveries = [testing.stripe_delivery(e, secret) for e in events]
    return traffic


# --- Adyen -----------------------------------------------------------------------------------------------

ADYEN_MERCHANT = "DemoShopEU"
ADYEN_BATCH = 42
ADYEN_REPORT = f"settlement_detail_report_batch_{ADYEN_BATCH}.csv"


@dataclass
class AdyenSetup:
    hmac_key: str
    webhook_auth: tuple[str, str]
    report_user: tuple[str, str]


def adyen_setup() -> AdyenSetup:
    """A fresh HMAC key and Basic-auth pairs, as an operator would set them in the Customer Area."""
    return AdyenSetup(
        secrets.token_hex(32).upper(),
        ("adyen-webhook", secrets.token_urlsafe(12)),
        (f"report@Company.{ADYEN_MERCHANT}", secrets.token_urlsafe(12)),
    )


def adyen_traffic(setup: AdyenSetup, report_link: Any) -> Traffic:
    """Twelve card payments captured and two more in USD (settled converted into EUR: held, then booked from
    the report at the converted amount, ``settlement_currency``), a refund and a chargeback, then payable batch
    42's settlement details report: every payment's webhooks, the modifications' and the REPORT_AVAILABLE that
    links the file.
    ``report_link(name, content)`` serves the file and answers its download URL."""
    traffic = Traffic("adyen", [])
    report = SettlementReport(batch=ADYEN_BATCH, merchant_account=ADYEN_MERCHANT, company="DemoCompany")
    items: list[dict[str, Any]] = []

    def item(code: str, psp: str, **fields: Any) -> dict[str, Any]:
        return testing.adyen_item(code, psp, merchant_account=ADYEN_MERCHANT, hmac_key=setup.hmac_key, **fields)

    psps = []
    for n in range(12):
        psp, value = f"8815{n + 1:012d}", 1500 + 725 * n
        psps.append((psp, value))
        method = "mc" if n % 3 else "visa"
        reference = f"web-{2026_0300 + n}"
        items.append(item("AUTHORISATION", psp, value=value, merchant_reference=reference, payment_method=method))
        items.append(item("CAPTURE", f"8825{n + 1:012d}", value=value, original_reference=psp))
        report.settled(psp, value, 26 + value // 100, reference=reference, method=method)
        traffic.payments[f"adyen_{psp}"] = value
    for n in range(2):  # US shoppers: processed in USD, converted into the account's EUR settlement
        psp, value, rate = f"8816{n + 1:012d}", 4900 + 1250 * n, "0.9214"
        reference = f"web-us-{n + 1}"
        items.append(item("AUTHORISATION", psp, value=value, currency="USD", merchant_reference=reference))
        items.append(item("CAPTURE", f"8826{n + 1:012d}", value=value, currency="USD", original_reference=psp))
        settled = converted(("USD", value, rate), "EUR")
        report.settled(psp, None, 30 + settled // 100, reference=reference, processed=("USD", value, rate))
        traffic.payments[f"adyen_{psp}"] = settled
    refunded, charged_back = psps[2], psps[7]
    items.append(item("REFUND", "883500000001", value=800, original_reference=refunded[0]))
    report.refunded(refunded[0], "883500000001", 800)
    items.append(item("CHARGEBACK", "884500000001", value=charged_back[1], original_reference=charged_back[0]))
    report.chargeback(charged_back[0], "884500000001", charged_back[1], fee=750)
    report.fee(312, "Transaction Fees March")
    link = report_link(ADYEN_REPORT, report.csv())
    items.append(item("REPORT_AVAILABLE", ADYEN_REPORT, value=0, reason=link, payment_method=None))
    traffic.payouts[f"adyen_{ADYEN_MERCHANT}_batch_{ADYEN_BATCH}"] = report.net_total
    traffic.deliveries = [testing.adyen_delivery([i], auth=setup.webhook_auth) for i in items]
    return traffic


# --- Mollie ----------------------------------------------------------------------------------------------


def mollie_traffic(world: MollieWorld, secret: str) -> Traffic:
    """Ten payments by iDEAL, card and Bancontact, a partial refund and a chargeback, then the settlement that
    pays them out: a call per payment, the settlement's ``payout.completed`` event and its own call."""
    traffic = Traffic("mollie", [])
    paid = []
    for n in range(10):
        made = world.create_payment(
            990 + 1250 * n, method=("ideal", "creditcard", "bancontact")[n % 3],
            email=f"customer{n % 4}@example.nl", description=f"Bestelling {5001 + n}",
        )  # fmt: skip
        world.pay(made["id"])
        paid.append(made)
        traffic.payments[f"mollie_{made['id']}"] = minor_of(made["amount"])
    world.refund(paid[1]["id"], minor_of(paid[1]["amount"]) // 2, status="refunded")
    world.chargeback(paid[6]["id"])
    settlement = world.settle()
    traffic.payouts[f"mollie_{settlement['id']}"] = minor_of(settlement["amount"])
    traffic.deliveries = [testing.mollie_ping(p["id"]) for p in paid]
    event = world.event("payout.completed", {**settlement, "settlementId": settlement["id"]})
    traffic.deliveries.append(testing.mollie_event_delivery(event, secret))
    traffic.deliveries.append(testing.mollie_ping(settlement["id"]))
    return traffic
