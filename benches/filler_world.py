"""The made-up chain of benches/mirror_filler.py: its markets, mechanisms and
frontends deployed, its provers staked and joined (and what some do later: update an
offer, unstake, withdraw, leave), and its tasks posted over time, each task's later events
from benches/filler_tasks.py; every event at its block, seeded."""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict
from typing import Any

from eth_utils.crypto import keccak

from benches.filler_market import (
    BLOCK_TIME,
    CHAIN_ID,
    ETHER,
    FINNEY,
    MECHANISMS,
    MIX,
    REGISTRY,
    RETIRED_MECHANISM,
    UNBONDING_DELAY,
    Args,
    Market,
    Membership,
    Pending,
    labelled_address,
)
from benches.filler_tasks import TaskPlan
from provingmarket.chain.mirror.tables import Tables
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_COMMIT_REVEAL,
    BINDING_NONE,
    DUTCH,
    OPEN_RACE,
    TaskTerms,
    inputs_commitment,
    task_id,
)


class World:
    """The made-up chain: who is in it, and every event, each at its block."""

    def __init__(self, rng: random.Random, tasks: int, provers: int, markets: int, now: int):
        self.rng = rng
        self.n_tasks = tasks
        self.n_provers = provers
        self.n_markets = markets
        self.setup_end = 20 + provers // 20 + 2
        self.end_block = self.setup_end + 2 * tasks + 40
        self.start_time = now - (self.end_block - 1) * BLOCK_TIME
        self.pending: list[Pending] = []
        self.seq = itertools.count()
        self.txs = itertools.count()
        self.salt = rng.randbytes(8)
        self.deployer = labelled_address("deployer")
        self.keeper = labelled_address("keeper")
        self.frontends = {m: [labelled_address(f"frontend-{m}-{i}") for i in range(2)] for m in MECHANISMS}
        self.requesters = [labelled_address(f"requester-{i}") for i in range(max(5, tasks // 200))]
        self.provers = [labelled_address(f"prover-{i}") for i in range(provers)]
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
        self.pending.append(Pending(block, next(self.seq), name, args, tx))
        return tx

    # ---------------------------------------------------------------- the market

    def _market(self, market_id: int) -> Market:
        kind = (market_id - 1) % 3
        binding = [BINDING_ADDRESS_INPUT, BINDING_COMMIT_REVEAL, BINDING_NONE][kind]
        return Market(
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
            verifier=labelled_address(f"verifier-{market_id}"),
        )

    def make(self) -> list[Pending]:
        rng = self.rng
        # memberships: each prover in one to all markets
        for i, prover in enumerate(self.provers):
            count = 1 + sum(rng.random() < 0.35 for _ in range(self.n_markets - 1))
            heavy = i < max(3, self.n_provers // 50)
            for market in rng.sample(self.markets, count):
                market.members.append(
                    Membership(
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
            {"blueprint_id": 1, "blueprint": labelled_address("blueprint"), "codehash": codehash},
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
            for frontend in self.frontends.get(mechanism_id, [labelled_address("old-frontend")]):
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
        memberships: dict[str, list[Membership]] = {p: [] for p in self.provers}
        for market in self.markets:
            for member in market.members:
                memberships[member.prover].append(member)
        for i, prover in enumerate(self.provers):
            self._join(20 + i // 20, prover, sorted(memberships[prover], key=lambda m: m.market_id))
            self._later(prover, memberships[prover])
        for requester in self.requesters[::3]:
            self.emit(self.rng.randint(self.setup_end, self.end_block), "Withdrawn", _withdraw(requester))

    def _join(self, block: int, prover: str, memberships: list[Membership]) -> None:
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

    def _later(self, prover: str, memberships: list[Membership]) -> None:
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
        self, index: int, block: int, market: Market, mechanism: int, redundancy: int, inputs: list[int]
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

    def _task(self, index: int, block: int, market: Market, mechanism: int, long_timeline: bool) -> None:
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
        task = TaskPlan(self, tid, terms, market, inputs, block, long_timeline)
        if mechanism == OPEN_RACE:
            task.race()
        elif rng.random() < 0.02:
            task.cancel()
        else:
            task.assign_all(never=rng.random() < 0.04)


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


def _offer(member: Membership, ask: int) -> dict[str, Any]:
    """ProverJoined's or ProverUpdated's arguments."""
    return {
        "prover": member.prover,
        "market_id": member.market_id,
        "capacity": member.capacity,
        "ask": ask,
        "proving_time": member.proving_time,
        "capabilities": 0,
    }
