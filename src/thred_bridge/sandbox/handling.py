"""What every sandbox route shares: reading bodies, checking tokens, and writing errors the way Thred does.

Thred documents two error bodies, and the sandbox answers with both so the bridge has to parse both:

- the error-handling guide's ``{"error": "<message>", "error_code": "<code>", "details": {"<field>": [...]}}``
  for almost everything, validation failures included (``error`` is then ``"Validation failed"`` and each
  ``details`` key is a dotted field path such as ``line_items.0.unit_price``);
- the API reference's ``{"error_code", "message", "detail", "request_id"}`` for a 404 from the refund-payment
  routes (``…/invoices/refunds/{refund_id}/payments/…``), the one place Thred's reference shows it.

Bodies must be JSON objects (400 ``parse_error`` otherwise); unknown fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from thred_bridge.sandbox.ledger import Ledger, SandboxError, Token

Model = TypeVar("Model", bound=BaseModel)

REFUND_PAYMENT_ROUTES = "/refunds/{refund_id}/payments/"


def error_body(error: SandboxError) -> dict[str, Any]:
    return {"error": error.message, "error_code": error.code, "details": error.details}


def reference_error_body(error: SandboxError) -> dict[str, Any]:
    return {
        "error_code": error.code,
        "message": error.message,
        "detail": error.details,
        "request_id": str(uuid.uuid4()),
    }


async def on_sandbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    headers = {"WWW-Authenticate": 'Bearer realm="thred-sandbox"'} if exc.status == 401 else None
    route = request.scope.get("route")
    template = str(getattr(route, "path", ""))
    if exc.status == 404 and REFUND_PAYMENT_ROUTES in template:
        return JSONResponse(reference_error_body(exc), status_code=404, headers=headers)
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


async def on_http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no route, wrong method), in the guide's shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = SandboxError(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
    return JSONResponse(error_body(error), status_code=exc.status_code, headers=exc.headers)


def validation_details(exc: ValidationError) -> dict[str, list[str]]:
    details: dict[str, list[str]] = {}
    for problem in exc.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"]) or "non_field_errors"
        message = "This field is required." if problem["type"] == "missing" else str(problem["msg"])
        details.setdefault(field, []).append(message)
    return details


def validate(model: type[Model], data: object) -> Model:
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SandboxError(
            400,
            "validation_error",
            "Validation failed",
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]},
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SandboxError(400, "validation_error", "Validation failed", validation_details(exc)) from exc


async def json_body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SandboxError(400, "parse_error", f"JSON parse error: {exc}") from exc


async def body(request: Request, model: type[Model]) -> Model:
    return validate(model, await json_body(request))


def created(written_body: dict[str, Any], is_new: bool) -> JSONResponse:
    return JSONResponse(written_body, status_code=201 if is_new else 200)


# authentication ------------------------------------------------------------------------------------


def basic_credentials(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        raise SandboxError(401, "authentication_required", "Basic credentials (partner_id:api_key) are required.")
    try:
        partner_id, sep, api_key = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SandboxError(401, "authentication_required", "Malformed Basic credentials.") from exc
    if not sep or not partner_id:
        raise SandboxError(401, "authentication_required", "Malformed Basic credentials.")
    return partner_id, api_key


def check_partner(partners: Mapping[str, str] | None, partner_id: str, api_key: str) -> None:
    if partners is None:
        return
    expected = partners.get(partner_id)
    if expected is None or not hmac.compare_digest(expected.encode(), api_key.encode()):
        raise SandboxError(401, "authentication_required", "Invalid partner credentials.")


def bearer(request: Request, books: Ledger) -> Token:
    """The live token presented, or 401 (``authentication_required`` if none, else ``invalid_token``)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise SandboxError(401, "authentication_required", "Authentication credentials were not provided.")
    token = books.token(value.strip())
    if token is None:
        raise SandboxError(401, "invalid_token", "The token is invalid.")
    if token.expires_at <= books.now():
        raise SandboxError(401, "invalid_token", "The token has expired.")
    return token


def partner_token(request: Request, books: Ledger) -> Token:
    token = bearer(request, books)
    if token.business_id is not None:
        raise SandboxError(403, "permission_denied", "This endpoint needs a partner token, not a business token.")
    return token


def business_token(request: Request, books: Ledger, business_id: str) -> Token:
    token = bearer(request, books)
    if token.business_id is None:
        raise SandboxError(
            403,
            "permission_denied",
            "Business resources need a business-scoped token (POST /v1/platform/{business_id}"
            "/oauth2/token/), not the partner token.",
        )
    if token.business_id != business_id:
        raise SandboxError(403, "permission_denied", "The token is scoped to another business.")
    return token
