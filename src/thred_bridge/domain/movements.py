"""Money movements as the bridge understands them, whatever processor reported them.

A processor's ``translate`` module turns its JSON into these; ``records`` turns these into
Thred records. Amounts are in the currency the money settled in (what the processor
credited to the merchant's balance), so that payouts add up; the presentment amount, if
different, travels in ``metadata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

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

    def __post_init__(self) -> None:
        if self.amount.minor <= 0:
            raise ValueError(f"a charge must be positive, got {self.amount.format()}")
        if self.fee.currency != self.amount.currency:
            raise ValueError("fee and amount must be in the same (settlement) currency")


Movement = Charge
