"""Stripe as a :class:`~thred_bridge.processors.base.Processor`: verify deliveries, and for a stored
event fetch the charge's current state (trust comes from the fetch, not the body), its balance
transaction (the fee, in the settlement currency) and its customer, then translate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice
from thred_bridge.errors import PayloadError, ProcessorError, TranslationError
from thred_bridge.processors.stripe import translate, webhook
from thred_bridge.processors.stripe.api import StripeApi


class StripeProcessor:
    """Stripe deliveries and fetches; one API client per connection key."""

    name = "stripe"

    def __init__(self, api_base: str, *, timeout: float = 20.0) -> None:
        self._api_base = api_base
        self._timeout = timeout
        self._apis: dict[str, StripeApi] = {}

    def verify(
        self, body: bytes, headers: Mapping[str, str], connection: Connection, now: datetime
    ) -> Sequence[Notice]:
        webhook.verify(body, headers.get("stripe-signature"), connection.webhook_secrets, now)
        event = webhook.parse_event(body)
        if connection.account and event.account and event.account != connection.account:
            raise PayloadError(f"event for account {event.account}; this connection is for {connection.account}")
        key = event.charge_id or event.object_id or event.id
        if event.account:
            key = f"{event.account}/{key}"
        return [
            Notice(
                event_id=event.id,
                event_type=event.type,
                object_key=key,
                body=body,
                account=event.account,
                handled=event.handled,
            )
        ]

    def _api(self, connection: Connection) -> StripeApi:
        api = self._apis.get(connection.id)
        if api is None:
            api = StripeApi(connection.credentials["api_key"], base_url=self._api_base, timeout=self._timeout)
            self._apis[connection.id] = api
        return api

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement]:
        parsed = webhook.parse_event(event.body)
        if not parsed.handled:
            return []
        if parsed.charge_id is None:
            raise TranslationError(f"Stripe event {parsed.id} ({parsed.type}) names no charge")
        api = self._api(connection)
        account = parsed.account or connection.account
        charge = await api.charge(parsed.charge_id, account=account)
        bt = await api.balance_transaction(translate.balance_transaction_id(charge), account=account)
        customer = None
        customer_id = translate.id_of(charge.get("customer"))
        if customer_id is not None:
            try:
                customer = await api.customer(customer_id, account=account)
            except ProcessorError as exc:
                if exc.status != 404:
                    raise
                # A deleted customer: book the charge on its billing details instead.
        if customer is not None and customer.get("deleted"):
            customer = None
        return [translate.to_charge(charge, bt, customer=customer, account=account)]

    async def aclose(self) -> None:
        for api in self._apis.values():
            await api.aclose()
        self._apis.clear()
