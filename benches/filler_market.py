"""The parts of the made-up market benches/mirror_filler.py writes: its constants (the
chain, the registered mechanisms, the mix of tasks), its markets and their provers'
memberships, and an event waiting for its block. benches/filler_world.py makes the events
of the market, benches/filler_tasks.py those of each task after its post."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from provingmarket.chain.mirror.tables import Tables
from provingmarket.formats import DUTCH, OPEN_RACE

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


@dataclass(order=True)
class Pending:
    block: int
    seq: int
    name: str = field(compare=False)
    args: Args = field(compare=False)
    tx: str = field(compare=False)


@dataclass
class Membership:
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
class Market:
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
    members: list[Membership] = field(default_factory=list)
    paused: tuple[int, int] = (0, -1)  # blocks it is paused between


def labelled_address(label: str) -> str:
    return to_checksum_address("0x" + keccak(f"explorer-bench {label}".encode())[12:].hex())
