"""Routes at the partner level: the two token endpoints and businesses.

- ``POST /v1/platform/oauth2/token/``: Basic ``partner_id:api_key``; the body may be the form
  ``grant_type=client_credentials``, JSON ``{"client_id", "grant_type"}``, or empty (Thred documents all
  three). Answers ``{access_token, token_type: "Bearer", expires_in}``.
- ``POST /v1/platform/{business_id}/oauth2/token/``: Bearer partner token; answers a business-scoped token
  with ``scope: "business_access"`` and ``business_id``. Minting one for a business the sandbox has never
  seen creates that business (base currency EUR) unless the app was built with
  ``auto_create_businesses=False``, when it is 404 ``business_not_found``. The sandbox has one namespace:
  any partner reaches any business.
- ``POST``/``GET /v1/platform/businesses/`` and ``GET /v1/platform/businesses/{business_id}/`` with the
  partner token (the last one also with that business's own token). Create is idempotent on
  ``external_id`` and carries ``_meta: {"created": bool}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thred_bridge.sandbox import handling
from thred_bridge.sandbox.books import Books
from thred_bridge.sandbox.ledger import SandboxError
from thred_bridge.sandbox.schemas import CreateBusinessRequest, TokenRequest

PLATFORM = "/v1/platform"
NO_STORE = {"Cache-Control": "no-store"}


def auth_routes(
    books: Books, partners: Mapping[str, str] | None, *, auto_create_businesses: bool, token_ttl: int
) -> list[Route]:
    async def partner_token(request: Request) -> Response:
        partner_id, api_key = handling.basic_credentials(request)
        handling.check_partner(partners, partner_id, api_key)
        await _check_token_body(request, partner_id)
        token = books.issue_token(partner_id, None, token_ttl)
        body = {"access_token": token.value, "token_type": "Bearer", "expires_in": token_ttl}
        return JSONResponse(body, headers=NO_STORE)

    async def business_token(request: Request) -> Response:
        business_id = request.path_params["business_id"]
        partner = handling.partner_token(request, books)
        books.ensure_business(business_id, partner.partner_id, create=auto_create_businesses)
        token = books.issue_token(partner.partner_id, business_id, token_ttl)
        body = {
            "access_token": token.value,
            "token_type": "Bearer",
            "expires_in": token_ttl,
            "scope": "business_access",
            "business_id": business_id,
        }
        return JSONResponse(body, headers=NO_STORE)

    async def businesses(request: Request) -> Response:
        partner = handling.partner_token(request, books)
        if request.method == "POST":
            written = books.create_business(await handling.body(request, CreateBusinessRequest), partner.partner_id)
            return handling.created(written.body, written.created)
        return JSONResponse(books.page("business", "", request.query_params))

    async def business(request: Request) -> Response:
        business_id = request.path_params["business_id"]
        token = handling.bearer(request, books)
        if token.business_id not in {None, business_id}:
            raise SandboxError(403, "permission_denied", "The token is scoped to another business.")
        return JSONResponse(books.business(business_id))

    return [
        Route(f"{PLATFORM}/oauth2/token/", partner_token, methods=["POST"]),
        Route(f"{PLATFORM}/businesses/", businesses, methods=["GET", "POST"]),
        Route(f"{PLATFORM}/businesses/{{business_id}}/", business, methods=["GET"]),
        Route(f"{PLATFORM}/{{business_id}}/oauth2/token/", business_token, methods=["POST"]),
    ]


async def _check_token_body(request: Request, partner_id: str) -> None:
    raw = (await request.body()).strip()
    if not raw:
        return
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type:
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        data: object = form
    else:
        data = await handling.json_body(request)
    if isinstance(data, dict) and data.get("grant_type", "client_credentials") != "client_credentials":
        raise SandboxError(400, "unsupported_grant_type", "grant_type must be client_credentials.")
    tokens = handling.validate(TokenRequest, data)
    if tokens.client_id is not None and tokens.client_id != partner_id:
        raise SandboxError(
            400,
            "validation_error",
            "Validation failed",
            {"client_id": ["client_id does not match the Basic credentials."]},
        )
