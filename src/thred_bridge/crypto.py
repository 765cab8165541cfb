"""Encryption of stored processor credentials (Fernet, key from BRIDGE_SECRET_KEY).

A key may be a Fernet key (44 url-safe base64 characters) or any passphrase of at least 16
characters, from which a key is derived with SHA-256. On a local (non-production) run with no
key, one is generated beside the SQLite database, readable by its owner only.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from thred_bridge.errors import ConfigError

KEY_FILE_NAME = ".bridge-secret-key"


class Vault:
    """Encrypts and decrypts small secrets. Its repr never shows the key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(_as_fernet_key(key))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError(
                "stored credentials cannot be decrypted: BRIDGE_SECRET_KEY is not the key they were saved with"
            ) from exc

    def __repr__(self) -> str:
        return "Vault(<key hidden>)"


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
