"""A local mirror of the registry in SQLite, kept up to date from the registry's events.

Keepers and mechanisms read the registry's state from here (`Mirror.snapshot()` and the
queries beside it) instead of calling the chain for every task and prover; `sync()`
brings it up to the chain's head less `confirmations` blocks.

    mirror = Mirror("mirror.sqlite", RegistryClient.connect(url, registry), start_block, confirmations=2)
    mirror.sync()                     # read and apply what happened since the last sync
    snap = mirror.snapshot(now=ts)    # open tasks, memberships, provers, live assignments

Design
------
- **Journal and derived tables.** Every event applied is kept in `journal` (block, log
  index, block hash, tx, name, task id, args as JSON). The registry's state is kept in
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
- **Exact state, no chain reads.** Every change of a prover's stake word is in an event:
  `Staked` carries the new total, `Unstaked` the amount and the new unbonding total and
  time, `TaskAssigned` locks the task's collateral (the terms from `TaskPosted`),
  `TaskProven` (assigned tasks), `TaskDeclined`, `AssignmentVoided` unlock it, `Slashed`
  unlocks and takes it. So free stake (`stake - locked`) is mirrored exactly from events,
  as are capacity use and credited balances (`TaskProven` paid/fee/refund, `Slashed`
  shares, `SlotsClosed` refunds, `AssignmentVoided` refunds the slot's escrow,
  `Withdrawn` empties). This holds when the mirror starts at or before the registry's
  deployment block (the default: the client's `from_block`); started later, it lacks
  what happened before and skips, with a log line, events about unknown tasks.
- **Cursor.** The last applied block's number and hash are kept in `meta`, written in the
  same SQLite transaction as the events of the block range read: a crash leaves either
  the whole range applied or none of it, and a new `Mirror` on the same file resumes
  from the cursor, backfilling what happened while it was down. Ranges are bounded
  (`batch_blocks`, 2,000 by default; a range the node refuses as too wide is halved; any
  other RPC or database error ends the sync with nothing of the range written).
- **Reorgs: an undo log.** Each derived-table write records the row it replaced (or that
  there was none) in `undo`, tagged with its block. The hashes of the last `keep_blocks`
  (64) applied blocks are kept in `block_hashes`. Each `sync()` first checks the stored
  hash of the cursor block against the chain; if it differs (or the block is gone), it
  finds the newest stored block whose hash still matches, undoes every write of later
  blocks in reverse order, drops their journal entries and hashes, moves the cursor there
  and syncs again. A rollback costs the writes it undoes, not a replay from the start.
  Undo entries at or below the oldest kept hash are pruned. A reorg deeper than the kept
  hashes (no stored hash matches) clears the mirror and syncs again from `start_block`.
  Each range is read consistently: the headers of its last blocks (up to `keep_blocks`,
  chained by parent hash onto the cursor) are read before the logs and the last one again
  after, and logs must carry those blocks' hashes; if the chain moved meanwhile, nothing
  is written and the sync starts over from the reorg check. (Logs of blocks older than
  that window, in a long catch-up range, are deeper than `keep_blocks + confirmations`
  and are trusted as read.)
- **Bad logs never stop it.** A log with an unknown topic, one that does not decode, or an
  event that cannot be applied to the mirrored state (a task it has never seen, a slot
  not in the state the event implies) is skipped with a log line; the rest of the range
  applies. An event's writes are undone (SQLite savepoint) if applying it fails half-way.
- **Logging.** One JSON object per line on the `provingmarket.chain.mirror` logger: `mirror.batch`
  per applied range, `mirror.reorg` per rollback, `mirror.reset` for a reorg beyond the
  kept hashes, `mirror.skip` per skipped log, `mirror.moved` when a range is re-read.

Amounts are stored as decimal TEXT (SQLite integers stop at 2**63); the read API returns
plain dataclasses with Python ints, addresses checksummed, task ids as 32 bytes.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound

from provingmarket.chain.client import Event, Market, RegistryClient
from provingmarket.formats import OPEN_RACE, ZERO_ADDRESS, TaskTerms

log = logging.getLogger("provingmarket.chain.mirror")

KEEP_BLOCKS = 64  # block hashes kept to find where a reorg forked
BATCH_BLOCKS = 2_000  # blocks per eth_getLogs
SCHEMA_VERSION = "3"
# How nodes say a log query is too wide: block range or result count over their limit.
_TOO_WIDE = re.compile(r"range|too many|too large|more than|exceed|limit|size", re.IGNORECASE)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS block_hashes (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    block INTEGER NOT NULL, log_index INTEGER NOT NULL, block_hash TEXT NOT NULL, tx TEXT NOT NULL,
    name TEXT NOT NULL, task_id TEXT, args TEXT NOT NULL, PRIMARY KEY (block, log_index));
CREATE INDEX IF NOT EXISTS journal_task ON journal (task_id);
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
CREATE TABLE IF NOT EXISTS slots (
    task_id TEXT, slot INTEGER, state TEXT, recorded INTEGER, prover TEXT, price TEXT,
    deadline TEXT, frontend TEXT, proven_block INTEGER, block INTEGER, PRIMARY KEY (task_id, slot));
CREATE INDEX IF NOT EXISTS slots_state ON slots (state, task_id);
CREATE TABLE IF NOT EXISTS assignments (
    task_id TEXT, prover TEXT, slot INTEGER, price TEXT, deadline TEXT, frontend TEXT, state TEXT,
    assigned_block INTEGER, block INTEGER, PRIMARY KEY (task_id, prover));
CREATE INDEX IF NOT EXISTS assignments_state ON assignments (state, prover);
CREATE TABLE IF NOT EXISTS skipped_assignments (
    block INTEGER, log_index INTEGER, task_id TEXT, prover TEXT, frontend TEXT, reason TEXT,
    tx TEXT, PRIMARY KEY (block, log_index));
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


class MirrorError(RuntimeError):
    """The mirror cannot go on as asked (another registry's file, for one)."""


class Inapplicable(Exception):
    """An event that does not fit the mirrored state: skipped with a log line."""


class _ChainMoved(Exception):
    """The chain changed while a range was read: nothing written, read again."""


# ------------------------------------------------------------------ read API


@dataclass(frozen=True)
class MechanismView:
    mechanism_id: int
    registrant: str
    name: str
    retired: bool
    frontends: tuple[str, ...]


@dataclass(frozen=True)
class ProverView:
    """A prover's money as the registry's `standing()` reports it (`balance` is what it
    may withdraw: earnings and any credits)."""

    prover: str
    stake: int
    locked: int
    unbonding: int
    unbonding_ready_at: int
    balance: int
    nonce: int

    @property
    def free(self) -> int:
        return self.stake - self.locked


@dataclass(frozen=True)
class MembershipView:
    prover: str
    market_id: int
    capacity: int
    used: int
    ask: int
    proving_time: int
    capabilities: int
    mechanisms: tuple[int, ...]  # mechanisms it accepts in this market (since it last joined)
    # When its offer was last set (joined or updated): block << 32 | log index; an
    # increasing key for time priority among equal asks.
    since: int = 0

    @property
    def free_capacity(self) -> int:
        return max(self.capacity - self.used, 0)

    def accepts(self, mechanism_id: int) -> bool:
        return mechanism_id in self.mechanisms


@dataclass(frozen=True)
class SlotView:
    slot: int
    state: str  # open, assigned, proven, closed
    recorded: bool  # open again after a prover declined or was slashed on it
    prover: str | None  # assigned: the holder; proven: the prover paid
    price: int | None
    deadline: int | None
    frontend: str | None


@dataclass(frozen=True)
class AssignmentView:
    task_id: bytes
    market_id: int
    prover: str
    slot: int
    price: int
    deadline: int
    frontend: str
    collateral: int
    state: str  # live, proven, declined, slashed, voided
    assigned_block: int
    terms: TaskTerms


@dataclass(frozen=True)
class TaskView:
    task_id: bytes
    terms: TaskTerms
    prover_input: bytes
    input_uri: str
    posted_block: int
    slots: tuple[SlotView, ...]
    engaged: frozenset[str]  # every prover that was assigned or proved, whatever came of it
    barred: frozenset[str]  # declined or slashed: the registry refuses them this task

    def count(self, state: str) -> int:
        return sum(1 for s in self.slots if s.state == state)

    @property
    def open(self) -> int:
        return self.count(OPEN)

    @property
    def assigned(self) -> int:
        return self.count(ASSIGNED)

    @property
    def proven(self) -> int:
        return self.count(PROVEN)

    @property
    def closed(self) -> int:
        return self.count(CLOSED)

    @property
    def on_task(self) -> frozenset[str]:
        """Provers holding or having proved a slot (or voided): none may take another."""
        return self.engaged - self.barred

    @property
    def assignable_until(self) -> int:
        """The last timestamp a slot may be taken: the assignment window, or for an
        OPEN_RACE the race."""
        window = (
            self.terms.proving_window if self.terms.mechanism_id == OPEN_RACE else self.terms.assign_window
        )
        return self.terms.posted_at + window

    def eligible(self, prover: str) -> bool:
        """Not refused by the registry for having been on this task (capacity, stake and
        the rest are the membership's and the standing's business)."""
        return _address(prover) not in self.engaged


@dataclass(frozen=True)
class Snapshot:
    block: int  # the cursor: everything up to this block is applied
    block_hash: str | None
    markets: dict[int, Market]
    mechanisms: dict[int, MechanismView]
    provers: dict[str, ProverView]
    memberships: tuple[MembershipView, ...]  # joined ones
    open_tasks: tuple[TaskView, ...]
    live: tuple[AssignmentView, ...]

    def membership(self, prover: str, market_id: int) -> MembershipView | None:
        prover = _address(prover)
        return next((m for m in self.memberships if (m.prover, m.market_id) == (prover, market_id)), None)

    def live_of(self, prover: str) -> list[AssignmentView]:
        prover = _address(prover)
        return [a for a in self.live if a.prover == prover]


@dataclass
class SyncReport:
    from_block: int  # the cursor before
    to_block: int  # the cursor after
    applied: int = 0
    skipped: int = 0
    batches: int = 0
    reorgs: list[tuple[int, int]] = field(default_factory=list)  # (old cursor, fork block)


# ------------------------------------------------------------------ the mirror


class Mirror:
    def __init__(
        self,
        path: str,
        client: RegistryClient,
        start_block: int | None = None,
        confirmations: int = 0,
        batch_blocks: int = BATCH_BLOCKS,
        keep_blocks: int = KEEP_BLOCKS,
    ):
        if confirmations < 0 or batch_blocks < 1 or keep_blocks < 1:
            raise ValueError("confirmations >= 0, batch_blocks >= 1 and keep_blocks >= 1")
        self.path = str(path)
        self.client = client
        self.web3 = client.web3
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.keep_blocks = keep_blocks
        self._block = 0  # the block of the event being applied (undo entries, row blocks)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._open(start_block if start_block is not None else client.from_block)

    def _open(self, start_block: int) -> None:
        chain_id = str(self.web3.eth.chain_id)
        meta = self._meta()
        if not meta:
            self._write_meta(
                {
                    "schema": SCHEMA_VERSION,
                    "registry": self.client.address,
                    "chain_id": chain_id,
                    "start_block": str(start_block),
                    "cursor_block": str(start_block - 1),
                    "cursor_hash": None,
                }
            )
            meta = self._meta()
        if meta.get("schema") != SCHEMA_VERSION:
            raise MirrorError(
                f"{self.path} was written by another version of the mirror (schema {meta.get('schema')}, "
                f"this one reads {SCHEMA_VERSION}); delete it and it is rebuilt from the chain"
            )
        if meta.get("registry") != self.client.address or meta.get("chain_id") != chain_id:
            raise MirrorError(
                f"{self.path} mirrors registry {meta.get('registry')} on chain {meta.get('chain_id')}, "
                f"not {self.client.address} on chain {chain_id}: use another file"
            )
        self.start_block = int(meta["start_block"])
        self.cursor = int(meta["cursor_block"])
        self.cursor_hash = meta.get("cursor_hash")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- sync

    def sync(self, max_blocks: int | None = None, attempts: int = 5) -> SyncReport:
        """Apply the registry's events up to the head less `confirmations` (at most
        `max_blocks` blocks past the cursor), after undoing any block a reorg dropped."""
        report = SyncReport(self.cursor, self.cursor)
        for _ in range(attempts):
            try:
                self._check_reorg(report)
                target = self.web3.eth.block_number - self.confirmations
                if max_blocks is not None:
                    target = min(target, self.cursor + max_blocks)
                while self.cursor < target:
                    frm = self.cursor + 1
                    self._apply_range(frm, min(target, frm + self.batch_blocks - 1), target, report)
                break
            except _ChainMoved as moved:
                _emit(logging.INFO, "mirror.moved", cursor=self.cursor, reason=str(moved))
        else:
            _emit(
                logging.WARNING, "mirror.moved", cursor=self.cursor, reason=f"gave up after {attempts} reads"
            )
        report.to_block = self.cursor
        return report

    def _header(self, number: int) -> tuple[str, str] | None:
        """(hash, parent hash) of a block, or None if the chain has no such block."""
        try:
            block = self.web3.eth.get_block(number)
        except BlockNotFound:
            return None
        if block is None:
            return None
        return Web3.to_hex(block["hash"]), Web3.to_hex(block["parentHash"])

    def _check_reorg(self, report: SyncReport) -> None:
        if self.cursor_hash is None:
            return
        header = self._header(self.cursor)
        if header is not None and header[0] == self.cursor_hash:
            return
        stored = self.db.execute("SELECT number, hash FROM block_hashes ORDER BY number DESC").fetchall()
        for row in stored:
            found = self._header(row["number"])
            if found is not None and found[0] == row["hash"]:
                self._rollback(row["number"], row["hash"], report)
                return
        self._reset(report)

    def _rollback(self, fork: int, fork_hash: str, report: SyncReport) -> None:
        started = time.monotonic()
        old = self.cursor
        with self._transaction():
            undone = self._undo_after(fork)
            dropped = self.db.execute("DELETE FROM journal WHERE block > ?", (fork,)).rowcount
            self.db.execute("DELETE FROM block_hashes WHERE number > ?", (fork,))
            self._store_cursor(fork, fork_hash)
        self.cursor, self.cursor_hash = fork, fork_hash
        report.reorgs.append((old, fork))
        _emit(
            logging.WARNING,
            "mirror.reorg",
            cursor=old,
            fork=fork,
            depth=old - fork,
            undone_writes=undone,
            dropped_events=dropped,
            ms=_ms(started),
        )

    def _reset(self, report: SyncReport) -> None:
        old = self.cursor
        with self._transaction():
            for table in (*KEYS, "journal", "undo", "block_hashes"):
                self.db.execute(f"DELETE FROM {table}")
            self._store_cursor(self.start_block - 1, None)
        self.cursor, self.cursor_hash = self.start_block - 1, None
        report.reorgs.append((old, self.cursor))
        _emit(
            logging.ERROR,
            "mirror.reset",
            cursor=old,
            start_block=self.start_block,
            reason=f"no block among the last {self.keep_blocks} kept matches the chain: resyncing",
        )

    def _undo_after(self, block: int) -> int:
        rows = self.db.execute(
            "SELECT tbl, key, old FROM undo WHERE block > ? ORDER BY seq DESC", (block,)
        ).fetchall()
        for row in rows:
            key = _loads(row["key"])
            where = " AND ".join(f"{c} = ?" for c in key)
            self.db.execute(f"DELETE FROM {row['tbl']} WHERE {where}", tuple(key.values()))
            if row["old"] is not None:
                self._insert(row["tbl"], _loads(row["old"]))
        self.db.execute("DELETE FROM undo WHERE block > ?", (block,))
        return len(rows)

    def _apply_range(self, frm: int, to: int, target: int, report: SyncReport) -> None:
        started = time.monotonic()
        # Headers of the range's last blocks (those within keep_blocks of the target),
        # chained onto each other and, when the range starts there, onto the cursor.
        window = max(frm, min(to, target - self.keep_blocks + 1))
        headers: dict[int, tuple[str, str]] = {}
        for n in range(window, to + 1):
            header = self._header(n)
            if header is None:
                raise _ChainMoved(f"block {n} is gone")
            if n > window and header[1] != headers[n - 1][0]:
                raise _ChainMoved(f"block {n} does not extend block {n - 1}")
            headers[n] = header
        if window == frm and self.cursor_hash is not None and headers[frm][1] != self.cursor_hash:
            raise _ChainMoved(f"block {frm} does not extend the cursor {self.cursor}")
        logs = self._get_logs(frm, to)
        if self._header(to) != headers[to]:
            raise _ChainMoved(f"block {to} changed while its logs were read")
        for entry in logs:
            n = entry["blockNumber"]
            if n in headers and Web3.to_hex(entry["blockHash"]) != headers[n][0]:
                raise _ChainMoved(f"a log of block {n} is from another fork")
        logs = sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))

        decoded: list[tuple[Any, Event | None]] = []
        for entry in logs:
            if entry.get("removed"):
                self._skip(entry, "removed log")
                continue
            try:
                event = self.client.decode(entry)
            except Exception as error:  # data that does not decode against the ABI
                self._skip(entry, f"malformed: {type(error).__name__}: {error}")
                continue
            if event is None:
                self._skip(entry, "unknown event")
                continue
            decoded.append((entry, event))

        applied = skipped = 0
        with self._transaction():
            for i, (entry, event) in enumerate(decoded):
                following = decoded[i + 1][1] if i + 1 < len(decoded) else None
                if self._apply(entry, event, following):
                    applied += 1
                else:
                    skipped += 1
            self.db.executemany(
                "INSERT OR REPLACE INTO block_hashes (number, hash) VALUES (?, ?)",
                [(n, h) for n, (h, _) in headers.items()],
            )
            self._store_cursor(to, headers[to][0])
            self.db.execute(
                "DELETE FROM block_hashes WHERE number NOT IN "
                "(SELECT number FROM block_hashes ORDER BY number DESC LIMIT ?)",
                (self.keep_blocks,),
            )
            self.db.execute("DELETE FROM undo WHERE block <= (SELECT MIN(number) FROM block_hashes)")
        self.cursor, self.cursor_hash = to, headers[to][0]
        skipped += len(logs) - len(decoded)
        report.applied += applied
        report.skipped += skipped
        report.batches += 1
        _emit(
            logging.INFO,
            "mirror.batch",
            from_block=frm,
            to_block=to,
            logs=len(logs),
            applied=applied,
            skipped=skipped,
            cursor=to,
            target=target,
            ms=_ms(started),
        )

    def _get_logs(self, frm: int, to: int) -> list:
        """The registry's logs in [frm, to]; a range the node refuses as too wide (too many
        blocks or results) is read in halves. Any other error ends the sync."""
        try:
            return list(
                self.web3.eth.get_logs({"address": self.client.address, "fromBlock": frm, "toBlock": to})
            )
        except Exception as error:
            if to <= frm or not _TOO_WIDE.search(str(error)):
                raise
            middle = (frm + to) // 2
            _emit(logging.INFO, "mirror.split", from_block=frm, to_block=to, reason=str(error)[:200])
            return self._get_logs(frm, middle) + self._get_logs(middle + 1, to)

    def _skip(self, entry: Any, reason: str) -> None:
        _emit(
            logging.WARNING,
            "mirror.skip",
            block=entry.get("blockNumber"),
            log_index=entry.get("logIndex"),
            tx=Web3.to_hex(entry["transactionHash"]) if entry.get("transactionHash") else None,
            reason=reason[:300],
        )

    def _apply(self, entry: Any, event: Event, following: Event | None) -> bool:
        """Apply one event inside a savepoint; journal it. False if skipped."""
        self._block = event.block
        handler = getattr(self, f"_on_{event.name}", None)
        self.db.execute("SAVEPOINT event")
        try:
            if handler is not None:
                handler(event, following)
            task_id = event.args.get("task_id")
            self.db.execute(
                "INSERT INTO journal (block, log_index, block_hash, tx, name, task_id, args) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.block,
                    event.log_index,
                    Web3.to_hex(entry["blockHash"]),
                    event.tx,
                    event.name,
                    _hex(task_id) if task_id is not None else None,
                    _dumps(event.args),
                ),
            )
        except sqlite3.DatabaseError as error:
            if not isinstance(error, sqlite3.IntegrityError):
                raise  # the database itself failed (full, locked): the whole range is rolled back
            self._skip_event(entry, event, error)
            return False
        except Exception as error:
            self._skip_event(entry, event, error)
            return False
        self.db.execute("RELEASE event")
        return True

    def _skip_event(self, entry: Any, event: Event, error: Exception) -> None:
        """Undo what the event wrote so far and log why it was skipped."""
        self.db.execute("ROLLBACK TO event")
        self.db.execute("RELEASE event")
        why = str(error) if isinstance(error, Inapplicable) else f"{type(error).__name__}: {error}"
        self._skip(entry, f"{event.name} not applied: {why}")

    # -------------------------------------------------------------- storage

    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, kind, value, tb):
            if kind is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # SQLite may have rolled back already (disk full)
                self.db.execute("ROLLBACK")

    def _transaction(self) -> Mirror._Transaction:
        return Mirror._Transaction(self.db)

    def _meta(self) -> dict[str, str | None]:
        return {r["key"]: r["value"] for r in self.db.execute("SELECT key, value FROM meta")}

    def _write_meta(self, values: Mapping[str, str | None]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    def _store_cursor(self, block: int, block_hash: str | None) -> None:
        self._write_meta({"cursor_block": str(block), "cursor_hash": block_hash})

    def _get(self, table: str, key: Mapping[str, Any]) -> dict | None:
        where = " AND ".join(f"{c} = ?" for c in key)
        row = self.db.execute(f"SELECT * FROM {table} WHERE {where}", tuple(key.values())).fetchone()
        return dict(row) if row is not None else None

    def _insert(self, table: str, row: Mapping[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))

    def _record(self, table: str, key: Mapping[str, Any], old: dict | None) -> None:
        self.db.execute(
            "INSERT INTO undo (block, tbl, key, old) VALUES (?, ?, ?, ?)",
            (self._block, table, _dumps(dict(key)), None if old is None else _dumps(old)),
        )

    def _put(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Write a whole row (replacing any), remembering what it replaced."""
        self._record(table, key, self._get(table, key))
        self._insert(table, {**key, **values, "block": self._block})

    def _update(self, table: str, key: Mapping[str, Any], **changes: Any) -> dict:
        old = self._get(table, key)
        if old is None:
            raise Inapplicable(f"no {table} row {dict(key)}")
        self._record(table, key, old)
        new = {**old, **changes, "block": self._block}
        self._insert(table, new)
        return new

    def _delete(self, table: str, key: Mapping[str, Any]) -> None:
        old = self._get(table, key)
        if old is None:
            return
        self._record(table, key, old)
        where = " AND ".join(f"{c} = ?" for c in key)
        self.db.execute(f"DELETE FROM {table} WHERE {where}", tuple(key.values()))

    # -------------------------------------------------------------- state helpers

    def _task(self, task_id: Any) -> tuple[str, dict]:
        tid = _hex(task_id)
        row = self._get("tasks", {"task_id": tid})
        if row is None:
            raise Inapplicable(f"unknown task {tid}")
        return tid, _loads(row["terms"])

    def _slot(self, tid: str, slot: int, *states: str) -> dict:
        row = self._get("slots", {"task_id": tid, "slot": slot})
        if row is None:
            raise Inapplicable(f"task {tid} has no slot {slot}")
        if states and row["state"] not in states:
            raise Inapplicable(f"slot {slot} of task {tid} is {row['state']}, not {'/'.join(states)}")
        return row

    def _live(self, tid: str, prover: str, slot: int) -> dict:
        row = self._get("assignments", {"task_id": tid, "prover": prover})
        if row is None or row["state"] != LIVE or row["slot"] != slot:
            raise Inapplicable(f"{prover} holds no live assignment of slot {slot} of task {tid}")
        return row

    def _prover(self, prover: str) -> dict:
        return self._get("provers", {"prover": prover}) or {
            "prover": prover,
            "stake": "0",
            "locked": "0",
            "unbonding": "0",
            "unbonding_ready_at": "0",
            "nonce": "0",
        }

    def _set_prover(self, prover: str, **changes: int) -> None:
        row = self._prover(prover)
        row.update({k: str(v) for k, v in changes.items()})
        row.pop("block", None)
        self._put("provers", {"prover": prover}, {k: v for k, v in row.items() if k != "prover"})

    def _credit(self, account: str, amount: int) -> None:
        if amount > 0:
            row = self._get("balances", {"account": account})
            total = int(row["amount"]) + amount if row else amount
            self._put("balances", {"account": account}, {"amount": str(total)})

    def _release(self, prover: str, market_id: int, collateral: int, taken: int) -> None:
        """An assignment ended: unlock its collateral and a unit of capacity, take `taken`."""
        standing = self._prover(prover)
        self._set_prover(
            prover,
            locked=int(standing["locked"]) - collateral,
            stake=int(standing["stake"]) - taken,
        )
        key = {"prover": prover, "market_id": market_id}
        member = self._get("memberships", key)
        if member is None or member["used"] < 1:
            raise Inapplicable(f"{prover} uses no capacity in market {market_id}")
        self._update("memberships", key, used=member["used"] - 1)

    def _end_slot(self, tid: str, slot: int, reopened: bool) -> None:
        self._update(
            "slots",
            {"task_id": tid, "slot": slot},
            state=OPEN if reopened else CLOSED,
            recorded=1 if reopened else 0,
            prover=None,
            price=None,
            deadline=None,
            frontend=None,
        )

    # -------------------------------------------------------------- event handlers

    def _on_MarketCreated(self, e: Event, _: Event | None) -> None:
        self._put(
            "markets",
            {"market_id": e.market_id},
            {
                "creator": e.creator,
                "verifier": e.verifier,
                "codehash": _hex(e.codehash),
                "binding": e.binding,
                "address_input": e.address_input,
                "min_collateral": str(e.min_collateral),
                "min_reward": str(e.min_reward),
                "grace_period": e.grace_period,
                "requester_bps": e.requester_bps,
                "caller_bps": e.caller_bps,
                "paused": 0,
                "custom": int(e.custom),
            },
        )

    def _on_MarketPaused(self, e: Event, _: Event | None) -> None:
        self._update("markets", {"market_id": e.market_id}, paused=int(e.paused))

    def _on_MechanismRegistered(self, e: Event, _: Event | None) -> None:
        self._put(
            "mechanisms",
            {"mechanism_id": e.mechanism_id},
            {"registrant": e.registrant, "name": e.name, "retired": 0},
        )

    def _on_FrontendSet(self, e: Event, _: Event | None) -> None:
        key = {"mechanism_id": e.mechanism_id, "frontend": e.frontend}
        if e.allowed:
            self._put("frontends", key, {})
        else:
            self._delete("frontends", key)

    def _on_MechanismRetired(self, e: Event, _: Event | None) -> None:
        self._update("mechanisms", {"mechanism_id": e.mechanism_id}, retired=1)

    def _on_Staked(self, e: Event, _: Event | None) -> None:
        self._set_prover(e.prover, stake=e.stake)  # the event carries the new total

    def _on_Unstaked(self, e: Event, _: Event | None) -> None:
        stake = int(self._prover(e.prover)["stake"]) - e.amount
        if stake < 0:
            raise Inapplicable(f"{e.prover} unstakes more than its mirrored stake")
        self._set_prover(e.prover, stake=stake, unbonding=e.unbonding, unbonding_ready_at=e.ready_at)

    def _on_StakeWithdrawn(self, e: Event, _: Event | None) -> None:
        self._set_prover(e.prover, unbonding=0, unbonding_ready_at=0)

    def _on_SignaturesRevoked(self, e: Event, _: Event | None) -> None:
        self._set_prover(e.prover, nonce=e.nonce)

    def _clear_accepts(self, prover: str, market_id: int) -> None:
        rows = self.db.execute(
            "SELECT mechanism_id FROM accepts WHERE prover = ? AND market_id = ?", (prover, market_id)
        ).fetchall()
        for row in rows:
            self._delete(
                "accepts", {"prover": prover, "market_id": market_id, "mechanism_id": row["mechanism_id"]}
            )

    def _on_ProverJoined(self, e: Event, _: Event | None) -> None:
        self._clear_accepts(e.prover, e.market_id)  # acceptances hold for one join
        self._put(
            "memberships",
            {"prover": e.prover, "market_id": e.market_id},
            {
                "joined": 1,
                "capacity": e.capacity,
                "used": 0,
                "ask": str(e.ask),
                "proving_time": e.proving_time,
                "capabilities": str(e.capabilities),
                "since": _since(e),
            },
        )

    def _on_ProverUpdated(self, e: Event, _: Event | None) -> None:
        key = {"prover": e.prover, "market_id": e.market_id}
        member = self._get("memberships", key)
        if member is None or not member["joined"]:
            raise Inapplicable(f"{e.prover} is not in market {e.market_id}")
        self._update(
            "memberships",
            key,
            capacity=e.capacity,
            ask=str(e.ask),
            proving_time=e.proving_time,
            capabilities=str(e.capabilities),
            since=_since(e),
        )

    def _on_ProverLeft(self, e: Event, _: Event | None) -> None:
        self._clear_accepts(e.prover, e.market_id)
        self._put(
            "memberships",
            {"prover": e.prover, "market_id": e.market_id},
            {
                "joined": 0,
                "capacity": 0,
                "used": 0,
                "ask": "0",
                "proving_time": 0,
                "capabilities": "0",
                "since": 0,
            },
        )

    def _on_MechanismAccepted(self, e: Event, _: Event | None) -> None:
        key = {"prover": e.prover, "market_id": e.market_id, "mechanism_id": e.mechanism_id}
        if e.accepted:
            self._put("accepts", key, {})
        else:
            self._delete("accepts", key)

    def _on_TaskPosted(self, e: Event, _: Event | None) -> None:
        terms = TaskTerms.from_event(e.terms)
        tid = _hex(e.task_id)
        if self._get("tasks", {"task_id": tid}) is not None:
            raise Inapplicable(f"task {tid} posted twice")
        self._put(
            "tasks",
            {"task_id": tid},
            {
                "market_id": terms.market_id,
                "mechanism_id": terms.mechanism_id,
                "requester": terms.requester,
                "terms": _dumps(asdict(terms)),
                "prover_input": bytes(e.prover_input),
                "input_uri": e.input_uri,
                "redundancy": terms.redundancy,
                "posted_block": e.block,
                "tx": e.tx,
            },
        )
        for slot in range(terms.redundancy):
            self._put(
                "slots",
                {"task_id": tid, "slot": slot},
                {
                    "state": OPEN,
                    "recorded": 0,
                    "prover": None,
                    "price": None,
                    "deadline": None,
                    "frontend": None,
                    "proven_block": None,
                },
            )

    def _on_TaskAssigned(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._slot(tid, e.slot, OPEN)
        self._update(
            "slots",
            {"task_id": tid, "slot": e.slot},
            state=ASSIGNED,
            prover=e.prover,
            price=str(e.price),
            deadline=str(e.deadline),
            frontend=e.frontend,
        )
        self._put(
            "assignments",
            {"task_id": tid, "prover": e.prover},
            {
                "slot": e.slot,
                "price": str(e.price),
                "deadline": str(e.deadline),
                "frontend": e.frontend,
                "state": LIVE,
                "assigned_block": e.block,
            },
        )
        key = {"prover": e.prover, "market_id": terms["market_id"]}
        member = self._get("memberships", key)
        if member is None or not member["joined"]:
            raise Inapplicable(f"{e.prover} is not in market {terms['market_id']}")
        self._update("memberships", key, used=member["used"] + 1)
        standing = self._prover(e.prover)
        self._set_prover(e.prover, locked=int(standing["locked"]) + terms["collateral"])

    def _on_AssignmentSkipped(self, e: Event, _: Event | None) -> None:
        self._put(
            "skipped_assignments",
            {"block": e.block, "log_index": e.log_index},
            {
                "task_id": _hex(e.task_id),
                "prover": e.prover,
                "frontend": e.frontend,
                "reason": e.reason,
                "tx": e.tx,
            },
        )

    def _on_TaskDeclined(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._slot(tid, e.slot, ASSIGNED)
        self._live(tid, e.prover, e.slot)
        self._update("assignments", {"task_id": tid, "prover": e.prover}, state=DECLINED)
        self._release(e.prover, terms["market_id"], terms["collateral"], 0)
        self._end_slot(tid, e.slot, e.reopened)

    def _on_Slashed(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._slot(tid, e.slot, ASSIGNED)
        self._live(tid, e.prover, e.slot)
        self._update("assignments", {"task_id": tid, "prover": e.prover}, state=SLASHED)
        self._release(e.prover, terms["market_id"], terms["collateral"], e.collateral)
        self._credit(terms["requester"], e.to_requester)
        self._credit(e.caller, e.to_caller)
        self._end_slot(tid, e.slot, e.reopened)

    def _on_AssignmentVoided(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._slot(tid, e.slot, ASSIGNED)
        self._live(tid, e.prover, e.slot)
        self._update("assignments", {"task_id": tid, "prover": e.prover}, state=VOIDED)
        self._release(e.prover, terms["market_id"], terms["collateral"], 0)
        self._credit(terms["requester"], terms["max_reward"] + terms["frontend_fee"])
        self._end_slot(tid, e.slot, False)

    def _on_TaskProven(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        key = {"task_id": tid, "prover": e.prover}
        claimed = self.db.execute(
            "SELECT 1 FROM assignments WHERE task_id = ? AND prover = ? AND slot = ? AND state = ?",
            (tid, e.prover, e.slot, LIVE),
        ).fetchone()
        if terms["mechanism_id"] == OPEN_RACE and not claimed:  # the proof takes an open slot
            self._slot(tid, e.slot, OPEN)
            price, deadline = terms["max_reward"], terms["posted_at"] + terms["proving_window"]
            self._put(
                "assignments",
                key,
                {
                    "slot": e.slot,
                    "price": str(price),
                    "deadline": str(deadline),
                    "frontend": ZERO_ADDRESS,
                    "state": PROVEN,
                    "assigned_block": e.block,
                },
            )
        else:
            self._slot(tid, e.slot, ASSIGNED)
            live = self._live(tid, e.prover, e.slot)
            price, deadline = int(live["price"]), int(live["deadline"])
            self._update("assignments", key, state=PROVEN)
            self._release(e.prover, terms["market_id"], terms["collateral"], 0)
        self._update(
            "slots",
            {"task_id": tid, "slot": e.slot},
            state=PROVEN,
            prover=e.prover,
            price=str(price),
            deadline=str(deadline),
            frontend=e.frontend,
            proven_block=e.block,
        )
        self._credit(e.prover, e.paid)
        self._credit(e.frontend, e.fee)
        self._credit(terms["requester"], e.refund)

    def _on_SlotsClosed(self, e: Event, following: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._credit(terms["requester"], e.refund)
        # A decline or slash past the assignment window (or of a cancelled task) refunds
        # its slot first (this event, one slot) and then reports it (reopened False):
        # that event closes it.
        if (
            e.slots == 1
            and following is not None
            and following.name in ("TaskDeclined", "Slashed")
            and following.tx == e.tx
            and following.log_index == e.log_index + 1
            and bytes(following.task_id) == bytes(e.task_id)
            and not following.reopened
        ):
            return
        rows = self.db.execute(
            "SELECT slot FROM slots WHERE task_id = ? AND state = ? ORDER BY slot", (tid, OPEN)
        ).fetchall()
        if len(rows) != e.slots:
            raise Inapplicable(f"{e.slots} slots closed but the mirror has {len(rows)} open")
        for row in rows:
            self._end_slot(tid, row["slot"], False)

    def _on_Withdrawn(self, e: Event, _: Event | None) -> None:
        self._delete("balances", {"account": e.account})

    # -------------------------------------------------------------- queries

    def snapshot(self, now: int | None = None) -> Snapshot:
        """Everything a mechanism needs, read in one SQLite transaction: markets,
        mechanisms, provers' standings, joined memberships, tasks with open slots (with
        `now`, only those still assignable then) and every live assignment."""
        self.db.execute("BEGIN")
        try:
            meta = self._meta()
            return Snapshot(
                block=int(meta["cursor_block"]),
                block_hash=meta.get("cursor_hash"),
                markets={m.market_id: m for m in self.markets()},
                mechanisms={m.mechanism_id: m for m in self.mechanisms()},
                provers={p.prover: p for p in self.provers()},
                memberships=tuple(self.memberships()),
                open_tasks=tuple(self.open_tasks(now=now)),
                live=tuple(self.live_assignments()),
            )
        finally:
            self.db.execute("COMMIT")

    def markets(self) -> list[Market]:
        return [
            Market(
                market_id=r["market_id"],
                verifier=r["verifier"],
                creator=r["creator"],
                codehash=bytes.fromhex(r["codehash"][2:]),
                paused=bool(r["paused"]),
                binding=r["binding"],
                address_input=r["address_input"],
                grace_period=r["grace_period"],
                requester_bps=r["requester_bps"],
                caller_bps=r["caller_bps"],
                min_collateral=int(r["min_collateral"]),
                min_reward=int(r["min_reward"]),
                custom=bool(r["custom"]),
            )
            for r in self.db.execute("SELECT * FROM markets ORDER BY market_id")
        ]

    def mechanisms(self) -> list[MechanismView]:
        frontends: dict[int, list[str]] = {}
        for r in self.db.execute("SELECT mechanism_id, frontend FROM frontends ORDER BY frontend"):
            frontends.setdefault(r["mechanism_id"], []).append(r["frontend"])
        return [
            MechanismView(
                r["mechanism_id"],
                r["registrant"],
                r["name"],
                bool(r["retired"]),
                tuple(frontends.get(r["mechanism_id"], ())),
            )
            for r in self.db.execute("SELECT * FROM mechanisms ORDER BY mechanism_id")
        ]

    def provers(self) -> list[ProverView]:
        balances = {r["account"]: int(r["amount"]) for r in self.db.execute("SELECT * FROM balances")}
        return [
            self._prover_view(r, balances.get(r["prover"], 0))
            for r in self.db.execute("SELECT * FROM provers ORDER BY prover")
        ]

    def prover(self, address: str) -> ProverView:
        """A prover's standing (all zero for one the mirror never saw)."""
        address = _address(address)
        return self._prover_view(self._prover(address), self.balance(address))

    @staticmethod
    def _prover_view(r: Mapping[str, Any], balance: int) -> ProverView:
        return ProverView(
            r["prover"],
            int(r["stake"]),
            int(r["locked"]),
            int(r["unbonding"]),
            int(r["unbonding_ready_at"]),
            balance,
            int(r["nonce"]),
        )

    def balance(self, account: str) -> int:
        """Wei credited to an account and not withdrawn (the registry's `balances`)."""
        row = self._get("balances", {"account": _address(account)})
        return int(row["amount"]) if row else 0

    def memberships(self, market_id: int | None = None, prover: str | None = None) -> list[MembershipView]:
        """Joined memberships, with capacity used and the mechanisms accepted."""
        where, params = ["joined = 1"], []
        if market_id is not None:
            where.append("market_id = ?")
            params.append(market_id)
        if prover is not None:
            where.append("prover = ?")
            params.append(_address(prover))
        accepted: dict[tuple[str, int], list[int]] = {}
        for r in self.db.execute("SELECT * FROM accepts ORDER BY mechanism_id"):
            accepted.setdefault((r["prover"], r["market_id"]), []).append(r["mechanism_id"])
        rows = self.db.execute(
            f"SELECT * FROM memberships WHERE {' AND '.join(where)} ORDER BY market_id, prover", params
        )
        return [
            MembershipView(
                r["prover"],
                r["market_id"],
                r["capacity"],
                r["used"],
                int(r["ask"]),
                r["proving_time"],
                int(r["capabilities"]),
                tuple(accepted.get((r["prover"], r["market_id"]), ())),
                r["since"] or 0,
            )
            for r in rows
        ]

    def task(self, task_id: bytes | str) -> TaskView | None:
        found = self._task_views("t.task_id = ?", [_hex(task_id)])
        return found[0] if found else None

    def tasks(self, market_id: int | None = None) -> list[TaskView]:
        """Every task mirrored, oldest first, whatever the state of its slots."""
        if market_id is None:
            return self._task_views("1 = 1", [])
        return self._task_views("t.market_id = ?", [market_id])

    def open_tasks(
        self, now: int | None = None, market_id: int | None = None, mechanism_id: int | None = None
    ) -> list[TaskView]:
        """Tasks with at least one open slot, oldest first; with `now`, only those whose
        slots may still be taken then (`TaskView.assignable_until`)."""
        where = ["EXISTS (SELECT 1 FROM slots s WHERE s.task_id = t.task_id AND s.state = 'open')"]
        params: list[Any] = []
        if market_id is not None:
            where.append("t.market_id = ?")
            params.append(market_id)
        if mechanism_id is not None:
            where.append("t.mechanism_id = ?")
            params.append(mechanism_id)
        tasks = self._task_views(" AND ".join(where), params)
        return [t for t in tasks if now is None or now <= t.assignable_until]

    def _task_views(self, where: str, params: list[Any]) -> list[TaskView]:
        tasks = self.db.execute(
            f"SELECT * FROM tasks t WHERE {where} ORDER BY t.posted_block, t.task_id", params
        ).fetchall()
        if not tasks:
            return []
        subquery = f"SELECT t.task_id FROM tasks t WHERE {where}"
        slots: dict[str, list[SlotView]] = {}
        for r in self.db.execute(
            f"SELECT * FROM slots WHERE task_id IN ({subquery}) ORDER BY task_id, slot", params
        ):
            slots.setdefault(r["task_id"], []).append(
                SlotView(
                    r["slot"],
                    r["state"],
                    bool(r["recorded"]),
                    r["prover"],
                    _int(r["price"]),
                    _int(r["deadline"]),
                    r["frontend"],
                )
            )
        engaged: dict[str, set[str]] = {}
        barred: dict[str, set[str]] = {}
        for r in self.db.execute(
            f"SELECT task_id, prover, state FROM assignments WHERE task_id IN ({subquery})", params
        ):
            engaged.setdefault(r["task_id"], set()).add(r["prover"])
            if r["state"] in (DECLINED, SLASHED):
                barred.setdefault(r["task_id"], set()).add(r["prover"])
        return [
            TaskView(
                bytes.fromhex(t["task_id"][2:]),
                _terms(t["terms"]),
                bytes(t["prover_input"]),
                t["input_uri"],
                t["posted_block"],
                tuple(slots.get(t["task_id"], ())),
                frozenset(engaged.get(t["task_id"], ())),
                frozenset(barred.get(t["task_id"], ())),
            )
            for t in tasks
        ]

    def live_assignments(self, prover: str | None = None) -> list[AssignmentView]:
        """Assignments awaiting a proof (not proven, declined, slashed or voided)."""
        return self.assignments(prover=prover, states=(LIVE,))

    def overdue(self, now: int) -> list[AssignmentView]:
        """Live assignments whose deadline passed before `now`: anyone may slash them."""
        return [a for a in self.live_assignments() if a.deadline < now]

    def assignments(
        self, prover: str | None = None, task_id: bytes | str | None = None, states: Iterable[str] = ()
    ) -> list[AssignmentView]:
        where, params = ["1 = 1"], []
        if prover is not None:
            where.append("a.prover = ?")
            params.append(_address(prover))
        if task_id is not None:
            where.append("a.task_id = ?")
            params.append(_hex(task_id))
        states = tuple(states)
        if states:
            where.append(f"a.state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        rows = self.db.execute(
            "SELECT a.*, t.terms FROM assignments a JOIN tasks t ON t.task_id = a.task_id "
            f"WHERE {' AND '.join(where)} ORDER BY a.assigned_block, a.task_id, a.slot",
            params,
        )
        views = []
        for r in rows:
            terms = _terms(r["terms"])
            views.append(
                AssignmentView(
                    bytes.fromhex(r["task_id"][2:]),
                    terms.market_id,
                    r["prover"],
                    r["slot"],
                    int(r["price"]),
                    int(r["deadline"]),
                    r["frontend"],
                    terms.collateral,
                    r["state"],
                    r["assigned_block"],
                    terms,
                )
            )
        return views

    def skipped_assignments(self, task_id: bytes | str | None = None) -> list[dict]:
        """AssignmentSkipped events: task id, prover, frontend, reason, block, tx."""
        sql, params = "SELECT * FROM skipped_assignments", []
        if task_id is not None:
            sql, params = sql + " WHERE task_id = ?", [_hex(task_id)]
        return [dict(r) for r in self.db.execute(sql + " ORDER BY block, log_index", params)]

    def timeline(self, task_id: bytes | str | None = None) -> list[Event]:
        """Applied events from the journal, oldest first (as the client decodes them)."""
        sql, params = "SELECT * FROM journal", []
        if task_id is not None:
            sql, params = sql + " WHERE task_id = ?", [_hex(task_id)]
        return [
            Event(r["name"], _loads(r["args"]), r["block"], r["tx"], r["log_index"])
            for r in self.db.execute(sql + " ORDER BY block, log_index", params)
        ]

    def dump(self) -> dict[str, list[dict]]:
        """Every derived table's rows, in key order: for comparing two mirrors."""
        return {
            table: [dict(r) for r in self.db.execute(f"SELECT * FROM {table} ORDER BY {', '.join(keys)}")]
            for table, keys in KEYS.items()
        }


# ------------------------------------------------------------------ helpers


def _emit(level: int, kind: str, **fields: Any) -> None:
    log.log(level, json.dumps({"event": kind, **fields}, default=str))


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _address(value: Any) -> str:
    """A checksummed address from a string or anything with an `.address` (an ape account)."""
    return to_checksum_address(getattr(value, "address", value))


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return "0x" + value.removeprefix("0x").lower()
    return "0x" + bytes(value).hex()


def _since(e: Event) -> int:
    return e.block << 32 | e.log_index


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


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


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":"))


def _loads(text: str) -> Any:
    return _revive(json.loads(text))


def _terms(text: str) -> TaskTerms:
    return TaskTerms.from_event(_loads(text))
