"""The keeper runtime every frontend shares: follow the registry, decide, send, settle.

    keeper = Keeper(client, "data/orderbook", match_orders, mechanisms={3}, name="orderbook")
    keeper.run(Stopper())      # until SIGTERM

Its files are in a data directory (provingmarket/runtime/datadir.py): `mirror.sqlite`
(rebuilt from the chain when its schema changes) and `outbox.sqlite`, both bound to the
chain the keeper started on. With `--database URL` the mirror is instead the shared one an
indexer writes into Postgres (provingmarket/runtime/indexer.py, read through
provingmarket/chain/mirror/shared.py): step 1 reads where the indexer is rather than
syncing, and while it trails the head by more than `--ready-lag` blocks a round does
nothing but say so, once (`<name>.mirror_stale`, then `<name>.mirror_caught_up`).

A round
-------
0. **Same chain.** One call checks the node is still the chain the data directory
   belongs to; if it was replaced (a devnet restarted), `WrongChain` ends the process
   (exit code 2) before anything stored is sent to the new chain.
1. **Follow.** `Mirror.sync()` applies the registry's events up to the head less
   `confirmations` blocks into the SQLite mirror (provingmarket/chain/mirror.py): backfilling from
   its cursor after a restart, rolling back blocks a reorg dropped.
2. **Settle.** `Outbox.settle(cursor)` looks up every transaction sent and not yet seen
   by the mirror (provingmarket/chain/outbox.py): each one mined is reported once, one decision
   per line (`keeper.assigned`, or `keeper.skipped` with the registry's reason); one a
   reorg dropped or the node lost is rebroadcast, byte for byte.
3. **Snapshot.** The mirror's state at the pending block's time becomes a
   `frontends.book.Snapshot` for the mechanisms this frontend is registered for, with
   the work still in flight applied to it: an assignment sent and not yet in the mirror
   takes its slot, a unit of the prover's capacity and the collateral from its free
   stake, and bars the prover from the task; a (task, prover) pair the registry skipped
   is left alone for `retry_after` seconds. So a decision is never sent twice, whether
   the keeper restarted in between or not, and the next round's decisions fit what the
   last round's will leave. An `observe` hook, if given, sees the mirror's snapshot and
   this view every round (also when no task is open), before the mechanism decides.
4. **Decide and send.** The mechanism (a plain function of the snapshot) decides; the
   decisions go out in `assign_batch` transactions of at most `batch_size` items, each
   stored in the outbox before it leaves. One `keeper.decision` line per decision.
5. **Housekeeping.** For tasks of its mechanisms the keeper slashes assignments whose
   deadline passed without a proof (the slot reopens while the assignment window lasts,
   so it is matched again next round; the caller's share of the collateral pays for the
   transaction) and reclaims the escrow of slots nobody filled once the assignment
   window is over. So every task it serves ends proven, slashed and reassigned, or
   refunded.

Rounds run every `poll` seconds; connected with WebSocket URLs (`--ws`), also as soon as
a new head arrives (provingmarket/chain/heads.py; the subscription only wakes the round,
which reads the registry's events over HTTP as above). A node that stops answering is
waited for with backoff (`runtime.run_forever`); one of several endpoints that stops
answering is left for the next (provingmarket/chain/endpoints.py). A round
that fails half-way leaves nothing half-done: the mirror writes whole ranges, the
outbox writes before it sends. SIGTERM ends the loop after the round in progress.

Metrics (Prometheus, `--metrics-port`): events applied, tasks open, assignments sent,
applied and skipped (by reason), batches and their gas, slashes and reclaims sent, lag
behind the head in blocks, RPC errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from eth_utils import to_checksum_address
from web3 import Web3

from frontends import book
from frontends.book import BUILT_IN, task_hex
from frontends.process import data_dir_option, legacy_db_option, shown, with_options
from provingmarket import rules
from provingmarket.chain.client import Event, Refused, RegistryClient, chain_time
from provingmarket.chain.heads import follow_heads
from provingmarket.chain.mirror import Mirror, SharedMirror, Snapshot
from provingmarket.chain.outbox import REPLACE_AFTER, Outcome, Sent
from provingmarket.formats import MAX_BATCH
from provingmarket.runtime.config import config_option, readiness_options
from provingmarket.runtime.datadir import DataDir, open_data_dir
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import Stopper, emit, fee_options, gwei_to_wei, run_forever

log = logging.getLogger("frontends.keeper")

Mechanism = Callable[[book.Snapshot], list[book.Decision]]
Observer = Callable[[Snapshot, book.Snapshot], None]

HOLD_SECONDS = 10.0  # a slash or reclaim the registry refused is tried again after this
HOUSEKEEPING = {"slash": "slashes", "reclaim": "reclaims"}  # each one's metric: <name>_sent_total


def assign_key(task_id: bytes, prover: str) -> str:
    return f"assign:0x{bytes(task_id).hex()}:{to_checksum_address(prover)}"


def parse_assign_key(key: str) -> tuple[bytes, str] | None:
    kind, _, rest = key.partition(":")
    if kind != "assign":
        return None
    task, _, prover = rest.partition(":")
    return bytes.fromhex(task[2:]), prover


def book_snapshot(
    snap: Snapshot,
    now: int,
    mechanisms: Iterable[int],
    in_flight: Iterable[tuple[bytes, str]] = (),
    barred: Iterable[tuple[bytes, str]] = (),
) -> book.Snapshot:
    """What a mechanism sees: the mirror's state with work in flight applied.

    `in_flight`: (task id, prover) assignments sent and not yet in the mirror; each takes
    a slot of its task, a unit of the prover's capacity in the market and the task's
    collateral from its free stake, and bars the prover from the task.
    `barred`: (task id, prover) pairs not to decide now (the registry skipped them lately).
    """
    mechanisms = frozenset(mechanisms)
    # A chained task is this frontend's only while its mechanism's link is current.
    tasks = {t.task_id: t for t in snap.open_tasks if rules.mechanism_at(t.terms, now) in mechanisms}
    open_slots = {tid: t.open for tid, t in tasks.items()}
    bars: dict[bytes, set[str]] = {tid: set(t.engaged) for tid, t in tasks.items()}
    free = {p.prover: p.free for p in snap.provers.values()}
    used = {(m.prover, m.market_id): m.used for m in snap.memberships}
    for task_id, prover in in_flight:
        task = tasks.get(task_id)
        if task is None or prover in bars[task_id]:
            continue  # the mirror already shows it, or the task is not ours to fill
        open_slots[task_id] = max(0, open_slots[task_id] - 1)
        bars[task_id].add(prover)
        free[prover] = free.get(prover, 0) - task.terms.collateral
        key = (prover, task.terms.market_id)
        used[key] = used.get(key, 0) + 1
    for task_id, prover in barred:
        if task_id in bars:
            bars[task_id].add(to_checksum_address(prover))
    return book.Snapshot(
        now=now,
        mechanisms=mechanisms,
        markets=tuple(book.MarketState(m.market_id, m.paused) for m in snap.markets.values()),
        provers=tuple(book.ProverState(p, max(0, f)) for p, f in free.items()),
        memberships=tuple(
            book.MembershipState(
                prover=m.prover,
                market_id=m.market_id,
                ask=m.ask,
                capacity=m.capacity,
                used=used[(m.prover, m.market_id)],
                proving_time=m.proving_time,
                capabilities=m.capabilities,
                mechanisms=frozenset(m.mechanisms),
                since=m.since,
            )
            for m in snap.memberships
        ),
        tasks=tuple(
            book.OpenTask(t.task_id, t.terms, open_slots[tid], frozenset(bars[tid]))
            for tid, t in tasks.items()
            if open_slots[tid] > 0
        ),
    )


class Keeper:
    def __init__(
        self,
        client: RegistryClient,
        data_dir: str | Path | DataDir | None,
        mechanism: Mechanism,
        mechanisms: Iterable[int],
        name: str = "keeper",
        confirmations: int = 0,
        batch_size: int = MAX_BATCH,
        poll: float = 1.0,
        slash: bool = True,
        reclaim: bool = True,
        retry_after: float = 60.0,
        start_block: int | None = None,
        metrics: Metrics | None = None,
        observe: Observer | None = None,
        legacy_db: str | None = None,
        replace_after: float = REPLACE_AFTER,
        max_fee_gwei: float | None = None,
        database: str | None = None,
    ):
        """`data_dir`: the directory of its files (None: the default for `name`, the chain
        and the account); `legacy_db`: a file of the previous layout to move the outbox
        out of (provingmarket/runtime/datadir.py); `database`: a shared mirror's URL,
        read and not synced (its indexer writes it: provingmarket/runtime/indexer.py)."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch size {batch_size}: the registry takes 1 to {MAX_BATCH} items per batch")
        wanted = set(mechanisms)
        if not wanted or wanted & BUILT_IN:
            raise ValueError(
                "give the id of a registered mechanism; the open race and the Dutch auction need no frontend"
            )
        self.client = client
        self.web3: Web3 = client.web3
        self.me = client.signer.address
        self.mechanism = mechanism
        self.wanted = wanted
        self.name = name
        self.batch_size = batch_size
        self.poll = poll
        self.slash = slash
        self.reclaim = reclaim
        self.retry_after = retry_after
        if isinstance(data_dir, DataDir):
            self.data = data_dir
        else:
            self.data = open_data_dir(client, name, data_dir, legacy_db)
        self.metrics = metrics or Metrics(name)
        self.outbox = self.data.outbox(
            client, self.metrics, replace_after=replace_after, max_fee_per_gas=gwei_to_wei(max_fee_gwei)
        )
        self.database = database
        self.mirror: Mirror | SharedMirror
        if database:  # the indexer's mirror: rounds wait while it trails the head by more than --ready-lag
            self.mirror = SharedMirror(database, client, confirmations, self.metrics.health.max_lag)
        else:
            self.mirror = self.data.mirror(client, start_block, confirmations)
        self.stale = False
        self.observe = observe
        self.cooling: dict[tuple[bytes, str], float] = {}  # (task, prover) skipped -> until
        self.held: dict[str, float] = {}  # slash or reclaim refused -> not before
        self.warned: set[int] = set()
        self.rounds = 0

    # -------------------------------------------------------------- the loop

    def run(self, stop: Stopper) -> None:
        self._say("start", frontend=self.me, mechanisms=sorted(self.wanted), cursor=self.mirror.cursor)
        self.metrics.health.running(True)
        heads = follow_heads(self.client, self.name)  # None: no --ws, rounds every `poll` seconds
        try:
            run_forever(self.round, stop, self.poll, self.name, on_error=self._on_error, heads=heads)
        finally:
            if heads is not None:
                heads.close()
            self.metrics.health.running(False)
            self._say("stop", signal=stop.signal, rounds=self.rounds)
            self.close()

    def close(self) -> None:
        self.mirror.close()
        self.outbox.db.close()

    def _on_error(self, kind: str) -> None:
        self.metrics.counter("errors_total", "Rounds that failed, by kind", kind=kind)

    def round(self) -> list[book.Decision]:
        started = time.monotonic()
        self.data.check(self.web3)
        report = self.mirror.sync()
        if self._stale(report.stale):
            return []
        self.metrics.counter("events_applied_total", "Registry events applied to the mirror", report.applied)
        if report.reorgs:
            self.metrics.counter("reorgs_total", "Reorganisations rolled back", len(report.reorgs))
            self.outbox.rollback(min(fork for _, fork in report.reorgs))
        head = self.web3.eth.block_number
        self.metrics.gauge(
            "lag_blocks", "Blocks between the chain's head and the mirror's cursor", head - self.mirror.cursor
        )
        self._settled(self.outbox.settle(self.mirror.cursor))

        now = chain_time(self.web3)
        snap = self.mirror.snapshot(now)
        mechanisms = self._mechanisms(snap)
        busy = self.outbox.in_flight_keys()  # read once a round: housekeeping uses it too
        in_flight = [parsed for key in busy if (parsed := parse_assign_key(key)) is not None]
        wall = time.monotonic()
        self.cooling = {pair: until for pair, until in self.cooling.items() if until > wall}
        self.held = {key: until for key, until in self.held.items() if until > wall}
        view = book_snapshot(snap, now, mechanisms, in_flight, self.cooling)
        if self.observe is not None:
            self.observe(snap, view)
        self.metrics.gauge(
            "tasks_open", "Tasks of this frontend's mechanisms with open slots", len(view.tasks)
        )
        decisions = self.mechanism(view) if view.tasks else []
        for start in range(0, len(decisions), self.batch_size):
            self._send(decisions[start : start + self.batch_size])
        if self.slash:
            self._slash_overdue(now, mechanisms, busy)
        if self.reclaim:
            self._reclaim_expired(now, mechanisms, busy)
        self.rounds += 1
        seconds = time.monotonic() - started
        self.metrics.observe("round_seconds", "Time a keeper round takes", seconds)
        self.metrics.health.round_done(head, self.mirror.cursor, self.mirror.confirmations)
        if decisions or report.applied:
            self._say(
                "round",
                cursor=self.mirror.cursor,
                head=head,
                applied=report.applied,
                open_tasks=len(view.tasks),
                decisions=len(decisions),
                in_flight=len(in_flight),
                ms=round(seconds * 1000),
            )
        return decisions

    def _stale(self, why: str) -> bool:
        """Whether the shared mirror trails the chain too far to act on: said once when it
        starts (`<name>.mirror_stale`) and once when it ends (`<name>.mirror_caught_up`)."""
        if why and not self.stale:
            self._say("mirror_stale", logging.WARNING, reason=why)
        elif not why and self.stale:
            self._say("mirror_caught_up", cursor=self.mirror.cursor)
        self.stale = bool(why)
        return self.stale

    def _mechanisms(self, snap: Snapshot) -> set[int]:
        """The wanted mechanisms this account is a frontend of (and not retired)."""
        serving = set()
        for mechanism_id in sorted(self.wanted):
            found = snap.mechanisms.get(mechanism_id)
            if found is not None and not found.retired and self.me in found.frontends:
                serving.add(mechanism_id)
                self.warned.discard(mechanism_id)
            elif mechanism_id not in self.warned:
                self.warned.add(mechanism_id)
                why = (
                    "no such mechanism"
                    if found is None
                    else "it is retired"
                    if found.retired
                    else f"{self.me} is not one of its frontends; its registrant adds it with "
                    f"`ape run operator mechanism frontend {mechanism_id} {self.me}`"
                )
                self._say("not_serving", logging.WARNING, mechanism=mechanism_id, reason=why)
        return serving

    # -------------------------------------------------------------- sending

    def _send(self, batch: Sequence[book.Decision]) -> None:
        keys = [assign_key(d.task_id, d.prover) for d in batch]
        try:
            sent = self.outbox.send("assign_batch", [d.as_item() for d in batch], keys=keys)
        except Refused as refused:  # the whole batch would revert: not a frontend, paused…
            self._say("batch_refused", logging.WARNING, items=len(batch), reason=refused.reason)
            self.metrics.counter("batches_refused_total", "Batches the registry would revert")
            return
        self.metrics.counter("batches_sent_total", "assign_batch transactions sent")
        self.metrics.counter("assignments_sent_total", "Assignments sent", len(batch))
        for d in batch:
            self._say(
                "decision",
                task=task_hex(d.task_id),
                prover=d.prover,
                price=d.price,
                max_reward=d.terms.max_reward,
                mechanism=d.terms.mechanism_id,
                tx=sent.tx_hash,
                nonce=sent.nonce,
            )

    def _settled(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            sent = outcome.sent
            if outcome.kind == "mined" and sent.fn == "assign_batch":
                self.metrics.counter(
                    "gas_used_total", "Gas used by assign_batch transactions", sent.gas_used or 0
                )
                for e in outcome.events:
                    if e.name in ("TaskAssigned", "AssignmentSkipped") and e.frontend == self.me:
                        self._assignment_settled(e, sent)
            elif outcome.kind == "mined" and sent.fn in ("slash", "reclaim"):
                for e in outcome.events:
                    if e.name == "Slashed":
                        self._say(
                            "slashed",
                            task=task_hex(e.task_id),
                            prover=e.prover,
                            collateral=e.collateral,
                            reopened=e.reopened,
                            to_caller=e.to_caller,
                        )
                    elif e.name == "SlotsClosed":
                        self._say("reclaimed", task=task_hex(e.task_id), tx=sent.tx_hash)
            elif outcome.kind in ("reverted", "dropped", "reorged"):
                self.metrics.counter(
                    "transactions_lost_total",
                    "Sent transactions reverted, dropped or reorged",
                    kind=outcome.kind,
                )

    def _assignment_settled(self, e: Event, sent: Sent) -> None:
        """One of this frontend's assignments mined: applied, or skipped with the registry's
        reason (the pair then cools for `retry_after` seconds)."""
        if e.name == "TaskAssigned":
            self.metrics.counter("assignments_applied_total", "Assignments the registry applied")
            kind, fields = "assigned", {"slot": e.slot, "price": e.price, "deadline": e.deadline}
        else:
            self.metrics.counter(
                "assignments_skipped_total", "Assignments the registry skipped", reason=e.reason
            )
            self.cooling[(bytes(e.task_id), e.prover)] = time.monotonic() + self.retry_after
            kind, fields = "skipped", {"reason": e.reason}
        self._say(
            kind, task=task_hex(e.task_id), prover=e.prover, **fields, tx=sent.tx_hash, block=sent.block
        )

    def _slash_overdue(self, now: int, mechanisms: set[int], busy: set[str]) -> None:
        for a in self.mirror.overdue(now):
            if mechanisms.intersection(rules.mechanisms_of(a.terms)):
                self._housekeep(
                    "slash",
                    f"slash:{task_hex(a.task_id)}:{a.prover}:{a.slot}",
                    busy,
                    (a.terms.as_tuple(), a.prover, (a.slot, a.price, a.deadline, a.frontend)),
                    {"task": task_hex(a.task_id), "prover": a.prover},
                    deadline=a.deadline,
                )

    def _reclaim_expired(self, now: int, mechanisms: set[int], busy: set[str]) -> None:
        for t in self.mirror.open_tasks():
            if mechanisms.intersection(rules.mechanisms_of(t.terms)) and now > t.assignable_until:
                self._housekeep(
                    "reclaim",
                    f"reclaim:{task_hex(t.task_id)}",
                    busy,
                    (t.terms.as_tuple(),),
                    {"task": task_hex(t.task_id)},
                    open_slots=t.open,
                )

    def _housekeep(
        self, fn: str, key: str, busy: set[str], args: tuple, about: dict[str, Any], **sent_fields: Any
    ) -> None:
        """Send a `slash` or `reclaim` once: not while one is in flight, nor for
        HOLD_SECONDS after the registry refused it. Its log lines carry `about`."""
        if key in busy or key in self.held:
            return
        try:
            sent = self.outbox.send(fn, *args, keys=[key])
        except Refused as refused:
            self.held[key] = time.monotonic() + HOLD_SECONDS
            self._say(f"{fn}_refused", **about, reason=refused.reason)
            return
        self.metrics.counter(f"{HOUSEKEEPING[fn]}_sent_total", f"{fn} transactions sent")
        self._say(fn, **about, **sent_fields, tx=sent.tx_hash)

    def _say(self, kind: str, level: int = logging.INFO, **fields: Any) -> None:
        emit(log, f"{self.name}.{kind}", level, **fields)


def keeper_options(command: Callable) -> Callable:
    """The options of every frontend command (the keeper's), shared by the plain process
    (`python -m frontends.<mechanism>.process`) and its `ape run` wrapper. The command
    receives `mechanisms`, `data_dir`, `legacy_db`, `database`, `confirmations`, `batch_size`, `poll`,
    `slash`, `reclaim` (the Keeper's own arguments), `metrics_port`, `ready_lag`,
    `ready_age` and `log_level`; `--config` fills any of them from a TOML file."""
    options = [
        config_option,
        click.option(
            "--mechanism",
            "mechanisms",
            type=int,
            multiple=True,
            required=True,
            help="Mechanism id (repeatable).",
        ),
        data_dir_option(),
        legacy_db_option(),
        click.option(
            "--database",
            help="Read the shared mirror an indexer writes at this postgresql:// URL instead of "
            "syncing one of its own (rounds wait while it trails the head by more than --ready-lag).",
        ),
        shown("--confirmations", 0, click.IntRange(0, 1000)),
        shown("--batch-size", MAX_BATCH, click.IntRange(1, MAX_BATCH)),
        shown("--poll", 1.0, click.FloatRange(0.05, 600), "Seconds between rounds."),
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            help="Serve /metrics, /healthz and /readyz (0: any free port).",
        ),
        readiness_options,
        fee_options,
        shown("--slash/--no-slash", True, None, "Slash overdue assignments of its tasks."),
        shown("--reclaim/--no-reclaim", True, None, "Refund slots left unfilled."),
        shown("--log-level", "INFO", None),
    ]
    return with_options(command, options)
