"""Every parser of what the outside sends, fed what Hypothesis makes up: it answers with a value or with its
documented refusal (a DeliveryError at ingest, a TranslationError for a report), never with another exception.

Inputs are both raw bytes and near-misses built from the shapes each processor sends (the right keys with
values of any type), since random bytes rarely get past the first check."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thred_bridge.errors import DeliveryError, TranslationError
from thred_bridge.processors.adyen.notification import verify_notification
from thred_bridge.processors.adyen.report import read_report
from thred_bridge.processors.mollie.webhook import parse_classic
from thred_bridge.processors.mollie.webhook import parse_event as parse_mollie_event
from thred_bridge.processors.stripe.webhook import parse_event as parse_stripe_event
from thred_bridge.processors.stripe.webhook import verify as verify_stripe
from thred_bridge.simulators.adyen_reports import SettlementReport

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


def _near(keys: list[str]) -> st.SearchStrategy[bytes]:
    """JSON objects with some of ``keys``, each holding any value, and junk keys besides."""
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), values, max_size=len(keys) + 2).map(
        lambda d: json.dumps(d).encode()
    )


STRIPE_KEYS = ["id", "object", "type", "account", "data", "created", "api_version", "livemode"]
MOLLIE_KEYS = ["id", "resource", "type", "entityId", "createdAt", "_embedded", "_links"]
ADYEN_KEYS = ["live", "notificationItems"]


@FUZZ
@given(st.binary(max_size=300) | _near(STRIPE_KEYS))
def test_stripe_event_parsing(body: bytes) -> None:
    with contextlib.suppress(DeliveryError):
        parse_stripe_event(body)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode), st.text(max_size=200))
def test_stripe_signature_headers(body: bytes, header: str) -> None:
    with contextlib.suppress(DeliveryError):
        verify_stripe(body, header, ["whsec_fuzz"], datetime.now(UTC))


def _adyen_items() -> st.SearchStrategy[bytes]:
    item_keys = ["pspReference", "eventCode", "merchantAccountCode", "amount", "success", "eventDate",
                 "additionalData", "originalReference", "merchantReference", "reason", "operations"]  # fmt: skip
    item = st.dictionaries(st.sampled_from(item_keys), values, max_size=len(item_keys))
    wrapped = st.lists(st.fixed_dictionaries({"NotificationRequestItem": item}) | values, max_size=3)
    return st.builds(
        lambda live, items: json.dumps({"live": live, "notificationItems": items}).encode(), values, wrapped
    )


@FUZZ
@given(st.binary(max_size=300) | _near(ADYEN_KEYS) | _adyen_items())
def test_adyen_notification_verification(body: bytes) -> None:
    with contextlib.suppress(DeliveryError):
        verify_notification(body, ["44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"], "Merchant")


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_mollie_classic_bodies(body: bytes) -> None:
    with contextlib.suppress(DeliveryError):
        parse_classic(body)


@FUZZ
@given(st.binary(max_size=300) | _near(MOLLIE_KEYS))
def test_mollie_next_gen_events(body: bytes) -> None:
    with contextlib.suppress(DeliveryError):
        parse_mollie_event(body)


def _report_mutations() -> st.SearchStrategy[bytes]:
    """A real report's file with one cell replaced by anything, or cut short anywhere."""
    report = SettlementReport(batch=3)
    report.settled("8815000000000001", 1000, 20)
    report.refunded("8815000000000001", "8835000000000001", 400, fee=1)
    report.fee(12)
    good = report.csv()

    def replaced(cut: int, junk: str) -> bytes:
        text = good.decode()
        start = text.find(",", cut % len(text))
        if start < 0:
            return good
        end = text.find(",", start + 1)
        return (text[: start + 1] + junk + text[end if end > 0 else len(text) :]).encode()

    return (
        st.builds(replaced, st.integers(0, len(good)), st.text(max_size=12))
        | st.integers(0, len(good)).map(lambda n: good[:n])
        | st.binary(max_size=300)
    )


@FUZZ
@given(_report_mutations())
def test_settlement_report_rows(content: bytes) -> None:
    try:
        for _row in read_report(content):
            pass
    except TranslationError:
        pass
