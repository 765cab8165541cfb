"""Request bodies the sandbox accepts, written from the Thred contract (CONTRACT.md and openapi.yaml).

Deliberately separate from the bridge's own wire code: a shared model would hide a shared mistake.

Choices, where the contract leaves room:

- Unknown fields are ignored, as Django REST Framework does.
- Money fields (``*_cents``, ``unit_price``) are strict integers: ``10.0`` and ``"10"`` are refused.
- Currencies are three upper-case letters, as Thred's enums are (``"eur"`` is refused).
- The "required (inferred)" lists of the contract are enforced, so a bridge that omits one fails here
  before it can fail against Thred.
- ``amount_cents`` of a refund may also be sent as ``partial_amount`` (the docs use both names).
- Sandbox extension, not in the contract: an invoice payment may carry ``status`` (``completed`` by default,
  or ``pending`` / ``failed``) so that cancelling through ``…/payments/{id}/delete/`` can be exercised.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

Cents = StrictInt
PositiveCents = Annotated[StrictInt, Field(ge=1)]
NonNegativeCents = Annotated[StrictInt, Field(ge=0)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Metadata = dict[str, Any]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# A date-time (a bare date means midnight); without an offset it is taken to be UTC.
Timestamp = Annotated[datetime, AfterValidator(_utc)]

RefundMethod = Literal[
    "CASH", "CHECK", "CREDIT_CARD", "DEBIT_CARD", "ACH", "BANK_TRANSFER", "PAYPAL", "STRIPE", "OTHER"
]
PayoutProcessor = Literal["stripe", "adyen", "mollie", "other"]
PayoutStatus = Literal["pending", "in_transit", "paid", "failed", "canceled"]
BaseCurrency = Literal["GBP", "EUR", "USD", "SEK", "NOK", "DKK", "ISK", "MYR", "SGD"]


class RequestBody(BaseModel):
    """A JSON request body: unknown fields ignored, as Django REST Framework does."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class TokenRequest(RequestBody):
    """JSON form of the partner token request; the form body and an empty body are accepted too."""

    client_id: str | None = None
    grant_type: Literal["client_credentials"] = "client_credentials"


class CreateBusinessRequest(RequestBody):
    external_id: ExternalId
    legal_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    entity_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    email: Email
    phone_number: str | None = None
    tin: str | None = None
    vat_number: Annotated[str, StringConstraints(max_length=20)] | None = None
    company_number: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None
    province: Annotated[str, StringConstraints(max_length=100)] | None = None
    eu_nace_industry_code: Annotated[str, StringConstraints(max_length=10)] | None = None
    base_currency: BaseCurrency = "EUR"
    accounting_method: Literal["cash", "accrual"] = "accrual"
    fiscal_year_end: date | None = None
    metadata: Metadata = Field(default_factory=dict)


class CreateCustomerRequest(RequestBody):
    external_id: ExternalId | None = None
    reference_number: str | None = None
    individual_name: str | None = None
    company_name: str | None = None
    email: Email | None = None
    mobile_phone: str | None = None
    office_phone: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state_county: str | None = None
    postal_code: str | None = None
    country: str | None = None
    vat_number: str | None = None
    tax_exempt: bool = False
    status: str = "active"
    transaction_tags: list[str] = Field(default_factory=list)
    notes: Text | None = None
    metadata: Metadata = Field(default_factory=dict)
    payment_terms_days: Annotated[StrictInt, Field(ge=0)] | None = None
    credit_limit_cents: NonNegativeCents | None = None


class SalesTax(RequestBody):
    amount: NonNegativeCents
    discount_amount: NonNegativeCents = 0


class LineItem(RequestBody):
    quantity: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)]
    unit_price: NonNegativeCents
    description: Annotated[str, StringConstraints(max_length=2_000)]
    external_id: ExternalId | None = None
    product: str | None = None
    account_identifier: Any = None
    discount_amount: NonNegativeCents = 0
    sales_taxes: list[SalesTax] = Field(default_factory=list)

    @field_validator("quantity", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("Quantity must be a number.")
        return value


class CreateInvoiceRequest(RequestBody):
    external_id: ExternalId
    sent_at: Timestamp
    line_items: Annotated[list[LineItem], Field(min_length=1)]
    customer_id: str | None = None
    customer_external_id: str | None = None
    currency: Currency | None = None
    due_at: Timestamp | None = None
    voided_at: Timestamp | None = None
    invoice_number: Annotated[str, StringConstraints(max_length=100)] | None = None
    invoice_type: str = "invoice"
    memo: Text | None = None
    additional_discount: NonNegativeCents = 0
    additional_sales_taxes_total: NonNegativeCents = 0
    tips: NonNegativeCents = 0
    transaction_tags: list[str] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class Allocation(RequestBody):
    invoice_id: str
    amount_cents: PositiveCents


class CreateInvoicePaymentRequest(RequestBody):
    customer_id: str
    total_amount_cents: PositiveCents
    allocations: list[Allocation]
    payment_date: date | None = None
    currency: Currency | None = None
    payment_method: Annotated[str, StringConstraints(max_length=50)] = "bank_transfer"
    payment_reference: Annotated[str, StringConstraints(max_length=255)] | None = None
    external_id: ExternalId | None = None
    note: Text | None = None
    notes: Text | None = None
    metadata: Metadata = Field(default_factory=dict)
    references: Metadata = Field(default_factory=dict)
    processing_fee_cents: NonNegativeCents = 0
    payment_processor: Annotated[str, StringConstraints(max_length=100)] | None = None
    status: Literal["completed", "pending", "failed"] = "completed"


class CreateRefundRequest(RequestBody):
    invoice_id: str
    method: RefundMethod
    completed_at: Timestamp
    external_id: ExternalId
    amount_cents: PositiveCents | None = Field(
        default=None, validation_alias=AliasChoices("amount_cents", "partial_amount")
    )
    memo: Text | None = None
    reference_number: Annotated[str, StringConstraints(max_length=255)] | None = None
    processor: Annotated[str, StringConstraints(max_length=100)] | None = None
    refund_processing_fee_cents: NonNegativeCents = 0


class CreateRefundPaymentRequest(RequestBody):
    amount_cents: PositiveCents
    method: RefundMethod
    external_id: ExternalId
    completed_at: Timestamp | None = None
    processor: Annotated[str, StringConstraints(max_length=100)] | None = None
    memo: Text | None = None
    transaction_tags: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list
    )
    refund_processing_fee_cents: NonNegativeCents = 0


class CreatePayoutRequest(RequestBody):
    external_id: ExternalId
    processor: PayoutProcessor
    paid_out_amount_cents: Cents
    fee_cents: NonNegativeCents
    currency: Currency
    status: PayoutStatus
    completed_at: Timestamp
    processor_payout_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    additional_refunds_amount_cents: NonNegativeCents = 0
    payment_ids: list[str] = Field(default_factory=list)
    refund_payment_ids: list[str] = Field(default_factory=list)
    reference_number: Annotated[str, StringConstraints(max_length=255)] | None = None
    memo: Text | None = None
    metadata: Metadata = Field(default_factory=dict)
