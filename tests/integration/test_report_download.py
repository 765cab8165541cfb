"""A report host the allowlist names must be where it points: a name that resolves to a loopback (or private)
address is refused on the open connection, before the request and its credentials are sent. Real resolution
(``127.1`` is a name to the resolver, not an address literal) and a real report host on loopback."""

from __future__ import annotations

import httpx
import pytest

from thred_bridge import testing
from thred_bridge.errors import ProcessorError
from thred_bridge.processors.adyen.download import ReportHosts, checked_url, download_report

pytestmark = pytest.mark.anyio
CREDENTIALS = {"report_user": testing.ADYEN_REPORT_USER[0], "report_password": testing.ADYEN_REPORT_USER[1]}


async def test_a_name_resolving_to_loopback_is_refused_before_anything_is_sent() -> None:
    async with testing.report_host() as reports, httpx.AsyncClient(timeout=10) as client:
        link = reports.put("settlement_detail_report_batch_1.csv", b"Company Account\r\n")
        port = link.split(":")[2].split("/")[0]
        named = link.replace("http://127.0.0.1", "https://127.1")
        url = checked_url(named, ReportHosts.parse(f"127.1:{port}"))  # allowlisted, https: passes the URL check
        with pytest.raises(ProcessorError, match=r"127\.1 resolves to 127\.0\.0\.1, a loopback address"):
            await download_report(client, url, CREDENTIALS)
        assert reports.files.requests == [], "no request reached the host"

        spool = await download_report(client, checked_url(link, ReportHosts.parse(reports.host)), CREDENTIALS)
        assert spool.read() == b"Company Account\r\n", "named as loopback, a local stand-in is fetched"
        spool.close()
