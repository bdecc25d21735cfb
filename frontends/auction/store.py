"""The auction frontend's records in SQLite (or Postgres, given a `postgresql://` URL:
several API processes then share them, provingmarket/chain/postgres.py): auctions (one row
per task and round), the bids they received and what became of them. Everything the
frontend promised over HTTP is here, so a restarted process serves the same answers and
clears the same bids.

    store = AuctionStore("data/auction/bids.sqlite")   # a file of its own in the data directory
    store.open_auction(task, round=1, opened_at=t, closes_at=t + 10)
    bid_id = store.add_bid(task_id, 1, prover, min_price, expiry, nonce, signature, cap=5)
    with store.transaction():                   # the keeper, at close
        due = store.due(now)
        ...

Each thread uses a `AuctionStore` of its own (its own connection); SQLite's WAL lets the
API read while the keeper writes, and write transactions (`BEGIN IMMEDIATE`) exclude one
another: a bid is stored only while its auction is open, and the keeper closes an
auction and reads its bids in one transaction, so no bid arrives after the bids of an
auction were read. Commits are `synchronous=NORMAL`: a bid acknowledged is on disk when
the process is killed (it is in the WAL), though an operating-system crash may lose the
last ones; the mirror and outbox keep their own `FULL`.

The file carries its schema version (`database.migrate`, component `auction_bids`):
`MIGRATIONS[0]` is the schema as it was before versions existed, so a file written then
is recognised; a later change is a new migration appended, never an edit of an old one.

Amounts and uint256 values are decimal TEXT (SQLite integers stop at 2**63). Task ids
are 0x-prefixed lowercase hex, addresses checksummed.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from frontends.auction.mechanism import Clearing, SealedBid
from frontends.book import OpenTask, task_hex
from provingmarket import rules
from provingmarket.chain.database import (
    Migration,
    describe,
    is_integrity_error,
    is_url,
    migrate,
    open_database,
)
from provingmarket.errors import Refusal

OPEN, CLOSED = "open", "closed"
SEALED, WON, LOST, INVALID, REPLACED = "sealed", "won", "lost", "invalid", "replaced"

SCHEMA = """
CREATE TABLE IF NOT EXISTS auctions (
    task_id TEXT NOT NULL, round INTEGER NOT NULL,
    market_id INTEGER NOT NULL, mechanism_id INTEGER NOT NULL,
    max_reward TEXT NOT NULL, collateral TEXT NOT NULL, proving_window INTEGER NOT NULL,
    capabilities TEXT NOT NULL, redundancy INTEGER NOT NULL, open_slots INTEGER NOT NULL,
    assignable_until INTEGER NOT NULL, opened_at INTEGER NOT NULL, closes_at INTEGER NOT NULL,
    state TEXT NOT NULL,                 -- open, closed
    closed_at INTEGER, cleared_block INTEGER, price TEXT, bids INTEGER, note TEXT,
    PRIMARY KEY (task_id, round));
CREATE INDEX IF NOT EXISTS auctions_state ON auctions (state, closes_at);
CREATE TABLE IF NOT EXISTS bids (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bid_id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL, round INTEGER NOT NULL, prover TEXT NOT NULL,
    min_price TEXT NOT NULL, expiry TEXT NOT NULL, nonce TEXT NOT NULL,
    signature TEXT NOT NULL UNIQUE,      -- 0x hex; a signature is accepted once
    received_at REAL NOT NULL,
    status TEXT NOT NULL,                -- sealed, won, lost, invalid, replaced
    price TEXT, reason TEXT, assigned_block INTEGER);
CREATE INDEX IF NOT EXISTS bids_auction ON bids (task_id, round, prover);
CREATE INDEX IF NOT EXISTS bids_status ON bids (status);
"""


# Migration i takes the file from schema version i to i + 1 (provingmarket/chain/database.py).
MIGRATIONS: list[Migration] = [SCHEMA]
COMPONENT = "auction_bids"


class StoreRefusal(Refusal):
    """A bid the store does not take: `code` says which rule, `reason` why."""


@dataclass(frozen=True)
class AuctionRow:
    task_id: str
    round: int
    market_id: int
    mechanism_id: int
    max_reward: int
    collateral: int
    proving_window: int
    capabilities: int
    redundancy: int
    open_slots: int
    assignable_until: int
    opened_at: int
    closes_at: int
    state: str
    closed_at: int | None
    cleared_block: int | None
    price: int | None
    bids: int  # bids counted: received and not replaced (for a closed auction: at close)
    note: str | None


@dataclass(frozen=True)
class BidRow:
    seq: int
    bid_id: str
    task_id: str
    round: int
    prover: str
    min_price: int
    expiry: int
    nonce: int
    signature: bytes
    received_at: float
    status: str
    price: int | None
    reason: str | None
    assigned_block: int | None

    def sealed(self) -> SealedBid:
        return SealedBid(
            self.bid_id, self.prover, self.min_price, self.expiry, self.nonce, self.signature, self.seq
        )


class AuctionStore:
    def __init__(self, path: str, timeout: float = 30.0):
        self.path = str(path)
        if is_url(self.path):  # a Postgres database shared by several processes: schema auction_bids
            self.db = open_database(self.path, COMPONENT)
            migrate(self.db, COMPONENT, MIGRATIONS, describe(self.path))
            return
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout)
        self.db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        migrate(self.db, COMPONENT, MIGRATIONS, self.path)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: nothing else writes the file until it ends."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -------------------------------------------------------------- auctions (keeper)

    def open_auction(self, task: OpenTask, round: int, opened_at: int, closes_at: int) -> AuctionRow:
        t = task.terms
        self.db.execute(
            "INSERT INTO auctions (task_id, round, market_id, mechanism_id, max_reward, collateral, "
            "proving_window, capabilities, redundancy, open_slots, assignable_until, opened_at, closes_at, "
            "state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task_hex(task.task_id),
                round,
                t.market_id,
                rules.mechanism_at(
                    t, opened_at
                ),  # a chain's link open now (its value fits no integer column)
                str(t.max_reward),
                str(t.collateral),
                t.proving_window,
                str(t.capabilities),
                t.redundancy,
                task.open_slots,
                t.posted_at + t.assign_window,
                opened_at,
                closes_at,
                OPEN,
            ),
        )
        return self.auction(task_hex(task.task_id), round)

    def open_auctions(self) -> list[AuctionRow]:
        return [
            _auction(r)
            for r in self.db.execute(
                f"SELECT a.*, {_COUNT} FROM auctions a WHERE state = ? ORDER BY closes_at, task_id", (OPEN,)
            )
        ]

    def due(self, now: int) -> list[AuctionRow]:
        """Open auctions whose close time has come, earliest close first."""
        return [
            _auction(r)
            for r in self.db.execute(
                f"SELECT a.*, {_COUNT} FROM auctions a WHERE state = ? AND closes_at <= ? "
                "ORDER BY closes_at, opened_at, task_id",
                (OPEN, now),
            )
        ]

    def last_rounds(self, task_ids: Iterable[str]) -> dict[str, int]:
        """The latest round of each of these tasks that has had an auction."""
        ids = list(task_ids)
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for r in self.db.execute(
                f"SELECT task_id, MAX(round) FROM auctions WHERE task_id IN ({marks}) GROUP BY task_id", chunk
            ):
                found[r[0]] = r[1]
        return found

    def close_auction(self, task_id: str, round: int, closed_at: int, note: str) -> None:
        """Close an auction without clearing it (its task left the book): its sealed bids
        are invalid with the note as the reason."""
        self.db.execute(
            f"UPDATE auctions SET state = ?, closed_at = ?, note = ?, bids = (SELECT {_COUNTED} FROM bids b "
            "WHERE b.task_id = auctions.task_id AND b.round = auctions.round) "
            "WHERE task_id = ? AND round = ? AND state = ?",
            (CLOSED, closed_at, note, task_id, round, OPEN),
        )
        self.db.execute(
            "UPDATE bids SET status = ?, reason = ? WHERE task_id = ? AND round = ? AND status = ?",
            (INVALID, f"the auction closed without clearing: {note}", task_id, round, SEALED),
        )

    def set_open_slots(self, task_id: str, round: int, open_slots: int) -> None:
        self.db.execute(
            "UPDATE auctions SET open_slots = ? WHERE task_id = ? AND round = ? AND open_slots != ?",
            (open_slots, task_id, round, open_slots),
        )

    def sealed_bids(self, task_id: str, round: int) -> list[BidRow]:
        return [
            _bid(r)
            for r in self.db.execute(
                "SELECT * FROM bids WHERE task_id = ? AND round = ? AND status = ? ORDER BY seq",
                (task_id, round, SEALED),
            )
        ]

    def record(self, auction: AuctionRow, clearing: Clearing, closed_at: int, cleared_block: int) -> None:
        """Write what the clearing decided: the auction's result and every bid's status."""
        counted = len(clearing.won) + len(clearing.lost) + len(clearing.dropped)
        self.db.execute(
            "UPDATE auctions SET state = ?, closed_at = ?, cleared_block = ?, price = ?, bids = ?, note = ?, "
            "open_slots = ? WHERE task_id = ? AND round = ?",
            (
                CLOSED,
                closed_at,
                cleared_block,
                None if clearing.price is None else str(clearing.price),
                counted,
                clearing.note,
                clearing.open_slots,
                auction.task_id,
                auction.round,
            ),
        )
        updates = [(WON, str(clearing.price), None, bid_id) for bid_id in clearing.won]
        lost = (
            f"outbid: the winning bids were lower (or as low and earlier); they are paid {clearing.price} wei"
        )
        updates += [(LOST, None, lost, bid_id) for bid_id in clearing.lost]
        updates += [
            (REPLACED if why.code == "replaced" else INVALID, None, why.reason, bid_id)
            for bid_id, why in clearing.dropped.items()
        ]
        self.db.executemany("UPDATE bids SET status = ?, price = ?, reason = ? WHERE bid_id = ?", updates)

    def unconfirmed_winners(self) -> list[tuple[BidRow, AuctionRow]]:
        """Winning bids whose assignment is not yet seen on chain, with their auctions."""
        rows = self.db.execute(
            "SELECT bid_id FROM bids WHERE status = ? AND assigned_block IS NULL ORDER BY seq", (WON,)
        ).fetchall()
        found = []
        for r in rows:
            bid = self.bid(r[0])
            found.append((bid, self.auction(bid.task_id, bid.round)))
        return found

    def confirm(self, bid_id: str, block: int) -> None:
        self.db.execute("UPDATE bids SET assigned_block = ? WHERE bid_id = ?", (block, bid_id))

    def invalidate(self, bid_id: str, reason: str) -> None:
        """A winner whose assignment the registry skipped (or that was never mined)."""
        bid = self.bid(bid_id)
        self.db.execute(
            "UPDATE bids SET status = ?, price = NULL, reason = ? WHERE bid_id = ?", (INVALID, reason, bid_id)
        )
        self.db.execute(
            "UPDATE auctions SET note = COALESCE(note, '') || ? WHERE task_id = ? AND round = ?",
            (f"; {bid.prover} not assigned: {reason}", bid.task_id, bid.round),
        )

    # -------------------------------------------------------------- bids (API)

    def add_bid(
        self,
        task_id: str,
        round: int,
        prover: str,
        min_price: int,
        expiry: int,
        nonce: int,
        signature: bytes,
        cap: int,
    ) -> BidRow:
        """Store a sealed bid while its auction is open; the prover's earlier bids in it are
        replaced. Raises StoreRefusal: `closed`, `replayed` or `too_many` (the prover has
        made `cap` bids in this auction)."""
        bid_id = secrets.token_hex(16)
        signature_hex = "0x" + signature.hex()
        with self.transaction():
            row = self.db.execute(
                "SELECT state FROM auctions WHERE task_id = ? AND round = ?", (task_id, round)
            ).fetchone()
            if row is None or row[0] != OPEN:
                raise StoreRefusal("closed", f"the auction of task {task_id} (round {round}) is closed")
            if self.db.execute("SELECT 1 FROM bids WHERE signature = ?", (signature_hex,)).fetchone():
                raise StoreRefusal("replayed", "this signature was submitted before: a bid is accepted once")
            made = self.db.execute(
                "SELECT COUNT(*) FROM bids WHERE task_id = ? AND round = ? AND prover = ?",
                (task_id, round, prover),
            ).fetchone()[0]
            if made >= cap:
                raise StoreRefusal(
                    "too_many",
                    f"prover {prover} made {made} bids in this auction, the most it may: its latest "
                    "sealed bid stands",
                )
            try:
                seq = self.db.execute(
                    "INSERT INTO bids (bid_id, task_id, round, prover, min_price, expiry, nonce, signature, "
                    "received_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                    (
                        bid_id,
                        task_id,
                        round,
                        prover,
                        str(min_price),
                        str(expiry),
                        str(nonce),
                        signature_hex,
                        time.time(),
                        SEALED,
                    ),
                ).fetchone()[0]
            except Exception as error:
                if not is_integrity_error(error):
                    raise
                raise StoreRefusal("replayed", "this signature was submitted before") from None
            if made:
                self.db.execute(
                    "UPDATE bids SET status = ?, reason = ? WHERE task_id = ? AND round = ? AND prover = ? "
                    "AND status = ? AND seq < ?",
                    (
                        REPLACED,
                        f"replaced by the prover's later bid {bid_id}",
                        task_id,
                        round,
                        prover,
                        SEALED,
                        seq,
                    ),
                )
        return self.bid(bid_id)

    # -------------------------------------------------------------- reading

    def auction(self, task_id: str, round: int | None = None) -> AuctionRow | None:
        """An auction of a task: the given round, or the latest."""
        if round is None:
            r = self.db.execute(
                f"SELECT a.*, {_COUNT} FROM auctions a WHERE task_id = ? ORDER BY round DESC LIMIT 1",
                (task_id,),
            ).fetchone()
        else:
            r = self.db.execute(
                f"SELECT a.*, {_COUNT} FROM auctions a WHERE task_id = ? AND round = ?", (task_id, round)
            ).fetchone()
        return None if r is None else _auction(r)

    def winners(self, task_id: str, round: int) -> list[BidRow]:
        return [
            _bid(r)
            for r in self.db.execute(
                "SELECT * FROM bids WHERE task_id = ? AND round = ? AND status = ? "
                "ORDER BY CAST(min_price AS REAL), seq",
                (task_id, round, WON),
            )
        ]

    def bid(self, bid_id: str) -> BidRow | None:
        r = self.db.execute("SELECT * FROM bids WHERE bid_id = ?", (bid_id,)).fetchone()
        return None if r is None else _bid(r)

    def bids(self, task_id: str | None = None, statuses: Sequence[str] = ()) -> list[BidRow]:
        where, params = ["1 = 1"], []
        if task_id is not None:
            where.append("task_id = ?")
            params.append(task_id)
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        return [
            _bid(r)
            for r in self.db.execute(f"SELECT * FROM bids WHERE {' AND '.join(where)} ORDER BY seq", params)
        ]


# Bids counted for an auction: received and not replaced by the same prover's later one.
_COUNTED = "COUNT(*) FILTER (WHERE b.status != 'replaced')"
_COUNT = (
    f"CASE WHEN a.state = 'open' THEN (SELECT {_COUNTED} FROM bids b "
    "WHERE b.task_id = a.task_id AND b.round = a.round) ELSE a.bids END AS counted"
)


# Columns stored as decimal TEXT (uint256 values), read back as ints.
_DECIMALS = frozenset(("max_reward", "collateral", "capabilities", "price", "min_price", "expiry", "nonce"))


def _read(cls: type, r: Any, **given: Any) -> Any:
    """A row as `cls`: each field from the column of its name (decimals as ints), but
    those `given`."""
    values = {}
    for f in fields(cls):
        if f.name not in given:
            value = r[f.name]
            values[f.name] = int(value) if f.name in _DECIMALS and value is not None else value
    return cls(**values, **given)


def _auction(r: Any) -> AuctionRow:
    return _read(AuctionRow, r, bids=r["counted"] or 0)


def _bid(r: Any) -> BidRow:
    return _read(BidRow, r, signature=bytes.fromhex(r["signature"][2:]))
