"""The simulated Stripe's HTTP side: retrieve and list routes over a :class:`StripeWorld`, with Stripe's
auth, ``Stripe-Account`` scoping, error envelopes, list envelopes and cursor paging.

Lists answer ``{object: "list", data, has_more, url}``, newest first, ``limit`` 1–100 (default 10),
paged with ``starting_after``; ``expand[]`` (or the SDK's indexed ``expand[0]``) expands a field of the
object, or ``data.<field>`` of every listed one. Charges, refunds, disputes and payouts are listed by
``created[gte|gt|lt|lte]`` (payouts also by ``arrival_date[…]``), as the backfill and reconcile read them.
"""

from __future__ import annotations

import base64
import hmac
import operator
import re
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from thred_bridge.simulators.stripe_objects import API_VERSION, Json, mask_key
from thred_bridge.simulators.stripe_world import SeenRequest, StripeWorld

# route segment → (object type, the noun of Stripe's "No such …" message)
_RESOURCES = {
    "charges": ("charge", "charge"),
    "balance_transactions": ("balance_transaction", "balance_transaction"),
    "customers": ("customer", "customer"),
    "payment_intents": ("payment_intent", "payment_intent"),
    "refunds": ("refund", "refund"),
    "disputes": ("dispute", "dispute"),
    "payouts": ("payout", "payout"),
}
_EXPAND = re.compile(r"^expand\[\d*\]$")
_RANGE = re.compile(r"^(created|arrival_date)(?:\[(gte|gt|lte|lt)\])?$")
_COMPARE = {"eq": operator.eq, "gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt}
_LISTED = {"charges": "charge", "disputes": "dispute", "payouts": "payout"}  # refunds: _refunds
MAX_LIMIT = 100
Answer = tuple[int, Json]


def _error(status: int, message: str, kind: str = "invalid_request_error", **extra: str) -> Answer:
    return status, {"error": {"message": message, "type": kind, **extra}}


def _missing(noun: str, object_id: str, param: str = "id") -> Answer:
    doc = "https://stripe.com/docs/error-codes/resource-missing"
    return _error(404, f"No such {noun}: '{object_id}'", code="resource_missing", param=param, doc_url=doc)


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


def _guard(
    world: StripeWorld, api_key: str, request: Request, account: str | None
) -> tuple[Answer, dict[str, str]] | None:
    """Auth, the connected account, then any injected fault: an answer to send instead, or None."""
    sent = _key_of(request)
    if sent is None:
        message = (
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
        return _error(401, message), {}
    if not hmac.compare_digest(sent.encode(), api_key.encode()):
        return _error(401, f"Invalid API Key provided: {mask_key(sent)}"), {}
    if account is not None and account not in world.accounts:
        message = (
            f"The provided key '{mask_key(sent)}' does not have access to account '{account}' (or that "
            "account does not exist). Application access may have been revoked."
        )
        return _error(403, message, code="account_invalid"), {}
    fault = world.take_fault(request.url.path)
    if fault is None:
        return None
    status, retry_after = fault
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status == 429:
        message = "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
        return _error(429, message, code="rate_limit"), headers
    if status >= 500:
        return _error(status, "An unknown error occurred", "api_error"), headers
    return _error(status, "Simulated failure"), headers


def _expansions(request: Request) -> list[str]:
    return [v for k, v in request.query_params.multi_items() if _EXPAND.match(k)]


def _expand(world: StripeWorld, obj: Json, field: str, account: str | None) -> None:
    value = obj.get(field)
    if isinstance(value, str):
        obj[field] = world.get(value, account=account) or value


def _retrieve(world: StripeWorld, request: Request, account: str | None) -> Answer:
    kind, noun = _RESOURCES[request.path_params["resource"]]
    object_id = request.path_params["id"]
    found = world.get(object_id, account=account)
    if found is None or found.get("object") != kind:
        return _missing(noun, object_id)
    for field in _expansions(request):
        _expand(world, found, field, account)
    return 200, found


def _page(world: StripeWorld, request: Request, account: str | None, items: list[Json], url: str) -> Answer:
    """One page of ``items`` (newest first) after ``starting_after``, with ``data.<field>`` expanded."""
    raw = request.query_params.get("limit", "10")
    try:
        limit = int(raw)
    except ValueError:
        return _error(400, f"Invalid integer: {raw}", param="limit")
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"Invalid limit: must be between 1 and {MAX_LIMIT}, got {limit}", param="limit")
    if "ending_before" in request.query_params:
        return _error(400, "ending_before is not simulated; page forward with starting_after", param="ending_before")
    after = request.query_params.get("starting_after")
    if after is not None:
        ids = [o["id"] for o in items]
        if after not in ids:
            noun = items[0]["object"] if items else "object"
            return _missing(noun, after, "starting_after")
        items = items[ids.index(after) + 1 :]
    data = items[:limit]
    for field in _expansions(request):
        if field.startswith("data."):
            for obj in data:
                _expand(world, obj, field.removeprefix("data."), account)
    return 200, {"object": "list", "data": data, "has_more": len(items) > limit, "url": url}


def _in_ranges(request: Request, items: list[Json], fields: tuple[str, ...]) -> list[Json] | Answer:
    """``items`` within the ``created[gte]=…`` (and like) bounds of the query; an error answer for a bad one."""
    bounds: list[tuple[str, str, int]] = []
    for key, value in request.query_params.multi_items():
        matched = _RANGE.match(key)
        if matched is None:
            continue
        field, op = matched.group(1), matched.group(2) or "eq"
        if field not in fields:
            return _error(400, f"Received unknown parameter: {field}", param=field)
        try:
            bounds.append((field, op, int(value)))
        except ValueError:
            return _error(400, f"Invalid integer: {value}", param=key)
    return [o for o in items if all(_COMPARE[op](o[field], n) for field, op, n in bounds)]


def _listing(world: StripeWorld, request: Request, account: str | None) -> Answer:
    """``GET /v1/charges|disputes|payouts``: every object of the kind in the ``created`` (and, for payouts,
    ``arrival_date``) range, newest first."""
    resource = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    kind = _LISTED[resource]
    fields = ("created", "arrival_date") if kind == "payout" else ("created",)
    items = _in_ranges(request, world.listed(kind, account=account), fields)
    if isinstance(items, tuple):
        return items
    return _page(world, request, account, items, f"/v1/{resource}")


def _balance_transactions(world: StripeWorld, request: Request, account: str | None) -> Answer:
    payout = request.query_params.get("payout")
    if payout is None:
        return _page(world, request, account, world.listed("balance_transaction", account=account), request.url.path)
    reconciliation = world.reconciliation_of(payout, account=account)
    if reconciliation is None:
        return _missing("payout", payout, "payout")
    if reconciliation == "not_applicable":
        message = "Balance transaction history can only be filtered on automatic transfers, not manual."
        return _error(400, message, param="payout")
    items = (
        [] if reconciliation == "in_progress" else world.listed("balance_transaction", account=account, payout=payout)
    )
    return _page(world, request, account, items, "/v1/balance_transactions")


def _refunds(world: StripeWorld, request: Request, account: str | None) -> Answer:
    charge = request.path_params.get("id") or request.query_params.get("charge")
    if charge is None:
        every = _in_ranges(request, world.listed("refund", account=account), ("created",))
        return every if isinstance(every, tuple) else _page(world, request, account, every, "/v1/refunds")
    found = world.get(charge, account=account)
    if found is None or found.get("object") != "charge":
        return _missing("charge", charge, "charge")
    items = _in_ranges(request, world.listed("refund", account=account, charge=charge), ("created",))
    return items if isinstance(items, tuple) else _page(world, request, account, items, request.url.path)


def create_app(world: StripeWorld, *, api_key: str) -> Starlette:
    """Stripe's retrieve and list routes over ``world``; requests must carry ``api_key`` (Bearer or Basic)."""

    def serve(handler: Callable[[StripeWorld, Request, str | None], Answer]) -> Callable[[Request], JSONResponse]:
        def answer(request: Request) -> JSONResponse:
            account = request.headers.get("stripe-account") or None
            refused = _guard(world, api_key, request, account)
            (status, body), headers = refused if refused is not None else (handler(world, request, account), {})
            headers["Request-Id"] = world.new_id("req", 14)
            headers["Stripe-Version"] = request.headers.get("stripe-version", API_VERSION)
            if world.stripe_notice:
                headers["Stripe-Notice"] = world.stripe_notice
            world.requests.append(SeenRequest(request.method, request.url.path, account, status))
            return JSONResponse(body, status_code=status, headers=headers)

        return answer

    retrieve_one = serve(_retrieve)

    async def retrieve(request: Request) -> JSONResponse:
        if request.path_params["resource"] not in _RESOURCES:
            return await unrecognized(request)
        return retrieve_one(request)

    async def balance_transactions(request: Request) -> JSONResponse:
        return serve(_balance_transactions)(request)

    async def refunds(request: Request) -> JSONResponse:
        return serve(_refunds)(request)

    async def listing(request: Request) -> JSONResponse:
        return serve(_listing)(request)

    async def unrecognized(request: Request) -> JSONResponse:
        path = request.url.path
        message = f"Unrecognized request URL ({request.method}: {path}). Please see https://stripe.com/docs."
        status, body = _error(404, message)
        world.requests.append(SeenRequest(request.method, path, None, status))
        return JSONResponse(body, status_code=status)

    routes = [
        Route("/v1/balance_transactions", balance_transactions, methods=["GET"]),
        Route("/v1/refunds", refunds, methods=["GET"]),
        Route("/v1/charges/{id:str}/refunds", refunds, methods=["GET"]),
        *(Route(f"/v1/{resource}", listing, methods=["GET"]) for resource in _LISTED),
        Route("/v1/{resource:str}/{id:str}", retrieve, methods=["GET"]),
        Route("/{path:path}", unrecognized, methods=["GET", "POST", "DELETE"]),
    ]
    return Starlette(routes=routes)
