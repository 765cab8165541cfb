"""ThredClient against an in-memory Thred (an httpx.MockTransport): tokens, records, paging, errors."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from freezegun import freeze_time

from thred_bridge.domain import json_codec
from thred_bridge.errors import ThredAuthError, ThredError, ThredUnavailableError
from thred_bridge.thred.client import Created, ThredClient

BASE = "https://thred.test"
PARTNER, KEY = "partner-uuid", "sk_live_secret_key"
B1, B2 = "b-0001", "b-0002"
TOKEN_PATH = re.compile(r"^/v1/platform/(?:(?P<b>[^/]+)/)?oauth2/token/$")
BUSINESS_PATH = re.compile(r"^/v1/platform/businesses/(?P<b>[^/]+)/(?P<rest>.*)$")
COLLECTION = re.compile(
    r"^(?P<c>customers/|invoices/payments/|invoices/refunds/[^/]+/payments/|invoices/refunds/|invoices/|payouts/)"
    r"(?:(?P<id>[^/]+)/(?P<delete>delete/)?)?$"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def reply(status: int, payload: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(payload), headers={"Content-Type": "application/json"} | (headers or {})
    )


def noun(collection: str) -> str:
    return collection.rstrip("/").split("/")[-1].removesuffix("s")


def bad_token() -> httpx.Response:
    return reply(401, {"error_code": "invalid_token", "message": "Token expired", "detail": {}, "request_id": "r1"})


@dataclass
class FakeThred:
    """Thred as the contract describes it, with knobs for the failures a client must survive."""

    clock: Callable[[], float]
    lifetime: int = 3600
    legacy_pages: bool = False  # answer lists with {count, next, previous, results}
    conflict_on_repeat: set[str] = field(default_factory=set)  # collections that 409 on a repeated external_id
    forbidden: set[str] = field(default_factory=set)  # businesses whose endpoints answer 403
    faults: list[httpx.Response] = field(default_factory=list)  # next answers of business endpoints
    token_faults: list[httpx.Response] = field(default_factory=list)  # next answers of token endpoints
    tokens: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # token -> (business, expires)
    records: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    idempotency: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    minted: list[str | None] = field(default_factory=list)

    def calls(self, method: str, fragment: str = "") -> int:
        return sum(r.method == method and fragment in r.url.path for r in self.requests)

    def revoke_all(self) -> None:
        self.tokens.clear()

    def seed(self, business: str, collection: str, count: int) -> None:
        rows = self.records.setdefault((business, collection), [])
        rows.extend({"id": f"{noun(collection)}-{i}", "external_id": f"ext_{i}"} for i in range(count))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if not path.endswith("/"):
            return httpx.Response(301, headers={"Location": path + "/"})
        if match := TOKEN_PATH.match(path):
            await asyncio.sleep(0.01)  # let concurrent callers pile up behind one refresh
            if self.token_faults:
                return self.token_faults.pop(0)
            return self.mint(request, match["b"])
        scope = self.bearer(request)
        if path.startswith("/v1/platform/businesses/") and (match := BUSINESS_PATH.match(path)) and match["rest"]:
            if match["b"] in self.forbidden:
                return reply(403, {"error": "Token scope mismatch", "error_code": "permission_denied"})
            if scope is None or scope[0] != match["b"]:
                return bad_token()
            if self.faults:
                return self.faults.pop(0)
            return self.business(request, match["b"], match["rest"])
        if scope is None or scope[0] is not None:
            return bad_token()
        return self.partner(request)

    def bearer(self, request: httpx.Request) -> tuple[str | None, float] | None:
        auth = request.headers.get("Authorization", "")
        held = self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        return held if held is not None and held[1] > self.clock() else None

    def mint(self, request: httpx.Request, business: str | None) -> httpx.Response:
        if business is None:
            expected = "Basic " + base64.b64encode(f"{PARTNER}:{KEY}".encode()).decode()
            form = parse_qs(request.content.decode())
            if request.headers.get("Authorization") != expected or form.get("grant_type") != ["client_credentials"]:
                return reply(401, {"error": "Invalid credentials", "error_code": "authentication_required"})
        else:
            scope = self.bearer(request)
            if scope is None or scope[0] is not None:
                return bad_token()
        token = f"tok-{len(self.minted)}-{business or 'partner'}"
        self.minted.append(business)
        self.tokens[token] = (business, self.clock() + self.lifetime)
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        return reply(200, answer | ({"business_id": business} if business else {}))

    def partner(self, request: httpx.Request) -> httpx.Response:
        rows = self.records.setdefault(("partner", "businesses/"), [])
        if request.method == "POST" and request.url.path == "/v1/platform/businesses/":
            return self.upsert(request, rows, "businesses/")
        if request.method == "GET" and request.url.path == "/v1/platform/businesses/":
            return self.page(request, rows)
        found = [r for r in rows if request.url.path == f"/v1/platform/businesses/{r['id']}/"]
        return reply(200, found[0]) if found else reply(404, {"error": "Not found", "error_code": "business_not_found"})

    def business(self, request: httpx.Request, business: str, rest: str) -> httpx.Response:
        match = COLLECTION.match(rest)
        if match is None:
            return reply(404, {"error": "No route", "error_code": "not_found"})
        collection, record_id = match["c"], match["id"]
        rows = self.records.setdefault((business, collection), [])
        if record_id is None and request.method == "POST":
            return self.upsert(request, rows, collection)
        if record_id is None and request.method == "GET":
            return self.page(request, rows)
        found = [r for r in rows if r["id"] == record_id]
        if not found:
            return reply(404, {"error_code": "not_found", "message": "No such record", "request_id": "r2"})
        if request.method == "GET":
            return reply(200, found[0])
        if (match["delete"] and request.method == "POST") or request.method == "DELETE":
            rows.remove(found[0])
            return reply(200, {"message": "deleted", "payment_id": record_id, "status": "cancelled"})
        return reply(405, {"error": "Method not allowed"})

    def upsert(self, request: httpx.Request, rows: list[dict[str, Any]], collection: str) -> httpx.Response:
        payload = orjson.loads(request.content)
        if request.headers.get("Content-Type") != "application/json":
            return reply(415, {"error": "JSON only"})
        wrap = collection == "invoices/payments/"
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotency:
            return reply(200, {"payment": self.idempotency[key]} if wrap else self.idempotency[key])
        existing = [r for r in rows if r.get("external_id") == payload.get("external_id")]
        if existing and collection in self.conflict_on_repeat:
            return reply(409, {"error": "Duplicate", "error_code": "duplicate_external_id"})
        status, record = (200, existing[0]) if existing else (201, {"id": f"{noun(collection)}-{len(rows)}", **payload})
        if not existing:
            rows.append(record)
        if key:
            self.idempotency[key] = record
        return reply(status, {"payment": record} if wrap else record)

    def page(self, request: httpx.Request, rows: list[dict[str, Any]]) -> httpx.Response:
        query = request.url.params
        needle = query.get("external_id", "").lower()  # partial and case-insensitive, like payouts
        hits = [r for r in rows if needle in str(r.get("external_id", "")).lower()]
        number, size = int(query.get("page", "1")), min(int(query.get("page_size", "20")), 100)
        chunk = hits[(number - 1) * size : number * size]
        pages = max(1, -(-len(hits) // size))
        if self.legacy_pages:
            following = f"{BASE}{request.url.path}?page={number + 1}" if number < pages else None
            return reply(200, {"count": len(hits), "next": following, "previous": None, "results": chunk})
        info = {"total_count": len(hits), "current_page": number, "total_pages": pages, "page_size": size}
        return reply(200, {"count": len(hits), "page_info": info, "results": chunk})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeThred:
    return FakeThred(clock=clock)


@pytest.fixture
async def client(fake: FakeThred, clock: Clock) -> AsyncIterator[ThredClient]:
    async with ThredClient(BASE, PARTNER, KEY, transport=httpx.MockTransport(fake), clock=clock) as thred:
        yield thred


def streamed(status: int, document: bytes, chunk: int = 65_536) -> httpx.Response:
    """An answer sent in chunks, as a large one arrives over a socket."""

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(document), chunk):
            yield document[at : at + chunk]

    return httpx.Response(status, content=chunks(), headers={"Content-Type": "application/json"})


def payout_answer(n: int) -> dict[str, Any]:
    """A payout as Thred answers it: a summary of every payment it settles (large for a large payout)."""
    summaries = [{"id": f"pay_{i}", "external_id": f"adyen_{i}", "customer": {"name": "Walk-in"}} for i in range(n)]
    return {"id": "po_1", "external_id": "adyen_batch_1", "payment_ids": [s["id"] for s in summaries],
            "payments": summaries, "amount_variance_cents": 0}  # fmt: skip


# --- records -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_create_is_201_then_200_on_the_same_external_id(client: ThredClient, fake: FakeThred) -> None:
    first = await client.create(B1, "customer", {"external_id": "stripe_cus_1", "email": "a@b.c"})
    again = await client.create(B1, "customer", {"external_id": "stripe_cus_1", "email": "a@b.c"})
    assert first == Created(id="customer-0", created=True, body=first.body)
    assert (again.id, again.created) == (first.id, False)
    assert fake.minted == [None, B1]  # one partner token, one business token, both reused
    assert all(r.url.path.endswith("/") for r in fake.requests)


@pytest.mark.anyio
async def test_payment_is_unwrapped_and_sends_its_idempotency_key(client: ThredClient, fake: FakeThred) -> None:
    body = {"external_id": "stripe_ch_1", "customer_id": "c1", "total_amount_cents": 1000}
    created = await client.create(B1, "payment", body, idempotency_key="key-1")
    replay = await client.create(B1, "payment", body, idempotency_key="key-1")
    assert (created.created, replay.created, replay.id) == (True, False, created.id)
    assert created.body["total_amount_cents"] == 1000
    posts = [r for r in fake.requests if r.method == "POST" and r.url.path.endswith("/invoices/payments/")]
    assert [r.headers["Idempotency-Key"] for r in posts] == ["key-1", "key-1"]
    assert await client.get(B1, "payment", created.id) == created.body


@pytest.mark.anyio
async def test_409_is_answered_by_a_lookup(client: ThredClient, fake: FakeThred) -> None:
    fake.conflict_on_repeat.add("invoices/payments/")
    body = {"external_id": "stripe_ch_7", "total_amount_cents": 500}
    first = await client.create(B1, "payment", body, idempotency_key="k1")
    fake.seed(B1, "invoices/payments/", 3)  # ext_0..ext_2 around it; none match exactly
    again = await client.create(B1, "payment", body, idempotency_key="k2")
    assert (again.id, again.created) == (first.id, False)
    lookup = [r for r in fake.requests if r.method == "GET"][-1]
    assert lookup.url.params["external_id"] == lookup.url.params["search"] == "stripe_ch_7"


@pytest.mark.anyio
async def test_409_without_a_match_or_external_id_is_raised(client: ThredClient, fake: FakeThred) -> None:
    conflict = reply(409, {"error": "Refund exceeds payment", "error_code": "state_conflict"})
    fake.faults.append(conflict)
    with pytest.raises(ThredError) as caught:
        await client.create(B1, "refund", {"external_id": "stripe_re_1", "invoice_id": "i1"})
    assert (caught.value.status, caught.value.code) == (409, "state_conflict")
    assert fake.calls("GET", "/invoices/refunds/") == 1  # looked up once, found nothing
    fake.faults.append(conflict)
    with pytest.raises(ThredError, match="Refund exceeds"):
        await client.create(B1, "refund", {"invoice_id": "i1"})
    assert fake.calls("GET", "/invoices/refunds/") == 1  # no external_id: nothing to look up


@pytest.mark.anyio
async def test_find_by_external_id_never_returns_a_partial_match(client: ThredClient, fake: FakeThred) -> None:
    for external_id in ("stripe_po_1", "stripe_po_12", "STRIPE_PO_1X"):
        await client.create(B1, "payout", {"external_id": external_id, "paid_out_amount_cents": 1})
    found = await client.find_by_external_id(B1, "payout", "stripe_po_1")
    assert found is not None
    assert found["external_id"] == "stripe_po_1"
    assert await client.find_by_external_id(B1, "payout", "stripe_po_") is None
    assert await client.find_by_external_id(B1, "payout", "stripe_po_1x") is None


@pytest.mark.anyio
async def test_list_pages_over_page_info(client: ThredClient, fake: FakeThred) -> None:
    fake.seed(B1, "customers/", 250)
    ids = [record["id"] async for record in client.list(B1, "customer", page_size=100)]
    assert ids == [f"customer-{i}" for i in range(250)]
    pages = [r.url.params for r in fake.requests if r.method == "GET"]
    assert [(p["page"], p["page_size"]) for p in pages] == [("1", "100"), ("2", "100"), ("3", "100")]
    assert [r async for r in client.list(B1, "customer", {"external_id": "nothing"})] == []


@pytest.mark.anyio
async def test_list_reads_the_older_next_previous_envelope(client: ThredClient, fake: FakeThred) -> None:
    fake.legacy_pages = True
    fake.seed(B1, "payouts/", 7)
    assert len([r async for r in client.list(B1, "payout", page_size=3)]) == 7
    assert fake.calls("GET", "/payouts/") == 3


@pytest.mark.anyio
async def test_list_stops_when_thred_ignores_page(client: ThredClient, fake: FakeThred) -> None:
    stuck = {"count": 2, "page_info": {"current_page": 1, "total_pages": 2}, "results": [{"id": "x"}]}
    fake.faults.extend([reply(200, stuck), reply(200, stuck)])
    with pytest.raises(ThredError, match=r"page 2 .* page 1 again"):
        [r async for r in client.list(B1, "customer")]


@pytest.mark.anyio
async def test_refund_payments_live_under_their_refund(client: ThredClient, fake: FakeThred) -> None:
    body = {"external_id": "stripe_re_1", "amount_cents": 100, "method": "STRIPE"}
    created = await client.create(B1, "refund_payment", body, parent_id="r1")
    assert fake.requests[-1].url.path == f"/v1/platform/businesses/{B1}/invoices/refunds/r1/payments/"
    found = await client.find_by_external_id(B1, "refund_payment", "stripe_re_1", parent_id="r1")
    assert found is not None
    assert found["id"] == created.id
    await client.delete(B1, "refund_payment", created.id, parent_id="r1")
    assert (fake.requests[-1].method, fake.requests[-1].url.path) == (
        "DELETE",
        f"/v1/platform/businesses/{B1}/invoices/refunds/r1/payments/{created.id}/",
    )


@pytest.mark.anyio
async def test_invoice_payments_are_cancelled_by_post(client: ThredClient, fake: FakeThred) -> None:
    created = await client.create(B1, "payment", {"external_id": "stripe_ch_9"}, idempotency_key="k9")
    await client.delete(B1, "payment", created.id)
    last = fake.requests[-1]
    assert (last.method, last.url.path) == (
        "POST",
        f"/v1/platform/businesses/{B1}/invoices/payments/{created.id}/delete/",
    )
    with pytest.raises(ThredError) as caught:
        await client.get(B1, "payment", created.id)
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (404, "not_found", "r2")


@pytest.mark.anyio
async def test_before_write_is_the_last_word_after_the_tokens(client: ThredClient, fake: FakeThred) -> None:
    """The fence a worker passes runs once the tokens are bought, right before the write; raising stops it."""
    seen: list[list[str]] = []

    async def fence() -> None:
        seen.append([r.url.path for r in fake.requests])

    await client.create(B1, "customer", {"external_id": "stripe_cus_1"}, before_write=fence)
    assert len(seen) == 1, "once per write"
    assert [p.endswith("/token/") for p in seen[0]] == [True, True], "after the partner and business tokens"
    assert fake.minted == [None, B1]

    class LostError(Exception):
        pass

    async def lost() -> None:
        raise LostError

    before = len(fake.requests)
    with pytest.raises(LostError):
        await client.create(B1, "customer", {"external_id": "stripe_cus_2"}, before_write=lost)
    created = await client.create(B1, "payment", {"external_id": "stripe_ch_2"}, idempotency_key="k2")
    with pytest.raises(LostError):
        await client.delete(B1, "payment", created.id, before_write=lost)
    assert [r.method for r in fake.requests[before:]] == ["POST"], "only the unfenced create went out"
    assert (await client.get(B1, "payment", created.id))["id"] == created.id


@pytest.mark.anyio
async def test_businesses_use_the_partner_token(client: ThredClient, fake: FakeThred) -> None:
    created = await client.create_business(
        external_id="acme", legal_name="Acme Ltd", entity_type="ltd", email="ops@acme.test", country="GB"
    )
    again = await client.create_business(
        external_id="acme", legal_name="Acme Ltd", entity_type="ltd", email="ops@acme.test"
    )
    assert created.body["country"] == "GB"
    assert (created.created, again.created, again.id) == (True, False, created.id)
    assert (await client.get_business(created.id))["legal_name"] == "Acme Ltd"
    assert await client.find_business("acm") is None
    assert fake.minted == [None]


# --- tokens ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tokens_are_per_business_and_shared_by_concurrent_callers(client: ThredClient, fake: FakeThred) -> None:
    fake.seed(B1, "customers/", 1)
    fake.seed(B2, "customers/", 1)
    await asyncio.gather(*(client.get(b, "customer", "customer-0") for b in [B1, B2] * 10))
    assert sorted(fake.minted, key=str) == sorted([None, B1, B2], key=str)


@pytest.mark.anyio
async def test_token_is_refreshed_ahead_of_expiry(client: ThredClient, fake: FakeThred, clock: Clock) -> None:
    fake.seed(B1, "customers/", 1)
    await client.get(B1, "customer", "customer-0")
    clock.now += 3600 - 301  # 301 s left: still outside the 300 s margin
    await client.get(B1, "customer", "customer-0")
    assert fake.minted == [None, B1]
    clock.now += 2  # 299 s left: refresh now, while the old token still works
    await client.get(B1, "customer", "customer-0")
    assert fake.minted == [None, B1, None, B1]
    assert fake.calls("GET", "/customers/") == 3  # no 401 on the way: the refresh came first


@pytest.mark.anyio
async def test_a_failed_early_refresh_keeps_the_working_token(
    client: ThredClient, fake: FakeThred, clock: Clock
) -> None:
    fake.seed(B1, "customers/", 1)
    await client.get(B1, "customer", "customer-0")
    clock.now += 3600 - 100  # inside the margin: refresh, but the token has 100 s left
    fake.token_faults.append(httpx.Response(503))
    assert (await client.get(B1, "customer", "customer-0"))["id"] == "customer-0"
    assert fake.minted == [None, B1, B1]  # the partner refresh failed; its old token bought the new one
    clock.now += 3600  # every token expired: a failed refresh must surface
    fake.token_faults.append(httpx.Response(503, headers={"Retry-After": "5"}))
    with pytest.raises(ThredUnavailableError) as caught:
        await client.get(B1, "customer", "customer-0")
    assert caught.value.retry_after == 5.0
    assert (await client.get(B1, "customer", "customer-0"))["id"] == "customer-0"


@pytest.mark.anyio
async def test_margin_is_capped_at_half_a_short_lifetime(client: ThredClient, fake: FakeThred, clock: Clock) -> None:
    fake.lifetime = 100
    fake.seed(B1, "customers/", 1)
    await client.get(B1, "customer", "customer-0")
    clock.now += 49
    await client.get(B1, "customer", "customer-0")
    assert fake.minted == [None, B1]
    clock.now += 2
    await client.get(B1, "customer", "customer-0")
    assert fake.minted == [None, B1, None, B1]


@pytest.mark.anyio
async def test_refresh_ahead_of_expiry_under_freezegun() -> None:
    with freeze_time("2025-01-06 12:00:00", real_asyncio=True) as frozen:
        fake = FakeThred(clock=time.time)
        fake.seed(B1, "customers/", 1)
        async with ThredClient(BASE, PARTNER, KEY, transport=httpx.MockTransport(fake)) as client:
            await client.get(B1, "customer", "customer-0")
            frozen.tick(3000)
            await client.get(B1, "customer", "customer-0")
            assert fake.minted == [None, B1]
            frozen.tick(400)  # 200 s before expiry
            await client.get(B1, "customer", "customer-0")
            assert fake.minted == [None, B1, None, B1]


@pytest.mark.anyio
async def test_401_reauthenticates_once_and_retries(client: ThredClient, fake: FakeThred) -> None:
    fake.seed(B1, "customers/", 1)
    await client.get(B1, "customer", "customer-0")
    fake.revoke_all()  # Thred forgot our tokens before their expiry
    assert (await client.get(B1, "customer", "customer-0"))["id"] == "customer-0"
    assert fake.minted == [None, B1, None, B1]
    assert fake.calls("GET", "/customers/customer-0/") == 3  # ok, 401, retried ok


@pytest.mark.anyio
async def test_a_second_401_is_an_auth_error(client: ThredClient, fake: FakeThred) -> None:
    fake.faults.extend([bad_token(), bad_token()])
    with pytest.raises(ThredAuthError) as caught:
        await client.create(B1, "customer", {"external_id": "c"})
    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
    assert fake.calls("POST", "/customers/") == 2
    assert fake.minted == [None, B1, None, B1]


@pytest.mark.anyio
async def test_403_is_not_retried(client: ThredClient, fake: FakeThred) -> None:
    fake.forbidden.add(B1)
    with pytest.raises(ThredAuthError) as caught:
        await client.create(B1, "customer", {"external_id": "c"})
    assert (caught.value.status, caught.value.code) == (403, "permission_denied")
    assert fake.calls("POST", "/customers/") == 1


@pytest.mark.anyio
async def test_bad_credentials_never_leak(fake: FakeThred, clock: Clock) -> None:
    thred = ThredClient(BASE, PARTNER, "wrong-key", transport=httpx.MockTransport(fake), clock=clock)
    async with thred:
        with pytest.raises(ThredAuthError) as caught:
            await thred.get(B1, "customer", "c")
    assert caught.value.status == 401
    text = f"{caught.value} {caught.value.describe()} {caught.value!r} {thred!r}"
    assert "wrong-key" not in text
    assert base64.b64encode(f"{PARTNER}:wrong-key".encode()).decode() not in text
    assert repr(thred) == f"ThredClient(base_url='{BASE}')"
    assert fake.calls("POST", "oauth2") == 1  # bad credentials are not retried


# --- transient failures ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_5xx_and_429_raise_unavailable_with_retry_after(client: ThredClient, fake: FakeThred) -> None:
    fake.faults.append(httpx.Response(503, text="<html><title>Down</title></html>", headers={"Retry-After": "7"}))
    with pytest.raises(ThredUnavailableError) as caught:
        await client.create(B1, "customer", {"external_id": "c"})
    assert (caught.value.status, caught.value.retry_after) == (503, 7.0)
    when = {"Retry-After": "Mon, 06 Jan 2025 12:00:30 GMT", "Date": "Mon, 06 Jan 2025 12:00:00 GMT"}
    fake.faults.append(reply(429, {"error": "Slow down", "error_code": "rate_limited"}, when))
    with pytest.raises(ThredUnavailableError) as caught:
        await client.create(B1, "customer", {"external_id": "c"})
    assert (caught.value.status, caught.value.retry_after, caught.value.code) == (429, 30.0, "rate_limited")
    assert fake.calls("POST", "/customers/") == 2  # the client never retries these itself


@pytest.mark.anyio
async def test_timeouts_and_connection_errors_are_transient(fake: FakeThred, clock: Clock) -> None:
    async def flaky(request: httpx.Request) -> httpx.Response:
        if "/customers/" in request.url.path:
            raise httpx.ReadTimeout("read timed out", request=request)
        if "/payouts/" in request.url.path:
            raise httpx.ConnectError("connection refused", request=request)
        return await fake(request)

    async with ThredClient(BASE, PARTNER, KEY, transport=httpx.MockTransport(flaky), clock=clock) as thred:
        with pytest.raises(ThredUnavailableError) as caught:
            await thred.create(B1, "customer", {"external_id": "c"})
        path = f"/v1/platform/businesses/{B1}/customers/"
        assert caught.value.message == f"Thred timed out after 15.0 s on POST {path} (ReadTimeout)"
        assert caught.value.__cause__ is None
        with pytest.raises(ThredUnavailableError, match=r"unreachable on GET .*ConnectError: connection refused"):
            await thred.get(B1, "payout", "p1")


# --- redirects ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_same_origin_redirect_is_followed_once(fake: FakeThred, clock: Clock) -> None:
    async def moved(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/old/"):
            return httpx.Response(308, headers={"Location": request.url.path.removeprefix("/old")})
        return await fake(request)

    async with ThredClient(f"{BASE}/old", PARTNER, KEY, transport=httpx.MockTransport(moved), clock=clock) as thred:
        created = await thred.create(B1, "customer", {"external_id": "c"})
    assert created.created
    assert [r.url.path.startswith("/old/") for r in fake.requests] == [False, False, False]


@pytest.mark.anyio
async def test_cross_origin_redirect_is_refused(clock: Clock) -> None:
    seen: list[str] = []

    async def elsewhere(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(301, headers={"Location": "https://evil.test/steal/"})

    async with ThredClient(BASE, PARTNER, KEY, transport=httpx.MockTransport(elsewhere), clock=clock) as thred:
        with pytest.raises(
            ThredError, match=re.escape("redirected POST /v1/platform/oauth2/token/ to https://evil.test/")
        ):
            await thred.get(B1, "customer", "c")
    assert seen == [f"{BASE}/v1/platform/oauth2/token/"]


@pytest.mark.anyio
async def test_a_large_answer_is_read_for_its_top_level(client: ThredClient, fake: FakeThred) -> None:
    """A payout's answer lists every payment it settles (12 MB for 50,000): the record comes back with its
    top-level fields, nested lists and objects left out, and the chunks are not held."""
    answer = orjson.dumps(payout_answer(20_000))
    assert len(answer) > json_codec.LARGE
    fake.faults.append(streamed(201, answer))
    created = await client.create(B1, "payout", {"external_id": "adyen_batch_1"})
    assert (created.id, created.created) == ("po_1", True)
    assert created.body == {"id": "po_1", "external_id": "adyen_batch_1", "payment_ids": None, "payments": None,
                            "amount_variance_cents": 0}  # fmt: skip
    fake.faults.append(streamed(200, orjson.dumps(payout_answer(10)), chunk=7))  # small: read whole
    small = await client.create(B1, "payout", {"external_id": "adyen_batch_1"})
    assert (small.created, len(small.body["payments"])) == (False, 10)


@pytest.mark.anyio
async def test_a_large_wrapped_answer_is_looked_up(client: ThredClient, fake: FakeThred) -> None:
    """Read for its top level, a large answer that wraps its record has no id there: the record is found by its
    external id instead, exactly."""
    fake.seed(B1, "payouts/", 3)
    fake.records[(B1, "payouts/")].append({"id": "po_9", "external_id": "adyen_batch_9"})
    fake.faults.append(streamed(201, orjson.dumps({"payout": payout_answer(20_000)})))
    created = await client.create(B1, "payout", {"external_id": "adyen_batch_9"})
    assert (created.id, created.created) == ("po_9", True)
    fake.faults.append(streamed(201, orjson.dumps({"payout": payout_answer(20_000)})))
    with pytest.raises(ThredError, match="no record id"):
        await client.create(B1, "payout", {"external_id": "adyen_batch_404"})


@pytest.mark.anyio
async def test_a_large_answer_cut_short_is_an_error(client: ThredClient, fake: FakeThred) -> None:
    answer = orjson.dumps(payout_answer(20_000))
    fake.faults.append(streamed(201, answer[: len(answer) // 2]))
    with pytest.raises(ThredError, match=r"answer to POST /v1/platform/businesses/b-0001/payouts/ is not JSON"):
        await client.create(B1, "payout", {"external_id": "adyen_batch_1"})
