"""Thred's wire format without I/O: paths, error bodies, list envelopes, record and token bodies.

Pure and sync: no httpx, no clock. A ``Retry-After`` HTTP-date is measured against the response's
own ``Date`` header, else against the ``now`` the caller passes. Thred's documentation disagrees
with itself (CONTRACT.md §12), so every parser here reads each documented shape:

- errors: ``{error, error_code, details}`` (guide), ``{error_code, message, detail, request_id}``
  (reference), OAuth2's ``{error, error_description}``, DRF's bare ``{field: [msg]}``, and
  non-JSON bodies (an HTML page from a proxy, an empty body);
- lists: ``{count, page_info: {current_page, total_pages, ...}, results}`` and the older
  ``{count, next, previous, results}``;
- created records: the invoice payment's ``{"payment": {...}}`` wrapper, or a flat record.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Final, Literal, get_args
from urllib.parse import quote

import orjson

from thred_bridge.domain import json_codec
from thred_bridge.errors import ThredAuthError, ThredError, ThredUnavailableError

Kind = Literal["customer", "invoice", "payment", "refund", "refund_payment", "payout"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

PARTNER_TOKEN_PATH: Final = "/v1/platform/oauth2/token/"  # noqa: S105 (a path, not a secret)
BUSINESSES_PATH: Final = "/v1/platform/businesses/"
DEFAULT_TOKEN_LIFETIME: Final = 3600.0  # every documented token response says 3600 s
MAX_PAGE_SIZE: Final = 100

_COLLECTIONS: Final[Mapping[Kind, str]] = {
    "customer": "customers/",
    "invoice": "invoices/",
    "payment": "invoices/payments/",
    "refund": "invoices/refunds/",
    "refund_payment": "invoices/refunds/{parent}/payments/",
    "payout": "payouts/",
}
_UNAVAILABLE: Final = frozenset({408, 425, 429})
_SNIPPET: Final = 200


@dataclass(frozen=True, slots=True)
class Created:
    """A record Thred holds after a create: ``created`` is False when Thred returned an existing one. ``body``
    is Thred's answer (of a large one, its top-level fields only: ``ThredClient`` reads it as it streams)."""

    id: str
    created: bool
    body: dict[str, Any] = field(repr=False)


# --- paths -------------------------------------------------------------------------------------


def _segment(value: str, what: str) -> str:
    if not value or not value.strip() or value in {".", ".."}:
        raise ValueError(f"{what} must be a non-empty id, got {value!r}")
    return quote(value, safe="")


def business_path(business_id: str) -> str:
    """``/v1/platform/businesses/{business_id}/``."""
    return f"{BUSINESSES_PATH}{_segment(business_id, 'business_id')}/"


def business_token_path(business_id: str) -> str:
    """Where a partner token buys a business token (not under ``/businesses/``)."""
    return f"/v1/platform/{_segment(business_id, 'business_id')}/oauth2/token/"


def path_for(kind: Kind, business_id: str, parent_id: str | None = None) -> str:
    """The collection path of ``kind``; ``parent_id`` is the refund of a refund payment, and only that."""
    if kind not in _COLLECTIONS:
        raise ValueError(f"unknown Thred kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "refund_payment":
        if parent_id is None:
            raise ValueError("a refund_payment needs parent_id (the Thred refund id)")
        tail = _COLLECTIONS[kind].format(parent=_segment(parent_id, "parent_id"))
    elif parent_id is not None:
        raise ValueError(f"a {kind} has no parent; parent_id is only for refund_payment")
    else:
        tail = _COLLECTIONS[kind]
    return business_path(business_id) + tail


def record_path(kind: Kind, business_id: str, record_id: str, parent_id: str | None = None) -> str:
    """The path of one record of ``kind``."""
    return f"{path_for(kind, business_id, parent_id)}{_segment(record_id, 'record_id')}/"


def delete_route(
    kind: Kind, business_id: str, record_id: str, parent_id: str | None = None
) -> tuple[Literal["POST", "DELETE"], str]:
    """How to delete: invoice payments are cancelled by ``POST …/{id}/delete/``; refund payments by DELETE."""
    if kind == "payment":
        return "POST", record_path(kind, business_id, record_id) + "delete/"
    if kind == "refund_payment":
        return "DELETE", record_path(kind, business_id, record_id, parent_id)
    raise ValueError(f"Thred documents no delete for a {kind}")


# --- bodies ------------------------------------------------------------------------------------


def _loads(body: bytes) -> Any:
    """The JSON in ``body`` (a payout's answer lists every payment: ``json_codec``); raises a ValueError."""
    return json_codec.loads(body)


def parse_json(status: int, body: bytes) -> Any:
    """The JSON of a successful answer, or None for an empty one."""
    if not body.strip():
        return None
    try:
        return _loads(body)
    except ValueError:
        raise ThredError(f"answer is not JSON: {_snippet(body)}", status=status) from None


def _as_object(body: bytes | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    data = parse_json(200, body) if isinstance(body, bytes) else body
    if not isinstance(data, Mapping):
        raise ThredError(f"{what} is not a JSON object: {type(data).__name__}")
    return data


def parse_created(kind: str, body: bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The record in a create or get answer, unwrapping ``{"payment": {...}}`` and the like.

    Raises ThredError if no record with an ``id`` is found.
    """
    data = _as_object(body, f"the {kind} answer")
    if "id" not in data:
        for key in (kind, "payment", "data", "result"):
            inner = data.get(key)
            if isinstance(inner, Mapping):
                data = inner
                break
    record_id = data.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, str | int) or record_id == "":
        raise ThredError(f"the {kind} answer has no record id (keys: {', '.join(sorted(data)) or 'none'})")
    return dict(data)


def parse_page(body: bytes | Mapping[str, Any] | list[Any]) -> tuple[list[dict[str, Any]], bool]:
    """The records of one list page and whether another page follows."""
    data = parse_json(200, body) if isinstance(body, bytes) else body
    if isinstance(data, list):
        return _records(data), False
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
        raise ThredError("list answer has no 'results' array")
    records = _records(data["results"])
    info = data.get("page_info")
    if isinstance(info, Mapping):
        has_next = info.get("has_next")
        if isinstance(has_next, bool):
            return records, has_next
        current, total = info.get("current_page"), info.get("total_pages")
        if isinstance(current, int) and isinstance(total, int):
            return records, current < total
    return records, bool(data.get("next"))


def _records(items: list[Any]) -> list[dict[str, Any]]:
    if not all(isinstance(item, Mapping) for item in items):
        raise ThredError("list answer holds something other than records")
    return [dict(item) for item in items]


def parse_token(body: bytes) -> tuple[str, float, str | None]:
    """``(access_token, expires_in, business_id)`` of a token answer; expires_in defaults to 3600 s."""
    try:
        data = _as_object(body, "the token answer")
    except ThredError:
        raise ThredAuthError("the token answer is not a JSON object") from None
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise ThredAuthError("the token answer has no access_token")
    lifetime = data.get("expires_in")
    if isinstance(lifetime, str) and lifetime.strip().isdigit():
        lifetime = int(lifetime)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    business_id = data.get("business_id")
    return token, float(lifetime), str(business_id) if business_id is not None else None


# --- errors ------------------------------------------------------------------------------------


def parse_error(status: int, body: bytes, headers: Mapping[str, str], *, now: datetime | None = None) -> ThredError:
    """The error for a non-2xx answer: 401/403 → ThredAuthError; 408/425/429/5xx →
    ThredUnavailableError (with ``retry_after`` in seconds); anything else → ThredError."""
    code: str | None
    message: str | None
    details: dict[str, list[str]]
    request_id: str | None
    try:
        payload = _loads(body) if body.strip() else None
    except ValueError:
        code, message, details, request_id = None, _describe_raw(status, body, headers), {}, None
    else:
        code, message, details, request_id = _read_error(payload)
        if message is None:
            message = _describe_raw(status, body, headers) if payload is None else _phrase(status)
    request_id = request_id or _header(headers, "x-request-id")
    if status in (401, 403):
        return ThredAuthError(message, status=status, code=code, details=details, request_id=request_id)
    if status in _UNAVAILABLE or status >= 500:
        error = ThredUnavailableError(
            message, status=status, code=code, retry_after=parse_retry_after(headers, now=now)
        )
        error.details, error.request_id = details, request_id
        return error
    return ThredError(message, status=status, code=code, details=details, request_id=request_id)


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delay-seconds or HTTP-date), never negative.

    An HTTP-date is measured from the answer's ``Date`` header (the server's own clock), else
    from ``now``; with neither, it cannot be turned into a delay and None is returned.
    """
    value = _header(headers, "retry-after")
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(_header(headers, "date") or "") or (_aware(now) if now is not None else None)
    if reference is None:
        return None
    return max(0.0, (when - reference).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        return _aware(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _read_error(payload: Any) -> tuple[str | None, str | None, dict[str, list[str]], str | None]:
    """``(code, message, details, request_id)`` from any documented error body."""
    if isinstance(payload, str):
        return None, payload or None, {}, None
    if isinstance(payload, list):
        return None, "; ".join(_strings(payload)) or None, {}, None
    if not isinstance(payload, Mapping):
        return None, None, {}, None
    nested = payload.get("error")
    if isinstance(nested, Mapping):  # {"error": {"code": ..., "message": ...}}
        code, message, details, request_id = _read_error(nested)
        return code, message, details, request_id or _text(payload.get("request_id"))
    code = _text(payload.get("error_code")) or _text(payload.get("code"))
    message = None
    for key in ("message", "error_description", "error", "detail", "msg"):
        message = _text(payload.get(key))
        if message is not None:
            break
    if code is None and "error_description" in payload:  # OAuth2: error is the code
        code = _text(payload.get("error"))
    details = {}
    for key in ("details", "detail", "errors"):
        details.update(_flatten(payload.get(key)))
    if not details and payload and all(isinstance(v, list) for v in payload.values()):
        details = _flatten(payload)  # DRF's bare {"field": ["message"]}; the status phrase is the message
    return code, message, details, _text(payload.get("request_id"))


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _flatten(value: Any, prefix: str = "") -> dict[str, list[str]]:
    """Field errors as ``{"field": ["message"]}``; nested objects become dotted field names."""
    if isinstance(value, Mapping):
        out: dict[str, list[str]] = {}
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, Mapping):
                out.update(_flatten(item, name))
            else:
                out[name] = _strings(item)
        return out
    if isinstance(value, list) and value:
        return {prefix or "non_field_errors": _strings(value)}
    return {}


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()]
    return [str(value)]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _describe_raw(status: int, body: bytes, headers: Mapping[str, str]) -> str:
    """A message for a body that is not JSON: the status phrase, the media type, a cleaned snippet."""
    text = _snippet(body)
    if not text:
        return _phrase(status)
    media = (_header(headers, "content-type") or "unknown type").split(";")[0].strip()
    return f"{_phrase(status)} (non-JSON {media} body: {text})"


def _snippet(body: bytes) -> str:
    text = body[: 64 * 1024].decode("utf-8", errors="replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        text = title.group(1)
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", text, flags=re.IGNORECASE | re.DOTALL)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"
