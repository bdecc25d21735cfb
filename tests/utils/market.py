"""Shared helpers for registry tests: terms, real proofs of the square circuit, and
reading what the registry reported."""

from __future__ import annotations

from provingmarket import Assignment, TaskTerms
from provingmarket.devnet import ADDRESS_INPUT, ETHER, PROVER_INPUT, STATEMENT, proof_for
from provingmarket.devnet import task_terms as make_terms

__all__ = ["ADDRESS_INPUT", "ETHER", "PROVER_INPUT", "STATEMENT", "proof_for", "make_terms"]


def escrow(terms: TaskTerms) -> int:
    return terms.escrow()


def posted_terms(registry, tx) -> TaskTerms:
    """The terms as the registry recorded them, from the TaskPosted event of `tx`."""
    event = tx.events.filter(registry.TaskPosted)[0]
    return TaskTerms.from_event(event.terms)


def assigned(registry, tx) -> list[tuple[str, Assignment]]:
    """(prover, assignment) for each TaskAssigned event of `tx`."""
    return [(e.prover, Assignment.from_event(e)) for e in tx.events.filter(registry.TaskAssigned)]


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


def assign(registry, keeper, terms: TaskTerms, prover, price: int | None = None) -> Assignment:
    """Assign `terms` to `prover` as the frontend `keeper` (at the task's maximum by
    default); returns the assignment the registry reported."""
    price = terms.max_reward if price is None else price
    [(who, assignment)] = assigned(registry, registry.assign(item(terms, prover, price), sender=keeper))
    assert who == prover.address
    return assignment


def prove(registry, terms: TaskTerms, assignment: Assignment, prover, inputs=STATEMENT, proof=None, **kwargs):
    """Prove as `prover`; by default with the proof made for `prover`'s address."""
    proof = proof_for(STATEMENT, prover.address) if proof is None else proof
    return registry.prove(terms.as_tuple(), assignment.as_tuple(), inputs, proof, sender=prover, **kwargs)
