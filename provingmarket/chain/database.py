"""SQLite plumbing shared by the mirror and the outbox (a keeper keeps both in one file):
opening a file so that no commit is lost, a write transaction, and SQL for a row's key."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def connect(path: str, threads: bool = False) -> sqlite3.Connection:
    """Open a database: autocommit unless a transaction is begun, write-ahead log for a
    file (readers do not block the writer), every commit synced to disk, rows read by
    column name. With `threads`, other threads may use it (the caller holds a lock)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=not threads)
    db.row_factory = sqlite3.Row
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: committed whole, or rolled back if the block raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def marks(values: Collection[Any]) -> str:
    """The `?` placeholders for `values`: `?, ?, ?`."""
    return ", ".join("?" for _ in values)


def matching(key: Mapping[str, Any]) -> str:
    """The WHERE condition for a row's key (its values, in order, are the parameters)."""
    return " AND ".join(f"{column} = ?" for column in key)


def fetch(db: sqlite3.Connection, table: str, key: Mapping[str, Any]) -> dict | None:
    """The row of `table` with this key, or None."""
    row = db.execute(f"SELECT * FROM {table} WHERE {matching(key)}", tuple(key.values())).fetchone()
    return dict(row) if row is not None else None
