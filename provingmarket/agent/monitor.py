"""Following the market: the mirror synced each round, the prover's live assignments
noticed (agent.assigned) and turned into work, the markets it must not work in (custom
ones it does not trust, frozen ones, whose assignments are voided), and the posted inputs
of a task checked before anything is promised or proven. docs/agent.md says why."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from provingmarket.agent.context import Context, Service
from provingmarket.agent.store import QUEUED, Work, prove_key
from provingmarket.agent.submitter import Submitter
from provingmarket.chain import trust
from provingmarket.chain.client import ClientError, Market
from provingmarket.chain.mirror import AssignmentView, MirrorError
from provingmarket.chain.tasks import circuit_of, posted_inputs
from provingmarket.formats import Assignment, TaskTerms
from provingmarket.proving.circuits import Circuit, CircuitError
from provingmarket.runtime import process as runtime

log = logging.getLogger("provingmarket.agent.agent")

MAX_SAID = 100_000  # tasks remembered as checked or logged; a long run forgets, at worst asks again


class Monitor(Service):
    """What the chain says about the prover's markets and work, as the main loop sees it."""

    def __init__(self, context: Context, submitter: Submitter):
        super().__init__(context)
        self.submitter = submitter
        self.circuits: dict[int, Circuit] = {}
        # What a market's creation fixed (verifier, custom, code hash); `frozen` is read
        # afresh, once a round, for custom markets with live work (frozen_now).
        self.market_facts: dict[int, Market] = {}
        self.untrusted_said: set[int] = set()  # markets agent.untrusted_market named
        self.frozen_now: dict[int, Market] = {}
        # task -> why its posted inputs cannot be proven (None: they can), checked once
        self.inputs_checked: dict[bytes, str | None] = {}

    def sync(self) -> None:
        """Sync the mirror, take back what a reorg dropped, settle what was sent."""
        report = self.mirror.sync()
        if report.reorgs:  # proofs mined in the dropped blocks are in flight again
            self.outbox.rollback(min(fork for _, fork in report.reorgs))
        self.submitter.settle()

    def live(self, now: int, memberships: Mapping[int, Any], busy: set[str]) -> list[AssignmentView]:
        """The prover's live assignments, its rows reconciled with them (`busy`: the keys
        workers hold); says once which joined markets it does not trust."""
        for market_id in memberships:
            self.untrusted(market_id)  # agent.untrusted_market, once a market
        live = self.mirror.live_assignments(self.me)
        self.metrics.gauge("assignments_live", "Assignments awaiting this prover's proof", len(live))
        self.submitter.reconcile(now, {prove_key(a.task_id, a.slot) for a in live}, busy)
        return live

    def void_frozen(self, live: list[AssignmentView], in_flight: set[str]) -> None:
        """Read which markets with live work are frozen now, and void their assignments."""
        self.frozen_now = self._frozen({a.market_id for a in live})
        self.submitter.void(live, self.frozen_now, in_flight)

    def work(self, live: list[AssignmentView]) -> list[Work]:
        """The live assignments as work, earliest deadline first, each with the last
        moment the registry takes its decline (the market's grace after the assignment)."""
        grace = {m.market_id: m.grace_period for m in self.mirror.markets()}
        work: list[Work] = []
        for a in sorted(live, key=lambda a: a.deadline):
            task = self.mirror.task(a.task_id)
            if task is None:  # the mirror reads assignments joined with their tasks
                raise MirrorError(f"assignment {a.task_id.hex()}:{a.slot} has no task in the mirror")
            work.append(
                Work(
                    prove_key(a.task_id, a.slot),
                    a.task_id,
                    a.market_id,
                    a.terms,
                    Assignment(a.slot, a.price, a.deadline, a.frontend),
                    a.deadline,
                    task.prover_input,
                    task.input_uri,
                    a.deadline - a.terms.proving_window + grace.get(a.market_id, 0),
                )
            )
        return work

    def notice(self, work: Work, now: int) -> tuple[dict | None, bool]:
        """The work's row, and whether this is the first time the assignment is seen
        (then its row is written and agent.assigned said). A race not entered yet: None."""
        row = self.store.get(work.key)
        first = row is None and not work.race
        if first:
            self.store.insert(work, QUEUED)
            row = self.store.get(work.key)
            runtime.emit(
                log,
                "agent.assigned",
                **work.fields(),
                price=work.assignment.price,
                deadline=work.deadline,
                left_s=work.deadline - now,
            )
        return row, first

    def to_decline(self, work: Work, first: bool) -> str | None:
        """Why an assignment must be declined while the grace period runs: a market whose
        verifier it does not trust, or (the moment a frontend's assignment is first seen)
        inputs nobody can prove; None if neither."""
        why = self.untrusted(work.market_id)
        if why is None and first and work.from_frontend:
            why = self.unprovable(work.task_id, work.terms, work.prover_input, work.input_uri)
        return why

    # -------------------------------------------------------------- markets

    def market(self, market_id: int) -> Market:
        """What the market's creation fixed (verifier, custom, code hash), read once."""
        if market_id not in self.market_facts:
            self.market_facts[market_id] = self.client.market(market_id)
        return self.market_facts[market_id]

    def untrusted(self, market_id: int) -> str | None:
        """Why it takes no work in this market (a custom one whose verifier's code hash is
        not among --trust-verifier), or None; agent.untrusted_market the first time."""
        market = self.market(market_id)
        why = trust.untrusted(market, self.settings.trusted)
        if why is not None and market_id not in self.untrusted_said:
            self.untrusted_said.add(market_id)
            runtime.emit(
                log,
                "agent.untrusted_market",
                logging.WARNING,
                market=market_id,
                verifier=market.verifier,
                codehash=trust.hex32(market.codehash),
                reason=why,
            )
        return why

    def _frozen(self, market_ids: Iterable[int]) -> dict[int, Market]:
        """Which of these markets (those with live work) are frozen now, as read now: only
        a custom market can be, so only those are asked, once each."""
        found = {}
        for market_id in set(market_ids):
            if self.market(market_id).custom:
                market = self.client.market(market_id)
                if market.frozen:
                    found[market_id] = market
        return found

    # -------------------------------------------------------------- inputs

    def circuit(self, market_id: int) -> Circuit:
        """The market's circuit, loaded once."""
        if market_id not in self.circuits:
            self.circuits[market_id] = circuit_of(self.client, market_id)
        return self.circuits[market_id]

    def unprovable(self, task_id: bytes, terms: TaskTerms, prover_input: bytes, input_uri: str) -> str | None:
        """Why nobody can prove the task from its posted inputs (not its commitment's, or
        not satisfying the circuit), or None; checked once a task (witness generation,
        far cheaper than proving)."""
        task = bytes(task_id)
        if task not in self.inputs_checked:
            try:
                posted_inputs(terms, prover_input, input_uri, self.circuit(terms.market_id))
                why = None
            except (ClientError, CircuitError) as error:
                why = str(error)
            if len(self.inputs_checked) >= MAX_SAID:  # a long run: check some again
                self.inputs_checked.clear()
            self.inputs_checked[task] = why
        return self.inputs_checked[task]
