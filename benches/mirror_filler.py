"""A mirror file as a large, busy market leaves it, made without a chain: for the
explorer's benchmark (benches/explorer_bench.py) and its tests.

    filled = fill_mirror("mirror.sqlite", tasks=10_000, provers=1_000, markets=3, seed=0)

The registry's events are made up (seeded, so the same arguments give the same file) and
applied through the mirror's own projection (`Projection` over `Tables`, undo log
included), journaled as `Mirror._apply` journals them, with `meta`, the kept block hashes
and the pruned undo log as a sync leaves them: the file is what a keeper's mirror would
hold had it followed such a chain. Each event's arguments have the shapes the client's
decoding gives (checksummed addresses, bytes, the terms as a mapping).

The market: `markets` markets (the first binding the prover's address into the public
inputs, the second commit-reveal, the third with a custom verifier), three registered
mechanisms (orderbook, auction, election) with their frontends besides the built-in open
race and Dutch auction, and a retired one; `provers` provers staked, each in one to all
markets with a capacity, an ask and the mechanisms it accepts (a few unstake, withdraw,
update their offer or leave). `tasks` tasks posted over time (a block every 2 s), mixed
mechanisms and redundancy: assigned (a few assignments skipped first), proven with
public inputs and a proof, some declined, slashed or voided (and the slot reassigned or
closed), some never assigned and closed on expiry or cancelled, and the latest still open
or assigned. A few provers win most tasks, and a few tasks have long timelines.

This module writes the file; the events are made by benches/filler_world.py (the market,
its provers, the posts) and benches/filler_tasks.py (each task after its post), from the
parts in benches/filler_market.py.
"""

from __future__ import annotations

import random
import time as clock
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benches.filler_market import CHAIN_ID, REGISTRY, Pending
from benches.filler_world import World
from provingmarket.chain.client import Event
from provingmarket.chain.database import transaction
from provingmarket.chain.mirror.projection import Projection
from provingmarket.chain.mirror.schema import dumps, hex_id, open_file, open_meta, write_meta
from provingmarket.chain.mirror.sync import KEEP_BLOCKS
from provingmarket.chain.mirror.tables import Inapplicable, Tables


@dataclass(frozen=True)
class Filled:
    """What `fill_mirror` wrote: the file, its cursor and some ids a benchmark or test
    looks up (all found in the file)."""

    path: Path
    registry: str
    chain_id: int
    cursor_block: int
    events: int
    tasks: list[str]  # task ids, oldest first
    provers: list[str]  # checksummed
    markets: list[int]
    longest_task: str  # the task with the most journal entries
    busiest_prover: str  # the prover with the most proofs
    seconds: float


def fill_mirror(
    path: str | Path,
    tasks: int = 10_000,
    provers: int = 1_000,
    markets: int = 3,
    seed: int = 0,
    now: int | None = None,
) -> Filled:
    """Write a new mirror file at `path` (which must not exist) holding the events of a
    market with `tasks` tasks and `provers` provers in `markets` markets; its last block's
    timestamp is `now` (the wall clock by default). Raises if an event made does not apply
    (a bug here: the projection checks each event fits the state)."""
    started = clock.monotonic()
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: give fill_mirror a new path")
    if tasks < 1 or provers < 1 or markets < 1:
        raise ValueError("fill_mirror needs at least one task, one prover and one market")
    world = World(random.Random(seed), tasks, provers, markets, now if now is not None else int(clock.time()))
    pending = world.make()
    db = open_file(str(path))
    try:
        open_meta(db, str(path), REGISTRY, str(CHAIN_ID), 1)
        db.execute("PRAGMA synchronous=OFF")  # one transaction, written once: nothing to lose midway
        with transaction(db):
            applied = _apply_all(db, world, pending)
            last = world.end_block
            kept = range(max(1, last - KEEP_BLOCKS + 1), last + 1)
            db.executemany(
                "INSERT OR REPLACE INTO block_hashes (number, hash) VALUES (?, ?)",
                [(n, world.block_hash(n)) for n in kept],
            )
            db.execute("DELETE FROM undo WHERE block <= ?", (kept[0],))
            write_meta(db, {"cursor_block": str(last), "cursor_hash": world.block_hash(last)})
        db.execute("PRAGMA synchronous=FULL")
        # A keeper's mirror reuses the pages its pruned undo entries free: so does this one,
        # written at once, by compacting. No ANALYZE: no mirror has statistics.
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        longest = db.execute(
            "SELECT task_id FROM journal WHERE task_id IS NOT NULL GROUP BY task_id "
            "ORDER BY COUNT(*) DESC, task_id LIMIT 1"
        ).fetchone()[0]
        busiest = db.execute(
            "SELECT prover FROM slots WHERE state = 'proven' GROUP BY prover "
            "ORDER BY COUNT(*) DESC, prover LIMIT 1"
        ).fetchone()[0]
        ids = [r[0] for r in db.execute("SELECT task_id FROM tasks ORDER BY posted_block, rowid")]
    finally:
        db.close()
    return Filled(
        path=path,
        registry=REGISTRY,
        chain_id=CHAIN_ID,
        cursor_block=world.end_block,
        events=applied,
        tasks=ids,
        provers=[m for m in world.provers],
        markets=[m.market_id for m in world.markets],
        longest_task=longest,
        busiest_prover=busiest,
        seconds=clock.monotonic() - started,
    )


def _apply_all(db: Any, world: World, pending: list[Pending]) -> int:
    """Apply the events in chain order through the projection and journal each one as
    `Mirror._apply` does; how many were applied."""
    tables = Tables(db)
    projection = Projection(tables)
    # the chain's order (events past the cursor have not happened yet), log indices per block
    ordered = [item for item in sorted(pending) if item.block <= world.end_block]
    indices: list[int] = []
    for i, item in enumerate(ordered):
        indices.append(indices[-1] + 1 if i and ordered[i - 1].block == item.block else 0)
    applied = 0
    for i, item in enumerate(ordered):
        args = item.args(tables) if callable(item.args) else item.args
        if args is None:
            continue
        event = Event(item.name, args, item.block, item.tx, indices[i])
        following = None  # only a decline or slash closing its slot is looked at: never a deferred event
        if i + 1 < len(ordered) and not callable(nxt := ordered[i + 1].args):
            following = Event(
                ordered[i + 1].name, nxt, ordered[i + 1].block, ordered[i + 1].tx, indices[i + 1]
            )
        tables.block = item.block
        try:
            projection.apply(event, following)
        except Inapplicable as error:
            raise AssertionError(
                f"the filler made an event the mirror cannot apply: {event}: {error}"
            ) from None
        task = event.args.get("task_id")
        db.execute(
            "INSERT INTO journal (block, log_index, block_hash, tx, name, task_id, args, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.block,
                event.log_index,
                world.block_hash(event.block),
                event.tx,
                event.name,
                hex_id(task) if task is not None else None,
                dumps(event.args),
                world.time(event.block),
            ),
        )
        applied += 1
    return applied


__all__ = ["Filled", "fill_mirror"]
