"""Mollie history pages → classic-call notices: the range, the stop past ``since``, what is offered, and
event ids that change only when the object moved money."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie import webhook
from thred_bridge.processors.mollie.history import notice, select, state_of

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)


def payment(n: int, at: datetime, status: str = "paid", **more: Any) -> dict[str, Any]:
    return {"resource": "payment", "id": f"tr_pay{n:05d}", "createdAt": at.isoformat(), "status": status, **more}


def test_a_page_keeps_what_was_created_in_the_range_and_says_when_it_reached_past_since() -> None:
    newest_first = [payment(n, UNTIL + timedelta(days=1) - timedelta(days=n * 10)) for n in range(6)]
    # created: Apr 2 (after), Mar 23, Mar 13, Mar 3 (inside), Feb 21, Feb 11 (before)
    notices, past = select("payments", newest_first, SINCE, UNTIL)
    assert [n.object_key for n in notices] == ["tr_pay00001", "tr_pay00002", "tr_pay00003"]
    assert past
    notices, past = select("payments", newest_first[:3], SINCE, UNTIL)
    assert (len(notices), past) == (2, False)
    assert select("payments", [], SINCE, UNTIL) == ([], False)


def test_a_listed_payment_is_offered_as_the_classic_call_about_it() -> None:
    made = notice("payments", payment(1, SINCE, amountRefunded={"currency": "EUR", "value": "0.00"}))
    assert made is not None
    ping = webhook.parse_classic(made.body)
    assert (ping.resource_id, ping.resource) == ("tr_pay00001", "payment")
    assert (made.event_type, made.object_key, made.handled) == ("payment.ping", "tr_pay00001", True)
    assert made.event_id.startswith("bf_tr_pay00001.")
    for status in ("open", "pending", "failed", "canceled", "expired"):
        assert notice("payments", payment(2, SINCE, status)) is None
    assert notice("payments", payment(3, SINCE, "authorized")) is not None


def test_event_ids_change_when_the_payment_moves_money_and_only_then() -> None:
    base = payment(1, SINCE, amountRefunded={"currency": "EUR", "value": "0.00"})
    same = {**base, "description": "renamed", "_links": {}}
    refunded = {**base, "amountRefunded": {"currency": "EUR", "value": "5.00"}}
    charged_back = {**base, "amountChargedBack": {"currency": "EUR", "value": "10.00"}}
    assert state_of("payments", base) == state_of("payments", same)
    assert len({state_of("payments", p) for p in (base, refunded, charged_back)}) == 3


def test_settlements_are_offered_by_status_past_open() -> None:
    def settlement(status: str) -> dict[str, Any]:
        return {"resource": "settlement", "id": "stl_jDk30akdN", "createdAt": SINCE.isoformat(), "status": status}

    assert notice("settlements", settlement("open")) is None
    paid = notice("settlements", settlement("paidout"))
    assert paid is not None
    assert (paid.event_id, paid.event_type, paid.body) == (
        "bf_stl_jDk30akdN.paidout",
        "settlement.ping",
        b"id=stl_jDk30akdN",
    )
    pending = notice("settlements", settlement("pending"))
    assert pending is not None
    assert pending.event_id == "bf_stl_jDk30akdN.pending"


def test_malformed_list_entries_are_refused() -> None:
    with pytest.raises(TranslationError, match="well-formed id"):
        notice("payments", {"id": "re_notapayment", "status": "paid", "createdAt": SINCE.isoformat()})
    with pytest.raises(TranslationError, match="timestamp"):
        select("payments", [{"id": "tr_pay00001", "status": "paid"}], SINCE, UNTIL)
    with pytest.raises(ValueError, match="no kind"):
        notice("refunds", {"id": "re_abcdef"})
