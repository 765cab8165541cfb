"""Adyen as a :class:`~thred_bridge.processors.base.Processor`: verify Standard-webhook batches item by
item, and turn each stored item into movements.

Ingest (``verify``): the connection's optional HTTP Basic auth first (401), then EVERY item's HMAC against
every key of the connection (rotation) and its merchant account (``notification.verify_notification``).
Valid items become one notice each (event id: the item's dedupe key; object key: the payment, so one
payment's events run one at a time); refused items are logged, never stored. A batch with no valid item
is refused (400, with the reasons). The stored delivery is acknowledged with ``[accepted]``.

Worker (``movements``): an item → ``translate.to_movements`` (a dispute reinstatement brings its
payment's movement along, which ``records_for`` needs); a REPORT_AVAILABLE for a settlement details report
→ download (``download``) to a spool file, then a :class:`MovementStream` that reads it twice
(``report_stream``: sum each batch, then book its payments, refunds and disputes a chunk at a time, the
payout last), so a report of any size is booked without holding its rows.

Connection settings (in its encrypted credentials): ``webhook_user``/``webhook_password`` (Basic auth on
the webhook), ``report_user``/``report_password`` (or ``report_api_key``) for report downloads, and
``capture``: ``delayed`` (the default: a CAPTURE webhook is income) or ``immediate`` (the merchant
account captures on authorisation: a successful AUTHORISATION is income), and ``settlement_currency``
(optional): what the merchant account settles in; a webhook's payment, refund or dispute in another
currency is held until the settlement report books it at the converted amount (decision 0008).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime

import httpx
import orjson
import structlog

from thred_bridge.domain.movements import Charge, DisputeCredit, Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice
from thred_bridge.errors import ConfigError, PayloadError, ProcessorError, TranslationError, UnauthorizedError
from thred_bridge.processors.adyen import history, translate
from thred_bridge.processors.adyen.download import (
    DEFAULT_MAX_REPORT_BYTES,
    DEFAULT_REPORT_HOSTS,
    ReportHosts,
    checked_url,
    download_report,
)
from thred_bridge.processors.adyen.history import TEST_REPORT_BASE
from thred_bridge.processors.adyen.notification import (
    NotificationItem,
    parse_item,
    stored_body,
    verify_notification,
)
from thred_bridge.processors.adyen.report_stream import report_chunks
from thred_bridge.processors.base import Acknowledgement, MovementStream

log = structlog.get_logger("thred_bridge.adyen")

ACCEPTED = Acknowledgement(b"[accepted]", "text/plain")


def check_basic_auth(header: str | None, credentials: Mapping[str, str]) -> None:
    """UnauthorizedError unless the connection has no webhook user, or ``header`` carries its user and
    password (compared in constant time)."""
    user, password = credentials.get("webhook_user"), credentials.get("webhook_password")
    if not user:
        return
    if not header or not header[:6].lower() == "basic ":
        raise UnauthorizedError("this webhook needs HTTP Basic auth (the username and password set in Adyen)")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnauthorizedError("the Basic auth header is not base64") from exc
    given_user, _, given_password = decoded.partition(b":")
    user_ok = hmac.compare_digest(given_user, user.encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, (password or "").encode("utf-8"))
    if not (user_ok and password_ok):
        raise UnauthorizedError("wrong Basic auth username or password")


def stored_item(body: bytes) -> NotificationItem:
    """The item a stored body holds (verified at ingest; here only parsed)."""
    try:
        data = orjson.loads(body)
        raw = data["notificationItems"][0]["NotificationRequestItem"]
        return parse_item(raw, live=data.get("live") == "true")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise TranslationError(f"the stored Adyen item cannot be read: {exc}") from exc
    except PayloadError as exc:
        raise TranslationError(f"the stored Adyen item is malformed: {exc.message}") from exc


class AdyenProcessor:
    """Adyen Standard webhooks and settlement-report downloads."""

    name = "adyen"
    media_types = frozenset({"application/json"})  # Standard webhooks: JSON only

    def __init__(
        self,
        report_hosts: str = DEFAULT_REPORT_HOSTS,
        *,
        timeout: float = 60.0,
        max_report_bytes: int = DEFAULT_MAX_REPORT_BYTES,
    ) -> None:
        self._hosts = ReportHosts.parse(report_hosts)
        self._timeout = timeout
        self._max_report_bytes = max_report_bytes
        self._client: httpx.AsyncClient | None = None

    def acknowledge(self, received: int, stored: int) -> Acknowledgement:  # noqa: ARG002 - the protocol's
        """``[accepted]``: Adyen's acknowledgement, sent only once every valid item is stored."""
        return ACCEPTED

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        connection: Connection,
        now: datetime,  # noqa: ARG002
    ) -> Sequence[Notice]:
        check_basic_auth(headers.get("authorization"), connection.credentials)
        merchant = connection.account or ""
        batch = verify_notification(body, connection.webhook_secrets, merchant)
        for refused in batch.refused:
            log.warning(
                "adyen.item_refused", connection=connection.id, index=refused.index,
                psp_reference=refused.psp_reference, event_code=refused.event_code, reason=refused.reason,
            )  # fmt: skip
        if not batch.valid:
            reasons = "; ".join(f"item {r.index}: {r.reason}" for r in batch.refused)
            raise PayloadError(f"every item was refused: {reasons}")
        return [
            Notice(
                event_id=item.dedupe_key,
                event_type=item.event_code,
                object_key=item.object_key,
                body=stored_body(item),
                handled=item.handled,
            )
            for item in batch.valid
        ]

    def report_notices(self, connection: Connection, batches: Sequence[int], base: str, now: datetime) -> list[Notice]:
        """The backfill's REPORT_AVAILABLE notices for past batches (``history``); refused up front when
        ``base`` is not an allowed report host, rather than as many failed events."""
        merchant = connection.account
        if not merchant:
            raise ConfigError(f"connection {connection.id} has no merchant account")
        try:
            checked_url(history.report_url(base, merchant, batches[0]), self._hosts)
        except ProcessorError as exc:
            raise ConfigError(f"--report-base {base}: {exc.message}") from exc
        return history.report_notices(merchant, batches, base, now, live=base.rstrip("/") != TEST_REPORT_BASE)

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement] | MovementStream:
        item = stored_item(event.body)
        if not item.handled:
            return []
        if item.is_settlement_report:
            return await self._report(item, connection)
        immediate = connection.credentials.get("capture") == "immediate"
        moved = translate.to_movements(item, immediate_capture=immediate)
        if any(isinstance(m, DisputeCredit) for m in moved):
            moved.insert(0, _reinstated_payment(item))
        return translate.held_unless_settled_in(moved, connection.credentials.get("settlement_currency"))

    async def _report(self, item: NotificationItem, connection: Connection) -> MovementStream:
        url = checked_url(item.reason, self._hosts)
        spool = await download_report(self._http(), url, connection.credentials, max_bytes=self._max_report_bytes)
        chunks = report_chunks(
            spool, file=item.psp_reference, merchant=connection.account or None, fallback_at=item.event_date
        )
        return MovementStream(chunks, spool.close)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, connect=10.0))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _reinstated_payment(item: NotificationItem) -> Charge:
    """The payment a dispute reinstatement is booked against (its customer): from the item itself. Its
    records are written only if the payment's own CAPTURE has not booked them (same external ids)."""
    payment = item.original_reference or item.psp_reference
    amount = translate.money_of(item)
    return Charge(
        processor=translate.PROCESSOR,
        object_id=payment,
        amount=amount,
        fee=amount - amount,
        occurred_at=item.event_date,
        customer=translate.to_party(item.additional_data),
        description=item.merchant_reference or f"Adyen payment {payment}",
        method=item.payment_method or "unknown",
        reference=item.merchant_reference or payment,
        metadata={"adyen_psp_reference": payment, "source": item.event_code},
    )
