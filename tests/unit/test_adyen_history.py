"""The Adyen backfill's notices: batch ranges, report URLs, and items keyed exactly as Adyen's own."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from thred_bridge.errors import ConfigError
from thred_bridge.processors.adyen.history import (
    MAX_BATCHES,
    TEST_REPORT_BASE,
    batch_range,
    report_notices,
    report_url,
)
from thred_bridge.processors.adyen.notification import parse_item

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"), [("120-140", range(120, 141)), ("7", range(7, 8)), (" 3-3 ", range(3, 4))]
)
def test_batch_ranges_include_both_ends(text: str, expected: range) -> None:
    assert batch_range(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("140-120", "FIRST must not exceed LAST"),
        ("0-3", "start at 1"),
        ("a-b", "expected FIRST-LAST"),
        ("1-2-3", "expected FIRST-LAST"),
        (f"1-{MAX_BATCHES + 1}", f"at most {MAX_BATCHES}"),
    ],
)
def test_bad_batch_ranges_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        batch_range(text)


def test_the_url_is_the_one_adyen_announces() -> None:
    assert report_url(TEST_REPORT_BASE + "/", "Shop & Co", 42) == (
        "https://ca-test.adyen.com/reports/download/MerchantAccount/Shop%20%26%20Co/settlement_detail_report_batch_42.csv"
    )


def test_a_backfilled_batch_has_the_event_id_of_adyens_own_notification() -> None:
    live = parse_item(
        {
            "pspReference": "settlement_detail_report_batch_42.csv",
            "merchantAccountCode": "TestMerchant",
            "merchantReference": "",
            "eventCode": "REPORT_AVAILABLE",
            "eventDate": "2026-11-20T04:11:00+01:00",
            "success": "true",
            "amount": {"value": 0, "currency": "EUR"},
            "reason": report_url(TEST_REPORT_BASE, "TestMerchant", 42),
        },
        live=False,
    )
    (notice,) = report_notices("TestMerchant", [42], TEST_REPORT_BASE, NOW, live=False)
    assert notice.event_id == live.dedupe_key  # the inbox keeps one of the two
    assert notice.object_key == live.object_key
    assert notice.handled
    stored = orjson.loads(notice.body)["notificationItems"][0]["NotificationRequestItem"]
    assert stored["reason"] == live.reason
    assert parse_item(stored, live=False).is_settlement_report
