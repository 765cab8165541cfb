"""Mollie classic pings and next-gen signed events (processors/mollie/webhook.py).

Fixtures: ``classic_webhook_request_docs.http`` is the request on docs.mollie.com; the next-gen vector was
computed from the inputs of mollie-api-php's SignatureValidatorTest (Mollie publishes no fixed vector);
the two events are Mollie's API spec example and mollie-api-php's fake.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from thred_bridge.errors import PayloadError, PayloadTooLargeError, SignatureError
from thred_bridge.processors.mollie.webhook import (
    CLASSIC_MAX_BYTES,
    DEDUPE_WINDOW_S,
    bucket_of,
    check_id,
    classic_notice,
    nextgen_notice,
    notices,
    parse_classic,
    parse_event,
    sign,
    signatures_of,
    verify_signature,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mollie"
NOW = datetime(2024, 5, 2, 9, 15, 3, tzinfo=UTC)  # Unix 1714641303

# fixtures/mollie/nextgen_signature_vector_COMPUTED.json, embedded so a typo in the fixture cannot hide.
SECRET = "test_webhook_secret"
BODY = b'{"id":"tr_12345","event_type":"payment-link.paid"}'
HEX = "e479a5e4aaa17db94cfc546071e10e91c0b37f21e464e751ebdd7d7ad2ffd146"
HEADER = f"sha256={HEX}"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def docs_request_body() -> bytes:
    raw = (FIXTURES / "classic_webhook_request_docs.http").read_bytes()
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    assert b"Content-Type: application/x-www-form-urlencoded" in head
    return body


# ---------------------------------------------------------------------------------------------------------------
# classic pings


def test_the_documented_classic_request() -> None:
    body = docs_request_body()
    assert body.strip() == b"id=tr_5B8cwPMGnU6qLbRvo7qEZo"
    notice = classic_notice(body, NOW)
    assert notice.event_id == "tr_5B8cwPMGnU6qLbRvo7qEZo@1714641300"
    assert notice.event_type == "payment.ping"
    assert notice.object_key == "tr_5B8cwPMGnU6qLbRvo7qEZo"
    assert notice.body == body
    assert notice.account is None
    assert notice.handled


@pytest.mark.parametrize(
    ("resource_id", "resource", "handled"),
    [
        ("tr_7UhSN1zuXS", "payment", True),
        ("re_4qqhO89gsT", "refund", True),
        ("chb_n9z0tp", "chargeback", True),
        ("chb_xFzwUN4ci8HAmSGUACS4J", "chargeback", True),
        ("stl_jDk30akdN", "settlement", True),
        ("tr_12345", "payment", True),
        ("cpt_4qqhO89gsT", "capture", False),
        ("ord_kEn1PlbGa", "order", False),
        ("pl_4Y0eZitmBnQ6IDoMqZQKh", "payment-link", False),
        ("sub_rVKGtNd6s3", "subscription", False),
    ],
)
def test_good_ids(resource_id: str, resource: str, handled: bool) -> None:
    ping = parse_classic(f"id={resource_id}".encode())
    assert (ping.resource_id, ping.resource, ping.handled) == (resource_id, resource, handled)
    assert ping.event_type == f"{resource}.ping"
    notice = classic_notice(f"id={resource_id}".encode(), NOW)
    assert (notice.object_key, notice.event_type, notice.handled) == (resource_id, f"{resource}.ping", handled)


def test_other_form_fields_and_surrounding_whitespace_are_ignored() -> None:
    assert parse_classic(b"id=tr_7UhSN1zuXS&testmode=true\r\n").resource_id == "tr_7UhSN1zuXS"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the body is empty"),
        (b"   \n", "the body is empty"),
        (b"id=", "the id is empty"),
        (b"foo=bar", "the form has no id field"),
        (b"ID=tr_12345", "the form has no id field"),
        (b"id=tr_12345&id=tr_67890", "2 id fields"),
        (b"&&", "not form data"),
        (b"tr_12345", "not form data"),
        (b'{"id":"tr_12345"}', "JSON body without an X-Mollie-Signature"),
        (b"id=tr", "has no resource prefix"),
        (b"id=xx_12345", "unknown prefix 'xx_'"),
        (b"id=TR_12345", "unknown prefix 'TR_'"),
        (b"id=cst_8wmqcHMN4U", "unknown prefix 'cst_'"),
        (b"id=_12345", "unknown prefix '_'"),
        (b"id=tr_12%2445", "characters other than ASCII letters and digits"),
        (b"id=tr_12345%0A", "characters other than ASCII letters and digits"),
        (b"id=tr_1234+5", "characters other than ASCII letters and digits"),
        (b"id=tr_ab_cd1", "characters other than ASCII letters and digits"),
        (b"id=tr_%C3%A9abcd", "characters other than ASCII letters and digits"),
        (b"id=tr_%FFabcd", "characters other than ASCII letters and digits"),
        (b"id=tr_abc", "3 characters after tr_ (expected 4 to 64)"),
        (b"id=tr_" + b"a" * 65, "65 characters after tr_"),
        (b"id=tr_" + b"a" * 200, "characters long (at most 68)"),
        ("id=tr_é1234".encode(), "not ASCII"),
    ],
)
def test_garbage_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason.replace("+", r"\+").replace("(", r"\(").replace(")", r"\)")):
        classic_notice(body, NOW)


def test_an_oversize_body_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError, match="at most 1024"):
        parse_classic(b"id=tr_12345&pad=" + b"x" * CLASSIC_MAX_BYTES)


def test_check_id_accepts_its_own_resource_table() -> None:
    assert check_id("bal_gVMhHKqSSRYJyPsuoPNFH", {"bal": "balance"}) == "balance"
    with pytest.raises(PayloadError, match="unknown prefix 'tr_'"):
        check_id("tr_12345", {"bal": "balance"})


def test_pings_collapse_within_a_bucket_only() -> None:
    body = b"id=tr_7UhSN1zuXS"
    start = datetime.fromtimestamp(1714641300, UTC)
    same = {classic_notice(body, start + timedelta(seconds=s)).event_id for s in range(DEDUPE_WINDOW_S)}
    assert same == {"tr_7UhSN1zuXS@1714641300"}
    assert classic_notice(body, start + timedelta(seconds=DEDUPE_WINDOW_S)).event_id == "tr_7UhSN1zuXS@1714641310"
    assert classic_notice(body, start - timedelta(seconds=1)).event_id == "tr_7UhSN1zuXS@1714641290"
    # Another object in the same bucket is another event.
    assert classic_notice(b"id=tr_5B8cwPMGnU6qLbRvo7qEZo", start).event_id == "tr_5B8cwPMGnU6qLbRvo7qEZo@1714641300"


def test_the_window_is_a_parameter() -> None:
    body = b"id=tr_7UhSN1zuXS"
    assert classic_notice(body, NOW, window_s=60).event_id == "tr_7UhSN1zuXS@1714641300"
    assert classic_notice(body, NOW, window_s=1).event_id == "tr_7UhSN1zuXS@1714641303"
    assert classic_notice(body, NOW, window_s=3600).event_id == "tr_7UhSN1zuXS@1714640400"
    # The bucket is of the instant, whatever the clock's zone.
    assert bucket_of(datetime(2024, 5, 2, 11, 15, 3, tzinfo=timezone(timedelta(hours=2))), 60) == 1714641300


@pytest.mark.parametrize("window", [0, -5, True])
def test_a_bad_window_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match="window_s"):
        bucket_of(NOW, window)


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        classic_notice(b"id=tr_7UhSN1zuXS", datetime(2024, 5, 2, 9, 15, 3))


# ---------------------------------------------------------------------------------------------------------------
# next-gen signatures


def test_the_embedded_vector_is_the_fixture() -> None:
    vector = load("nextgen_signature_vector_COMPUTED.json")
    assert vector["signing_secret"] == SECRET
    assert vector["raw_body"].encode("utf-8") == BODY
    assert vector["expected_hex"] == HEX
    assert vector["X-Mollie-Signature"] == HEADER


def test_the_vector_verifies() -> None:
    assert sign(BODY, SECRET) == HEADER
    verify_signature(BODY, HEADER, [SECRET])
    verify_signature(BODY, [HEADER], [SECRET])


def test_upper_case_hex_and_a_bare_signature_verify() -> None:
    verify_signature(BODY, f"SHA256={HEX.upper()}", [SECRET])
    verify_signature(BODY, HEX, [SECRET])  # mollie-api-php accepts a value without the prefix


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b"paid", b"PAID"),
        BODY + b"\n",
        BODY.replace(b":", b": "),  # re-serialised JSON is another body
        b"",
    ],
)
def test_a_tampered_body_fails(body: bytes) -> None:
    with pytest.raises(SignatureError, match="no X-Mollie-Signature signature matches"):
        verify_signature(body, HEADER, [SECRET])


def test_a_wrong_secret_fails() -> None:
    with pytest.raises(SignatureError, match=r"1 signature\(s\), 2 secret\(s\)"):
        verify_signature(BODY, HEADER, ["alternate_webhook_secret", "VpQ3WukU6uSCGQ8TPTD3WPDpac3GyNEj"])


def test_rotation_any_configured_secret_verifies() -> None:
    new = "VpQ3WukU6uSCGQ8TPTD3WPDpac3GyNEj"
    verify_signature(BODY, HEADER, [new, SECRET])
    verify_signature(BODY, sign(BODY, new), [SECRET, new])
    verify_signature(BODY, sign(BODY, new), ["", new])


def test_several_signatures_in_one_header_or_several() -> None:
    old, new = sign(BODY, "old_secret"), sign(BODY, "new_secret")
    for header in (f"{old}, {new}", f"{old},{new}", [old, new], [f"{old}, {new}"], [new, old]):
        verify_signature(BODY, header, ["new_secret"])
        verify_signature(BODY, header, ["old_secret"])
    with pytest.raises(SignatureError, match=r"2 signature\(s\)"):
        verify_signature(BODY, f"{old}, {new}", [SECRET])
    assert signatures_of(f"{old} , sha512=abc, {new}") == [old[7:].encode(), new[7:].encode()]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no X-Mollie-Signature header"),
        ("", "no X-Mollie-Signature header"),
        ([], "no X-Mollie-Signature header"),
        (" , ", "no X-Mollie-Signature header"),
        ("sha256=", "garbled X-Mollie-Signature header"),
        ("sha256=xyz", "is not sha256=<64 hex digits>"),
        (f"sha256={HEX[:-1]}", "is not sha256=<64 hex digits>"),
        (f"sha256={HEX}0", "is not sha256=<64 hex digits>"),
        (f"sha256={HEX[:-1]}g", "is not sha256=<64 hex digits>"),
        (f"sha512={HEX}", "scheme 'sha512' is not sha256"),
        (f"v1={HEX}", "scheme 'v1' is not sha256"),
        (",".join([HEADER] * 17), "17 entries"),
    ],
)
def test_missing_or_garbled_headers(header: Any, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_signature(BODY, header, [SECRET])


def test_a_signature_with_no_configured_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="no Mollie webhook signing secret is configured"):
        verify_signature(BODY, HEADER, [])
    with pytest.raises(SignatureError, match="no Mollie webhook signing secret is configured"):
        verify_signature(BODY, HEADER, [""])


def test_only_raw_bytes_are_verified() -> None:
    with pytest.raises(TypeError, match="raw request bytes"):
        verify_signature(BODY.decode(), HEADER, [SECRET])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# next-gen events


def refund_event() -> bytes:
    refund = load("refund_get_openapi.json")
    event = {
        "resource": "event",
        "id": "event_Rf8pQ2wLkZ4sT9mBvXc3",
        "type": "refund.refunded",
        "entityId": refund["id"],
        "createdAt": "2023-03-14T17:12:40+00:00",
        "_embedded": {"entity": refund},
    }
    return orjson.dumps(event)


def test_the_spec_event_is_parsed() -> None:
    body = (FIXTURES / "nextgen_webhook_event_get_openapi.json").read_bytes()
    event = parse_event(body)
    assert event.id == "event_GvJ8WHrp5isUdRub9CJyH"
    assert event.type == "payment-link.paid"
    assert event.entity_id == "pl_qng5gbbv8NAZ5gpM5ZYgx"
    assert event.created_at == "2024-12-16T15:57:04+00:00"
    assert event.entity is None  # its snapshot is of pl_4Y0e…, not of the entity: dropped, entityId wins
    assert event.payment_id is None
    assert event.object_key == "pl_qng5gbbv8NAZ5gpM5ZYgx"
    assert not event.handled


def test_the_php_sdk_event_keeps_its_snapshot() -> None:
    body = (FIXTURES / "nextgen_webhook_event_php_sdk_fake.json").read_bytes()
    event = parse_event(body)
    assert (event.id, event.type, event.entity_id) == ("whe_gQMMaGqAVA", "payment-link.paid", "pl_4Y0eZitmBnQ5jsBYZIBw")
    assert event.entity is not None
    assert event.entity["amount"] == {"value": "10.00", "currency": "EUR"}


def test_a_signed_refund_event_is_keyed_by_its_payment() -> None:
    body = refund_event()
    notice = nextgen_notice(body, sign(body, SECRET), [SECRET])
    assert notice.event_id == "event_Rf8pQ2wLkZ4sT9mBvXc3"
    assert notice.event_type == "refund.refunded"
    assert notice.object_key == "tr_5B8cwPMGnU6qLbRvo7qEZo"
    assert notice.body == body
    assert notice.handled


def test_a_payment_event_is_keyed_by_the_payment_without_a_snapshot() -> None:
    body = b'{"resource":"event","id":"event_Pq7mZ3xW","type":"payment.paid","entityId":"tr_7UhSN1zuXS"}'
    notice = nextgen_notice(body, sign(body, SECRET), [SECRET])
    assert (notice.event_id, notice.object_key, notice.handled) == ("event_Pq7mZ3xW", "tr_7UhSN1zuXS", True)


def test_a_refund_event_without_a_snapshot_is_keyed_by_the_refund() -> None:
    body = b'{"resource":"event","id":"event_Pq7mZ3xW","type":"refund.failed","entityId":"re_4qqhO89gsT"}'
    assert parse_event(body).object_key == "re_4qqhO89gsT"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (BODY, "the event id 'tr_12345' is not an event_"),  # the vector's body verifies but is no event
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (b'{"resource":"payment","id":"tr_12345"}', "not a Mollie event: resource is 'payment'"),
        (b'{"id":"event_Abcd1234","entityId":"tr_12345"}', "no well-formed type"),
        (b'{"id":"event_Abcd1234","type":"Payment Paid","entityId":"tr_12345"}', "no well-formed type"),
        (b'{"id":"event_Abcd1234","type":"payment.paid"}', "no well-formed entityId"),
        (b'{"id":"event_Abcd1234","type":"payment.paid","entityId":"tr_1 2"}', "no well-formed entityId"),
        (
            b'{"id":"event_Abcd1234","type":"payment.paid","entityId":"tr_12345","_embedded":{"entity":[1]}}',
            "_embedded.entity is not an object",
        ),
    ],
)
def test_malformed_events_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_event(body)


def test_a_verified_body_that_is_no_event_is_refused_after_the_signature() -> None:
    with pytest.raises(PayloadError, match="not an event_"):
        nextgen_notice(BODY, HEADER, [SECRET])
    with pytest.raises(SignatureError):
        nextgen_notice(BODY, HEADER, ["wrong"])


# ---------------------------------------------------------------------------------------------------------------
# one delivery, either kind


def test_a_delivery_with_a_signature_header_is_next_gen() -> None:
    body = refund_event()
    (notice,) = notices(body, {"x-mollie-signature": sign(body, SECRET)}, [SECRET], NOW)
    assert notice.event_id == "event_Rf8pQ2wLkZ4sT9mBvXc3"
    rotating = [("X-Mollie-Signature", sign(body, "old")), ("X-Mollie-Signature", sign(body, SECRET))]
    (notice,) = notices(body, rotating, [SECRET], NOW)
    assert notice.event_type == "refund.refunded"
    with pytest.raises(SignatureError):
        notices(body, {"X-Mollie-Signature": sign(body, "old")}, [SECRET], NOW)


def test_a_delivery_without_one_is_a_classic_ping() -> None:
    (notice,) = notices(b"id=tr_7UhSN1zuXS", {"content-type": "application/x-www-form-urlencoded"}, [SECRET], NOW)
    assert (notice.event_id, notice.event_type) == ("tr_7UhSN1zuXS@1714641300", "payment.ping")
    (notice,) = notices(b"id=tr_7UhSN1zuXS", {}, [], NOW, window_s=60)
    assert notice.event_id == "tr_7UhSN1zuXS@1714641300"


def test_an_unsigned_event_is_not_taken_for_a_ping() -> None:
    with pytest.raises(PayloadError, match="JSON body without an X-Mollie-Signature header"):
        notices(refund_event(), {}, [SECRET], NOW)
