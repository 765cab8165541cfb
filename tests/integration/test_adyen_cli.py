"""`thred-bridge connections add adyen` as a subprocess: the connection id and webhook URL are printed, the
HMAC key and passwords are stored encrypted and never printed (not by `show`, not by `list`)."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest

from tests.integration.test_cli import PUBLIC_URL, Cli, clean_env, one_line_error

pytestmark = pytest.mark.slow

HMAC_KEY = secrets.token_hex(32).upper()
ROTATED_KEY = secrets.token_hex(32).upper()
REPORT_PASSWORD = "rp-" + secrets.token_urlsafe(18)
WEBHOOK_PASSWORD = "wp-" + secrets.token_urlsafe(18)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(clean_env(f"sqlite:///{tmp_path / 'bridge.db'}"), tmp_path)


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (HMAC_KEY, ROTATED_KEY, REPORT_PASSWORD, WEBHOOK_PASSWORD):
            assert secret not in text
            assert secret[-12:] not in text


def test_add_adyen_prints_id_and_url_and_keeps_secrets_encrypted(cli: Cli, tmp_path: Path) -> None:
    cli.ok("migrate")
    args = [
        "connections", "add", "adyen", "--business-id", "biz_a", "--merchant-account", "TestMerchant",
        "--hmac-key", HMAC_KEY, "--hmac-key", ROTATED_KEY,
        "--report-user", "report@Company.Test", "--report-password", REPORT_PASSWORD,
        "--webhook-user", "adyen", "--webhook-password", WEBHOOK_PASSWORD, "--capture", "immediate",
    ]  # fmt: skip
    added = cli.json(*args)
    assert set(added) == {"id", "webhook_url"}
    assert added["webhook_url"] == f"{PUBLIC_URL}/webhooks/adyen/{added['id']}"
    shown = cli.json("connections", "show", added["id"])
    assert shown["processor"] == "adyen"
    assert shown["account"] == "TestMerchant"
    assert shown["webhook_secrets"] == 2
    assert shown["credentials"] == [
        "capture", "report_password", "report_user", "webhook_password", "webhook_user",
    ]  # fmt: skip
    plain = cli.ok(*args)
    assert "Standard webhook" in plain.stdout
    listed = cli.ok("connections", "list", "--json").stdout
    shown_plain = cli.ok("connections", "show", added["id"]).stdout
    _assert_no_secret(str(shown), shown_plain, listed, plain.stdout, plain.stderr, str(added))
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        stored = " ".join(str(v) for row in db.execute("SELECT * FROM connections") for v in row)
    _assert_no_secret(stored)


def test_add_adyen_refuses_a_key_that_is_not_hex_and_half_credentials(cli: Cli) -> None:
    cli.ok("migrate")
    base = ["connections", "add", "adyen", "--business-id", "b", "--merchant-account", "M"]
    assert "hex" in one_line_error(cli.run(*base, "--hmac-key", "not-a-hex-key"))
    half = cli.run(*base, "--hmac-key", HMAC_KEY, "--report-user", "report@Company.Test")
    assert "--report-user and --report-password go together" in one_line_error(half)


def test_add_adyen_with_a_settlement_currency_needs_a_code_and_the_report_user(cli: Cli) -> None:
    cli.ok("migrate")
    base = ["connections", "add", "adyen", "--business-id", "b", "--merchant-account", "M", "--hmac-key", HMAC_KEY]
    report = ["--report-user", "report@Company.Test", "--report-password", REPORT_PASSWORD]
    assert "not an ISO 4217 currency code" in one_line_error(cli.run(*base, *report, "--settlement-currency", "GB"))
    alone = one_line_error(cli.run(*base, "--settlement-currency", "GBP"))
    assert "--settlement-currency needs --report-user and --report-password" in alone
    added = cli.json(*base, *report, "--settlement-currency", "gbp")
    shown = cli.json("connections", "show", added["id"])
    assert "settlement_currency" in shown["credentials"]
