"""Stripe-Signature verification and snapshot-event parsing (processors/stripe/webhook.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from thred_bridge.errors import PayloadError, SignatureError
from thred_bridge.processors.stripe.webhook import (
    HANDLED_TYPES,
    TOLERANCE_S,
    parse_event,
    sign_header,
    verify,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"

# shared/examples/stripe/signature_vector_COMPUTED.json: computed with stripe-python 16.1.0 from the inputs of
# its tests/test_webhook.py (Stripe publishes no fixed vector). Embedded so the suite stands alone; the test
# below checks it against the shared copy when one is beside the repository.
VECTOR: dict[str, Any] = {
    "secret": "whsec_test_secret",
    "timestamp": 1700000000,
    "raw_body": '{\n  "id": "evt_test_webhook",\n  "object": "event",\n'
    '  "data": { "object": { "id": "rdr_123", "object": "terminal.reader" } }\n}',
    "expected_v1_hex": "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd",
    "stripe_signature_header": "t=1700000000,v1=3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd",
    "rotation_example": {
        "old_secret": "whsec_old_secret",
        "header_with_two_v1_and_a_v0": "t=1700000000,"
        "v1=6b8526f4a44bb7a817ad2cb8b27706b926c9b563164e8c1e15dab9acd8d51d57,"
        "v1=3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd,"
        "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
    },
}
BODY = VECTOR["raw_body"].encode("utf-8")
SECRET = VECTOR["secret"]
T = VECTOR["timestamp"]
AT_T = datetime.fromtimestamp(T, UTC)


def _shared_vector() -> Path | None:
    here = Path(__file__).resolve()
    for root in (*here.parents, Path("/work")):
        candidate = root / "shared" / "examples" / "stripe" / "signature_vector_COMPUTED.json"
        if candidate.is_file():
            return candidate
    return None


def test_the_embedded_vector_is_the_shared_one() -> None:
    path = _shared_vector()
    if path is None:
        pytest.skip("no shared/examples beside this checkout")
    shared = json.loads(path.read_text())
    for key, value in VECTOR.items():
        if isinstance(value, dict):
            assert {k: shared[key][k] for k in value} == value, key
        else:
            assert shared[key] == value, key
    assert shared["signed_payload"].encode("utf-8") == b"%d." % T + BODY


def test_the_computed_vector_verifies() -> None:
    assert sign_header(BODY, SECRET, T) == VECTOR["stripe_signature_header"]
    verify(BODY, VECTOR["stripe_signature_header"], [SECRET], AT_T)


def test_rotation_header_with_two_v1_and_a_v0_verifies_with_either_secret() -> None:
    header = VECTOR["rotation_example"]["header_with_two_v1_and_a_v0"]
    old = VECTOR["rotation_example"]["old_secret"]
    verify(BODY, header, [SECRET], AT_T)
    verify(BODY, header, [old], AT_T)
    verify(BODY, header, ["whsec_unrelated", old], AT_T)
    assert sign_header(BODY, old, T, more_secrets=[SECRET]).count("v1=") == 2


def test_a_v0_alone_is_ignored() -> None:
    v0 = VECTOR["rotation_example"]["header_with_two_v1_and_a_v0"].split(",")[-1]
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify(BODY, f"t={T},{v0}", [SECRET], AT_T)


def test_a_v0_holding_the_right_mac_does_not_count() -> None:
    right = VECTOR["expected_v1_hex"]
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify(BODY, f"t={T},v0={right}", [SECRET], AT_T)


def test_tolerance_is_300_seconds_either_side() -> None:
    header = VECTOR["stripe_signature_header"]
    with freeze_time(AT_T + timedelta(seconds=299)):
        verify(BODY, header, [SECRET], datetime.now(UTC))
    stale = r"stale timestamp: signed 301 s ago \(tolerance 300 s\)"
    with freeze_time(AT_T + timedelta(seconds=301)), pytest.raises(SignatureError, match=stale):
        verify(BODY, header, [SECRET], datetime.now(UTC))
    with freeze_time(AT_T - timedelta(seconds=299)):
        verify(BODY, header, [SECRET], datetime.now(UTC))
    with freeze_time(AT_T - timedelta(seconds=301)), pytest.raises(SignatureError, match="301 s in the future"):
        verify(BODY, header, [SECRET], datetime.now(UTC))
    assert TOLERANCE_S == 300


def test_the_boundary_is_exact_to_the_microsecond() -> None:
    header = VECTOR["stripe_signature_header"]
    verify(BODY, header, [SECRET], AT_T + timedelta(seconds=300))
    with pytest.raises(SignatureError, match="stale"):
        verify(BODY, header, [SECRET], AT_T + timedelta(seconds=300, microseconds=1))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Stripe-Signature header"),
        ("", "no Stripe-Signature header"),
        ("   ", "no Stripe-Signature header"),
        ("v1=abc", "no t= timestamp"),
        ("garbage", "no t= timestamp"),
        ("t=abc,v1=abc", "t='abc' is not an integer"),
        ("t=-5,v1=abc", "is not an integer"),
        ("t=1.5,v1=abc", "is not an integer"),
        (f"t={T},t={T},v1=abc", "more than one t="),
        (f"t={'9' * 5000},v1=abc", "is not an integer"),
        (f"t={T}", "no v1 signature"),
        (f"t={T},v2=abc", "no v1 signature"),
        (f"t={T},v1=00", "no v1 signature matches any configured secret"),
    ],
)
def test_every_refusal_says_why(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(BODY, header, [SECRET], AT_T)


def test_no_configured_secret_is_a_refusal() -> None:
    with pytest.raises(SignatureError, match="no Stripe signing secret"):
        verify(BODY, VECTOR["stripe_signature_header"], [], AT_T)
    with pytest.raises(SignatureError, match="no Stripe signing secret"):
        verify(BODY, VECTOR["stripe_signature_header"], [""], AT_T)


def test_a_wrong_secret_fails_even_when_fresh() -> None:
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(BODY, VECTOR["stripe_signature_header"], ["whsec_other"], AT_T)


def test_forgery_is_reported_as_a_mismatch_not_as_stale() -> None:
    late = AT_T + timedelta(days=1)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(BODY, f"t={T},v1={'0' * 64}", [SECRET], late)


def test_spaces_around_header_items_are_tolerated() -> None:
    mac = VECTOR["expected_v1_hex"]
    verify(BODY, f"t={T}, v1={mac} ", [SECRET], AT_T)


def test_the_raw_bytes_are_signed_not_a_re_encoding() -> None:
    body = '{\n  "id": "evt_1",\t"name": "Zoë Ünal ✓",  "amount": 1.50 }\r\n'.encode()
    header = sign_header(body, SECRET, T)
    verify(body, header, [SECRET], AT_T)
    reserialised = json.dumps(json.loads(body)).encode()
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(reserialised, header, [SECRET], AT_T)
    ascii_escaped = json.dumps(json.loads(body), ensure_ascii=True, indent=2).encode()
    with pytest.raises(SignatureError):
        verify(ascii_escaped, header, [SECRET], AT_T)
    latin1 = body.decode("utf-8").encode("latin-1", "replace")
    with pytest.raises(SignatureError):
        verify(latin1, header, [SECRET], AT_T)


def test_bytes_that_are_not_utf8_still_verify() -> None:
    body = b'{"id": "evt_1", "junk": "\xff\xfe"}'
    verify(body, sign_header(body, SECRET, T), [SECRET], AT_T)


def test_text_is_refused_as_a_programming_error() -> None:
    with pytest.raises(TypeError, match="raw request bytes"):
        verify(VECTOR["raw_body"], VECTOR["stripe_signature_header"], [SECRET], AT_T)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(BODY, VECTOR["stripe_signature_header"], [SECRET], datetime(2023, 11, 14, 22, 13, 20))


# ---- parse_event -------------------------------------------------------------------------------------


def test_charge_succeeded_fixture() -> None:
    event = parse_event((FIXTURES / "event_charge_succeeded.json").read_bytes())
    assert event.id == "evt_3SCRUBBEDvat000000000001"
    assert event.type == "charge.succeeded"
    assert event.account is None
    assert event.livemode is False
    assert event.created == 1761904802
    assert event.object_id == event.charge_id == "ch_3SCRUBBEDvat000000000001"
    assert event.object_type == "charge"
    assert event.handled


def test_payment_intent_fixture_names_its_latest_charge_and_account() -> None:
    event = parse_event((FIXTURES / "event_payment_intent_succeeded.json").read_bytes())
    assert event.type == "payment_intent.succeeded"
    assert event.account == "acct_1SCRUBBEDconnect1"
    assert event.object_id == "pi_3SCRUBBEDfx0000000000001"
    assert event.object_type == "payment_intent"
    assert event.charge_id == "ch_3SCRUBBEDfx0000000000001"


def _event(obj: dict[str, Any], type_: str = "charge.succeeded") -> bytes:
    envelope = {"id": "evt_1", "object": "event", "type": type_, "created": 1, "livemode": True}
    return json.dumps({**envelope, "data": {"object": obj}}).encode()


@pytest.mark.parametrize(
    ("obj", "charge_id"),
    [
        ({"id": "pi_1", "object": "payment_intent", "latest_charge": {"id": "ch_x", "object": "charge"}}, "ch_x"),
        ({"id": "pi_1", "object": "payment_intent", "latest_charge": None}, None),
        ({"id": "pi_1", "object": "payment_intent", "charges": {"data": [{"id": "ch_old"}]}}, "ch_old"),
        ({"id": "re_1", "object": "refund", "charge": "ch_r"}, "ch_r"),
        ({"id": "dp_1", "object": "dispute", "charge": {"id": "ch_d"}}, "ch_d"),
        ({"id": "po_1", "object": "payout"}, None),
    ],
)
def test_charge_id_of_other_objects(obj: dict[str, Any], charge_id: str | None) -> None:
    event = parse_event(_event(obj, "something.happened"))
    assert event.charge_id == charge_id
    assert event.livemode is True
    assert not event.handled


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON list, not an event"),
        (b'"evt_1"', "JSON str"),
        (b'{"object": "event", "type": "charge.succeeded"}', "no id"),
        (b'{"id": "evt_1", "object": "event"}', "has no type"),
        (b'{"id": "evt_1", "object": "v2.core.event", "type": "v1.charge.succeeded"}', "thin events"),
        (b'{"id": "ch_1", "object": "charge", "type": "x"}', "not a Stripe event"),
        (b'{"id": "evt_1", "type": "x", "created": "yesterday", "data": {"object": {}}}', "created"),
        (b'{"id": "evt_1", "type": "x", "created": 1, "livemode": "no", "data": {"object": {}}}', "livemode"),
        (b'{"id": "evt_1", "type": "x", "created": 1}', "no data.object"),
    ],
)
def test_parse_refusals(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_event(body)


def test_thin_event_message_tells_the_operator_what_to_do() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_event(b'{"id": "evt_1", "object": "v2.core.event", "type": "v1.charge.succeeded"}')
    assert caught.value.message == "thin events are not supported; configure a snapshot (v1) endpoint"


def test_handled_types() -> None:
    assert (
        frozenset(
            {
                "charge.succeeded",
                "charge.captured",
                "payment_intent.succeeded",
                "charge.refunded",
                "charge.refund.updated",
                "refund.created",
                "refund.updated",
                "refund.failed",
                "charge.dispute.created",
                "charge.dispute.funds_withdrawn",
                "charge.dispute.funds_reinstated",
                "charge.dispute.updated",
                "charge.dispute.closed",
                "payout.paid",
                "payout.failed",
                "payout.canceled",
                "payout.updated",
                "payout.reconciliation_completed",
            }
        )
        == HANDLED_TYPES
    )
    assert "payout.created" not in HANDLED_TYPES


@pytest.mark.parametrize(
    ("name", "type_", "charge_id", "object_id"),
    [
        ("event_charge_dispute_created.json", "charge.dispute.created", "ch_fakefakefakefakefake0001", None),
        ("event_charge_dispute_funds_withdrawn.json", "charge.dispute.funds_withdrawn", None, None),
        ("event_charge_dispute_funds_reinstated.json", "charge.dispute.funds_reinstated", None, None),
        ("event_payout_paid.json", "payout.paid", None, "po_1HN84zFBTNPFnHZBwVxSjVft"),
        ("event_charge_refunded.json", "charge.refunded", "ch_chargeid", "ch_chargeid"),
    ],
)
def test_dispute_and_payout_events_are_handled(
    name: str, type_: str, charge_id: str | None, object_id: str | None
) -> None:
    event = parse_event((FIXTURES / name).read_bytes())
    assert event.type == type_
    assert event.handled
    if type_ == "charge.refunded":  # pay-rails' partial refund: the event carries the charge
        assert (event.object_type, event.object_id, event.charge_id) == ("charge", object_id, charge_id)
    elif type_.startswith("payout."):
        assert event.charge_id is None
        assert event.object_id == object_id
        assert event.object_type == "payout"
    else:
        assert event.object_type == "dispute"
        assert event.charge_id is not None
        assert event.charge_id.startswith("ch_")
        if charge_id is not None:
            assert event.charge_id == charge_id
