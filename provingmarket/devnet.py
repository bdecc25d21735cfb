"""Stand up a registry on a development chain (anvil): used by the demo and the benchmark.

The market's verifier is the keccak stand-in kept under tests/contracts until the
Groth16 verifier lands: a "proof" is keccak256(abi.encode(public_inputs)), which is NOT
a zero-knowledge proof. Everything else (registry, accounts, signatures, RPC) is real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode
from eth_utils import keccak

from provingmarket.formats import BINDING_ADDRESS_INPUT, DUTCH, OPEN_RACE, TaskTerms, inputs_commitment

ROOT = Path(__file__).resolve().parent.parent
STAND_IN_VERIFIER = ROOT / "tests" / "contracts" / "KeccakVerifier.vy"
ETHER = 10**18
ADDRESS_INPUT = 0
STATEMENT = [0, 7, 49]  # prover address (filled by the registry), x, x*x
PROVER_INPUT = b"x=7"


def stand_in_proof(public_inputs: list[int], prover: str | None = None) -> bytes:
    """What the keccak stand-in verifier accepts for these inputs from `prover` (whose
    address the registry puts in the address input; None keeps the inputs as given)."""
    values = list(public_inputs)
    if prover is not None:
        values[ADDRESS_INPUT] = int(prover, 16)
    return keccak(encode(["uint256[]"], [values]))


@dataclass
class Stack:
    registry: object
    verifier: object
    market_id: int
    mechanism_id: int


def deploy_stack(ape, owner, frontends: list, unbonding_delay: int = 3_600, grace_period: int = 60) -> Stack:
    """Deploy the stand-in verifier and the registry, create a market, register a mechanism."""
    container = ape.compilers.compile_source(
        "vyper", STAND_IN_VERIFIER.read_text(), contractName="KeccakVerifier"
    )
    verifier = owner.deploy(container)
    registry = owner.deploy(ape.project.Registry, unbonding_delay)
    sample = list(STATEMENT)
    sample[ADDRESS_INPUT] = int(owner.address, 16)
    tx = registry.create_market(
        verifier,
        sample,
        stand_in_proof(STATEMENT, owner.address),
        ETHER // 10,  # min collateral
        ETHER // 100,  # min reward
        grace_period,
        5_000,  # half a slashed collateral to the requester
        1_000,  # a tenth to whoever slashes; the rest burnt
        BINDING_ADDRESS_INPUT,
        ADDRESS_INPUT,
        sender=owner,
    )
    market_id = tx.events.filter(registry.MarketCreated)[0].market_id
    tx = registry.register_mechanism("orderbook", frontends, sender=owner)
    mechanism_id = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
    return Stack(registry, verifier, market_id, mechanism_id)


def task_terms(market_id: int, mechanism_id: int, **overrides) -> TaskTerms:
    """Terms of a task proving STATEMENT, with the registry's fields left for it to fill.
    Built-in mechanisms pay no frontend fee, and an open race has no assignment window."""
    builtin = mechanism_id in (OPEN_RACE, DUTCH)
    values = dict(
        market_id=market_id,
        requester="0x" + "00" * 20,
        posted_at=0,
        inputs_commitment=inputs_commitment(STATEMENT, ADDRESS_INPUT),
        prover_input_hash=keccak(PROVER_INPUT),
        max_reward=ETHER // 10,
        frontend_fee=0 if builtin else ETHER // 1000,
        assign_window=0 if mechanism_id == OPEN_RACE else 600,
        proving_window=300,
        collateral=ETHER // 2,
        capabilities=0,
        redundancy=1,
        mechanism_id=mechanism_id,
        start_price=0,
        ramp=0,
        decay=False,
        decay_floor=0,
    )
    values.update(overrides)
    return TaskTerms(**values)
