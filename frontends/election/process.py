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
moved forward at most the least delay served at a time (so no round's block is passed: a
round's block is always its task's delay after the block that triggers it) and never past
a round's block before that round is drawn, and never past the keeper's mirror, so a
randomness block is used only once it has `--confirmations` blocks on it
(frontends/election/walk.py). The rounds drawn are kept in `rounds.sqlite` (versioned,
component `election_rounds`), each with its task's mechanism id and delay, apart from the
as-of mirror, which is rebuilt from the chain when its schema changes: the walk then
catches up past the rounds already drawn without drawing them again. The `verify` command
runs the same walk over an in-memory as-of mirror rebuilt from the deployment block, for
one task, with the delay its mechanism's registered name publishes (else `--delay`).

Instances: one process serves every `--mechanism` id, each with its own delay:
`--instance 4:delay=6`, else what the id's registered name publishes (`election/delay=6`),
else `--delay`. A name that disagrees with `--instance` stops it with one line
(frontends/process.py, `Instances`); an id registered later with a disagreeing name is
refused with `election.instance_refused` and none of its tasks drawn. The number of
provers drawn is no parameter: it is each task's open slots (its redundancy).

Each round is one log line: `election.draw` (task, its mechanism id and delay, round,
randomness block and hash, the randomness and its source, open slots, the eligible set,
the winners), `election.short` when fewer provers than open slots were eligible (the rest
stay open, drawn again later; the requester can cancel them), `election.over` when a
task's election ends. `election.waiting` names a randomness block that exists but lacks
confirmations (with its hash then); `election.redraw` and
`election.stale` report rounds a reorganisation took back, before and after their winners
were sent. The winners go out through the keeper (`election.decision`, then
`election.assigned` or `election.skipped` with the registry's reason); overdue
assignments are slashed by the keeper and their slots, reopened, drawn again.

A catch-up after a long stop costs about `D` + 4 RPC calls per `D` blocks, `D` the least
delay served.
The account must be one of the mechanism's frontends; the key is read from `--key-env`
(ELECTION_KEY by default). SIGTERM stops it after the round in progress.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click
from eth_utils import to_checksum_address
from web3 import Web3

from frontends import book
from frontends.book import task_hex
from frontends.election.mechanism import DEFAULT_DELAY, DRAWN, FULL, NONE, OVER, Draw, reports, verify_rounds
from frontends.election.walk import RoundStore, Walk
from frontends.keeper import Keeper, assign_key, keeper_options
from frontends.process import Instances, exit_on, instance_option, run_frontend, serve, shown, with_options
from provingmarket.chain.client import TASK_EVENTS, ClientError, RegistryClient, parse_task_id
from provingmarket.chain.database import connect as connect_db
from provingmarket.chain.mechanisms import published
from provingmarket.chain.mirror import Mirror, Snapshot
from provingmarket.formats import ZERO_ADDRESS, TaskTerms
from provingmarket.runtime.config import as_service
from provingmarket.runtime.datadir import ASOF, ROUNDS
from provingmarket.runtime.health import READY_AGE, READY_LAG
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import Stopper, connect, connection_options, emit

log = logging.getLogger("frontends.election.mechanism")

MAX_STEPS = 500  # as-of mirror steps per keeper round: a long catch-up leaves the loop breathing

__all__ = ["Elector", "RoundStore", "Walk", "main", "run_election", "task_rounds", "verify_task"]


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
        instances: dict[int, dict[str, int]] | None = None,
        **keeper: Any,
    ):
        self.metrics = metrics
        self.instances = Instances("election", {"delay": delay}, mechanisms, instances)
        self.instances.start(client)
        self.keeper = Keeper(
            client,
            data_dir,
            self.decide,
            self.instances.ids,
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
            on_round=self._on_round,
            on_dropped=self._on_dropped,
            max_steps=MAX_STEPS,
        )
        self.walk.serve(self.delays())
        self.seen_waiting: set[tuple[str, int, str]] = set()
        self.seen_unsent: set[tuple[str, int]] = set()

    def delays(self) -> dict[int, int]:
        """The delay of each instance served (its name checked), by mechanism id."""
        return {i: self.instances.get(i, "delay") or self.delay for i in self.instances.ready()}

    def run(self, stop: Stopper) -> None:
        emit(
            log,
            "election.config",
            delay=self.delay,
            delays=self.delays(),
            confirmations=self.confirmations,
            asof=self.asof.path,
        )
        try:
            self.keeper.run(stop)
        finally:
            self.asof.close()
            self.store.db.close()

    # -------------------------------------------------------------- each round

    def observe(self, snap: Snapshot, view: book.Snapshot) -> None:
        # The ids registered since are checked before the walk moves: a task's mechanism
        # is registered before the task, so no instance's task is walked past unchecked.
        self.instances.observe(snap)
        self.walk.serve(self.delays())
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
        self.metrics.counter(
            "rounds_total",
            "Election rounds drawn, by outcome and mechanism",
            kind=d.kind,
            mechanism=d.mechanism_id,
        )
        fields = d.fields()
        if d.kind == DRAWN:
            emit(log, "election.draw", **fields)
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
    DEFAULT_DELAY if not given), its `instances` (a delay per mechanism id given) and the
    Keeper's arguments (`keeper_options`)."""
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


def task_delay(client: RegistryClient, mechanism_id: int, given: int | None) -> tuple[int, str]:
    """The delay of a mechanism's tasks' rounds and where it comes from: the one its
    registered name publishes (`election/delay=4`), else `given`, else DEFAULT_DELAY. A
    `given` delay that the name disagrees with is a ClientError."""
    name = next(
        (e.args["name"] for e in client.events(["MechanismRegistered"]) if e.mechanism_id == mechanism_id), ""
    )
    params = published(name) or {}
    if name.partition("/")[0] != "election" or "delay" not in params:
        return (DEFAULT_DELAY, "the default") if given is None else (given, "--delay")
    if given is not None and given != params["delay"]:
        raise ClientError(
            f"mechanism {mechanism_id} is registered as '{name}': its tasks are drawn {params['delay']} "
            f"block(s) after their trigger, not --delay {given}; give --delay {params['delay']}, or none"
        )
    return params["delay"], f"published in its name '{name}'"


def verify_task(
    client: RegistryClient,
    task_id: bytes | str,
    frontend: str | None = None,
    delay: int | None = None,
    confirmations: int = 0,
) -> tuple[bool, list[str]]:
    """Recompute a task's rounds from the chain and compare them with what each frontend
    that assigned it (or `frontend`) sent: (matches, lines to print). The rounds' delay is
    the task's instance's (`task_delay`: its mechanism's published one, else `delay`)."""
    task_id = parse_task_id(task_id)
    horizon = client.web3.eth.block_number - confirmations
    events = client.events(TASK_EVENTS, task_id=task_id, to_block=horizon)
    posted = next((e for e in events if e.name == "TaskPosted"), None)
    if posted is None:
        raise ClientError(
            f"no task {task_hex(task_id)} posted in the registry at {client.address} up to block {horizon}"
        )
    terms = TaskTerms.from_event(posted.terms)
    delay, source = task_delay(client, terms.mechanism_id, delay)
    lines = [
        f"task {task_hex(task_id)}: mechanism {terms.mechanism_id}, {terms.redundancy} slot(s), "
        f"max reward {terms.max_reward} wei, posted in block {posted.block}; delay {delay} block(s) "
        f"({source}), chain read up to block {horizon}"
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
    """The election's own options (`delay`, `instances`), shared with `ape run election run`."""
    options = [
        shown(
            "--delay",
            DEFAULT_DELAY,
            click.IntRange(1, 256),
            "Blocks from a round's trigger (the task's posting, …) to its randomness block.",
        ),
        instance_option("election"),
    ]
    return with_options(command, options)


def verify_options(command: Callable) -> Callable:
    options = [
        click.argument("task_id"),
        click.option(
            "--frontend", help="Check this frontend only (default: every one that assigned the task)."
        ),
        click.option(
            "--delay",
            type=click.IntRange(1, 256),
            help="The delay of the task's instance: the one its mechanism's registered name publishes "
            f"(election/delay=4), else this (the frontend's --instance or --delay), else {DEFAULT_DELAY}.",
        ),
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


if __name__ == "__main__":
    main()
