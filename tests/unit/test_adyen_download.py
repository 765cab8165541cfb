"""Which report URLs the bridge may fetch (BRIDGE_ADYEN_REPORT_HOSTS), and the webhook's Basic auth check."""

from __future__ import annotations

import base64

import pytest

from thred_bridge.errors import ConfigError, ProcessorError, UnauthorizedError
from thred_bridge.processors.adyen.download import DEFAULT_REPORT_HOSTS, ReportHosts, checked_url, report_auth
from thred_bridge.processors.adyen.sync import check_basic_auth
from thred_bridge.settings import ADYEN_REPORT_HOSTS

LIVE = "https://ca-live.adyen.com/reports/download/MerchantAccount/M/settlement_detail_report_batch_1.csv"


def test_the_default_allowlist_is_adyens_report_hosts() -> None:
    assert DEFAULT_REPORT_HOSTS == ADYEN_REPORT_HOSTS
    hosts = ReportHosts.parse(DEFAULT_REPORT_HOSTS)
    assert checked_url(LIVE, hosts) == LIVE
    assert checked_url(LIVE.replace("ca-live", "CA-TEST"), hosts)
    assert checked_url(LIVE.replace(".com/", ".com:443/"), hosts)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://evil.example/reports/x.csv", "host evil.example is not in BRIDGE_ADYEN_REPORT_HOSTS"),
        ("https://ca-live.adyen.com.evil.example/x.csv", "is not in BRIDGE_ADYEN_REPORT_HOSTS"),
        ("https://ca-live.adyen.com:8443/x.csv", "host ca-live.adyen.com:8443 is not in"),
        ("http://ca-live.adyen.com/x.csv", "is not https"),
        ("ftp://ca-live.adyen.com/x.csv", "is not an http(s) URL"),
        ("https://user:pw@ca-live.adyen.com/x.csv", "carries credentials"),
        ("", "no download URL"),
        (None, "no download URL"),
    ],
)
def test_other_urls_are_refused_with_the_reason(url: str | None, words: str) -> None:
    with pytest.raises(ProcessorError) as refused:
        checked_url(url, ReportHosts.parse(DEFAULT_REPORT_HOSTS))
    assert words in refused.value.message


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("169.254.169.254", "link-local"),  # a cloud metadata service
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("[fe80::1]", "link-local"),
        ("[::ffff:10.0.0.1]", "private"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),
    ],
)
def test_an_address_that_is_not_public_is_refused_even_when_allowlisted(host: str, kind: str) -> None:
    bare = host.strip("[]")
    with pytest.raises(ProcessorError, match=f"is a {kind} address"):
        checked_url(f"https://{host}/r.csv", ReportHosts.parse(f"{bare},{host}"))


def test_a_loopback_host_with_its_port_may_use_http() -> None:
    hosts = ReportHosts.parse(" 127.0.0.1:8123 , ca-test.adyen.com")
    assert checked_url("http://127.0.0.1:8123/r.csv", hosts)
    with pytest.raises(ProcessorError, match=r"127\.0\.0\.1:8124 is not in"):
        checked_url("http://127.0.0.1:8124/r.csv", hosts)


@pytest.mark.parametrize("entry", ["https://ca-live.adyen.com", "host:port", "a@b"])
def test_a_malformed_allowlist_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError):
        ReportHosts.parse(entry)


def test_report_credentials_basic_or_api_key() -> None:
    auth, headers = report_auth({"report_user": "report@Company.C", "report_password": "p"})
    assert auth is not None
    assert headers == {}
    assert report_auth({"report_api_key": "AQE…"}) == (None, {"X-API-Key": "AQE…"})
    with pytest.raises(ProcessorError, match="no report credentials"):
        report_auth({})


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_only_when_configured() -> None:
    check_basic_auth(None, {})
    configured = {"webhook_user": "adyen", "webhook_password": "s3cret:with:colons"}
    check_basic_auth(_basic("adyen", "s3cret:with:colons"), configured)
    for header in (None, "", "Bearer x", _basic("adyen", "wrong"), _basic("other", "s3cret:with:colons"), "Basic !!"):
        with pytest.raises(UnauthorizedError):
            check_basic_auth(header, configured)
