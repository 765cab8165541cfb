"""Adyen Standard webhooks: per-item HMAC with Adyen's published vectors, rotation, refusals, parsing
(adyen/notification.py).

The vectors are Adyen/adyen-python-api-library's (``test/UtilTest.py``, ``test/mocks/util/*.json``), copied
into fixtures/adyen/ with the OpenAPI examples re-signed with vector A's published test key.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from thred_bridge.errors import PayloadError
from thred_bridge.processors.adyen.notification import (
    NotificationItem,
    parse_envelope,
    parse_item,
    sign_item,
    signature_problem,
    signing_string,
    verify_notification,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "adyen"
VECTORS = json.loads((FIXTURES / "hmac_test_vectors.json").read_text())["standard_notification_vectors"]
KEY_A = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
KEY_B = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
OTHER_KEY = "00" * 32


def _vector_item(vector: dict[str, Any]) -> dict[str, Any]:
    if "notification_request_item" in vector:
        item: dict[str, Any] = copy.deepcopy(vector["notification_request_item"])
        item["additionalData"] = {"hmacSignature": vector["expected_hmacSignature"]}
        return item
    loaded: dict[str, Any] = json.loads((FIXTURES / vector["notification_request_item_file"]).read_text())
    return loaded


def _body(*items: dict[str, Any], live: object = "false") -> bytes:
    return orjson.dumps({"live": live, "notificationItems": [{"NotificationRequestItem": i} for i in items]})


def _signed(item: dict[str, Any], key: str = KEY_A) -> dict[str, Any]:
    item = copy.deepcopy(item)
    item.setdefault("additionalData", {})["hmacSignature"] = sign_item(item, key)
    return item


def _example(name: str) -> dict[str, Any]:
    """An OpenAPI example, re-signed with KEY_A (fixtures/adyen/computed_signed)."""
    data = json.loads((FIXTURES / "computed_signed" / f"{name}_signed_with_test_key.json").read_text())
    item: dict[str, Any] = data["notificationItems"][0]["NotificationRequestItem"]
    return item


VECTOR_IDS = ["A", "backslash", "colon", "forwardslash", "mixed"]


@pytest.mark.parametrize("vector", VECTORS, ids=VECTOR_IDS)
def test_published_vectors_sign_as_adyen_does(vector: dict[str, Any]) -> None:
    item = _vector_item(vector)
    assert signing_string(item) == vector["signing_string"]
    assert sign_item(item, vector["hmac_key_hex"]) == vector["expected_hmacSignature"]
    assert signature_problem(item, [vector["hmac_key_hex"]]) is None


def test_the_slash_vectors_keep_their_characters_unescaped() -> None:
    references = [_vector_item(v)["merchantReference"] for v in VECTORS[1:]]
    assert references == ["\\\\slashes are fun", ":slashes are fun", "//slashes are fun", "\\:/\\/slashes are fun"]
    assert signing_string(_vector_item(VECTORS[4])).split(":")[3:6] == ["\\", "/\\/slashes are fun", "1000"]


@pytest.mark.parametrize("vector", VECTORS, ids=VECTOR_IDS)
def test_published_vectors_verify_as_a_delivery(vector: dict[str, Any]) -> None:
    item = _vector_item(vector)
    batch = verify_notification(_body(item), [vector["hmac_key_hex"]], item["merchantAccountCode"])
    assert batch.refused == ()
    assert [i.psp_reference for i in batch.valid] == [item["pspReference"]]
    assert batch.valid[0].merchant_reference == item["merchantReference"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("merchantReference", "\\slashes are fun"),
        ("pspReference", "T7FD4VM4D3RZNN83"),
        ("eventCode", "CAPTURE"),
        ("success", "false"),
        ("originalReference", "X"),
        ("merchantAccountCode", "AntoniStroinsk"),
    ],
)
def test_a_tampered_item_does_not_verify(field: str, value: str) -> None:
    item = _vector_item(VECTORS[1])
    item[field] = value
    problem = signature_problem(item, [KEY_B])
    assert problem is not None
    assert "matches none of the 1 usable HMAC key" in problem


def test_a_tampered_amount_does_not_verify() -> None:
    item = _vector_item(VECTORS[4])
    item["amount"]["value"] = 1001
    assert signature_problem(item, [KEY_B]) is not None
    item["amount"] = {"value": 1000, "currency": "USD"}
    assert signature_problem(item, [KEY_B]) is not None


def test_every_item_of_a_batch_is_checked_not_only_the_first() -> None:
    good = _vector_item(VECTORS[1])
    tampered = _vector_item(VECTORS[2])
    tampered["amount"]["value"] = 999_999
    batch = verify_notification(_body(good, tampered), [KEY_B], "AntoniStroinski")
    assert [i.psp_reference for i in batch.valid] == ["T7FD4VM4D3RZNN82"]
    assert len(batch.refused) == 1
    refused = batch.refused[0]
    assert (refused.index, refused.psp_reference, refused.event_code) == (1, "M8NB66SBZSGLNK82", "AUTHORISATION")
    assert refused.reason.startswith("bad HMAC signature: hmacSignature matches none")


def test_rotation_the_second_key_matches() -> None:
    item = _vector_item(VECTORS[3])
    assert signature_problem(item, [OTHER_KEY, KEY_B]) is None
    assert signature_problem(item, [KEY_B, OTHER_KEY]) is None
    assert signature_problem(item, [KEY_A, OTHER_KEY]) == (
        "hmacSignature matches none of the 2 usable HMAC key(s) (wrong key, or the item was altered)"
    )
    batch = verify_notification(_body(item), [KEY_A, KEY_B.lower()], "AntoniStroinski")
    assert len(batch.valid) == 1


def test_garbled_keys_are_named_not_fatal() -> None:
    item = _vector_item(VECTORS[3])
    assert signature_problem(item, ["not-hex", KEY_B]) is None
    assert signature_problem(item, ["not-hex"]) == "no usable HMAC key: configured key #1 is not hex"
    assert signature_problem(item, [KEY_A, "ABC"]) == (
        "hmacSignature matches none of the 1 usable HMAC key(s) (wrong key, or the item was altered); "
        "configured key #2 is not hex"
    )
    assert signature_problem(item, []) == "no HMAC key is configured for this connection"
    with pytest.raises(ValueError, match="not hex"):
        sign_item(item, "zz")


def test_missing_signature_reasons() -> None:
    item = _vector_item(VECTORS[0])
    del item["additionalData"]
    assert signature_problem(item, [KEY_A]) == (
        "no additionalData, so no hmacSignature (is HMAC signing enabled for this webhook?)"
    )
    item["additionalData"] = {"authCode": "1"}
    assert signature_problem(item, [KEY_A]) == (
        "additionalData has no hmacSignature (is HMAC signing enabled for this webhook?)"
    )
    item["additionalData"] = {"hmacSignature": ""}
    assert signature_problem(item, [KEY_A]) == "additionalData.hmacSignature is empty or not a string"
    item["additionalData"] = ["x"]
    assert signature_problem(item, [KEY_A]) == "additionalData is a list, not an object"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"success": True}, "cannot be verified: success is True (bool); Adyen sends a string"),
        ({"amount": {"value": 1130.0, "currency": "EUR"}}, "cannot be verified: amount.value is 1130.0 (float)"),
        ({"amount": "1130 EUR"}, "cannot be verified: amount is a str, not an object"),
    ],
)
def test_re_serialised_values_are_refused_with_the_reason(change: dict[str, Any], reason: str) -> None:
    item = _vector_item(VECTORS[0]) | change
    problem = signature_problem(item, [KEY_A])
    assert problem is not None
    assert problem.startswith(reason)


def test_a_verified_item_for_another_merchant_account_is_refused() -> None:
    item = _vector_item(VECTORS[0])
    batch = verify_notification(_body(item), [KEY_A], "OtherMerchant")
    assert batch.valid == ()
    assert batch.refused[0].reason == (
        "merchantAccountCode 'TestMerchant' is not this connection's merchant account 'OtherMerchant'"
    )


def test_a_forged_item_is_refused_for_its_signature_before_its_account() -> None:
    item = _vector_item(VECTORS[0])
    item["merchantAccountCode"] = "OtherMerchant"
    batch = verify_notification(_body(item), [KEY_A], "OtherMerchant")
    assert batch.refused[0].reason.startswith("bad HMAC signature")


def test_a_signed_but_malformed_item_is_refused() -> None:
    item = _example("CAPTURE")
    del item["eventDate"]
    batch = verify_notification(_body(_signed(item)), [KEY_A], "YOUR_MERCHANT_ACCOUNT")
    assert batch.valid == ()
    assert batch.refused[0].reason == "malformed item: eventDate is missing"


def test_an_element_without_its_wrapper_is_refused() -> None:
    good = _example("CAPTURE")
    body = orjson.dumps({"live": "false", "notificationItems": [good, {"NotificationRequestItem": good}]})
    batch = verify_notification(body, [KEY_A], "YOUR_MERCHANT_ACCOUNT")
    assert len(batch.valid) == 1
    assert batch.refused[0].index == 0
    assert batch.refused[0].reason == 'not a {"NotificationRequestItem": {...}} object'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[]", "the body is a JSON list, not an Adyen notification object"),
        (b'{"live": "false"}', "the body has no notificationItems (not an Adyen Standard webhook)"),
        (b'{"live": "false", "notificationItems": {}}', "notificationItems is a dict, not a list"),
        (b'{"live": "false", "notificationItems": []}', "notificationItems is empty"),
        (b'{"live": "yes", "notificationItems": [{}]}', 'live is \'yes\', not "true" or "false"'),
        (b'{"notificationItems": [{}]}', 'live is None, not "true" or "false"'),
    ],
)
def test_a_garbled_body_is_refused_whole(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        verify_notification(body, [KEY_A], "TestMerchant")
    assert caught.value.message.startswith(message)


def test_live_and_text_bodies() -> None:
    assert parse_envelope(b'{"live": "true", "notificationItems": [1]}') == (True, [1])
    assert parse_envelope(b'{"live": false, "notificationItems": [1]}') == (False, [1])
    with pytest.raises(TypeError, match="raw request bytes"):
        parse_envelope('{"live": "true"}')  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "AUTHORISATION",
        "CANCELLATION",
        "CAPTURE",
        "CHARGEBACK",
        "CHARGEBACK_REVERSED",
        "REFUND",
        "REFUND_FAILED",
        "REPORT_AVAILABLE",
        "SECOND_CHARGEBACK",
    ],
)
def test_the_re_signed_openapi_examples_verify(name: str) -> None:
    raw = (FIXTURES / "computed_signed" / f"{name}_signed_with_test_key.json").read_bytes()
    batch = verify_notification(raw, [KEY_A], "YOUR_MERCHANT_ACCOUNT")
    assert batch.refused == ()
    assert [i.event_code for i in batch.valid] == [name]
    assert batch.live is False


def test_parsed_item_fields() -> None:
    item = parse_item(_example("CHARGEBACK"), live=True)
    assert isinstance(item, NotificationItem)
    assert item.psp_reference == "QFQTPCQ8HXSKGK82"
    assert item.original_reference == "9913140798220028"
    assert item.merchant_account_code == "YOUR_MERCHANT_ACCOUNT"
    assert item.merchant_reference == "YOUR_MERCHANT_REFERENCE"
    assert (item.amount_value, item.amount_currency) == (1000, "EUR")
    assert item.event_code == "CHARGEBACK"
    assert item.success is True
    assert item.event_date == datetime(2021, 1, 1, 0, 0, tzinfo=UTC)
    assert item.event_date.utcoffset() == timedelta(hours=1)
    assert item.reason == "Payment.TxId=300000000524534724 dispute"
    assert item.operations == ()
    assert item.payment_method == "mc"
    assert item.additional_data["chargebackReasonCode"] == " 4853"
    assert item.additional_data["grossValue"] == "2000"
    assert item.raw["pspReference"] == "QFQTPCQ8HXSKGK82"
    assert item.live is True


def test_parsed_authorisation_fields() -> None:
    item = parse_item(_vector_item(VECTORS[0]), live=False)
    assert item.original_reference is None
    assert item.operations == ("CANCEL", "CAPTURE", "REFUND")
    assert item.event_date == datetime(2019, 5, 6, 17, 15, 34, 121000, tzinfo=timezone(timedelta(hours=2)))
    refused = parse_item(_vector_item(VECTORS[0]) | {"success": "false"}, live=False)
    assert refused.success is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pspReference": ""}, "pspReference is empty"),
        ({"merchantReference": None}, "merchantReference is missing"),
        ({"success": "True"}, 'success is \'True\', not "true" or "false"'),
        ({"amount": {"value": "1130", "currency": "EUR"}}, "amount.value is '1130', not an integer"),
        ({"amount": {"value": 1130, "currency": "EURO"}}, "amount.currency is 'EURO', not a currency code"),
        ({"eventDate": "2019-05-06T17:15:34"}, "eventDate '2019-05-06T17:15:34' has no UTC offset"),
        ({"eventDate": "yesterday"}, "eventDate 'yesterday' is not an ISO 8601 date-time"),
        ({"operations": "CANCEL"}, "operations is not a list of strings"),
        ({"eventCode": 7}, "eventCode is a int, not a string"),
    ],
)
def test_malformed_items(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_item(_vector_item(VECTORS[0]) | change, live=False)
    assert caught.value.message == message


def test_dedupe_and_object_keys() -> None:
    capture = parse_item(_example("CAPTURE"), live=False)
    assert capture.dedupe_key == "QFQTPCQ8HXSKGK82:CAPTURE:true:9913140798220028"
    assert capture.object_key == "9913140798220028"  # the payment, not the capture
    refused_refund = parse_item(_example("REFUND"), live=False)
    assert refused_refund.dedupe_key == "QFQTPCQ8HXSKGK82:REFUND:false:9913140798220028"
    authorisation = parse_item(_vector_item(VECTORS[0]), live=False)
    assert authorisation.dedupe_key == "7914073381342284:AUTHORISATION:true:"
    assert authorisation.object_key == "7914073381342284"
    second = parse_item(_example("SECOND_CHARGEBACK"), live=False)
    assert second.object_key == "QFQTPCQ8HXSKGK82"


def test_keys_of_a_report_with_colons_in_its_name() -> None:
    data = json.loads((FIXTURES / "docs_REPORT_AVAILABLE_settlement_detail_report.json").read_text())
    raw = data["notificationItems"][0]["NotificationRequestItem"]
    report = parse_item(raw, live=False)
    assert report.is_settlement_report
    assert report.handled
    assert report.object_key == "settlement_detail_report_batch_12.csv"
    other = parse_item(raw | {"pspReference": "threedsecure_authentication_report_2022-11-01T00:00:00.csv"}, live=False)
    assert not other.is_settlement_report
    assert not other.handled
    assert other.dedupe_key == "threedsecure_authentication_report_2022-11-01T00%3A00%3A00.csv:REPORT_AVAILABLE:true:"


def test_very_long_keys_stay_within_the_inbox_column() -> None:
    item = parse_item(_vector_item(VECTORS[0]) | {"pspReference": "x" * 400}, live=False)
    assert len(item.dedupe_key) == 255
    assert len(item.object_key) == 255
    other = parse_item(_vector_item(VECTORS[0]) | {"pspReference": "x" * 399 + "y"}, live=False)
    assert other.dedupe_key != item.dedupe_key


@pytest.mark.parametrize(
    ("name", "handled"),
    [("CAPTURE", True), ("REFUND", False), ("CANCELLATION", False), ("CHARGEBACK", True), ("REPORT_AVAILABLE", False)],
)
def test_handled(name: str, handled: bool) -> None:
    # REFUND's example has success "false"; REPORT_AVAILABLE's names no settlement report file
    assert parse_item(_example(name), live=False).handled is handled
