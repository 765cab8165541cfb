"""The error tree (errors.py): default messages, Thred's descriptions, what is transient, Retry-After."""

from __future__ import annotations

import pytest

from thred_bridge.errors import (
    TRANSIENT,
    BridgeError,
    ConfigError,
    DeliveryError,
    NotReadyError,
    PayloadError,
    PayloadTooLargeError,
    ProcessorError,
    ProcessorUnavailableError,
    SchemaOutdatedError,
    SignatureError,
    StoreError,
    ThredAuthError,
    ThredError,
    ThredUnavailableError,
    TranslationError,
    UnknownConnectionError,
    describe,
    retry_after_of,
)

ALL: list[type[BridgeError]] = [
    BridgeError,
    ConfigError,
    DeliveryError,
    SignatureError,
    PayloadError,
    PayloadTooLargeError,
    UnknownConnectionError,
    StoreError,
    SchemaOutdatedError,
    TranslationError,
    NotReadyError,
    ProcessorError,
    ProcessorUnavailableError,
    ThredError,
    ThredAuthError,
    ThredUnavailableError,
]


@pytest.mark.parametrize("cls", ALL)
def test_docstring_is_the_default_message(cls: type[BridgeError]) -> None:
    doc = cls.__doc__
    assert doc
    first_line = doc.strip().splitlines()[0]
    error = cls()
    assert error.message == first_line
    assert str(error) == first_line
    assert cls("given").message == "given"


def test_some_default_messages() -> None:
    assert (
        SchemaOutdatedError().message == "The database schema is older than this release: run `thred-bridge migrate`."
    )
    assert ConfigError().message == "The configuration is not usable."
    assert SignatureError().message == "The signature does not match the raw body."


def test_empty_message_falls_back_to_the_docstring() -> None:
    assert ConfigError("").message == "The configuration is not usable."


def test_status_codes_for_deliveries() -> None:
    assert SignatureError.status_code == 400
    assert PayloadError.status_code == 400
    assert PayloadTooLargeError.status_code == 413


def test_hierarchy() -> None:
    assert issubclass(SchemaOutdatedError, StoreError)
    assert issubclass(ProcessorUnavailableError, ProcessorError)
    assert issubclass(ThredAuthError, ThredError)
    assert issubclass(ThredUnavailableError, ThredError)
    assert all(issubclass(cls, BridgeError) for cls in ALL)


def test_thred_error_describe_has_status_code_and_field_details() -> None:
    error = ThredError(
        "validation failed",
        status=422,
        code="invalid",
        details={"total_amount_cents": ["must be positive"], "currency": ["unknown", "required"]},
        request_id="req_1",
    )
    assert error.describe() == (
        "Thred 422 invalid: validation failed (currency: unknown, required; total_amount_cents: must be positive)"
    )
    assert describe(error) == error.describe()
    assert error.status == 422
    assert error.code == "invalid"
    assert error.request_id == "req_1"
    assert error.details == {"total_amount_cents": ["must be positive"], "currency": ["unknown", "required"]}


def test_thred_error_describe_without_parts() -> None:
    assert ThredError("nope").describe() == "Thred: nope"
    assert ThredError("nope", status=404).describe() == "Thred 404: nope"
    assert ThredError("nope", code="conflict").describe() == "Thred conflict: nope"
    assert ThredError(status=409, code="duplicate").describe() == "Thred 409 duplicate: Thred refused the request."
    assert ThredAuthError(status=401).describe() == "Thred 401: Thred refused the credentials."


def test_thred_error_copies_its_details() -> None:
    given = {"field": ("a",)}
    error = ThredError("x", details=given)
    assert error.details == {"field": ["a"]}
    error.details["field"].append("b")
    assert given == {"field": ("a",)}


def test_describe_other_exceptions() -> None:
    assert describe(ValueError("bad value")) == "bad value"
    assert describe(ValueError()) == "ValueError"
    assert describe(TranslationError()) == "The processor object cannot be turned into Thred records."
    assert describe(ThredUnavailableError("down", status=503)) == "Thred 503: down"


@pytest.mark.parametrize(
    "error",
    [
        ProcessorUnavailableError(status=503),
        ThredUnavailableError(status=429, retry_after=2.0),
        NotReadyError("no fee yet"),
    ],
)
def test_transient(error: BridgeError) -> None:
    assert isinstance(error, TRANSIENT)


@pytest.mark.parametrize(
    "error",
    [
        ProcessorError(status=404),
        ThredError(status=400),
        ThredAuthError(status=401),
        TranslationError(),
        ConfigError(),
        SignatureError(),
        SchemaOutdatedError(),
        UnknownConnectionError(),
    ],
)
def test_permanent(error: BridgeError) -> None:
    assert not isinstance(error, TRANSIENT)


def test_retry_after_of() -> None:
    assert retry_after_of(ThredUnavailableError(status=429, retry_after=30)) == 30.0
    assert isinstance(retry_after_of(ThredUnavailableError(retry_after=30)), float)
    assert retry_after_of(ProcessorUnavailableError(status=429, retry_after=1.5)) == 1.5
    assert retry_after_of(NotReadyError(retry_after=60.0)) == 60.0
    assert retry_after_of(NotReadyError()) is None
    assert retry_after_of(ThredUnavailableError()) is None
    assert retry_after_of(ThredError(status=400)) is None
    assert retry_after_of(ValueError("x")) is None


def test_processor_errors_keep_their_status() -> None:
    assert ProcessorError("gone", status=404).status == 404
    unavailable = ProcessorUnavailableError("slow down", status=429, retry_after=3.0)
    assert (unavailable.status, unavailable.retry_after, unavailable.message) == (429, 3.0, "slow down")
