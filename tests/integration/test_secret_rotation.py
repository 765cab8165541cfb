"""`secrets rotate`: every stored secret re-encrypted under a new BRIDGE_SECRET_KEY while the old one, listed in
BRIDGE_PREVIOUS_SECRET_KEYS, still decrypts; stopped half-way, it is finished by running it again; and the
database never holds a secret in clear. On SQLite and Postgres, and through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from thred_bridge.bootstrap import open_bridge
from thred_bridge.errors import ConfigError
from thred_bridge.service.connections import NewConnection
from thred_bridge.settings import Settings

pytestmark = pytest.mark.anyio
BUSINESS = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"
STRIPE_KEY = "sk_test_" + "RotateMe" * 4
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def _settings(database_url: str, key: str, *previous: str) -> Settings:
    values: dict[str, Any] = {"BRIDGE_DATABASE_URL": database_url, "BRIDGE_SECRET_KEY": key}
    if previous:
        values["BRIDGE_PREVIOUS_SECRET_KEYS"] = ",".join(previous)
    return Settings.model_validate(values)


def _new(n: int) -> NewConnection:
    if n % 2:
        return NewConnection("stripe", BUSINESS, {"api_key": f"{STRIPE_KEY}{n}"}, (f"whsec_rotate_{n:024d}",))
    credentials = {"capture": "immediate", "webhook_user": "hook", "webhook_password": f"hook-password-{n}"}
    return NewConnection("adyen", BUSINESS, credentials, (HMAC_KEY,), account=f"Merchant{n}")


async def _contents(settings: Settings) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
    async with open_bridge(settings, with_thred=False) as bridge:
        return {
            c.id: (dict(c.credentials), tuple(c.webhook_secrets))
            for c in await bridge.connections.all(include_removed=True)
        }


async def test_rotation_moves_every_secret_to_the_new_key(database_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    async with open_bridge(_settings(database_url, old), with_thred=False) as bridge:
        added = [await bridge.connections.add(_new(n)) for n in range(4)]
        await bridge.connections.remove(added[0].id)  # a removed connection's secrets are rotated too
    before = await _contents(_settings(database_url, old))

    async with open_bridge(_settings(database_url, new, old), with_thred=False) as bridge:
        assert {c.id for c in await bridge.connections.all()} == {c.id for c in added[1:]}, "both keys read"
        done = await bridge.connections.rotate_secrets()
        assert (done.rotated, done.current, done.changed_meanwhile, done.done) == (4, 0, 0, True)
        again = await bridge.connections.rotate_secrets()
        assert (again.rotated, again.current) == (0, 4), "a second run has nothing to do"

    assert await _contents(_settings(database_url, new)) == before, "the new key alone reads everything"
    with pytest.raises(ConfigError, match="BRIDGE_PREVIOUS_SECRET_KEYS"):
        await _contents(_settings(database_url, old))


async def test_a_rotation_stopped_half_way_is_finished_by_running_it_again(database_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    async with open_bridge(_settings(database_url, old), with_thred=False) as bridge:
        for n in range(3):
            await bridge.connections.add(_new(n))
    # a process already on the new key adds connections while the old ones wait: the state a stopped
    # rotation leaves, some rows under each key
    async with open_bridge(_settings(database_url, new, old), with_thred=False) as bridge:
        for n in range(3, 5):
            await bridge.connections.add(_new(n))
        before = await _contents(_settings(database_url, new, old))
        done = await bridge.connections.rotate_secrets()
    assert (done.rotated, done.current) == (3, 2)
    assert await _contents(_settings(database_url, new)) == before


def test_the_cli_rotates_and_the_database_file_holds_no_secret_in_clear(tmp_path: Path) -> None:
    database = tmp_path / "bridge.db"
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env = {**os.environ, "BRIDGE_DATABASE_URL": f"sqlite:///{database}", "BRIDGE_SECRET_KEY": old}
    add = [
        "connections", "add", "stripe", "--business-id", BUSINESS, "--api-key", STRIPE_KEY,
        "--webhook-secret", "whsec_inthedatabase_000000000000",
    ]  # fmt: skip
    cli = [sys.executable, "-m", "thred_bridge"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, *add], env=env, check=True, capture_output=True)
    env |= {"BRIDGE_SECRET_KEY": new, "BRIDGE_PREVIOUS_SECRET_KEYS": old}
    done = subprocess.run([*cli, "secrets", "rotate", "--json"], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {"rotated": 1, "current": 0, "changed_meanwhile": 0, "done": True}
    for output in (done.stdout, done.stderr):
        for secret in (old, new, STRIPE_KEY):
            assert secret.encode() not in output
    env.pop("BRIDGE_PREVIOUS_SECRET_KEYS")
    status = subprocess.run([*cli, "status", "--json"], env=env, capture_output=True, check=False)
    assert status.returncode == 0, status.stderr.decode()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("bridge.db"))
    for secret in (STRIPE_KEY, "whsec_inthedatabase", old, new):
        assert secret.encode() not in stored, "no secret in clear in the database file (or its WAL)"
        assert secret.encode() not in status.stdout + status.stderr
