"""Random lifecycles against the real registry on anvil, with the money and capacity
invariants checked after every step.

The machine drives 3 provers in 2 markets through stake, join, update, post (N up to 3;
frontend, DUTCH and OPEN_RACE tasks; decaying; signed bids), assign (alone and in
batches), lock, decline, prove, slash, cancel, reclaim, unstake, withdraw and time
jumps. It mirrors what the registry reported in its events and checks, after each
step, that:
- the registry's ETH equals stakes + unbonding + credited balances + the escrow of
  slots still open or assigned + burnt slashes (nothing stranded, nothing paid twice);
- locked stake never exceeds stake and equals the collateral of live assignments;
- capacity in use equals live assignments, and no assignment landed on a prover at
  capacity (checked on every TaskAssigned against the membership just before);
- every slot is paid at most once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import ape
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from provingmarket import DUTCH, OPEN_RACE, Assignment, TaskTerms, sign_bid
from tests.utils.market import (
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    make_terms,
    proof_for,
)

settings.register_profile(
    "ci",
    derandomize=True,  # the same examples on every run: make test is repeatable
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "smoke",
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "fuzz",
    max_examples=1_000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

OUTCOMES: dict[str, int] = {}  # what the runs exercised, printed at the end
FAILED = (ape.exceptions.ContractLogicError, ape.exceptions.TransactionError)


@dataclass
class Task:
    terms: TaskTerms
    task_id: bytes
    slots: dict[int, tuple[str, Assignment] | str] = field(default_factory=dict)  # slot -> live or "done"


class RegistryMachine(RuleBasedStateMachine):
    """One example: a fresh chain snapshot with the session's registry, markets and actors."""

    ctx: dict = {}

    def __init__(self):
        super().__init__()
        c = self.ctx
        self.chain = c["chain"]
        self.snapshot = self.chain.snapshot()
        self.registry = c["registry"]
        self.provers = c["provers"]
        self.markets = c["markets"]
        self.mechanism = c["mechanism"]
        self.requester = c["requester"]
        self.keeper = c["keeper"]
        self.stranger = c["stranger"]
        self.accounts = [self.requester, self.keeper, self.stranger, *self.provers]
        self.tasks: list[Task] = []
        self.by_id: dict[bytes, Task] = {}
        self.salt = 0
        self.live: dict[tuple[bytes, int], tuple[str, Assignment, Task]] = {}

    def teardown(self):
        self.chain.restore(self.snapshot)

    # ---------------------------------------------------------------- helpers

    def _send(self, fn, *args, **kwargs):
        name = str(getattr(fn, "abi", None) and fn.abi.name or fn).split("(")[0]
        try:
            tx = fn(*args, **kwargs)
        except FAILED as error:
            reason = str(getattr(error, "revert_message", "") or error).removeprefix("registry: ")[:40]
            key = f"{name} refused ({reason})"
            OUTCOMES[key] = OUTCOMES.get(key, 0) + 1
            return None
        for event in tx.events:
            key = event.event_name
            if key == "AssignmentSkipped":
                key = f"skipped ({event.reason.removeprefix('registry: ')})"
            OUTCOMES[key] = OUTCOMES.get(key, 0) + 1
        return tx

    def _record(self, tx) -> None:
        """Mirror what the registry reported, checking each slot is paid at most once."""
        if tx is None:
            return
        by_id = self.by_id
        for event in tx.events:
            name = event.event_name
            if name == "TaskAssigned":
                task = by_id[bytes(event.task_id)]
                assert task.slots.get(event.slot) is None, "assigned a slot that is not open"
                assignment = Assignment.from_event(event)
                task.slots[event.slot] = (event.prover, assignment)
                self.live[(task.task_id, event.slot)] = (event.prover, assignment, task)
            elif name == "TaskProven":
                task = by_id[bytes(event.task_id)]
                assert task.slots.get(event.slot) != "done", "a slot was paid twice"
                assert (
                    event.paid + event.fee + event.refund == task.terms.max_reward + task.terms.frontend_fee
                )
                task.slots[event.slot] = "done"
                self.live.pop((task.task_id, event.slot), None)
            elif name in ("TaskDeclined", "Slashed"):
                task = by_id[bytes(event.task_id)]
                self.live.pop((task.task_id, event.slot), None)
                task.slots[event.slot] = None if event.reopened else "done"
            elif name == "SlotsClosed" and not any(
                e.event_name in ("TaskDeclined", "Slashed") for e in tx.events
            ):
                task = by_id[bytes(event.task_id)]
                for slot in range(task.terms.redundancy):
                    if task.slots.get(slot) is None:
                        task.slots[slot] = "done"

    def _assign_checked(self, items):
        """Send a batch, and check no applied item landed on a prover at capacity."""
        before = {}
        for it in items:
            terms = TaskTerms(*it[0])
            m = self.registry.membership(it[1], terms.market_id)
            before[(it[1], terms.market_id)] = (m.used, m.capacity)
        tx = self._send(self.registry.assign_batch, items, sender=self.keeper)
        if tx is None:
            return
        landed: dict[tuple[str, int], int] = {}
        for event in tx.events.filter(self.registry.TaskAssigned):
            task = self.by_id[bytes(event.task_id)]
            key = (event.prover, task.terms.market_id)
            used, capacity = before[key]
            landed[key] = landed.get(key, 0) + 1
            assert used + landed[key] <= capacity, f"assignment landed on {event.prover} at capacity"
        self._record(tx)

    # ---------------------------------------------------------------- rules

    @initialize()
    def fund(self):
        # Every prover starts staked in both markets, so steps go to the lifecycle.
        for p in self.provers:
            self._send(self.registry.stake, sender=p, value=2 * ETHER)
            if not self.registry.membership(p, self.markets[1]).joined:
                self._send(
                    self.registry.join_market,
                    self.markets[1],
                    2,
                    ETHER // 100,
                    60,
                    3,
                    [self.mechanism],
                    sender=p,
                )

    @rule(
        p=st.integers(0, 5),
        action=st.sampled_from(["stake", "unstake", "withdraw_stake", "withdraw"]),
        amount=st.sampled_from([ETHER // 4, ETHER, 3 * ETHER]),
    )
    def money(self, p, action, amount):
        """Stake, unstake, withdraw unbonded stake (provers) or withdraw credits (anyone)."""
        if action == "withdraw":
            self._send(self.registry.withdraw, sender=self.accounts[p])
            return
        prover = self.provers[p % 3]
        if action == "stake":
            self._send(self.registry.stake, sender=prover, value=amount)
        elif action == "unstake":
            self._send(self.registry.unstake, amount, sender=prover)
        else:
            self._send(self.registry.withdraw_stake, sender=prover)

    @rule(
        p=st.integers(0, 2), m=st.integers(0, 1), capacity=st.integers(0, 2), caps=st.sampled_from([0, 1, 3])
    )
    def join_or_update(self, p, m, capacity, caps):
        prover, market = self.provers[p], self.markets[m]
        if self.registry.membership(prover, market).joined:
            self._send(
                self.registry.update_membership, market, capacity, ETHER // 100, 60, caps, sender=prover
            )
        else:
            mechanisms = [self.mechanism]
            self._send(
                self.registry.join_market,
                market,
                max(capacity, 1),
                ETHER // 100,
                60,
                caps,
                mechanisms,
                sender=prover,
            )

    @rule(
        m=st.integers(0, 1),
        kind=st.sampled_from(["frontend", "frontend", "dutch", "race"]),
        n=st.integers(1, 3),
        decay=st.booleans(),
        collateral=st.sampled_from([ETHER // 10, ETHER // 2, ETHER]),
        caps=st.sampled_from([0, 1, 2]),
    )
    def post(self, m, kind, n, decay, collateral, caps):
        mechanism = {"frontend": self.mechanism, "dutch": DUTCH, "race": OPEN_RACE}[kind]
        overrides = dict(
            redundancy=n, decay=decay, decay_floor=ETHER // 50, collateral=collateral, capabilities=caps
        )
        if kind == "dutch":
            overrides.update(start_price=ETHER // 100, ramp=200)
        self.salt += 1  # anvil may mine two posts in one second: keep tasks distinct
        terms = make_terms(self.markets[m], mechanism, salt=self.salt, **overrides)
        tx = self._send(
            self.registry.post_task,
            terms.as_tuple(),
            PROVER_INPUT,
            "",
            sender=self.requester,
            value=terms.escrow(),
        )
        if tx is not None:
            event = tx.events.filter(self.registry.TaskPosted)[0]
            task = Task(TaskTerms.from_event(event.terms), bytes(event.task_id))
            self.tasks.append(task)
            self.by_id[task.task_id] = task

    @precondition(lambda self: any(t.terms.mechanism_id > DUTCH for t in self.tasks))
    @rule(data=st.data(), size=st.integers(1, 3), signed=st.booleans())
    def assign(self, data, size, signed):
        open_tasks = [t for t in self.tasks if t.terms.mechanism_id == self.mechanism]
        if not open_tasks:
            return
        items = []
        for _ in range(size):
            task = data.draw(st.sampled_from(open_tasks))
            prover = self.provers[data.draw(st.integers(0, 2))]
            price = data.draw(st.sampled_from([ETHER // 200, ETHER // 50, task.terms.max_reward]))
            signature, min_price, expiry, nonce = b"", 0, 0, 0
            if signed:
                min_price, expiry = ETHER // 500, self.chain.pending_timestamp + 1_000
                nonce = self.registry.signature_nonce(prover)
                signature = sign_bid(
                    prover.private_key,
                    self.chain.chain_id,
                    self.registry.address,
                    task.task_id,
                    min_price,
                    expiry,
                    nonce,
                )
            items.append((task.terms.as_tuple(), prover.address, price, min_price, expiry, nonce, signature))
        self._assign_checked(items)

    @precondition(lambda self: any(t.terms.mechanism_id == DUTCH for t in self.tasks))
    @rule(data=st.data(), p=st.integers(0, 2))
    def lock(self, data, p):
        dutch = [t for t in self.tasks if t.terms.mechanism_id == DUTCH]
        if dutch:
            task = data.draw(st.sampled_from(dutch))
            prover = self.provers[p]
            m = self.registry.membership(prover, task.terms.market_id)
            tx = self._send(self.registry.lock, task.terms.as_tuple(), sender=prover)
            if tx is not None:
                assert m.used < m.capacity, "a DUTCH lock landed on a prover at capacity"
            self._record(tx)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), action=st.sampled_from(["prove", "prove", "decline", "slash"]))
    def settle(self, data, action):
        """End a live assignment: prove or decline it, or slash it (which is all that
        can be done once its deadline has passed)."""
        key = data.draw(st.sampled_from(sorted(self.live)))
        prover, assignment, task = self.live[key]
        args = (task.terms.as_tuple(), assignment.as_tuple())
        if self.chain.pending_timestamp > assignment.deadline:
            action = "slash"
        if action == "prove":
            tx = self._send(
                self.registry.prove, *args, STATEMENT, proof_for(STATEMENT, prover), sender=prover
            )
        elif action == "decline":
            tx = self._send(self.registry.decline, *args, sender=prover)
        else:
            tx = self._send(
                self.registry.slash,
                task.terms.as_tuple(),
                prover,
                assignment.as_tuple(),
                sender=self.stranger,
            )
        self._record(tx)

    @precondition(lambda self: any(t.terms.mechanism_id == OPEN_RACE for t in self.tasks))
    @rule(data=st.data(), p=st.integers(0, 2))
    def race(self, data, p):
        races = [t for t in self.tasks if t.terms.mechanism_id == OPEN_RACE]
        if races:
            task = data.draw(st.sampled_from(races))
            prover = self.provers[p]
            tx = self._send(
                self.registry.prove,
                task.terms.as_tuple(),
                (0, 0, 0, "0x" + "00" * 20),
                STATEMENT,
                proof_for(STATEMENT, prover.address),
                sender=prover,
            )
            self._record(tx)

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data(), cancel=st.booleans())
    def close(self, data, cancel):
        if self.tasks:
            task = data.draw(st.sampled_from(self.tasks))
            fn = self.registry.cancel if cancel else self.registry.reclaim
            sender = self.requester if cancel else self.stranger
            self._record(self._send(fn, task.terms.as_tuple(), sender=sender))

    @rule(seconds=st.sampled_from([5, 30, 120, 310, 400, 4_000]))
    def wait(self, seconds):
        self.chain.mine(1, deltatime=seconds)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def money_and_capacity_add_up(self):
        registry = self.registry
        stakes = 0
        for prover in self.provers:
            standing = registry.standing(prover)
            assert standing.locked <= standing.stake, "locked stake exceeds stake"
            live_collateral = sum(
                a_task.terms.collateral for (who, _, a_task) in self.live.values() if who == prover.address
            )
            assert standing.locked == live_collateral, "locked stake differs from live collateral"
            stakes += standing.stake + standing.unbonding
            for market in self.markets:
                live = sum(
                    1
                    for (who, _, a_task) in self.live.values()
                    if who == prover.address and a_task.terms.market_id == market
                )
                assert registry.membership(prover, market).used == live, "capacity use differs from live"
        credited = sum(registry.balances(a) for a in self.accounts)
        held = sum(
            (t.terms.max_reward + t.terms.frontend_fee)
            for t in self.tasks
            for slot in range(t.terms.redundancy)
            if t.slots.get(slot) != "done"
        )
        balance = self.chain.provider.get_balance(registry.address)
        assert balance == stakes + credited + held + registry.burnt(), "the registry's ETH does not add up"


def test_registry_state_machine(
    chain, registry, staked_provers, market, create_market, mechanism, requester, keeper, stranger
):
    RegistryMachine.ctx = dict(
        chain=chain,
        registry=registry,
        provers=staked_provers,
        markets=[market, create_market()],
        mechanism=mechanism,
        requester=requester,
        keeper=keeper,
        stranger=stranger,
    )
    run_state_machine_as_test(RegistryMachine, settings=settings.get_profile(PROFILE))
    print("\nstate machine outcomes:", ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.items())))
    # The runs must reach the interesting states, or the invariants prove little.
    for needed in ("TaskAssigned", "TaskProven", "Slashed", "TaskDeclined", "SlotsClosed"):
        assert OUTCOMES.get(needed, 0) > 0, f"no {needed} in {PROFILE} runs: the machine is not exploring"
