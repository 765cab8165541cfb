"""Hostile input against a real `serve` process: every delivery of the corpus is refused with its status and a
reason, nothing is stored, and the server answers good deliveries afterwards, its memory barely moved.

One process (BRIDGE_WORKERS=0: nothing is processed, so what is stored stays to be counted) with a Stripe, an
Adyen and a Mollie connection, on SQLite and Postgres. Each case is posted as a processor (or an attacker)
would; slow and oversized bodies over a raw socket, since an HTTP client would not send them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.processes import free_port, process_env, spawn, stop_all, wait_http
from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.processors.mollie.webhook import sign as mollie_sign
from thred_bridge.processors.stripe.webhook import sign_header
from thred_bridge.service.connections import NewConnection
from thred_bridge.settings import Settings
from thred_bridge.store import schema

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
BUSINESS = "1c9e7d5b-3a18-4f26-b0e4-9d7c5a3b1f08"
LIMIT = 256 * 1024  # BRIDGE_MAX_BODY_BYTES for the run: room for a body nested 100,000 deep
BODY_TIMEOUT = 1.0  # BRIDGE_BODY_TIMEOUT_SECONDS for the run
ADYEN_AUTH = ("adyen-hook", "hook-password-hostile")


@dataclass
class Server:
    url: str
    port: int
    pid: int
    database_url: str
    urls: dict[str, str]  # processor → its connection's webhook URL
    secrets: dict[str, str]  # processor → webhook secret (Stripe's, Adyen's HMAC key, Mollie's next-gen)
    logs: Path  # where the process writes its log
    hidden: list[str]  # every secret the process holds: none may appear in its log, answers or metrics


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    env = process_env(
        database_url,
        "http://127.0.0.1:9",  # no Thred is called: nothing is processed
        BRIDGE_WORKERS="0",
        BRIDGE_MAX_BODY_BYTES=str(LIMIT),
        BRIDGE_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        BRIDGE_METRICS_PORT="0",
        BRIDGE_LOG_LEVEL="debug",  # the most it ever writes: still no secret in it
    )
    keys = {
        "stripe": "whsec_" + secrets.token_hex(16),
        "adyen": secrets.token_hex(32).upper(),
        "mollie": secrets.token_urlsafe(24),
    }
    adyen_credentials = {"capture": "immediate", "webhook_user": ADYEN_AUTH[0], "webhook_password": ADYEN_AUTH[1]}
    async with open_bridge(Settings.model_validate(env), with_thred=False) as offline:
        added = {
            "stripe": await offline.connections.add(
                NewConnection("stripe", BUSINESS, {"api_key": testing.STRIPE_KEY}, (keys["stripe"],))
            ),
            "adyen": await offline.connections.add(
                NewConnection("adyen", BUSINESS, adyen_credentials, (keys["adyen"],), account="HostileMerchant")
            ),
            "mollie": await offline.connections.add(
                NewConnection("mollie", BUSINESS, {"api_key": testing.MOLLIE_API_KEY}, (keys["mollie"],))
            ),
            "other": await offline.connections.add(
                NewConnection("stripe", BUSINESS, {"api_key": testing.STRIPE_KEY}, ("whsec_" + secrets.token_hex(16),))
            ),
        }
    port = free_port()
    proc = spawn(["serve", "--port", str(port)], env, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/readyz", proc)
        urls = {name: f"{base}/webhooks/{c.processor}/{c.id}" for name, c in added.items()}
        hidden = [*keys.values(), ADYEN_AUTH[1], testing.STRIPE_KEY, testing.MOLLIE_API_KEY, env["BRIDGE_SECRET_KEY"]]
        yield Server(base, port, proc.pid, database_url, urls, keys, tmp_path, hidden)
    finally:
        stop_all([proc])


def stored(database_url: str) -> int:
    engine = schema.sync_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events")).scalar() or 0)
    finally:
        engine.dispose()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- the corpus ------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    processor: str  # whose URL it goes to ("other": a second Stripe connection)
    body: bytes
    headers: dict[str, str]
    status: int
    reason: str  # a word the refusal's reason must contain (lower case)


def _stripe_event(amount: int = 1000) -> dict[str, object]:
    return {
        "id": "evt_" + secrets.token_hex(12), "object": "event", "type": "charge.succeeded",
        "api_version": "2024-06-20", "created": int(time.time()), "livemode": False,
        "data": {"object": {"id": "ch_" + secrets.token_hex(12), "object": "charge", "amount": amount}},
    }  # fmt: skip


def _signed(
    body: bytes, secret: str, *, at: int | None = None, content_type: str = "application/json"
) -> dict[str, str]:
    return {"Content-Type": content_type, "Stripe-Signature": sign_header(body, secret, at or int(time.time()))}


def stripe_cases(secret: str) -> list[Case]:
    body = json.dumps(_stripe_event()).encode()
    now = int(time.time())
    v1 = sign_header(body, secret, now).split(",v1=")[1]
    nested = b'{"id": "evt_1", "object": "event", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    garbled = b'{"id": "\xff\xfe"}'
    duplicated = body.replace(b'"object": "event"', b'"object": "event", "id": "evt_other"', 1)
    return [
        Case("stripe: no signature", "stripe", body, {"Content-Type": "application/json"}, 400, "signature"),
        Case("stripe: garbled signature", "stripe", body, {"Stripe-Signature": "t=1,v1=zz%%"}, 400, ""),
        Case("stripe: wrong secret", "stripe", body, _signed(body, "whsec_wrong"), 400, "match"),
        Case("stripe: stale", "stripe", body, _signed(body, secret, at=now - 3600), 400, "stale"),
        Case("stripe: far future", "stripe", body, _signed(body, secret, at=now + 3600), 400, "future"),
        Case("stripe: v0 only", "stripe", body, {"Stripe-Signature": f"t={now},v0={v1}"}, 400, ""),
        Case("stripe: signed for another connection", "other", body, _signed(body, secret), 400, "match"),
        Case("stripe: tampered", "stripe", body.replace(b"1000", b"9000"), _signed(body, secret), 400, "match"),
        Case("stripe: invalid UTF-8", "stripe", garbled, _signed(garbled, secret), 400, ""),
        Case("stripe: nested 100,000 deep", "stripe", nested, _signed(nested, secret), 400, ""),
        Case("stripe: duplicate keys", "stripe", duplicated, _signed(duplicated, secret), 400, "duplicate"),
        Case("stripe: plain text", "stripe", body, _signed(body, secret, content_type="text/plain"), 415, "type"),
    ]  # fmt: skip


def adyen_cases(hmac_key: str) -> list[Case]:
    def batch(items: list[dict[str, object]], auth: tuple[str, str] | None = ADYEN_AUTH) -> testing.Delivery:
        return testing.adyen_delivery(items, auth=auth)

    good = testing.adyen_item("AUTHORISATION", "8815000000000001", value=1000, merchant_account="HostileMerchant",
                              hmac_key=hmac_key)  # fmt: skip
    changed = json.loads(json.dumps(good))
    changed["NotificationRequestItem"]["amount"]["value"] = 100000
    foreign = testing.adyen_item("AUTHORISATION", "8815000000000002", value=1000, merchant_account="SomeoneElse",
                                 hmac_key=hmac_key)  # fmt: skip
    wrong_auth = batch([good], auth=(ADYEN_AUTH[0], "guess"))
    no_auth = batch([good], auth=None)
    typed = batch([good])
    nested = b'{"live": "false", "notificationItems": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return [
        Case("adyen: one field of a signed item changed", "adyen", *_d(batch([changed])), 400, "hmac"),
        Case("adyen: a batch for another merchant account", "adyen", *_d(batch([foreign])), 400, "merchant"),
        Case("adyen: wrong Basic auth", "adyen", *_d(wrong_auth), 401, ""),
        Case("adyen: no Basic auth", "adyen", *_d(no_auth), 401, ""),
        Case("adyen: nested 100,000 deep", "adyen", nested, batch([]).headers, 400, ""),
        Case("adyen: not JSON", "adyen", b"\xff\xfe<xml/>", batch([]).headers, 400, ""),
        Case("adyen: XML content type", "adyen", typed.body, {**typed.headers, "Content-Type": "text/xml"}, 415,
             "content type"),
    ]  # fmt: skip


def _d(delivery: testing.Delivery) -> tuple[bytes, dict[str, str]]:
    return delivery.body, delivery.headers


def mollie_cases(secret: str) -> list[Case]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    event = json.dumps({"id": "event_" + secrets.token_hex(8), "type": "payment.paid", "entityId": "tr_abc1234567"})
    signed = event.encode()
    cases = [
        Case(f"mollie: id {shown}", "mollie", f"id={raw}".encode(), form, 400, "id")
        for shown, raw in [("../", "../../etc/passwd"), ("long", "tr_" + "a" * 500), ("unicode", "tr_ümlaut√"),
                           ("empty", ""), ("two ids", "tr_abc1234567&id=tr_def1234567")]
    ]  # fmt: skip
    cases += [
        Case("mollie: a classic body of 5 KB", "mollie", b"id=tr_" + b"a" * 5000, form, 413, "at most"),
        Case("mollie: forged signature", "mollie", signed,
             {"Content-Type": "application/json", "X-Mollie-Signature": "sha256=" + "0" * 64}, 400, "signature"),
        Case("mollie: signed with another secret", "mollie", signed,
             {"Content-Type": "application/json", "X-Mollie-Signature": "sha256=" + mollie_sign(signed, "nope" * 8)},
             400, "signature"),
        Case("mollie: invalid UTF-8 form", "mollie", b"id=tr_\xff\xfe", form, 400, ""),
        Case("mollie: JSON sent as plain text", "mollie", signed,
             {"Content-Type": "text/plain", "X-Mollie-Signature": "sha256=" + mollie_sign(signed, secret)}, 415,
             "content type"),
    ]  # fmt: skip
    return cases


# --- raw sockets: what no well-behaved client sends ----------------------------------------------------------


async def raw_exchange(port: int, head: bytes, body_parts: list[bytes], *, pause: float = 0.0) -> tuple[int, float]:
    """Send ``head`` then ``body_parts`` (``pause`` s apart) on one connection; the answer's status and how long
    it took to come. The server may answer, and close, before the body is all sent."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        for part in body_parts:
            if pause:
                await asyncio.sleep(pause)
            try:
                writer.write(part)
                await writer.drain()
            except (ConnectionError, OSError):
                break  # answered and closed already
        line = await asyncio.wait_for(reader.readline(), timeout=30)
        return int(line.split()[1]), time.monotonic() - started
    finally:
        writer.close()


def _head(url: str, headers: dict[str, str]) -> bytes:
    path = "/" + url.split("/", 3)[3]
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


# --- the test ----------------------------------------------------------------------------------------------


async def test_hostile_input_is_refused_stores_nothing_and_leaves_the_server_well(server: Server) -> None:
    corpus = stripe_cases(server.secrets["stripe"]) + adyen_cases(server.secrets["adyen"])
    corpus += mollie_cases(server.secrets["mollie"])
    before = rss_mb(server.pid)
    async with httpx.AsyncClient(timeout=30) as client:
        for round_ in range(3):  # three times over: what leaks, leaks thrice
            for case in corpus:
                answer = await client.post(server.urls[case.processor], content=case.body, headers=case.headers)
                assert answer.status_code == case.status, (case.name, answer.status_code, answer.text[:300])
                assert not [h for h in server.hidden if h in answer.text], (case.name, "a secret in the answer")
                reason = answer.json()["error"] if answer.headers["content-type"].startswith("application/json") else ""
                assert reason, (case.name, answer.text[:300])
                assert case.reason in reason.lower(), (case.name, reason)
            if round_ == 0:
                await _oversized_and_slow(server, client)
        assert stored(server.database_url) == 0, "nothing of the corpus is stored"
        after = rss_mb(server.pid)

        # and the server is well: a good delivery of each processor is stored
        assert (await client.get(f"{server.url}/healthz")).status_code == 200
        good = json.dumps(_stripe_event()).encode()
        answer = await client.post(server.urls["stripe"], content=good, headers=_signed(good, server.secrets["stripe"]))
        assert answer.status_code == 200, answer.text
        item = testing.adyen_item("AUTHORISATION", "8815000000000009", value=1000, merchant_account="HostileMerchant",
                                  hmac_key=server.secrets["adyen"])  # fmt: skip
        adyen = testing.adyen_delivery([item], auth=ADYEN_AUTH)
        answer = await client.post(server.urls["adyen"], content=adyen.body, headers=adyen.headers)
        assert answer.content == b"[accepted]", answer.text
        ping = testing.mollie_ping("tr_abc1234567")
        assert (await client.post(server.urls["mollie"], content=ping.body, headers=ping.headers)).status_code == 200
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert stored(server.database_url) == 3
    logged = "".join(p.read_text(errors="replace") for p in server.logs.glob("serve-*.log"))
    assert "webhook.refused" in logged, "the refusals are logged"
    for secret in server.hidden:
        assert secret not in logged, "no secret in the log"
        assert secret not in metrics, "no secret in the metrics"
    print(f"\nhostile corpus: {3 * len(corpus)} requests + raw-socket cases; server RSS {before:.1f} → {after:.1f} MB")
    assert after - before < 40, f"the server grew by {after - before:.1f} MB over the corpus"


async def _oversized_and_slow(server: Server, client: httpx.AsyncClient) -> None:
    url = server.urls["stripe"]
    signed = {
        "Content-Type": "application/json",
        "Stripe-Signature": sign_header(b"x", server.secrets["stripe"], int(time.time())),
    }
    # a declared length over the limit: refused on the headers, before a byte of the body is read
    declared = _head(url, {**signed, "Content-Length": str(50 * 1024 * 1024)})
    status, took = await raw_exchange(server.port, declared, [])
    assert (status, took < 5) == (413, True), (status, took)
    # no declared length (chunked): refused once the limit is passed, not after reading everything
    chunked = _head(url, {**signed, "Transfer-Encoding": "chunked"})
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b"x" * 16 * 1024)
    status, _took = await raw_exchange(server.port, chunked, [chunk] * 64)
    assert status == 413
    # a slow body: a few bytes, then nothing; answered 408 once BRIDGE_BODY_TIMEOUT_SECONDS has passed
    slow = _head(url, {**signed, "Content-Length": "1000"})
    status, took = await raw_exchange(server.port, slow, [b"{" * 10, b"{" * 10], pause=BODY_TIMEOUT * 3)
    assert status == 408, status
    assert BODY_TIMEOUT <= took < BODY_TIMEOUT * 3 + 5, took
    big = json.dumps({**_stripe_event(), "padding": "x" * LIMIT}).encode()
    answer = await client.post(url, content=big, headers=_signed(big, server.secrets["stripe"]))
    assert answer.status_code == 413
