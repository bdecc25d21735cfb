"""The election frontend's walk (frontends/election/process.py, "How it runs"): the as-of
mirror moved forward block by block, never past a round's randomness block before that
round is drawn, over the tasks of every instance it serves, each with its own delay; and
the rounds drawn (`RoundStore`, `rounds.sqlite`), each recorded with its task's mechanism
id and the delay it was drawn with. The `verify` command runs the same walk for one task.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from eth_utils import to_checksum_address

from frontends import book
from frontends.book import task_hex
from frontends.election.mechanism import DRAWN, OVER, Draw, make_round, next_round_block, randomness
from frontends.keeper import book_snapshot
from provingmarket.chain.database import Migration, migrate
from provingmarket.chain.mirror import Mirror, Snapshot, TaskView
from provingmarket.runtime.process import emit

log = logging.getLogger("frontends.election.mechanism")

ROUNDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS election_rounds (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, block INTEGER NOT NULL, block_hash TEXT NOT NULL,
    timestamp INTEGER NOT NULL, kind TEXT NOT NULL, open_slots INTEGER NOT NULL,
    eligible TEXT NOT NULL, winners TEXT NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (task_id, round));
CREATE INDEX IF NOT EXISTS election_rounds_block ON election_rounds (block);
CREATE TABLE IF NOT EXISTS election_done (task_id TEXT PRIMARY KEY, block INTEGER NOT NULL);
"""


# Migration i takes the rounds' file from schema version i to i + 1 (`database.migrate`);
# the first is the schema as it was before versions existed; the second records each
# round's randomness and its source (rounds drawn before it drew from block hashes); the
# third each round's mechanism id (its instance) and delay (0 for rounds drawn before).
ROUNDS_MIGRATIONS: list[Migration] = [
    ROUNDS_SCHEMA,
    "ALTER TABLE election_rounds ADD COLUMN source TEXT NOT NULL DEFAULT 'blockhash';\n"
    "ALTER TABLE election_rounds ADD COLUMN randomness TEXT NOT NULL DEFAULT '';",
    "ALTER TABLE election_rounds ADD COLUMN mechanism_id INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE election_rounds ADD COLUMN delay INTEGER NOT NULL DEFAULT 0;\n"
    "CREATE INDEX IF NOT EXISTS election_rounds_mechanism ON election_rounds (mechanism_id, block);",
]


class RoundStore:
    """The rounds drawn (`rounds.sqlite` in the data directory, or any connection)."""

    def __init__(self, db: sqlite3.Connection, path: str = ""):
        self.db = db
        migrate(self.db, "election_rounds", ROUNDS_MIGRATIONS, path)

    def add(self, d: Draw) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO election_rounds (task_id, round, block, block_hash, timestamp, kind, "
            "open_slots, eligible, winners, note, source, randomness, mechanism_id, delay) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task_hex(d.task_id),
                d.round,
                d.block,
                d.block_hash,
                d.timestamp,
                d.kind,
                d.open_slots,
                json.dumps(list(d.eligible)),
                json.dumps(list(d.winners)),
                d.note,
                d.source,
                d.value,
                d.mechanism_id,
                d.delay,
            ),
        )

    def rounds(self, task_id: bytes | str) -> list[Draw]:
        rows = self.db.execute(
            "SELECT * FROM election_rounds WHERE task_id = ? ORDER BY round", (task_hex(task_id),)
        ).fetchall()
        return [_draw(r) for r in rows]

    def of_mechanism(self, mechanism_id: int) -> list[Draw]:
        """The rounds of an instance's tasks, by block."""
        rows = self.db.execute(
            "SELECT * FROM election_rounds WHERE mechanism_id = ? ORDER BY block, task_id, round",
            (mechanism_id,),
        ).fetchall()
        return [_draw(r) for r in rows]

    def last(self, task_id: bytes | str) -> Draw | None:
        row = self.db.execute(
            "SELECT * FROM election_rounds WHERE task_id = ? ORDER BY round DESC LIMIT 1",
            (task_hex(task_id),),
        ).fetchone()
        return _draw(row) if row is not None else None

    def awaiting(self) -> list[Draw]:
        """The last round of every unfinished task, where it is a drawn one: winners to send
        (or sent and not yet reported), oldest first."""
        rows = self.db.execute(
            "SELECT r.* FROM election_rounds r WHERE r.kind = ? AND r.round = "
            "(SELECT MAX(round) FROM election_rounds s WHERE s.task_id = r.task_id) "
            "AND r.task_id NOT IN (SELECT task_id FROM election_done) ORDER BY r.block, r.task_id",
            (DRAWN,),
        ).fetchall()
        return [_draw(r) for r in rows]

    def done(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT task_id FROM election_done")}

    def finish(self, task_id: bytes | str, block: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO election_done VALUES (?, ?)", (task_hex(task_id), block))

    def drop_after(self, block: int) -> list[Draw]:
        """Forget the rounds of blocks after `block` (a reorganisation took them back)."""
        rows = self.db.execute(
            "SELECT * FROM election_rounds WHERE block > ? ORDER BY block, task_id", (block,)
        ).fetchall()
        self.db.execute("DELETE FROM election_rounds WHERE block > ?", (block,))
        self.db.execute("DELETE FROM election_done WHERE block > ?", (block,))
        return [_draw(r) for r in rows]


class Walk:
    """Moves the as-of mirror forward and draws every round whose block it reaches (see
    the module's description): the frontend's for all the tasks of its mechanisms, each
    task's rounds with its mechanism's delay (`delays`, else `delay`), the `verify`
    command's for one task (`task`, posted in `posted_block`, with `delay`).

    No round's block is passed: a round's block is its trigger plus its task's delay, and
    a trigger not seen yet (a task posted, a slot reopened, a report of the winners) lies
    after the cursor, so a step of at most the least delay served never passes one; the
    step also stops at every round's block known ahead."""

    def __init__(
        self,
        asof: Mirror,
        store: RoundStore,
        delay: int,
        frontend: str | None,
        mechanisms: Iterable[int] = (),
        task: bytes | None = None,
        posted_block: int | None = None,
        on_round: Callable[[Draw], None] | None = None,
        on_dropped: Callable[[list[Draw]], None] | None = None,
        max_steps: int | None = None,
        delays: Mapping[int, int] | None = None,
    ):
        _check_delay(delay)
        if (task is None) != (posted_block is None):
            raise ValueError("give both a task and the block it was posted in, or neither")
        self.asof = asof
        self.store = store
        self.delay = delay
        self.delays: dict[int, int] = {}
        self.frontend = to_checksum_address(frontend) if frontend else None
        self.mechanisms = tuple(sorted(set(mechanisms)))
        if delays:
            self.serve({**{m: delay for m in self.mechanisms}, **delays})
        self.task = task_hex(task) if task is not None else None
        self.posted_block = posted_block
        self.on_round = on_round or (lambda d: None)
        self.on_dropped = on_dropped or (lambda dropped: None)
        self.max_steps = max_steps
        self.pending: dict[str, int | None] = {}
        self._tasks: dict[
            str, tuple[int, int, int]
        ] = {}  # task -> (posted block, assignable until, mechanism)
        self._headers: dict[str, Any] = {}  # block hash -> its header (the cursor's only)
        self._missed: set[str] = set()

    def serve(self, delays: Mapping[int, int]) -> None:
        """Draw for the tasks of these mechanism ids (instances), each with its delay."""
        for mechanism_id, delay in delays.items():
            _check_delay(delay, f"mechanism {mechanism_id}'s delay")
        self.delays = dict(delays)
        self.mechanisms = tuple(sorted(self.delays))

    def delay_of(self, mechanism_id: int) -> int:
        """The delay of a mechanism's tasks' rounds."""
        return self.delays.get(mechanism_id, self.delay)

    def step(self) -> int:
        """The most blocks one step may move: the least delay of the mechanisms served."""
        return min((self.delay_of(m) for m in self.mechanisms), default=self.delay)

    def advance(self, horizon: int) -> list[Draw]:
        """Draw every round whose block is at most `horizon` (the keeper mirror's cursor, or
        the head less the confirmations); returns the rounds drawn."""
        made: list[Draw] = []
        if self._reorged(self.asof.sync(max_blocks=0)):  # only looks for a reorganisation
            return made
        made += self._draw_due()
        steps = 0
        while self.asof.cursor < horizon:
            pending = self._pending()
            if self.task is not None and self.task not in pending:
                break  # the task's election is over
            target = min([horizon, *(b for b in pending.values() if b is not None)])
            if self.task is None or self.asof.cursor >= self.posted_block:
                target = min(target, self.asof.cursor + self.step())  # a trigger may lie ahead
            # A reorganisation found by this sync may carry it past a round's block (it
            # rolls back, then syncs on to `target` in one go); `_pending` then reports
            # the round as missed. Looking for one just before narrows that to a race
            # with a reorganisation deeper than the confirmations.
            report = self.asof.sync(max_blocks=target - self.asof.cursor)
            if self._reorged(report) or self.asof.cursor != target:
                break
            made += self._draw_due()
            steps += 1
            if self.max_steps is not None and steps >= self.max_steps:
                break
        self.pending = self._pending()
        return made

    # -------------------------------------------------------------- helpers

    def _reorged(self, report: Any) -> bool:
        if not report.reorgs:
            return False
        fork = min(f for _, f in report.reorgs)
        self._tasks.clear()
        self._missed.clear()
        dropped = self.store.drop_after(fork)
        if dropped:
            self.on_dropped(dropped)
        return True

    def _candidates(self) -> dict[str, tuple[int, int, int]]:
        done = self.store.done()
        if self.task is not None:
            if self.task in done:
                return {}
            if self.task not in self._tasks:
                view = self.asof.task(self.task)
                if view is None:
                    return {self.task: (self.posted_block, 1 << 256, 0)}  # not posted yet, as of the cursor
                self._tasks[self.task] = (view.posted_block, view.assignable_until, view.terms.mechanism_id)
            return {self.task: self._tasks[self.task]}
        if not self.mechanisms:
            return {}  # no instance served yet (its name not checked)
        marks = ", ".join("?" for _ in self.mechanisms)
        rows = self.asof.db.execute(
            f"SELECT task_id FROM tasks WHERE mechanism_id IN ({marks})", self.mechanisms
        ).fetchall()
        for row in rows:
            if row["task_id"] not in self._tasks and row["task_id"] not in done:
                view = self.asof.task(row["task_id"])
                self._tasks[row["task_id"]] = (
                    view.posted_block,
                    view.assignable_until,
                    view.terms.mechanism_id,
                )
        return {tid: info for tid, info in self._tasks.items() if tid not in done}

    def _pending(self) -> dict[str, int | None]:
        """task -> the block of its next round (None: not known yet), for unfinished tasks."""
        cursor = self.asof.cursor
        now = self._time() if self.asof.cursor_hash else None
        pending: dict[str, int | None] = {}
        for tid, (posted, until, mechanism_id) in self._candidates().items():
            if now is not None and now > until and posted <= cursor:
                self.store.finish(tid, cursor)  # no round can come: its window is over
                continue
            last = self.store.last(tid)
            if last is not None and last.kind == OVER:
                self.store.finish(tid, last.block)
                continue
            delay = self.delay_of(mechanism_id)
            block = next_round_block(last, posted, self.asof.timeline(tid), self.frontend, delay)
            if block is not None and block < cursor:
                if tid not in self._missed:
                    self._missed.add(tid)
                    emit(
                        log,
                        "election.missed",
                        logging.ERROR,
                        task=tid,
                        block=block,
                        cursor=cursor,
                        reason="a reorganisation (or a delay shorter than before a restart) carried the "
                        "as-of mirror past this round's block; "
                        "the task gets no more rounds from this frontend (its requester can cancel)",
                    )
                self.store.finish(tid, cursor)
                continue
            pending[tid] = block
        return pending

    def _draw_due(self) -> list[Draw]:
        cursor = self.asof.cursor
        due = sorted(tid for tid, block in self._pending().items() if block == cursor)
        made = []
        for tid in due:
            view = self.asof.task(tid)
            if view is None:  # not posted, as of this block (the verifier was given a later block)
                continue
            timestamp = self._time()
            source, value = randomness(self._header())
            eligible: list[str] = []
            if view.open > 0 and timestamp <= view.assignable_until:
                eligible = self._eligible(view, timestamp)
            d = make_round(
                view.task_id,
                len(self.store.rounds(tid)),
                cursor,
                self.asof.cursor_hash,
                timestamp,
                view.assignable_until,
                view.open,
                view.assigned,
                eligible,
                source,
                value,
            )
            mechanism_id = view.terms.mechanism_id
            d = replace(d, mechanism_id=mechanism_id, delay=self.delay_of(mechanism_id))
            self.store.add(d)
            if d.kind == OVER:
                self.store.finish(tid, cursor)
            made.append(d)
            self.on_round(d)
        return made

    def _eligible(self, view: TaskView, timestamp: int) -> list[str]:
        """The eligible set of a task in the as-of mirror's state (frontends.book.eligible_provers)."""
        snap = Snapshot(
            block=self.asof.cursor,
            block_hash=self.asof.cursor_hash,
            markets={m.market_id: m for m in self.asof.markets()},
            mechanisms={},
            provers={p.prover: p for p in self.asof.provers()},
            memberships=tuple(self.asof.memberships(market_id=view.terms.market_id)),
            open_tasks=(view,),
            live=(),
        )
        state = book_snapshot(snap, timestamp, {view.terms.mechanism_id})
        return book.eligible_provers(state, state.tasks[0]) if state.tasks else []

    def _time(self) -> int:
        """The timestamp of the as-of mirror's cursor block."""
        return self._header()["timestamp"]

    def _header(self) -> Any:
        """The as-of mirror's cursor block (read by its hash): its timestamp and randomness."""
        block_hash = self.asof.cursor_hash
        if block_hash not in self._headers:
            self._headers = {block_hash: self.asof.web3.eth.get_block(block_hash)}
        return self._headers[block_hash]


def _check_delay(delay: int, what: str = "--delay") -> None:
    if delay < 1:
        raise ValueError(f"{what} {delay}: the randomness block must come 1 or more blocks after its trigger")


def _draw(row: sqlite3.Row) -> Draw:
    return Draw(
        task_id=bytes.fromhex(row["task_id"][2:]),
        round=row["round"],
        block=row["block"],
        block_hash=row["block_hash"],
        timestamp=row["timestamp"],
        kind=row["kind"],
        open_slots=row["open_slots"],
        eligible=tuple(json.loads(row["eligible"])),
        winners=tuple(json.loads(row["winners"])),
        note=row["note"],
        source=row["source"],
        value=row["randomness"],
        mechanism_id=row["mechanism_id"],
        delay=row["delay"],
    )
