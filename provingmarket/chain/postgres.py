"""A PostgreSQL connection that speaks the stores' SQL: the one place where the SQLite and
Postgres dialects differ.

The mirror, the auction's bids and the other stores are written in SQLite's SQL over
DB-API (`?` placeholders, `INSERT OR REPLACE`, `BEGIN IMMEDIATE`, `INTEGER`/`REAL`/`BLOB`
columns, rows read by name or position). `PostgresConnection` takes the same calls on a
psycopg 3 connection and rewrites the few forms that differ, so every store has one code
path and one list of migrations for both engines:

- placeholders: `?` becomes `%s` (and a literal `%` becomes `%%`), outside quoted text;
- `INSERT OR REPLACE INTO t (...)` becomes `INSERT ... ON CONFLICT (t's primary key) DO
  UPDATE SET` every other column of the table (those not given to their default, so the
  whole row is replaced as SQLite does); `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`;
- types: `INTEGER PRIMARY KEY AUTOINCREMENT` is `BIGSERIAL PRIMARY KEY`, `INTEGER` is
  `BIGINT` (block numbers, timestamps, sequence numbers all fit SQLite's 64 bits),
  `REAL` is `DOUBLE PRECISION` (SQLite's REAL is 8 bytes, Postgres's 4), `BLOB` is `BYTEA`,
  and a `TEXT` column is `TEXT COLLATE "C"` so that ORDER BY sorts as SQLite does (by
  bytes: checksummed addresses and hex ids come out in the same order on both);
- parameters: Python ints are sent untyped, so that Postgres types them from their
  column as SQLite's affinity does (`text_column = ?` compares text), and booleans as 0/1;
- `BEGIN IMMEDIATE`, SQLite's "the one writer from now on", is `BEGIN` followed by a
  transaction-level advisory lock on the store (`pg_advisory_xact_lock`): writers of one
  store queue for it and readers are not blocked, as with SQLite's WAL. This keeps the
  stores' read-then-write transactions correct without a retry at every call site (what
  SERIALIZABLE would need: it aborts one of two conflicting transactions, and every
  caller would have to run its block again). The transaction stays READ COMMITTED, so
  each statement after the lock sees everything the previous writer committed;
- a plain `BEGIN` (a reader's consistent view over several queries) is `BEGIN ISOLATION
  LEVEL REPEATABLE READ`: one snapshot for the whole transaction, as SQLite gives;
- rows are `Row`s: read by column name or position, and `dict(row)` as with sqlite3.Row;
  a `numeric` (SUM of integers) is read back as an int, as SQLite gives it;
- `INDEXED BY` hints are dropped, and `rowid` is Postgres's `ctid`.

Several stores share one database: each lives in a Postgres schema of its own (named by
the store's component, `mirror` or `auction_bids`, or by the URL's fragment:
`postgresql://host/db#mirror_b` for a second mirror), found through `search_path`, so the
stores' unqualified table names never meet. `PRAGMA`s are SQLite's own and are ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from provingmarket.chain.database import statements

SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str) -> bool:
    """Whether a store's target is a Postgres URL rather than a SQLite path."""
    return str(target).startswith(SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Row(tuple):
    """A row as sqlite3.Row has it: a tuple of the values, also read by column name
    (`row["task_id"]`), with `keys()` (so `dict(row)` maps names to values)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise IndexError(f"no column {key}") from None
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: Any) -> Any:
    names = [c.name for c in cursor.description] if cursor.description else []
    index = {name: i for i, name in enumerate(names)}

    def make(values: Sequence[Any]) -> Row:
        return Row(values, index)

    return make


class _UntypedInt(Dumper):
    """An int sent as untyped text: Postgres takes its type from where it is used."""

    def dump(self, obj: Any) -> bytes:
        return str(int(obj)).encode()


class _LooseNumeric(Loader):
    """numeric (what SUM of integers gives) as SQLite has it: an int, or a float."""

    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class PostgresConnection:
    """A psycopg connection taking the stores' SQLite-flavoured SQL (see the module)."""

    dialect = "postgresql"

    def __init__(
        self, url: str, schema: str, connect_timeout: int = 10, create: bool = True, readonly: bool = False
    ):
        url, _, fragment = url.partition("#")
        self.schema = fragment or schema
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.schema):
            raise ValueError(
                f"store name {self.schema!r} is not a Postgres schema name: lowercase letters, digits, _"
            )
        self.url = url
        self.where = f"{redacted(url)}#{self.schema}"
        self.connect_timeout = connect_timeout
        self.readonly = readonly
        # The store's lock: a 64-bit key of its own (advisory locks are per database).
        self.lock_key = _key(f"provingmarket.store:{self.schema}")
        self._keys: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._held: list[str] = []  # session locks (hold_exclusive), taken again on reconnecting
        self.raw = self._connect(create)

    def _connect(self, create: bool = False) -> psycopg.Connection[Any]:
        raw: psycopg.Connection[Any] = psycopg.connect(
            self.url, autocommit=True, row_factory=_rows, connect_timeout=self.connect_timeout
        )
        raw.adapters.register_dumper(int, _UntypedInt)
        raw.adapters.register_dumper(bool, _UntypedInt)
        raw.adapters.register_loader("numeric", _LooseNumeric)
        if create:
            with raw.transaction():
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
                raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        raw.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        if self.readonly:  # a reader (the explorer, a frontend on the indexer's mirror) writes nothing
            raw.execute("SET default_transaction_read_only = on")
        return raw

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, made again if the server dropped it (restarted, or a network
        cut): the statement that failed raised, in its transaction; the next one reconnects."""
        if self.raw.closed or self.raw.broken:
            with contextlib.suppress(Exception):
                self.raw.close()
            self.raw = self._connect()
            self._keys.clear()
            for role in self._held:
                if not self._take(role):
                    raise psycopg.OperationalError(
                        f"{self.where}: another process took the {role} lock while the connection was down"
                    )
        return self.raw

    # -------------------------------------------------------------- DB-API as sqlite3 has it

    @property
    def in_transaction(self) -> bool:
        status = self.raw.info.transaction_status
        return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR, TransactionStatus.ACTIVE)

    def execute(self, statement: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """Run one statement; the cursor (fetchone, fetchall, iteration, rowcount)."""
        head = " ".join(statement[:40].split()).upper().rstrip(";")
        raw = self._live()
        if head in ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"):
            cursor = raw.execute("BEGIN")
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
            return cursor
        if head in ("BEGIN", "BEGIN DEFERRED", "BEGIN TRANSACTION"):
            return raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        if head.startswith("PRAGMA"):
            return raw.execute("SELECT 1 WHERE false")
        return raw.execute(cast(Any, self._translate(statement)), _params(params))

    def executemany(self, statement: str, seq: Iterator[Any] | Sequence[Any]) -> Any:
        cursor = self._live().cursor()
        cursor.executemany(cast(Any, self._translate(statement)), [_params(p) for p in seq])
        return cursor

    def executescript(self, script: str) -> None:
        """Each statement of a script in turn (SQLite's executescript, without its COMMIT)."""
        for statement in statements(script):
            self.execute(statement)

    def hold_exclusive(self, role: str) -> bool:
        """Take the store's `role` lock for as long as this connection lives (one indexer
        per mirror); False if another connection holds it."""
        if not self._take(role):
            return False
        self._held.append(role)
        return True

    def _take(self, role: str) -> bool:
        key = _key(f"provingmarket.store:{self.schema}:{role}")
        row = self.raw.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])

    def commit(self) -> None:
        if self.in_transaction:
            self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------- the dialect

    def primary_key(self, table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A table's primary key columns, and all its columns."""
        if table not in self._keys:
            rows = self.raw.execute(
                "SELECT a.attname, COALESCE(a.attnum = ANY(i.indkey), false) AS key FROM pg_attribute a "
                "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                (table,),
            ).fetchall()
            key = tuple(r[0] for r in rows if r[1])
            if not key:
                raise psycopg.errors.UndefinedTable(f"{self.where}: table {table} has no primary key")
            self._keys[table] = (key, tuple(r[0] for r in rows))
        return self._keys[table]

    def _translate(self, statement: str) -> str:
        text = translate(statement)
        if text.startswith("\x00REPLACE "):
            table, columns, rest = text[len("\x00REPLACE ") :].split("\x00", 2)
            key, every = self.primary_key(table)
            # The whole row is replaced, as SQLite's REPLACE does: a column not given takes
            # its default (EXCLUDED holds the default for it), not the old row's value.
            others = [c for c in every if c not in key]
            action = (
                "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
                if others
                else "DO NOTHING"
            )
            return f"INSERT INTO {table} ({columns}) {rest} ON CONFLICT ({', '.join(key)}) {action}"
        if re.match(r"\s*(CREATE|DROP|ALTER)\b", statement, re.I):
            self._keys.clear()
        return text


def _key(name: str) -> int:
    """A 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _params(params: Any) -> Any:
    if isinstance(params, Mapping):
        return dict(params)
    return tuple(params)


_REPLACE = re.compile(r"\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*(.*)", re.I | re.S)
_IGNORE = re.compile(r"\s*INSERT\s+OR\s+IGNORE\s+INTO\s+(.*)", re.I | re.S)
_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bIFNULL\s*\(", re.I), "COALESCE("),
    (re.compile(r"\s+INDEXED\s+BY\s+\w+", re.I), ""),  # an index hint: Postgres's planner chooses
    (re.compile(r"\browid\b", re.I), "ctid"),  # a row's own address
]
_DDL_TEXT = re.compile(r"\bTEXT\b", re.I)
_IS_DDL = re.compile(r"\s*(CREATE\s+TABLE|ALTER\s+TABLE)\b", re.I)


@lru_cache(maxsize=2048)
def translate(statement: str) -> str:
    """A statement in Postgres's SQL. `INSERT OR REPLACE` comes back as a marker the
    connection completes with the table's primary key."""
    parts = _split_quoted(statement)
    ddl = bool(_IS_DDL.match(statement))
    out = []
    for quoted, part in parts:
        if quoted:
            out.append(part.replace("%", "%%"))
            continue
        part = part.replace("%", "%%").replace("?", "%s")
        for pattern, replacement in _TYPES:
            part = pattern.sub(replacement, part)
        if ddl:
            part = _DDL_TEXT.sub('TEXT COLLATE "C"', part)
        out.append(part)
    text = "".join(out)
    replace = _REPLACE.match(text)
    if replace:
        return (
            f"\x00REPLACE {replace.group(1)}\x00{replace.group(2)}\x00{replace.group(3).rstrip().rstrip(';')}"
        )
    ignore = _IGNORE.match(text)
    if ignore:
        return f"INSERT INTO {ignore.group(1).rstrip().rstrip(';')} ON CONFLICT DO NOTHING"
    return text


def _split_quoted(statement: str) -> list[tuple[bool, str]]:
    """The statement in runs of quoted ('text', "name") and unquoted SQL, comments left out."""
    parts: list[tuple[bool, str]] = []
    i, start, n = 0, 0, len(statement)
    while i < n:
        ch = statement[i]
        if statement.startswith("--", i):
            if i > start:
                parts.append((False, statement[start:i]))
            end = statement.find("\n", i)
            i = start = n if end < 0 else end
            continue
        if ch in "'\"":
            if i > start:
                parts.append((False, statement[start:i]))
            j = i + 1
            while j < n:
                if statement[j] == ch:
                    if j + 1 < n and statement[j + 1] == ch:  # '' inside a string
                        j += 2
                        continue
                    break
                j += 1
            parts.append((True, statement[i : j + 1]))
            i = start = j + 1
            continue
        i += 1
    if start < n:
        parts.append((False, statement[start:]))
    return parts
