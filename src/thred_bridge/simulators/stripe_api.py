"""A simulated Stripe API: in-memory charges, balance transactions, customers and PaymentIntents
(:class:`StripeWorld`) served over HTTP with Stripe's routes, auth, ``Stripe-Account`` scoping and
error envelopes (:func:`create_app`). Used by ``thred-bridge demo`` and by tests.

It shares no code with ``processors/stripe``: minor units, fees and signatures are written here
again, so that a mistake in the bridge's Stripe code is not mirrored by the stand-in it is tested
against. Object shapes follow Stripe's API reference fixtures (stripe/openapi ``fixtures3.json``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_VERSION = "2026-10-28.endive"
Json = dict[str, Any]

# fmt: off
_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
                           "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
# fmt: on
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# route segment → (object type, the noun of Stripe's "No such …" message)
_RESOURCES = {
    "charges": ("charge", "charge"),
    "balance_transactions": ("balance_transaction", "balance_transaction"),
    "customers": ("customer", "customer"),
    "payment_intents": ("payment_intent", "payment_intent"),
}
_ADDRESS = ("city", "country", "line1", "line2", "postal_code", "state")


def _exponent(currency: str) -> int:
    """Stripe's exponent: zero-decimal list, three-decimal list, else 2 (ISK included)."""
    code = currency.lower()
    return 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2


def _step(currency: str) -> int:
    """The step Stripe amounts move in: ISK in whole krónur (100), three-decimal in 10s, else 1."""
    code = currency.lower()
    return 100 if code == "isk" else 10 if code in _THREE_DECIMAL else 1


def _round_to(value: Decimal, step: int, rounding: str) -> int:
    return int((value / step).quantize(Decimal(1), rounding=rounding)) * step


def default_fee(amount: int, currency: str) -> int:
    """A Stripe-like fee on ``amount`` (Stripe units): 1.4% + 0.25 for EUR, 3.6% for zero-decimal
    currencies, else 2.9% + 0.30; rounded half up to the currency's step."""
    code = currency.lower()
    if code == "eur":
        raw = Decimal(amount) * Decimal("0.014") + 25
    elif code in _ZERO_DECIMAL:
        raw = Decimal(amount) * Decimal("0.036")
    else:
        raw = Decimal(amount) * Decimal("0.029") + Decimal(30) * 10 ** (_exponent(code) - 2)
    return _round_to(raw, _step(code), ROUND_HALF_UP)


def mask_key(key: str) -> str:
    """``sk_test_****abcd``, the way Stripe quotes a key back."""
    prefix = key.rpartition("_")[0]
    return f"{prefix}_****{key[-4:]}" if prefix and len(key) > 12 else "****"


@dataclass
class _Fault:
    path_contains: str
    status: int
    remaining: int
    retry_after: int | None


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the simulator answered."""

    method: str
    path: str
    account: str | None
    status: int


class StripeWorld:
    """Stripe's state per account (``None`` = the platform), and helpers that create realistic objects.

    Helpers return copies; change the world only through its methods.
    """

    def __init__(self, *, seed: int | None = None, clock: Callable[[], int] | None = None) -> None:
        self._rng = random.Random(seed)
        self.clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self._objects: dict[str | None, dict[str, Json]] = {None: {}}
        self._unsettled: dict[tuple[str | None, str], Json] = {}
        self._faults: list[_Fault] = []
        self.requests: list[SeenRequest] = []
        self.stripe_notice: str | None = None
        """When set, every answer carries it as a ``Stripe-Notice`` header."""

    def new_id(self, prefix: str, length: int = 24) -> str:
        alphabet = string.ascii_letters + string.digits
        return f"{prefix}_{''.join(self._rng.choice(alphabet) for _ in range(length))}"

    def add_account(self, account: str) -> None:
        self._objects.setdefault(account, {})

    @property
    def accounts(self) -> frozenset[str]:
        return frozenset(a for a in self._objects if a is not None)

    def _store(self, obj: Json, account: str | None) -> Json:
        self._objects.setdefault(account, {})[obj["id"]] = obj
        return copy.deepcopy(obj)

    def get(self, object_id: str, *, account: str | None = None) -> Json | None:
        """A copy of the stored object, or None."""
        found = self._objects.get(account, {}).get(object_id)
        return copy.deepcopy(found) if found is not None else None

    def add_customer(
        self,
        *,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        address: dict[str, str | None] | None = None,
        account: str | None = None,
        customer_id: str | None = None,
    ) -> Json:
        customer: Json = dict.fromkeys(("currency", "default_source", "description", "shipping", "test_clock"))
        customer.update(id=customer_id or self.new_id("cus", 14), object="customer", balance=0)
        customer.update(created=self.clock(), delinquent=False, livemode=False, metadata={})
        customer.update(name=name, email=email, phone=phone, preferred_locales=[], tax_exempt="none")
        customer["address"] = {**dict.fromkeys(_ADDRESS), **address} if address else None
        customer["invoice_prefix"] = "".join(self._rng.choice(string.ascii_uppercase) for _ in range(7))
        customer["invoice_settings"] = {"custom_fields": None, "default_payment_method": None, "footer": None}
        customer["next_invoice_sequence"] = 1
        return self._store(customer, account)

    def add_charge(
        self,
        amount: int,
        currency: str,
        *,
        settlement_currency: str | None = None,
        exchange_rate: str | None = None,
        fee: int | None = None,
        tax: int | None = None,
        customer: dict[str, Any] | None = None,
        billing_email: str | None = None,
        method: str = "card",
        account: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        pending_balance_transaction: bool = False,
    ) -> Json:
        """A succeeded, captured charge with its PaymentIntent (``latest_charge``) and balance transaction.

        ``amount`` is in Stripe units of ``currency``. With ``settlement_currency`` and its
        ``exchange_rate`` the balance transaction is converted, as for an FX charge. ``fee`` is the total
        fee (default :func:`default_fee`); ``tax`` is the part of it that is VAT. ``customer`` is a
        customer's fields (an existing ``id`` is reused). With ``pending_balance_transaction`` the charge
        has ``balance_transaction: null`` (async capture) until :meth:`settle`.
        """
        currency, settle_in = currency.lower(), (settlement_currency or currency).lower()
        if amount <= 0:
            raise ValueError("amount must be positive")
        if amount % _step(currency):
            # Stripe: invalid_charge_amount_no_decimal_compatible (ISK); last digit 0 (three-decimal).
            raise ValueError(f"Stripe refuses {amount} {currency}: not a multiple of {_step(currency)}")
        if (settle_in != currency) != (exchange_rate is not None):
            raise ValueError("exchange_rate is required exactly when settlement_currency differs")
        if account is not None:
            self.add_account(account)
        customer_id = None
        if customer is not None:
            known = self.get(customer["id"], account=account) if "id" in customer else None
            if known is None:
                fields = {k: customer.get(k) for k in ("name", "email", "phone", "address")}
                known = self.add_customer(**fields, account=account, customer_id=customer.get("id"))
            customer_id = known["id"]
        settled = amount
        if exchange_rate is not None:
            shift = Decimal(10) ** (_exponent(settle_in) - _exponent(currency))
            settled = _round_to(amount * Decimal(exchange_rate) * shift, _step(settle_in), ROUND_HALF_EVEN)
        total_fee = default_fee(settled, settle_in) if fee is None else fee
        created = self.clock()
        ids = {p: self.new_id(p) for p in ("ch", "pi", "txn", "pm")}
        bt = self._balance_transaction(ids, settled, settle_in, fee=total_fee, tax=tax, rate=exchange_rate, at=created)
        bt["description"] = description
        charge = self._charge(ids, amount, currency, method, created)
        charge.update(customer=customer_id, description=description, metadata=dict(metadata or {}))
        charge.update(receipt_email=billing_email)
        charge["billing_details"]["email"] = billing_email
        charge["balance_transaction"] = None if pending_balance_transaction else ids["txn"]
        intent: Json = dict.fromkeys(("application", "application_fee_amount", "canceled_at", "next_action"))
        intent.update(dict.fromkeys(("cancellation_reason", "last_payment_error", "on_behalf_of")))
        intent.update(dict.fromkeys(("transfer_data", "transfer_group")))
        intent.update(id=ids["pi"], object="payment_intent", amount=amount, amount_capturable=0)
        intent.update(amount_received=amount, capture_method="automatic_async", created=created)
        intent.update(client_secret=f"{ids['pi']}_secret_{self.new_id('s')[2:]}", confirmation_method="automatic")
        intent.update(currency=currency, customer=customer_id, description=description, livemode=False)
        intent.update(latest_charge=ids["ch"], metadata=dict(metadata or {}), payment_method=ids["pm"])
        intent.update(payment_method_types=[method], receipt_email=billing_email, status="succeeded")
        self._store(intent, account)
        if pending_balance_transaction:
            self._unsettled[(account, ids["ch"])] = bt
        else:
            self._store(bt, account)
        return self._store(charge, account)

    @staticmethod
    def _balance_transaction(
        ids: dict[str, str],
        amount: int,
        currency: str,
        *,
        fee: int,
        tax: int | None,
        rate: str | None,
        at: int,
    ) -> Json:
        line = {"application": None, "currency": currency}
        details = [
            {
                **line,
                "amount": fee - (tax or 0),
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
        if tax:
            details.append({**line, "amount": tax, "description": "VAT", "type": "tax"})
        return {
            "id": ids["txn"], "object": "balance_transaction", "amount": amount,
            "available_on": at + 2 * 86400, "balance_type": "payments", "created": at, "currency": currency,
            "exchange_rate": float(rate) if rate is not None else None, "fee": fee, "fee_details": details,
            "net": amount - fee, "reporting_category": "charge", "source": ids["ch"], "status": "pending",
            "type": "charge",
        }  # fmt: skip

    def _charge(self, ids: dict[str, str], amount: int, currency: str, method: str, at: int) -> Json:
        charge: Json = dict.fromkeys(
            ("application", "application_fee", "application_fee_amount", "failure_balance_transaction")
        )
        charge.update(dict.fromkeys(("failure_code", "failure_message", "on_behalf_of", "receipt_number")))
        charge.update(dict.fromkeys(("review", "shipping", "source_transfer", "statement_descriptor")))
        charge.update(dict.fromkeys(("statement_descriptor_suffix", "transfer_data", "transfer_group")))
        charge.update(id=ids["ch"], object="charge", amount=amount, amount_captured=amount, amount_refunded=0)
        charge.update(calculated_statement_descriptor="THRED DEMO", captured=True, created=at)
        charge.update(currency=currency, disputed=False, fraud_details={}, livemode=False, paid=True)
        charge.update(payment_intent=ids["pi"], payment_method=ids["pm"], refunded=False, status="succeeded")
        charge["billing_details"] = {"address": dict.fromkeys(_ADDRESS), "email": None, "name": None}
        charge["billing_details"].update(phone=None, tax_id=None)
        charge["outcome"] = {"network_status": "approved_by_network", "reason": None, "risk_level": "normal"}
        charge["outcome"].update(risk_score=self._rng.randint(0, 60), seller_message="Payment complete.")
        charge["outcome"]["type"] = "authorized"
        charge["payment_method_details"] = {"type": method, method: {}}
        if method == "card":
            card = {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034, "funding": "credit"}
            card.update(fingerprint=self.new_id("fp", 16)[3:], last4="4242", network="visa", wallet=None)
            charge["payment_method_details"]["card"] = card
        charge["receipt_url"] = f"https://pay.stripe.com/receipts/payment/{self.new_id('rcpt', 40)}"
        return charge

    def settle(self, charge_id: str, *, account: str | None = None) -> Json:
        """Book a charge made with ``pending_balance_transaction``; returns the updated charge."""
        bt = self._unsettled.pop((account, charge_id))
        self._store(bt, account)
        self._objects[account][charge_id]["balance_transaction"] = bt["id"]
        return copy.deepcopy(self._objects[account][charge_id])

    def payment_intent_of(self, charge: Json, *, account: str | None = None) -> Json:
        found = self.get(charge["payment_intent"], account=account)
        if found is None:
            raise KeyError(charge["payment_intent"])
        return found

    def balance_transaction_of(self, charge: Json, *, account: str | None = None) -> Json:
        """The charge's balance transaction, booked or not yet."""
        found = self._unsettled.get((account, charge["id"]))
        txn = self._objects[account][charge["id"]]["balance_transaction"]
        found = self.get(txn, account=account) if txn else copy.deepcopy(found)
        if found is None:
            raise KeyError(charge["id"])
        return found

    def event(self, type: str, obj: Json, *, account: str | None = None) -> Json:
        """A snapshot event envelope around ``obj``, as Stripe would post it."""
        envelope: Json = {"id": self.new_id("evt"), "object": "event"}
        if account is not None:
            envelope["account"] = account
        envelope.update(api_version=API_VERSION, created=self.clock(), data={"object": copy.deepcopy(obj)})
        envelope.update(livemode=False, pending_webhooks=1, type=type)
        envelope["request"] = {"id": self.new_id("req", 14), "idempotency_key": self.new_id("k", 32)[2:]}
        return envelope

    def signed_delivery(
        self, event: Json, secret: str, *, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Stripe would POST for ``event``: pretty-printed UTF-8 JSON, signed."""
        body = json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")
        t = self.clock() if timestamp is None else timestamp
        mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": f"t={t},v1={mac}",
        }

    def fail_next(self, path_contains: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next ``times`` requests whose path contains ``path_contains`` answer ``status``."""
        self._faults.append(_Fault(path_contains, status, times, retry_after))

    def take_fault(self, path: str) -> tuple[int, int | None] | None:
        """Consume the first pending fault for ``path``: its status and Retry-After."""
        for fault in self._faults:
            if fault.remaining > 0 and fault.path_contains in path:
                fault.remaining -= 1
                return fault.status, fault.retry_after
        return None


def _error(status: int, message: str, kind: str = "invalid_request_error", **extra: str) -> tuple[int, Json]:
    return status, {"error": {"message": message, "type": kind, **extra}}


def _key_of(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":  # curl -u sk_test_…:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def _answer(
    world: StripeWorld, api_key: str, request: Request, account: str | None
) -> tuple[int, Json, dict[str, str]]:
    sent = _key_of(request)
    if sent is None:
        message = (
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
        return (*_error(401, message), {})
    if not hmac.compare_digest(sent.encode(), api_key.encode()):
        return (*_error(401, f"Invalid API Key provided: {mask_key(sent)}"), {})
    if account is not None and account not in world.accounts:
        message = (
            f"The provided key '{mask_key(sent)}' does not have access to account '{account}' (or that "
            "account does not exist). Application access may have been revoked."
        )
        return (*_error(403, message, code="account_invalid"), {})
    fault = world.take_fault(request.url.path)
    if fault is not None:
        status, retry_after = fault
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 429:
            message = (
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
            )
            return (*_error(429, message, code="rate_limit"), headers)
        if status >= 500:
            return (*_error(status, "An unknown error occurred", "api_error"), headers)
        return (*_error(status, "Simulated failure"), headers)
    kind, noun = _RESOURCES[request.path_params["resource"]]
    object_id = request.path_params["id"]
    found = world.get(object_id, account=account)
    if found is None or found.get("object") != kind:
        doc = "https://stripe.com/docs/error-codes/resource-missing"
        message = f"No such {noun}: '{object_id}'"
        return (*_error(404, message, code="resource_missing", param="id", doc_url=doc), {})
    for field in request.query_params.getlist("expand[]"):
        value = found.get(field)
        if isinstance(value, str):
            found[field] = world.get(value, account=account) or value
    return 200, found, {}


def create_app(world: StripeWorld, *, api_key: str) -> Starlette:
    """Stripe's retrieve routes over ``world``; requests must carry ``api_key`` (Bearer or Basic auth)."""

    async def retrieve(request: Request) -> JSONResponse:
        if request.path_params["resource"] not in _RESOURCES:
            return await unrecognized(request)
        account = request.headers.get("stripe-account") or None
        status, body, headers = _answer(world, api_key, request, account)
        headers["Request-Id"] = world.new_id("req", 14)
        headers["Stripe-Version"] = request.headers.get("stripe-version", API_VERSION)
        if world.stripe_notice:
            headers["Stripe-Notice"] = world.stripe_notice
        world.requests.append(SeenRequest(request.method, request.url.path, account, status))
        return JSONResponse(body, status_code=status, headers=headers)

    async def unrecognized(request: Request) -> JSONResponse:
        path = request.url.path
        message = f"Unrecognized request URL ({request.method}: {path}). Please see https://stripe.com/docs."
        status, body = _error(404, message)
        world.requests.append(SeenRequest(request.method, path, None, status))
        return JSONResponse(body, status_code=status)

    routes = [
        Route("/v1/{resource:str}/{id:str}", retrieve, methods=["GET"]),
        Route("/{path:path}", unrecognized, methods=["GET", "POST", "DELETE"]),
    ]
    return Starlette(routes=routes)
