"""ThredClient: Thred's partner API over one ``httpx.AsyncClient``.

Owns the two token tiers (partner token by Basic auth, one business token per business, both
cached and refreshed ahead of expiry, one re-authentication and retry on a 401), the record calls
(create, get, list, delete, lookup by ``external_id``; a 409 on create becomes a lookup), and turning
transport failures into :class:`ThredUnavailableError`. It never retries 5xx, 429 or timeouts: the
worker owns retry with backoff and reads ``retry_after``. Paths and bodies live in `wire.py`.

Secrets (the API key, tokens) never reach messages, reprs or logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import httpx
import orjson

from thred_bridge import __version__
from thred_bridge.domain import json_codec
from thred_bridge.domain.json_top import TopLevel
from thred_bridge.errors import ConfigError, ThredAuthError, ThredError, ThredUnavailableError
from thred_bridge.thred import wire
from thred_bridge.thred.direct import BODY_HEADERS, REDIRECTS, TOP_LEVEL_ONLY, DirectHttp
from thred_bridge.thred.limit import AdaptiveLimit
from thred_bridge.thred.transport import Http11Transport
from thred_bridge.thred.wire import KINDS, Created, Kind

__all__ = ["KINDS", "Created", "Kind", "ThredClient"]

_log = logging.getLogger(__name__)
_PARTNER: Final = None  # token-cache key of the partner token; business tokens are keyed by business id
_REDIRECTS: Final = REDIRECTS
_BODY_HEADERS: Final = frozenset(name.decode() for name in BODY_HEADERS)
_Record = dict[str, Any]


def _wall_clock() -> float:
    return time.time()  # looked up per call, so freezegun's patched time.time is seen


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Thred as JSON")


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float
    expires_at: float
    minted_with: str | None = field(default=None, repr=False)  # the partner token that bought it


class ThredClient:
    """Thred's partner API for one partner (``partner_id`` + ``api_key``)."""

    def __init__(
        self,
        base_url: str,
        partner_id: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 15.0,
        clock: Callable[[], float] = _wall_clock,
        refresh_margin: float = 300.0,
        max_connections: int = 64,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """``observe(method, status, seconds)`` hears of every exchange: the HTTP status, or ``timeout`` /
        ``unreachable`` when no answer came. ``max_connections`` bounds the calls in flight, which adapt below it
        to Thred's refusals (:attr:`limit`)."""
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"Thred base URL must be an absolute http(s) URL, got {base_url!r}")
        if not partner_id or not api_key:
            raise ConfigError("Thred partner id and API key must both be set")
        self._base_url = str(url)
        self._origin = (url.scheme, url.host, url.port)
        self._basic = "Basic " + base64.b64encode(f"{partner_id}:{api_key}".encode()).decode("ascii")
        self._timeout = timeout
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._observe = observe
        self._tokens: dict[str | None, _Token] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}
        self.limit = AdaptiveLimit(max_connections)
        fixed = {"Accept": "application/json", "User-Agent": f"thred-bridge/{__version__}"}
        # Without a test transport the client owns its pool and writes its exchanges itself (direct.py); httpx's
        # client then serves only as the same pool's front for anything else.
        pool = Http11Transport(max_connections=max_connections) if transport is None else None
        self._direct = DirectHttp(url, pool, timeout, fixed) if pool is not None else None
        self._http = httpx.AsyncClient(
            base_url=url,
            transport=transport or pool,
            timeout=httpx.Timeout(timeout),
            headers=fixed,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ThredClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- records (business token) --------------------------------------------------------------

    async def create(
        self,
        business_id: str,
        kind: Kind,
        body: Mapping[str, Any],
        *,
        parent_id: str | None = None,
        idempotency_key: str | None = None,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> Created:
        """POST a record. 201 → ``created=True``; 200 (Thred returned the existing one) → False.

        ``before_write`` is awaited right before the request goes out (after any token is bought), each time it
        goes out: the caller's last word on whether it may still write (a fence; it raises to stop the write).

        A 409 for a body with ``external_id`` is answered by looking that record up: found →
        ``Created(created=False)``; not found → the 409 ThredError is raised. Not for payouts: their POST is
        an upsert, so a 409 is a state conflict (the payout is reconciled and refuses the update) that the
        caller must see, not a duplicate to look up.
        """
        path = wire.path_for(kind, business_id, parent_id)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            response = await self._authed(
                "POST", path, business_id, json=body, headers=headers, top_level=True, before_write=before_write
            )
        except ThredError as exc:
            external_id = body.get("external_id")
            if exc.status != 409 or kind == "payout" or not isinstance(external_id, str) or not external_id:
                raise
            found = await self.find_by_external_id(business_id, kind, external_id, parent_id=parent_id)
            if found is None:
                raise
            _log.info("thred.create.conflict_resolved", extra={"kind": kind, "business_id": business_id})
            return Created(id=str(found["id"]), created=False, body=found)
        try:
            record = wire.parse_created(kind, response.content)
        except ThredError:
            external_id = body.get("external_id")
            if not response.extensions.get(TOP_LEVEL_ONLY) or not isinstance(external_id, str) or not external_id:
                raise
            # A large answer was read for its top level, and the record is wrapped below it: look it up.
            found = await self.find_by_external_id(business_id, kind, external_id, parent_id=parent_id)
            if found is None:
                raise
            record = found
        return Created(id=str(record["id"]), created=response.status_code == 201, body=record)

    async def find_by_external_id(
        self, business_id: str, kind: Kind, external_id: str, *, parent_id: str | None = None
    ) -> _Record | None:
        """The record whose ``external_id`` equals ``external_id`` exactly, or None.

        Thred's filters may match partially (payouts: case-insensitive substring), so every page
        of the filtered list is read and only an exact match is returned.
        """
        params = {"external_id": external_id}
        if kind == "payment":  # the payment list's documented filter is `search`
            params["search"] = external_id
        async with aclosing(self.list(business_id, kind, params, parent_id=parent_id)) as records:
            async for record in records:
                if record.get("external_id") == external_id:
                    return record
        return None

    async def get(self, business_id: str, kind: Kind, record_id: str, *, parent_id: str | None = None) -> _Record:
        """One record; a missing one raises ThredError with ``status == 404``."""
        path = wire.record_path(kind, business_id, record_id, parent_id)
        response = await self._authed("GET", path, business_id)
        return wire.parse_created(kind, response.content)

    async def delete(
        self,
        business_id: str,
        kind: Kind,
        record_id: str,
        *,
        parent_id: str | None = None,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Cancel an invoice payment (pending/failed only) or delete a refund payment (``before_write``: as for
        :meth:`create`)."""
        method, path = wire.delete_route(kind, business_id, record_id, parent_id)
        await self._authed(method, path, business_id, before_write=before_write)

    async def list(
        self,
        business_id: str,
        kind: Kind,
        params: Mapping[str, str] | None = None,
        *,
        parent_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[_Record, None]:
        """Every record of ``kind`` matching ``params``, page by page (wrap in ``aclosing`` to stop early)."""
        path = wire.path_for(kind, business_id, parent_id)
        async with aclosing(self._pages(path, business_id, params, page_size)) as records:
            async for record in records:
                yield record

    # --- businesses (partner token) --------------------------------------------------------------

    async def create_business(
        self,
        *,
        external_id: str,
        legal_name: str,
        entity_type: str,
        email: str,
        country: str | None = None,
        base_currency: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Created:
        """Create (201) or return the existing (200) business with this ``external_id``."""
        body: dict[str, Any] = {
            "external_id": external_id,
            "legal_name": legal_name,
            "entity_type": entity_type,
            "email": email,
            **({"country": country} if country else {}),
            **({"base_currency": base_currency} if base_currency else {}),
            **(extra or {}),
        }
        try:
            response = await self._authed("POST", wire.BUSINESSES_PATH, _PARTNER, json=body)
        except ThredError as exc:
            found = await self.find_business(external_id) if exc.status == 409 else None
            if found is None:
                raise
            return Created(id=str(found["id"]), created=False, body=found)
        record = wire.parse_created("business", response.content)
        return Created(id=str(record["id"]), created=response.status_code == 201, body=record)

    async def get_business(self, business_id: str) -> _Record:
        response = await self._authed("GET", wire.business_path(business_id), _PARTNER)
        return wire.parse_created("business", response.content)

    async def find_business(self, external_id: str) -> _Record | None:
        """The partner's business whose ``external_id`` equals ``external_id`` exactly, or None."""
        params = {"external_id": external_id}
        async with aclosing(self._pages(wire.BUSINESSES_PATH, _PARTNER, params, 100)) as records:
            async for record in records:
                if record.get("external_id") == external_id:
                    return record
        return None

    # --- paging ----------------------------------------------------------------------------------

    async def _pages(
        self, path: str, scope: str | None, params: Mapping[str, str] | None, page_size: int
    ) -> AsyncGenerator[_Record, None]:
        size = max(1, min(page_size, wire.MAX_PAGE_SIZE))
        page, previous_first = 1, None
        while True:
            query = {**(params or {}), "page": str(page), "page_size": str(size)}
            response = await self._authed("GET", path, scope, params=query)
            records, has_more = wire.parse_page(response.content)
            first = records[0].get("id") if records else None
            if page > 1 and first is not None and first == previous_first:
                raise ThredError(f"Thred answered page {page} of GET {path} with page {page - 1} again")
            for record in records:
                yield record
            if not has_more or not records:
                return
            page, previous_first = page + 1, first

    # --- tokens ----------------------------------------------------------------------------------

    async def _token(self, scope: str | None) -> _Token:
        token = self._tokens.get(scope)
        if token is not None and self._clock() < token.refresh_at:
            return token
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:  # concurrent callers share one refresh
            stale = self._tokens.get(scope)
            if stale is not None and self._clock() < stale.refresh_at:
                return stale
            try:
                token = await (self._mint_partner() if scope is None else self._mint_business(scope))
            except ThredUnavailableError:
                if stale is not None and self._clock() < stale.expires_at:
                    return stale  # an early refresh failed; the old token still works
                raise
            self._tokens[scope] = token
            return token

    async def _mint_partner(self) -> _Token:
        started = self._clock()
        headers = {"Authorization": self._basic, "Content-Type": "application/x-www-form-urlencoded"}
        path = wire.PARTNER_TOKEN_PATH
        response = await self._send("POST", path, headers, b"grant_type=client_credentials", None)
        if not response.is_success:
            raise self._error("POST", path, response)
        value, lifetime, _ = wire.parse_token(response.content)
        _log.debug("thred.token.partner", extra={"expires_in": lifetime})
        return _Token(value, self._refresh_at(started, lifetime), started + lifetime)

    async def _mint_business(self, business_id: str) -> _Token:
        started = self._clock()
        response = await self._authed("POST", wire.business_token_path(business_id), _PARTNER)
        partner = self._tokens.get(_PARTNER)  # the one that just worked
        value, lifetime, scoped_to = wire.parse_token(response.content)
        if scoped_to is not None and scoped_to != business_id:
            raise ThredAuthError(f"Thred issued a token for business {scoped_to} when asked for {business_id}")
        _log.debug("thred.token.business", extra={"business_id": business_id, "expires_in": lifetime})
        minted_with = partner.value if partner else None
        return _Token(value, self._refresh_at(started, lifetime), started + lifetime, minted_with)

    def _refresh_at(self, started: float, lifetime: float) -> float:
        return started + lifetime - min(self._refresh_margin, lifetime / 2)

    def _forget(self, scope: str | None, used: _Token) -> None:
        """Drop ``used`` and the partner token that bought it, unless a refresh already replaced them."""
        if self._tokens.get(scope) is used:
            del self._tokens[scope]
        partner = self._tokens.get(_PARTNER)
        if used.minted_with is not None and partner is not None and partner.value == used.minted_with:
            del self._tokens[_PARTNER]

    # --- requests --------------------------------------------------------------------------------

    async def _authed(
        self,
        method: str,
        path: str,
        scope: str | None,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        top_level: bool = False,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> httpx.Response:
        """Send with the scope's bearer token; on a 401 re-authenticate and retry once. 2xx only.

        ``top_level``: a successful answer above ``json_codec.LARGE`` is read for its top level only
        (:class:`~thred_bridge.domain.json_top.TopLevel`) and its ``extensions`` say so."""
        content = None if json is None else orjson.dumps(json, default=_json_default)
        for attempt in (1, 2):
            token = await self._token(scope)
            sent = {**(headers or {}), "Authorization": f"Bearer {token.value}"}
            if content is not None:
                sent["Content-Type"] = "application/json"
            if before_write is not None:
                await before_write()
            response = await self._send(
                method, path, sent, content, params, top_level=top_level, before_write=before_write
            )
            if response.status_code != 401 or attempt == 2:
                break
            _log.info("thred.reauth", extra={"method": method, "path": path})
            self._forget(scope, token)
        if response.is_success:
            return response
        raise self._error(method, path, response)

    async def _send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        content: bytes | None,
        params: Mapping[str, str] | None,
        *,
        top_level: bool = False,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> httpx.Response:
        """One exchange (plus at most one same-origin redirect); transport failures become transient.

        ``before_write`` is awaited again at the last moment, through httpcore's ``trace`` extension: once a
        connection is in hand (a new one may take a TCP connect) and right before the request's headers are
        written, and once more right before its body is, so that no await lies between the caller's last word
        and the bytes that complete the request.

        At most :attr:`limit` calls are in flight at once; the limit adapts to Thred's refusals (limit.py)."""
        window = await self.limit.acquire()
        status: int | None = None
        try:
            response = await self._send_once(
                method, path, headers, content, params, top_level=top_level, before_write=before_write
            )
            status = response.status_code
            return response
        finally:
            self.limit.release(window, status)

    async def _send_once(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        content: bytes | None,
        params: Mapping[str, str] | None,
        *,
        top_level: bool,
        before_write: Callable[[], Awaitable[None]] | None,
    ) -> httpx.Response:
        started = time.perf_counter()
        extensions = {} if before_write is None else {"trace": _at_write(before_write)}
        try:
            if self._direct is not None:
                trace = extensions.get("trace")
                response = await self._direct.send(
                    method, path, headers, content, params, top_level=top_level, trace=trace
                )
                self._observed(method, str(response.status_code), started)
                return response
            request = self._http.build_request(
                method, path, headers=headers, content=content, params=params, extensions=extensions
            )
            response = await self._exchange(request, top_level)
            if response.status_code in _REDIRECTS and self._same_origin(request, response):
                target = request.url.join(response.headers["location"])
                request = httpx.Request(method, target, headers=request.headers, content=content, extensions=extensions)
                response = await self._exchange(request, top_level)
        except httpx.TimeoutException as exc:
            self._observed(method, "timeout", started)
            message = f"Thred timed out after {self._timeout} s on {method} {path} ({type(exc).__name__})"
            raise ThredUnavailableError(message) from None
        except httpx.TransportError as exc:
            self._observed(method, "unreachable", started)
            message = f"Thred unreachable on {method} {path}: {type(exc).__name__}: {exc}"
            raise ThredUnavailableError(message) from None
        self._observed(method, str(response.status_code), started)
        return response

    def _observed(self, method: str, status: str, started: float) -> None:
        if self._observe is not None:
            self._observe(method, status, time.perf_counter() - started)

    async def _exchange(self, request: httpx.Request, top_level: bool) -> httpx.Response:
        """Send and read the answer: whole, or with ``top_level`` a large successful one for its top level only
        (a payout's answer lists every payment it settles: 12 MB for 50,000, of which the bridge reads the id)."""
        if not top_level:
            return await self._http.send(request)
        response = await self._http.send(request, stream=True)
        try:
            if not response.is_success:
                await response.aread()
                return response
            reader = TopLevel(json_codec.LARGE)
            async for chunk in response.aiter_bytes():
                reader.feed(chunk)
        finally:
            await response.aclose()
        if not reader.ok:
            raise ThredError(
                f"Thred's answer to {request.method} {request.url.path} is not JSON", status=response.status_code
            )
        body = reader.body()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        return httpx.Response(
            response.status_code, headers=headers, content=body, request=request,
            extensions={**response.extensions, TOP_LEVEL_ONLY: not reader.whole},
        )  # fmt: skip

    def _same_origin(self, request: httpx.Request, response: httpx.Response) -> bool:
        location = response.headers.get("location")
        if not location:
            return False
        target = request.url.join(location)
        return (target.scheme, target.host, target.port) == self._origin

    def _error(self, method: str, path: str, response: httpx.Response) -> ThredError:
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("location", "nowhere")
            return ThredError(
                f"Thred redirected {method} {path} to {location}; not followed (check the Thred base URL)",
                status=status,
            )
        now = datetime.fromtimestamp(self._clock(), UTC)
        return wire.parse_error(status, response.content, response.headers, now=now)


_AT_WRITE = (".send_request_headers.started", ".send_request_body.started")


def _at_write(before_write: Callable[[], Awaitable[None]]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` callback that awaits ``before_write`` as the request's headers are about to go out,
    and again as its body is (HTTP/1.1 or HTTP/2). Its exception aborts the request: before a byte of it is
    written, or with the headers written and the body not, which the server reads as a request cut short and
    books nothing. The body is the commit point: a process frozen between the two writes and declared dead
    meanwhile is stopped there, not on the next request."""

    async def trace(name: str, _info: dict[str, Any]) -> None:
        if name.endswith(_AT_WRITE):
            await before_write()

    return trace
