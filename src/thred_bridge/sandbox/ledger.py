"""The ledger under the sandbox's books: lock and store, errors, tokens, businesses, customers, reading.

:class:`Ledger` keeps records in a :class:`~thred_bridge.sandbox.store.Documents` behind one lock and
renders them with :mod:`.views`. Each refusal is a :class:`SandboxError` carrying the HTTP status and the
Thred ``error_code`` the app answers with. :class:`~thred_bridge.sandbox.books.Books` builds on it with the
records that move money.

Every list pages the same way (``page`` from 1, ``page_size`` 20 by default and at most 100, a page past the
end is 404 ``invalid_page``, as Django REST Framework answers) and takes an exact ``external_id`` filter;
payouts take it as a case-insensitive substring, as Thred documents for them.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from thred_bridge.sandbox import views
from thred_bridge.sandbox.schemas import CreateBusinessRequest, CreateCustomerRequest
from thred_bridge.sandbox.store import Doc, Documents

MAX_PAGE_SIZE = 100


class SandboxError(Exception):
    """A request the sandbox refuses, with the status and ``error_code`` Thred would answer."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, list[str]] = dict(details or {})


def invalid(field: str, message: str) -> SandboxError:
    return SandboxError(400, "validation_error", "Validation failed", {field: [message]})


def not_found(code: str, what: str, record_id: str) -> SandboxError:
    return SandboxError(404, code, f"{what} {record_id} not found")


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    scope: str  # "partner" or "business_access"
    partner_id: str
    business_id: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Written:
    """The public form of a record a create returned, and whether this call created it (201) or not (200)."""

    body: Doc
    created: bool


def new_id() -> str:
    return str(uuid.uuid4())


def as_json(model: Any, *exclude: str) -> Doc:
    """A request model as stored JSON: dates and datetimes as ISO text, Decimals as text."""
    data: Doc = model.model_dump(mode="json", exclude=set(exclude))
    return data


class Ledger:
    """Records in memory or in a SQLite file, behind one lock; the parts of Thred that hold no money."""

    def __init__(self, path: str | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.docs = Documents(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()

    def now(self) -> datetime:
        moment = self._clock()
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def close(self) -> None:
        with self._lock:
            self.docs.close()

    @contextmanager
    def mutation(self) -> Iterator[Documents]:
        """Hold the lock for a check-then-write; commit once at the end (or roll the file back)."""
        with self._lock:
            try:
                yield self.docs
            except BaseException:
                self.docs.rollback()
                raise
            self.docs.commit()

    # tokens -----------------------------------------------------------------------------------------

    def issue_token(self, partner_id: str, business_id: str | None, ttl: int) -> Token:
        now = self.now()
        token = Token(
            value=f"sbx_{'b' if business_id else 'p'}_{secrets.token_urlsafe(32)}",
            scope="business_access" if business_id else "partner",
            partner_id=partner_id,
            business_id=business_id,
            expires_at=now + timedelta(seconds=ttl),
        )
        with self.mutation() as docs:
            for old in docs.scan("token", ""):
                if datetime.fromisoformat(old["expires_at"]) <= now:
                    docs.delete("token", "", old["id"])
            docs.put(
                "token",
                "",
                {
                    "id": token.value,
                    "scope": token.scope,
                    "partner_id": partner_id,
                    "business_id": business_id,
                    "expires_at": views.iso(token.expires_at),
                },
            )
        return token

    def token(self, value: str) -> Token | None:
        """The token with this value, expired or not; None if the sandbox never issued it."""
        doc = self.docs.get("token", "", value)
        if doc is None:
            return None
        expires = datetime.fromisoformat(doc["expires_at"])
        return Token(value, doc["scope"], doc["partner_id"], doc["business_id"], expires)

    # businesses -------------------------------------------------------------------------------------

    def create_business(self, request: CreateBusinessRequest, partner_id: str) -> Written:
        with self.mutation() as docs:
            existing = docs.by_key("business", "", request.external_id)
            if existing is not None:
                return Written(views.business(existing) | {"_meta": {"created": False}}, created=False)
            doc = self._business_doc(new_id(), partner_id, as_json(request), auto=False)
            docs.put("business", "", doc, key=request.external_id)
            return Written(views.business(doc) | {"_meta": {"created": True}}, created=True)

    def ensure_business(self, business_id: str, partner_id: str, *, create: bool) -> Doc:
        """The business, created on the spot when ``create`` (the sandbox's auto-create convenience)."""
        with self.mutation() as docs:
            doc = docs.get("business", "", business_id)
            if doc is None:
                if not create:
                    raise not_found("business_not_found", "Business", business_id)
                fields: Doc = {
                    "external_id": None,
                    "legal_name": f"Sandbox business {business_id}",
                    "entity_type": "limited",
                    "email": "sandbox@example.com",
                    "base_currency": "EUR",
                    "accounting_method": "accrual",
                    "country": None,
                    "metadata": {},
                }
                doc = self._business_doc(business_id, partner_id, fields, auto=True)
                docs.put("business", "", doc)
            return views.business(doc)

    def _business_doc(self, business_id: str, partner_id: str, fields: Doc, *, auto: bool) -> Doc:
        stamp = views.iso(self.now())
        return {
            "id": business_id,
            **fields,
            "partner_id": partner_id,
            "auto_created": auto,
            "created_at": stamp,
            "updated_at": stamp,
        }

    def business(self, business_id: str) -> Doc:
        doc = self.docs.get("business", "", business_id)
        if doc is None:
            raise not_found("business_not_found", "Business", business_id)
        return views.business(doc)

    def base_currency(self, business_id: str) -> str:
        return str(self.business(business_id)["base_currency"])

    # customers --------------------------------------------------------------------------------------

    def create_customer(self, business_id: str, request: CreateCustomerRequest) -> Written:
        with self.mutation() as docs:
            if request.external_id is not None:
                existing = docs.by_key("customer", business_id, request.external_id)
                if existing is not None:
                    return Written(views.customer(existing), created=False)
            stamp = views.iso(self.now())
            doc = {
                "id": new_id(),
                "business_id": business_id,
                **as_json(request),
                "created_at": stamp,
                "updated_at": stamp,
            }
            docs.put("customer", business_id, doc, key=request.external_id)
            return Written(views.customer(doc), created=True)

    def customer_doc(self, business_id: str, customer_id: str) -> Doc:
        doc = self.docs.get("customer", business_id, customer_id)
        if doc is None:
            raise not_found("customer_not_found", "Customer", customer_id)
        return doc

    # reading ----------------------------------------------------------------------------------------

    def record(self, kind: str, business_id: str, record_id: str) -> Doc:
        """The public form of one record; 404 with ``<kind>_not_found`` when absent."""
        doc = self.docs.get(kind, business_id, record_id)
        if doc is None:
            code = "payment_not_found" if kind == "invoice_payment" else f"{kind}_not_found"
            raise not_found(code, kind.replace("_", " ").capitalize(), record_id)
        return self.render(kind, doc)

    def render(self, kind: str, doc: Doc) -> Doc:
        if kind == "customer":
            return views.customer(doc)
        if kind == "invoice":
            return views.invoice(self.docs, doc, self.now())
        if kind == "invoice_payment":
            return views.payment(self.docs, doc)
        if kind == "refund":
            return views.refund(self.docs, doc)
        if kind == "refund_payment":
            return views.refund_payment(self.docs, doc)
        if kind == "payout":
            return views.payout(self.docs, doc)
        return views.business(doc)

    def page(
        self,
        kind: str,
        scope: str,
        query: Mapping[str, str],
        where: Callable[[Doc], bool] | None = None,
        *,
        external_id_contains: bool = False,
    ) -> Doc:
        """One page of a list, as ``{count, page_info, results}``; filters on ``external_id`` always."""
        number = _positive_int(query, "page", 1)
        size = _positive_int(query, "page_size", 20)
        if size > MAX_PAGE_SIZE:
            raise invalid("page_size", f"Ensure this value is less than or equal to {MAX_PAGE_SIZE}.")
        wanted = query.get("external_id")
        with self._lock:
            if wanted is None:
                rows = self.docs.scan(kind, scope)
            elif external_id_contains:
                rows = [d for d in self.docs.scan(kind, scope) if wanted.lower() in (d["external_id"] or "").lower()]
            elif kind == "refund_payment":  # unique per refund, not per business: no index to use
                rows = [d for d in self.docs.scan(kind, scope) if d["external_id"] == wanted]
            else:
                hit = self.docs.by_key(kind, scope, wanted)
                rows = [] if hit is None else [hit]
            if where is not None:
                rows = [d for d in rows if where(d)]
            total_pages = max(1, -(-len(rows) // size))
            if number > total_pages:
                raise SandboxError(404, "invalid_page", f"Invalid page {number}: there are {total_pages}.")
            chosen = rows[(number - 1) * size : number * size]
            return {
                "count": len(rows),
                "page_info": {
                    "total_count": len(rows),
                    "current_page": number,
                    "total_pages": total_pages,
                    "page_size": size,
                },
                "results": [self.render(kind, d) for d in chosen],
            }

    def state(self) -> Doc:
        """Everything, per business, in public form: for tests and the demo's printout."""
        kinds = {
            "customers": "customer",
            "invoices": "invoice",
            "payments": "invoice_payment",
            "refunds": "refund",
            "refund_payments": "refund_payment",
            "payouts": "payout",
        }
        with self._lock:
            out: Doc = {}
            for doc in self.docs.scan("business", ""):
                bid = doc["id"]
                entry: Doc = {"business": views.business(doc)}
                for label, kind in kinds.items():
                    entry[label] = [self.render(kind, d) for d in self.docs.scan(kind, bid)]
                out[bid] = entry
            return {"businesses": out}


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise invalid(name, "A valid integer of at least 1 is required.")
    return int(raw)
