"""Database plumbing shared by the mirror, the outbox and the other stores: opening a file so
that no commit is lost, a write transaction, SQL for a row's key, and versioned stores
(schema migrations and the chain a file belongs to).

A store is a SQLite file by default; the mirror and the auction's bids may instead be
given a `postgresql://` URL (`open_database`), a schema of their own in a shared
database. Both are used through the same DB-API calls and SQL: what differs between the
engines is in provingmarket/chain/postgres.py alone."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from provingmarket.chain.identity import ChainIdentity
from provingmarket.errors import ProvingMarketError

if TYPE_CHECKING:
    from provingmarket.chain.postgres import PostgresConnection

# A store's connection: sqlite3's, or one to Postgres taking the same calls and SQL.
Connection: TypeAlias = "sqlite3.Connection | PostgresConnection"


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


def is_url(target: str) -> bool:
    """Whether a store's target is a Postgres URL (`postgresql://...`) rather than a path."""
    return str(target).startswith(("postgresql://", "postgres://"))


def open_database(target: str, component: str, threads: bool = False, readonly: bool = False) -> Connection:
    """A store's connection: the SQLite file at `target` (as `connect`), or, for a
    `postgresql://` URL, the Postgres schema named `component` in that database (or the
    URL's `#fragment`), created if missing; `readonly` (Postgres): a reader's, creating
    nothing and refusing to write."""
    if is_url(target):
        from provingmarket.chain.postgres import PostgresConnection

        try:
            return PostgresConnection(target, component, create=not readonly, readonly=readonly)
        except ValueError as error:
            raise StoreError(str(error)) from None
        except Exception as error:
            if is_database_error(error):
                reason = " ".join(str(error).split())  # psycopg's message spans lines
                raise StoreError(
                    f"cannot open {describe(target)}: {reason}; check the URL and that the server is up"
                ) from None
            raise
    return connect(target, threads)


def describe(target: str) -> str:
    """A store's target for messages and logs: a path, or a URL without its password."""
    if is_url(target):
        from provingmarket.chain.postgres import redacted

        return redacted(target)
    return target


def is_integrity_error(error: BaseException) -> bool:
    """A constraint refused a write (a duplicate key), on either engine."""
    if isinstance(error, sqlite3.IntegrityError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.IntegrityError)


def is_database_error(error: BaseException) -> bool:
    """The database refused or failed (not the caller's own exception), on either engine."""
    if isinstance(error, sqlite3.DatabaseError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.DatabaseError)


def is_refused_value(error: BaseException) -> bool:
    """Postgres refused a value (out of its column's range): what SQLite's driver refuses
    before the database sees it (an OverflowError), not a failure of the database."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.DataError)


def server_gone(error: BaseException) -> bool:
    """The database server dropped the connection or cannot be reached (restarting, the
    network): a wait, not a fault of the query."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.OperationalError)


def is_unavailable(error: BaseException) -> bool:
    """The database cannot be read as it is (not there yet, its tables not created, its
    server gone), as opposed to a query it refused."""
    if isinstance(error, sqlite3.OperationalError):
        return True
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return False
    return isinstance(error, psycopg.OperationalError) or getattr(error, "sqlstate", None) in (
        "42P01",  # undefined table
        "3F000",  # undefined schema
    )


@contextmanager
def transaction(db: Connection) -> Iterator[None]:
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


def fetch(db: Connection, table: str, key: Mapping[str, Any]) -> dict | None:
    """The row of `table` with this key, or None."""
    row = db.execute(f"SELECT * FROM {table} WHERE {matching(key)}", tuple(key.values())).fetchone()
    return dict(row) if row is not None else None


# ------------------------------------------------------------------ versioned stores
#
# Every file the project keeps (the mirror, the outbox, the auction's bids, the agent's
# jobs) carries `store_meta`: what it is (`component`), the schema version it was last
# written by, and the chain it belongs to. A file written by an older version is brought up
# to date by its migrations, in order, each in one transaction; a file from a newer version,
# of another component or of another chain is refused with one line saying so.


class StoreError(ProvingMarketError, RuntimeError):
    """A database file this code cannot use as it is; the message says why and what to do."""


Migration = str | Callable[[Any], None]

STORE_META = "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def store_meta(db: Connection) -> dict[str, str]:
    db.execute(STORE_META)
    return {row[0]: row[1] for row in db.execute("SELECT key, value FROM store_meta")}


def set_store_meta(db: Connection, values: Mapping[str, Any]) -> None:
    db.executemany(
        "INSERT INTO store_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(k, str(v)) for k, v in values.items()],
    )


def migrate(db: Connection, component: str, migrations: Sequence[Migration], path: str = "") -> int:
    """Bring `db` to version `len(migrations)`: migration i (0-based) takes a file from
    version i to i + 1 (SQL run as a script, or a function given the connection), each in
    its own transaction with the version written in it, so a crash leaves a whole version.
    A file with no `store_meta` is version 0 (new, or written before versions existed:
    the first migration must accept both, `CREATE TABLE IF NOT EXISTS`). Returns the
    version the file was at."""
    where = path or component
    meta = store_meta(db)
    if meta.get("component", component) != component:
        raise StoreError(f"{where} is a {meta['component']} file, not a {component} file; give another path")
    try:
        found = int(meta.get("schema_version", "0"))
    except ValueError:
        raise StoreError(f"{where}: schema version {meta.get('schema_version')!r} is not a number") from None
    target = len(migrations)
    if found > target:
        raise StoreError(
            f"{where} was written by a newer version (schema {found}; this one reads up to {target}); "
            "upgrade the software, or point it at another file"
        )
    for version in range(found, target):
        step = migrations[version]
        with transaction(db):
            if callable(step):
                step(db)
            else:
                for statement in statements(step):
                    db.execute(statement)
            set_store_meta(db, {"component": component, "schema_version": version + 1})
    if found == target and "component" not in meta:
        set_store_meta(db, {"component": component, "schema_version": target})
    return found


def statements(script: str) -> list[str]:
    """A script's statements, for running one at a time inside a transaction (SQLite's
    executescript commits; Postgres takes one statement per call); statements that are only
    comments are left out."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if current.strip():
        found.append(current.strip())
    return [s for s in found if re.sub(r"--[^\n]*", "", s).rstrip(";").strip()]


def bind_chain(db: Connection, identity: ChainIdentity, path: str, hint: str = "") -> None:
    """Record the chain `db` belongs to on first use; afterwards refuse (`WrongChain`) an
    identity that differs, so what the file holds (signed transactions, bids) is never
    used on another chain. Fields the file did not know yet (a deployment block hash) are
    filled in."""
    meta = store_meta(db)
    if "chain" in meta:
        recorded = ChainIdentity.from_dict(json.loads(meta["chain"]))
        recorded.check(
            identity, path, hint or "point it at the node it was made on, or use another data directory"
        )
        merged = {k: v or getattr(recorded, k) for k, v in identity.to_dict().items()}
        if merged != recorded.to_dict():
            set_store_meta(db, {"chain": json.dumps(merged)})
        return
    set_store_meta(db, {"chain": json.dumps(identity.to_dict())})


def chain_of(db: Connection) -> ChainIdentity | None:
    meta = store_meta(db)
    return ChainIdentity.from_dict(json.loads(meta["chain"])) if "chain" in meta else None
