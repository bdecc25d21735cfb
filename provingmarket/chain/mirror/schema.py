"""What the mirror's database (a SQLite file, or a Postgres schema) holds, and how values are stored in it.

- **Journal and derived tables.** Every event applied is kept in `journal` (block, log
  index, block hash, tx, name, task id, args as JSON, and the block's timestamp: the
  explorer's timelines and rates read it). The registry's state is kept in
  derived tables, updated as each event is applied: `markets`, `mechanisms`, `frontends`,
  `provers` (stake, locked, unbonding, signature nonce), `balances` (credited, withdrawable),
  `memberships` (capacity, used, ask, proving time, capabilities, joined), `accepts`
  (mechanisms a member accepts), `tasks` (full terms, prover input, input URI), `slots`
  (one row per redundancy slot: open / assigned / proven / closed, who holds it, and
  whether a prover declined or was slashed on it), `assignments` (one row per prover that
  took part in a task: live / proven / declined / slashed / voided) and
  `skipped_assignments` (AssignmentSkipped with its reason). Every derived row records
  the block of its last change (`block`). The built-in mechanisms (OPEN_RACE, DUTCH)
  emit no MechanismRegistered and are not in `mechanisms`.
- **Bookkeeping.** `meta` holds the schema version, the registry and chain mirrored, the
  start block and the cursor; `block_hashes` the hashes of the last applied blocks; `undo`
  what each derived-table write replaced (see `tables.py`).
- **Versions.** A file written by another schema version is rebuilt, never migrated:
  `open_meta` drops the mirror's own tables (nothing else in the file: `store_meta` and the
  chain it records stay), logs one `mirror.rebuild` line, and the next sync fills them
  again from the start block. The mirror is the one file of a process that the chain can
  give back; the outbox, bids and agent rows live in files of their own.
- **Values.** Amounts are decimal TEXT (SQLite integers stop at 2**63); task ids and
  hashes 0x-hex TEXT; JSON (terms, journal args, undo entries) keeps bytes as
  {"$b": hex}, so a restored row gets its BLOBs back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from eth_utils.address import to_checksum_address

from provingmarket.chain.database import Connection, open_database
from provingmarket.errors import ProvingMarketError
from provingmarket.formats import TaskTerms

log = logging.getLogger("provingmarket.chain.mirror")

SCHEMA_VERSION = "4"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS block_hashes (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    block INTEGER NOT NULL, log_index INTEGER NOT NULL, block_hash TEXT NOT NULL, tx TEXT NOT NULL,
    name TEXT NOT NULL, task_id TEXT, args TEXT NOT NULL, time INTEGER NOT NULL,
    PRIMARY KEY (block, log_index));
CREATE INDEX IF NOT EXISTS journal_task ON journal (task_id);
CREATE INDEX IF NOT EXISTS journal_name ON journal (name, block);
CREATE TABLE IF NOT EXISTS undo (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, block INTEGER NOT NULL, tbl TEXT NOT NULL,
    key TEXT NOT NULL, old TEXT);
CREATE INDEX IF NOT EXISTS undo_block ON undo (block);

CREATE TABLE IF NOT EXISTS markets (
    market_id INTEGER PRIMARY KEY, creator TEXT, verifier TEXT, codehash TEXT, binding INTEGER,
    address_input INTEGER, min_collateral TEXT, min_reward TEXT, grace_period INTEGER,
    requester_bps INTEGER, caller_bps INTEGER, paused INTEGER, custom INTEGER, block INTEGER);
CREATE TABLE IF NOT EXISTS mechanisms (
    mechanism_id INTEGER PRIMARY KEY, registrant TEXT, name TEXT, retired INTEGER, block INTEGER);
CREATE TABLE IF NOT EXISTS frontends (
    mechanism_id INTEGER, frontend TEXT, block INTEGER, PRIMARY KEY (mechanism_id, frontend));
CREATE TABLE IF NOT EXISTS provers (
    prover TEXT PRIMARY KEY, stake TEXT, locked TEXT, unbonding TEXT, unbonding_ready_at TEXT,
    nonce TEXT, block INTEGER);
CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, amount TEXT, block INTEGER);
CREATE TABLE IF NOT EXISTS memberships (
    prover TEXT, market_id INTEGER, joined INTEGER, capacity INTEGER, used INTEGER, ask TEXT,
    proving_time INTEGER, capabilities TEXT, since INTEGER, block INTEGER,
    PRIMARY KEY (prover, market_id));
CREATE TABLE IF NOT EXISTS accepts (
    prover TEXT, market_id INTEGER, mechanism_id INTEGER, block INTEGER,
    PRIMARY KEY (prover, market_id, mechanism_id));
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, market_id INTEGER, mechanism_id INTEGER, requester TEXT, terms TEXT,
    prover_input BLOB, input_uri TEXT, redundancy INTEGER, posted_block INTEGER, tx TEXT,
    block INTEGER);
CREATE INDEX IF NOT EXISTS tasks_posted ON tasks (posted_block);
CREATE INDEX IF NOT EXISTS tasks_market ON tasks (market_id, posted_block);
CREATE TABLE IF NOT EXISTS slots (
    task_id TEXT, slot INTEGER, state TEXT, recorded INTEGER, prover TEXT, price TEXT,
    deadline TEXT, frontend TEXT, proven_block INTEGER, block INTEGER, PRIMARY KEY (task_id, slot));
CREATE INDEX IF NOT EXISTS slots_state ON slots (state, task_id);
CREATE TABLE IF NOT EXISTS assignments (
    task_id TEXT, prover TEXT, slot INTEGER, price TEXT, deadline TEXT, frontend TEXT, state TEXT,
    assigned_block INTEGER, block INTEGER, PRIMARY KEY (task_id, prover));
CREATE INDEX IF NOT EXISTS assignments_state ON assignments (state, prover);
CREATE INDEX IF NOT EXISTS assignments_prover ON assignments (prover, assigned_block);
CREATE TABLE IF NOT EXISTS skipped_assignments (
    block INTEGER, log_index INTEGER, task_id TEXT, prover TEXT, frontend TEXT, reason TEXT,
    tx TEXT, PRIMARY KEY (block, log_index));
CREATE INDEX IF NOT EXISTS skipped_task ON skipped_assignments (task_id);
"""

# The derived tables and their keys: what a rollback restores and a reset clears.
KEYS: dict[str, tuple[str, ...]] = {
    "markets": ("market_id",),
    "mechanisms": ("mechanism_id",),
    "frontends": ("mechanism_id", "frontend"),
    "provers": ("prover",),
    "balances": ("account",),
    "memberships": ("prover", "market_id"),
    "accepts": ("prover", "market_id", "mechanism_id"),
    "tasks": ("task_id",),
    "slots": ("task_id", "slot"),
    "assignments": ("task_id", "prover"),
    "skipped_assignments": ("block", "log_index"),
}

# Slot states (the registry's slot words: open, hash|3 assigned, block<<2|2 proven, 2 closed).
OPEN, ASSIGNED, PROVEN, CLOSED = "open", "assigned", "proven", "closed"
# Assignment states: what became of a prover's part in a task.
LIVE, DECLINED, SLASHED, VOIDED = "live", "declined", "slashed", "voided"


class MirrorError(ProvingMarketError, RuntimeError):
    """The mirror cannot go on as asked (another registry's file, for one)."""


COMPONENT = "mirror"  # the Postgres schema a shared mirror lives in (unless its URL names one)


def open_file(path: str) -> Connection:
    """The mirror's database (a SQLite path, or a `postgresql://` URL), its tables
    created if they are not there yet."""
    db = open_database(path, COMPONENT)
    db.executescript(SCHEMA)
    return db


def read_meta(db: Connection) -> dict[str, str | None]:
    return {r["key"]: r["value"] for r in db.execute("SELECT key, value FROM meta")}


def meta_block(meta: Mapping[str, str | None], key: str) -> int:
    """A block number every mirror file's `meta` holds (start_block, cursor_block)."""
    value = meta.get(key)
    if value is None:
        raise MirrorError(f"the mirror file has no {key}; delete it and it is rebuilt from the chain")
    return int(value)


def write_meta(db: Connection, values: Mapping[str, str | None]) -> None:
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))


def rebuild(db: Connection, path: str, found: str | None) -> None:
    """Drop the mirror's tables (and only those) and create them afresh, empty."""
    for table in (*KEYS, "journal", "undo", "block_hashes", "meta"):
        db.execute(f"DROP TABLE IF EXISTS {table}")
    db.executescript(SCHEMA)
    log.warning(
        json.dumps(
            {
                "event": "mirror.rebuild",
                "path": path,
                "schema": found,
                "to_schema": SCHEMA_VERSION,
                "reason": "written by another version of the mirror: rebuilt from the chain",
            }
        )
    )


def open_meta(
    db: Connection, path: str, registry: str, chain_id: str, start_block: int
) -> dict[str, str | None]:
    """The file's `meta`, written for a new file (its cursor just before `start_block`).
    A file of another schema version is rebuilt (`rebuild`); one of another registry or
    chain raises `MirrorError`."""
    meta = read_meta(db)
    if meta and meta.get("schema") != SCHEMA_VERSION:
        rebuild(db, path, meta.get("schema"))
        meta = {}
    if not meta:
        write_meta(
            db,
            {
                "schema": SCHEMA_VERSION,
                "registry": registry,
                "chain_id": chain_id,
                "start_block": str(start_block),
                "cursor_block": str(start_block - 1),
                "cursor_hash": None,
            },
        )
        meta = read_meta(db)
    if meta.get("registry") != registry or meta.get("chain_id") != chain_id:
        raise MirrorError(
            f"{path} mirrors registry {meta.get('registry')} on chain {meta.get('chain_id')}, "
            f"not {registry} on chain {chain_id}: use another file"
        )
    return meta


def new_prover(prover: str) -> dict[str, str]:
    """The `provers` row of a prover no event has mentioned yet: all zero."""
    return {
        "prover": prover,
        "stake": "0",
        "locked": "0",
        "unbonding": "0",
        "unbonding_ready_at": "0",
        "nonce": "0",
    }


# ------------------------------------------------------------------ values


def checksum(value: Any) -> str:
    """A checksummed address from a string or anything with an `.address` (an ape account)."""
    return to_checksum_address(getattr(value, "address", value))


def hex_id(value: Any) -> str:
    """A task id or hash as stored: lowercase 0x-hex, from bytes or a hex string."""
    if isinstance(value, str):
        return "0x" + value.removeprefix("0x").lower()
    return "0x" + bytes(value).hex()


def optional_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def dumps(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":"))


def loads(text: str) -> Any:
    return _revive(json.loads(text))


def terms_from(text: str) -> TaskTerms:
    """A task's terms from their stored JSON."""
    return TaskTerms.from_event(loads(text))


def _plain(value: Any) -> Any:
    """JSON-ready: bytes as {"$b": hex} (so undo entries restore BLOBs), mappings as dicts."""
    if isinstance(value, (bytes, bytearray)):
        return {"$b": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _revive(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b"}:
            return bytes.fromhex(value["$b"])
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value
