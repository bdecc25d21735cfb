"""A prover's work on one task: lock a DUTCH slot, and prove a task from the inputs its
requester posted, through a proving backend, then submit. Used by `ape run prover lock`
and `prove`, and by the prover agent.

Every rule the registry would check is looked at first, and said in words with the
values seen; nothing is sent for a task the prover cannot be paid for. Nothing on chain
ties a task's posted inputs to its inputs_commitment, so a hostile requester can post a
task nobody can prove: `posted_inputs` checks them (the commitment, and the circuit's
witness generation) before a prover locks, races, bids on or proves a task, and the
agent declines an assignment that fails within the market's grace period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_utils.crypto import keccak

from provingmarket import rules
from provingmarket.chain.client import ClientError, RegistryClient, TaskState, chain_time, format_ether
from provingmarket.formats import CHAIN, DUTCH, OPEN_RACE, ZERO_ADDRESS, Assignment, TaskTerms, mechanism_text
from provingmarket.proving.backends import ProofResult, ProvingBackend
from provingmarket.proving.circuits import Circuit, CircuitError, UnsatisfiedInputs

RACE = Assignment(0, 0, 0, ZERO_ADDRESS)  # an OPEN_RACE proof carries no assignment


@dataclass(frozen=True)
class Delivered:
    task_id: bytes
    result: ProofResult
    paid: int
    tx: str


def task_inputs(state: TaskState, circuit: Circuit) -> dict[str, object]:
    """The inputs the requester posted, checked before a prover takes or proves the task
    (see `posted_inputs`)."""
    return posted_inputs(state.terms, state.prover_input, state.input_uri, circuit)


def posted_inputs(
    terms: TaskTerms, prover_input: bytes, input_uri: str, circuit: Circuit
) -> dict[str, object]:
    """A task's posted inputs, as field elements, once they are known to be provable: they
    hash to the terms' prover_input_hash, are a JSON object that fits the circuit, commit
    to the terms' inputs_commitment (nothing on chain ties the two together) and satisfy
    the circuit (witness generation: far cheaper than proving). Any failure is a
    ClientError, one line naming the values seen and what was expected."""
    if keccak(prover_input) != terms.prover_input_hash:
        raise ClientError("the task's posted inputs do not match its prover_input_hash; nobody can prove it")
    if not prover_input:
        where = f" (at {input_uri})" if input_uri else ""
        raise ClientError(f"the task carries no inputs on-chain{where}; fetching them is not supported yet")
    try:
        inputs = json.loads(prover_input)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClientError("the task's posted inputs are not JSON") from None
    if not isinstance(inputs, dict):
        raise ClientError("the task's posted inputs are not a JSON object of input signals")
    try:
        values = circuit.check_inputs(inputs)
    except CircuitError as error:
        raise ClientError(f"the task's posted {error}; nobody can prove it") from None
    try:
        commitment = circuit.commitment(values)
    except UnsatisfiedInputs as error:
        raise ClientError(
            f"the task's posted inputs do not satisfy circuit {circuit.name}: {_cause(error)}; "
            "nobody can prove it"
        ) from None
    except CircuitError as error:
        raise ClientError(f"the task's posted {error}; nobody can prove it") from None
    if commitment != bytes(terms.inputs_commitment):
        statement = circuit.named(circuit.statement(values))
        posted = ", ".join(
            f"{name} = {value}" for name, value in statement.items() if name != circuit.address_signal
        )
        raise ClientError(
            f"the task's inputs do not match its inputs_commitment: the posted inputs give public "
            f"signals ({posted}) committing to 0x{commitment.hex()}, the task's terms to "
            f"0x{bytes(terms.inputs_commitment).hex()}; nobody can prove it"
        )
    return values


def _cause(error: UnsatisfiedInputs) -> str:
    return str(error).partition(": ")[2] or str(error)


def circuit_of(client: RegistryClient, market_id: int) -> Circuit:
    record = getattr(client, "deployment", None)
    market = record.markets.get(market_id) if record else None
    if market is None:
        raise ClientError(
            f"no circuit recorded for market {market_id}; open markets with `ape run operator market create`"
        )
    return Circuit.load(market.circuit)


def lock(client: RegistryClient, task_id: bytes, circuit: Circuit | None = None) -> tuple[int, Assignment]:
    """Take a slot of a DUTCH task at its current price, once its posted inputs are known
    to be provable (a locked slot cannot be declined); returns (price, assignment)."""
    state = client.task(task_id)
    me = client.require_signer("locking a slot needs an account").address
    if state.terms.mechanism_id >= CHAIN:
        now = chain_time(client.web3)
        if rules.mechanism_at(state.terms, now) != DUTCH:
            current = rules.mechanism_at(state.terms, now)
            raise ClientError(
                f"the task's chain ({mechanism_text(state.terms.mechanism_id)}) is at "
                f"{mechanism_text(current) if current else 'its end'} now, not a Dutch link: nothing to lock"
            )
    elif state.terms.mechanism_id != DUTCH:
        raise ClientError(
            f"task is not a Dutch auction (mechanism {state.terms.mechanism_id}); nothing to lock"
        )
    if me in state.live_assignments:
        raise ClientError("you already hold a slot of this task; prove it")
    if state.open == 0:
        raise ClientError(
            f"no open slot: {state.assigned} assigned, {state.proven} proven, {state.closed} closed"
        )
    _check_free_stake(client, me, state)
    task_inputs(state, circuit or circuit_of(client, state.terms.market_id))
    _, events = client.transact("lock", state.terms.as_tuple(), action="lock")
    assigned = next(e for e in events if e.name == "TaskAssigned")
    return assigned.price, Assignment(assigned.slot, assigned.price, assigned.deadline, assigned.frontend)


def prove(
    client: RegistryClient, task_id: bytes, backend: ProvingBackend, circuit: Circuit | None = None
) -> Delivered:
    """Prove the task from its posted inputs as the client's signer and submit."""
    state = client.task(task_id)
    me = client.require_signer("proving a task needs an account").address
    now = chain_time(client.web3)
    terms = state.terms
    mechanism, _, link_end = rules.link_at(terms, now)
    chained_race = terms.mechanism_id >= CHAIN and mechanism == OPEN_RACE and me not in state.live_assignments
    if terms.mechanism_id == OPEN_RACE or chained_race:
        deadline = link_end if chained_race else terms.posted_at + terms.proving_window
        if now > deadline:
            raise ClientError(f"the race ended at {deadline} ({now - deadline} s ago)")
        if state.open == 0:
            raise ClientError(f"the race is won: {state.proven} of {terms.redundancy} proofs are in")
        if any(e.name == "TaskProven" and e.prover == me for e in state.timeline):
            raise ClientError("you already proved this task")
        membership = client.membership(me, terms.market_id)
        if not membership.joined:
            raise ClientError(f"you are not in market {terms.market_id}: join it to race")
        _check_free_stake(client, me, state)
        assignment = RACE
    else:
        assignment = live_assignment(state, me)
        if now > assignment.deadline:
            raise ClientError(
                f"your deadline passed {now - assignment.deadline} s ago; the slot can be slashed"
            )
    circuit = circuit or circuit_of(client, terms.market_id)
    inputs = task_inputs(state, circuit)
    result = backend.prove(circuit, inputs, me)
    receipt, events = client.transact(
        "prove", terms.as_tuple(), assignment.as_tuple(), result.public_inputs, result.proof, action="prove"
    )
    proven = next(e for e in events if e.name == "TaskProven")
    return Delivered(task_id, result, proven.paid, "0x" + bytes(receipt["transactionHash"]).hex())


def _check_free_stake(client: RegistryClient, prover: str, state: TaskState) -> None:
    standing = client.standing(prover)
    if standing.free < state.terms.collateral:
        raise ClientError(
            f"you have {format_ether(standing.free)} free stake; the task needs "
            f"{format_ether(state.terms.collateral)} collateral: stake "
            f"{format_ether(state.terms.collateral - standing.free)} more"
        )


@dataclass(frozen=True)
class Declined:
    task_id: bytes
    slot: int
    reopened: bool  # the slot is open again (else its escrow went back to the requester)
    tx: str


def decline(client: RegistryClient, task_id: bytes) -> Declined:
    """Give back the signer's assignment of a task within the market's grace period, at no
    penalty (the registry's `decline`): only a slot a frontend assigned (a slot the prover
    took itself, a Dutch lock or a race, cannot be), and only until the grace period ends
    (or the deadline, if sooner). After that, prove it or it is slashed."""
    state = client.task(task_id)
    me = client.require_signer("declining a task needs an account").address
    assignment = live_assignment(state, me, "; nothing to decline")
    if assignment.frontend == ZERO_ADDRESS:
        raise ClientError("you took this slot yourself (a Dutch lock): it cannot be declined; prove it")
    terms = state.terms
    grace = client.market(terms.market_id).grace_period
    until = min(assignment.deadline - terms.proving_window + grace, assignment.deadline)
    now = chain_time(client.web3)
    if now > until:
        raise ClientError(
            f"the grace period to decline ended {now - until} s ago (market {terms.market_id} gives "
            f"{grace} s after the assignment); prove the task before its deadline or it can be slashed"
        )
    receipt, events = client.transact("decline", terms.as_tuple(), assignment.as_tuple(), action="decline")
    declined = next(e for e in events if e.name == "TaskDeclined")
    return Declined(task_id, declined.slot, declined.reopened, "0x" + bytes(receipt["transactionHash"]).hex())


def live_assignment(state, me: str, then: str = ""):
    """`me`'s live assignment of the task `state` describes, or a ClientError naming who
    holds the task's slots (`then` ends the message)."""
    live = state.live_assignments.get(me)
    if live is None:
        raise ClientError(
            "you hold no live assignment of this task (assigned: "
            + (", ".join(state.live_assignments) or "nobody")
            + ")"
            + then
        )
    return live[0]
