"""AdyenProcessor.verify on real signed batches: every item on its own, every key (rotation), the
merchant account, Basic auth; and what is stored is what the worker reads back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.domain.queue import Connection
from thred_bridge.errors import PayloadError, UnauthorizedError
from thred_bridge.processors.adyen.sync import AdyenProcessor, stored_item

OLD_KEY = testing.ADYEN_HMAC_KEY
NEW_KEY = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _connection(*keys: str, **credentials: str) -> Connection:
    return Connection("conn_a", "adyen", "biz", testing.ADYEN_MERCHANT, None, credentials, keys, NOW)


def _verify(connection: Connection, *items: dict[str, Any], auth: tuple[str, str] | None = None) -> list[str]:
    delivery = testing.adyen_delivery(list(items), auth=auth)
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    return [n.event_id for n in AdyenProcessor().verify(delivery.body, headers, connection, NOW)]


def test_either_key_of_a_rotation_verifies_and_each_item_is_one_notice() -> None:
    connection = _connection(OLD_KEY, NEW_KEY)
    old = testing.adyen_item("CAPTURE", "C1", value=100, original_reference="P1", hmac_key=OLD_KEY)
    new = testing.adyen_item("REFUND", "R1", value=50, original_reference="P1", hmac_key=NEW_KEY)
    assert _verify(connection, old, new) == ["C1:CAPTURE:true:P1", "R1:REFUND:true:P1"]


def test_a_forged_item_is_dropped_and_an_all_forged_batch_refused() -> None:
    connection = _connection(OLD_KEY)
    good = testing.adyen_item("AUTHORISATION", "P1", value=100)
    forged = testing.adyen_item("CAPTURE", "C9", value=100, original_reference="P9", hmac_key=NEW_KEY)
    assert _verify(connection, forged, good) == ["P1:AUTHORISATION:true:"]
    with pytest.raises(PayloadError, match="item 0: bad HMAC signature"):
        _verify(connection, forged)


def test_basic_auth_is_checked_before_anything_else() -> None:
    connection = _connection(OLD_KEY, webhook_user="adyen", webhook_password="pw")
    item = testing.adyen_item("AUTHORISATION", "P1", value=100)
    with pytest.raises(UnauthorizedError):
        _verify(connection, item)
    with pytest.raises(UnauthorizedError):
        _verify(connection, {"not": "an item"}, auth=("adyen", "nope"))
    assert _verify(connection, item, auth=("adyen", "pw")) == ["P1:AUTHORISATION:true:"]


def test_the_stored_body_reads_back_as_the_verified_item() -> None:
    item = testing.adyen_item("CHARGEBACK", "D1", value=700, original_reference="P1", reason="Fraud")
    delivery = testing.adyen_delivery([item])
    (notice,) = AdyenProcessor().verify(delivery.body, {}, _connection(OLD_KEY), NOW)
    assert (notice.object_key, notice.event_type, notice.handled) == ("P1", "CHARGEBACK", True)
    back = stored_item(notice.body)
    assert (back.psp_reference, back.original_reference, back.amount_value, back.reason) == ("D1", "P1", 700, "Fraud")
    assert (
        back.raw["additionalData"]["hmacSignature"]
        == item["NotificationRequestItem"]["additionalData"]["hmacSignature"]
    )


def test_the_acknowledgement_is_accepted() -> None:
    ack = AdyenProcessor().acknowledge(1, 0)
    assert (ack.body, ack.media_type) == (b"[accepted]", "text/plain")
