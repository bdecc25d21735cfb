"""Writes to the derived tables that a reorg can undo.

Each write records, in `undo`, the row it replaced (or that there was none), tagged with
the block of the event being applied; `undo_after(block)` restores every row written after
that block, newest write first. A rollback costs the writes it undoes, not a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provingmarket.chain.database import Connection, fetch, marks, matching
from provingmarket.chain.mirror.schema import dumps, loads


class Inapplicable(Exception):
    """An event that does not fit the mirrored state: skipped with a log line."""


class Tables:
    def __init__(self, db: Connection):
        self.db = db
        self.block = 0  # the block of the event being applied: undo entries and rows carry it

    def get(self, table: str, key: Mapping[str, Any]) -> dict | None:
        return fetch(self.db, table, key)

    def put(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Write a whole row (replacing any), remembering what it replaced."""
        self._record(table, key, self.get(table, key))
        self._insert(table, {**key, **values, "block": self.block})

    def update(self, table: str, key: Mapping[str, Any], **changes: Any) -> dict:
        """Change some columns of an existing row; `Inapplicable` if there is none."""
        old = self.get(table, key)
        if old is None:
            raise Inapplicable(f"no {table} row {dict(key)}")
        self._record(table, key, old)
        new = {**old, **changes, "block": self.block}
        self._insert(table, new)
        return new

    def delete(self, table: str, key: Mapping[str, Any]) -> None:
        old = self.get(table, key)
        if old is None:
            return
        self._record(table, key, old)
        self._remove(table, key)

    def undo_after(self, block: int) -> int:
        """Restore every row written after `block` (newest write first); how many writes."""
        rows = self.db.execute(
            "SELECT tbl, key, old FROM undo WHERE block > ? ORDER BY seq DESC", (block,)
        ).fetchall()
        for row in rows:
            self._remove(row["tbl"], loads(row["key"]))
            if row["old"] is not None:
                self._insert(row["tbl"], loads(row["old"]))
        self.db.execute("DELETE FROM undo WHERE block > ?", (block,))
        return len(rows)

    def _record(self, table: str, key: Mapping[str, Any], old: dict | None) -> None:
        self.db.execute(
            "INSERT INTO undo (block, tbl, key, old) VALUES (?, ?, ?, ?)",
            (self.block, table, dumps(dict(key)), None if old is None else dumps(old)),
        )

    def _insert(self, table: str, row: Mapping[str, Any]) -> None:
        columns = ", ".join(row)
        self.db.execute(
            f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks(row)})", tuple(row.values())
        )

    def _remove(self, table: str, key: Mapping[str, Any]) -> None:
        self.db.execute(f"DELETE FROM {table} WHERE {matching(key)}", tuple(key.values()))
