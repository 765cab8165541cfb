"""Routes under ``/v1/platform/businesses/{business_id}/``: customers, invoices, invoice payments, refunds,
refund payments and payouts. Each needs a business-scoped token for that business.

Response shapes the bridge's client must expect:

- creates answer 201, or 200 with the existing record on an ``external_id`` repeat (payouts: 200 = updated);
- ``POST …/invoices/payments/`` answers ``{"payment": {...}}`` (wrapped); ``GET`` answers the payment flat.
  A repeated ``Idempotency-Key`` replays the first response with 200, whatever the new body says;
- ``DELETE …/refunds/{refund_id}/payments/{payment_id}/`` answers 204 with no body;
- lists answer ``{count, page_info: {total_count, current_page, total_pages, page_size}, results}``.

List filters: ``external_id`` (exact; a substring, case-insensitive, on payouts) everywhere; invoices also
``customer_id`` (comma-separated), ``customer_external_id``, ``status``; payments ``customer_id``, ``status``,
``invoice_id``, ``payment_processor`` and ``search`` (a substring of external_id, payment_reference or note);
refunds ``invoice_id``, ``customer_id``; payouts ``processor``, ``status``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thred_bridge.sandbox import handling
from thred_bridge.sandbox.books import Books
from thred_bridge.sandbox.schemas import (
    CreateCustomerRequest,
    CreateInvoicePaymentRequest,
    CreateInvoiceRequest,
    CreatePayoutRequest,
    CreateRefundPaymentRequest,
    CreateRefundRequest,
)
from thred_bridge.sandbox.store import Doc
from thred_bridge.sandbox.views import invoice_status

BUSINESS = "/v1/platform/businesses/{business_id}"
Endpoint = Callable[[Request, str], Awaitable[Response]]


def _ids(query: Mapping[str, str], name: str) -> set[str] | None:
    raw = query.get(name)
    return None if raw is None else {part.strip() for part in raw.split(",") if part.strip()}


def record_routes(books: Books) -> list[Route]:
    def scoped(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def checked(request: Request) -> Response:
            business_id = request.path_params["business_id"]
            handling.business_token(request, books, business_id)
            return await endpoint(request, business_id)

        checked.__name__ = endpoint.__name__
        return checked

    async def customers(request: Request, bid: str) -> Response:
        if request.method == "POST":
            written = books.create_customer(bid, await handling.body(request, CreateCustomerRequest))
            return handling.created(written.body, written.created)
        return JSONResponse(books.page("customer", bid, request.query_params))

    async def invoices(request: Request, bid: str) -> Response:
        if request.method == "POST":
            written = books.create_invoice(bid, await handling.body(request, CreateInvoiceRequest))
            return handling.created(written.body, written.created)
        query = request.query_params
        owners = _ids(query, "customer_id")
        if "customer_external_id" in query:
            owner = books.docs.by_key("customer", bid, query["customer_external_id"])
            by_external_id = {owner["id"]} if owner else set()
            owners = by_external_id if owners is None else owners & by_external_id
        status = query.get("status")

        def where(doc: Doc) -> bool:
            if owners is not None and doc["customer_id"] not in owners:
                return False
            return status is None or invoice_status(doc) == status.upper()

        return JSONResponse(books.page("invoice", bid, query, where))

    async def payments(request: Request, bid: str) -> Response:
        if request.method == "POST":
            key = request.headers.get("idempotency-key")
            replay = books.replay(bid, key) if key else None
            if replay is not None:
                return JSONResponse(replay, status_code=200)
            request_body = await handling.body(request, CreateInvoicePaymentRequest)
            written = books.create_payment(bid, request_body, key)
            return handling.created(written.body, written.created)
        query = request.query_params
        owners, status, search = _ids(query, "customer_id"), query.get("status"), query.get("search")
        invoice_id, processor = query.get("invoice_id"), query.get("payment_processor")

        def where(doc: Doc) -> bool:
            if owners is not None and doc["customer_id"] not in owners:
                return False
            if status is not None and doc["status"] != status:
                return False
            if processor is not None and doc.get("payment_processor") != processor:
                return False
            if invoice_id is not None and all(a["invoice_id"] != invoice_id for a in doc["allocations"]):
                return False
            texts = (doc.get("external_id"), doc.get("payment_reference"), doc.get("note"))
            return search is None or any(search.lower() in (t or "").lower() for t in texts)

        return JSONResponse(books.page("invoice_payment", bid, query, where))

    async def refunds(request: Request, bid: str) -> Response:
        if request.method == "POST":
            written = books.create_refund(bid, await handling.body(request, CreateRefundRequest))
            return handling.created(written.body, written.created)
        query = request.query_params
        invoice_id, owners = query.get("invoice_id"), _ids(query, "customer_id")

        def where(doc: Doc) -> bool:
            if invoice_id is not None and doc["invoice_id"] != invoice_id:
                return False
            return owners is None or doc["customer_id"] in owners

        return JSONResponse(books.page("refund", bid, query, where))

    async def refund_payments(request: Request, bid: str) -> Response:
        refund_id = request.path_params["refund_id"]
        if request.method == "POST":
            books.refund_doc(bid, refund_id)  # 404 before 400: the order error is the useful one
            request_body = await handling.body(request, CreateRefundPaymentRequest)
            written = books.create_refund_payment(bid, refund_id, request_body)
            return handling.created(written.body, written.created)
        books.refund_doc(bid, refund_id)
        page = books.page("refund_payment", bid, request.query_params, lambda d: d["refund_id"] == refund_id)
        return JSONResponse(page)

    async def refund_payment(request: Request, bid: str) -> Response:
        refund_id, payment_id = request.path_params["refund_id"], request.path_params["payment_id"]
        if request.method == "DELETE":
            books.delete_refund_payment(bid, refund_id, payment_id)
            return Response(status_code=204)
        return JSONResponse(books.refund_payment(bid, refund_id, payment_id))

    async def payouts(request: Request, bid: str) -> Response:
        if request.method == "POST":
            written = books.upsert_payout(bid, await handling.body(request, CreatePayoutRequest))
            return handling.created(written.body, written.created)
        query = request.query_params
        processor, status = query.get("processor"), query.get("status")

        def where(doc: Doc) -> bool:
            return (processor is None or doc["processor"] == processor) and (status is None or doc["status"] == status)

        return JSONResponse(books.page("payout", bid, query, where, external_id_contains=True))

    def one(kind: str, param: str) -> Endpoint:
        async def fetch(request: Request, bid: str) -> Response:
            return JSONResponse(books.record(kind, bid, request.path_params[param]))

        fetch.__name__ = f"get_{kind}"
        return fetch

    async def delete_payment(request: Request, bid: str) -> Response:
        return JSONResponse(books.cancel_payment(bid, request.path_params["payment_id"]))

    async def reconcile(request: Request, bid: str) -> Response:
        return JSONResponse(books.reconcile_payout(bid, request.path_params["payout_id"]))

    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/customers/", customers, ["GET", "POST"]),
        ("/customers/{customer_id}/", one("customer", "customer_id"), ["GET"]),
        ("/invoices/", invoices, ["GET", "POST"]),
        ("/invoices/payments/", payments, ["GET", "POST"]),
        ("/invoices/payments/{payment_id}/", one("invoice_payment", "payment_id"), ["GET"]),
        ("/invoices/payments/{payment_id}/delete/", delete_payment, ["POST"]),
        ("/invoices/refunds/", refunds, ["GET", "POST"]),
        ("/invoices/refunds/{refund_id}/", one("refund", "refund_id"), ["GET"]),
        ("/invoices/refunds/{refund_id}/payments/", refund_payments, ["GET", "POST"]),
        ("/invoices/refunds/{refund_id}/payments/{payment_id}/", refund_payment, ["GET", "DELETE"]),
        ("/invoices/{invoice_id}/", one("invoice", "invoice_id"), ["GET"]),
        ("/payouts/", payouts, ["GET", "POST"]),
        ("/payouts/{payout_id}/", one("payout", "payout_id"), ["GET"]),
        # Sandbox only: stands in for Thred's user matching the payout to a bank transaction.
        ("/payouts/{payout_id}/reconcile/", reconcile, ["POST"]),
    ]
    return [Route(BUSINESS + path, scoped(endpoint), methods=methods) for path, endpoint, methods in table]
