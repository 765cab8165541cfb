"""MollieProcessor.verify: classic calls get an event id per delivery, next-gen events are verified and
deduplicated on their id, payout events are handled only when they name a settlement."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from thred_bridge.domain.queue import Connection
from thred_bridge.errors import PayloadError, SignatureError
from thred_bridge.processors.mollie.sync import MollieProcessor, payouts_off_note

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
SECRET = "whsec-mollie-test"


def connection(**credentials: str) -> Connection:
    return Connection(
        id="conn_1",
        processor="mollie",
        business_id="biz",
        account=None,
        label=None,
        credentials={"api_key": "test_abcdefghij", **credentials},
        webhook_secrets=(SECRET,),
        created_at=NOW,
    )


def signed(event: Mapping[str, object], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Mollie-Signature": f"sha256={mac}"}


async def test_classic_calls_in_one_second_get_distinct_event_ids_and_share_the_object_key() -> None:
    processor = MollieProcessor()
    notices = [processor.verify(b"id=tr_5B8cwPMGnU6qLbRvo7qEZo", {}, connection(), NOW)[0] for _ in range(3)]
    assert len({n.event_id for n in notices}) == 3
    assert {n.object_key for n in notices} == {"tr_5B8cwPMGnU6qLbRvo7qEZo"}
    assert all(n.event_id.startswith("tr_5B8cwPMGnU6qLbRvo7qEZo@") for n in notices)
    assert {(n.event_type, n.handled) for n in notices} == {("payment.ping", True)}
    assert processor.verify(b"id=sub_8JfGzs6v3K", {}, connection(), NOW)[0].handled is False


async def test_malformed_classic_bodies_and_bad_signatures_are_refused() -> None:
    processor = MollieProcessor()
    with pytest.raises(PayloadError):
        processor.verify(b"id=tr_", {}, connection(), NOW)
    body, headers = signed(
        {"resource": "event", "id": "event_abcdef123", "type": "payment.paid", "entityId": "tr_abcdef"}
    )
    with pytest.raises(SignatureError):
        processor.verify(body, {"X-Mollie-Signature": "sha256=" + "0" * 64}, connection(), NOW)
    (notice,) = processor.verify(body, headers, connection(), NOW)
    assert (notice.event_id, notice.event_type, notice.object_key, notice.handled) == (
        "event_abcdef123",
        "payment.paid",
        "tr_abcdef",
        True,
    )


async def test_payout_events_are_handled_only_when_they_name_a_settlement() -> None:
    processor = MollieProcessor()
    named = {"resource": "event", "id": "event_payout0001", "type": "payout.completed", "entityId": "stl_jDk30akdN"}
    (notice,) = processor.verify(*signed(named), connection(), NOW)
    assert notice.handled
    unnamed = {**named, "id": "event_payout0002", "entityId": "po_abcdefgh"}
    (notice,) = processor.verify(*signed(unnamed), connection(), NOW)
    assert not notice.handled
    in_snapshot = {
        **unnamed,
        "id": "event_payout0003",
        "_embedded": {"entity": {"id": "po_abcdefgh", "settlementId": "stl_jDk30akdN"}},
    }
    (notice,) = processor.verify(*signed(in_snapshot), connection(), NOW)
    assert notice.handled


def test_status_note_only_without_an_organization_token() -> None:
    assert payouts_off_note(connection(organization_token="access_abcdefgh")) is None
    note = payouts_off_note(connection())
    assert note is not None
    assert "organization access token" in note
    assert MollieProcessor().notes(connection()) == [note]
