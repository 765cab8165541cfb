"""Adyen history for the backfill: settlement details reports of past batches, by batch number.

Adyen has no API that lists settlement reports: each arrives once, announced by a REPORT_AVAILABLE webhook
whose ``reason`` is its download URL, ``{base}/reports/download/MerchantAccount/{merchant}/
settlement_detail_report_batch_{n}.csv``. The batch number is on every payout (the bank statement's
reference and the Customer Area), so a backfill names a range of batch numbers and gets, for each, the
REPORT_AVAILABLE item Adyen would have sent: same event id (a batch already announced live, or
backfilled before, is not stored twice), same download, same records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from thred_bridge.domain.queue import Notice
from thred_bridge.errors import ConfigError
from thred_bridge.processors.adyen.notification import (
    REPORT_AVAILABLE,
    SETTLEMENT_REPORT_PREFIX,
    parse_item,
    stored_body,
)

LIVE_REPORT_BASE = "https://ca-live.adyen.com"
TEST_REPORT_BASE = "https://ca-test.adyen.com"
MAX_BATCHES = 10_000  # one backfill; a merchant with daily batches has ~365 a year


def batch_range(text: str) -> range:
    """``"120-140"`` (both included) or ``"120"`` → the batch numbers; ConfigError for anything else."""
    first, sep, last = text.strip().partition("-")
    try:
        low, high = int(first), int(last) if sep else int(first)
    except ValueError as exc:
        raise ConfigError(f"--batches {text!r}: expected FIRST-LAST, e.g. 120-140") from exc
    if low < 1 or high < low:
        raise ConfigError(f"--batches {text!r}: batch numbers start at 1 and FIRST must not exceed LAST")
    if high - low + 1 > MAX_BATCHES:
        raise ConfigError(f"--batches {text!r}: at most {MAX_BATCHES} batches in one backfill")
    return range(low, high + 1)


def report_file(batch: int) -> str:
    return f"{SETTLEMENT_REPORT_PREFIX}{batch}.csv"


def report_url(base: str, merchant_account: str, batch: int) -> str:
    return (
        f"{base.rstrip('/')}/reports/download/MerchantAccount/{quote(merchant_account, safe='')}/{report_file(batch)}"
    )


def report_notices(
    merchant_account: str, batches: Sequence[int], base: str, now: datetime, *, live: bool
) -> list[Notice]:
    """The REPORT_AVAILABLE item Adyen sends for each batch's settlement details report, as inbox notices."""
    notices: list[Notice] = []
    for batch in batches:
        raw = {
            "pspReference": report_file(batch),
            "merchantAccountCode": merchant_account,
            "merchantReference": "",
            "eventCode": REPORT_AVAILABLE,
            "eventDate": now.isoformat(),
            "success": "true",
            "amount": {"value": 0, "currency": "EUR"},
            "reason": report_url(base, merchant_account, batch),
        }
        item = parse_item(raw, live=live)
        notices.append(
            Notice(item.dedupe_key, item.event_code, item.object_key, stored_body(item), handled=item.handled)
        )
    return notices
