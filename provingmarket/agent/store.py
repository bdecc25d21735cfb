"""What the agent keeps in `agent.sqlite` in its data directory, beside the mirror and the
outbox: one row per piece of work (`Work`, keyed `prove:<task>:<slot>` or `race:<task>`) with its state, the
measured proving time per market, and one row per auction bid (`Bid`). Why this makes it
never prove or submit twice: docs/agent.md. The file carries its schema version
(`database.migrate`, component `agent`; `MIGRATIONS[0]` is the schema as it was before
versions existed, so a file written then is recognised)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provingmarket.chain.database import Migration, migrate
from provingmarket.formats import CHAIN, OPEN_RACE, Assignment, TaskTerms

# Work states: waiting for capacity, proving, proof kept, proof sent, paid; or ended
# without pay: given up (declined or left to be slashed), lost (refused, slashed, race
# won by others), failed (the registry refused the proof itself, or it reverted).
QUEUED, PROVING, PROVED, SUBMITTED = "queued", "proving", "proved", "submitted"
DONE_, GAVE_UP, LOST, FAILED = "done", "gave_up", "lost", "failed"
OPEN_WORK = (QUEUED, PROVING, PROVED, SUBMITTED)

ALPHA = 0.3  # weight of a new measurement in the expected proving time

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent (
    key TEXT PRIMARY KEY,        -- prove:<task>:<slot> or race:<task>
    kind TEXT NOT NULL,          -- prove or race
    task_id TEXT NOT NULL,
    slot INTEGER,                -- the assigned slot (races: the one paid, once known)
    market_id INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    state TEXT NOT NULL,
    proof BLOB,
    public_inputs TEXT,          -- JSON list of decimal strings
    seconds REAL,                -- measured proving time
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    tx TEXT,
    paid TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_state ON agent (state);
CREATE TABLE IF NOT EXISTS agent_timing (
    market_id INTEGER PRIMARY KEY, seconds REAL NOT NULL, samples INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agent_bids (
    url TEXT NOT NULL,           -- the auction frontend's API base URL
    task_id TEXT NOT NULL,
    round INTEGER NOT NULL,      -- the auction's round
    market_id INTEGER NOT NULL,
    collateral TEXT NOT NULL,    -- wei, locked if the bid wins
    min_price TEXT NOT NULL,     -- wei
    expiry INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    state TEXT NOT NULL,         -- sending (written before the POST), accepted, refused
    bid_id TEXT,
    detail TEXT,                 -- the server's answer to a refused bid
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (url, task_id, round)
);
"""

# Migration i takes the file from schema version i to i + 1 (provingmarket/chain/database.py).
MIGRATIONS: list[Migration] = [SCHEMA]
COMPONENT = "agent"

# Bid states: written before sending (a restart counts it as sent), taken, refused.
BID_SENDING, BID_ACCEPTED, BID_REFUSED = "sending", "accepted", "refused"


@dataclass(frozen=True)
class Work:
    """One task to prove: an assignment (its slot, price, deadline) or an open race."""

    key: str
    task_id: bytes
    market_id: int
    terms: TaskTerms
    assignment: Assignment  # RACE for an open race
    deadline: int  # the assignment's, or the race's end
    prover_input: bytes
    input_uri: str
    decline_until: int | None  # the last timestamp the registry takes a decline; None: a race

    @property
    def race(self) -> bool:
        """An open race, or a chain's race link (a proof with no assignment)."""
        if self.terms.mechanism_id >= CHAIN:
            return self.assignment.deadline == 0
        return self.terms.mechanism_id == OPEN_RACE

    @property
    def from_frontend(self) -> bool:
        """A frontend made the assignment (it may be declined), not the prover itself (a
        DUTCH lock, a race commit: its frontend is the zero address)."""
        return int(self.assignment.frontend, 16) != 0

    def fields(self) -> dict[str, Any]:
        """What a log line says about the work."""
        where: dict[str, Any] = {"task": hex_id(self.task_id), "market": self.market_id}
        if self.race:
            where["race"] = True
        else:
            where["slot"] = self.assignment.slot
        return where


@dataclass(frozen=True)
class Bid:
    """A bid on one round of an auction: what is signed, and where it goes."""

    url: str
    task: str  # 0x task id
    round: int
    market_id: int
    collateral: int
    min_price: int
    expiry: int
    nonce: int


def prove_key(task_id: bytes, slot: int) -> str:
    return f"prove:{hex_id(task_id)}:{slot}"


def race_key(task_id: bytes) -> str:
    return f"race:{hex_id(task_id)}"


def decline_key(task_id: bytes, slot: int) -> str:
    return f"decline:{hex_id(task_id)}:{slot}"


def lock_key(task_id: bytes) -> str:
    return f"lock:{hex_id(task_id)}"


def void_key(task_id: bytes, slot: int) -> str:
    return f"void:{hex_id(task_id)}:{slot}"


WITHDRAW_KEY = "withdraw"


def hex_id(task_id: bytes) -> str:
    """A task id as the logs and the rows write it: 0x and 64 hex digits."""
    return "0x" + bytes(task_id).hex()


class AgentStore:
    """The agent's rows in its SQLite file: one connection, used under a lock by the
    main loop and the workers."""

    def __init__(self, path: str):
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        if path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        migrate(self.db, COMPONENT, MIGRATIONS, path)

    def get(self, key: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM agent WHERE key = ?", (key,)).fetchone()
            return dict(row) if row else None

    def insert(self, work: Work, state: str) -> bool:
        """A new row; False if the key has one already."""
        now = time.time()
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO agent (key, kind, task_id, slot, market_id, deadline, state, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    work.key,
                    "race" if work.race else "prove",
                    hex_id(work.task_id),
                    None if work.race else work.assignment.slot,
                    work.market_id,
                    work.deadline,
                    state,
                    now,
                    now,
                ),
            )
            return cursor.rowcount == 1

    def update(self, key: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        with self.lock:
            self.db.execute(
                f"UPDATE agent SET {', '.join(f'{k} = ?' for k in fields)} WHERE key = ?",
                (*fields.values(), key),
            )

    def rows(self, states: Iterable[str]) -> list[dict]:
        states = tuple(states)
        with self.lock:
            return [
                dict(r)
                for r in self.db.execute(
                    f"SELECT * FROM agent WHERE state IN ({', '.join('?' for _ in states)}) "
                    "ORDER BY deadline",
                    states,
                )
            ]

    def expected(self, market_id: int, memberships: Mapping[int, Any] | None = None) -> float:
        """Seconds a proof of this market is expected to take: the measured average, or
        the membership's declared proving time until there is one."""
        with self.lock:
            row = self.db.execute(
                "SELECT seconds FROM agent_timing WHERE market_id = ?", (market_id,)
            ).fetchone()
        if row is not None:
            return float(row["seconds"])
        membership = (memberships or {}).get(market_id)
        return float(membership.proving_time) if membership is not None else 0.0

    def measured(self, market_id: int, seconds: float) -> float:
        """Fold a measured proving time into the market's average; returns the new one."""
        with self.lock:
            row = self.db.execute("SELECT * FROM agent_timing WHERE market_id = ?", (market_id,)).fetchone()
            average = seconds if row is None else (1 - ALPHA) * row["seconds"] + ALPHA * seconds
            samples = 1 if row is None else row["samples"] + 1
            self.db.execute(
                "INSERT OR REPLACE INTO agent_timing (market_id, seconds, samples) VALUES (?, ?, ?)",
                (market_id, average, samples),
            )
            return average

    # -------------------------------------------------------------- bids

    def bid_sent(self, url: str, task: str, round_: int) -> bool:
        """A bid on this auction round was sent (or is being sent) already."""
        with self.lock:
            return (
                self.db.execute(
                    "SELECT 1 FROM agent_bids WHERE url = ? AND task_id = ? AND round = ?",
                    (url, task, round_),
                ).fetchone()
                is not None
            )

    def bid_sending(self, bid: Bid) -> None:
        """The bid's row, written before it is sent."""
        now = time.time()
        with self.lock:
            self.db.execute(
                "INSERT INTO agent_bids (url, task_id, round, market_id, collateral, min_price, expiry, "
                "nonce, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bid.url,
                    bid.task,
                    bid.round,
                    bid.market_id,
                    str(bid.collateral),
                    str(bid.min_price),
                    bid.expiry,
                    bid.nonce,
                    BID_SENDING,
                    now,
                    now,
                ),
            )

    def bid_answered(
        self, bid: Bid, state: str, bid_id: str | None = None, detail: str | None = None
    ) -> None:
        with self.lock:
            self.db.execute(
                "UPDATE agent_bids SET state = ?, bid_id = ?, detail = ?, updated_at = ? "
                "WHERE url = ? AND task_id = ? AND round = ?",
                (state, bid_id, detail, time.time(), bid.url, bid.task, bid.round),
            )

    def bid_unsent(self, bid: Bid) -> None:
        """The bid never reached the server: forget it, to be sent again."""
        with self.lock:
            self.db.execute(
                "DELETE FROM agent_bids WHERE url = ? AND task_id = ? AND round = ?",
                (bid.url, bid.task, bid.round),
            )

    def bids_standing(self, now: int) -> list[dict]:
        """Bids sent or being sent that have not expired (each may still win)."""
        with self.lock:
            return [
                dict(r)
                for r in self.db.execute(
                    "SELECT * FROM agent_bids WHERE state IN (?, ?) AND expiry >= ?",
                    (BID_SENDING, BID_ACCEPTED, now),
                )
            ]

    def close(self) -> None:
        with self.lock:
            self.db.close()
