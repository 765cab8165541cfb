"""Money out beyond what was paid (decision 0007), the pure half: how much of a refund is booked, and how the
payout that settles it carries the rest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.payouts import carry_excess
from thred_bridge.domain.refunds import booked_short, within_room

cents = st.integers(min_value=0, max_value=10**12)


@given(amount=cents, room=st.one_of(st.none(), st.integers(min_value=-(10**12), max_value=10**12)))
def test_what_is_booked_and_what_is_carried_add_up_to_the_money_out(amount: int, room: int | None) -> None:
    booked, excess = within_room(amount, room)
    assert booked + excess == amount
    assert booked >= 0
    assert excess >= 0
    if room is None or amount <= room:
        assert excess == 0, "within what is refundable (or not known here): booked whole, Thred decides"
    else:
        assert booked == max(room, 0), "beyond it: exactly what is left is booked"


def test_a_body_booked_short_says_so_in_its_memo() -> None:
    body = {"amount_cents": 5_000, "memo": "Mollie chargeback chb_1", "external_id": "mollie_chb_1"}
    short = booked_short(body, 4_000, 1_000)
    assert short["amount_cents"] == 4_000
    assert short["memo"].startswith("Mollie chargeback chb_1; booked 4000 of 5000")
    assert body["amount_cents"] == 5_000, "the planned body is left alone"
    assert booked_short({"amount_cents": 10}, 0, 10)["memo"].startswith("booked 0 of 10")


def _payout(**extra: object) -> dict[str, object]:
    return {
        "external_id": "stripe_po_1",
        "currency": "EUR",
        "paid_out_amount_cents": 18_250,
        "additional_refunds_amount_cents": 300,
        "refund_payment_ids": ["rp-1", None, "rp-3"],
        "metadata": {"gross_cents": "25000"},
        **extra,
    }


def test_the_payout_carries_each_excess_as_additional_refunds_named_with_its_payment() -> None:
    out = carry_excess(
        _payout(memo="manual payout"), [("stripe_dp_1", 1_000, "stripe_ch_1"), ("stripe_re_2", 25, None)]
    )
    assert out["additional_refunds_amount_cents"] == 300 + 1_025
    assert out["refund_payment_ids"] == ["rp-1", "rp-3"], "one booked for nothing has no Thred id to list"
    assert out["metadata"] == {"gross_cents": "25000", "excess_refunds_cents": "1025"}
    assert out["memo"] == (
        "manual payout; money out beyond what was paid, carried as additional refunds: "
        "stripe_dp_1 10.00 EUR (payment stripe_ch_1), stripe_re_2 0.25 EUR"
    )


def test_a_payout_with_nothing_beyond_is_sent_as_planned() -> None:
    planned = _payout(refund_payment_ids=["rp-1", "rp-2"])
    assert carry_excess(planned, []) == planned
