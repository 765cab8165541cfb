"""The Stripe API adapter: fetches charges, balance transactions, customers, PaymentIntents, refunds,
disputes and payouts; lists a payout's balance transactions and a charge's refunds (every page); and
lists charges, refunds, disputes and payouts by creation (or arrival) time, one page at a time.

Built on the official SDK (``stripe.StripeClient`` with its async ``HTTPXClient``) and answers plain
JSON dicts, never SDK objects. SDK exceptions stay in this module: each becomes a ProcessorError
(permanent) or ProcessorUnavailableError (transient, with a 429's ``Retry-After``). The SDK's own
retries are off, so the bridge's retry policy is the only one. The secret key never appears in a
message or a repr.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Self

import httpx
import orjson
import stripe

from thred_bridge.errors import ProcessorError, ProcessorUnavailableError

DEFAULT_BASE_URL = "https://api.stripe.com"
PAGE_SIZE = 100
"""Stripe's largest ``limit`` for list endpoints (§1.10)."""
log = logging.getLogger(__name__)

ListedResource = Literal["charges", "refunds", "disputes", "payouts"]
"""The history lists: ``GET /v1/<resource>``."""
Window = tuple[int, int]
"""A time range in Unix seconds, ``[gte, lt)``: sent as ``<field>[gte]`` and ``<field>[lt]``."""

# Anything shaped like a Stripe secret or restricted key, in case a message echoes one.
_KEY_PATTERN = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+")


class _HttpClient(stripe.HTTPXClient):
    """``HTTPXClient`` that takes ``Stripe-Notice`` headers out of the response and logs them.

    The SDK turns that header into ``warnings.warn`` (``_api_requestor._maybe_emit_stripe_notice``),
    which is a crash under ``-W error`` and noise in a service; a log line is where notices belong.
    """

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        content, status, response_headers = await super().request_async(method, url, headers, post_data)
        if "stripe-notice" in response_headers:
            kept = httpx.Headers(response_headers)
            log.warning("Stripe notice on %s %s: %s", method.upper(), url, kept["stripe-notice"])
            del kept["stripe-notice"]
            response_headers = kept
        return content, status, response_headers


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                return None  # an HTTP date: leave the delay to the bridge's backoff
            return max(seconds, 0.0)
    return None


class StripeApi:
    """Reads Stripe objects as JSON; ``account`` sends ``Stripe-Account`` (Connect)."""

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL, timeout: float = 30.0) -> None:
        if not api_key:
            raise ValueError("a Stripe secret key is required")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        # The SDK reports request telemetry (and a machine id file) to Stripe unless told not to; a
        # bookkeeping bridge sends Stripe nothing it does not need.
        stripe.enable_telemetry = False
        self._http = _HttpClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self._base_url},
            http_client=self._http,
            max_network_retries=0,
        )

    def __repr__(self) -> str:
        return f"StripeApi(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.close_async()  # type: ignore[no-untyped-call]  # unannotated in stripe 16

    async def charge(self, charge_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/charges/{id}``."""
        self._check_id("charge", charge_id)
        try:
            obj = await self._client.v1.charges.retrieve_async(charge_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "charge", charge_id, account) from exc
        return self._json(obj)

    async def balance_transaction(self, txn_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/balance_transactions/{id}``."""
        self._check_id("balance transaction", txn_id)
        try:
            obj = await self._client.v1.balance_transactions.retrieve_async(txn_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "balance transaction", txn_id, account) from exc
        return self._json(obj)

    async def customer(self, customer_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/customers/{id}`` (a deleted customer answers ``{"id", "deleted": true}``)."""
        self._check_id("customer", customer_id)
        try:
            obj = await self._client.v1.customers.retrieve_async(customer_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "customer", customer_id, account) from exc
        return self._json(obj)

    async def payment_intent(self, pi_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/payment_intents/{id}``."""
        self._check_id("PaymentIntent", pi_id)
        try:
            obj = await self._client.v1.payment_intents.retrieve_async(pi_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "PaymentIntent", pi_id, account) from exc
        return self._json(obj)

    async def refund(self, refund_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/refunds/{id}``."""
        self._check_id("refund", refund_id)
        try:
            obj = await self._client.v1.refunds.retrieve_async(refund_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "refund", refund_id, account) from exc
        return self._json(obj)

    async def dispute(self, dispute_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/disputes/{id}`` (its ``balance_transactions`` are always full objects)."""
        self._check_id("dispute", dispute_id)
        try:
            obj = await self._client.v1.disputes.retrieve_async(dispute_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "dispute", dispute_id, account) from exc
        return self._json(obj)

    async def payout(self, payout_id: str, *, account: str | None = None) -> dict[str, Any]:
        """``GET /v1/payouts/{id}``."""
        self._check_id("payout", payout_id)
        try:
            obj = await self._client.v1.payouts.retrieve_async(payout_id, options=self._options(account))
        except stripe.StripeError as exc:
            raise self._error(exc, "payout", payout_id, account) from exc
        return self._json(obj)

    def list_balance_transactions(self, *, payout: str, account: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every balance transaction of an automatic payout, newest first, each ``source`` expanded:
        ``GET /v1/balance_transactions?payout=…&limit=100&expand[]=data.source``, page after page.

        The payout's own ``type: payout`` transaction is among them (§1.6). A failed page raises; the
        caller starts again (nothing is kept between pages).
        """
        self._check_id("payout", payout)
        params = {"payout": payout, "limit": PAGE_SIZE, "expand": ["data.source"]}
        return self._all("/v1/balance_transactions", params, "balance transactions of payout", payout, account)

    def list_refunds_for_charge(self, charge_id: str, *, account: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every refund of a charge, newest first, each ``balance_transaction`` expanded:
        ``GET /v1/refunds?charge=…&limit=100&expand[]=data.balance_transaction``, page after page.
        """
        self._check_id("charge", charge_id)
        params = {"charge": charge_id, "limit": PAGE_SIZE, "expand": ["data.balance_transaction"]}
        return self._all("/v1/refunds", params, "refunds of charge", charge_id, account)

    async def list_page(
        self,
        resource: ListedResource,
        *,
        created: Window | None = None,
        arrival_date: Window | None = None,
        starting_after: str | None = None,
        account: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``GET /v1/<resource>?limit=100``, newest first: its objects, and the cursor of the
        next page (the last object's id, for ``starting_after``), or None when this is the last.

        ``created`` and (payouts only) ``arrival_date`` are ``[gte, lt)`` ranges in Unix seconds.
        """
        if arrival_date is not None and resource != "payouts":
            raise ValueError("only payouts can be listed by arrival_date")
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        for name, window in (("created", created), ("arrival_date", arrival_date)):
            if window is not None:
                params[name] = {"gte": window[0], "lt": window[1]}
        if starting_after is not None:
            params["starting_after"] = starting_after
        return await self._page(f"/v1/{resource}", params, "list of", resource, account)

    async def list_all(
        self,
        resource: ListedResource,
        *,
        created: Window | None = None,
        arrival_date: Window | None = None,
        account: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object of :meth:`list_page`'s list, page after page, newest first."""
        after: str | None = None
        while True:
            data, after = await self.list_page(
                resource, created=created, arrival_date=arrival_date, starting_after=after, account=account
            )
            for item in data:
                yield item
            if after is None:
                return

    async def _page(
        self, path: str, params: Mapping[str, Any], noun: str, object_id: str, account: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One list page through the SDK's raw request (same auth, errors and Stripe-Account handling):
        turning a page of 100 objects into StripeObjects cost ~60 % of a backfill's CPU and most of a
        10,000-transaction payout's memory, and only the JSON is needed."""
        extra = {"stripe_account": account} if account else {}
        try:
            answer = await self._client.raw_request_async("get", path, **params, **extra)
        except stripe.StripeError as exc:
            raise self._error(exc, noun, object_id, account) from exc
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            raise ProcessorError(f"Stripe answered a {noun} {object_id} that is not JSON".strip()) from exc
        return self._items_of(body if isinstance(body, dict) else {}, noun, object_id, account)

    async def _all(
        self, path: str, params: Mapping[str, Any], noun: str, object_id: str, account: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow ``has_more`` / ``starting_after`` to the last page, yielding each item as plain JSON."""
        after: str | None = None
        while True:
            page_params = params if after is None else {**params, "starting_after": after}
            data, after = await self._page(path, page_params, noun, object_id, account)
            for item in data:
                yield item
            if after is None:
                return

    @staticmethod
    def _items_of(
        body: dict[str, Any], noun: str, object_id: str, account: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        data = body.get("data")
        what = f"{noun} {object_id}".strip() + (f" on account {account}" if account else "")
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise ProcessorError(f"Stripe answered a malformed list of {what}")
        if body.get("has_more") is not True:
            return data, None
        last = data[-1].get("id") if data else None
        if not isinstance(last, str) or not last:
            raise ProcessorError(f"Stripe said there are more {what} but gave no cursor")
        return data, last

    @staticmethod
    def _options(account: str | None) -> stripe.RequestOptions:
        return {"stripe_account": account} if account else {}

    @staticmethod
    def _check_id(noun: str, object_id: str) -> None:
        # An empty id would turn GET /v1/charges/{id} into the list endpoint.
        if not object_id or not object_id.strip():
            raise ProcessorError(f"refusing to fetch a Stripe {noun} with an empty id")

    @staticmethod
    def _json(obj: stripe.StripeObject) -> dict[str, Any]:
        # The raw body, not ``to_dict()``: the SDK coerces some fields (decimal strings → Decimal), and
        # the bridge stores and reads exactly what Stripe sent.
        response = obj.last_response
        if response is not None:
            data = json.loads(response.body)
            if isinstance(data, dict):
                return data
        return obj.to_dict()

    def _scrub(self, text: str) -> str:
        return _KEY_PATTERN.sub("[redacted key]", text.replace(self._api_key, "[redacted key]"))

    def _error(self, exc: stripe.StripeError, noun: str, object_id: str, account: str | None) -> ProcessorError:
        status = exc.http_status
        said = self._scrub(exc.user_message or type(exc).__name__)
        where = f" on account {account}" if account else ""
        request = f"; request {exc.request_id}" if exc.request_id else ""
        if isinstance(exc, stripe.RateLimitError) or status == 429:
            return ProcessorUnavailableError(
                f"Stripe rate limit while fetching {noun} {object_id}{where} ({said}{request})",
                status=429,
                retry_after=_retry_after(exc.headers),
            )
        if isinstance(exc, stripe.APIConnectionError):
            return ProcessorUnavailableError(f"cannot reach Stripe to fetch {noun} {object_id}{where} ({said})")
        # 409 is a lock timeout or conflict, which Stripe's own retry logic retries; 5xx is Stripe's fault.
        if status is not None and (status >= 500 or status == 409):
            return ProcessorUnavailableError(
                f"Stripe answered {status} for {noun} {object_id}{where} ({said}{request})",
                status=status,
                retry_after=_retry_after(exc.headers),
            )
        if status == 404:
            return ProcessorError(f"Stripe has no {noun} {object_id}{where} ({said}{request})", status=404)
        if isinstance(exc, stripe.AuthenticationError):
            return ProcessorError(f"Stripe refused the secret key ({said}{request})", status=status or 401)
        if isinstance(exc, stripe.PermissionError):
            return ProcessorError(
                f"the Stripe key may not read {noun} {object_id}{where} ({said}{request})",
                status=status or 403,
            )
        return ProcessorError(
            f"Stripe refused to fetch {noun} {object_id}{where}: {status} ({said}{request})", status=status
        )
