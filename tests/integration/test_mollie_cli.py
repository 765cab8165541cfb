"""`thred-bridge connections add mollie` as a subprocess: the connection id and webhook URL are printed, the
secrets are stored encrypted and never printed, and `status` says when payouts are off."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest

from tests.integration.test_cli import PUBLIC_URL, Cli, clean_env

pytestmark = pytest.mark.slow

API_KEY = "test_" + secrets.token_hex(15)
TOKEN = "access_" + secrets.token_hex(20)
WEBHOOK_SECRET = secrets.token_urlsafe(24)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(clean_env(f"sqlite:///{tmp_path / 'bridge.db'}"), tmp_path)


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (API_KEY, TOKEN, WEBHOOK_SECRET):
            assert secret not in text
            assert secret[-12:] not in text


def test_add_mollie_prints_id_and_url_and_keeps_secrets_encrypted(cli: Cli, tmp_path: Path) -> None:
    cli.ok("migrate")
    args = ["connections", "add", "mollie", "--business-id", "biz_m", "--api-key", API_KEY]
    added = cli.json(*args, "--webhook-secret", WEBHOOK_SECRET, "--organization-token", TOKEN)
    assert set(added) == {"id", "webhook_url"}
    assert added["webhook_url"] == f"{PUBLIC_URL}/webhooks/mollie/{added['id']}"
    shown = cli.ok("connections", "show", added["id"]).stdout
    status = cli.json("status", added["id"])
    assert status["notes"] == []
    plain = cli.ok(*args)
    assert "settlements (payouts) do not" in plain.stdout
    _assert_no_secret(shown, plain.stdout, plain.stderr, str(added))
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        stored = " ".join(str(v) for row in db.execute("SELECT * FROM connections") for v in row)
    _assert_no_secret(stored)
    rows = cli.json("connections", "list")
    without = next(r for r in rows if r["id"] != added["id"])
    assert without["credentials"] == ["api_key"]
    note = cli.json("status", without["id"])["notes"]
    assert len(note) == 1
    assert "organization access token" in note[0]


def test_add_mollie_refuses_malformed_credentials(cli: Cli) -> None:
    cli.ok("migrate")
    base = ["connections", "add", "mollie", "--business-id", "biz_m"]
    bad_key = cli.run(*base, "--api-key", "sk_test_" + "1" * 24)
    assert bad_key.returncode == 2
    assert "live_… or test_…" in bad_key.stderr + bad_key.stdout
    bad_token = cli.run(*base, "--api-key", API_KEY, "--organization-token", "test_notatoken")
    assert bad_token.returncode == 2
    _assert_no_secret(bad_token.stdout, bad_token.stderr)
