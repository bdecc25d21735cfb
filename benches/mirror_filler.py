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
"""

from __future__ import annotations

import itertools
import random
import time as clock
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from provingmarket.chain.client import Event
from provingmarket.chain.database import transaction
from provingmarket.chain.mirror.projection import Projection
from provingmarket.chain.mirror.schema import dumps, hex_id, open_file, open_meta, write_meta
from provingmarket.chain.mirror.sync import KEEP_BLOCKS
from provingmarket.chain.mirror.tables import Inapplicable, Tables
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_COMMIT_REVEAL,
    BINDING_NONE,
    DUTCH,
    OPEN_RACE,
    ZERO_ADDRESS,
    TaskTerms,
    inputs_commitment,
    task_id,
)

ETHER = 10**18
FINNEY = 10**15
BLOCK_TIME = 2  # seconds
CHAIN_ID = 31337
REGISTRY = to_checksum_address("0x" + keccak(b"explorer-bench registry")[12:].hex())
UNBONDING_DELAY = 3_600  # seconds
MECHANISMS = {3: "orderbook", 4: "auction", 5: "election"}
RETIRED_MECHANISM = 6
MIX = [(OPEN_RACE, 0.15), (DUTCH, 0.15), (3, 0.3), (4, 0.2), (5, 0.2)]  # mechanism, share of tasks
SKIP_REASONS = [
    "registry: prover at capacity",
    "registry: not enough free stake",
    "registry: prover not in market",
]

# An event's arguments, or a function of the mirrored tables giving them when it is
# applied (None: the event does not happen, its condition not holding then).
Args = dict[str, Any] | Callable[[Tables], dict[str, Any] | None]


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


@dataclass(order=True)
class _Pending:
    block: int
    seq: int
    name: str = field(compare=False)
    args: Args = field(compare=False)
    tx: str = field(compare=False)


@dataclass
class _Membership:
    prover: str
    market_id: int
    capacity: int
    ask: int
    proving_time: int
    accepts: list[int]
    busy: list[tuple[int, int]] = field(default_factory=list)  # (from, to) blocks of assignments

    def free_at(self, block: int, until: int) -> bool:
        self.busy = [(a, b) for a, b in self.busy if b >= block - 5_000]
        return sum(1 for a, b in self.busy if a <= until and b >= block) < self.capacity


@dataclass
class _Market:
    market_id: int
    binding: int
    address_input: int
    inputs: int  # public inputs of its circuit
    proof_size: int  # bytes
    min_collateral: int
    min_reward: int
    grace_period: int
    requester_bps: int
    caller_bps: int
    custom: bool
    verifier: str
    members: list[_Membership] = field(default_factory=list)
    paused: tuple[int, int] = (0, -1)  # blocks it is paused between


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
    world = _World(
        random.Random(seed), tasks, provers, markets, now if now is not None else int(clock.time())
    )
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


def _apply_all(db: Any, world: _World, pending: list[_Pending]) -> int:
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


class _World:
    """The made-up chain: who is in it, and every event, each at its block."""

    def __init__(self, rng: random.Random, tasks: int, provers: int, markets: int, now: int):
        self.rng = rng
        self.n_tasks = tasks
        self.n_provers = provers
        self.n_markets = markets
        self.setup_end = 20 + provers // 20 + 2
        self.end_block = self.setup_end + 2 * tasks + 40
        self.start_time = now - (self.end_block - 1) * BLOCK_TIME
        self.pending: list[_Pending] = []
        self.seq = itertools.count()
        self.txs = itertools.count()
        self.salt = rng.randbytes(8)
        self.deployer = _address("deployer")
        self.keeper = _address("keeper")
        self.frontends = {m: [_address(f"frontend-{m}-{i}") for i in range(2)] for m in MECHANISMS}
        self.requesters = [_address(f"requester-{i}") for i in range(max(5, tasks // 200))]
        self.provers = [_address(f"prover-{i}") for i in range(provers)]
        # A few provers win most of the work (cheap, large capacity): Zipf-like weights.
        self.weight = {p: 1.0 / (i + 1) ** 0.9 for i, p in enumerate(self.provers)}
        self.slashed: dict[str, int] = {p: 0 for p in self.provers}
        self.markets = [self._market(i + 1) for i in range(markets)]

    # ---------------------------------------------------------------- chain

    def time(self, block: int) -> int:
        return self.start_time + (block - 1) * BLOCK_TIME

    def block_hash(self, block: int) -> str:
        return "0x" + keccak(self.salt + block.to_bytes(8, "big")).hex()

    def blocks(self, seconds: int) -> int:
        return -(-seconds // BLOCK_TIME)

    def tx(self) -> str:
        return "0x" + keccak(self.salt + b"tx" + next(self.txs).to_bytes(8, "big")).hex()

    def emit(self, block: int, name: str, args: Args, tx: str | None = None) -> str:
        tx = tx or self.tx()
        self.pending.append(_Pending(block, next(self.seq), name, args, tx))
        return tx

    # ---------------------------------------------------------------- the market

    def _market(self, market_id: int) -> _Market:
        kind = (market_id - 1) % 3
        binding = [BINDING_ADDRESS_INPUT, BINDING_COMMIT_REVEAL, BINDING_NONE][kind]
        return _Market(
            market_id=market_id,
            binding=binding,
            address_input=0,
            inputs=[2, 2, 4][kind],
            proof_size=[256, 256, 832][kind],
            min_collateral=[100, 50, 200][kind] * FINNEY,
            min_reward=[10, 5, 20][kind] * FINNEY,
            grace_period=[5, 10, 30][kind],
            requester_bps=5_000,
            caller_bps=1_000,
            custom=kind == 2,
            verifier=_address(f"verifier-{market_id}"),
        )

    def make(self) -> list[_Pending]:
        rng = self.rng
        # memberships: each prover in one to all markets
        for i, prover in enumerate(self.provers):
            count = 1 + sum(rng.random() < 0.35 for _ in range(self.n_markets - 1))
            heavy = i < max(3, self.n_provers // 50)
            for market in rng.sample(self.markets, count):
                market.members.append(
                    _Membership(
                        prover,
                        market.market_id,
                        capacity=rng.randint(8, 32) if heavy else rng.randint(1, 6),
                        ask=market.min_reward // 2 + rng.randint(0, 20) * FINNEY // 4,
                        proving_time=rng.randint(4, 60),
                        accepts=sorted(rng.sample(list(MECHANISMS), rng.randint(1, len(MECHANISMS)))),
                    )
                )
        self._deploy()
        self._tasks()
        self._provers()
        return self.pending

    def _deploy(self) -> None:
        """Blocks 1 to 19: the verifiers, the markets, the mechanisms and their frontends."""
        codehash = keccak(b"groth16 verifier blueprint")
        self.emit(
            1,
            "BlueprintRegistered",
            {"blueprint_id": 1, "blueprint": _address("blueprint"), "codehash": codehash},
        )
        for market in self.markets:
            block = 1 + market.market_id
            tx = self.tx()
            if not market.custom:
                self.emit(
                    block,
                    "VerifierDeployed",
                    {
                        "verifier": market.verifier,
                        "blueprint_id": 1,
                        "deployer": self.deployer,
                        "codehash": codehash,
                    },
                    tx,
                )
            self.emit(
                block,
                "MarketCreated",
                {
                    "market_id": market.market_id,
                    "creator": self.deployer,
                    "verifier": market.verifier,
                    "codehash": keccak(b"custom verifier") if market.custom else codehash,
                    "binding": market.binding,
                    "address_input": market.address_input,
                    "min_collateral": market.min_collateral,
                    "min_reward": market.min_reward,
                    "grace_period": market.grace_period,
                    "requester_bps": market.requester_bps,
                    "caller_bps": market.caller_bps,
                    "custom": market.custom,
                },
                tx,
            )
        block = 2 + self.n_markets
        for mechanism_id, name in [*MECHANISMS.items(), (RETIRED_MECHANISM, "sealed bids v0")]:
            tx = self.tx()
            self.emit(
                block,
                "MechanismRegistered",
                {"mechanism_id": mechanism_id, "registrant": self.deployer, "name": name},
                tx,
            )
            for frontend in self.frontends.get(mechanism_id, [_address("old-frontend")]):
                self.emit(
                    block,
                    "FrontendSet",
                    {"mechanism_id": mechanism_id, "frontend": frontend, "allowed": True},
                    tx,
                )
            block += 1
        self.emit(block, "MechanismRetired", {"mechanism_id": RETIRED_MECHANISM})
        # one market paused for a while (no tasks posted meanwhile)
        paused = self.markets[-1]
        pause = self.setup_end + self.n_tasks // 2
        paused.paused = (pause, pause + 60)
        self.emit(pause, "MarketPaused", {"market_id": paused.market_id, "paused": True})
        self.emit(pause + 60, "MarketPaused", {"market_id": paused.market_id, "paused": False})

    def _provers(self) -> None:
        """Blocks 20 on: each prover stakes (enough for the slashes it will take), joins its
        markets and accepts mechanisms, in one transaction; later some update their offer,
        unstake, withdraw their stake or balance, revoke signatures, or leave a market."""
        memberships: dict[str, list[_Membership]] = {p: [] for p in self.provers}
        for market in self.markets:
            for member in market.members:
                memberships[member.prover].append(member)
        for i, prover in enumerate(self.provers):
            self._join(20 + i // 20, prover, sorted(memberships[prover], key=lambda m: m.market_id))
            self._later(prover, memberships[prover])
        for requester in self.requesters[::3]:
            self.emit(self.rng.randint(self.setup_end, self.end_block), "Withdrawn", _withdraw(requester))

    def _join(self, block: int, prover: str, memberships: list[_Membership]) -> None:
        """Stake (enough for the slashes to come), join and accept, in one transaction."""
        tx = self.tx()
        stake = max(self.rng.randint(5, 50) * ETHER, 2 * self.slashed[prover] + 5 * ETHER)
        self.emit(block, "Staked", {"prover": prover, "amount": stake, "stake": stake}, tx)
        for member in memberships:
            self.emit(block, "ProverJoined", _offer(member, member.ask), tx)
            for mechanism_id in member.accepts:
                accepted = {
                    "prover": prover,
                    "market_id": member.market_id,
                    "mechanism_id": mechanism_id,
                    "accepted": True,
                }
                self.emit(block, "MechanismAccepted", accepted, tx)

    def _later(self, prover: str, memberships: list[_Membership]) -> None:
        """What a prover does once in: update an offer, unstake (withdrawn later, or still
        unbonding at the end), revoke signatures, withdraw earnings, leave a market."""
        rng = self.rng
        middle = rng.randint(self.setup_end + 1, self.end_block - 1)
        draw = rng.random()
        if draw < 0.1 and memberships:
            member = rng.choice(memberships)
            self.emit(middle, "ProverUpdated", _offer(member, member.ask + FINNEY))
        elif draw < 0.14:
            self.emit(middle, "Unstaked", _unstake(prover, self.time(middle)))
            ready = middle + self.blocks(UNBONDING_DELAY) + rng.randint(1, 100)
            if ready < self.end_block:
                self.emit(ready, "StakeWithdrawn", _withdraw_stake(prover))
        elif draw < 0.18:
            late = self.end_block - rng.randint(1, self.blocks(UNBONDING_DELAY) // 2)
            self.emit(late, "Unstaked", _unstake(prover, self.time(late)))  # unbonding, not ready yet
        elif draw < 0.19:
            self.emit(middle, "SignaturesRevoked", {"prover": prover, "nonce": 1})
        if rng.random() < 0.3:
            self.emit(rng.randint(middle, self.end_block), "Withdrawn", _withdraw(prover))
        if rng.random() < 0.03 and memberships:
            self.emit(self.end_block, "ProverLeft", _leave(prover, rng.choice(memberships).market_id))

    # ---------------------------------------------------------------- tasks

    def _tasks(self) -> None:
        rng = self.rng
        first, last = self.setup_end + 1, self.end_block - 10
        posts = sorted(rng.randint(first, last) for _ in range(self.n_tasks))
        mechanisms, shares = zip(*MIX, strict=True)
        for index, block in enumerate(posts):
            markets = [m for m in self.markets if m.members and not m.paused[0] <= block <= m.paused[1]]
            if not markets:
                markets = [m for m in self.markets if m.members] or self.markets
            market = rng.choice(markets)
            mechanism = rng.choices(mechanisms, shares)[0]
            long_timeline = rng.random() < 0.005
            self._task(index, block, market, mechanism, long_timeline)

    def _terms(
        self, index: int, block: int, market: _Market, mechanism: int, redundancy: int, inputs: list[int]
    ):
        rng = self.rng
        max_reward = market.min_reward * rng.randint(2, 10)
        registered = mechanism in MECHANISMS
        assign_window = rng.choice([60, 120, 300, 600]) if mechanism != OPEN_RACE else 0
        proving_window = rng.choice([60, 120, 300, 600])
        address_input = market.address_input if market.binding == BINDING_ADDRESS_INPUT else None
        prover_input = b'{"x": %d}' % inputs[-1]
        terms = TaskTerms(
            market_id=market.market_id,
            requester=rng.choice(self.requesters),
            posted_at=self.time(block),
            inputs_commitment=inputs_commitment(inputs, address_input),
            prover_input_hash=keccak(prover_input),
            max_reward=max_reward,
            frontend_fee=rng.choice([0, FINNEY, 2 * FINNEY]) if registered else 0,
            assign_window=assign_window,
            proving_window=proving_window,
            collateral=market.min_collateral * rng.randint(1, 3),
            capabilities=0,
            redundancy=redundancy,
            mechanism_id=mechanism,
            start_price=max_reward // 10 if mechanism == DUTCH else 0,
            ramp=assign_window if mechanism == DUTCH else 0,
            decay=False,
            decay_floor=0,
            salt=index,
        )
        return terms, prover_input

    def _task(self, index: int, block: int, market: _Market, mechanism: int, long_timeline: bool) -> None:
        rng = self.rng
        redundancy = rng.randint(5, 8) if long_timeline else rng.choices([1, 2, 3], [0.75, 0.15, 0.1])[0]
        x = rng.randint(2, 2**64)
        inputs = [rng.randint(0, 2**250) for _ in range(market.inputs - 1)] + [x]
        terms, prover_input = self._terms(index, block, market, mechanism, redundancy, inputs)
        tid = task_id(CHAIN_ID, REGISTRY, terms)
        uri = f"ipfs://bafy{keccak(prover_input).hex()[:40]}" if rng.random() < 0.2 else ""
        posted = {
            "task_id": tid,
            "requester": terms.requester,
            "market_id": market.market_id,
            "terms": asdict(terms),
            "prover_input": prover_input,
            "input_uri": uri,
        }
        self.emit(block, "TaskPosted", posted)
        task = _TaskPlan(self, tid, terms, market, inputs, block, long_timeline)
        if mechanism == OPEN_RACE:
            task.race()
        elif rng.random() < 0.02:
            task.cancel()
        else:
            task.assign_all(never=rng.random() < 0.04)


class _TaskPlan:
    """One task's events after its post, slot by slot, at their blocks."""

    def __init__(
        self,
        world: _World,
        tid: bytes,
        terms: TaskTerms,
        market: _Market,
        inputs: list[int],
        block: int,
        churn: bool,
    ):
        self.world = world
        self.rng = world.rng
        self.tid = tid
        self.terms = terms
        self.market = market
        self.inputs = inputs
        self.posted = block
        self.churn = churn  # a long timeline: many skips, declines and slashes
        self.window_end = block + world.blocks(terms.assign_window)
        self.taken: set[str] = set()
        self.escrow = terms.max_reward + terms.frontend_fee

    def frontend(self) -> str:
        mechanism = self.terms.mechanism_id
        return self.rng.choice(self.world.frontends[mechanism]) if mechanism in MECHANISMS else ZERO_ADDRESS

    def candidates(self) -> list[_Membership]:
        mechanism = self.terms.mechanism_id
        members = self.market.members
        if mechanism in MECHANISMS:
            members = [m for m in members if mechanism in m.accepts]
        return [m for m in members if m.prover not in self.taken]

    def pick(self, block: int, until: int) -> _Membership | None:
        """A member with capacity for [block, until], the busiest winning more often."""
        members = self.candidates()
        if not members:
            return None
        weights = [self.world.weight[m.prover] for m in members]
        for member in self.rng.choices(members, weights, k=6):
            if member.prover not in self.taken and member.free_at(block, until):
                return member
        return None

    def proof(self, prover: str) -> tuple[list[int], bytes]:
        inputs = list(self.inputs)
        if self.market.binding == BINDING_ADDRESS_INPUT:
            inputs[self.market.address_input] = int(prover, 16)
        return inputs, self.rng.randbytes(self.market.proof_size)

    def proven(
        self, block: int, prover: str, frontend: str, slot: int, price: int, tx: str | None = None
    ) -> None:
        world = self.world
        if self.market.binding == BINDING_COMMIT_REVEAL:
            digest = keccak(self.tid + prover.encode())
            world.emit(
                max(self.posted + 1, block - 2),
                "ProofCommitted",
                {"task_id": self.tid, "prover": prover, "digest": digest},
            )
        if self.rng.random() < 0.01:
            skipped = {"task_id": self.tid, "prover": prover, "reason": "registry: invalid proof"}
            world.emit(block - 1, "ProofSkipped", skipped)
        public_inputs, proof = self.proof(prover)
        args = {
            "task_id": self.tid,
            "prover": prover,
            "frontend": frontend,
            "slot": slot,
            "paid": price,
            "fee": self.terms.frontend_fee,
            "refund": self.terms.max_reward - price,
            "public_inputs": public_inputs,
            "proof": proof,
        }
        world.emit(block, "TaskProven", args, tx)

    def race(self) -> None:
        """The open race: each slot goes to the first valid proof (no assignment); a slot
        nobody proves in the proving window is closed then."""
        world, rng = self.world, self.rng
        deadline = self.posted + world.blocks(self.terms.proving_window)
        open_slots = 0
        for slot in range(self.terms.redundancy):
            block = self.posted + rng.randint(2, max(3, deadline - self.posted - 1))
            member = self.pick(block, block) if rng.random() < 0.92 else None
            if member is None:
                open_slots += 1
                continue
            self.taken.add(member.prover)
            self.proven(block, member.prover, ZERO_ADDRESS, slot, self.terms.max_reward)
        if open_slots:
            self.close(deadline + 1, open_slots, cancelled=False)

    def cancel(self) -> None:
        self.close(self.posted + self.rng.randint(1, 5), self.terms.redundancy, cancelled=True)

    def close(self, block: int, slots: int, cancelled: bool, tx: str | None = None) -> None:
        closed = {
            "task_id": self.tid,
            "requester": self.terms.requester,
            "slots": slots,
            "refund": slots * self.escrow,
            "cancelled": cancelled,
        }
        self.world.emit(block, "SlotsClosed", closed, tx)

    def assign_all(self, never: bool) -> None:
        """Every slot assigned by the mechanism (after its auction or election, for those),
        taken to its end; slots still open when the assignment window ends are closed."""
        open_slots = 0
        for slot in range(self.terms.redundancy):
            if never or not self.slot(slot):
                open_slots += 1
        if open_slots:
            self.close(self.window_end + 1, open_slots, cancelled=False)

    def slot(self, slot: int) -> bool:
        """A slot's assignments until it is proven or closed; False if it is open when the
        assignment window ends."""
        delay = {DUTCH: (1, 6), 3: (1, 3), 4: (6, 16), 5: (4, 10)}[self.terms.mechanism_id]
        block: int | None = self.posted + self.rng.randint(*delay)
        while block is not None:
            if block >= self.window_end:
                return False
            proving = self.world.blocks(self.terms.proving_window)
            member = self.pick(block, block + proving + 20)
            if member is None:
                block += self.rng.randint(2, 10)
                continue
            block = self.outcome(slot, block, member, *self.assign(slot, block, member))
        return True

    def assign(self, slot: int, block: int, member: _Membership) -> tuple[str, int]:
        """The mechanism assigns the slot to `member` (skipping another first, now and
        then); the frontend and price."""
        world, rng, terms = self.world, self.rng, self.terms
        frontend = self.frontend()
        tx = world.tx()
        if rng.random() < (0.5 if self.churn else 0.03):
            others = [m for m in self.candidates() if m is not member]
            if others:
                skip = {
                    "task_id": self.tid,
                    "prover": rng.choice(others).prover,
                    "frontend": frontend,
                    "reason": rng.choice(SKIP_REASONS),
                }
                world.emit(block, "AssignmentSkipped", skip, tx)
        self.taken.add(member.prover)
        price = min(terms.max_reward, member.ask * rng.randint(100, 160) // 100)
        if terms.mechanism_id == DUTCH:
            rise = (terms.max_reward - terms.start_price) * rng.randint(5, 80) // 100
            price = min(terms.max_reward, terms.start_price + rise)
        assigned = {
            "task_id": self.tid,
            "prover": member.prover,
            "frontend": frontend,
            "slot": slot,
            "price": price,
            "deadline": world.time(block) + terms.proving_window,
        }
        world.emit(block, "TaskAssigned", assigned, tx)
        return frontend, price

    def outcome(self, slot: int, block: int, member: _Membership, frontend: str, price: int) -> int | None:
        """What becomes of an assignment made at `block`: proven, declined, slashed or
        voided. The block to assign the slot again from, or None if the slot is done."""
        world, rng = self.world, self.rng
        proving = world.blocks(self.terms.proving_window)
        draw = rng.random()
        if self.churn:
            draw = draw * 0.3 + 0.7  # mostly declines and slashes
        ours = {"task_id": self.tid, "prover": member.prover, "slot": slot}
        if draw < 0.86 or (draw >= 0.99 and not self.market.custom):
            end = block + rng.randint(1, max(1, min(proving - 1, world.blocks(member.proving_time) + 3)))
            member.busy.append((block, end))
            self.proven(end, member.prover, frontend, slot, price)
            return None
        if draw < 0.93:  # declined
            end = block + rng.randint(1, 5)
            member.busy.append((block, end))
            return end + rng.randint(1, 4) if self.reopen(end, "TaskDeclined", ours) else None
        if draw < 0.99:  # slashed once the deadline and grace period are past
            end = block + proving + world.blocks(self.market.grace_period) + rng.randint(1, 3)
            member.busy.append((block, end))
            collateral = self.terms.collateral
            to_requester = collateral * self.market.requester_bps // 10_000
            to_caller = collateral * self.market.caller_bps // 10_000
            slashed = {
                **ours,
                "caller": world.keeper,
                "collateral": collateral,
                "to_requester": to_requester,
                "to_caller": to_caller,
                "burnt": collateral - to_requester - to_caller,
            }
            world.slashed[member.prover] += collateral
            return end + rng.randint(1, 4) if self.reopen(end, "Slashed", slashed) else None
        # voided: the custom verifier's code changed under the assignment
        end = block + rng.randint(1, 10)
        member.busy.append((block, end))
        world.emit(end, "AssignmentVoided", ours)
        return None

    def reopen(self, block: int, name: str, args: dict[str, Any]) -> bool:
        """A decline or slash: inside the assignment window the slot opens again (True);
        after it, the slot's escrow is refunded and the slot closed in the same transaction."""
        reopened = block < self.window_end
        args = {**args, "reopened": reopened}
        if reopened:
            self.world.emit(block, name, args)
        else:
            tx = self.world.tx()
            self.close(block, 1, cancelled=False, tx=tx)
            self.world.emit(block, name, args, tx)
        return reopened


# ---------------------------------------------------------------- events read off the state


def _unstake(prover: str, now: int) -> Args:
    def args(tables: Tables) -> dict[str, Any] | None:
        row = tables.get("provers", {"prover": prover})
        if row is None:
            return None
        free = int(row["stake"]) - int(row["locked"])
        amount = min(int(row["stake"]), max(free, 0)) // 4
        if amount <= 0:
            return None
        unbonding = int(row["unbonding"]) + amount
        return {"prover": prover, "amount": amount, "unbonding": unbonding, "ready_at": now + UNBONDING_DELAY}

    return args


def _withdraw_stake(prover: str) -> Args:
    def args(tables: Tables) -> dict[str, Any] | None:
        row = tables.get("provers", {"prover": prover})
        if row is None or int(row["unbonding"]) == 0:
            return None
        return {"prover": prover, "amount": int(row["unbonding"])}

    return args


def _withdraw(account: str) -> Args:
    def args(tables: Tables) -> dict[str, Any] | None:
        row = tables.get("balances", {"account": account})
        return None if row is None else {"account": account, "amount": int(row["amount"])}

    return args


def _leave(prover: str, market_id: int) -> Args:
    """Leaving a market takes no live assignment in it (the registry refuses otherwise)."""

    def args(tables: Tables) -> dict[str, Any] | None:
        row = tables.get("memberships", {"prover": prover, "market_id": market_id})
        if row is None or not row["joined"] or row["used"]:
            return None
        return {"prover": prover, "market_id": market_id}

    return args


def _offer(member: _Membership, ask: int) -> dict[str, Any]:
    """ProverJoined's or ProverUpdated's arguments."""
    return {
        "prover": member.prover,
        "market_id": member.market_id,
        "capacity": member.capacity,
        "ask": ask,
        "proving_time": member.proving_time,
        "capabilities": 0,
    }


def _address(label: str) -> str:
    return to_checksum_address("0x" + keccak(f"explorer-bench {label}".encode())[12:].hex())


__all__ = ["Filled", "fill_mirror"]
