"""Stored-credential encryption (crypto.py): Fernet or passphrase keys, refusals, and the local key file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.crypto import KEY_FILE_NAME, Vault, local_key, previous_keys
from thred_bridge.errors import ConfigError

FERNET_KEY = Fernet.generate_key().decode()
PASSPHRASE = "correct horse battery staple"
SECRET = "sk_live_51SuperSecretApiKeyValue"


@given(st.text(max_size=2000))
def test_round_trip_with_a_fernet_key(plaintext: str) -> None:
    vault = Vault(FERNET_KEY)
    token = vault.encrypt(plaintext)
    assert vault.decrypt(token) == plaintext


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    token = Vault(FERNET_KEY).encrypt(SECRET)
    assert SECRET not in token
    assert "SuperSecret" not in token


def test_fernet_key_is_used_as_is() -> None:
    token = Vault(FERNET_KEY).encrypt(SECRET)
    assert Fernet(FERNET_KEY.encode()).decrypt(token.encode()).decode() == SECRET


def test_encryption_is_randomised() -> None:
    vault = Vault(FERNET_KEY)
    assert vault.encrypt(SECRET) != vault.encrypt(SECRET)


def test_passphrase_derives_a_stable_key() -> None:
    token = Vault(PASSPHRASE).encrypt(SECRET)
    assert Vault(PASSPHRASE).decrypt(token) == SECRET
    assert Vault(f"  {PASSPHRASE}\n").decrypt(token) == SECRET  # surrounding whitespace is not part of the key
    with pytest.raises(ConfigError):
        Vault(PASSPHRASE + "!").decrypt(token)


def test_sixteen_character_passphrase_is_enough() -> None:
    vault = Vault("p" * 16)
    assert vault.decrypt(vault.encrypt("x")) == "x"


@pytest.mark.parametrize("key", ["", "short", "p" * 15, "   " + "p" * 10 + "   "])
def test_too_short_key_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="at least 16 characters") as info:
        Vault(key)
    if key.strip():
        assert key.strip() not in str(info.value)


def test_wrong_key_names_the_setting_and_leaks_nothing() -> None:
    token = Vault(FERNET_KEY).encrypt(SECRET)
    other = Fernet.generate_key().decode()
    with pytest.raises(ConfigError) as info:
        Vault(other).decrypt(token)
    message = info.value.message
    assert "BRIDGE_SECRET_KEY" in message
    for leaked in (FERNET_KEY, other, SECRET, token):
        assert leaked not in message
        assert leaked not in str(info.value)
        assert leaked not in repr(info.value)


def test_tampered_token_is_a_config_error() -> None:
    vault = Vault(FERNET_KEY)
    token = vault.encrypt(SECRET)
    with pytest.raises(ConfigError):
        vault.decrypt(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    with pytest.raises(ConfigError):
        vault.decrypt("not a token")


def test_repr_hides_the_key() -> None:
    for key in (FERNET_KEY, PASSPHRASE):
        vault = Vault(key)
        assert key not in repr(vault)
        assert key not in str(vault)
        assert repr(vault) == "Vault(<key hidden>)"


def test_local_key_is_created_once_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "nested"
    key = local_key(directory)
    path = directory / KEY_FILE_NAME
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key + "\n"
    mtime = path.stat().st_mtime_ns

    again = local_key(directory)
    assert again == key
    assert path.stat().st_mtime_ns == mtime
    # it is a usable key, and encrypts for a later process
    token = Vault(key).encrypt(SECRET)
    assert Vault(local_key(directory)).decrypt(token) == SECRET


def test_local_key_reuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text(f"  {FERNET_KEY}\n")
    assert local_key(tmp_path) == FERNET_KEY


def test_local_keys_of_two_directories_differ(tmp_path: Path) -> None:
    assert local_key(tmp_path / "a") != local_key(tmp_path / "b")


def test_local_key_never_loosens_permissions_under_a_lax_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        local_key(tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


# --- rotation ------------------------------------------------------------------------------------------


def test_a_previous_key_still_decrypts_and_new_secrets_use_the_current_one() -> None:
    old, new = FERNET_KEY, Fernet.generate_key().decode()
    stored = Vault(old).encrypt(SECRET)
    vault = Vault(new, [PASSPHRASE, old])
    assert vault.decrypt(stored) == SECRET
    assert Vault(new).decrypt(vault.encrypt(SECRET)) == SECRET, "encrypted under the current key only"


def test_rotate_re_encrypts_under_the_current_key_once() -> None:
    old, new = FERNET_KEY, Fernet.generate_key().decode()
    stored = Vault(old).encrypt(SECRET)
    vault = Vault(new, [old])
    rotated = vault.rotate(stored)
    assert rotated is not None
    assert rotated != stored
    assert Vault(new).decrypt(rotated) == SECRET, "the old key is no longer needed"
    assert vault.rotate(rotated) is None, "already under the current key"


def test_rotate_refuses_a_token_no_key_opens_and_leaks_nothing() -> None:
    stranger = Fernet.generate_key().decode()
    token = Vault(stranger).encrypt(SECRET)
    with pytest.raises(ConfigError) as info:
        Vault(FERNET_KEY, [PASSPHRASE]).rotate(token)
    assert "BRIDGE_PREVIOUS_SECRET_KEYS" in info.value.message
    for leaked in (stranger, FERNET_KEY, PASSPHRASE, SECRET, token):
        assert leaked not in str(info.value)


def test_previous_keys_are_comma_separated() -> None:
    assert previous_keys(None) == []
    assert previous_keys(f" {FERNET_KEY} ,, {PASSPHRASE}\n") == [FERNET_KEY, PASSPHRASE]
