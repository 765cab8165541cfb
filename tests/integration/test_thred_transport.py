"""The Thred client's HTTP/1.1 transport against a real socket on loopback: a small server whose every answer
the test chooses, so keep-alive, chunked bodies, closed connections, timeouts and garbage are each seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from thred_bridge.thred.transport import Http11Transport

pytestmark = pytest.mark.anyio
Answer = Callable[[bytes], bytes | None]  # the request's head and body → the raw answer (None: close instead)


def ok(body: bytes = b'{"id":"x"}', *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    return head + b"".join(h + b"\r\n" for h in extra) + b"\r\n" + body


class Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.answer(head + body)
                if answer is None:
                    return
                if answer.startswith(b"SLEEP"):
                    await asyncio.sleep(float(answer.split()[1]))
                    continue
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    return
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server, f"http://127.0.0.1:{port}"
        for writer in server.writers:
            writer.close()


def client(url: str, **kwargs: object) -> httpx.AsyncClient:
    transport = Http11Transport(max_connections=int(kwargs.pop("max_connections", 50)))  # type: ignore[call-overload]
    return httpx.AsyncClient(base_url=url, transport=transport, **kwargs)  # type: ignore[arg-type]


async def test_requests_one_after_another_share_one_connection() -> None:
    async with serving(lambda _req: ok()) as (server, url), client(url) as http:
        for n in range(20):
            response = await http.post("/v1/things", json={"n": n}, headers={"Idempotency-Key": f"k{n}"})
            assert response.status_code == 200
            assert response.json() == {"id": "x"}
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/things HTTP/1.1\r\n")
        assert b"\r\nIdempotency-Key: k0\r\n" in first
        assert first.endswith(b'{"n":0}')


async def test_at_most_max_connections_are_open_and_the_rest_queue() -> None:
    async with serving(lambda _req: ok()) as (server, url), client(url, max_connections=3) as http:
        answers = await asyncio.gather(*(http.get(f"/v1/n/{n}") for n in range(40)))
        assert all(a.status_code == 200 for a in answers)
        assert server.most_open <= 3
        assert len(server.requests) == 40


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    chunked = (
        b'HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{"id\r\n6;x=y\r\n":"ab"\r\n1\r\n}\r\n0\r\n\r\n'
    )
    async with serving(lambda _req: chunked) as (server, url), client(url) as http:
        for _ in range(3):
            response = await http.post("/v1/x", content=b"{}")
            assert response.status_code == 201
            assert response.json() == {"id": "ab"}
        assert server.connections == 1


async def test_a_streamed_answer_arrives_in_pieces() -> None:
    big = b"[" + b",".join(b'"%06d"' % n for n in range(50_000)) + b"]"
    async with serving(lambda _req: ok(big)) as (_server, url), client(url) as http:
        async with http.stream("GET", "/v1/big") as response:
            pieces = [piece async for piece in response.aiter_raw()]
        assert b"".join(pieces) == big
        assert len(pieces) > 1


async def test_connection_close_and_an_idle_connection_closed_by_the_server_open_a_new_one() -> None:
    answers = iter([ok(b"{}", b"connection: close"), ok(b"{}"), None, ok(b"{}")])
    async with serving(lambda _req: next(answers)) as (server, url), client(url) as http:
        assert (await http.get("/a")).status_code == 200  # then the server closes: the next one connects again
        assert (await http.get("/b")).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await http.get("/c")  # the server hung up on this one
        assert (await http.get("/d")).status_code == 200
        assert server.connections == 3


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with serving(lambda _req: ok()) as (server, url), client(url) as http:
        assert (await http.get("/a")).status_code == 200
        for writer in server.writers:
            writer.close()
        await asyncio.sleep(0.05)  # the client's event loop hears the EOF
        assert (await http.get("/b")).status_code == 200
        assert server.connections == 2


async def test_a_slow_answer_times_out_and_its_connection_is_dropped() -> None:
    answers = iter([b"SLEEP 2", ok()])
    async with serving(lambda _req: next(answers)) as (server, url), client(url, timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/slow")
        assert (await http.get("/fast")).status_code == 200
        assert server.connections == 2


async def test_garbage_and_a_body_cut_short_are_protocol_errors() -> None:
    answers = iter([b"SPDY/9 hello\r\n\r\n", b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"id"', ok()])

    def answer(_req: bytes) -> bytes | None:
        value = next(answers)
        return value

    async with serving(answer) as (_server, url), client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="status line"):
            await http.get("/1")
        task = asyncio.create_task(http.get("/2"))
        await asyncio.sleep(0.1)
        for writer in _server.writers:
            writer.close()
        with pytest.raises(httpx.RemoteProtocolError, match="mid-answer"):
            await task
        assert (await http.get("/3")).status_code == 200


async def test_nothing_listening_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with client(f"http://127.0.0.1:{port}") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


async def test_the_trace_hook_is_awaited_before_any_byte_is_written_and_its_error_stops_the_request() -> None:
    seen: list[str] = []

    async def trace(name: str, _info: dict[str, object]) -> None:
        seen.append(name)
        if name.endswith("send_request_body.started"):
            raise RuntimeError("fenced")

    async with serving(lambda _req: ok()) as (server, url), client(url) as http:
        with pytest.raises(RuntimeError, match="fenced"):
            await http.post("/v1/x", content=b"{}", extensions={"trace": trace})
        assert seen == ["http11.send_request_headers.started", "http11.send_request_body.started"]
        await asyncio.sleep(0.05)
        assert server.requests == [], "nothing reached the server"
        assert (await http.post("/v1/x", content=b"{}")).status_code == 200


async def test_a_stream_closed_early_drops_its_connection() -> None:
    big = b"x" * 500_000
    async with serving(lambda _req: ok(big)) as (server, url), client(url) as http:
        async with http.stream("GET", "/big") as response:
            async for _piece in response.aiter_raw():
                break
        assert (await http.get("/again")).status_code == 200
        assert server.connections == 2
