"""The election frontend: for each task of its mechanism, N provers drawn at random from
those eligible, with the randomness of a block after the task was posted
(frontends/election/mechanism.py), assigned at the task's maximum reward, on the keeper runtime
(frontends/keeper.py); and the command that recomputes the draws of any task from the
chain and says whether a frontend's choices match them.

    ELECTION_KEY=0x… python -m frontends.election.process run \\
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json \\
        --mechanism 3 --data-dir /var/lib/provingmarket/election --delay 2 --confirmations 2

    python -m frontends.election.process verify 0x<task id> \\
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json

or through ape: `ape run election run --network … --account … --mechanism 3 --data-dir …` and
`ape run election verify 0x<task id> --network …`.

How it runs
-----------
Two mirrors of the registry, each in a file of the `--data-dir`. The keeper's
(`mirror.sqlite`, beside `outbox.sqlite`) follows the chain to the head less
`--confirmations` blocks: it says what is open now, what was sent, and what to slash. The
*as-of* mirror (`asof.sqlite`) is the registry's state at each randomness block: it is
moved forward at most `--delay` blocks at a time (so no round's block is passed: a round's
block is always `--delay` blocks after the block that triggers it) and never past a
round's block before that round is drawn, and never past the keeper's mirror, so a
randomness block is used only once it has `--confirmations` blocks on it. The rounds drawn
are kept in `rounds.sqlite` (versioned, component `election_rounds`), apart from the
as-of mirror, which is rebuilt from the chain when its schema changes: the walk then
catches up past the rounds already drawn without drawing them again. The `verify` command
runs the same walk over an in-memory as-of mirror rebuilt from the deployment block, for
one task.

Each round is one log line: `election.draw` (task, round, randomness block and hash,
the randomness and its source, open slots, the eligible set, the winners),
`election.short` when fewer provers than open slots were eligible (the rest stay open,
drawn again later; the requester can cancel them), `election.over` when a task's
election ends. `election.waiting` names a randomness block that exists but lacks
confirmations (with its hash then); `election.redraw` and
`election.stale` report rounds a reorganisation took back, before and after their winners
were sent. The winners go out through the keeper (`election.decision`, then
`election.assigned` or `election.skipped` with the registry's reason); overdue
assignments are slashed by the keeper and their slots, reopened, drawn again.

A catch-up after a long stop costs about `--delay` + 4 RPC calls per `--delay` blocks.
The account must be one of the mechanism's frontends; the key is read from `--key-env`
(ELECTION_KEY by default). SIGTERM stops it after the round in progress.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click
from eth_utils import to_checksum_address
from web3 import Web3

from frontends import book
from frontends.book import task_hex
from frontends.election.mechanism import (
    DEFAULT_DELAY,
    DRAWN,
    FULL,
    NONE,
    OVER,
    Draw,
    make_round,
    next_round_block,
    randomness,
    reports,
    verify_rounds,
)
from frontends.keeper import Keeper, assign_key, book_snapshot, keeper_options
from frontends.process import exit_on, run_frontend, serve, shown, with_options
from provingmarket.chain.client import TASK_EVENTS, ClientError, RegistryClient, parse_task_id
from provingmarket.chain.database import Migration, migrate
from provingmarket.chain.database import connect as connect_db
from provingmarket.chain.mirror import Mirror, Snapshot, TaskView
from provingmarket.formats import ZERO_ADDRESS, TaskTerms
from provingmarket.runtime.config import as_service
from provingmarket.runtime.datadir import ASOF, ROUNDS
from provingmarket.runtime.health import READY_AGE, READY_LAG
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import Stopper, connect, connection_options, emit

log = logging.getLogger("frontends.election.mechanism")

MAX_STEPS = 500  # as-of mirror steps per keeper round: a long catch-up leaves the loop breathing

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
# round's randomness and its source (rounds drawn before it drew from block hashes).
ROUNDS_MIGRATIONS: list[Migration] = [
    ROUNDS_SCHEMA,
    "ALTER TABLE election_rounds ADD COLUMN source TEXT NOT NULL DEFAULT 'blockhash';\n"
    "ALTER TABLE election_rounds ADD COLUMN randomness TEXT NOT NULL DEFAULT '';",
]


class RoundStore:
    """The rounds drawn (`rounds.sqlite` in the data directory, or any connection)."""

    def __init__(self, db: sqlite3.Connection, path: str = ""):
        self.db = db
        migrate(self.db, "election_rounds", ROUNDS_MIGRATIONS, path)

    def add(self, d: Draw) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO election_rounds (task_id, round, block, block_hash, timestamp, kind, "
            "open_slots, eligible, winners, note, source, randomness) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )

    def rounds(self, task_id: bytes | str) -> list[Draw]:
        rows = self.db.execute(
            "SELECT * FROM election_rounds WHERE task_id = ? ORDER BY round", (task_hex(task_id),)
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
    the module's description): the frontend's for all the tasks of its mechanisms, the
    `verify` command's for one task (`task`, posted in `posted_block`)."""

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
    ):
        if delay < 1:
            raise ValueError(
                f"--delay {delay}: the randomness block must come 1 or more blocks after its trigger"
            )
        if (task is None) != (posted_block is None):
            raise ValueError("give both a task and the block it was posted in, or neither")
        self.asof = asof
        self.store = store
        self.delay = delay
        self.frontend = to_checksum_address(frontend) if frontend else None
        self.mechanisms = tuple(sorted(set(mechanisms)))
        self.task = task_hex(task) if task is not None else None
        self.posted_block = posted_block
        self.on_round = on_round or (lambda d: None)
        self.on_dropped = on_dropped or (lambda dropped: None)
        self.max_steps = max_steps
        self.pending: dict[str, int | None] = {}
        self._tasks: dict[str, tuple[int, int]] = {}  # task -> (posted block, assignable until)
        self._headers: dict[str, Any] = {}  # block hash -> its header (the cursor's only)
        self._missed: set[str] = set()

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
                target = min(target, self.asof.cursor + self.delay)  # a trigger may lie ahead
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

    def _candidates(self) -> dict[str, tuple[int, int]]:
        done = self.store.done()
        if self.task is not None:
            if self.task in done:
                return {}
            if self.task not in self._tasks:
                view = self.asof.task(self.task)
                if view is None:
                    return {self.task: (self.posted_block, 1 << 256)}  # not posted yet, as of the cursor
                self._tasks[self.task] = (view.posted_block, view.assignable_until)
            return {self.task: self._tasks[self.task]}
        marks = ", ".join("?" for _ in self.mechanisms)
        rows = self.asof.db.execute(
            f"SELECT task_id FROM tasks WHERE mechanism_id IN ({marks})", self.mechanisms
        ).fetchall()
        for row in rows:
            if row["task_id"] not in self._tasks and row["task_id"] not in done:
                view = self.asof.task(row["task_id"])
                self._tasks[row["task_id"]] = (view.posted_block, view.assignable_until)
        return {tid: info for tid, info in self._tasks.items() if tid not in done}

    def _pending(self) -> dict[str, int | None]:
        """task -> the block of its next round (None: not known yet), for unfinished tasks."""
        cursor = self.asof.cursor
        now = self._time() if self.asof.cursor_hash else None
        pending: dict[str, int | None] = {}
        for tid, (posted, until) in self._candidates().items():
            if now is not None and now > until and posted <= cursor:
                self.store.finish(tid, cursor)  # no round can come: its window is over
                continue
            last = self.store.last(tid)
            if last is not None and last.kind == OVER:
                self.store.finish(tid, last.block)
                continue
            block = next_round_block(last, posted, self.asof.timeline(tid), self.frontend, self.delay)
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
                        reason="a reorganisation carried the as-of mirror past this round's block; "
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


class Elector:
    """The keeper's `observe` hook (move the walk, draw) and mechanism (send the winners)."""

    def __init__(
        self,
        client: RegistryClient,
        data_dir: str | None,
        mechanisms: Iterable[int],
        delay: int,
        metrics: Metrics,
        confirmations: int = 0,
        **keeper: Any,
    ):
        self.metrics = metrics
        self.keeper = Keeper(
            client,
            data_dir,
            self.decide,
            mechanisms,
            name="election",
            confirmations=confirmations,
            metrics=metrics,
            observe=self.observe,
            retry_after=0.0,  # a skipped winner is the next round's business, not a retry
            **keeper,
        )
        self.me = self.keeper.me
        self.web3 = client.web3
        self.delay = delay
        self.confirmations = confirmations
        data = self.keeper.data
        self.asof = data.mirror(client, None, confirmations, name=ASOF)
        self.store = RoundStore(connect_db(data.file(ROUNDS)), data.file(ROUNDS))
        data.bind(self.store.db, ROUNDS)
        self.walk = Walk(
            self.asof,
            self.store,
            delay,
            self.me,
            self.keeper.wanted,
            on_round=self._on_round,
            on_dropped=self._on_dropped,
            max_steps=MAX_STEPS,
        )
        self.seen_waiting: set[tuple[str, int, str]] = set()
        self.seen_unsent: set[tuple[str, int]] = set()

    def run(self, stop: Stopper) -> None:
        emit(log, "election.config", delay=self.delay, confirmations=self.confirmations, asof=self.asof.path)
        try:
            self.keeper.run(stop)
        finally:
            self.asof.close()
            self.store.db.close()

    # -------------------------------------------------------------- each round

    def observe(self, snap: Snapshot, view: book.Snapshot) -> None:
        self.walk.advance(snap.block)
        self._waiting(snap.block)

    def decide(self, view: book.Snapshot) -> list[book.Decision]:
        """Every drawn round's winners not yet sent, whole rounds, at most a batch."""
        mirror = self.keeper.mirror
        in_flight = self.keeper.outbox.in_flight_keys()
        decisions: list[book.Decision] = []
        for d in self.store.awaiting():
            task = mirror.task(d.task_id)
            if task is None or reports(mirror.timeline(d.task_id), self.me, d.block):
                continue  # not in the keeper's mirror (a reorganisation), or sent and reported
            if any(assign_key(d.task_id, p) in in_flight for p in d.winners):
                continue
            if (
                task.terms.mechanism_id not in view.mechanisms
                or view.now > task.assignable_until
                or not task.open
            ):
                key = (task_hex(d.task_id), d.round)
                if key not in self.seen_unsent:
                    self.seen_unsent.add(key)
                    why = (
                        "its assignment window is over"
                        if view.now > task.assignable_until
                        else "no slot is open any more"
                        if not task.open
                        else "this account is not serving its mechanism"
                    )
                    emit(log, "election.unsent", logging.WARNING, task=key[0], round=d.round, reason=why)
                continue
            if len(decisions) + len(d.winners) > self.keeper.batch_size:
                break  # a round's winners go in one transaction: the rest next round
            decisions += [book.Decision(d.task_id, task.terms, p, task.terms.max_reward) for p in d.winners]
        return decisions

    # -------------------------------------------------------------- logging

    def _on_round(self, d: Draw) -> None:
        self.metrics.counter("rounds_total", "Election rounds drawn, by outcome", kind=d.kind)
        fields = d.fields()
        if d.kind == DRAWN:
            emit(log, "election.draw", **fields, delay=self.delay)
        if d.short:
            # Once per shortage: a round that finds nobody after a short one says nothing new.
            previous = self.store.rounds(d.task_id)[-2:-1]
            if d.kind == DRAWN or not previous or not previous[0].short:
                emit(
                    log,
                    "election.short",
                    task=fields["task"],
                    round=d.round,
                    block=d.block,
                    open_slots=d.open_slots,
                    eligible=len(d.eligible),
                    drawn=len(d.winners),
                    left_open=d.open_slots - len(d.winners),
                    note="the rest stay open for the assignment window, drawn again in later rounds; "
                    "the requester can cancel them",
                )
        if d.kind == NONE:
            emit(log, "election.none", logging.DEBUG, **fields)
        elif d.kind == FULL:
            emit(log, "election.full", logging.DEBUG, task=fields["task"], round=d.round, block=d.block)
        elif d.kind == OVER:
            emit(log, "election.over", task=fields["task"], round=d.round, block=d.block, reason=d.note)

    def _on_dropped(self, dropped: list[Draw]) -> None:
        mirror = self.keeper.mirror
        keys = {key for sent in self.keeper.outbox.rows() for key in sent.keys}
        for d in dropped:
            sent = d.kind == DRAWN and (
                any(assign_key(d.task_id, p) in keys for p in d.winners)
                or bool(reports(mirror.timeline(d.task_id), self.me, d.block))
            )
            emit(
                log,
                "election.stale" if sent else "election.redraw",
                logging.WARNING if sent else logging.INFO,
                task=task_hex(d.task_id),
                round=d.round,
                block=d.block,
                block_hash=d.block_hash,
                winners=list(d.winners),
                reason=(
                    "a reorganisation deeper than the confirmations replaced its randomness block after "
                    "its winners were sent; `verify` will not match them"
                    if sent
                    else "a reorganisation replaced its randomness block: drawn again from the new one"
                ),
            )

    def _waiting(self, horizon: int) -> None:
        """One line per randomness block (and hash) that exists but is not confirmed yet."""
        waiting = [(tid, b) for tid, b in self.walk.pending.items() if b is not None and b > horizon]
        if not waiting:
            return
        head = self.web3.eth.block_number
        for tid, number in waiting:
            if number > head:
                continue
            block_hash = Web3.to_hex(self.web3.eth.get_block(number)["hash"])
            if (tid, number, block_hash) in self.seen_waiting:
                continue
            self.seen_waiting.add((tid, number, block_hash))
            emit(
                log,
                "election.waiting",
                task=tid,
                block=number,
                block_hash=block_hash,
                head=head,
                confirmed_at_head=number + self.confirmations,
            )


def run_election(
    client: RegistryClient,
    metrics_port: int | None = None,
    stop: Stopper | None = None,
    ready_lag: int = READY_LAG,
    ready_age: float = READY_AGE,
    **options,
):
    """Run the election frontend until `stop` (SIGTERM); `options` are its delay (blocks,
    DEFAULT_DELAY if not given) and the Keeper's arguments (`keeper_options`)."""
    options.setdefault("delay", DEFAULT_DELAY)
    run_frontend(
        "election",
        lambda metrics: Elector(client, metrics=metrics, **options),
        metrics_port,
        stop,
        ready_lag,
        ready_age,
    )


# ------------------------------------------------------------------ verify


def task_rounds(
    client: RegistryClient, task_id: bytes, posted_block: int, frontend: str | None, delay: int, horizon: int
) -> list[Draw]:
    """A task's rounds up to block `horizon`, for `frontend`, recomputed from the chain: an
    in-memory as-of mirror rebuilt from the deployment block."""
    with Mirror(":memory:", client, client.from_block) as asof:
        store = RoundStore(connect_db(":memory:"))
        Walk(asof, store, delay, frontend, task=task_id, posted_block=posted_block).advance(horizon)
        return store.rounds(task_id)


def verify_task(
    client: RegistryClient,
    task_id: bytes | str,
    frontend: str | None = None,
    delay: int = DEFAULT_DELAY,
    confirmations: int = 0,
) -> tuple[bool, list[str]]:
    """Recompute a task's rounds from the chain and compare them with what each frontend
    that assigned it (or `frontend`) sent: (matches, lines to print)."""
    task_id = parse_task_id(task_id)
    horizon = client.web3.eth.block_number - confirmations
    events = client.events(TASK_EVENTS, task_id=task_id, to_block=horizon)
    posted = next((e for e in events if e.name == "TaskPosted"), None)
    if posted is None:
        raise ClientError(
            f"no task {task_hex(task_id)} posted in the registry at {client.address} up to block {horizon}"
        )
    terms = TaskTerms.from_event(posted.terms)
    lines = [
        f"task {task_hex(task_id)}: mechanism {terms.mechanism_id}, {terms.redundancy} slot(s), "
        f"max reward {terms.max_reward} wei, posted in block {posted.block}; delay {delay} block(s), "
        f"chain read up to block {horizon}"
    ]
    if frontend:
        frontends = [to_checksum_address(frontend)]
    else:
        frontends = sorted(
            {
                to_checksum_address(e.frontend)
                for e in events
                if e.name in ("TaskAssigned", "AssignmentSkipped") and e.frontend != ZERO_ADDRESS
            }
        )
    if not frontends:
        for d in task_rounds(client, task_id, posted.block, None, delay, horizon)[:1]:
            lines.append(
                f"round 0 at block {d.block} ({d.block_hash}, randomness: {d.source}): {d.kind}, "
                f"drawn {', '.join(d.winners)}"
            )
        lines.append("does not match: no frontend has sent an assignment for this task, nothing to compare")
        return False, lines
    matches = True
    problems: list[str] = []
    for f in frontends:
        rounds = task_rounds(client, task_id, posted.block, f, delay, horizon)
        verdict = verify_rounds(rounds, events, f, terms.max_reward, delay)
        lines.append(f"frontend {f}:")
        lines += [f"  {line}" for line in verdict.lines]
        if not verdict.matches:
            matches = False
            problems += [f"{f}: {p}" for p in verdict.problems] or [f"{f}: sent nothing for this task"]
    lines.append("matches" if matches else "does not match: " + "; ".join(problems))
    return matches, lines


# ------------------------------------------------------------------ commands


def election_options(command: Callable) -> Callable:
    """The election's own option (`delay`), shared with `ape run election run`."""
    return shown(
        "--delay",
        DEFAULT_DELAY,
        click.IntRange(1, 256),
        "Blocks from a round's trigger (the task's posting, …) to its randomness block.",
    )(command)


def verify_options(command: Callable) -> Callable:
    options = [
        click.argument("task_id"),
        click.option(
            "--frontend", help="Check this frontend only (default: every one that assigned the task)."
        ),
        shown("--delay", DEFAULT_DELAY, click.IntRange(1, 256), "The frontend's --delay."),
        shown(
            "--confirmations",
            0,
            click.IntRange(0, 1000),
            "Read the chain up to the head less this many blocks.",
        ),
    ]
    return with_options(command, options)


def print_verdict(matches: bool, lines: list[str]) -> None:
    for line in lines:
        click.echo(line)
    sys.exit(0 if matches else 1)


@click.group()
def main():
    """Elect provers at random for tasks (run), and check a frontend's elections (verify)."""


@main.command()
@connection_options("ELECTION_KEY")
@election_options
@keeper_options
def run(**options):
    """Draw provers at random for the open tasks of a mechanism, and assign them."""
    serve(run_election, **options)


@main.command()
@click.option("--rpc", default="http://127.0.0.1:8545", show_default=True, help="The node's JSON-RPC URL.")
@click.option(
    "--deployment",
    required=True,
    type=click.Path(dir_okay=False),
    help="The deployment record (deployments/<network>.json).",
)
@verify_options
def verify(rpc, deployment, task_id, frontend, delay, confirmations):
    """Recompute a task's draws from the chain; say whether the frontends' choices match."""
    with exit_on():
        client = connect(rpc, deployment, None)
        matches, lines = verify_task(client, task_id, frontend, delay, confirmations)
    print_verdict(matches, lines)


as_service(main)
as_service(run, "PROVINGMARKET_ELECTION")
as_service(verify)


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
    )


if __name__ == "__main__":
    main()
