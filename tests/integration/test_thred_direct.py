"""The Thred client's own exchanges (thred/direct.py) over a real socket: the request as written, a same-origin
redirect followed once and another origin's not, compressed answers, answers read for their top level, and
headers that would split the request refused."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.integration.test_thred_transport import ok, serving
from thred_bridge.thred.direct import TOP_LEVEL_ONLY, DirectHttp
from thred_bridge.thred.transport import Http11Transport

pytestmark = pytest.mark.anyio
FIXED = {"Accept": "application/json", "User-Agent": "thred-bridge/test"}


@asynccontextmanager
async def direct(url: str) -> AsyncIterator[DirectHttp]:
    pool = Http11Transport(max_connections=4)
    try:
        yield DirectHttp(httpx.URL(url), pool, 5.0, FIXED)
    finally:
        await pool.aclose()


async def test_the_request_goes_out_under_the_base_path_with_its_query_and_headers() -> None:
    async with serving(lambda _req: ok(b'{"id":"c1"}')) as (server, url):
        async with direct(f"{url}/api") as http:
            answer = await http.send(
                "POST", "/v1/things/", {"Authorization": "Bearer t"}, b'{"a":1}', {"q": "a b", "page": "2"},
                top_level=False, trace=None,
            )  # fmt: skip
        assert answer.status_code == 200
        assert answer.json() == {"id": "c1"}
        sent = server.requests[0]
        assert sent.startswith(b"POST /api/v1/things/?q=a%20b&page=2 HTTP/1.1\r\n")
        for line in (
            b"Host: 127.0.0.1:",
            b"Accept: application/json",
            b"Authorization: Bearer t",
            b"Content-Length: 7",
        ):
            assert line in sent
        assert sent.endswith(b'\r\n\r\n{"a":1}')


async def test_a_same_origin_redirect_is_followed_once_and_another_origins_is_not() -> None:
    def answer(request: bytes) -> bytes:
        if request.startswith(b"GET /old"):
            return b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /new\r\ncontent-length: 0\r\n\r\n"
        if request.startswith(b"GET /away"):
            return b"HTTP/1.1 301 Moved\r\nlocation: http://example.invalid/x\r\ncontent-length: 0\r\n\r\n"
        return ok(b'{"id":"moved"}')

    async with serving(answer) as (server, url), direct(url) as http:
        moved = await http.send("GET", "/old", {}, None, None, top_level=False, trace=None)
        assert moved.json() == {"id": "moved"}
        assert [r.split(b" ")[1] for r in server.requests] == [b"/old", b"/new"]
        away = await http.send("GET", "/away", {}, None, None, top_level=False, trace=None)
        assert away.status_code == 301, "left for the client to refuse, naming where it pointed"
        assert away.headers["location"] == "http://example.invalid/x"


async def test_a_compressed_answer_is_decoded() -> None:
    body = gzip.compress(b'{"id":"z"}')
    head = b"HTTP/1.1 201 Created\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body)
    async with serving(lambda _req: head + body) as (_server, url), direct(url) as http:
        for top_level in (False, True):
            answer = await http.send("POST", "/x", {}, b"{}", None, top_level=top_level, trace=None)
            assert answer.json() == {"id": "z"}
            assert "content-encoding" not in answer.headers


async def test_an_answer_read_for_its_top_level_says_so_and_a_small_one_comes_whole() -> None:
    big = b'{"id":"p1","payments":[' + b",".join(b'{"id":"pay_%06d"}' % n for n in range(60_000)) + b"]}"
    answers = iter([ok(big), ok(b"<html>oops</html>")])
    async with serving(lambda _req: next(answers)) as (_server, url), direct(url) as http:
        answer = await http.send("POST", "/payouts", {}, b"{}", None, top_level=True, trace=None)
        assert answer.json()["id"] == "p1"
        assert answer.extensions[TOP_LEVEL_ONLY] is True
        small = await http.send("POST", "/payouts", {}, b"{}", None, top_level=True, trace=None)
        assert small.content == b"<html>oops</html>", "whole, for the client's parser to refuse with Thred's status"
        assert small.extensions[TOP_LEVEL_ONLY] is False


async def test_a_header_that_would_split_the_request_is_refused_before_anything_is_sent() -> None:
    async with serving(lambda _req: ok()) as (server, url), direct(url) as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.send(
                "POST", "/x", {"Idempotency-Key": "k\r\nX-Evil: 1"}, b"{}", None, top_level=False, trace=None
            )
        assert server.requests == []
