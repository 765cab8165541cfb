"""Money movements as the bridge understands them, whatever processor reported them.

A processor's ``translate`` module turns its JSON into these; ``records`` turns these into
Thred records. Amounts are in the currency the money settled in (what the processor
credited to the merchant's balance), so that payouts add up; the presentment amount, if
different, travels in ``metadata``.

A movement marked ``held`` is a reading the processor will correct: its records wait, unsent, until a
reading of the same object that is not held replaces them. An Adyen webhook's amount is in the processing
currency; a payment that settles in another currency is booked from the settlement report, in the
settlement currency (decision 0008).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from thred_bridge.domain.money import Money


@dataclass(frozen=True, slots=True)
class Party:
    """Who paid. ``key`` is stable per processor and names the Thred customer.

    ``key`` is the processor's customer id (``cus_…``), ``billing_<digest>`` for a customer known only by
    billing e-mail, or ``walkin`` for the one anonymous customer per connection.
    """

    key: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.email or ("Walk-in customer" if self.key == "walkin" else self.key)


@dataclass(frozen=True, slots=True)
class Charge:
    """Money received from a customer: one Thred invoice payment.

    ``amount`` and ``fee`` are in the settlement currency (what the processor credited, and what it
    kept). ``thred_invoice_id`` names an existing Thred invoice to pay instead of creating one.
    """

    processor: str
    object_id: str
    amount: Money
    fee: Money
    occurred_at: datetime
    customer: Party
    description: str
    method: str
    reference: str | None = None
    account: str | None = None
    thred_invoice_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    held: bool = False  # a reading to be replaced: see the module docstring

    def __post_init__(self) -> None:
        if self.amount.minor <= 0:
            raise ValueError(f"a charge must be positive, got {self.amount.format()}")
        if self.fee.currency != self.amount.currency:
            raise ValueError("fee and amount must be in the same (settlement) currency")


RefundStatus = Literal["pending", "succeeded", "failed", "canceled"]


@dataclass(frozen=True, slots=True)
class Refund:
    """Money returned to a customer for a charge: a Thred refund and refund payment on the charge's invoice.

    ``amount`` is positive, in the settlement currency (what left the merchant's balance); ``fee`` is
    what the processor charged (or, negative, gave back) for the refund. A refund that ends ``failed`` or
    ``canceled`` after it was booked is undone (its refund payment deleted) or flagged.
    """

    processor: str
    object_id: str
    charge_id: str
    amount: Money
    fee: Money
    occurred_at: datetime
    status: RefundStatus
    account: str | None = None
    reason: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    held: bool = False  # a reading to be replaced: see the module docstring

    def __post_init__(self) -> None:
        if self.amount.minor <= 0:
            raise ValueError(f"a refund must be positive, got {self.amount.format()}")
        if self.fee.currency != self.amount.currency:
            raise ValueError("fee and amount must be in the same (settlement) currency")


@dataclass(frozen=True, slots=True)
class DisputeDebit:
    """A dispute (chargeback) took money back: ``amount`` left the balance, plus the dispute ``fee``.

    Booked as a refund and refund payment on the charge's invoice (the customer got the money back
    through their bank), the fee as the refund payment's processing fee.
    """

    processor: str
    object_id: str
    charge_id: str
    amount: Money
    fee: Money
    occurred_at: datetime
    account: str | None = None
    reason: str | None = None
    held: bool = False  # a reading to be replaced: see the module docstring


@dataclass(frozen=True, slots=True)
class DisputeCredit:
    """A dispute won (or a chargeback reversed): ``amount`` came back, with ``fee_returned`` of the fee.

    Booked as a new invoice and payment for the customer (the money was received again); a returned
    fee lowers the fees of the payout that carries it.
    """

    processor: str
    object_id: str
    charge_id: str
    amount: Money
    fee_returned: Money
    occurred_at: datetime
    account: str | None = None
    held: bool = False  # a reading to be replaced: see the module docstring


PayoutItemKind = Literal["charge", "refund", "dispute_debit", "dispute_credit", "fee", "adjustment"]


@dataclass(frozen=True, slots=True)
class PayoutItem:
    """One line of a payout: a booked object (by its processor id), or a fee or adjustment on its own.

    ``amount`` is signed as it moved the balance (a charge +, a refund −), ``fee`` what the processor kept
    on it (+) or gave back (−); ``amount − fee`` is the item's contribution to the payout.
    """

    kind: PayoutItemKind
    object_id: str
    amount: Money
    fee: Money
    description: str = ""


PayoutStatus = Literal["pending", "in_transit", "paid", "failed", "canceled"]


@dataclass(frozen=True, slots=True)
class Payout:
    """Money sent to the merchant's bank: ``amount`` is what reached (or will reach) it.

    ``items`` is everything the payout settles; ``itemised`` False for a payout the processor cannot
    itemise (a manual payout): booked with totals only and flagged.
    """

    processor: str
    object_id: str
    amount: Money
    status: PayoutStatus
    arrives_at: datetime
    items: tuple[PayoutItem, ...]
    itemised: bool = True
    account: str | None = None
    reference: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def item_net(self) -> Money:
        """Σ (amount − fee) over the items: equals ``amount`` when the payout is complete."""
        total = Money.zero(self.amount.currency)
        for item in self.items:
            total = total + item.amount - item.fee
        return total


Movement = Charge | Refund | DisputeDebit | DisputeCredit | Payout
