"""The sandbox's document store: JSON records in memory, mirrored to SQLite when given a file.

Every record is a JSON object with an ``"id"``, filed under a *kind* (``"customer"``, ``"token"``, …) and a
*scope* (the business id, or ``""`` for global kinds), with an optional unique *key* per (kind, scope) — its
``external_id``, or ``"<refund id>/<external id>"`` for refund payments, whose external ids are unique per
refund. Reads come from the in-memory copy; writes
go to both, and to disk only when the caller's :meth:`Documents.commit` runs, so a mutation that fails
half-way leaves the file untouched. Insertion order is kept (lists page in creation order) and survives a
restart: rows are reloaded by their first-insert sequence number.

Not thread-safe on its own: :class:`~thred_bridge.sandbox.books.Books` serialises access with a lock. One
process per file; two processes writing the same file would each keep a stale copy in memory.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

Doc = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    id TEXT NOT NULL,
    key TEXT,
    body TEXT NOT NULL,
    UNIQUE (kind, scope, id)
)
"""


class Documents:
    """kind → scope → id → record, with a unique-key index per (kind, scope)."""

    def __init__(self, path: str | None = None) -> None:
        self._data: dict[tuple[str, str], dict[str, Doc]] = {}
        self._keys: dict[tuple[str, str, str], str] = {}
        self._key_of: dict[tuple[str, str, str], str] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
            rows = self._db.execute("SELECT kind, scope, key, body FROM documents ORDER BY seq")
            for kind, scope, key, body in rows:
                self._remember(kind, scope, json.loads(body), key)

    def get(self, kind: str, scope: str, record_id: str) -> Doc | None:
        return self._data.get((kind, scope), {}).get(record_id)

    def by_key(self, kind: str, scope: str, key: str) -> Doc | None:
        record_id = self._keys.get((kind, scope, key))
        return None if record_id is None else self.get(kind, scope, record_id)

    def scan(self, kind: str, scope: str) -> list[Doc]:
        """Every record of ``kind`` in ``scope``, oldest first."""
        return list(self._data.get((kind, scope), {}).values())

    def scopes(self, kind: str) -> Iterator[str]:
        return (scope for (k, scope) in list(self._data) if k == kind)

    def put(self, kind: str, scope: str, doc: Doc, key: str | None = None) -> None:
        """Insert or replace ``doc`` (keeping its original position); durable at the next commit."""
        self._forget_key(kind, scope, doc["id"])
        self._remember(kind, scope, doc, key)
        if self._db is not None:
            self._db.execute(
                "INSERT INTO documents (kind, scope, id, key, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, scope, id) DO UPDATE SET key = excluded.key, body = excluded.body",
                (kind, scope, doc["id"], key, json.dumps(doc, sort_keys=True)),
            )

    def delete(self, kind: str, scope: str, record_id: str) -> None:
        self._forget_key(kind, scope, record_id)
        self._data.get((kind, scope), {}).pop(record_id, None)
        if self._db is not None:
            self._db.execute("DELETE FROM documents WHERE kind = ? AND scope = ? AND id = ?", (kind, scope, record_id))

    def commit(self) -> None:
        if self._db is not None:
            self._db.commit()

    def rollback(self) -> None:
        """Undo unsaved SQL writes. The memory copy is not rolled back: callers check before they write."""
        if self._db is not None:
            self._db.rollback()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _remember(self, kind: str, scope: str, doc: Doc, key: str | None) -> None:
        self._data.setdefault((kind, scope), {})[doc["id"]] = doc
        if key is not None:
            self._keys[(kind, scope, key)] = doc["id"]
            self._key_of[(kind, scope, doc["id"])] = key

    def _forget_key(self, kind: str, scope: str, record_id: str) -> None:
        key = self._key_of.pop((kind, scope, record_id), None)
        if key is not None:
            self._keys.pop((kind, scope, key), None)
