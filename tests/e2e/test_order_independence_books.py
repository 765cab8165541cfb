"""For each processor, any order and duplication of a world's deliveries gives the same books, with the edge
cases in the world: partial refunds, a full chargeback or lost dispute after one (money out beyond what was
paid, decision 0007), payments converted into the settlement currency (Stripe's balance transactions, Mollie's
``settlementAmount``, Adyen's report: decision 0008), and the payout, report or settlement arriving anywhere
among the webhooks, with the worker catching up at random points in between.

"The same books" is what every order must agree on: each payment once, in the settlement currency, at its
settled amount; what each invoice refunded (which of two refunds is cut short follows their order, 0007);
each payout's paid-out, fees, additional refunds and variance 0. Where an Adyen payment's fee and customer
come from depends on which reading came first (a webhook has neither fee nor, here, a shopper; the report
has the fee): docs/mapping.md says so, and the payout's fee total does not depend on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from thred_bridge import testing
from thred_bridge.simulators.adyen_reports import SettlementReport, converted
from thred_bridge.simulators.mollie_api import minor_of

pytestmark = pytest.mark.anyio
_D = TypeVar("_D")

RATE = "0.8512"
# Each example runs the whole bridge: a failure is reported as found (shrinking one took minutes).
EXAMPLES = settings(
    max_examples=5,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# (amount, refunded part or None, charged back in full, processed in EUR)
PAYMENT = st.tuples(
    st.integers(min_value=500, max_value=200_000),
    st.one_of(st.none(), st.integers(min_value=1, max_value=99)),
    st.booleans(),
    st.booleans(),
)


def _refunded_by_invoice(books: dict[str, Any]) -> dict[str, int]:
    invoices = {i["id"]: i["external_id"] for i in books.get("invoices", [])}
    refunds = {r["id"]: r for r in books.get("refunds", [])}
    out: Counter[str] = Counter()
    for paid in books.get("refund_payments", []):
        refund = refunds[paid["refund_id"]]
        (allocation,) = refund["allocations"]
        out[invoices[allocation["invoice_id"]]] += paid["amount_cents"]
    return dict(out)


def _money_out(gross: int, part: int | None, chargeback: bool) -> tuple[int, int]:
    """(the refund's amount, the chargeback's: all of the payment), each 0 when there is none."""
    return (gross * part // 100 if part else 0), (gross if chargeback else 0)


@dataclass
class Books:
    """What every order must agree on (see the module docstring)."""

    currency: str
    payments: dict[str, int] = field(default_factory=dict)  # external id → settled amount
    refunded: dict[str, int] = field(default_factory=dict)  # the payment's external id → its invoice refunded
    excess: int = 0  # money out beyond what was paid, carried on the payout

    def money_out(self, payment: str, settled: int, out: int) -> None:
        """The payment's refunds and chargebacks took ``out``: the invoice refunds what was paid at most."""
        if out:
            self.refunded[payment] = min(settled, out)
        self.excess += out - min(settled, out)

    def check(self, books: dict[str, Any], paid_out: int) -> None:
        payments = {p["external_id"]: (p["currency"], p["total_amount_cents"]) for p in books["payments"]}
        assert payments == {k: (self.currency, v) for k, v in self.payments.items()}
        assert _refunded_by_invoice(books) == self.refunded
        (payout,) = books["payouts"]
        assert (payout["currency"], payout["paid_out_amount_cents"]) == (self.currency, paid_out)
        assert (payout["amount_variance_cents"], payout["additional_refunds_amount_cents"]) == (0, self.excess)
        assert len(payout["payment_ids"]) == len(self.payments)


async def _deliver_any_way(
    data: st.DataObject, deliveries: Sequence[_D], send: Callable[[_D], Awaitable[None]], settle: Any
) -> None:
    """Each delivery once, some twice, in any order, the worker catching up (``settle``) after some."""
    doubled = [*deliveries, *data.draw(st.lists(st.sampled_from(deliveries), max_size=len(deliveries)), label="again")]
    order = data.draw(st.permutations(doubled), label="order")
    pauses = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)), label="catch up after")
    for delivery, pause in zip(order, pauses, strict=True):
        await send(delivery)
        if pause:
            await settle()


@EXAMPLES
@given(payments=st.lists(PAYMENT, min_size=1, max_size=4), data=st.data())
async def test_adyen_any_order_and_duplication_gives_the_same_books(
    database_url: str, payments: list[tuple[int, int | None, bool, bool]], data: st.DataObject
) -> None:
    report = SettlementReport(batch=21, currency="GBP")
    expected = Books("GBP")
    async with testing.adyen_bridge(database_url, settlement_currency="GBP") as h:
        items: list[dict[str, Any]] = []
        for n, (amount, part, chargeback, in_eur) in enumerate(payments):
            psp, currency = f"88150000{n:08d}", "EUR" if in_eur else "GBP"

            def processed(minor: int, in_eur: bool = in_eur) -> tuple[str, int, str] | None:
                return ("EUR", minor, RATE) if in_eur else None

            def settled(minor: int, in_eur: bool = in_eur) -> int:
                return converted(("EUR", minor, RATE), "GBP") if in_eur else minor

            refund, back = _money_out(amount, part, chargeback)
            report.settled(psp, None if in_eur else amount, 10 + n, processed=processed(amount))
            items.append(h.item("CAPTURE", f"88250000{n:08d}", value=amount, currency=currency, original_reference=psp))
            if refund:
                report.refunded(psp, f"88350000{n:08d}", None if in_eur else refund, processed=processed(refund))
                items.append(h.item("REFUND", f"88350000{n:08d}", value=refund, currency=currency,
                                    original_reference=psp))  # fmt: skip
            if back:
                report.chargeback(psp, f"88450000{n:08d}", None if in_eur else back, 300, processed=processed(back))
                items.append(h.item("CHARGEBACK", f"88450000{n:08d}", value=back, currency=currency,
                                    original_reference=psp))  # fmt: skip
            expected.payments[f"adyen_{psp}"] = settled(amount)
            out = (settled(refund) if refund else 0) + (settled(back) if back else 0)
            expected.money_out(f"adyen_{psp}", settled(amount), out)
        link = h.reports.put(
            "settlement_detail_report_batch_21.csv", report.csv("new"), merchant_account="TestMerchant"
        )
        items.append(h.item("REPORT_AVAILABLE", "settlement_detail_report_batch_21.csv", value=0, reason=link))

        async def send(item: dict[str, Any]) -> None:
            assert (await h.deliver(item)).content == b"[accepted]"

        await _deliver_any_way(data, items, send, h.settle)
        status = await h.drain(timeout=60)
        books = await h.books()
    assert (status.failed, status.records_failed, status.records_held, status.waiting) == (0, 0, 0, 0), status
    assert status.received == len(items)
    expected.check(books, report.net_total)


@EXAMPLES
@given(payments=st.lists(PAYMENT, min_size=1, max_size=4), data=st.data())
async def test_mollie_any_order_and_duplication_gives_the_same_books(
    database_url: str, payments: list[tuple[int, int | None, bool, bool]], data: st.DataObject
) -> None:
    """Mollie's webhook names an object and the bridge reads it: the deliveries are the payments' and the
    settlement's pings, in any order, some twice, in a world that already holds everything."""
    async with testing.mollie_bridge(database_url) as h:
        w = h.world
        expected = Books("EUR")
        pings: list[str] = []
        for n, (amount, part, chargeback, in_usd) in enumerate(payments):
            settled = amount * 92 // 100 if in_usd else amount
            made = w.create_payment(amount, "USD" if in_usd else "EUR", email=f"c{n}@example.org",
                                    settlement_minor=settled if in_usd else None, method="creditcard")  # fmt: skip
            w.pay(made["id"])
            out = 0
            if part:
                out += -minor_of(w.refund(made["id"], amount * part // 100, status="refunded")["settlementAmount"])
            if chargeback:
                out += -minor_of(w.chargeback(made["id"])["settlementAmount"])
            expected.payments[f"mollie_{made['id']}"] = settled
            expected.money_out(f"mollie_{made['id']}", settled, out)
            pings.append(made["id"])
        settlement = w.settle()
        pings.append(settlement["id"])

        async def send(object_id: str) -> None:
            assert (await h.ping(object_id)).status_code == 200

        await _deliver_any_way(data, pings, send, h.settle)
        status = await h.drain(timeout=60)
        books = await h.books()
    assert (status.failed, status.records_failed, status.waiting) == (0, 0, 0), status
    expected.check(books, minor_of(settlement["amount"]))


@EXAMPLES
@given(payments=st.lists(PAYMENT, min_size=1, max_size=4), data=st.data())
async def test_stripe_any_order_and_duplication_of_money_moves_gives_the_same_books(
    database_url: str, payments: list[tuple[int, int | None, bool, bool]], data: st.DataObject
) -> None:
    """Charges (some in USD, settled in EUR), partial refunds, disputes lost in full and the payout that
    settles them all, their events in any order and some twice (``test_order_independence``: charges alone)."""
    async with testing.bridge(database_url) as h:
        w = h.world
        expected = Books("EUR")
        events: list[dict[str, Any]] = []
        for amount, part, disputed, in_usd in payments:
            fx = {"settlement_currency": "eur", "exchange_rate": "0.92"} if in_usd else {}
            charge = w.add_charge(amount, "usd" if in_usd else "eur", fee=30, **fx)  # type: ignore[arg-type]
            settled = (w.get(charge["balance_transaction"]) or {})["amount"]
            events.append(w.event("charge.succeeded", charge))
            out = 0
            if part:
                refund = w.refund(charge["id"], amount * part // 100)
                out -= (w.get(refund["balance_transaction"]) or {})["amount"]
                events.append(w.event("refund.created", refund))
            if disputed:
                dispute = w.dispute(charge["id"])
                withdrawal = w.get(dispute["id"]) or {}
                out -= sum(bt["amount"] for bt in withdrawal["balance_transactions"])
                events.append(w.event("charge.dispute.funds_withdrawn", withdrawal))
            expected.payments[f"stripe_{charge['id']}"] = settled
            expected.money_out(f"stripe_{charge['id']}", settled, out)
        payout = w.payout(currency="eur")
        events.append(w.event("payout.paid", payout))

        async def send(event: dict[str, Any]) -> None:
            assert (await h.deliver(event)).status_code == 200

        await _deliver_any_way(data, events, send, h.settle)
        status = await h.drain(timeout=60)
        books = await h.books()
    assert (status.failed, status.records_failed, status.waiting) == (0, 0, 0), status
    expected.check(books, payout["amount"])
