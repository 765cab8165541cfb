"""Download a settlement details report named by a REPORT_AVAILABLE webhook: only from allowed hosts,
with the connection's report credentials, streamed to a spooled temporary file under a size limit.

The URL comes from a webhook body, so it is checked before any request: the scheme (https, or http to a
loopback address), and the host and port against BRIDGE_ADYEN_REPORT_HOSTS. Redirects are not followed
(a redirect could leave the allowlist). A host the allowlist names must also *be* where it points: an address
that is not public (private, link-local such as a cloud metadata service, loopback, reserved) is refused,
written in the URL or reached through DNS — the latter checked on the connection itself, once it is open and
before a byte of the request (and its credentials) is sent, so a name that resolves elsewhere between a check
and the connect cannot slip through. Loopback stays allowed when the URL names it (``127.0.0.1``,
``localhost``): a local stand-in, as in tests. Failures: a 5xx, a 429, a timeout or a broken connection is
transient (ProcessorUnavailableError: the worker retries with backoff); a refused URL, 401, 403, 404,
any other answer, or a file over the limit is permanent (ProcessorError, with the reason).
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from thred_bridge.errors import ConfigError, ProcessorError, ProcessorUnavailableError

DEFAULT_REPORT_HOSTS = "ca-live.adyen.com,ca-test.adyen.com"
DEFAULT_MAX_REPORT_BYTES = 512 * 1024 * 1024
_DEFAULT_PORT = {"https": 443, "http": 80}
_SPOOL_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReportHosts:
    """The allowlist: ``host`` (its scheme's default port) or ``host:port``, case-insensitive."""

    entries: frozenset[tuple[str, int | None]]

    @classmethod
    def parse(cls, text: str) -> ReportHosts:
        entries: set[tuple[str, int | None]] = set()
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if "/" in entry or "@" in entry:
                raise ConfigError(f"BRIDGE_ADYEN_REPORT_HOSTS: {raw.strip()!r} is not host or host:port")
            host, sep, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if sep and not port.isdigit():
                raise ConfigError(f"BRIDGE_ADYEN_REPORT_HOSTS: {raw.strip()!r} has no numeric port")
            entries.add((host if sep else entry, int(port) if sep else None))
        return cls(frozenset(entries))

    def describe(self) -> str:
        return ", ".join(sorted(h if p is None else f"{h}:{p}" for h, p in self.entries)) or "(empty)"

    def allows(self, host: str, port: int, scheme: str) -> bool:
        return (host, port) in self.entries or (port == _DEFAULT_PORT[scheme] and (host, None) in self.entries)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _non_public(address: str) -> str | None:
    """What kind of address this is when it is not a public one (``"private"``, ``"link-local"``, …), else None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


def checked_url(url: str | None, hosts: ReportHosts) -> str:
    """``url`` if the bridge may download from it; else ProcessorError saying why (permanent)."""
    if not url:
        raise ProcessorError("the REPORT_AVAILABLE item carries no download URL in its reason")
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORT or not host:
        raise ProcessorError(f"report URL refused: {url!r} is not an http(s) URL")
    if scheme == "http" and not _loopback(host):
        raise ProcessorError(f"report URL refused: {url!r} is not https")
    if parts.username or parts.password:
        raise ProcessorError("report URL refused: it carries credentials")
    try:
        port = parts.port or _DEFAULT_PORT[scheme]
    except ValueError as exc:
        raise ProcessorError(f"report URL refused: {url!r} has a bad port") from exc
    try:
        kind = None if _loopback(host) else _non_public(host)
    except ValueError:
        kind = None  # a name: its addresses are checked on the connection
    if kind is not None:
        raise ProcessorError(f"report URL refused: {host} is a {kind} address")
    if not hosts.allows(host, port, scheme):
        shown = host if port == _DEFAULT_PORT[scheme] else f"{host}:{port}"
        raise ProcessorError(
            f"report URL refused: host {shown} is not in BRIDGE_ADYEN_REPORT_HOSTS ({hosts.describe()})"
        )
    return url.strip()


def _public_peer(host: str) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` callback refusing a connection whose peer is not public (unless ``host`` names
    loopback itself), as soon as the TCP connection is open."""
    allow_loopback = _loopback(host)

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete" or "return_value" not in info:
            return
        stream = info["return_value"]
        peer = stream.get_extra_info("server_addr")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            kind = _non_public(address)
        except ValueError:
            kind = "unknown"
        if kind is not None and not (allow_loopback and kind == "loopback"):
            await stream.aclose()  # httpcore has not taken it into its pool yet: it is ours to close
            raise ProcessorError(f"report URL refused: {host} resolves to {address}, a {kind} address")

    return trace


def report_auth(credentials: Mapping[str, str]) -> tuple[httpx.Auth | None, dict[str, str]]:
    """The connection's report credentials: Basic auth (report user) or an ``X-API-Key`` header."""
    user, password = credentials.get("report_user"), credentials.get("report_password")
    if user and password:
        return httpx.BasicAuth(user, password), {}
    key = credentials.get("report_api_key")
    if key:
        return None, {"X-API-Key": key}
    raise ProcessorError(
        "this Adyen connection has no report credentials: add it again with --report-user and --report-password"
    )


_PERMANENT = {
    401: "the report user's credentials were refused (401)",
    403: "the report user may not download this report (403: needs the Merchant Report Download role)",
    404: "the report does not exist (404)",
}


async def download_report(
    client: httpx.AsyncClient,
    url: str,
    credentials: Mapping[str, str],
    *,
    max_bytes: int = DEFAULT_MAX_REPORT_BYTES,
) -> IO[bytes]:
    """GET ``url`` (already :func:`checked_url`) into a spooled temporary file, rewound. The caller closes it."""
    auth, headers = report_auth(credentials)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - returned open
    try:
        host = (urlsplit(url).hostname or "").lower()
        peer_check = {"trace": _public_peer(host)}
        async with client.stream(
            "GET", url, auth=auth, headers=headers, follow_redirects=False, extensions=peer_check
        ) as answer:
            status = answer.status_code
            if status >= 500 or status == 429:
                raise ProcessorUnavailableError(f"report download: {url} answered {status}", status)
            if status != 200:
                reason = _PERMANENT.get(status, f"unexpected answer {status}")
                raise ProcessorError(f"report download from {url} failed: {reason}", status)
            declared = answer.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ProcessorError(f"report download: {declared} bytes is over the {max_bytes}-byte limit")
            size = 0
            async for chunk in answer.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ProcessorError(f"report download: the file is over the {max_bytes}-byte limit")
                spool.write(chunk)
    except httpx.TimeoutException as exc:
        spool.close()
        raise ProcessorUnavailableError(f"report download from {url} timed out") from exc
    except httpx.TransportError as exc:
        spool.close()
        raise ProcessorUnavailableError(f"report download from {url} failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool
