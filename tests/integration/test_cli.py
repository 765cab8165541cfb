"""The real `thred-bridge` command, run as a subprocess against a fresh SQLite (and Postgres) database.

Each run gets a clean environment (no inherited BRIDGE_* / THRED_* variables) and runs in ``tmp_path``
so no `.env` of the repository is read.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://bridge.example.com"


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    def run(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "thred_bridge", *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@dataclass
class Stripe:
    api_key: str
    secrets: tuple[str, str]

    def add_args(self, business_id: str = "biz_1") -> list[str]:
        return [
            "connections", "add", "stripe", "--business-id", business_id, "--api-key", self.api_key,
            "--webhook-secret", self.secrets[0], "--webhook-secret", self.secrets[1],
        ]  # fmt: skip

    def assert_absent(self, *texts: str) -> None:
        for text in texts:
            for secret in (self.api_key, *self.secrets):
                assert secret not in text
            # not even a recognisable fragment
            assert self.api_key[-12:] not in text
            for secret in self.secrets:
                assert secret[-12:] not in text


def clean_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "THRED_"))}
    env.update(
        BRIDGE_DATABASE_URL=database_url,
        BRIDGE_SECRET_KEY=secrets.token_urlsafe(32),
        BRIDGE_PUBLIC_URL=PUBLIC_URL,
        **extra,
    )
    return env


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "b.db"


@pytest.fixture
def cli(tmp_path: Path, db_path: Path) -> Cli:
    return Cli(clean_env(f"sqlite:///{db_path}"), tmp_path)


@pytest.fixture
def stripe() -> Stripe:
    return Stripe(
        api_key="sk_test_" + secrets.token_hex(24),
        secrets=("whsec_" + secrets.token_hex(20), "whsec_" + secrets.token_hex(20)),
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("thred-bridge: ")
    return lines[0]


# --- migrate ---------------------------------------------------------------------------------------------


def test_migrate_once_then_already_current(cli: Cli, db_path: Path) -> None:
    first = cli.ok("migrate")
    assert "migrated from nothing to revision" in first.stdout
    assert db_path.exists()
    second = cli.ok("migrate")
    assert "already at revision" in second.stdout
    document = json.loads(cli.ok("migrate", "--json").stdout)
    assert document["database"] == "sqlite"
    assert document["from"] == document["to"]
    assert document["to"]


def test_migrate_json_on_a_new_database(cli: Cli) -> None:
    document = json.loads(cli.ok("migrate", "--json").stdout)
    assert document["from"] is None
    assert isinstance(document["to"], str)
    assert document == {"database": "sqlite", "from": None, "to": document["to"]}


# --- connections -----------------------------------------------------------------------------------------


def test_add_stripe_prints_id_and_webhook_url(cli: Cli, stripe: Stripe) -> None:
    result = cli.ok(*stripe.add_args(), "--json")
    added = json.loads(result.stdout)
    assert set(added) == {"id", "webhook_url"}
    assert added["id"].startswith("conn_")
    assert added["webhook_url"] == f"{PUBLIC_URL}/webhooks/stripe/{added['id']}"
    stripe.assert_absent(result.stdout, result.stderr)

    shown = cli.json("connections", "show", added["id"])
    assert shown["webhook_secrets"] == 2  # both --webhook-secret flags were kept
    assert shown["processor"] == "stripe"
    assert shown["business_id"] == "biz_1"
    assert shown["removed_at"] is None
    assert shown["webhook_url"] == added["webhook_url"]


def test_add_in_text_prints_the_webhook_url(cli: Cli, stripe: Stripe) -> None:
    result = cli.ok(*stripe.add_args())
    assert f"{PUBLIC_URL}/webhooks/stripe/conn_" in result.stdout
    stripe.assert_absent(result.stdout, result.stderr)


def test_connect_account(cli: Cli, stripe: Stripe) -> None:
    added = cli.json(*stripe.add_args(), "--account", "acct_1ABC", "--label", "shop")
    shown = cli.json("connections", "show", added["id"])
    assert (shown["account"], shown["label"]) == ("acct_1ABC", "shop")


@pytest.mark.parametrize(
    ("swap", "expected"),
    [
        (("--api-key", "pk_test_public"), "--api-key"),
        (("--webhook-secret", "not_a_whsec"), "--webhook-secret"),
        (("--account", "acc_wrong"), "--account"),
    ],
)
def test_bad_prefix_is_one_line_exit_2(cli: Cli, stripe: Stripe, swap: tuple[str, str], expected: str) -> None:
    args = stripe.add_args()
    flag, value = swap
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    result = cli.run(*args, "--json")
    line = one_line_error(result)
    assert expected in line
    assert result.stdout == ""
    stripe.assert_absent(result.stderr)
    assert cli.json("connections", "list") == []


def test_list_and_show_never_show_secrets(cli: Cli, stripe: Stripe, db_path: Path) -> None:
    added = cli.json(*stripe.add_args())
    outputs: list[str] = []
    for args in (
        ("connections", "list", "--json"),
        ("connections", "list"),
        ("connections", "list", "--all", "--json"),
        ("connections", "show", added["id"], "--json"),
        ("connections", "show", added["id"]),
        ("status", "--json"),
        ("status", added["id"]),
    ):
        result = cli.ok(*args)
        outputs += [result.stdout, result.stderr]
    stripe.assert_absent(*outputs)

    listed = cli.json("connections", "list")
    assert [c["id"] for c in listed] == [added["id"]]
    assert listed[0]["webhook_secrets"] == 2
    assert listed[0]["credentials"] == ["api_key"]  # names only
    assert listed[0]["webhook_url"] == added["webhook_url"]

    # encrypted at rest: the database file holds neither the key nor the secrets
    raw = db_path.read_bytes()
    for wal in db_path.parent.glob("b.db-*"):
        raw += wal.read_bytes()
    for secret in (stripe.api_key, *stripe.secrets):
        assert secret.encode() not in raw


def test_remove_then_show_and_list(cli: Cli, stripe: Stripe) -> None:
    kept = cli.json(*stripe.add_args("biz_kept"))
    gone = cli.json(*stripe.add_args("biz_gone"))
    removed = cli.json("connections", "remove", gone["id"])
    assert removed == {"id": gone["id"], "removed": True}

    shown = cli.json("connections", "show", gone["id"])
    assert shown["removed_at"] is not None
    assert cli.json("connections", "show", kept["id"])["removed_at"] is None

    assert [c["id"] for c in cli.json("connections", "list")] == [kept["id"]]
    everything = {c["id"]: c for c in cli.json("connections", "list", "--all")}
    assert set(everything) == {kept["id"], gone["id"]}
    assert everything[gone["id"]]["removed_at"] == shown["removed_at"]

    text = cli.ok("connections", "list", "--all").stdout
    assert "removed" in text

    # removing twice, or an unknown id, is an operator error
    assert "conn_" in one_line_error(cli.run("connections", "remove", gone["id"]))
    one_line_error(cli.run("connections", "show", "conn_doesnotexist"))


# --- status and replay -----------------------------------------------------------------------------------


def test_status_of_a_fresh_connection(cli: Cli, stripe: Stripe) -> None:
    added = cli.json(*stripe.add_args())
    one = cli.json("status", added["id"])
    assert one["connection_id"] == added["id"]
    assert (one["received"], one["synced"], one["waiting"], one["failed"]) == (0, 0, 0, 0)
    assert one["oldest_waiting_seconds"] is None
    assert one["failures"] == []
    every = cli.json("status")
    assert [s["connection_id"] for s in every] == [added["id"]]


def test_status_of_an_unknown_connection_is_exit_2(cli: Cli) -> None:
    line = one_line_error(cli.run("status", "conn_unknown", "--json"))
    assert "conn_unknown" in line


def test_replay_of_a_fresh_connection_queues_nothing(cli: Cli, stripe: Stripe) -> None:
    added = cli.json(*stripe.add_args())
    assert cli.json("replay", added["id"]) == {"id": added["id"], "queued": 0}
    assert cli.json("replay", added["id"], "--event", "evt_none") == {"id": added["id"], "queued": 0}
    assert "nothing to replay" in cli.ok("replay", added["id"]).stdout
    one_line_error(cli.run("replay", "conn_unknown"))


# --- usage and configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["frobnicate"], [], ["connections"], ["connections", "add", "paypal"]])
def test_bad_usage_is_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.returncode == 2
    assert "usage: thred-bridge" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_requires_a_secret_key(cli: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in cli.env.items() if k != "BRIDGE_SECRET_KEY"}
    production = Cli({**env, "BRIDGE_ENV": "production"}, cli.cwd)
    line = one_line_error(production.run("connections", "list", "--json"))
    assert "BRIDGE_SECRET_KEY" in line
    assert not list(tmp_path.glob(".bridge-secret-key"))  # no key was invented for production


def test_local_run_without_a_key_generates_one_beside_the_database(cli: Cli, stripe: Stripe, tmp_path: Path) -> None:
    env = {k: v for k, v in cli.env.items() if k != "BRIDGE_SECRET_KEY"}
    local = Cli(env, cli.cwd)
    added = local.json(*stripe.add_args())
    assert (tmp_path / ".bridge-secret-key").is_file()
    assert local.json("connections", "show", added["id"])["webhook_secrets"] == 2
    # the same database under another key cannot be read, and says which setting is wrong
    line = one_line_error(cli.run("connections", "list"))
    assert "BRIDGE_SECRET_KEY" in line
    stripe.assert_absent(line)


def test_invalid_setting_is_a_configuration_error(cli: Cli) -> None:
    line = one_line_error(cli.run("status", env={"BRIDGE_WORKERS": "many"}))
    assert "configuration error" in line
    assert "BRIDGE_WORKERS" in line


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "0"]])
def test_old_schema_is_refused(cli: Cli, db_path: Path, command: list[str]) -> None:
    cli.ok("migrate")
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num='0000'")
    result = cli.run(*command, timeout=20)
    line = one_line_error(result)
    assert "run `thred-bridge migrate`" in line
    assert "0000" in line


# --- Postgres --------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_connections_on_postgres(empty_postgres_url: str, tmp_path: Path, stripe: Stripe) -> None:
    cli = Cli(clean_env(empty_postgres_url), tmp_path)
    assert json.loads(cli.ok("migrate", "--json").stdout)["database"] == "postgresql"
    added = cli.json(*stripe.add_args("biz_pg"))
    assert added["webhook_url"] == f"{PUBLIC_URL}/webhooks/stripe/{added['id']}"
    listed = cli.ok("connections", "list", "--json")
    mine = [c for c in json.loads(listed.stdout) if c["id"] == added["id"]]
    assert len(mine) == 1
    assert mine[0]["business_id"] == "biz_pg"
    assert mine[0]["webhook_secrets"] == 2
    stripe.assert_absent(listed.stdout, listed.stderr)
