"""Public test helpers: signed Stripe deliveries and a whole bridge on loopback.

``async with testing.bridge(database_url) as h`` runs, in this event loop, a simulated Stripe API,
the Thred sandbox and the bridge's web app and worker, each a real HTTP server on 127.0.0.1, with one
Stripe connection ready. Nothing in the product imports this module.

Adyen: ``adyen_item``/``adyen_delivery`` build correctly signed Standard-webhook batches, ``report_host``
serves settlement reports behind Basic auth, and ``async with testing.adyen_bridge(database_url) as h``
runs the bridge with one Adyen connection whose report host is in BRIDGE_ADYEN_REPORT_HOSTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.queue import Connection, ConnectionStatus
from thred_bridge.entrypoints.web import create_app
from thred_bridge.processors.adyen.notification import sign_item
from thred_bridge.processors.stripe.webhook import sign_header
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators import adyen_reports
from thred_bridge.simulators.mollie_api import MollieWorld
from thred_bridge.simulators.mollie_api import create_app as create_mollie
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


@dataclass(kw_only=True)
class Running:
    """A running bridge with one connection and its Thred sandbox: what every processor's harness shares."""

    bridge: Bridge
    url: str
    connection: Connection
    thred_url: str
    business_id: str
    http: httpx.AsyncClient

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/{self.connection.processor}/{self.connection.id}"

    async def post(self, delivery: Delivery, *, url: str | None = None) -> httpx.Response:
        return await self.http.post(url or self.webhook_url, content=delivery.body, headers=delivery.headers)

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

    async def settle(self, timeout: float = 30.0) -> ConnectionStatus:
        """Wait until the bridge stops moving: nothing waiting, or nothing changed over two looks 0.2 s apart
        (what waits does so for a delivery not made yet). Raise if that takes over ``timeout`` s."""
        deadline = time.monotonic() + timeout
        before = None
        while True:
            status = await self.status()
            if status.waiting == 0 and status.records_waiting == 0:
                return status
            moved = (status.received, status.synced, status.failed, status.records_sent, status.records_waiting)
            if moved == before:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"still moving after {timeout} s: {status}")
            before = moved
            await self._nudge()
            await asyncio.sleep(0.15)

    async def _nudge(self) -> None:
        self.bridge.events_ready.set()
        self.bridge.records_ready.set()
        await asyncio.sleep(0.05)

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


@dataclass(kw_only=True)
class Harness(Running):
    """A running bridge with one Stripe connection, its Stripe world and its Thred sandbox."""

    secret: str
    world: StripeWorld

    async def deliver(self, event: Mapping[str, Any]) -> httpx.Response:
        return await self.post(stripe_delivery(event, self.secret))


def _settings(
    database_url: str, thred_url: str, extra: Mapping[str, Any], settings: Mapping[str, Any] | None
) -> Settings:
    return Settings.model_validate(
        {
            "BRIDGE_DATABASE_URL": database_url,
            "THRED_API_URL": thred_url,
            "THRED_PARTNER_ID": PARTNER[0],
            "THRED_API_KEY": PARTNER[1],
            "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
            **extra,
            **(settings or {}),
        }
    )


@contextlib.asynccontextmanager
async def _running(
    config: Settings, thred_url: str, new: Callable[[str], NewConnection], *, worker: bool
) -> AsyncIterator[dict[str, Any]]:
    """Open the bridge, add the connection ``new(business_id)`` makes, serve the web app, and run a worker
    (``worker``); yields the :class:`Running` fields."""
    async with open_bridge(config) as running, contextlib.AsyncExitStack() as stack:
        business_id = str(uuid.uuid4())
        connection = await running.connections.add(new(business_id))
        url = await stack.enter_async_context(serve_in_background(create_app(running)))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        if worker:
            stop = asyncio.Event()
            task = asyncio.create_task(running.worker(poll=0.1).run(stop))

            async def _stop() -> None:
                stop.set()
                await task

            stack.push_async_callback(_stop)
        yield {
            "bridge": running, "url": url, "connection": connection, "thred_url": thred_url,
            "business_id": business_id, "http": http,
        }  # fmt: skip


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
        config = _settings(database_url, thred_url, {"BRIDGE_STRIPE_API_BASE": stripe_url}, settings)

        def new(business_id: str) -> NewConnection:
            return NewConnection("stripe", business_id, {"api_key": STRIPE_KEY}, (secret,))

        async with _running(config, thred_url, new, worker=worker) as fields:
            yield Harness(**fields, secret=secret, world=world)


# --- Adyen ------------------------------------------------------------------------------------------------

ADYEN_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
"""Adyen's published test HMAC key (PROCESSORS.md §2.3, vector A)."""
ADYEN_MERCHANT = "TestMerchant"
ADYEN_REPORT_USER = ("report@Company.TestCompany", "report-password-test")


def adyen_item(
    event_code: str,
    psp_reference: str,
    *,
    value: int,
    currency: str = "EUR",
    original_reference: str | None = None,
    merchant_account: str = ADYEN_MERCHANT,
    merchant_reference: str = "",
    success: bool = True,
    event_date: str = "2026-03-01T10:00:00+01:00",
    reason: str | None = None,
    payment_method: str | None = "visa",
    operations: list[str] | None = None,
    additional_data: Mapping[str, Any] | None = None,
    hmac_key: str | None = ADYEN_HMAC_KEY,
) -> dict[str, Any]:
    """One ``{"NotificationRequestItem": …}`` as Adyen sends it, signed with ``hmac_key`` (None: unsigned)."""
    item: dict[str, Any] = {
        "additionalData": dict(additional_data or {}),
        "amount": {"currency": currency, "value": value},
        "eventCode": event_code,
        "eventDate": event_date,
        "merchantAccountCode": merchant_account,
        "merchantReference": merchant_reference,
        "pspReference": psp_reference,
        "success": "true" if success else "false",
    }
    if original_reference is not None:
        item["originalReference"] = original_reference
    if reason is not None:
        item["reason"] = reason
    if payment_method is not None:
        item["paymentMethod"] = payment_method
    if operations is not None:
        item["operations"] = operations
    if hmac_key is not None:
        item["additionalData"]["hmacSignature"] = sign_item(item, hmac_key)
    return {"NotificationRequestItem": item}


def adyen_delivery(items: list[dict[str, Any]], *, live: bool = False, auth: tuple[str, str] | None = None) -> Delivery:
    """The bytes and headers Adyen POSTs for a batch of (already signed) items, with Basic ``auth``."""
    import base64
    import json

    body = json.dumps({"live": "true" if live else "false", "notificationItems": items}).encode()
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return Delivery(body, headers)


@dataclass
class ReportHost:
    """A running stand-in for Adyen's report download host (Basic auth), serving CSV bytes you put."""

    url: str
    files: adyen_reports.ReportFiles

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: what BRIDGE_ADYEN_REPORT_HOSTS must list."""
        return self.url.removeprefix("http://")

    def put(self, name: str, content: bytes, *, merchant_account: str = ADYEN_MERCHANT) -> str:
        """Serve ``content`` as ``name``; returns its download URL (what REPORT_AVAILABLE carries)."""
        self.files.files[name] = content
        return f"{self.url}/reports/download/MerchantAccount/{merchant_account}/{name}"


@contextlib.asynccontextmanager
async def report_host(
    username: str = ADYEN_REPORT_USER[0], password: str = ADYEN_REPORT_USER[1]
) -> AsyncIterator[ReportHost]:
    """A local report host on loopback for the block's lifetime."""
    files = adyen_reports.ReportFiles(username, password)
    async with serve_in_background(adyen_reports.create_app(files)) as url:
        yield ReportHost(url, files)


@dataclass(kw_only=True)
class AdyenHarness(Running):
    """A running bridge with one Adyen connection, its report host and its Thred sandbox."""

    hmac_key: str
    merchant_account: str
    reports: ReportHost
    webhook_auth: tuple[str, str] | None

    def item(self, event_code: str, psp_reference: str, **fields: Any) -> dict[str, Any]:
        """:func:`adyen_item` for this connection's merchant account, signed with its key."""
        fields.setdefault("merchant_account", self.merchant_account)
        fields.setdefault("hmac_key", self.hmac_key)
        return adyen_item(event_code, psp_reference, **fields)

    async def deliver(self, *items: dict[str, Any]) -> httpx.Response:
        """POST one batch of items with the connection's Basic auth."""
        return await self.post(adyen_delivery(list(items), auth=self.webhook_auth))

    async def report_available(self, name: str, content: bytes, *, url: str | None = None) -> httpx.Response:
        """Serve ``content`` as report ``name`` and deliver its REPORT_AVAILABLE (``url`` overrides the link)."""
        link = self.reports.put(name, content, merchant_account=self.merchant_account)
        return await self.deliver(self.item("REPORT_AVAILABLE", name, value=0, reason=url or link))


@contextlib.asynccontextmanager
async def adyen_bridge(
    database_url: str,
    *,
    worker: bool = True,
    settings: Mapping[str, Any] | None = None,
    capture: str = "delayed",
    webhook_auth: tuple[str, str] | None = ("adyen-webhook", "webhook-password-test"),
    report_user: tuple[str, str] | None = ADYEN_REPORT_USER,
    settlement_currency: str | None = None,
) -> AsyncIterator[AdyenHarness]:
    """The whole bridge on loopback with one Adyen connection (merchant ``TestMerchant``, Adyen's test HMAC
    key, Basic auth ``webhook_auth``, report credentials ``report_user``, the merchant account's
    ``settlement_currency`` if it names one), a local report host whose address
    is in BRIDGE_ADYEN_REPORT_HOSTS, and a fresh Thred sandbox."""
    async with (
        report_host() as reports,
        serve_in_background(create_sandbox(partners=dict([PARTNER]))) as thred_url,
    ):
        config = _settings(database_url, thred_url, {"BRIDGE_ADYEN_REPORT_HOSTS": reports.host}, settings)
        credentials = {"capture": capture}
        if settlement_currency is not None:
            credentials["settlement_currency"] = settlement_currency
        if webhook_auth is not None:
            credentials |= {"webhook_user": webhook_auth[0], "webhook_password": webhook_auth[1]}
        if report_user is not None:
            credentials |= {"report_user": report_user[0], "report_password": report_user[1]}

        def new(business_id: str) -> NewConnection:
            return NewConnection("adyen", business_id, credentials, (ADYEN_HMAC_KEY,), account=ADYEN_MERCHANT)

        async with _running(config, thred_url, new, worker=worker) as fields:
            yield AdyenHarness(
                **fields, hmac_key=ADYEN_HMAC_KEY, merchant_account=ADYEN_MERCHANT, reports=reports,
                webhook_auth=webhook_auth,
            )  # fmt: skip


# --- Mollie -----------------------------------------------------------------------------------------------

MOLLIE_API_KEY = "test_bridge" + "2" * 24
MOLLIE_ORGANIZATION_TOKEN = "access_bridge" + "3" * 24


def mollie_ping(object_id: str) -> Delivery:
    """A classic Mollie webhook call about ``object_id`` (form body ``id=…``, unsigned)."""
    body, headers = MollieWorld.ping(object_id)
    return Delivery(body, headers)


def mollie_event_delivery(event: Mapping[str, Any], secret: str) -> Delivery:
    """A next-gen Mollie event as Mollie POSTs it, signed ``X-Mollie-Signature: sha256=…`` with ``secret``."""
    body, headers = MollieWorld.signed(dict(event), secret)
    return Delivery(body, headers)


@dataclass(kw_only=True)
class MollieHarness(Running):
    """A running bridge with one Mollie connection, its simulated Mollie API and its Thred sandbox."""

    webhook_secret: str
    world: MollieWorld
    mollie_url: str

    async def ping(self, object_id: str) -> httpx.Response:
        """Mollie's classic call: ``id=<object_id>``."""
        return await self.post(mollie_ping(object_id))

    async def deliver(self, event: Mapping[str, Any], *, secret: str | None = None) -> httpx.Response:
        """A next-gen event, signed with the connection's secret (or ``secret``)."""
        return await self.post(mollie_event_delivery(event, secret or self.webhook_secret))


@contextlib.asynccontextmanager
async def mollie_bridge(
    database_url: str,
    *,
    worker: bool = True,
    settings: Mapping[str, Any] | None = None,
    organization_token: bool = True,
    balance_access: bool = True,
    world: MollieWorld | None = None,
) -> AsyncIterator[MollieHarness]:
    """The whole bridge on loopback with one Mollie connection (profile key :data:`MOLLIE_API_KEY`, the
    organization token :data:`MOLLIE_ORGANIZATION_TOKEN` unless ``organization_token=False``, one next-gen
    signing secret), a simulated Mollie API at BRIDGE_MOLLIE_API_BASE, and a fresh Thred sandbox.
    ``balance_access=False`` makes the organization token one without ``balances.read`` (403 on balances)."""
    world = world or MollieWorld()
    secret = secrets.token_urlsafe(24)
    mollie_app = create_mollie(
        world, api_key=MOLLIE_API_KEY, organization_token=MOLLIE_ORGANIZATION_TOKEN, balance_access=balance_access
    )
    async with (
        serve_in_background(mollie_app) as mollie_url,
        serve_in_background(create_sandbox(partners=dict([PARTNER]))) as thred_url,
    ):
        config = _settings(database_url, thred_url, {"BRIDGE_MOLLIE_API_BASE": mollie_url}, settings)
        credentials = {"api_key": MOLLIE_API_KEY}
        if organization_token:
            credentials["organization_token"] = MOLLIE_ORGANIZATION_TOKEN

        def new(business_id: str) -> NewConnection:
            return NewConnection("mollie", business_id, credentials, (secret,))

        async with _running(config, thred_url, new, worker=worker) as fields:
            yield MollieHarness(**fields, webhook_secret=secret, world=world, mollie_url=mollie_url)
