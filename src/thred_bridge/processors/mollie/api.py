"""The Mollie API adapter: fetches a payment (with its refunds, chargebacks and captures embedded), a
settlement and every page of its payments, refunds, chargebacks and captures, and the primary balance's
transactions; answers plain JSON dicts, never SDK objects.

Built on the official ``mollie-api-python`` ``Client`` pointed at ``BRIDGE_MOLLIE_API_BASE``
(PROCESSORS.md §8). The SDK is synchronous (requests), so every call runs in a worker thread
(``anyio.to_thread``), at most ``max_threads`` at a time per processor. Its lists are one page each: this
module follows ``_links.next`` itself (``has_next`` / ``get_next``, §3.4). The SDK's own retries are off
(``retry=0``): the bridge's retry policy is the only one.

Errors stay in this module: each SDK exception becomes a ProcessorError (permanent: 4xx, an id the SDK
refuses, a key it refuses) or a ProcessorUnavailableError (transient: 429 and 5xx with their
``Retry-After``, timeouts and connection failures). Settlements and balances need the organization access
token (``access_…``, §3.5); without one those calls raise :class:`NoOrganizationTokenError` before any
request. No key or token appears in a message or a repr.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread
import requests  # the SDK's HTTP library
from mollie.api.client import Client
from mollie.api.error import (
    Error,
    RequestError,
    RequestSetupError,
    ResponseError,
    ResponseHandlingError,
)
from mollie.api.objects.balance import Balance
from mollie.api.objects.settlement import Settlement

from thred_bridge.errors import ProcessorError, ProcessorUnavailableError

DEFAULT_BASE_URL = "https://api.mollie.com"
PAGE_SIZE = 250
"""Mollie's largest ``limit`` (§4 fact 20)."""
TIMEOUT = (2, 10)
"""Connect and read timeouts, seconds (the SDK's default)."""
MAX_THREADS = 8
"""Fetches in flight at once per processor: Mollie's rate limits are per key, and threads are not free."""

SettlementList = Literal["payments", "refunds", "chargebacks", "captures"]
ListedResource = Literal["payments", "settlements"]
"""Top-level lists the backfill and the settlement poll page through (newest first, ``from`` cursor)."""
T = TypeVar("T")

_SECRET_PATTERN = re.compile(r"\b(?:live|test|access)_[A-Za-z0-9]+")


class NoOrganizationTokenError(ProcessorError):
    """Settlements and balances need a Mollie organization access token; this connection has none."""


class _Client(Client):
    """The SDK client, remembering (per thread) the status and headers of the last answer it got, so
    that a 429's ``Retry-After`` reaches the error tree (the SDK's exceptions do not carry headers)."""

    def __init__(self, api_endpoint: str, timeout: tuple[int, int]) -> None:
        super().__init__(api_endpoint=api_endpoint, timeout=timeout, retry=0)
        self.last = threading.local()
        # The SDK makes its session on first use, unguarded: made here, threads never race to make two.
        self._client = requests.Session()

    def perform_http_call(self, *args: Any, **kwargs: Any) -> Any:
        self.last.status, self.last.headers = None, {}
        response = super().perform_http_call(*args, **kwargs)
        self.last.status, self.last.headers = response.status_code, response.headers
        return response


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None  # an HTTP date: leave the delay to the bridge's backoff
    return None


def _next_cursor(page: Mapping[str, Any]) -> str | None:
    """The ``from`` id in a list page's ``_links.next.href``, or None when there is no next page."""
    links = page.get("_links")
    following = links.get("next") if isinstance(links, Mapping) else None
    href = following.get("href") if isinstance(following, Mapping) else None
    if not isinstance(href, str):
        return None
    found = parse_qs(urlsplit(href).query).get("from")
    if not found or not found[0]:
        raise ProcessorError(f"Mollie's next-page link names no 'from' cursor: {href[:200]!r}")
    return found[0]


def items_of(page: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """The objects of one HAL list page (``_embedded.<resource>s``); ProcessorError if malformed."""
    embedded = page.get("_embedded") or {}
    lists = [v for v in embedded.values() if isinstance(v, list)] if isinstance(embedded, Mapping) else []
    if len(lists) > 1:
        raise ProcessorError(f"Mollie answered a list of {what} with {len(lists)} embedded lists")
    items = lists[0] if lists else []
    if not all(isinstance(i, dict) for i in items):
        raise ProcessorError(f"Mollie answered a malformed list of {what}")
    return items


class MollieApi:
    """Reads Mollie objects as JSON with a profile API key (payments) and, when given, an organization
    access token (settlements, balances)."""

    def __init__(
        self,
        api_key: str,
        *,
        organization_token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: tuple[int, int] = TIMEOUT,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._secrets = [s for s in (api_key, organization_token) if s]
        self._base_url = base_url.rstrip("/")
        self._limiter = limiter or anyio.CapacityLimiter(MAX_THREADS)
        try:
            self._client = _Client(self._base_url, timeout)
            self._client.set_api_key(api_key)
            self._org: _Client | None = None
            if organization_token:
                self._org = _Client(self._base_url, timeout)
                self._org.set_access_token(organization_token)
        except RequestSetupError as exc:
            raise ProcessorError(f"Mollie credentials refused by the SDK: {self._scrub(str(exc))}") from exc

    def __repr__(self) -> str:
        return f"MollieApi(base_url={self._base_url!r}, organization={self._org is not None})"

    @property
    def has_organization_token(self) -> bool:
        return self._org is not None

    def close(self) -> None:
        """Close the SDK clients' connection pools (the SDK makes its requests session on first use)."""
        for client in (self._client, self._org):
            if client is not None:
                client._client.close()

    # ------------------------------------------------------------------------------------------ calls

    async def payment(self, payment_id: str) -> dict[str, Any]:
        """``GET /v2/payments/{id}?embed=refunds,chargebacks,captures``."""
        client = self._client
        return await self._call(
            lambda: dict(client.payments.get(payment_id, embed="refunds,chargebacks,captures")),
            client, "payment", payment_id,
        )  # fmt: skip

    async def settlement(self, settlement_id: str) -> dict[str, Any]:
        """``GET /v2/settlements/{id}`` (also ``open``, ``next`` or a bank reference); organization token only."""
        org = self._organization("settlement", settlement_id)
        return await self._call(lambda: dict(org.settlements.get(settlement_id)), org, "settlement", settlement_id)

    async def settlement_items(self, settlement: Mapping[str, Any], kind: SettlementList) -> list[dict[str, Any]]:
        """Every page of ``GET /v2/settlements/{id}/<kind>?limit=250`` (payments, refunds, chargebacks or
        captures of a settlement fetched with :meth:`settlement`)."""
        settlement_id = str(settlement.get("id"))
        org = self._organization(f"{kind} of settlement", settlement_id)

        def first() -> Any:
            return getattr(Settlement(dict(settlement), org), kind).list(limit=PAGE_SIZE)  # type: ignore[no-untyped-call]

        return await self._every_page(first, org, f"{kind} of settlement", settlement_id)

    async def balance(self, balance_id: str = "primary") -> dict[str, Any]:
        """``GET /v2/balances/{id}`` (``primary`` for the organization's primary balance); organization
        token with ``balances.read`` only (a 401 or 403 otherwise: ProcessorError with that status)."""
        org = self._organization("balance", balance_id)
        return await self._call(lambda: dict(org.balances.get(balance_id)), org, "balance", balance_id)

    async def balances(self) -> list[dict[str, Any]]:
        """Every page of ``GET /v2/balances?limit=250`` (one balance per currency the organization holds)."""
        org = self._organization("balances", "list")
        return await self._every_page(lambda: org.balances.list(limit=PAGE_SIZE), org, "balances", "list")

    async def balance_transactions(self, balance_id: str = "primary") -> list[dict[str, Any]]:
        """Every page of ``GET /v2/balances/{id}/transactions?limit=250``; organization token only."""
        org = self._organization("transactions of balance", balance_id)
        balance = Balance({"resource": "balance", "id": balance_id}, org)  # type: ignore[no-untyped-call]
        return await self._every_page(
            lambda: balance.get_transactions(limit=PAGE_SIZE), org, "transactions of balance", balance_id
        )

    async def balance_transactions_page(
        self, balance_id: str, cursor: str | None = None, *, limit: int = PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /v2/balances/{id}/transactions?limit=…[&from=<cursor>]`` (newest first): its
        transactions and the ``from`` id of the next (older) page, None on the last. Organization token
        with ``balances.read`` only."""
        org = self._organization("transactions of balance", balance_id)
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["from"] = cursor
        balance = Balance({"resource": "balance", "id": balance_id}, org)  # type: ignore[no-untyped-call]
        page = await self._call(lambda: balance.get_transactions(**params), org, "transactions of balance", balance_id)
        return items_of(page, f"transactions of balance {balance_id}"), _next_cursor(page)

    async def list_page(
        self, resource: ListedResource, cursor: str | None = None, *, limit: int = PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /v2/<resource>?limit=…[&from=<cursor>]`` (newest first): its objects, and the
        ``from`` id of the next page (None on the last). Settlements need the organization token."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["from"] = cursor  # a Python keyword: passed through the SDK's **params as is
        if resource == "settlements":
            client = self._organization("settlements", "list")
            lister: Any = client.settlements
        else:
            client, lister = self._client, self._client.payments
        page = await self._call(lambda: lister.list(**params), client, f"list of {resource}", cursor or "start")
        return items_of(page, f"list of {resource}"), _next_cursor(page)

    # ------------------------------------------------------------------------------------------ plumbing

    def _organization(self, noun: str, object_id: str) -> _Client:
        if self._org is None:
            raise NoOrganizationTokenError(
                f"cannot read Mollie {noun} {object_id}: settlements and balances need an organization access "
                "token (access_…), and this connection has only a profile API key"
            )
        return self._org

    async def _every_page(
        self, first: Callable[[], Any], client: _Client, noun: str, object_id: str
    ) -> list[dict[str, Any]]:
        """Fetch the first page, then follow ``_links.next`` to the last; the items of every page, in order."""
        page = await self._call(first, client, noun, object_id)
        items = items_of(page, f"{noun} {object_id}")
        seen = 1
        while page.has_next():
            page = await self._call(page.get_next, client, noun, object_id)
            items += items_of(page, f"{noun} {object_id}")
            seen += 1
            if seen > 100_000:  # pragma: no cover - a cursor loop on Mollie's side
                raise ProcessorError(f"Mollie kept answering pages of {noun} {object_id}")
        return items

    async def _call(self, fn: Callable[[], T], client: _Client, noun: str, object_id: str) -> T:
        def run() -> T:
            try:
                return fn()
            except Error as exc:
                raise self._error(exc, client, noun, object_id) from exc

        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _SECRET_PATTERN.sub("[redacted]", text)

    def _error(self, exc: Error, client: _Client, noun: str, object_id: str) -> ProcessorError:
        """An SDK exception → the bridge's error tree (runs in the thread that made the call)."""
        said = self._scrub(str(exc))[:300]
        headers = getattr(client.last, "headers", {})
        status = exc.status if isinstance(exc, ResponseError) else getattr(client.last, "status", None)
        if isinstance(exc, RequestSetupError):  # a refused id (IdentifierError) or key, before any request
            return ProcessorError(f"refusing to fetch Mollie {noun} {object_id!r}: {said}")
        if isinstance(exc, RequestError):  # timeouts and connection failures
            return ProcessorUnavailableError(f"cannot reach Mollie to fetch {noun} {object_id} ({said})")
        if isinstance(status, int) and (status == 429 or status >= 500):
            kind = "rate limit" if status == 429 else f"answered {status}"
            return ProcessorUnavailableError(
                f"Mollie {kind} while fetching {noun} {object_id} ({said})",
                status=status,
                retry_after=_retry_after(headers),
            )
        if isinstance(exc, ResponseHandlingError):
            return ProcessorError(f"Mollie answered {noun} {object_id} with something that is not JSON ({said})")
        if status == 404:
            return ProcessorError(f"Mollie has no {noun} {object_id} ({said})", status=404)
        if status == 401:
            return ProcessorError(f"Mollie refused the credentials ({said})", status=401)
        if status == 403:
            return ProcessorError(f"the Mollie credentials may not read {noun} {object_id} ({said})", status=403)
        return ProcessorError(f"Mollie refused to fetch {noun} {object_id}: {status} ({said})", status=status)
