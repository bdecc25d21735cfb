"""Shared helpers for registry tests: terms, proofs for the keccak stand-in verifier,
and reading what the registry reported."""

from __future__ import annotations

from dataclasses import replace

from eth_abi import encode
from eth_utils import keccak

from provingmarket import OPEN_RACE, Assignment, TaskTerms, inputs_commitment

ETHER = 10**18
ADDRESS_INPUT = 0  # the markets in these tests carry the prover's address in input 0
STATEMENT = [0, 7, 49]  # public inputs: prover address (filled by the registry), x, x*x
PROVER_INPUT = b"x=7"


def keccak_proof(
    public_inputs: list[int], prover: str | None = None, address_input: int = ADDRESS_INPUT
) -> bytes:
    """A proof the KeccakVerifier stand-in accepts for these inputs, made for `prover`."""
    values = list(public_inputs)
    if prover is not None:
        values[address_input] = int(prover, 16)
    return keccak(encode(["uint256[]"], [values]))


def make_terms(market_id: int, mechanism_id: int, **overrides) -> TaskTerms:
    """Reasonable terms for a task in a test market; override any field by name."""
    terms = TaskTerms(
        market_id=market_id,
        requester="0x" + "00" * 20,
        posted_at=0,
        inputs_commitment=inputs_commitment(STATEMENT, ADDRESS_INPUT),
        prover_input_hash=keccak(PROVER_INPUT),
        max_reward=ETHER // 10,
        frontend_fee=ETHER // 1000 if mechanism_id > 2 else 0,
        assign_window=600,
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
    if mechanism_id == OPEN_RACE:
        terms = replace(terms, assign_window=0)
    return replace(terms, **overrides)


def escrow(terms: TaskTerms) -> int:
    return terms.redundancy * (terms.max_reward + terms.frontend_fee)


def posted_terms(registry, tx) -> TaskTerms:
    """The terms as the registry recorded them, from the TaskPosted event of `tx`."""
    event = tx.events.filter(registry.TaskPosted)[0]
    return TaskTerms.from_event(event.terms)


def assigned(registry, tx) -> list[tuple[str, Assignment]]:
    """(prover, assignment) for each TaskAssigned event of `tx`."""
    return [
        (e.prover, Assignment(slot=e.slot, price=e.price, deadline=e.deadline, frontend=e.frontend))
        for e in tx.events.filter(registry.TaskAssigned)
    ]


def skipped(registry, tx) -> list[str]:
    return [e.reason for e in tx.events.filter(registry.AssignmentSkipped)]


def item(
    terms: TaskTerms,
    prover,
    price: int,
    signature: bytes = b"",
    min_price: int = 0,
    expiry: int = 0,
    nonce: int = 0,
):
    """An assignment item as the registry takes it."""
    return (terms.as_tuple(), str(prover), price, min_price, expiry, nonce, signature)
