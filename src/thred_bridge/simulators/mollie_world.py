"""The simulated Mollie's state: :class:`MollieWorld`, one organisation with one website profile and
one primary balance.

Payments move through Mollie's statuses (``open`` → ``paid``/``authorized``/``failed``/``canceled``/
``expired``); refunds, chargebacks and captures hang off a payment and update its ``amountRefunded``,
``amountChargedBack`` and ``amountCaptured``; every movement of money writes a balance transaction
(``resultAmount = initialAmount + deductions``, deductions negative); :meth:`MollieWorld.settle` pays out
what is in the balance as a settlement with ``periods`` revenue and costs (4 decimals) whose ``amount`` is
what reaches the bank (PROCESSORS.md §3.3, §4 fact 19).

Written apart from ``processors/mollie`` (amounts, signatures), so a mistake in the bridge's Mollie code is
not mirrored by the stand-in it is tested against. Amounts come in as integer minor units and are written
as Mollie does: decimal strings in major units.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from thred_bridge.simulators.common import Fault

Json = dict[str, Any]

_EXPONENTS = {"JPY": 0, "ISK": 0, "KRW": 0, "CLP": 0, "VND": 0, "HUF": 2, "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3}
VAT_RATE = Decimal("0.21")
"""VAT Mollie charges on its costs in the simulation (Dutch 21 %)."""

RATES: dict[str, tuple[str, str]] = {
    "ideal": ("0.29", "0"),
    "creditcard": ("0.25", "1.8"),
    "bancontact": ("0.39", "0"),
    "paypal": ("0.10", "0"),
    "directdebit": ("0.25", "0"),
    "refund": ("0.25", "0"),
    "chargeback": ("10.00", "0"),
}
"""Method → (fixed fee in major units, percentage): what the settlement's ``costs`` are made of."""

DESCRIPTIONS = {
    "ideal": "iDEAL",
    "creditcard": "Credit card",
    "bancontact": "Bancontact",
    "paypal": "PayPal",
    "directdebit": "SEPA Direct Debit",
    "refund": "Refunds",
    "chargeback": "Chargebacks",
}
DOCS = "https://docs.mollie.com/reference"


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def amount(minor: int, currency: str, places: int | None = None) -> Json:
    """Minor units → Mollie's ``{"currency", "value"}`` (``places`` decimals; default the ISO exponent)."""
    exp = exponent(currency)
    value = Decimal(minor).scaleb(-exp)
    return {"currency": currency.upper(), "value": f"{value:.{exp if places is None else places}f}"}


def exact(value: Decimal, currency: str) -> Json:
    """An exact major-unit Decimal as a 4-decimal Mollie amount (settlement periods)."""
    return {"currency": currency.upper(), "value": f"{value.quantize(Decimal('0.0001'), ROUND_HALF_EVEN):.4f}"}


def minor_of(value: Json) -> int:
    """Mollie's amount object → minor units (the simulator's own amounts are always exact)."""
    return int(Decimal(value["value"]).scaleb(exponent(value["currency"])))


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the simulator answered."""

    method: str
    path: str
    query: str
    status: int


class MollieWorld:
    """Mollie's state, and helpers that change it as Mollie would. Reads return copies."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        clock: Callable[[], int] | None = None,
        currency: str = "EUR",
        merchant_number: str = "1234567",
        mode: str = "test",
    ) -> None:
        self._rng = random.Random(seed)
        self.clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self.currency = currency.upper()
        self.mode = mode
        self.merchant_number = merchant_number
        self.profile_id = self.new_id("pfl", 10)
        self.objects: dict[str, Json] = {}
        """Every object by id, in creation order (payments, refunds, chargebacks, captures, settlements, …)."""
        self.balance: Json = {
            "resource": "balance",
            "id": self.new_id("bal", 10),
            "mode": mode,
            "createdAt": iso(self.clock()),
            "currency": self.currency,
            "status": "active",
            "transferFrequency": "daily",
            "transferThreshold": amount(0, self.currency),
            "transferReference": "Mollie payout",
            "transferDestination": {
                "type": "bank-account",
                "beneficiaryName": "Merchant",
                "bankAccount": "NL55INGB0000000000",
            },
        }
        self.transactions: list[Json] = []
        self._settle_at: dict[str, int] = {}  # payment → what it settles for, in the balance currency
        self._unsettled: list[str] = []  # ids of payments, refunds, chargebacks waiting for a settlement
        self._settled_per_month: dict[str, int] = {}
        self._faults: list[Fault] = []
        self.requests: list[SeenRequest] = []

    # ------------------------------------------------------------------------------------------ basics

    def new_id(self, prefix: str, length: int = 10) -> str:
        alphabet = string.ascii_letters + string.digits
        return f"{prefix}_{''.join(self._rng.choice(alphabet) for _ in range(length))}"

    def get(self, object_id: str) -> Json | None:
        """A copy of the stored object (without ``_embedded``), or None."""
        found = self.objects.get(object_id)
        return copy.deepcopy(found) if found is not None else None

    def listed(self, resource: str, **where: Any) -> list[Json]:
        """Copies of every ``resource`` object whose fields equal ``where``, newest first (Mollie's order)."""
        found = [
            o
            for o in self.objects.values()
            if o["resource"] == resource and all(o.get(k) == v for k, v in where.items())
        ]
        return [copy.deepcopy(o) for o in reversed(found)]

    def _live(self, object_id: str, resource: str) -> Json:
        found = self.objects.get(object_id)
        if found is None or found["resource"] != resource:
            raise KeyError(f"no {resource} {object_id}")
        return found

    def _links(self, path: str, **more: str) -> Json:
        links: Json = {"self": {"href": f"https://api.mollie.com/v2/{path}", "type": "application/hal+json"}}
        for name, target in more.items():
            links[name] = {"href": f"https://api.mollie.com/v2/{target}", "type": "application/hal+json"}
        return links

    def payment_view(self, payment_id: str, embed: Iterable[str] = ()) -> Json:
        """The payment as ``GET /v2/payments/{id}?embed=…`` shows it."""
        payment = copy.deepcopy(self._live(payment_id, "payment"))
        embedded = {}
        for name in embed:
            resource = {"refunds": "refund", "chargebacks": "chargeback", "captures": "capture"}.get(name)
            if resource is not None:
                found = self.listed(resource, paymentId=payment_id)
                if found:
                    embedded[name] = list(reversed(found))
        if embedded:
            payment["_embedded"] = embedded
        return payment

    # ------------------------------------------------------------------------------------------ payments

    def create_payment(
        self,
        minor: int,
        currency: str | None = None,
        *,
        method: str = "ideal",
        description: str | None = None,
        email: str | None = None,
        name: str | None = None,
        customer_id: str | None = None,
        metadata: Json | None = None,
        settlement_minor: int | None = None,
        capture_mode: str = "automatic",
    ) -> Json:
        """An ``open`` payment of ``minor`` units of ``currency`` (default the balance currency).

        ``settlement_minor`` (in the balance currency) is what Mollie will settle for a payment in another
        currency; it is required then. ``method="paypal"`` is not settled by Mollie (no ``settlementAmount``).
        """
        code = (currency or self.currency).upper()
        if minor <= 0:
            raise ValueError("amount must be positive")
        if (code != self.currency) != (settlement_minor is not None) and method != "paypal":
            raise ValueError("settlement_minor is required exactly when the currency is not the balance's")
        payment_id = self.new_id("tr")
        at = self.clock()
        payment: Json = {
            "resource": "payment",
            "id": payment_id,
            "mode": self.mode,
            "createdAt": iso(at),
            "amount": amount(minor, code),
            "description": description or f"Order {payment_id[3:9]}",
            "method": method,
            "metadata": metadata,
            "status": "open",
            "isCancelable": False,
            "expiresAt": iso(at + 900),
            "profileId": self.profile_id,
            "sequenceType": "oneoff",
            "redirectUrl": "https://webshop.example.org/order/done",
            "webhookUrl": "https://webshop.example.org/payments/webhook",
            "captureMode": capture_mode,
            "_links": self._links(f"payments/{payment_id}"),
        }
        if customer_id is not None:
            payment["customerId"] = customer_id
        if email is not None or name is not None:
            given, _, family = (name or "").partition(" ")
            billing = {"email": email, "givenName": given or None, "familyName": family or None}
            payment["billingAddress"] = {k: v for k, v in billing.items() if v is not None}
        self.objects[payment_id] = payment
        self._settle_at[payment_id] = settlement_minor if settlement_minor is not None else minor
        return copy.deepcopy(payment)

    def _settlement_minor(self, payment_id: str) -> int:
        return self._settle_at[payment_id]

    def pay(self, payment_id: str) -> Json:
        """The customer paid: status ``paid``, the money is in the balance (less the payment fee)."""
        payment = self._live(payment_id, "payment")
        if payment["status"] not in ("open", "pending"):
            raise ValueError(f"payment {payment_id} is {payment['status']}, not open")
        at = self.clock()
        payment.update(status="paid", paidAt=iso(at))
        payment.pop("expiresAt", None)
        self._money_in(payment, at)
        return copy.deepcopy(payment)

    def authorize(self, payment_id: str) -> Json:
        """A ``captureMode: manual`` payment is authorised: nothing in the balance until captured."""
        payment = self._live(payment_id, "payment")
        at = self.clock()
        payment.update(
            status="authorized", authorizedAt=iso(at), amountCaptured=amount(0, payment["amount"]["currency"])
        )
        return copy.deepcopy(payment)

    def capture(self, payment_id: str, minor: int | None = None) -> Json:
        """Capture (all of, by default) an authorised payment: a ``cpt_…`` capture; the payment is ``paid``."""
        payment = self._live(payment_id, "payment")
        if payment["status"] != "authorized":
            raise ValueError(f"payment {payment_id} is {payment['status']}, not authorized")
        whole = minor_of(payment["amount"])
        minor = whole if minor is None else minor
        if not 0 < minor <= whole:
            raise ValueError(f"cannot capture {minor} of {whole}")
        at = self.clock()
        settled = self._settlement_minor(payment_id) * minor // whole
        self._settle_at[payment_id] = settled
        capture_id = self.new_id("cpt")
        capture: Json = {
            "resource": "capture",
            "id": capture_id,
            "mode": self.mode,
            "amount": amount(minor, payment["amount"]["currency"]),
            "settlementAmount": amount(settled, self.currency),
            "status": "succeeded",
            "paymentId": payment_id,
            "createdAt": iso(at),
            "_links": self._links(f"payments/{payment_id}/captures/{capture_id}", payment=f"payments/{payment_id}"),
        }
        self.objects[capture_id] = capture
        payment.update(status="paid", paidAt=iso(at), amountCaptured=amount(minor, payment["amount"]["currency"]))
        self._money_in(payment, at)
        return copy.deepcopy(capture)

    def _money_in(self, payment: Json, at: int) -> None:
        currency = payment["amount"]["currency"]
        payment["amountRefunded"] = amount(0, currency)
        paid = minor_of(payment.get("amountCaptured") or payment["amount"])
        payment["amountRemaining"] = amount(paid, currency)
        if payment["method"] == "paypal":
            return  # not settled by Mollie: no settlementAmount, nothing in the balance
        settled = self._settlement_minor(payment["id"])
        payment["settlementAmount"] = amount(settled, self.currency)
        fee = self._fee(payment["method"], settled)
        captures = self.listed("capture", paymentId=payment["id"])
        if captures:  # Mollie books a capture of an authorised payment as a ``capture`` transaction
            context = {"paymentId": payment["id"], "captureId": captures[0]["id"]}
            self._transaction("capture", settled, -fee, at, context, fees=fee)
        else:
            self._transaction("payment", settled, -fee, at, {"paymentId": payment["id"]}, fees=fee)
        self._unsettled.append(payment["id"])

    def fail(self, payment_id: str, status: str = "failed") -> Json:
        """An open payment ends without money: ``failed``, ``canceled`` or ``expired``."""
        if status not in ("failed", "canceled", "expired"):
            raise ValueError(f"{status!r} is not a final status without money")
        payment = self._live(payment_id, "payment")
        payment.update(status=status, **{f"{status}At": iso(self.clock())})
        payment.pop("expiresAt", None)
        return copy.deepcopy(payment)

    def _fee(self, method: str, minor: int) -> int:
        """The deduction Mollie takes as the money moves: the same tariff as the settlement's costs (fixed +
        percentage of ``minor``, plus VAT), rounded half-even to a "real" amount at once. The settlement's
        costs add the 4-decimal figures up instead, so the two differ by the rounding (Mollie settles the
        difference on its invoice)."""
        fixed, percentage = RATES.get(method, RATES["ideal"])
        exp = exponent(self.currency)
        net = Decimal(fixed).scaleb(exp) + Decimal(minor) * Decimal(percentage) / 100
        return int((net * (1 + VAT_RATE)).quantize(Decimal(1), ROUND_HALF_EVEN))

    # ------------------------------------------------------------------------------------------ refunds

    def refund(
        self, payment_id: str, minor: int | None = None, *, status: str = "pending", description: str | None = None
    ) -> Json:
        """Refund ``minor`` units (default: what remains) of a paid payment; ``settlementAmount`` is negative."""
        payment = self._live(payment_id, "payment")
        if payment["status"] != "paid":
            raise ValueError(f"payment {payment_id} is {payment['status']}, not paid")
        currency = payment["amount"]["currency"]
        remaining = minor_of(payment["amountRemaining"])
        minor = remaining if minor is None else minor
        if not 0 < minor <= remaining:
            raise ValueError(f"cannot refund {minor} of payment {payment_id} ({remaining} remaining)")
        if status not in ("queued", "pending", "processing", "refunded"):
            raise ValueError(f"a new refund is queued, pending, processing or refunded, not {status!r}")
        at = self.clock()
        refund_id = self.new_id("re")
        paid = minor_of(payment.get("amountCaptured") or payment["amount"])
        settled = self._settlement_minor(payment_id) * minor // paid if payment["method"] != "paypal" else 0
        refund: Json = {
            "resource": "refund",
            "id": refund_id,
            "mode": self.mode,
            "description": description or "Refund",
            "amount": amount(minor, currency),
            "settlementAmount": amount(-settled, self.currency),
            "status": status,
            "metadata": None,
            "paymentId": payment_id,
            "createdAt": iso(at),
            "_links": self._links(f"payments/{payment_id}/refunds/{refund_id}", payment=f"payments/{payment_id}"),
        }
        self.objects[refund_id] = refund
        payment["amountRefunded"] = amount(minor_of(payment["amountRefunded"]) + minor, currency)
        payment["amountRemaining"] = amount(remaining - minor, currency)
        if settled:
            fee = self._fee("refund", 0)
            self._transaction("refund", -settled, -fee, at, {"paymentId": payment_id, "refundId": refund_id}, fees=fee)
            self._unsettled.append(refund_id)
        return copy.deepcopy(refund)

    def set_refund_status(self, refund_id: str, status: str) -> Json:
        """Move a refund on (``processing``, ``refunded``), or end it (``failed``, ``canceled``: the money
        comes back to the balance and to the payment's refundable amount)."""
        refund = self._live(refund_id, "refund")
        if refund["status"] in ("refunded", "failed", "canceled"):
            raise ValueError(f"refund {refund_id} is already {refund['status']}")
        refund["status"] = status
        if status in ("failed", "canceled"):
            payment = self._live(refund["paymentId"], "payment")
            currency = payment["amount"]["currency"]
            minor = minor_of(refund["amount"])
            payment["amountRefunded"] = amount(minor_of(payment["amountRefunded"]) - minor, currency)
            payment["amountRemaining"] = amount(minor_of(payment["amountRemaining"]) + minor, currency)
            if refund_id in self._unsettled:
                self._unsettled.remove(refund_id)
                settled = -minor_of(refund["settlementAmount"])
                self._transaction(
                    "returned-refund", settled, 0, self.clock(), {"paymentId": payment["id"], "refundId": refund_id}
                )
        return copy.deepcopy(refund)

    # ------------------------------------------------------------------------------------------ chargebacks

    def chargeback(self, payment_id: str, minor: int | None = None, *, reason: tuple[str, str] | None = None) -> Json:
        """A chargeback of (all of, by default) a paid payment; ``settlementAmount`` is negative."""
        payment = self._live(payment_id, "payment")
        if payment["status"] != "paid":
            raise ValueError(f"payment {payment_id} is {payment['status']}, not paid")
        currency = payment["amount"]["currency"]
        paid = minor_of(payment.get("amountCaptured") or payment["amount"])
        minor = paid if minor is None else minor
        at = self.clock()
        chargeback_id = self.new_id("chb", 6)
        settled = self._settlement_minor(payment_id) * minor // paid
        chargeback: Json = {
            "resource": "chargeback",
            "id": chargeback_id,
            "amount": amount(minor, currency),
            "settlementAmount": amount(-settled, self.currency),
            "createdAt": iso(at),
            "reversedAt": None,
            "paymentId": payment_id,
            "_links": self._links(
                f"payments/{payment_id}/chargebacks/{chargeback_id}", payment=f"payments/{payment_id}"
            ),
        }
        if reason is not None:
            chargeback["reason"] = {"code": reason[0], "description": reason[1]}
        self.objects[chargeback_id] = chargeback
        charged_back = minor_of(payment["amountChargedBack"]) if "amountChargedBack" in payment else 0
        payment["amountChargedBack"] = amount(charged_back + minor, currency)
        fee = self._fee("chargeback", 0)
        self._transaction(
            "chargeback", -settled, -fee, at, {"paymentId": payment_id, "chargebackId": chargeback_id}, fees=fee
        )
        self._unsettled.append(chargeback_id)
        return copy.deepcopy(chargeback)

    def reverse_chargeback(self, chargeback_id: str) -> Json:
        """The chargeback is reversed: ``reversedAt`` is set and the money returns to the balance."""
        chargeback = self._live(chargeback_id, "chargeback")
        at = self.clock()
        chargeback["reversedAt"] = iso(at)
        self._transaction(
            "chargeback-reversal", -minor_of(chargeback["settlementAmount"]), 0, at,
            {"paymentId": chargeback["paymentId"], "chargebackId": chargeback_id},
        )  # fmt: skip
        return copy.deepcopy(chargeback)

    # ------------------------------------------------------------------------------------------ balance

    def _transaction(
        self, kind: str, initial: int, deductions: int, at: int, context: Json, *, fees: int | None = None
    ) -> Json:
        tx: Json = {
            "resource": "balance-transaction",
            "id": self.new_id("baltr"),
            "type": kind,
            "resultAmount": amount(initial + deductions, self.currency),
            "initialAmount": amount(initial, self.currency),
            "deductions": amount(deductions, self.currency),
            "createdAt": iso(at),
            "context": context,
        }
        if fees is not None:
            tx["deductionDetails"] = {"fees": amount(-fees, self.currency)}
        self.transactions.append(tx)
        return tx

    def balance_view(self) -> Json:
        """The primary balance as ``GET /v2/balances/primary`` shows it: everything not yet paid out is
        available (the simulation has no settlement delay)."""
        held = sum(minor_of(tx["resultAmount"]) for tx in self.transactions)
        view = copy.deepcopy(self.balance)
        view.update(availableAmount=amount(held, self.currency), pendingAmount=amount(0, self.currency))
        view["_links"] = self._links(f"balances/{self.balance['id']}")
        return view

    def deducted(self, payment_id: str) -> int:
        """What Mollie deducted (minor units, positive) as the payment's money came in: the ``deductions``
        of its ``payment`` or ``capture`` transactions."""
        return sum(
            -minor_of(tx["deductions"])
            for tx in self.transactions
            if tx["type"] in ("payment", "capture") and tx["context"].get("paymentId") == payment_id
        )

    # ------------------------------------------------------------------------------------------ settlements

    def settle(self, *, status: str = "paidout", reference: str | None = None) -> Json:
        """Settle everything waiting in the balance: its payments, refunds and chargebacks get this
        ``settlementId``; ``periods`` hold revenue and costs per calendar month (4 decimals); ``amount`` =
        revenue − costs (rounded half-even once), what reaches the bank."""
        ids, self._unsettled = self._unsettled, []
        if not ids:
            raise ValueError("nothing to settle")
        at = self.clock()
        settlement_id = self.new_id("stl")
        revenue: dict[tuple[str, str], list[int]] = {}
        costs: dict[tuple[str, str], list[int]] = {}
        total = 0
        for object_id in ids:
            obj = self.objects[object_id]
            obj["settlementId"] = settlement_id
            when = obj.get("paidAt") or obj["createdAt"]
            month = when[:7]
            settled = minor_of(obj["settlementAmount"])
            group: str = obj["method"] if obj["resource"] == "payment" else obj["resource"]
            revenue.setdefault((month, group), []).append(settled)
            costs.setdefault((month, group), []).append(abs(settled))
            total += settled
        periods: Json = {}
        exp = exponent(self.currency)
        cost_total = Decimal(0)
        for month, group in sorted(revenue):
            year, mm = month.split("-")
            period = periods.setdefault(year, {}).setdefault(mm, {"revenue": [], "costs": [], "invoiceId": None})
            values = revenue[(month, group)]
            gross = Decimal(sum(values)).scaleb(-exp)
            label = DESCRIPTIONS.get(group, group)
            period["revenue"].append(
                {"description": label, "method": group, "count": len(values), "amountNet": exact(gross, self.currency),
                 "amountVat": None, "amountGross": exact(gross, self.currency)}
            )  # fmt: skip
            fixed, percentage = RATES.get(group, RATES["ideal"])
            net = (
                Decimal(fixed) * len(values)
                + Decimal(sum(costs[(month, group)])).scaleb(-exp) * Decimal(percentage) / 100
            )
            net = net.quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
            vat = (net * VAT_RATE).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
            cost_total += net + vat
            period["costs"].append(
                {"description": label, "method": group, "count": len(values),
                 "rate": {"fixed": exact(Decimal(fixed), self.currency), "percentage": percentage},
                 "amountNet": exact(net, self.currency), "amountVat": exact(vat, self.currency),
                 "amountGross": exact(net + vat, self.currency)}
            )  # fmt: skip
        cost_minor = int(cost_total.scaleb(exp).quantize(Decimal(1), ROUND_HALF_EVEN))
        paid_out = total - cost_minor
        month_key = iso(at)[2:4] + iso(at)[5:7]
        sequence = self._settled_per_month[month_key] = self._settled_per_month.get(month_key, 0) + 1
        settlement: Json = {
            "resource": "settlement",
            "id": settlement_id,
            "reference": reference or f"{self.merchant_number}.{month_key}.{sequence:02d}",
            "createdAt": iso(at),
            "settledAt": iso(at) if status == "paidout" else None,
            "status": status,
            "amount": amount(paid_out, self.currency),
            "balanceId": self.balance["id"],
            "periods": periods,
            "_links": self._links(
                f"settlements/{settlement_id}",
                payments=f"settlements/{settlement_id}/payments",
                refunds=f"settlements/{settlement_id}/refunds",
                chargebacks=f"settlements/{settlement_id}/chargebacks",
                captures=f"settlements/{settlement_id}/captures",
            ),
        }
        self.objects[settlement_id] = settlement
        self._transaction(
            "outgoing-transfer", -paid_out, 0, at, {"settlementId": settlement_id, "transferId": settlement_id}
        )
        return copy.deepcopy(settlement)

    def set_settlement_status(self, settlement_id: str, status: str) -> Json:
        settlement = self._live(settlement_id, "settlement")
        settlement["status"] = status
        if status == "paidout" and settlement.get("settledAt") is None:
            settlement["settledAt"] = iso(self.clock())
        return copy.deepcopy(settlement)

    def settled_in(self, settlement_id: str, resource: str) -> list[Json]:
        """Every ``resource`` (payment, refund, chargeback, capture) a settlement settled, newest first."""
        if resource == "capture":
            paid = {p["id"] for p in self.listed("payment", settlementId=settlement_id)}
            return [c for c in self.listed("capture") if c["paymentId"] in paid]
        return self.listed(resource, settlementId=settlement_id)

    # ------------------------------------------------------------------------------------------ webhooks

    @staticmethod
    def ping(object_id: str) -> tuple[bytes, dict[str, str]]:
        """A classic webhook call about ``object_id``: form body ``id=…``, unsigned."""
        return f"id={object_id}".encode("ascii"), {"Content-Type": "application/x-www-form-urlencoded"}

    def event(self, type: str, entity: Json, *, embed: bool = True) -> Json:
        """A next-gen event about ``entity`` (``_embedded.entity`` its snapshot unless ``embed=False``)."""
        event: Json = {
            "resource": "event",
            "id": self.new_id("event", 16),
            "type": type,
            "entityId": entity["id"],
            "createdAt": iso(self.clock()),
            "_links": {"documentation": {"href": f"{DOCS}/webhooks", "type": "text/html"}},
        }
        if embed:
            event["_embedded"] = {"entity": copy.deepcopy(entity)}
        return event

    @staticmethod
    def signed(event: Json, secret: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a next-gen delivery: JSON, ``X-Mollie-Signature: sha256=<hex HMAC>``."""
        body = json.dumps(event).encode("utf-8")
        mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "X-Mollie-Signature": f"sha256={mac}"}

    # ------------------------------------------------------------------------------------------ faults

    def fail_next(self, path_contains: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next ``times`` requests whose path contains ``path_contains`` answer ``status``."""
        self._faults.append(Fault(path_contains, status, times, retry_after))

    def take_fault(self, path: str) -> tuple[int, int | None] | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.path_contains in path:
                fault.remaining -= 1
                return fault.status, fault.retry_after
        return None
