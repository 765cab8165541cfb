"""The bridge's one error tree.

::

    BridgeError
    ├── ConfigError                                    operator must fix settings (exit 2)
    ├── DeliveryError                                  4xx to the caller, nothing stored
    │   ├── SignatureError                             400
    │   ├── PayloadError                               400
    │   ├── UnauthorizedError                          401 (the webhook's Basic auth)
    │   └── PayloadTooLargeError                       413
    ├── UnknownConnectionError                         404
    ├── StoreError
    │   └── SchemaOutdatedError                        run `thred-bridge migrate`
    ├── TranslationError                               permanent: replay after a fix
    ├── NotReadyError                                  transient: the processor has not finished (e.g. no fee yet)
    ├── ProcessorError                                 permanent processor API answer (404, 400, auth)
    │   └── ProcessorUnavailableError                  transient: 5xx, 429, timeout, connection
    └── ThredError                                     permanent Thred answer (400, 404, 409, ...)
        ├── ThredAuthError                             401/403 after one re-auth
        └── ThredUnavailableError                      transient: 5xx, 429, timeout, connection

A class docstring is its default message. Whether to retry is an ``isinstance`` check
(:data:`TRANSIENT`), never a match on text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class BridgeError(Exception):
    """The bridge failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(BridgeError):
    """The configuration is not usable."""


class DeliveryError(BridgeError):
    """The delivery was refused."""

    status_code = 400


class SignatureError(DeliveryError):
    """The signature does not match the raw body."""


class PayloadError(DeliveryError):
    """The body is not a well-formed event."""


class UnauthorizedError(DeliveryError):
    """The delivery's credentials (HTTP Basic auth) are missing or wrong."""

    status_code = 401


class PayloadTooLargeError(DeliveryError):
    """The body is larger than the bridge accepts."""

    status_code = 413


class BodyTimeoutError(DeliveryError):
    """The body did not arrive in time (a slow or stalled sender)."""

    status_code = 408


class MediaTypeError(DeliveryError):
    """The delivery declares a content type its processor does not send."""

    status_code = 415


class UnknownConnectionError(BridgeError):
    """No active connection has this id."""


class StoreError(BridgeError):
    """The database refused the operation."""


class SchemaOutdatedError(StoreError):
    """The database schema is older than this release: run `thred-bridge migrate`."""


class TranslationError(BridgeError):
    """The processor object cannot be turned into Thred records."""


class NotReadyError(BridgeError):
    """The processor has not finished with this object yet; try again later."""

    def __init__(self, message: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProcessorError(BridgeError):
    """The processor API refused the request."""

    def __init__(self, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProcessorUnavailableError(ProcessorError):
    """The processor API is unavailable; try again later."""

    def __init__(self, message: str | None = None, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class ThredError(BridgeError):
    """Thred refused the request."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Sequence[str]] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details: dict[str, list[str]] = {k: list(v) for k, v in (details or {}).items()}
        self.request_id = request_id

    def describe(self) -> str:
        """One line for `status` and logs: status, code, message and field details."""
        head = " ".join(p for p in (str(self.status or ""), self.code or "") if p)
        fields = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(self.details.items()))
        text = f"Thred {head}: {self.message}" if head else f"Thred: {self.message}"
        return f"{text} ({fields})" if fields else text


class ThredAuthError(ThredError):
    """Thred refused the credentials."""


class ThredUnavailableError(ThredError):
    """Thred is unavailable; try again later."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


TRANSIENT: tuple[type[BridgeError], ...] = (ProcessorUnavailableError, ThredUnavailableError, NotReadyError)


def retry_after_of(exc: BaseException) -> float | None:
    """The delay a transient error asks for (a 429's Retry-After), if any."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


def describe(exc: BaseException) -> str:
    """One line for `status`, logs and the events table (Thred's status, code and field details)."""
    if isinstance(exc, ThredError):
        return exc.describe()
    return str(exc) or type(exc).__name__
