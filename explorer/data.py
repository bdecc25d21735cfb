"""What the explorer's pages show, read from a keeper's mirror (provingmarket/chain/mirror/)
through a read-only SQLite connection of its own, or from the shared mirror an indexer
writes into Postgres (a `postgresql://` URL, read-only too): the explorer never writes to
the mirror or to the chain.

Each page's data is one plain dict (the templates render it; /api returns it as JSON),
read in one SQLite transaction so a page never mixes two cursors. Lists are paged
(`PAGE_SIZE` rows); queries use the mirror's indexes (tasks by posting block, assignments
by prover, events by name), so a page costs its rows, not the market's size. Aggregates
over the whole history (tasks per state, proof rates, the plots) are computed once per
mirror cursor and kept until the mirror moves.

Amounts stay integers of wei (the templates show ether); times are unix seconds from the
blocks' timestamps (the mirror's journal records each event's block time).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from explorer.inputs import (
    PAGE_SIZE,
    NotFound,
    Redirect,
    market_number,
    pages,
    prover_key,
    task_key,
)
from explorer.rows import (
    ASSIGNMENTS,
    BY_USE,
    STATE_SQL,
    TASK_STATES,
    CircuitInfo,
    assignment_row,
    chain_row,
    escrow_row,
    event_row,
    history_rows,
    mechanism_label,
    mechanism_names,
    membership_rows,
    proof_row,
    repost_links,
    standing_row,
    state_counts,
    state_of,
    task_rows,
    windows_row,
)
from provingmarket.chain.database import (
    Connection,
    StoreError,
    describe,
    is_unavailable,
    is_url,
    open_database,
)
from provingmarket.chain.index import IndexReading
from provingmarket.chain.mirror.schema import COMPONENT, SCHEMA_VERSION, loads
from provingmarket.deployments import Deployment
from provingmarket.formats import TaskTerms
from provingmarket.proving.circuits import Circuit, CircuitError

RECENT = 10  # tasks on the overview and a market's page
BUSIEST = 8  # provers per market on the overview, the most capacity in use first

# What each task state (rows.TASK_STATES, from its slots) means: what a person asks first.
STATE_HELP = {
    "open": "waiting for a prover: a slot can still be assigned",
    "assigned": "a prover holds a slot and is proving",
    "proven": "every slot ended and at least one proof was paid",
    "closed": "ended with no proof: the escrow went back to the requester",
}

# ------------------------------------------------------------------ the explorer's data


class Explorer:
    """The pages' data from the mirror at `mirror`; `deployment` (the operator's record)
    names each market's circuit (signals by name); `head` gives the chain's head block
    and its time when a node is at hand (else the mirror's cursor is shown alone), and
    `index` a market's price and latency index from the registry (its address, the market)."""

    def __init__(
        self,
        mirror: str | Path,
        deployment: Deployment | None = None,
        head: Callable[[], tuple[int, int] | None] | None = None,
        clock: Callable[[], float] = time.time,
        router_states: Sequence[Path] = (),
        sim_report: Path | None = None,
        summary_file: Path | None = None,
        index: Callable[[str, int], IndexReading | None] | None = None,
    ):
        self.url = str(mirror) if is_url(str(mirror)) else None  # the indexer's shared mirror
        self.path = Path(mirror)
        self.where = describe(self.url) if self.url else str(self.path)  # for messages: no password
        self._index = index  # a market's price and latency index, from the registry itself
        self.router_states = list(router_states)  # router state files (the mechanisms page)
        self.sim_report = sim_report  # a simulation report's folder (the mechanisms page)
        self.summary_file = summary_file  # a JSON {"title", "lines"} for the front page
        self.warmed: int | None = None  # the cursor whose whole-history figures are computed
        self.deployment = deployment
        self._head = head
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, Any]] = {}
        self._circuits: dict[int, CircuitInfo | None] = {}

    # -------------------------------------------------------------- connection

    def db(self) -> Connection:
        """This thread's read-only connection to the mirror."""
        db = getattr(self._local, "db", None)
        if db is None and self.url:
            try:
                db = open_database(self.url, COMPONENT, readonly=True)
            except StoreError as error:  # the server is not up (yet): the pages say so
                raise FileNotFoundError(str(error)) from None
            self._local.db = db
        if db is None:
            if not self.path.exists():
                raise FileNotFoundError(f"no mirror at {self.path}: start a keeper with this data directory")
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5)
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def read(self, build: Callable[[Connection], dict]) -> dict:
        """`build(db)` inside one read transaction: one cursor for the whole page."""
        with self._shared():
            db = self.db()
            db.execute("BEGIN")
            try:
                return build(db)
            finally:
                db.execute("COMMIT")

    def cursor(self) -> int:
        """The block the mirror has applied up to (-1 before its first sync)."""
        with self._shared():
            row = self.db().execute("SELECT value FROM meta WHERE key = 'cursor_block'").fetchone()
        return int(row[0]) if row and row[0] is not None else -1

    @contextmanager
    def _shared(self) -> Iterator[None]:
        """A shared mirror not written yet, or its server gone, as a missing file is: the
        pages say so (and the next request connects again)."""
        try:
            yield
        except Exception as error:
            if not self.url or not is_unavailable(error):
                raise
            db = getattr(self._local, "db", None)
            self._local.db = None
            if db is not None:
                with suppress(Exception):
                    db.close()
            reason = " ".join(str(error).split())[:200]
            raise FileNotFoundError(
                f"no mirror readable at {self.where}: {reason}; start the indexer on it "
                "(python -m provingmarket.runtime.indexer --database URL)"
            ) from None

    def status(self, db: Connection) -> dict:
        meta = {r["key"]: r["value"] for r in db.execute("SELECT key, value FROM meta")}
        if meta.get("schema") != SCHEMA_VERSION:
            raise FileNotFoundError(
                f"{self.where} is a mirror of schema {meta.get('schema')}, not {SCHEMA_VERSION}: "
                "let its keeper (this version) rebuild it"
            )
        cursor = int(meta.get("cursor_block") or -1)
        head = self._head() if self._head else None
        # the newest entry by the journal's key (block, log_index): MAX(time) would read
        # every entry (no index on time), 13 ms at 50,000 events, on every page
        newest = db.execute("SELECT time FROM journal ORDER BY block DESC, log_index DESC LIMIT 1").fetchone()
        last = newest[0] if newest else None
        return {
            "registry": meta.get("registry"),
            "chain_id": int(meta.get("chain_id") or 0),
            "cursor": cursor,
            "head": head[0] if head else None,
            "lag": head[0] - cursor if head else None,
            "now": head[1] if head else int(self._clock()),
            "last_event_time": last,
        }

    def cached(self, key: str, db: Connection, cursor: int, build: Callable[[], Any]) -> Any:
        """`build()` once per mirror cursor."""
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == cursor:
            return hit[1]
        value = build()
        with self._lock:
            self._cache[key] = (cursor, value)
        return value

    # -------------------------------------------------------------- circuits

    def circuit(self, market_id: int) -> CircuitInfo | None:
        """The market's circuit as the deployment record names it (None if it does not)."""
        if market_id not in self._circuits:
            record = self.deployment.markets.get(market_id) if self.deployment else None
            info = None
            if record is not None:
                try:
                    c = Circuit.load(record.circuit)
                    info = CircuitInfo(c.name, c.proving_system, c.public, c.outputs, c)
                except (CircuitError, OSError, ValueError):
                    info = None
            self._circuits[market_id] = info
        return self._circuits[market_id]

    # -------------------------------------------------------------- pages

    def overview(self) -> dict:
        def build(db: Connection) -> dict:
            status = self.status(db)
            stats = self.cached("overview", db, status["cursor"], lambda: history_rows(db))
            markets = self._markets(db)
            return {
                "status": status,
                "markets": markets,
                "states": stats["states"],
                "total": sum(stats["states"].values()),
                "proofs": stats["proofs"],
                "series": stats["series"],
                "recent": task_rows(db, "1 = 1", [], RECENT, 0, status["now"]),
                "mechanisms": mechanism_names(db),
                "summary": self.summary(),
                "busiest": {
                    m["market_id"]: membership_rows(
                        db, "m.market_id = ?", [m["market_id"]], 0, limit=BUSIEST, order=BY_USE
                    )
                    for m in markets
                },
            }

        return self.read(build)

    def summary(self) -> dict | None:
        """The front page's note (the demo writes one: what it ran and how it went)."""
        if self.summary_file is None:
            return None
        try:
            data = json.loads(self.summary_file.read_text())
            return {"title": str(data["title"]), "lines": [str(line) for line in data["lines"]]}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def market(self, market_id: int, page: int = 1) -> dict:
        def build(db: Connection) -> dict:
            status = self.status(db)
            markets = [m for m in self._markets(db) if m["market_id"] == market_id]
            if not markets:
                raise NotFound(f"there is no market {market_id}", "the overview lists every market")
            total = db.execute(
                "SELECT COUNT(*) FROM memberships WHERE joined = 1 AND market_id = ?", (market_id,)
            ).fetchone()[0]
            paging = pages(total, page, f"market {market_id}'s provers")
            states = self.cached(
                f"market-states-{market_id}", db, status["cursor"], lambda: state_counts(db, market_id)
            )
            return {
                "status": status,
                "market": markets[0],
                "states": states,
                "provers": membership_rows(db, "m.market_id = ?", [market_id], paging["offset"]),
                "paging": paging,
                "recent": task_rows(db, "t.market_id = ?", [market_id], RECENT, 0, status["now"]),
                "mechanisms": mechanism_names(db),
            }

        data = self.read(build)
        registry = data["status"]["registry"]
        found = self._index(registry, market_id) if self._index and registry else None
        data["index"] = found._asdict() if found else None
        return data

    def tasks(
        self, q: str = "", state: str = "", market: str = "", page: int = 1, redirect: bool = True
    ) -> dict:
        """The task list, newest first: filtered by state and market, or the tasks whose id
        starts with `q` (one match: `Redirect` to it)."""
        where, params = ["1 = 1"], []
        if q.strip():
            key = task_key(q)
            where.append("t.task_id >= ? AND t.task_id < ?")
            params += [key, key + "g"]  # every id with the prefix sorts between these
        if state:
            if state not in TASK_STATES:
                raise NotFound(f"“{state[:40]}” is not a task state", f"states: {', '.join(TASK_STATES)}")
            where.append(f"({STATE_SQL}) = ?")
            params.append(state)
        if market:
            where.append("t.market_id = ?")
            params.append(market_number(market))
        condition = " AND ".join(where)

        def build(db: Connection) -> dict:
            status = self.status(db)
            total = db.execute(f"SELECT COUNT(*) FROM tasks t WHERE {condition}", params).fetchone()[0]
            if q.strip() and total == 0:
                raise NotFound(
                    f"no task starts with {task_key(q)}",
                    "check the digits, or look through the task list; an id is 0x and 64 hex digits",
                )
            if q.strip() and total == 1 and redirect:
                only = db.execute(f"SELECT t.task_id FROM tasks t WHERE {condition}", params).fetchone()
                raise Redirect(f"/tasks/{only[0]}")
            paging = pages(total, page, "tasks")
            return {
                "status": status,
                "query": {"q": q, "state": state, "market": market},
                "tasks": task_rows(db, condition, params, PAGE_SIZE, paging["offset"], status["now"]),
                "paging": paging,
                "states": TASK_STATES,
                "markets": [r[0] for r in db.execute("SELECT market_id FROM markets ORDER BY market_id")],
                "mechanisms": mechanism_names(db),
            }

        return self.read(build)

    def task(self, text: str) -> dict:
        key = task_key(text)
        if len(key) != 66:
            self.tasks(q=text)  # a prefix: redirects to the one task, or says none matches
            raise NotFound(f"more than one task starts with {key}", "add digits, or pick one from the list")

        def build(db: Connection) -> dict:
            status = self.status(db)
            row = db.execute("SELECT * FROM tasks WHERE task_id = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(
                    f"there is no task {key}",
                    "the mirror may not have reached it yet (see the cursor), or search by its first digits",
                )
            terms = TaskTerms.from_event(loads(row["terms"]))
            slots = [
                dict(r) for r in db.execute("SELECT * FROM slots WHERE task_id = ? ORDER BY slot", (key,))
            ]
            events = [
                event_row(r)
                for r in db.execute(
                    "SELECT * FROM journal WHERE task_id = ? ORDER BY block, log_index", (key,)
                )
            ]
            names = mechanism_names(db)
            circuit = self.circuit(terms.market_id)
            proofs = [e for e in events if e["name"] == "TaskProven"]
            counts = {s: sum(1 for x in slots if x["state"] == s) for s in TASK_STATES}
            return {
                "status": status,
                "task_id": key,
                "state": state_of(counts),
                "state_help": STATE_HELP[state_of(counts)],
                "counts": counts,
                "terms": terms,
                "mechanism": mechanism_label(names, terms.mechanism_id),
                "chain": chain_row(names, terms, status["now"]),
                "slots": slots,
                "timeline": events,
                "prover_input": bytes(row["prover_input"]).decode(errors="replace"),
                "input_uri": row["input_uri"],
                "posted_tx": row["tx"],
                "proofs": [proof_row(e, circuit) for e in proofs],
                "circuit": circuit,
                "escrow": escrow_row(terms, events),
                "windows": windows_row(terms, status["now"]),
                **repost_links(db, key, terms, events),
            }

        return self.read(build)

    def provers(self, page: int = 1) -> dict:
        def build(db: Connection) -> dict:
            status = self.status(db)
            total = db.execute("SELECT COUNT(*) FROM provers").fetchone()[0]
            paging = pages(total, page, "provers")
            rows = db.execute(
                "SELECT p.*, COALESCE(b.amount, '0') AS balance, "
                "(SELECT COUNT(*) FROM memberships m WHERE m.prover = p.prover AND m.joined = 1) AS markets, "
                "(SELECT COUNT(*) FROM assignments a WHERE a.prover = p.prover AND a.state = 'proven') "
                "AS proofs, "
                "(SELECT COUNT(*) FROM assignments a WHERE a.prover = p.prover AND a.state = 'live') AS live "
                "FROM provers p LEFT JOIN balances b ON b.account = p.prover "
                "ORDER BY CAST(p.stake AS REAL) DESC, p.prover LIMIT ? OFFSET ?",
                (PAGE_SIZE, paging["offset"]),
            )
            return {"status": status, "provers": [standing_row(r) for r in rows], "paging": paging}

        return self.read(build)

    def prover(self, text: str, page: int = 1) -> dict:
        address = prover_key(text)

        def build(db: Connection) -> dict:
            status = self.status(db)
            row = db.execute(
                "SELECT p.*, COALESCE(b.amount, '0') AS balance FROM provers p "
                "LEFT JOIN balances b ON b.account = p.prover WHERE p.prover = ?",
                (address,),
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"no prover {address} has staked in this registry",
                    "the prover list shows every address that staked",
                )
            counts = {
                r["state"]: r["n"]
                for r in db.execute(
                    "SELECT state, COUNT(*) AS n FROM assignments WHERE prover = ? GROUP BY state", (address,)
                )
            }
            total = sum(counts.values())
            paging = pages(total, page, f"{address}'s assignments")
            history = [
                assignment_row(r, status["now"])
                for r in db.execute(
                    f"{ASSIGNMENTS} WHERE a.prover = ? "
                    "ORDER BY a.assigned_block DESC, a.task_id LIMIT ? OFFSET ?",
                    (address, PAGE_SIZE, paging["offset"]),
                )
            ]
            live = [
                assignment_row(r, status["now"])
                for r in db.execute(
                    f"{ASSIGNMENTS} WHERE a.prover = ? AND a.state = 'live' ORDER BY a.deadline",
                    (address,),
                )
            ]
            # the TaskProven entries of this prover's proven tasks (by the journal's task
            # index: a LIKE over every TaskProven's args reads the whole market's proofs)
            earned = [
                args
                for r in db.execute(
                    "SELECT j.args FROM assignments a JOIN journal j INDEXED BY journal_task "
                    "ON j.task_id = a.task_id WHERE a.prover = ? AND a.state = 'proven' "
                    "AND j.name = 'TaskProven'",
                    (address,),
                )
                if (args := json.loads(r["args"]))["prover"] == address
            ]
            proven, slashed = counts.get("proven", 0), counts.get("slashed", 0)
            return {
                "status": status,
                "standing": standing_row(row),
                "memberships": membership_rows(db, "m.prover = ?", [address], 0, limit=None),
                "live": live,
                "history": history,
                "paging": paging,
                "counts": {s: counts.get(s, 0) for s in ("live", "proven", "declined", "slashed", "voided")},
                "earned": sum(int(args["paid"]) for args in earned),
                "on_time_rate": proven / (proven + slashed) if proven + slashed else None,
                "mechanisms": mechanism_names(db),
            }

        return self.read(build)

    def _markets(self, db: Connection) -> list[dict]:
        capacity = {
            r["market_id"]: dict(r)
            for r in db.execute(
                "SELECT market_id, COUNT(*) AS provers, SUM(capacity) AS capacity, SUM(used) AS used "
                "FROM memberships WHERE joined = 1 GROUP BY market_id"
            )
        }
        tasks = {
            r["market_id"]: r["n"]
            for r in db.execute("SELECT market_id, COUNT(*) AS n FROM tasks GROUP BY market_id")
        }
        markets = []
        for r in db.execute("SELECT * FROM markets ORDER BY market_id"):
            c = capacity.get(r["market_id"], {})
            circuit = self.circuit(r["market_id"])
            markets.append(
                {
                    **dict(r),
                    "min_reward": int(r["min_reward"]),
                    "min_collateral": int(r["min_collateral"]),
                    "circuit": circuit.name if circuit else None,
                    "proving_system": circuit.proving_system if circuit else None,
                    "provers": c.get("provers") or 0,
                    "capacity": c.get("capacity") or 0,
                    "used": c.get("used") or 0,
                    "tasks": tasks.get(r["market_id"], 0),
                }
            )
        return markets


# ------------------------------------------------------------------ queries and rows
