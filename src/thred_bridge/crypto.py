"""Encryption of stored processor credentials (Fernet, key from BRIDGE_SECRET_KEY).

A key may be a Fernet key (44 url-safe base64 characters) or any passphrase of at least 16
characters, from which a key is derived with SHA-256. On a local (non-production) run with no
key, one is generated beside the SQLite database, readable by its owner only.

Key rotation: new secrets are always encrypted under BRIDGE_SECRET_KEY; what was stored under an older
key (listed in BRIDGE_PREVIOUS_SECRET_KEYS) still decrypts (MultiFernet) until ``secrets rotate`` has
re-encrypted it under the current one.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from thred_bridge.errors import ConfigError

KEY_FILE_NAME = ".bridge-secret-key"


class Vault:
    """Encrypts small secrets under the current key and decrypts them under it or any ``previous`` one.
    Its repr never shows a key, nor does any error it raises."""

    def __init__(self, key: str, previous: Sequence[str] = ()) -> None:
        self._current = Fernet(_as_fernet_key(key))
        self._any = MultiFernet([self._current, *(Fernet(_as_fernet_key(k)) for k in previous)])

    def encrypt(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._any.decrypt(token.encode()).decode()
        except InvalidToken:
            raise _undecryptable() from None

    def rotate(self, token: str) -> str | None:
        """``token`` re-encrypted under the current key, or None when it is under the current key already."""
        try:
            self._current.decrypt(token.encode())
            return None
        except InvalidToken:
            pass
        try:
            return self._any.rotate(token.encode()).decode()
        except InvalidToken:
            raise _undecryptable() from None

    def __repr__(self) -> str:
        return "Vault(<key hidden>)"


def _undecryptable() -> ConfigError:
    return ConfigError(
        "stored credentials cannot be decrypted: they were saved under a key that is neither BRIDGE_SECRET_KEY "
        "nor one of BRIDGE_PREVIOUS_SECRET_KEYS"
    )


def previous_keys(listed: str | None) -> list[str]:
    """BRIDGE_PREVIOUS_SECRET_KEYS: comma-separated keys (or passphrases) that still decrypt."""
    return [k.strip() for k in (listed or "").split(",") if k.strip()]


def _as_fernet_key(key: str) -> bytes:
    raw = key.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32 and len(raw) == 44:
            return raw
    except ValueError:
        pass
    if len(raw) < 16:
        raise ConfigError("BRIDGE_SECRET_KEY must be a Fernet key or a passphrase of at least 16 characters")
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def local_key(directory: Path) -> str:
    """The generated key for a local database in ``directory``; created (mode 0600) on first use."""
    path = directory / KEY_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
