"""Everything the agent sends to the registry goes through the outbox from here: proofs,
declines, DUTCH locks, voids, withdrawals; and what became of each is settled here
against the outbox's record and the mirror (`outcome`, `reconcile`), so a row is never
left saying something the chain does not. Why nothing is sent twice: docs/agent.md."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from provingmarket.agent.context import Context, Service
from provingmarket.agent.store import (
    DONE_,
    FAILED,
    GAVE_UP,
    LOST,
    OPEN_WORK,
    PROVED,
    PROVING,
    QUEUED,
    SUBMITTED,
    WITHDRAW_KEY,
    Work,
    decline_key,
    hex_id,
    void_key,
)
from provingmarket.chain import trust
from provingmarket.chain.client import Market, Refused, format_ether
from provingmarket.chain.mirror import PROVEN, AssignmentView, TaskView
from provingmarket.chain.outbox import DONE, DROPPED, REVERTED, Outcome, Sent
from provingmarket.formats import Assignment, TaskTerms
from provingmarket.runtime import process as runtime

log = logging.getLogger("provingmarket.agent.agent")

RETRY_REFUSED = 10.0  # seconds before a lock or void the registry refused is tried again
# Refusals that mean the work is gone (someone else's now, or too late), not that the
# proof was wrong.
LOST_REASONS = (
    "deadline passed",
    "race over",
    "no free slot",
    "not assigned",
    "already on task",
)


def is_lost(reason: str) -> bool:
    return any(part in reason for part in LOST_REASONS)


class Submitter(Service):
    """Sends the prover's transactions and settles their outcomes into the agent's rows."""

    def __init__(self, context: Context):
        super().__init__(context)
        self.refused_at: dict[str, float] = {}  # lock or void key -> monotonic time of the refusal
        self.withdraw_asked = False  # SIGUSR1: withdraw at the next round whatever the amount

    def _send(self, fn: str, *args: Any, key: str) -> Sent | Refused:
        """Send through the outbox under `key` after the simulated latency; the registry's
        refusal (its call simulated first) is returned, not raised."""
        self.settings.simulate.wait()  # latency to the chain (simulations)
        try:
            return self.outbox.send(fn, *args, keys=[key])
        except Refused as refused:
            return refused

    def refused_lately(self, key: str) -> bool:
        """A lock or void the registry refused less than RETRY_REFUSED seconds ago."""
        refused = self.refused_at.get(key)
        return refused is not None and time.monotonic() - refused < RETRY_REFUSED

    # -------------------------------------------------------------- sending

    def submit(self, work: Work, proof: bytes, public_inputs: list[int]) -> None:
        """Send a proof (a race's only while the task still has an open slot)."""
        if work.race:
            status = self.client.call("task_status", work.task_id)
            if status[0] == 0:  # open
                self.store.update(work.key, state=LOST, error="no open slot left")
                runtime.emit(
                    log,
                    "agent.race_lost",
                    task=hex_id(work.task_id),
                    proven=status[2],
                    redundancy=work.terms.redundancy,
                )
                return
        sent = self._send(
            "prove", work.terms.as_tuple(), work.assignment.as_tuple(), public_inputs, proof, key=work.key
        )
        if isinstance(sent, Refused):
            lost = is_lost(sent.reason)
            self.store.update(work.key, state=LOST if lost else FAILED, error=sent.reason)
            if work.race and lost:
                runtime.emit(log, "agent.race_lost", task=hex_id(work.task_id), reason=sent.reason)
            else:
                runtime.emit(log, "agent.refused", **work.fields(), fn="prove", reason=sent.reason)
            return
        self.store.update(work.key, state=SUBMITTED, tx=sent.tx_hash)
        self.metrics.counter("proofs_submitted_total", "Proofs sent to the registry")
        runtime.emit(log, "agent.submitted", **work.fields(), tx=sent.tx_hash, nonce=sent.nonce)

    def give_up(self, work: Work, now: int, needs: float, reason: str) -> None:
        """Decline a frontend's assignment while the grace period runs (no penalty), else
        say why it will not be proven and leave the slot (to be slashed). A slot the
        prover took itself (a DUTCH lock, a race commit) cannot be declined."""
        left = work.deadline - now
        numbers = {"needs_s": round(needs, 3), "left_s": left, "reason": reason}
        if work.from_frontend and work.decline_until is not None and now <= work.decline_until:
            sent = self._send(
                "decline",
                work.terms.as_tuple(),
                work.assignment.as_tuple(),
                key=decline_key(work.task_id, work.assignment.slot),
            )
            if isinstance(sent, Refused):
                reason = f"{reason}; the registry refused the decline: {sent.reason}"
                numbers["reason"] = reason
            else:
                self.store.update(work.key, state=GAVE_UP, error=reason, tx=sent.tx_hash)
                self.metrics.counter("declined_total", "Assignments declined within the grace period")
                runtime.emit(log, "agent.declined", **work.fields(), tx=sent.tx_hash, **numbers)
                return
        if self.store.get(work.key) is not None:
            self.store.update(work.key, state=GAVE_UP, error=reason)
        self.metrics.counter("gave_up_total", "Work given up: deadline cannot be met")
        runtime.emit(
            log, "agent.give_up", logging.WARNING, **work.fields(), deadline=work.deadline, **numbers
        )

    def lock(self, task_id: bytes, terms: TaskTerms, key: str) -> Sent | None:
        """Lock a slot of a DUTCH task; None if the registry refused (tried again later)."""
        sent = self._send("lock", terms.as_tuple(), key=key)
        if isinstance(sent, Refused):
            self.refused_at[key] = time.monotonic()
            runtime.emit(log, "agent.refused", task=hex_id(task_id), fn="lock", reason=sent.reason)
            return None
        return sent

    def void(self, live: Iterable[AssignmentView], frozen: dict[int, Market], in_flight: set[str]) -> None:
        """Void each live assignment of a frozen market (`slash` voids them there: the
        collateral comes back, no penalty); the registry would refuse its proof."""
        for a in live:
            if a.market_id not in frozen:
                continue
            key = void_key(a.task_id, a.slot)
            if key in in_flight or self.refused_lately(key):
                continue
            fields = {"task": hex_id(a.task_id), "market": a.market_id, "slot": a.slot}
            assignment = Assignment(a.slot, a.price, a.deadline, a.frontend)
            sent = self._send("slash", a.terms.as_tuple(), self.me, assignment.as_tuple(), key=key)
            if isinstance(sent, Refused):
                self.refused_at[key] = time.monotonic()
                runtime.emit(log, "agent.refused", **fields, fn="slash", reason=sent.reason)
                continue
            self.metrics.counter("voided_total", "Assignments voided in frozen markets")
            runtime.emit(
                log,
                "agent.voided",
                logging.WARNING,
                **fields,
                tx=sent.tx_hash,
                reason=trust.frozen(frozen[a.market_id]),
            )

    def withdraw(self, in_flight: set[str]) -> None:
        """Withdraw the earnings once they reach --withdraw-at, or when asked (SIGUSR1)."""
        if WITHDRAW_KEY in in_flight:
            return
        asked, threshold = self.withdraw_asked, self.settings.withdraw_at
        balance = self.mirror.balance(self.me)
        if not asked and (threshold is None or balance < threshold):
            return
        self.withdraw_asked = False
        if balance == 0:
            runtime.emit(log, "agent.withdraw", amount=0, tx=None, reason="nothing to withdraw")
            return
        sent = self._send("withdraw", key=WITHDRAW_KEY)
        if isinstance(sent, Refused):
            runtime.emit(log, "agent.refused", fn="withdraw", reason=sent.reason)
            return
        runtime.emit(
            log,
            "agent.withdraw",
            amount=balance,
            amount_eth=format_ether(balance),
            tx=sent.tx_hash,
            reason="asked (SIGUSR1)" if asked else "threshold",
        )

    # -------------------------------------------------------------- settling

    def settle(self) -> None:
        """What became of the transactions sent, as far as the mirror has synced."""
        for outcome in self.outbox.settle(self.mirror.cursor):
            self.outcome(outcome)

    def outcome(self, outcome: Outcome) -> None:
        """What a settled transaction means for the work it carries."""
        for key in outcome.sent.keys:
            if key.startswith(("prove:", "race:")):
                self._proof_outcome(key, outcome)
                continue
            if key.startswith("lock:"):
                self._lock_outcome(key, outcome)
            if outcome.kind == "reverted":
                runtime.emit(
                    log,
                    "agent.refused",
                    fn=outcome.sent.fn,
                    key=key,
                    tx=outcome.sent.tx_hash,
                    reason=outcome.reason,
                )

    def _proof_outcome(self, key: str, outcome: Outcome) -> None:
        """A proof mined (paid, if the registry says so), reverted, reorged or dropped."""
        row = self.store.get(key)
        if row is None:
            return
        if outcome.kind == "mined":
            proven = [e for e in outcome.events if e.name == "TaskProven" and e.prover == self.me]
            if proven:
                e = proven[0]
                self._paid(key, row["task_id"], e.slot, e.paid, outcome.sent.tx_hash)
        elif outcome.kind == "reverted":
            state = LOST if is_lost(outcome.reason) else FAILED
            self._refused(row, state, outcome.sent.fn, outcome.sent.tx_hash, outcome.reason)
        elif outcome.kind == "reorged" and row["state"] == DONE_:
            self.store.update(key, state=SUBMITTED)
        elif outcome.kind == "dropped":
            self.store.update(key, state=PROVED)

    def _lock_outcome(self, key: str, outcome: Outcome) -> None:
        """A DUTCH lock mined (agent.locked: the slot is the prover's) or reverted."""
        if outcome.kind == "reverted":
            self.refused_at[key] = time.monotonic()
        for e in outcome.events:
            if e.name == "TaskAssigned" and e.prover == self.me:
                runtime.emit(
                    log,
                    "agent.locked",
                    task=key.split(":", 1)[1],
                    slot=e.slot,
                    price=e.price,
                    deadline=e.deadline,
                    tx=outcome.sent.tx_hash,
                )

    def _refused(self, row: dict, state: str, fn: str, tx: str, reason: str) -> None:
        """A proof's transaction reverted: the row ends (lost or failed) with the reason."""
        self.store.update(row["key"], state=state, error=reason)
        runtime.emit(log, "agent.refused", task=row["task_id"], slot=row["slot"], fn=fn, tx=tx, reason=reason)

    def reconcile(self, now: int, live_keys: set[str], busy: set[str]) -> None:
        """Bring rows up to date with the outbox and the mirror: after a restart, or when
        a settle outcome was not seen (killed in between), or the work ended on chain.
        `busy` (the keys workers hold) is read before the transactions in flight and the
        rows: a worker that finishes meanwhile has its row and transaction read as they are."""
        in_flight = self.outbox.in_flight_keys()
        rows = [r for r in self.store.rows(OPEN_WORK) if r["key"] not in in_flight and r["key"] not in busy]
        if not rows:
            return
        sent: dict[str, Sent] = {}
        if any(r["state"] in (PROVED, SUBMITTED) for r in rows):
            for s in self.outbox.rows():
                for key in s.keys:
                    sent[key] = s  # ordered by nonce: the newest wins
        for row in rows:
            self._reconcile_row(row, sent.get(row["key"]), now, row["key"] in live_keys)

    def _reconcile_row(self, row: dict, tx: Sent | None, now: int, live: bool) -> None:
        """One row against its newest transaction in the outbox (`tx`, if any) and the
        mirror: paid or refused, proven again, or its assignment or race over."""
        key, task_id = row["key"], bytes.fromhex(row["task_id"][2:])
        if row["state"] in (PROVED, SUBMITTED) and tx is not None:
            if tx.state == DONE:
                self._paid_from_mirror(row, task_id, tx.tx_hash)
                return
            if tx.state == REVERTED:
                self._refused(row, FAILED, "prove", tx.tx_hash, "the proof's transaction reverted")
                return
        if row["state"] == SUBMITTED and (tx is None or tx.state == DROPPED):
            self.store.update(key, state=PROVED)  # never mined: the kept proof goes again
            row["state"] = PROVED
        if row["kind"] == "prove" and not live:
            self._ended(row, task_id)
        elif row["kind"] == "race" and row["state"] in (QUEUED, PROVING, PROVED):
            self._race_over(row, task_id, now)

    def _race_over(self, row: dict, task_id: bytes, now: int) -> None:
        """A race it entered that has no open slot left or ended: paid, or lost."""
        task = self.mirror.task(task_id)
        if task is None or task.open == 0 or now > row["deadline"]:
            mine = self.mirror.assignments(prover=self.me, task_id=task_id, states=(PROVEN,))
            if mine:
                self._paid_from_mirror(row, task_id, None)
            else:
                self._race_lost(row["key"], row["task_id"], task)

    def _ended(self, row: dict, task_id: bytes) -> None:
        """A row's assignment is no longer live in the mirror: proven by it, or lost."""
        mine = self.mirror.assignments(prover=self.me, task_id=task_id)
        if not mine:
            return  # a reorg took the assignment away; it may come back
        state = mine[-1].state
        if state == PROVEN:
            self._paid_from_mirror(row, task_id, None)
            return
        self.store.update(row["key"], state=LOST, error=f"the assignment was {state}")
        runtime.emit(log, "agent.lost", task=row["task_id"], slot=row["slot"], state=state)

    def _paid_from_mirror(self, row: dict, task_id: bytes, tx: str | None) -> None:
        proven = [e for e in self.mirror.timeline(task_id) if e.name == "TaskProven" and e.prover == self.me]
        if tx is not None:
            proven = [e for e in proven if e.tx == tx] or proven
        if not proven:
            return  # the mirror does not show it yet
        event = proven[-1]
        self._paid(row["key"], row["task_id"], event.slot, event.paid, event.tx)

    def _paid(self, key: str, task: str, slot: int, paid: int, tx: str) -> None:
        self.store.update(key, state=DONE_, slot=slot, paid=str(paid), tx=tx)
        self.metrics.counter("proofs_paid_total", "Proofs the registry accepted and paid")
        self.metrics.counter("paid_wei_total", "Wei credited for proofs", paid)
        runtime.emit(log, "agent.paid", task=task, slot=slot, paid=paid, paid_eth=format_ether(paid), tx=tx)

    def _race_lost(self, key: str, task: str, view: TaskView | None) -> None:
        self.store.update(key, state=LOST, error="the race was won by others or ended")
        runtime.emit(
            log,
            "agent.race_lost",
            task=task,
            proven=view.proven if view else None,
            redundancy=view.terms.redundancy if view else None,
        )
