"""The Thred client's own exchanges, written straight onto its HTTP/1.1 pool.

httpx's client layer (building the request, merging the base URL, cookies, auth and redirect hooks, the response
stream) cost about 0.35 ms of CPU per call in the dispatch benchmark, more than the pool and the socket together.
The client needs none of it: one origin, its own headers, no cookies, at most one same-origin redirect. So when
the client owns its pool (no test transport given), each exchange is composed here as bytes and its answer read
into an ``httpx.Response``, which the rest of the client reads as before. A test transport (``MockTransport``,
the ASGI transport) goes through httpx as before.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx

from thred_bridge.domain import json_codec
from thred_bridge.domain.json_top import TopLevel
from thred_bridge.errors import ThredError
from thred_bridge.thred.transport import Answer, Http11Transport

TOP_LEVEL_ONLY: Final = "thred_bridge.top_level_only"  # in a response's extensions: read for its top level
REDIRECTS: Final = frozenset({301, 302, 307, 308})
BODY_HEADERS: Final = frozenset({b"content-length", b"content-encoding", b"transfer-encoding"})
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~%"


class DirectHttp:
    """Exchanges with one Thred origin over ``pool``."""

    def __init__(self, base_url: httpx.URL, pool: Http11Transport, timeout: float, headers: Mapping[str, str]) -> None:
        self._base = base_url
        self._scheme, self._host, self._port = base_url.scheme, base_url.host, base_url.port
        self._origin = (self._scheme, self._host, self._port or (443 if self._scheme == "https" else 80))
        prefix = base_url.raw_path.split(b"?", 1)[0]
        self._prefix = prefix if prefix.endswith(b"/") else prefix + b"/"
        self._pool = pool
        self._timeouts: dict[str, float | None] = {
            "connect": timeout,
            "read": timeout,
            "write": timeout,
            "pool": timeout,
        }
        fixed = {"Host": base_url.netloc.decode("ascii"), **headers}
        self._fixed = b"".join(_header_line(name, value) for name, value in fixed.items())

    async def send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        content: bytes | None,
        params: Mapping[str, str] | None,
        *,
        top_level: bool,
        trace: Callable[[str, dict[str, Any]], Awaitable[None]] | None,
    ) -> httpx.Response:
        """One exchange, and at most one same-origin redirect; transport failures raise httpx's errors."""
        target = self._target(path, params)
        answer = await self._exchange(method, target, headers, content, trace)
        if answer.status in REDIRECTS:
            location = answer.header(b"location").decode("latin-1")
            moved = httpx.URL(self._base.copy_with(raw_path=target)).join(location) if location else None
            if moved is not None and (moved.scheme, moved.host, moved.port or _default_port(moved)) == self._origin:
                await answer.read()
                answer = await self._exchange(method, moved.raw_path, headers, content, trace)
        return await _response(answer, top_level=top_level, what=f"{method} {path}")

    async def _exchange(
        self,
        method: str,
        target: bytes,
        headers: Mapping[str, str],
        content: bytes | None,
        trace: Callable[[str, dict[str, Any]], Awaitable[None]] | None,
    ) -> Answer:
        lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target), self._fixed]
        lines.extend(_header_line(name, value) for name, value in headers.items())
        if content is not None or method in _WITH_BODY:
            lines.append(b"Content-Length: %d\r\n" % len(content or b""))
        lines.append(b"\r\n")
        if content:
            lines.append(content)
        return await self._pool.exchange(
            self._scheme, self._host, self._port, b"".join(lines),
            head_only=method == "HEAD", timeouts=self._timeouts, trace=trace,
        )  # fmt: skip

    def _target(self, path: str, params: Mapping[str, str] | None) -> bytes:
        raw = self._prefix + quote(path.lstrip("/"), safe=_PATH_SAFE).encode("ascii")
        if params:
            raw += b"?" + urlencode(params, quote_via=quote).encode("ascii")
        return raw


async def _response(answer: Answer, *, top_level: bool, what: str) -> httpx.Response:
    """The answer as an ``httpx.Response``: read whole, or with ``top_level`` a large successful one for its top
    level only (a payout's answer lists every payment it settles; the bridge reads its id)."""
    encoding = answer.header(b"content-encoding").strip().lower()
    decoder = zlib.decompressobj(wbits=31 if encoding == b"gzip" else 15) if encoding in (b"gzip", b"deflate") else None
    reader = TopLevel(json_codec.LARGE) if top_level and 200 <= answer.status < 300 else None
    parts: list[bytes] = []
    async for chunk in answer:
        data = decoder.decompress(chunk) if decoder is not None else chunk
        if reader is not None:
            reader.feed(data)
        else:
            parts.append(data)
    if decoder is not None:
        tail = decoder.flush()
        if reader is not None:
            reader.feed(tail)
        else:
            parts.append(tail)
    headers = [(name, value) for name, value in answer.headers if name.lower() not in BODY_HEADERS]
    extensions: dict[str, Any] = {"http_version": b"HTTP/1.1", "reason_phrase": answer.reason}
    if reader is None:
        return httpx.Response(answer.status, headers=headers, content=b"".join(parts), extensions=extensions)
    if not reader.ok:
        raise ThredError(f"Thred's answer to {what} is not JSON", status=answer.status)
    extensions[TOP_LEVEL_ONLY] = not reader.whole
    return httpx.Response(answer.status, headers=headers, content=reader.body(), extensions=extensions)


def _header_line(name: str, value: str) -> bytes:
    if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
        raise httpx.LocalProtocolError(f"header {name!r} has a line break or NUL in it")
    return f"{name}: {value}\r\n".encode()


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
