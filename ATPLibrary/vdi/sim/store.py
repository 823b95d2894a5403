"""The simulator's persistent state: one SQLite table per kind of object, each row a JSON document.

Documents hold the spec's field names; keys starting with ``_`` are internal (NICs, SPICE data …) and are never
sent.  All access goes through one connection guarded by a lock, so the store is safe to use from the server's
request threads and the transition timers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

KINDS = ("hosts", "domains", "pools", "users", "groups", "events")


def new_id() -> str:
    return uuid.uuid4().hex


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without internal keys."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        for kind in KINDS:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {kind} (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, doc TEXT)"
            )

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group several reads and writes atomically (re-entrant)."""
        with self._lock:
            yield self

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._db.execute(
                f"INSERT INTO {kind} (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (doc["id"], json.dumps(doc, ensure_ascii=False)),
            )
        return doc

    def get(self, kind: str, id_: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(f"SELECT doc FROM {kind} WHERE id = ?", (id_,)).fetchone()
        return json.loads(row[0]) if row else None

    def update(self, kind: str, id_: str, **fields: Any) -> dict[str, Any] | None:
        with self._lock:
            doc = self.get(kind, id_)
            if doc is None:
                return None
            doc.update(fields)
            return self.put(kind, doc)

    def delete(self, kind: str, id_: str) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM {kind} WHERE id = ?", (id_,))

    def query(
        self, kind: str, where: dict[str, Any] | None = None, *, keyword: str | None = None
    ) -> list[dict[str, Any]]:
        """Documents in creation order whose fields equal ``where`` (string-compared) and whose name has ``keyword``."""
        sql, args = f"SELECT doc FROM {kind}", []
        clauses = []
        for field, value in (where or {}).items():
            clauses.append(f"CAST(json_extract(doc, '$.{field}') AS TEXT) = ?")
            args.append(str(value))
        if keyword:
            clauses.append("instr(lower(json_extract(doc, '$.name')), lower(?)) > 0")
            args.append(keyword)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [json.loads(r[0]) for r in rows]
