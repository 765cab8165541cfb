"""The simulated Mollie's HTTP side: ``/v2`` retrieve and list routes over a :class:`MollieWorld`, with
Mollie's bearer auth, HAL envelopes, ``from``-cursor paging and error JSON.

- Auth: ``Authorization: Bearer`` with the profile API key (``test_…``/``live_…``) or the organization
  access token (``access_…``); anything else is 401. Settlements and balances need the organization token
  (PROCESSORS.md §3.5): a profile key gets 403 on settlements and 401 on balances (the Balances API does
  not take API keys at all). An organization token made without ``balances.read``
  (``create_app(..., balance_access=False)``) gets 403 on balances and still reads settlements.
- Balances: ``GET /v2/balances`` (one primary balance), ``/v2/balances/{id|primary}`` and
  ``/v2/balances/{id|primary}/transactions``, newest first, ``from``/``limit`` paged like every list.
- Lists: ``{"count", "_embedded": {<resource>s: [...]}, "_links": {self, previous, next, documentation}}``,
  newest first, ``limit`` 1–250 (default 50); ``from`` is the id of the first item of the page (included),
  and ``_links.next.href`` is the absolute URL of the next page (the SDK follows it as is), else null.
- Errors: ``{"status", "title", "detail", "_links": {"documentation"}}`` as ``application/hal+json``.
- Faults: :meth:`MollieWorld.fail_next` makes the next matching requests answer 429 (with ``Retry-After``)
  or a 5xx.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from thred_bridge.simulators.mollie_world import DOCS, Json, MollieWorld, SeenRequest

MAX_LIMIT = 250
DEFAULT_LIMIT = 50
HAL = "application/hal+json"
Answer = tuple[int, Json]

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized Request",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_NOUNS = {"payment": "payment", "refund": "refund", "chargeback": "chargeback", "capture": "capture"}
_PLURAL = {"payments": "payment", "refunds": "refund", "chargebacks": "chargeback", "captures": "capture"}


def error(status: int, detail: str, *, field: str | None = None, doc: str = "overview/handling-errors") -> Answer:
    body: Json = {
        "status": status,
        "title": _TITLES.get(status, "Error"),
        "detail": detail,
        "_links": {"documentation": {"href": f"https://docs.mollie.com/{doc}", "type": "text/html"}},
    }
    if field is not None:
        body["field"] = field
    return status, body


def _no_route(request: Request) -> Answer:
    return error(404, f"The resource you requested ({request.method} {request.url.path}) could not be found.")


def _token_of(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _one_of(sent: str, accepted: tuple[str, ...]) -> bool:
    return any(hmac.compare_digest(sent.encode(), a.encode()) for a in accepted if a)


def _page(request: Request, items: list[Json], key: str, path: str) -> Answer:
    """One page of ``items`` (newest first) from ``from``, as Mollie's HAL list."""
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return error(400, f"The limit must be a number between 1 and {MAX_LIMIT}", field="limit")
    limit = int(raw)
    start = 0
    cursor = request.query_params.get("from")
    if cursor is not None:
        ids = [o["id"] for o in items]
        if cursor not in ids:
            return error(400, f"The 'from' parameter is invalid: no {key[:-1]} {cursor} in this list", field="from")
        start = ids.index(cursor)
    page = items[start : start + limit]
    base = str(request.base_url).rstrip("/") + path

    def link(first: int) -> Json:
        return {"href": f"{base}?{urlencode({'from': items[first]['id'], 'limit': limit})}", "type": HAL}

    return 200, {
        "count": len(page),
        "_embedded": {key: page},
        "_links": {
            "self": {"href": f"{base}?{request.url.query}" if request.url.query else base, "type": HAL},
            "previous": link(max(start - limit, 0)) if start > 0 else None,
            "next": link(start + limit) if start + limit < len(items) else None,
            "documentation": {"href": f"{DOCS}/list-{key}", "type": "text/html"},
        },
    }


def _embeds(request: Request) -> list[str]:
    return [e.strip() for e in request.query_params.get("embed", "").split(",") if e.strip()]


def _payment(world: MollieWorld, request: Request) -> Answer:
    payment_id = request.path_params["id"]
    if world.get(payment_id) is None or not payment_id.startswith("tr_"):
        return error(404, f"No payment exists with token {payment_id}.")
    return 200, world.payment_view(payment_id, _embeds(request))


def _payments(world: MollieWorld, request: Request) -> Answer:
    return _page(request, [world.payment_view(p["id"]) for p in world.listed("payment")], "payments", "/v2/payments")


def _payment_children(world: MollieWorld, request: Request) -> Answer:
    """``/v2/payments/{id}/refunds|chargebacks|captures`` (list) and ``…/{child}`` (one)."""
    payment_id, kind = request.path_params["id"], request.path_params["kind"]
    if kind not in _PLURAL:
        return _no_route(request)
    resource = _PLURAL[kind]
    found = world.get(payment_id)
    if found is None or found["resource"] != "payment":
        return error(404, f"No payment exists with token {payment_id}.")
    child = request.path_params.get("child")
    if child is None:
        return _page(request, world.listed(resource, paymentId=payment_id), kind, f"/v2/payments/{payment_id}/{kind}")
    obj = world.get(child)
    if obj is None or obj["resource"] != resource or obj.get("paymentId") != payment_id:
        return error(404, f"No {_NOUNS[resource]} exists with token {child}.")
    return 200, obj


def _everything(world: MollieWorld, request: Request) -> Answer:
    """``GET /v2/refunds`` and ``GET /v2/chargebacks``: every one of the profile, newest first."""
    kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    return _page(request, world.listed(_PLURAL[kind]), kind, f"/v2/{kind}")


def _settlement_of(world: MollieWorld, key: str) -> Json | None:
    found = world.get(key)
    if found is not None and found["resource"] == "settlement":
        return found
    for settlement in world.listed("settlement"):  # a bank reference works as the id too
        if settlement["reference"] == key:
            return settlement
    return None


def _settlement(world: MollieWorld, request: Request) -> Answer:
    key = request.path_params["id"]
    found = _settlement_of(world, key)
    if found is None:
        return error(404, f"No settlement exists with token {key}.")
    kind = request.path_params.get("kind")
    if kind is None:
        return 200, found
    if kind not in _PLURAL:
        return _no_route(request)
    items = world.settled_in(found["id"], _PLURAL[kind])
    if kind == "payments":
        items = [world.payment_view(p["id"]) for p in items]
    return _page(request, items, kind, f"/v2/settlements/{key}/{kind}")


def _settlements(world: MollieWorld, request: Request) -> Answer:
    listed = [{**s, "periods": {}} for s in world.listed("settlement")]  # the list gives no periods
    return _page(request, listed, "settlements", "/v2/settlements")


def _balance(world: MollieWorld, request: Request) -> Answer:
    key = request.path_params["id"]
    if key not in ("primary", world.balance["id"]):
        return error(404, f"No balance exists with token {key}.")
    kind = request.path_params.get("kind")
    if kind is None:
        return 200, world.balance_view()
    if kind != "transactions":
        return _no_route(request)
    listed = list(reversed(world.transactions))
    return _page(request, listed, "balance_transactions", f"/v2/balances/{key}/transactions")


def _balances(world: MollieWorld, request: Request) -> Answer:
    return _page(request, [world.balance_view()], "balances", "/v2/balances")


def create_app(
    world: MollieWorld, *, api_key: str, organization_token: str | None = None, balance_access: bool = True
) -> Starlette:
    """Mollie's ``/v2`` read routes over ``world``. ``api_key`` is the profile key; ``organization_token``
    (``access_…``) may also read settlements and, with ``balance_access`` (its ``balances.read`` scope),
    balances."""
    if not api_key.startswith(("test_", "live_")):
        raise ValueError("a Mollie API key starts with test_ or live_")
    if organization_token is not None and not organization_token.startswith("access_"):
        raise ValueError("a Mollie organization access token starts with access_")
    tokens = (api_key, organization_token or "")

    def guard(request: Request, organization: bool) -> tuple[Answer, dict[str, str]] | None:
        sent = _token_of(request)
        if sent is None or not _one_of(sent, tokens):
            return error(401, "Missing authentication, or failed to authenticate", doc="overview/authentication"), {}
        if request.url.path.startswith("/v2/balances"):
            if not _one_of(sent, (organization_token or "",)):
                detail = "The Balances API needs an organization access token or an OAuth access token"
                return error(401, detail, doc="reference/authentication"), {}
            if not balance_access:
                detail = "The access token is missing the balances.read permission"
                return error(403, detail, doc="reference/authentication"), {}
        if organization and not _one_of(sent, (organization_token or "",)):
            detail = (
                "This endpoint needs an organization access token or an OAuth access token; "
                "a website profile API key cannot read settlements or balances"
            )
            return error(403, detail, doc="reference/authentication"), {}
        fault = world.take_fault(request.url.path)
        if fault is None:
            return None
        status, retry_after = fault
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 429:
            return error(429, "You have exceeded the rate limit. Please try again later."), headers
        return error(status, "Something went wrong on our side (simulated)."), headers

    def serve(
        handler: Callable[[MollieWorld, Request], Answer], *, organization: bool = False
    ) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def answer(request: Request) -> JSONResponse:
            refused = guard(request, organization)
            (status, body), headers = refused if refused is not None else (handler(world, request), {})
            world.requests.append(SeenRequest(request.method, request.url.path, request.url.query, status))
            return JSONResponse(body, status_code=status, headers=headers, media_type=HAL)

        return answer

    async def unknown(request: Request) -> JSONResponse:
        status, body = _no_route(request)
        world.requests.append(SeenRequest(request.method, request.url.path, request.url.query, status))
        return JSONResponse(body, status_code=status, media_type=HAL)

    children = "{kind:str}"
    routes = [
        Route("/v2/payments", serve(_payments), methods=["GET"]),
        Route("/v2/payments/{id:str}", serve(_payment), methods=["GET"]),
        Route(f"/v2/payments/{{id:str}}/{children}", serve(_payment_children), methods=["GET"]),
        Route(f"/v2/payments/{{id:str}}/{children}/{{child:str}}", serve(_payment_children), methods=["GET"]),
        Route("/v2/refunds", serve(_everything), methods=["GET"]),
        Route("/v2/chargebacks", serve(_everything), methods=["GET"]),
        Route("/v2/settlements", serve(_settlements, organization=True), methods=["GET"]),
        Route("/v2/settlements/{id:str}", serve(_settlement, organization=True), methods=["GET"]),
        Route(f"/v2/settlements/{{id:str}}/{children}", serve(_settlement, organization=True), methods=["GET"]),
        Route("/v2/balances", serve(_balances, organization=True), methods=["GET"]),
        Route("/v2/balances/{id:str}", serve(_balance, organization=True), methods=["GET"]),
        Route("/v2/balances/{id:str}/{kind:str}", serve(_balance, organization=True), methods=["GET"]),
        Route("/{path:path}", unknown, methods=["GET", "POST", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)
