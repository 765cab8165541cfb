"""Movements → Thred records (domain/records.py) and external-id rules (domain/ids.py)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.ids import MAX_EXTERNAL_ID, customer_external_id, external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeDebit, Party, Refund
from thred_bridge.domain.record_types import Lookup
from thred_bridge.domain.records import ORDER, Record, Ref, charge_records, fill, records_for

AT = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def charge(
    object_id: str = "ch_1",
    *,
    customer: Party | None = None,
    amount: Money | None = None,
    fee: Money | None = None,
    account: str | None = None,
    reference: str | None = "pi_1",
    metadata: dict[str, str] | None = None,
) -> Charge:
    return Charge(
        processor="stripe",
        object_id=object_id,
        amount=amount or Money(50000, "EUR"),
        fee=fee or Money(892, "EUR"),
        occurred_at=AT,
        customer=customer or Party(key="cus_A", name="Jana Nováková", email="jana@example.com"),
        description="Invoice INV-42",
        method="card",
        reference=reference,
        account=account,
        metadata=metadata or {"stripe_charge_id": object_id},
    )


def by_kind(records: list[Record]) -> dict[str, Record]:
    return {r.kind: r for r in records}


# --- charge_records --------------------------------------------------------------------------------------


def test_charge_becomes_customer_invoice_payment() -> None:
    records = charge_records(charge())
    assert [r.kind for r in records] == ["customer", "invoice", "payment"]
    customer, invoice, payment = records

    assert customer.external_id == "stripe_cus_A"
    assert customer.body["external_id"] == "stripe_cus_A"
    assert customer.body["individual_name"] == "Jana Nováková"
    assert customer.body["email"] == "jana@example.com"
    assert customer.body["status"] == "active"
    assert customer.body["metadata"] == {"processor": "stripe", "processor_customer": "cus_A"}
    assert "mobile_phone" not in customer.body  # empty optional fields are left out
    assert customer.parents == {}

    assert invoice.external_id == "stripe_ch_1"
    assert invoice.body["external_id"] == "stripe_ch_1"
    assert invoice.body["currency"] == "EUR"
    assert invoice.body["sent_at"] == "2026-03-14T09:26:53Z"
    assert invoice.body["due_at"] == "2026-03-14T09:26:53Z"
    assert invoice.body["customer_id"] is None
    assert invoice.body["line_items"] == [
        {"external_id": "stripe_ch_1_line", "description": "Invoice INV-42", "quantity": 1, "unit_price": 50000}
    ]
    assert invoice.parents == {"customer_id": Ref("customer", "stripe_cus_A")}
    assert invoice.idempotency_key is None

    assert payment.external_id == "stripe_ch_1"
    assert payment.body["external_id"] == "stripe_ch_1"
    assert payment.body["total_amount_cents"] == 50000
    assert payment.body["allocations"] == [{"invoice_id": None, "amount_cents": 50000}]
    assert payment.body["processing_fee_cents"] == 892
    assert payment.body["payment_processor"] == "stripe"
    assert payment.body["payment_method"] == "card"
    assert payment.body["payment_reference"] == "pi_1"
    assert payment.body["payment_date"] == "2026-03-14"
    assert payment.body["currency"] == "EUR"
    assert payment.idempotency_key == "stripe_ch_1"
    assert payment.parents == {
        "customer_id": Ref("customer", "stripe_cus_A"),
        "allocations.0.invoice_id": Ref("invoice", "stripe_ch_1"),
    }
    assert payment.body["metadata"] == {"processor": "stripe", "stripe_charge_id": "ch_1"}


@pytest.mark.parametrize(
    ("amount", "fee", "cents", "fee_cents"),
    [
        (Money(1000, "JPY"), Money(36, "JPY"), 1000, 36),
        (Money(1250, "KWD"), Money(5, "KWD"), 1250, 5),
        (Money(150, "ISK"), Money(0, "ISK"), 150, 0),
        (Money(1, "EUR"), Money(0, "EUR"), 1, 0),
    ],
)
def test_amounts_are_integer_minor_units(amount: Money, fee: Money, cents: int, fee_cents: int) -> None:
    invoice, payment = charge_records(charge(amount=amount, fee=fee))[1:]
    assert invoice.body["line_items"][0]["unit_price"] == cents
    assert invoice.body["currency"] == amount.currency
    assert payment.body["total_amount_cents"] == cents
    assert payment.body["allocations"][0]["amount_cents"] == cents
    assert payment.body["processing_fee_cents"] == fee_cents
    for value in (cents, fee_cents):
        assert type(value) is int


def test_payment_reference_falls_back_to_the_object_id() -> None:
    payment = charge_records(charge(reference=None))[2]
    assert payment.body["payment_reference"] == "ch_1"


def test_connect_account_is_in_metadata_and_scopes_anonymous_customers() -> None:
    walkin = charge_records(charge(customer=Party(key="walkin"), account="acct_X"))
    assert walkin[0].external_id == "stripe_acct_X_walkin"
    assert walkin[0].body["individual_name"] == "Walk-in customer"
    assert walkin[1].parents["customer_id"] == Ref("customer", "stripe_acct_X_walkin")
    assert walkin[2].parents["customer_id"] == Ref("customer", "stripe_acct_X_walkin")
    assert walkin[1].body["metadata"]["processor_account"] == "acct_X"
    assert walkin[2].body["metadata"]["processor_account"] == "acct_X"

    billing = charge_records(charge(customer=Party(key="billing_abc123"), account="acct_X"))
    assert billing[0].external_id == "stripe_acct_X_billing_abc123"

    # a real Stripe customer id is already unique across accounts: not scoped
    real = charge_records(charge(customer=Party(key="cus_A"), account="acct_X"))
    assert real[0].external_id == "stripe_cus_A"

    # without Connect, nothing is scoped and no account is claimed
    plain = charge_records(charge(customer=Party(key="walkin")))
    assert plain[0].external_id == "stripe_walkin"
    assert "processor_account" not in plain[2].body["metadata"]


def test_walkins_of_two_accounts_are_two_customers() -> None:
    a = charge_records(charge(customer=Party(key="walkin"), account="acct_A"))[0]
    b = charge_records(charge(customer=Party(key="walkin"), account="acct_B"))[0]
    assert a.external_id != b.external_id


def test_customer_optional_fields_map_to_thred_names() -> None:
    party = Party(
        key="cus_Z",
        phone="+420 600",
        address_line1="Masarykova 12",
        address_line2="Byt 4",
        city="Brno",
        state="JM",
        postal_code="602 00",
        country="CZ",
        email="z@example.com",
    )
    body = charge_records(charge(customer=party))[0].body
    assert body["individual_name"] == "z@example.com"  # no name: e-mail
    assert body["mobile_phone"] == "+420 600"
    assert body["address_line1"] == "Masarykova 12"
    assert body["address_line2"] == "Byt 4"
    assert body["city"] == "Brno"
    assert body["state_county"] == "JM"
    assert body["postal_code"] == "602 00"
    assert body["country"] == "CZ"


def test_charge_refuses_non_positive_amounts_and_mixed_fee_currency() -> None:
    with pytest.raises(ValueError, match="positive"):
        charge(amount=Money(0, "EUR"))
    with pytest.raises(ValueError, match="same"):
        charge(fee=Money(1, "USD"))


# --- records_for -----------------------------------------------------------------------------------------


# --- invoice-first charges ------------------------------------------------------------------------------


def test_an_invoice_first_charge_adopts_the_named_invoice_and_pays_it() -> None:
    records = charge_records(dataclasses.replace(charge(), thred_invoice_id="inv_thred_7"))
    assert [(r.kind, r.external_id, r.op) for r in records] == [
        ("invoice", "stripe_ch_1", "adopt"),  # no customer and no invoice of the bridge's own
        ("payment", "stripe_ch_1", "create"),
    ]
    adopted, payment = records
    assert adopted.body == {"id": "inv_thred_7"}
    assert (adopted.parents, adopted.lookups, adopted.updatable) == ({}, {}, False)  # the first queued wins
    assert payment.body["allocations"] == [{"invoice_id": "inv_thred_7", "amount_cents": 50000}]
    assert payment.lookups == {"customer_id": Lookup("invoice", "inv_thred_7", "customer.id")}
    assert payment.parents == {"~invoice": Ref("invoice", "stripe_ch_1")}  # sent once the invoice is read


def _refund(charge_id: str = "ch_1") -> Refund:
    return Refund("adyen", "8835", charge_id, Money(2500, "EUR"), Money(0, "EUR"), AT, "succeeded")


def test_a_refund_without_its_charge_waits_for_the_charges_invoice_record() -> None:
    """An Adyen REFUND names only the payment: its refund waits for the invoice record, which the capture
    makes (the bridge's own, or the adopted one), and for the payment."""
    (refund, refund_payment) = records_for([_refund()])
    assert (refund.kind, refund.external_id, refund.body["invoice_id"]) == ("refund", "adyen_8835", None)
    assert refund.parents == {"invoice_id": Ref("invoice", "adyen_ch_1"), "~payment": Ref("payment", "adyen_ch_1")}
    assert refund_payment.parent_path == Ref("refund", "adyen_8835")


def test_an_invoice_first_charges_refund_and_dispute_wait_for_the_adopted_invoice() -> None:
    paid = dataclasses.replace(charge("ch_1"), processor="adyen", thred_invoice_id="inv_thred_7")
    debit = DisputeDebit("adyen", "8845", "ch_1", Money(7500, "EUR"), Money(0, "EUR"), AT)
    planned = records_for([_refund(), debit, paid])
    assert [(r.kind, r.external_id, r.op) for r in planned] == [
        ("invoice", "adyen_ch_1", "adopt"),
        ("payment", "adyen_ch_1", "create"),
        ("refund", "adyen_8835", "create"),
        ("refund", "adyen_8845", "create"),
        ("refund_payment", "adyen_8835", "create"),
        ("refund_payment", "adyen_8845", "create"),
    ]
    for refund in planned[2:4]:
        assert refund.parents["invoice_id"] == Ref("invoice", "adyen_ch_1")


def test_records_for_dedupes_and_orders_parents_first() -> None:
    movements = [
        charge("ch_1"),
        charge("ch_2"),
        charge("ch_1"),  # the same charge again (a redelivered event)
        charge("ch_3", customer=Party(key="cus_B", name="B")),
    ]
    records = records_for(movements)
    keys = [(r.kind, r.external_id) for r in records]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(
        [
            ("customer", "stripe_cus_A"),
            ("customer", "stripe_cus_B"),
            *((kind, f"stripe_{c}") for c in ("ch_1", "ch_2", "ch_3") for kind in ("invoice", "payment")),
        ]
    )
    kinds = [r.kind for r in records]
    assert kinds == sorted(kinds, key=ORDER.index)
    position = {(r.kind, r.external_id): i for i, r in enumerate(records)}
    for i, record in enumerate(records):
        for parent in record.parents.values():
            assert position[(parent.kind, parent.external_id)] < i


def test_records_for_keeps_the_first_version_of_a_record() -> None:
    first = charge("ch_1", customer=Party(key="cus_A", name="First"))
    later = charge("ch_2", customer=Party(key="cus_A", name="Renamed"))
    customers = [r for r in records_for([first, later]) if r.kind == "customer"]
    assert len(customers) == 1
    assert customers[0].body["individual_name"] == "First"


def test_records_for_nothing_is_nothing() -> None:
    assert records_for([]) == []


# --- fill ------------------------------------------------------------------------------------------------


def test_fill_sets_dotted_paths_with_list_indexes() -> None:
    payment = charge_records(charge())[2]
    before = copy.deepcopy(dict(payment.body))
    filled = fill(payment.body, {"customer_id": "cust_9", "allocations.0.invoice_id": "inv_9"})
    assert filled["customer_id"] == "cust_9"
    assert filled["allocations"] == [{"invoice_id": "inv_9", "amount_cents": 50000}]
    assert {k: v for k, v in filled.items() if k not in ("customer_id", "allocations")} == {
        k: v for k, v in before.items() if k not in ("customer_id", "allocations")
    }
    # the record's own body is untouched, nested lists and dicts included
    assert payment.body == before
    assert payment.body["allocations"][0]["invoice_id"] is None


def test_fill_does_not_share_nested_objects_with_its_input() -> None:
    body: dict[str, Any] = {"a": {"b": [{"c": None}, {"c": None}]}, "t": ({"x": 1},)}
    filled = fill(body, {"a.b.1.c": "id_1"})
    assert filled == {"a": {"b": [{"c": None}, {"c": "id_1"}]}, "t": [{"x": 1}]}
    assert body == {"a": {"b": [{"c": None}, {"c": None}]}, "t": ({"x": 1},)}
    filled["a"]["b"][0]["c"] = "changed"
    filled["t"][0]["x"] = 2
    assert body["a"]["b"][0]["c"] is None
    assert body["t"][0]["x"] == 1


def test_fill_sets_a_list_element_and_nothing_is_a_copy() -> None:
    body: dict[str, Any] = {"ids": [None, None, None]}
    assert fill(body, {"ids.2": "x"}) == {"ids": [None, None, "x"]}
    same = fill(body, {})
    assert same == body
    assert same is not body
    assert same["ids"] is not body["ids"]


def test_fill_unknown_path_fails_loudly() -> None:
    with pytest.raises(KeyError):
        fill({"a": {}}, {"missing.x": "id"})
    with pytest.raises(IndexError):
        fill({"a": [None]}, {"a.3": "id"})


# --- ids -------------------------------------------------------------------------------------------------


def test_external_id_examples() -> None:
    assert external_id("stripe", "ch_1") == "stripe_ch_1"
    assert external_id("stripe", "ch_1", "line") == "stripe_ch_1_line"
    assert external_id("adyen", "8815") == "adyen_8815"
    with pytest.raises(ValueError, match="object id"):
        external_id("stripe", "")


def test_customer_external_id_rules() -> None:
    assert customer_external_id("stripe", "cus_1", None) == "stripe_cus_1"
    assert customer_external_id("stripe", "cus_1", "acct_9") == "stripe_cus_1"
    assert customer_external_id("stripe", "walkin", "acct_9") == "stripe_acct_9_walkin"
    assert customer_external_id("stripe", "billing_d1", "acct_9") == "stripe_acct_9_billing_d1"
    assert customer_external_id("stripe", "walkin", None) == "stripe_walkin"


def test_short_ids_are_kept_whole_up_to_the_limit() -> None:
    exact = "x" * (MAX_EXTERNAL_ID - len("stripe_"))
    assert external_id("stripe", exact) == f"stripe_{exact}"
    assert len(external_id("stripe", exact)) == MAX_EXTERNAL_ID


@given(
    st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=400),
    st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=400),
)
def test_long_ids_are_truncated_with_a_digest_and_stay_unique(a: str, b: str) -> None:
    prefix = "ch_" + "p" * 300  # both share their first 255 characters
    x, y = external_id("stripe", prefix + a), external_id("stripe", prefix + b)
    assert len(x) == len(y) == MAX_EXTERNAL_ID
    assert x.startswith("stripe_ch_ppp")
    assert (x == y) == (a == b)
    assert external_id("stripe", prefix + a) == x  # deterministic


def test_truncated_suffixed_ids_differ_from_unsuffixed() -> None:
    long_id = "ch_" + "q" * 300
    assert external_id("stripe", long_id) != external_id("stripe", long_id, "line")
    assert len(external_id("stripe", long_id, "line")) == MAX_EXTERNAL_ID


def test_a_record_spooled_as_json_reads_back_the_same() -> None:
    """``record_json``/``record_of``: how a plan spooled to disk reads back (every field, each shape)."""
    from thred_bridge.domain.record_types import record_json, record_of

    planned = [
        *records_for([charge("ch_1"), charge("ch_2", customer=Party("cus_9", name="Ada"))]),
        Record(
            "refund_payment", "stripe_re_1", {"amount_cents": 5, "nested": [{"a": None}]},
            parents={"refund_id": Ref("refund", "stripe_re_1"), "~payment": Ref("payment", "stripe_ch_1")},
            idempotency_key="idem-1", parent_path=Ref("refund", "stripe_re_1"),
            lookups={"customer_id": Lookup("invoice", "inv_123", "customer_id")},
        ),
        Record("payout", "stripe_po_1", {"payment_ids": [None]}, parents={"payment_ids.0": Ref("payment", "x")},
               updatable=True),
        Record("refund", "stripe_re_2", {}, parents={"id": Ref("refund", "stripe_re_2")}, op="delete"),
        Record("invoice", "adyen_881", {"id": "inv_thred_7"}, op="adopt"),
    ]  # fmt: skip
    for record in planned:
        line = record_json(record)
        assert line.endswith(b"\n")
        assert b"\n" not in line[:-1]
        assert record_of(line) == record
