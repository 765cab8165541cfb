"""A lean HTTP/1.1 keep-alive transport for httpx: the Thred client's connection pool.

Why not httpx's own: httpcore's pool walks every connection on each request (``has_expired`` →
``getpeername`` + ``poll`` per connection, under a lock), so at 32 requests in flight it cost about 1.5 ms of
CPU per request on 2 cores (bench/README.md, "Dispatch"), ten times what the rest of a record's dispatch should
cost. This pool hands out an idle connection in O(1) and parses the answer itself; httpx's client layer on top
(requests, headers, redirects, streaming, errors) is unchanged, so every test transport (``MockTransport``,
the ASGI transport) still plugs in the same way.

What it does, and no more: HTTP/1.1 over TCP or TLS, bodies by Content-Length or chunked, keep-alive per
origin, at most ``max_connections`` open (callers queue for one), httpx's timeouts (connect, read, write,
pool) raised as httpx's exceptions, and httpcore's ``trace`` extension at the two points the write fence
needs (``http11.send_request_headers.started`` then ``http11.send_request_body.started``, both awaited before a
byte of the request is written, which then goes out in one write). No HTTP/2, no proxies, no upgrades.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import httpx

MAX_HEAD: Final = 64 * 1024  # a status line and headers longer than this are refused
READ_CHUNK: Final = 64 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_HEADERS_STARTED: Final = "http11.send_request_headers.started"
_BODY_STARTED: Final = "http11.send_request_body.started"
_Origin = tuple[str, str, int]


class _Connection:
    __slots__ = ("origin", "reader", "writer")

    def __init__(self, origin: _Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer

    def reusable(self) -> bool:
        """Idle and still open: the server has not closed it (its EOF is seen by the event loop as it comes)."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Http11Transport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections, at most ``max_connections`` open at once over all origins."""

    def __init__(self, *, max_connections: int = 50, ssl_context: ssl.SSLContext | None = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl = ssl_context
        self._max = max_connections
        self._open = 0  # connections open or being opened (each holds one of the ``max_connections`` slots)
        self._idle: dict[_Origin, deque[_Connection]] = {}
        # Callers queued for a connection: handed an idle one of their origin, or None for a freed slot.
        self._waiters: deque[tuple[_Origin, asyncio.Future[_Connection | None]]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The httpx side: any ``httpx.Request`` (its body read already), answered as it streams in."""
        url = request.url
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        trace: Callable[[str, dict[str, Any]], Awaitable[None]] | None = request.extensions.get("trace")
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
        head.append(b"\r\n")
        answer = await self.exchange(
            url.scheme, url.host, url.port, b"".join(head) + request.content,
            head_only=request.method == "HEAD", timeouts=timeouts, trace=trace, request=request,
        )  # fmt: skip
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=answer,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def exchange(
        self,
        scheme: str,
        host: str,
        port: int | None,
        message: bytes,
        *,
        head_only: bool = False,
        timeouts: dict[str, float | None],
        trace: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        request: httpx.Request | None = None,
    ) -> Answer:
        """Send ``message`` (a whole HTTP/1.1 request: line, headers, body) and read the answer's head; its body
        is read as the returned :class:`Answer` is iterated. ``request`` only names the request in errors."""
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        connection = await self._connection(scheme, host, port, timeouts, request)
        try:
            if trace is not None:  # the caller's last words before the request goes out, as httpcore gives them
                await trace(_HEADERS_STARTED, {"request": request})
                await trace(_BODY_STARTED, {"request": request})
            await self._write(connection, message, timeouts.get("write"), request)
            status, reason, headers, keep_alive = await self._read_head(connection, request, timeouts.get("read"))
            read = timeouts.get("read")
            return Answer(self, connection, request, headers, status, reason, keep_alive, read, head_only)
        except BaseException:
            self._discard(connection)
            raise

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.popleft().close()
        self._idle.clear()

    # --- the pool ------------------------------------------------------------------------------------

    async def _connection(
        self,
        scheme: str,
        host: str,
        port: int | None,
        timeouts: dict[str, float | None],
        request: httpx.Request | None,
    ) -> _Connection:
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        origin: _Origin = (scheme, host, port or (443 if scheme == "https" else 80))
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if connection.reusable():
                return connection
            self._discard(connection)
        if self._open >= self._max:
            self._close_idle_elsewhere(origin)
        if self._open < self._max:
            self._open += 1
        else:
            handed = await self._wait(origin, request, timeouts.get("pool"))
            if handed is not None:
                return handed
        try:  # this caller holds a slot now
            return await self._open_connection(origin, request, timeouts.get("connect"))
        except BaseException:
            self._free_slot()
            raise

    async def _wait(self, origin: _Origin, request: httpx.Request | None, timeout: float | None) -> _Connection | None:
        """Queue for a connection: an idle one of ``origin`` handed over, or None when a slot came free."""
        future: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        entry = (origin, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except BaseException as exc:
            if future.done() and not future.cancelled():  # handed something as it gave up: pass it on
                handed = future.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed)
            else:
                future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no Thred connection came free in time", request=request) from None
            raise

    def _close_idle_elsewhere(self, origin: _Origin) -> None:
        """At the limit with connections idle to other origins: close one, so its slot serves this origin."""
        for other, idle in self._idle.items():
            if other != origin and idle:
                self._discard(idle.popleft())
                return

    async def _open_connection(
        self, origin: _Origin, request: httpx.Request | None, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl or httpx.create_ssl_context()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None, limit=MAX_HEAD
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from None
        return _Connection(origin, reader, writer)

    def _release(self, connection: _Connection) -> None:
        """An exchange finished with its answer read to the end: the connection serves the next caller."""
        if self._closed or not connection.reusable():
            self._discard(connection)
            return
        for waiter in self._waiters:
            origin, future = waiter
            if origin == connection.origin and not future.done():
                self._waiters.remove(waiter)
                future.set_result(connection)
                return
        self._idle.setdefault(connection.origin, deque()).append(connection)

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """A connection closed (or was never opened): its slot goes to the first caller queued, if any."""
        while self._waiters:
            _origin, future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes to it: ``_open`` stays as it is
                return
        self._open -= 1

    # --- one exchange ------------------------------------------------------------------------------

    @staticmethod
    async def _write(
        connection: _Connection, message: bytes, timeout: float | None, request: httpx.Request | None
    ) -> None:
        writer = connection.writer
        writer.write(message)
        if writer.transport.get_write_buffer_size() > READ_CHUNK:
            try:
                async with asyncio.timeout(timeout):
                    await writer.drain()
            except TimeoutError:
                raise httpx.WriteTimeout("writing the request timed out", request=request) from None
            except OSError as exc:
                raise httpx.WriteError(f"writing the request failed: {exc}", request=request) from None

    @staticmethod
    async def _read_head(
        connection: _Connection, request: httpx.Request | None, timeout: float | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await connection.reader.readuntil(b"\r\n\r\n")
                    status, reason, headers = _parse_head(raw, request)
                    if not 100 <= status < 200:  # an interim answer (100 Continue) is skipped
                        break
        except TimeoutError:
            raise httpx.ReadTimeout("Thred did not answer in time", request=request) from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError(
                "the server closed the connection without answering", request=request
            ) from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError(
                f"the answer's headers are over {MAX_HEAD} bytes", request=request
            ) from None
        except OSError as exc:
            raise httpx.ReadError(f"reading the answer failed: {exc}", request=request) from None
        connection_header = _header(headers, b"connection").lower()
        keep_alive = b"close" not in connection_header
        return status, reason, headers, keep_alive


class Answer(httpx.AsyncByteStream):
    """An answer: its status and headers, and its body, read as it is iterated; the connection goes back to the
    pool once the body is read whole (closed early, the connection is closed)."""

    def __init__(
        self,
        pool: Http11Transport,
        connection: _Connection,
        request: httpx.Request | None,
        headers: list[tuple[bytes, bytes]],
        status: int,
        reason: bytes,
        keep_alive: bool,
        timeout: float | None,
        head_only: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._pool = pool
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout
        self._keep_alive = keep_alive
        self._chunked = b"chunked" in _header(headers, b"transfer-encoding").lower()
        length = _header(headers, b"content-length")
        self._length: int | None = None
        if head_only or status in _NO_BODY_STATUSES:
            self._length = 0
        elif not self._chunked and length:
            try:
                self._length = int(length)
            except ValueError:
                self._length = -1
        if self._length is not None and self._length < 0:
            raise httpx.RemoteProtocolError(f"invalid Content-Length {length!r}", request=request)
        if self._length is None and not self._chunked:
            self._keep_alive = False  # read to the end of the connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                async for chunk in self._chunks(connection.reader):
                    yield chunk
                    if self._timeout is not None:
                        deadline.reschedule(asyncio.get_running_loop().time() + self._timeout)  # per read
        except TimeoutError:
            self._drop()
            raise httpx.ReadTimeout("Thred's answer stopped coming", request=self._request) from None
        except asyncio.IncompleteReadError:
            self._drop()
            raise httpx.RemoteProtocolError(
                "the server closed the connection mid-answer", request=self._request
            ) from None
        except (asyncio.LimitOverrunError, ValueError):
            self._drop()
            raise httpx.RemoteProtocolError("the answer's chunked body is malformed", request=self._request) from None
        except OSError as exc:
            self._drop()
            raise httpx.ReadError(f"reading the answer failed: {exc}", request=self._request) from None
        except BaseException:
            self._drop()
            raise
        self._connection = None
        if self._keep_alive:
            self._pool._release(connection)
        else:
            self._pool._discard(connection)

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        if self._length is not None:
            left = self._length
            while left > 0:
                chunk = await reader.read(min(left, READ_CHUNK))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(chunk)
                yield chunk
            return
        if not self._chunked:
            while chunk := await reader.read(READ_CHUNK):
                yield chunk
            return
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                    pass
                return
            left = size
            while left > 0:
                chunk = await reader.read(min(left, READ_CHUNK))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(chunk)
                yield chunk
            if await reader.readexactly(2) != b"\r\n":
                raise ValueError("chunk not ended by CRLF")

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self])

    def header(self, name: bytes) -> bytes:
        return _header(self.headers, name)

    def _drop(self) -> None:
        if self._connection is not None:
            self._pool._discard(self._connection)
            self._connection = None

    async def aclose(self) -> None:
        """Closed before it was read to the end: the connection is in an unknown state and is closed."""
        self._drop()


def _parse_head(raw: bytes, request: httpx.Request | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}", request=request)
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key.lower() == name:
            return value
    return b""
