"""thred/wire.py: paths, both error shapes, non-JSON bodies, Retry-After, list envelopes, records."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from thred_bridge.errors import ThredAuthError, ThredError, ThredUnavailableError
from thred_bridge.thred import wire

B = "6f1c2c4e-0000-4000-8000-000000000001"


def body(value: object) -> bytes:
    return orjson.dumps(value)


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "tail"),
    [
        ("customer", "customers/"),
        ("invoice", "invoices/"),
        ("payment", "invoices/payments/"),
        ("refund", "invoices/refunds/"),
        ("payout", "payouts/"),
    ],
)
def test_path_for_each_kind(kind: wire.Kind, tail: str) -> None:
    assert wire.path_for(kind, B) == f"/v1/platform/businesses/{B}/{tail}"


def test_refund_payment_path_needs_its_refund() -> None:
    assert wire.path_for("refund_payment", B, "r1") == f"/v1/platform/businesses/{B}/invoices/refunds/r1/payments/"
    with pytest.raises(ValueError, match="parent_id"):
        wire.path_for("refund_payment", B)
    with pytest.raises(ValueError, match="only for refund_payment"):
        wire.path_for("customer", B, "r1")


def test_kinds_lists_every_kind() -> None:
    assert set(wire.KINDS) == {"customer", "invoice", "payment", "refund", "refund_payment", "payout"}
    for kind in wire.KINDS:
        assert wire.path_for(kind, B, "r1" if kind == "refund_payment" else None).endswith("/")


def test_ids_cannot_escape_their_segment() -> None:
    assert wire.record_path("customer", B, "a/b?c") == f"/v1/platform/businesses/{B}/customers/a%2Fb%3Fc/"
    for bad in ("", " ", "..", "."):
        with pytest.raises(ValueError, match="non-empty id"):
            wire.path_for("customer", bad)


def test_token_and_business_paths() -> None:
    assert wire.PARTNER_TOKEN_PATH == "/v1/platform/oauth2/token/"
    assert wire.business_token_path(B) == f"/v1/platform/{B}/oauth2/token/"
    assert wire.business_path(B) == f"/v1/platform/businesses/{B}/"


def test_delete_routes() -> None:
    prefix = f"/v1/platform/businesses/{B}/invoices"
    assert wire.delete_route("payment", B, "p1") == ("POST", f"{prefix}/payments/p1/delete/")
    assert wire.delete_route("refund_payment", B, "rp1", "r1") == (
        "DELETE",
        f"{prefix}/refunds/r1/payments/rp1/",
    )
    with pytest.raises(ValueError, match="no delete"):
        wire.delete_route("invoice", B, "i1")


# --- errors ------------------------------------------------------------------------------------


def test_guide_error_shape() -> None:
    raw = body({"error": "Invalid data", "error_code": "validation_error", "details": {"email": ["Bad email"]}})
    error = wire.parse_error(400, raw, {})
    assert type(error) is ThredError
    assert (error.status, error.code, error.message) == (400, "validation_error", "Invalid data")
    assert error.details == {"email": ["Bad email"]}
    assert error.describe() == "Thred 400 validation_error: Invalid data (email: Bad email)"


def test_reference_error_shape() -> None:
    raw = body(
        {
            "error_code": "invoice_not_found",
            "message": "Invoice not found",
            "detail": {"invoice_id": "unknown", "lines": {"0": ["bad quantity"]}},
            "request_id": "req_123",
        }
    )
    error = wire.parse_error(404, raw, {})
    assert (error.code, error.message, error.request_id) == (
        "invoice_not_found",
        "Invoice not found",
        "req_123",
    )
    assert error.details == {"invoice_id": ["unknown"], "lines.0": ["bad quantity"]}


def test_drf_and_oauth_shapes() -> None:
    drf = wire.parse_error(400, body({"external_id": ["This field is required."]}), {})
    assert drf.message == "Bad Request"
    assert drf.details == {"external_id": ["This field is required."]}
    detail = wire.parse_error(401, body({"detail": "Authentication credentials were not provided."}), {})
    assert detail.message == "Authentication credentials were not provided."
    oauth = wire.parse_error(401, body({"error": "invalid_client", "error_description": "Bad secret"}), {})
    assert (oauth.code, oauth.message) == ("invalid_client", "Bad secret")
    nested = wire.parse_error(409, body({"error": {"code": "duplicate_external_id", "message": "Exists"}}), {})
    assert (nested.code, nested.message) == ("duplicate_external_id", "Exists")


def test_html_body_becomes_a_short_message() -> None:
    page = b"<html><head><title>502 Bad Gateway</title><style>p{}</style></head><body>nginx</body></html>"
    error = wire.parse_error(502, page, {"Content-Type": "text/html; charset=utf-8"})
    assert isinstance(error, ThredUnavailableError)
    assert error.message == "Bad Gateway (non-JSON text/html body: 502 Bad Gateway)"
    long = wire.parse_error(500, b"x" * 5000, {})
    assert len(long.message) < 300


def test_empty_and_odd_bodies() -> None:
    assert wire.parse_error(404, b"", {}).message == "Not Found"
    assert wire.parse_error(599, b"", {}).message == "HTTP 599"
    assert wire.parse_error(400, body(["one", "two"]), {}).message == "one; two"
    assert wire.parse_error(400, body("plain"), {}).message == "plain"
    assert wire.parse_error(400, body(42), {}).message == "Bad Request"
    assert wire.parse_error(500, b"\xff\xfe not utf-8", {}).status == 500


def test_request_id_from_header() -> None:
    assert wire.parse_error(500, b"", {"X-Request-ID": "abc"}).request_id == "abc"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ThredError),
        (404, ThredError),
        (409, ThredError),
        (422, ThredError),
        (401, ThredAuthError),
        (403, ThredAuthError),
        (408, ThredUnavailableError),
        (425, ThredUnavailableError),
        (429, ThredUnavailableError),
        (500, ThredUnavailableError),
        (502, ThredUnavailableError),
        (503, ThredUnavailableError),
    ],
)
def test_status_picks_the_error_class(status: int, cls: type[ThredError]) -> None:
    error = wire.parse_error(status, body({"error": "x", "error_code": "c"}), {})
    assert type(error) is cls
    assert error.status == status


def test_unavailable_keeps_code_details_and_request_id() -> None:
    raw = body({"error_code": "overloaded", "message": "Busy", "detail": {"queue": ["full"]}, "request_id": "r9"})
    error = wire.parse_error(503, raw, {"Retry-After": "3"})
    assert isinstance(error, ThredUnavailableError)
    assert (error.code, error.message, error.request_id, error.retry_after) == (
        "overloaded",
        "Busy",
        "r9",
        3.0,
    )
    assert error.details == {"queue": ["full"]}


# --- Retry-After -------------------------------------------------------------------------------

NOW = datetime(2025, 1, 6, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({}, None),
        # HTTP-date against the answer's own Date header (the server's clock), not ours
        ({"Retry-After": "Mon, 06 Jan 2025 12:00:30 GMT", "Date": "Mon, 06 Jan 2025 12:00:00 GMT"}, 30.0),
        ({"Retry-After": "Mon, 06 Jan 2025 11:59:00 GMT", "Date": "Mon, 06 Jan 2025 12:00:00 GMT"}, 0.0),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert wire.parse_retry_after(headers) == expected
    error = wire.parse_error(429, b"", headers)
    assert isinstance(error, ThredUnavailableError)
    assert error.retry_after == expected


def test_retry_after_date_without_date_header_uses_now() -> None:
    headers = {"Retry-After": "Mon, 06 Jan 2025 12:01:00 GMT"}
    assert wire.parse_retry_after(headers) is None
    assert wire.parse_retry_after(headers, now=NOW) == 60.0
    assert wire.parse_retry_after(headers, now=NOW.replace(tzinfo=None)) == 60.0
    error = wire.parse_error(503, b"", headers, now=NOW)
    assert isinstance(error, ThredUnavailableError)
    assert error.retry_after == 60.0


# --- pages -------------------------------------------------------------------------------------


def page_info(current: int, total: int) -> dict[str, object]:
    return {
        "count": 250,
        "page_info": {"total_count": 250, "current_page": current, "total_pages": total, "page_size": 100},
        "results": [{"id": f"c{current}"}],
    }


def test_page_info_shape() -> None:
    assert wire.parse_page(body(page_info(1, 3))) == ([{"id": "c1"}], True)
    assert wire.parse_page(body(page_info(3, 3))) == ([{"id": "c3"}], False)
    assert wire.parse_page(body({"count": 0, "page_info": {"current_page": 1, "total_pages": 0}, "results": []})) == (
        [],
        False,
    )
    assert wire.parse_page({"page_info": {"has_next": True}, "results": []}) == ([], True)


def test_older_next_previous_shape() -> None:
    more = {
        "count": 3,
        "next": "https://x/v1/platform/businesses/?page=2",
        "previous": None,
        "results": [{"id": 1}],
    }
    last = {"count": 3, "next": None, "previous": "https://x/?page=1", "results": [{"id": 3}]}
    assert wire.parse_page(body(more)) == ([{"id": 1}], True)
    assert wire.parse_page(body(last)) == ([{"id": 3}], False)


def test_bare_list_and_bad_pages() -> None:
    assert wire.parse_page(body([{"id": "a"}])) == ([{"id": "a"}], False)
    with pytest.raises(ThredError, match="results"):
        wire.parse_page(body({"count": 1}))
    with pytest.raises(ThredError, match="other than records"):
        wire.parse_page(body({"results": ["a"]}))
    with pytest.raises(ThredError, match="not JSON"):
        wire.parse_page(b"<html></html>")


# --- records and tokens ------------------------------------------------------------------------


def test_wrapped_and_flat_payment() -> None:
    record = {"id": "p1", "external_id": "stripe_ch_1", "total_amount_cents": 1000}
    assert wire.parse_created("payment", body({"payment": record})) == record
    assert wire.parse_created("payment", body(record)) == record
    assert wire.parse_created("customer", {"customer": {"id": "c1"}}) == {"id": "c1"}


def test_record_without_id_is_refused() -> None:
    with pytest.raises(ThredError, match="no record id"):
        wire.parse_created("payment", body({"payment": {"status": "pending"}}))
    with pytest.raises(ThredError, match="not a JSON object"):
        wire.parse_created("invoice", body([1]))
    with pytest.raises(ThredError, match="no record id"):
        wire.parse_created("invoice", body({"id": True}))


def test_parse_json() -> None:
    assert wire.parse_json(204, b"") is None
    assert wire.parse_json(200, b'{"a": 1}') == {"a": 1}
    with pytest.raises(ThredError, match="not JSON"):
        wire.parse_json(200, b"<p>hi</p>")


def test_parse_token() -> None:
    answer = {"access_token": "t", "token_type": "Bearer", "expires_in": 120, "business_id": B}
    assert wire.parse_token(body(answer)) == ("t", 120.0, B)
    assert wire.parse_token(body({"access_token": "t"})) == ("t", 3600.0, None)
    assert wire.parse_token(body({"access_token": "t", "expires_in": "86400"}))[1] == 86400.0
    with pytest.raises(ThredAuthError, match="no access_token"):
        wire.parse_token(body({"expires_in": 3600}))
    with pytest.raises(ThredAuthError, match="not a JSON object"):
        wire.parse_token(b"nope")


def test_created_repr_hides_the_body() -> None:
    created = wire.Created(id="c1", created=True, body={"email": "a@b"})
    assert "a@b" not in repr(created)
