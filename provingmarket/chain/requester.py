"""A requester's posted tasks on the registry, as `ape run requester` follows them: their
progress and phase, their proofs, and the escrow of slots nobody filled credited back.
What the registry would refuse is said first in one line (a ClientError, nothing sent)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from provingmarket.chain.checks import mechanism_name, when
from provingmarket.chain.client import ClientError, RegistryClient, TaskState, chain_time, reported
from provingmarket.chain.tasks import task_inputs
from provingmarket.formats import OPEN_RACE, TaskTerms
from provingmarket.proving.circuits import Circuit, CircuitError

# ------------------------------------------------------------------ following a task


def progress(state: TaskState) -> str:
    """How far a task is: proofs, assigned, open and closed slots."""
    return (
        f"{state.proven} of {state.terms.redundancy} proof{'s' if state.terms.redundancy != 1 else ''}, "
        f"{state.assigned} assigned, {state.open} open, {state.closed} closed"
    )


def phase(state: TaskState, now: int) -> str:
    """Where the task stands in its windows, and what anyone may do about it now."""
    terms = state.terms
    if state.proven == terms.redundancy:
        return "complete"
    if state.done:
        return "closed" + (" (partly proven)" if state.proven else "")
    notes = []
    if terms.mechanism_id == OPEN_RACE:
        end = terms.posted_at + terms.proving_window
        notes.append(f"race {'ends' if now <= end else 'ended'} {when(end)}")
    else:
        end = terms.posted_at + terms.assign_window
        notes.append(f"assignable {'until' if now <= end else 'no more since'} {when(end)}")
    if state.open and now > end:
        notes.append("open slots can be reclaimed")
    overdue = [p for p, (a, _) in state.live_assignments.items() if now > a.deadline]
    if overdue:
        notes.append(f"overdue, anyone may slash: {', '.join(overdue)}")
    return "; ".join(notes)


def _event_data(e, at: int) -> dict:
    args = {k: v for k, v in e.args.items() if k != "task_id"}
    if e.name == "TaskPosted":
        args["terms"] = asdict(TaskTerms.from_event(args["terms"]))
    if "public_inputs" in args:
        args["public_inputs"] = [str(v) for v in args["public_inputs"]]
    return {"event": e.name, "block": e.block, "time": at, "tx": e.tx, **args}


def named_signals(circuit: Circuit | None, values: list[int]) -> dict[str, str]:
    """Public signals by the circuit's names (outputs included), as decimal strings."""
    if circuit is None or len(values) != len(circuit.public):
        return {}
    return {name: str(value) for name, value in circuit.named(values).items()}


def posted_signals(circuit: Circuit | None, state: TaskState) -> dict[str, str]:
    """The public signals a task's posted inputs give (the address signal zeroed), by name."""
    if circuit is None:
        return {}
    try:
        return named_signals(circuit, circuit.statement(task_inputs(state, circuit)))
    except (ClientError, CircuitError):  # inputs nobody can prove: status shows the raw inputs
        return {}


def status_data(registry: RegistryClient, state: TaskState, circuit: Circuit | None = None) -> dict:
    """A task's terms, slots, phase and timeline (each event with its block's time), and,
    given its market's circuit, the public signals its inputs give, outputs by name."""
    times = {}
    for e in state.timeline:
        if e.block not in times:
            times[e.block] = reported(registry.web3.eth.get_block(e.block), "timestamp")
    terms = state.terms
    return {
        "task_id": "0x" + state.task_id.hex(),
        "market_id": terms.market_id,
        "mechanism_id": terms.mechanism_id,
        "mechanism": mechanism_name(registry, terms.mechanism_id),
        "requester": terms.requester,
        "redundancy": terms.redundancy,
        "escrow": terms.escrow(),
        "counts": {
            "open": state.open,
            "assigned": state.assigned,
            "proven": state.proven,
            "closed": state.closed,
        },
        "complete": state.proven == terms.redundancy,
        "done": state.done,
        "phase": phase(state, chain_time(registry.web3)),
        "inputs": state.prover_input.decode(errors="replace"),
        "public_signals": posted_signals(circuit, state),
        "input_uri": state.input_uri,
        "terms": asdict(terms),
        "timeline": [_event_data(e, times[e.block]) for e in state.timeline],
    }


def wait(
    registry: RegistryClient, state: TaskState, timeout: int, poll: int, report: Callable[[str], None]
) -> TaskState:
    """The task once every slot is proven or closed, looking every POLL seconds for at most
    TIMEOUT; REPORT hears each change of its progress."""
    task_id = state.task_id
    started = time.monotonic()
    shown = None
    while not state.done:
        elapsed = int(time.monotonic() - started)
        if elapsed >= timeout:
            raise ClientError(
                f"timed out after {timeout} s waiting for task 0x{task_id.hex()}: {progress(state)}"
            )
        line = progress(state)
        if line != shown:
            report(f"waiting for task 0x{task_id.hex()[:8]}…: {line} ({elapsed} s)")
            shown = line
        time.sleep(min(poll, max(timeout - elapsed, 0.1)))
        counts = registry.call("task_status", task_id)
        if tuple(counts) != (state.open, state.assigned, state.proven, state.closed):
            state = registry.task(task_id)
    report(f"task 0x{task_id.hex()[:8]}… done: {progress(state)}")
    return state


def proofs_data(state: TaskState, circuit: Circuit | None = None) -> dict:
    """The proofs a task received: prover, slot, public inputs (by name too, given the
    market's circuit), proof bytes."""
    task_id = state.task_id
    if not state.proofs:
        if state.done:
            raise ClientError(f"task 0x{task_id.hex()} has no proof and will get none: its slots were closed")
        raise ClientError(
            f"task 0x{task_id.hex()} has no proof yet: {state.assigned} assigned, {state.open} open"
        )
    return {
        "task_id": "0x" + task_id.hex(),
        "market_id": state.terms.market_id,
        "inputs_commitment": "0x" + state.terms.inputs_commitment.hex(),
        "proofs": [
            {
                "prover": e.prover,
                "slot": e.slot,
                "block": e.block,
                "tx": e.tx,
                "public_inputs": [str(v) for v in e.public_inputs],
                "public_signals": named_signals(circuit, list(e.public_inputs)),
                "proof": "0x" + bytes(e.proof).hex(),
            }
            for e in state.proofs
        ],
    }


def posted_tasks(registry: RegistryClient, requester: str) -> list[TaskState]:
    """The tasks REQUESTER posted, oldest first."""
    found = registry.events(["TaskPosted"], prover=requester)  # the second indexed argument
    return [registry.task(bytes(e.task_id)) for e in found]


# ------------------------------------------------------------------ escrow back


@dataclass(frozen=True)
class Closed:
    """Slots closed by a cancel or a reclaim, and the escrow credited back."""

    slots: int
    refund: int


def _closed(events) -> Closed:
    e = next(e for e in events if e.name == "SlotsClosed")
    return Closed(e.slots, e.refund)


def _no_open_slot(state: TaskState, what: str) -> None:
    if state.open == 0:
        detail = progress(state)
        hint = "; an assigned slot is refunded by a slash after its deadline" if state.assigned else ""
        raise ClientError(f"task 0x{state.task_id.hex()} has no open slot to {what}: {detail}{hint}")


def cancel(registry: RegistryClient, requester: str, task_id: bytes) -> Closed:
    """Close the open slots of REQUESTER's task and credit their escrow back."""
    state = registry.task(task_id)
    terms = state.terms
    if terms.requester != requester:
        raise ClientError(
            f"task 0x{task_id.hex()} is {terms.requester}'s; only its requester may cancel it, "
            f"not {requester}"
        )
    now = chain_time(registry.web3)
    race_end = terms.posted_at + terms.proving_window
    if terms.mechanism_id == OPEN_RACE and now <= race_end and state.open:
        raise ClientError(
            f"task 0x{task_id.hex()} is an open race running until {when(race_end)} ({race_end - now} s "
            "more): provers may be proving it; cancel or reclaim after that"
        )
    _no_open_slot(state, "cancel")
    _, events = registry.transact("cancel", terms.as_tuple(), action="cancel")
    return _closed(events)


def reclaim(registry: RegistryClient, task_id: bytes) -> tuple[Closed, TaskTerms]:
    """Credit back to its requester the escrow of the task's slots nobody filled, once its
    windows are over; the task's terms."""
    state = registry.task(task_id)
    terms = state.terms
    if terms.mechanism_id == OPEN_RACE:
        end, window = terms.posted_at + terms.proving_window, "race"
    else:
        end, window = terms.posted_at + terms.assign_window, "assignment window"
    now = chain_time(registry.web3)
    _no_open_slot(state, "reclaim")
    if now <= end:
        hint = "; its requester may cancel it now" if terms.mechanism_id != OPEN_RACE else ""
        raise ClientError(
            f"task 0x{task_id.hex()}'s {window} runs until {when(end)} ({end - now} s more): "
            f"reclaim after that{hint}"
        )
    _, events = registry.transact("reclaim", terms.as_tuple(), action="reclaim")
    return _closed(events), terms


def withdraw(registry: RegistryClient, account: str) -> tuple[Any, int]:
    """Send ACCOUNT everything the registry credited to it: the receipt and the amount."""
    if registry.balance(account) == 0:
        raise ClientError(
            f"nothing to withdraw for {account}: refunds are credited when slots are cancelled, "
            "reclaimed or proven for less than their escrow"
        )
    receipt, events = registry.transact("withdraw", action="withdraw")
    return receipt, next(e.amount for e in events if e.name == "Withdrawn")
