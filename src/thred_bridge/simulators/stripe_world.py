"""The simulated Stripe's state: :class:`StripeWorld`, per account (``None`` = the platform).

Charges, refunds, disputes and payouts move money through balance transactions the way Stripe's
do (PROCESSORS.md §1.5–1.6, §4 facts 6–8): every amount in the balance (settlement) currency, a
payout sweeping what is in the balance and remembering which transactions it paid out.
"""

from __future__ import annotations

import copy
import string
from typing import Any

from thred_bridge.simulators.common import ticking_clock
from thred_bridge.simulators.stripe_objects import (
    ADDRESS,
    Json,
    balance_transaction,
    charge_object,
    convert,
    customer_object,
    default_fee,
    dispute_object,
    fee_lines,
    payment_intent_object,
    payout_object,
    refund_object,
    step,
)
from thred_bridge.simulators.stripe_state import SeenRequest, StripeState

__all__ = ["SeenRequest", "StripeWorld", "ticking_clock"]


class StripeWorld(StripeState):
    """Stripe's state per account (``None`` = the platform), and helpers that create realistic objects.

    Helpers return copies; change the world only through its methods.
    """

    def add_customer(
        self,
        *,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        address: dict[str, str | None] | None = None,
        account: str | None = None,
        customer_id: str | None = None,
    ) -> Json:
        customer_id = customer_id or self.new_id("cus", 14)
        prefix = "".join(self._rng.choice(string.ascii_uppercase) for _ in range(7))
        customer = customer_object(customer_id, self.clock(), prefix)
        customer.update(name=name, email=email, phone=phone)
        customer["address"] = {**dict.fromkeys(ADDRESS), **address} if address else None
        return self._store(customer, account)

    def add_charge(
        self,
        amount: int,
        currency: str,
        *,
        settlement_currency: str | None = None,
        exchange_rate: str | None = None,
        fee: int | None = None,
        tax: int | None = None,
        customer: dict[str, Any] | None = None,
        billing_email: str | None = None,
        method: str = "card",
        account: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        pending_balance_transaction: bool = False,
        captured: bool = True,
    ) -> Json:
        """A succeeded, captured charge with its PaymentIntent (``latest_charge``) and balance transaction.

        ``amount`` is in Stripe units of ``currency``. With ``settlement_currency`` and its
        ``exchange_rate`` the balance transaction is converted, as for an FX charge. ``fee`` is the total
        fee (default :func:`default_fee`); ``tax`` is the part of it that is VAT. ``customer`` is a
        customer's fields (an existing ``id`` is reused). With ``pending_balance_transaction`` the charge
        has ``balance_transaction: null`` (async capture) until :meth:`settle`. With ``captured=False`` it
        is only authorised (no balance transaction, ``amount_captured`` 0) until :meth:`capture`.
        """
        currency, settle_in = currency.lower(), (settlement_currency or currency).lower()
        if amount <= 0:
            raise ValueError("amount must be positive")
        if amount % step(currency):
            # Stripe: invalid_charge_amount_no_decimal_compatible (ISK); last digit 0 (three-decimal).
            raise ValueError(f"Stripe refuses {amount} {currency}: not a multiple of {step(currency)}")
        if (settle_in != currency) != (exchange_rate is not None):
            raise ValueError("exchange_rate is required exactly when settlement_currency differs")
        if account is not None:
            self.add_account(account)
        customer_id = None
        if customer is not None:
            known = self.get(customer["id"], account=account) if "id" in customer else None
            if known is None:
                fields = {k: customer.get(k) for k in ("name", "email", "phone", "address")}
                known = self.add_customer(**fields, account=account, customer_id=customer.get("id"))
            customer_id = known["id"]
        settled = convert(amount, currency, settle_in, exchange_rate)
        total_fee = default_fee(settled, settle_in) if fee is None else fee
        created = self.clock()
        ids = {p: self.new_id(p) for p in ("ch", "pi", "txn", "pm")}
        bt = balance_transaction(
            ids["txn"], settled, settle_in, fee=total_fee, details=fee_lines(total_fee, settle_in, tax=tax),
            type="charge", category="charge", source=ids["ch"], at=created, rate=exchange_rate,
            description=description,
        )  # fmt: skip
        charge = charge_object(ids, amount, currency, method, created)
        charge["outcome"].update(risk_score=self._rng.randint(0, 60), seller_message="Payment complete.")
        if method == "card":
            card = {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034, "funding": "credit"}
            card.update(fingerprint=self.new_id("fp", 16)[3:], last4="4242", network="visa", wallet=None)
            charge["payment_method_details"]["card"] = card
        charge["receipt_url"] = f"https://pay.stripe.com/receipts/payment/{self.new_id('rcpt', 40)}"
        charge.update(customer=customer_id, description=description, metadata=dict(metadata or {}))
        charge.update(receipt_email=billing_email)
        charge["billing_details"]["email"] = billing_email
        charge["balance_transaction"] = None if pending_balance_transaction or not captured else ids["txn"]
        intent = payment_intent_object(ids, charge, method, self.new_id("s")[2:])
        if exchange_rate is not None:
            self._rates[(account, ids["ch"])] = exchange_rate
        if not captured:
            charge.update(captured=False, amount_captured=0)
            intent.update(status="requires_capture", amount_capturable=amount, amount_received=0)
            self._uncaptured[(account, ids["ch"])] = settle_in
            self._store(intent, account)
            return self._store(charge, account)
        self._store(intent, account)
        if pending_balance_transaction:
            self._unsettled[(account, ids["ch"])] = bt
        else:
            self._store(bt, account)
        return self._store(charge, account)

    def capture(
        self, charge_id: str, amount: int | None = None, *, fee: int | None = None, account: str | None = None
    ) -> Json:
        """Capture an authorised charge (``amount``: default all of it); its balance transaction books the
        captured amount in the settlement currency, with ``fee`` (default :func:`default_fee`)."""
        charge = self._live(charge_id, "charge", account)
        settle_in = self._uncaptured.pop((account, charge_id))
        amount = charge["amount"] if amount is None else amount
        if not 0 < amount <= charge["amount"] or amount % step(charge["currency"]):
            raise ValueError(f"cannot capture {amount} of charge {charge_id} (authorised {charge['amount']})")
        rate = self._rates.get((account, charge_id))
        settled = convert(amount, charge["currency"], settle_in, rate)
        total_fee = default_fee(settled, settle_in) if fee is None else fee
        bt = balance_transaction(
            self.new_id("txn"), settled, settle_in, fee=total_fee, details=fee_lines(total_fee, settle_in),
            type="charge", category="charge", source=charge_id, at=self.clock(), rate=rate,
            description=charge["description"],
        )  # fmt: skip
        self._store(bt, account)
        charge.update(captured=True, amount_captured=amount, balance_transaction=bt["id"])
        intent = self._objects[account][charge["payment_intent"]]
        intent.update(status="succeeded", amount_capturable=0, amount_received=amount)
        return self._render(charge, account)

    def settle(self, object_id: str, *, account: str | None = None) -> Json:
        """Book a charge or refund made with ``pending_balance_transaction``; returns it updated."""
        bt = self._unsettled.pop((account, object_id))
        self._store(bt, account)
        self._objects[account][object_id]["balance_transaction"] = bt["id"]
        return self._render(self._objects[account][object_id], account)

    def payment_intent_of(self, charge: Json, *, account: str | None = None) -> Json:
        found = self.get(charge["payment_intent"], account=account)
        if found is None:
            raise KeyError(charge["payment_intent"])
        return found

    def balance_transaction_of(self, obj: Json, *, account: str | None = None) -> Json:
        """The balance transaction of a charge or refund, booked or not yet."""
        found = self._unsettled.get((account, obj["id"]))
        txn = self._objects[account][obj["id"]]["balance_transaction"]
        found = self.get(txn, account=account) if txn else copy.deepcopy(found)
        if found is None:
            raise KeyError(obj["id"])
        return found

    def _settlement(self, charge: Json, account: str | None) -> tuple[str, str | None]:
        """The charge's balance currency and exchange rate (from its booked balance transaction)."""
        txn = charge.get("balance_transaction")
        if not txn:
            raise ValueError(f"charge {charge['id']} is not booked yet (settle it first)")
        return self._objects[account][txn]["currency"], self._rates.get((account, charge["id"]))

    def refund(
        self,
        charge_id: str,
        amount: int | None = None,
        *,
        status: str = "succeeded",
        fee: int = 0,
        account: str | None = None,
        pending_balance_transaction: bool = False,
    ) -> Json:
        """Refund ``amount`` (Stripe units of the charge's currency; default: what is left) of a charge.

        The refund's balance transaction takes the amount out of the balance in the settlement currency
        (an FX charge's at its rate), with ``fee``; the charge's ``amount_refunded`` and ``refunded`` follow.
        """
        charge = self._live(charge_id, "charge", account)
        left = charge["amount_captured"] - charge["amount_refunded"]
        amount = left if amount is None else amount
        if not 0 < amount <= left or amount % step(charge["currency"]):
            raise ValueError(f"cannot refund {amount} of charge {charge_id} ({left} left to refund)")
        if status not in {"pending", "requires_action", "succeeded"}:
            raise ValueError(f"a new refund is pending, requires_action or succeeded, not {status!r}")
        settle_in, rate = self._settlement(charge, account)
        at, refund_id, txn = self.clock(), self.new_id("re"), self.new_id("txn")
        settled = convert(amount, charge["currency"], settle_in, rate)
        bt = balance_transaction(
            txn, -settled, settle_in, fee=fee, details=fee_lines(fee, settle_in), type="refund", category="refund",
            source=refund_id, at=at, rate=rate, description=f"REFUND FOR CHARGE ({charge['description'] or ''})",
        )  # fmt: skip
        refund = refund_object(refund_id, charge, amount, None if pending_balance_transaction else txn, status, at)
        if pending_balance_transaction:
            self._unsettled[(account, refund_id)] = bt
        else:
            self._store(bt, account)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        return self._store(refund, account)

    def fail_refund(self, refund_id: str, *, account: str | None = None) -> Json:
        """The refund failed: status ``failed`` and a ``refund_failure`` balance transaction puts it back."""
        refund = self._live(refund_id, "refund", account)
        if refund["status"] in {"failed", "canceled"} or not refund["balance_transaction"]:
            raise ValueError(f"refund {refund_id} is {refund['status']} with no booked money to put back")
        original = self._objects[account][refund["balance_transaction"]]
        txn = self.new_id("txn")
        bt = balance_transaction(
            txn, -original["amount"], original["currency"], fee=0, details=[], type="refund_failure",
            category="refund_failure", source=refund_id, at=self.clock(), description="REFUND FAILURE",
        )  # fmt: skip
        self._store(bt, account)
        refund.update(status="failed", failure_reason="expired_or_canceled_card", failure_balance_transaction=txn)
        charge = self._objects[account][refund["charge"]]
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        return self._render(refund, account)

    def dispute(
        self,
        charge_id: str,
        *,
        fee: int = 1500,
        reason: str = "fraudulent",
        funds_withdrawn: bool = True,
        account: str | None = None,
    ) -> Json:
        """A ``needs_response`` dispute of the whole charge; its withdrawal (−amount, +``fee``, in the
        settlement currency) is booked at once. ``funds_withdrawn=False`` is an inquiry with no money moved."""
        charge = self._live(charge_id, "charge", account)
        settle_in, rate = self._settlement(charge, account)
        at, dispute_id = self.clock(), self.new_id("dp")
        status = "needs_response" if funds_withdrawn else "warning_needs_response"
        dispute = dispute_object(dispute_id, charge, reason, status, at)
        self._dispute_bts[(account, dispute_id)] = []
        if funds_withdrawn:
            settled = convert(charge["amount_captured"], charge["currency"], settle_in, rate)
            txn = self.new_id("txn")
            bt = balance_transaction(
                txn, -settled, settle_in, fee=fee, details=fee_lines(fee, settle_in, description="Dispute fee"),
                type="adjustment", category="dispute", source=dispute_id, at=at, rate=rate,
                description=f"Chargeback withdrawal for {charge_id}",
            )  # fmt: skip
            self._store(bt, account)
            self._dispute_bts[(account, dispute_id)].append(txn)
            dispute["balance_transaction"] = txn
        charge["disputed"] = True
        return self._store(dispute, account)

    def win_dispute(self, dispute_id: str, *, account: str | None = None) -> Json:
        """Status ``won``; withdrawn funds come back with the fee (a ``dispute_reversal``: +amount, −fee)."""
        dispute = self._live(dispute_id, "dispute", account)
        withdrawn = [self._objects[account][t] for t in self._dispute_bts[(account, dispute_id)]]
        if withdrawn:
            first = withdrawn[0]
            details = fee_lines(-first["fee"], first["currency"], description="Dispute fee refund")
            bt = balance_transaction(
                self.new_id("txn"), -first["amount"], first["currency"], fee=-first["fee"], details=details,
                type="adjustment", category="dispute_reversal", source=dispute_id, at=self.clock(),
                rate=self._rates.get((account, dispute["charge"])),
                description=f"Chargeback reversal for {dispute['charge']}",
            )  # fmt: skip
            self._store(bt, account)
            self._dispute_bts[(account, dispute_id)].append(bt["id"])
        dispute["status"] = "won"
        return self._render(dispute, account)

    def lose_dispute(self, dispute_id: str, *, account: str | None = None) -> Json:
        """Status ``lost``; no money moves (it left at the withdrawal)."""
        dispute = self._live(dispute_id, "dispute", account)
        dispute["status"] = "lost"
        return self._render(dispute, account)

    def add_fee(self, amount: int, currency: str, description: str, *, account: str | None = None) -> Json:
        """A Stripe fee on its own (``type: stripe_fee``): ``amount`` leaves the balance."""
        bt = balance_transaction(
            self.new_id("txn"), -amount, currency.lower(), fee=0, details=[], type="stripe_fee", category="fee",
            source=None, at=self.clock(), description=description, status="available",
        )  # fmt: skip
        return self._store(bt, account)

    def payout(
        self,
        *,
        currency: str,
        account: str | None = None,
        automatic: bool = True,
        status: str = "paid",
        reconciled: bool = True,
    ) -> Json:
        """Pay out every booked balance transaction in ``currency`` that no payout has swept yet.

        The payout's amount is their total net (negative: the bank account is debited); its own
        ``type: payout`` transaction takes it out of the balance. Each swept transaction remembers the
        payout, so ``GET /v1/balance_transactions?payout=`` lists them (automatic payouts only). With
        ``reconciled=False`` the payout is ``reconciliation_status: in_progress`` and that list is empty
        until :meth:`reconcile_payout`.
        """
        code = currency.lower()
        swept = [
            o
            for o in self._objects.get(account, {}).values()
            if o.get("object") == "balance_transaction"
            and o["currency"] == code
            and (account, o["id"]) not in self._paid_out
        ]
        amount = sum(o["net"] for o in swept)
        if not amount:
            raise ValueError(f"nothing to pay out in {code} on {account or 'the platform'}")
        at = self.clock()
        ids = {p: self.new_id(p) for p in ("po", "txn", "ba")}
        own = balance_transaction(
            ids["txn"], -amount, code, fee=0, details=[], type="payout", category="payout", source=ids["po"],
            at=at, description="STRIPE PAYOUT", status="available",
        )  # fmt: skip
        self._store(own, account)
        for o in [*swept, own]:
            o["status"] = "available"
            self._paid_out[(account, o["id"])] = ids["po"]
        payout = payout_object(ids, amount, code, automatic=automatic, status=status, at=at)
        if automatic and not reconciled:
            payout["reconciliation_status"] = "in_progress"
        if status == "paid":
            payout["trace_id"]["value"] = "".join(self._rng.choice(string.digits) for _ in range(15))
        return self._store(payout, account)

    def reconcile_payout(self, payout_id: str, *, account: str | None = None) -> Json:
        """``reconciliation_status: completed``: the payout's transactions can be listed."""
        payout = self._live(payout_id, "payout", account)
        payout["reconciliation_status"] = "completed"
        return self._render(payout, account)

    def fail_payout(self, payout_id: str, *, account: str | None = None) -> Json:
        """Status ``failed``; a ``payout_failure`` transaction (+amount) returns the money to the balance,
        where the next payout sweeps it."""
        payout = self._live(payout_id, "payout", account)
        txn = self.new_id("txn")
        bt = balance_transaction(
            txn, payout["amount"], payout["currency"], fee=0, details=[], type="payout_failure",
            category="payout_reversal", source=payout_id, at=self.clock(),
            description="REFUND FOR PAYOUT (STRIPE PAYOUT)", status="available",
        )  # fmt: skip
        self._store(bt, account)
        payout.update(status="failed", failure_balance_transaction=txn, failure_code="account_closed")
        payout["failure_message"] = "The bank account has been closed."
        return self._render(payout, account)
