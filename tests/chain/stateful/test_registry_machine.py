"""Random lifecycles against the real registry on anvil, hostile terms included, with the
money, capacity and settlement invariants checked after every step.

The machine drives 3 provers in 4 markets: two trusted ones (grace 60 s and the least
grace, 2 s), a custom one whose verifier flips its answer and whose code can change (the
market freezes, and thaws when the code comes back), and a commit-reveal one. Its steps
are stake, unstake, withdraw, join, update, leave, post (frontend, DUTCH and OPEN_RACE
tasks, N up to 3, decaying, with windows, amounts, ramps, floors and capabilities drawn
up to their bounds and beyond: 0, 2**210, 2**256 - 1), assign (batches, signed bids), lock,
commit, race, prove (alone and in batches), decline, slash (by a keeper, the requester or
the prover itself), a void (the custom verifier's code replaced under a live assignment),
cancel, reclaim, markets with a grace of 0, flips and code changes of the custom verifier,
and time jumps up to a month. After every step it checks that:
- the registry's ETH equals stakes + unbonding + credited balances + the escrow of slots
  still open or assigned + burnt slashes (nothing stranded, nothing paid twice);
- locked stake never exceeds stake and equals the collateral of live assignments;
- capacity in use equals live assignments, and no assignment landed on a prover at
  capacity;
- every slot is paid at most once;
- every live assignment whose deadline has passed can be settled now (a slash, or a void
  in a frozen market, succeeds): no collateral is locked for good.
At the end of each example it jumps past every window, settles everything and checks
that no collateral is left locked, no capacity used and no escrow held.

The examples replay exactly from run to run: the chain's clock moves a second a block, and
no draw depends on a task id (ids hash the posting time, which starts from anvil's wall
clock). Hypothesis seeds them from the machine's source, so a change to it draws others.

Transactions go straight to the node (eth_call first, for the reason of a refusal, then
eth_sendTransaction from anvil's unlocked accounts) and the invariants are read in one
call (tests/contracts/RegistryLens.vy): that is what lets `make fuzz` run 100,000 steps.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import ape
import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import (
    collapse_if_tuple,
    event_abi_to_log_topic,
    function_abi_to_4byte_selector,
    get_abi_input_types,
    get_abi_output_types,
    to_checksum_address,
)
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from web3.exceptions import ContractLogicError

from provingmarket import BINDING_COMMIT_REVEAL, DUTCH, OPEN_RACE, Assignment, TaskTerms, sign_bid
from provingmarket.devnet import SQUARE, default_backend
from provingmarket.formats import (
    MAX_ASSIGN_WINDOW,
    MAX_CAPABILITIES,
    MAX_COLLATERAL,
    MAX_PROVING_WINDOW,
    MAX_REWARD,
    MIN_GRACE_PERIOD,
    ZERO_ADDRESS,
    proof_commit_digest,
)
from tests.factories import ETHER, PROVER_INPUT, STATEMENT, TESTS, make_terms, proof_for

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
    "debug",  # no shrinking: the first failure as it happened
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "fuzz",  # make fuzz: at least 100,000 steps in all
    max_examples=2_500,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

OUTCOMES: dict[str, int] = {}  # what the runs exercised, printed at the end
STEPS = {"steps": 0, "examples": 0}
GAS = 5_000_000
MONTH = MAX_PROVING_WINDOW

# A post's terms are ordinary ones, except for at most one drawn from its hostile values:
# at its bound (valid) and beyond it (refused), down to 0 and up to 2**256 - 1.
HOSTILE = {
    "proving_window": [0, 30, 61, MAX_PROVING_WINDOW, MAX_PROVING_WINDOW + 1, 2**210, 2**256 - 1],
    "assign_window": [0, 1, MAX_ASSIGN_WINDOW, MAX_ASSIGN_WINDOW + 1, 2**256 - 1],
    "max_reward": [0, MAX_REWARD, MAX_REWARD + 1, 2**255],
    "frontend_fee": [MAX_REWARD, MAX_REWARD + 1],
    "collateral": [0, MAX_COLLATERAL, MAX_COLLATERAL + 1],
    "capabilities": [MAX_CAPABILITIES, MAX_CAPABILITIES + 1],
    "ramp": [MAX_ASSIGN_WINDOW, MAX_ASSIGN_WINDOW + 1, 2**256 - 1],
    "decay_floor": [ETHER // 10, ETHER // 10 + 1, 2**256 - 1],
    "start_price": [ETHER // 10, ETHER // 10 + 1],
}


@dataclass
class Task:
    terms: TaskTerms
    task_id: bytes
    slots: dict[int, tuple[str, Assignment] | str] = field(default_factory=dict)  # slot -> live or "done"


class Codec:
    """A contract's functions and events, encoded and decoded with eth_abi directly.
    web3's contract objects check every call's arguments against the whole ABI and format
    every answer: some 50 ms a call, most of a step. Functions are keyed by name and
    argument count (Vyper's default arguments make overloads)."""

    def __init__(self, abi: list):
        self.functions: dict[tuple[str, int], tuple[bytes, list[str], list[str]]] = {}
        self.events: dict[bytes, tuple[str, list[tuple[str, str, bool]]]] = {}
        for entry in abi:
            if entry["type"] == "function":
                inputs, outputs = get_abi_input_types(entry), get_abi_output_types(entry)
                key = (entry["name"], len(inputs))
                self.functions[key] = (function_abi_to_4byte_selector(entry), inputs, outputs)
            elif entry["type"] == "event":
                fields = [(i["name"], collapse_if_tuple(i), i["indexed"]) for i in entry["inputs"]]
                self.events[event_abi_to_log_topic(entry)] = (entry["name"], fields)

    def data(self, name: str, args: tuple) -> str:
        selector, inputs, _ = self.functions[(name, len(args))]
        return "0x" + (selector + abi_encode(inputs, args)).hex()

    def result(self, name: str, nargs: int, raw: str):
        """The call's answer as web3 gives it: one value, or a tuple of them."""
        outputs = self.functions[(name, nargs)][2]
        values = checksummed(outputs, abi_decode(outputs, bytes.fromhex(raw.removeprefix("0x"))))
        return values[0] if len(values) == 1 else values

    def event(self, log: dict) -> SimpleNamespace:
        topics = [bytes.fromhex(t.removeprefix("0x")) for t in log["topics"]]
        name, fields = self.events[topics[0]]
        indexed = [(n, t) for n, t, i in fields if i]
        plain = [(n, t) for n, t, i in fields if not i]
        args = {}
        for (n, t), topic in zip(indexed, topics[1:], strict=True):
            [args[n]] = checksummed([t], abi_decode([t], topic))
        values = abi_decode([t for _, t in plain], bytes.fromhex(log["data"].removeprefix("0x")))
        args.update(zip([n for n, _ in plain], checksummed([t for _, t in plain], values), strict=True))
        return SimpleNamespace(event_name=name, **args)


def checksummed(types: list[str], values: tuple) -> tuple:
    """Addresses as web3 gives them (checksummed); eth_abi gives them in lower case."""
    return tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True))


class Node:
    """A contract through raw JSON-RPC: a call for the reason, then a transaction; logs
    decoded. One keep-alive HTTP session that reads no proxy settings (requests looks them
    up in the environment for every request otherwise)."""

    def __init__(self, uri: str, registry: str, lens: str, abi: list, lens_abi: list):
        self.uri = uri
        self.session = requests.Session()
        self.session.trust_env = False
        self.registry, self.codec = registry, Codec(abi)
        self.lens, self.lens_codec = lens, Codec(lens_abi)
        self.ids = 0

    def request(self, method: str, *params):
        self.ids += 1
        body = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": list(params)}
        answer = self.session.post(self.uri, json=body, timeout=60).json()
        return answer

    def result(self, method: str, *params):
        answer = self.request(method, *params)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def now(self) -> int:
        return int(self.result("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def call(self, name: str, *args, sender: str | None = None):
        """A view, or a dry run, on the latest block as mined (its timestamp included)."""
        return self._call(self.registry, self.codec, name, args, sender)

    def audit(self, *args):
        return self._call(self.lens, self.lens_codec, "audit", args, None)

    def _call(self, to: str, codec: Codec, name: str, args: tuple, sender: str | None):
        latest = self.result("eth_blockNumber")
        tx = {"to": to, "data": codec.data(name, args), **({"from": sender} if sender else {})}
        answer = self.request("eth_call", tx, latest)
        if "error" in answer:
            raise ContractLogicError(answer["error"].get("message", "execution reverted"))
        return codec.result(name, len(args), answer["result"])

    def send(self, name: str, *args, sender: str, value: int = 0) -> list | None:
        """The events of the transaction, or None (counted, with the registry's reason) if
        the registry refuses it. It is sent as it is, not simulated first: anvil's calls
        read a clock of their own, which its blocks need not follow after a revert."""
        data = self.codec.data(name, args)
        tx = {"from": sender, "to": self.registry, "data": data, "value": hex(value), "gas": hex(GAS)}
        tx_hash = self.result("eth_sendTransaction", tx)
        receipt = self.receipt(tx_hash)
        if int(receipt["status"], 16) != 1:
            trace = self.result("debug_traceTransaction", tx_hash, {"tracer": "callTracer"})
            reason = trace.get("revertReason") or trace.get("error") or "?"
            key = f"{name} refused ({reason.removeprefix('registry: ')[:40]})"
            OUTCOMES[key] = OUTCOMES.get(key, 0) + 1
            return None
        events = []
        for log in receipt["logs"]:
            event = self.codec.event(log)
            events.append(event)
            key = event.event_name
            if key in ("AssignmentSkipped", "ProofSkipped"):
                key = f"{key} ({event.reason.removeprefix('registry: ')})"
            OUTCOMES[key] = OUTCOMES.get(key, 0) + 1
        return events

    def receipt(self, tx_hash: str) -> dict:
        """anvil mines a transaction just after it returns its hash: ask again at once."""
        deadline = time.monotonic() + 30
        while (receipt := self.result("eth_getTransactionReceipt", tx_hash)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{tx_hash} not mined within 30 s")
            time.sleep(0.002)
        return receipt

    def jump(self, seconds: int) -> None:
        self.request("anvil_setNextBlockTimestamp", self.now() + seconds)
        self.request("evm_mine")


class RegistryMachine(RuleBasedStateMachine):
    """One example: the session's registry, markets and actors, from a chain snapshot."""

    ctx: dict = {}

    def __init__(self):
        super().__init__()
        c = self.ctx
        self.node: Node = c["node"]
        self.snapshot = self.node.request("evm_snapshot")["result"]
        # Each example starts one second after the snapshot's block, whatever time anvil's
        # clock kept from the last example's jumps: examples replay exactly.
        self.node.request("anvil_setNextBlockTimestamp", self.node.now() + 1)
        self.provers: list = c["provers"]
        self.markets: list[int] = c["markets"]
        self.flipping = c["flipping"]
        self.requester, self.keeper, self.stranger = c["requester"], c["keeper"], c["stranger"]
        self.accounts = [self.requester, self.keeper, self.stranger, *self.provers]
        self.tasks: list[Task] = []
        self.by_id: dict[bytes, Task] = {}
        self.salt = 0
        self.live: dict[tuple[bytes, int], tuple[str, Assignment, Task]] = {}
        self.committed: dict[tuple[bytes, str], bytes] = {}  # (task, prover) -> proof committed
        self.code_replaced = False
        STEPS["examples"] += 1

    def _send(self, name: str, *args, sender, value: int = 0):
        STEPS["steps"] += 1
        events = self.node.send(name, *args, sender=sender.address, value=value)
        self._record(events)
        return events

    def _record(self, events) -> None:
        """Mirror what the registry reported, checking each slot is paid at most once."""
        if events is None:
            return
        for event in events:
            name = event.event_name
            if name == "TaskAssigned":
                task = self.by_id[bytes(event.task_id)]
                assert task.slots.get(event.slot) is None, "assigned a slot that is not open"
                assignment = Assignment(event.slot, event.price, event.deadline, event.frontend)
                task.slots[event.slot] = (event.prover, assignment)
                self.live[(task.task_id, event.slot)] = (event.prover, assignment, task)
            elif name == "TaskProven":
                task = self.by_id[bytes(event.task_id)]
                assert task.slots.get(event.slot) != "done", "a slot was paid twice"
                assert (
                    event.paid + event.fee + event.refund == task.terms.max_reward + task.terms.frontend_fee
                )
                task.slots[event.slot] = "done"
                self.live.pop((task.task_id, event.slot), None)
            elif name in ("TaskDeclined", "Slashed"):
                task = self.by_id[bytes(event.task_id)]
                self.live.pop((task.task_id, event.slot), None)
                task.slots[event.slot] = None if event.reopened else "done"
            elif name == "AssignmentVoided":
                task = self.by_id[bytes(event.task_id)]
                self.live.pop((task.task_id, event.slot), None)
                task.slots[event.slot] = "done"
            elif name == "SlotsClosed" and not any(
                e.event_name in ("TaskDeclined", "Slashed") for e in events
            ):
                task = self.by_id[bytes(event.task_id)]
                for slot in range(task.terms.redundancy):
                    if task.slots.get(slot) is None:
                        task.slots[slot] = "done"

    def _assign_checked(self, items) -> None:
        """Send a batch, and check no applied item landed on a prover at capacity."""
        before = {}
        for it in items:
            member = self.node.call("membership", it[1], it[0][0])
            before[(it[1], it[0][0])] = (member[2], member[1])
        events = self._send("assign_batch", items, sender=self.keeper)
        landed: dict[tuple[str, int], int] = {}
        for event in events or []:
            if event.event_name == "TaskAssigned":
                key = (event.prover, self.by_id[bytes(event.task_id)].terms.market_id)
                used, capacity = before[key]
                landed[key] = landed.get(key, 0) + 1
                assert used + landed[key] <= capacity, f"assignment landed on {event.prover} at capacity"

    def _proof(self, task: Task, prover: str) -> bytes:
        if task.terms.market_id == self.markets[3]:  # nothing binds it: a fresh proof each time
            return default_backend().prove(SQUARE, SQUARE.sample, ZERO_ADDRESS).proof
        return proof_for(STATEMENT, prover)

    # ---------------------------------------------------------------- rules

    @initialize()
    def start(self):
        pass

    @rule(kind=st.sampled_from(["membership", "money", "verifier"]), data=st.data())
    def side(self, kind, data):
        """What happens around the tasks, one rule so it does not crowd them out: money
        moves, memberships change, the custom verifier misbehaves, markets are opened."""
        if kind == "money":
            self._money(
                data.draw(st.integers(0, 5), label="p"),
                data.draw(
                    st.sampled_from(["stake", "unstake", "withdraw_stake", "withdraw"]), label="action"
                ),
                data.draw(st.sampled_from([ETHER // 4, ETHER, 3 * ETHER]), label="amount"),
            )
        elif kind == "membership":
            self._membership(
                data.draw(st.integers(0, 2), label="p"),
                data.draw(st.integers(0, 3), label="m"),
                data.draw(st.sampled_from([2, 1, 2, 0]), label="capacity"),
                data.draw(st.sampled_from([0, 1, 3, MAX_CAPABILITIES]), label="caps"),
                data.draw(st.sampled_from([0, 60, 120]), label="proving_time"),
                data.draw(st.sampled_from([False, False, False, True]), label="leave"),
            )
        else:
            changes = ["accept", "reject", "replace code", "restore code", "grace 2", "grace 0", "grace 1"]
            self._hostile_market(data.draw(st.sampled_from([*changes, "grace 86401"]), label="change"))

    def _money(self, p, action, amount):
        """Stake, unstake, withdraw unbonded stake (provers) or withdraw credits (anyone)."""
        if action == "withdraw":
            self._send("withdraw", sender=self.accounts[p])
            return
        prover = self.provers[p % 3]
        if action == "stake":
            self._send("stake", sender=prover, value=amount)
        elif action == "unstake":
            self._send("unstake", amount, sender=prover)
        else:
            self._send("withdraw_stake", sender=prover)

    def _membership(self, p, m, capacity, caps, proving_time, leave):
        prover, market = self.provers[p], self.markets[m]
        if self.node.call("membership", prover.address, market)[0]:
            if leave:
                self._send("leave_market", market, sender=prover)
            else:
                self._send(
                    "update_membership", market, capacity, ETHER // 100, proving_time, caps, sender=prover
                )
        else:
            mechanisms = [self.ctx["mechanism"]]
            ask = ETHER // 100
            self._send(
                "join_market", market, max(capacity, 1), ask, proving_time, caps, mechanisms, sender=prover
            )

    @rule(
        m=st.integers(0, 3),
        kind=st.sampled_from(["frontend", "frontend", "dutch", "race"]),
        n=st.integers(1, 3),
        decay=st.booleans(),
        proving_window=st.sampled_from([90, 300, 300, 600]),
        collateral=st.sampled_from([ETHER // 10, ETHER // 2, ETHER]),
        caps=st.sampled_from([0, 0, 1, 2]),
        hostile=st.sampled_from([None, None, None, *HOSTILE]),
        assign_to=st.sampled_from([0, 1, 2, None]),
        data=st.data(),
    )
    def post(self, m, kind, n, decay, proving_window, collateral, caps, hostile, assign_to, data):
        mechanism = {"frontend": self.ctx["mechanism"], "dutch": DUTCH, "race": OPEN_RACE}[kind]
        overrides = dict(
            redundancy=n,
            decay=decay,
            decay_floor=ETHER // 50,
            collateral=collateral,
            capabilities=caps,
            proving_window=proving_window,
            assign_window=0 if kind == "race" else 600,
        )
        if kind == "dutch":
            overrides.update(start_price=ETHER // 100, ramp=200)
        if hostile is not None:
            overrides[hostile] = data.draw(st.sampled_from(HOSTILE[hostile]), label=hostile)
        if kind != "frontend":
            overrides["frontend_fee"] = 0
        self.salt += 1  # anvil may mine two posts in one second: keep tasks distinct
        terms = make_terms(self.markets[m], mechanism, salt=self.salt, **overrides)
        value = min(terms.escrow(), 2**100)  # more than bounded terms escrow; others are refused anyway
        args = (terms.as_tuple(), PROVER_INPUT, "")
        events = self._send("post_task", *args, sender=self.requester, value=value)
        for event in events or []:
            if event.event_name == "TaskPosted":
                task = Task(TaskTerms.from_event(event.terms), bytes(event.task_id))
                self.tasks.append(task)
                self.by_id[task.task_id] = task
                if kind == "frontend" and assign_to is not None:  # a frontend that is quick
                    prover = self.provers[assign_to]
                    price = task.terms.max_reward
                    self._assign_checked([(task.terms.as_tuple(), prover.address, price, 0, 0, 0, b"")])

    @precondition(lambda self: any(t.terms.mechanism_id > DUTCH for t in self.tasks))
    @rule(data=st.data(), size=st.integers(1, 3), signed=st.booleans())
    def assign(self, data, size, signed):
        open_tasks = [t for t in self.tasks if t.terms.mechanism_id > DUTCH]
        items = []
        for _ in range(size):
            task = data.draw(st.sampled_from(open_tasks))
            prover = self.provers[data.draw(st.integers(0, 2))]
            price = data.draw(st.sampled_from([ETHER // 200, ETHER // 50, task.terms.max_reward]))
            signature, min_price, expiry, nonce = b"", 0, 0, 0
            if signed:
                min_price, expiry = ETHER // 500, self.node.now() + 1_000
                nonce = self.node.call("signature_nonce", prover.address)
                signature = sign_bid(
                    prover.private_key,
                    self.ctx["chain_id"],
                    self.ctx["registry"],
                    task.task_id,
                    min_price,
                    expiry,
                    nonce,
                )
            items.append((task.terms.as_tuple(), prover.address, price, min_price, expiry, nonce, signature))
        self._assign_checked(items)

    @precondition(lambda self: any(t.terms.mechanism_id in (DUTCH, OPEN_RACE) for t in self.tasks))
    @rule(data=st.data(), p=st.integers(0, 2))
    def take(self, data, p):
        """A prover takes a slot itself: locks a DUTCH task, or commits to a proof of a
        race in the commit-reveal market."""
        own = [t for t in self.tasks if t.terms.mechanism_id == DUTCH or t.terms.market_id == self.markets[3]]
        own = [t for t in own if t.terms.mechanism_id in (DUTCH, OPEN_RACE)]
        if not own:
            return
        task = data.draw(st.sampled_from(own))
        prover = self.provers[p]
        member = self.node.call("membership", prover.address, task.terms.market_id)
        if task.terms.mechanism_id == DUTCH:
            events = self._send("lock", task.terms.as_tuple(), sender=prover)
        else:
            proof = self._proof(task, prover.address)
            digest = proof_commit_digest(task.task_id, prover.address, proof)
            events = self._send("commit_proof", task.terms.as_tuple(), digest, sender=prover)
            if events:
                self.committed[(task.task_id, prover.address)] = proof
        if events:
            assert member[2] < member[1], "a slot a prover took itself landed at capacity"

    def _live_one(self, data, frontend_only: bool = False, market: int | None = None, newest: bool = False):
        # In the order they were assigned (not by task id: ids hash the posting time, which
        # follows anvil's wall clock from run to run, and an order by id would not replay).
        keys = [
            k
            for k, (_, a, t) in self.live.items()
            if not (frontend_only and a.frontend == ZERO_ADDRESS) and market in (None, t.terms.market_id)
        ]
        if newest:
            keys = keys[-1:]
        if not keys:
            return None
        prover, assignment, task = self.live[data.draw(st.sampled_from(keys))]
        sender = next(a for a in self.accounts if a.address == prover)
        return sender, assignment, task

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def prove(self, data):
        """A live assignment's prover proves it (too late, in a frozen market, with a flipped
        verifier, or in time)."""
        sender, assignment, task = self._live_one(data)
        proof = self.committed.get((task.task_id, sender.address)) or self._proof(task, sender.address)
        self._send("prove", task.terms.as_tuple(), assignment.as_tuple(), STATEMENT, proof, sender=sender)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), frontend_only=st.booleans(), newest=st.booleans())
    def decline(self, data, frontend_only, newest):
        """A prover gives an assignment back: within the grace period (the newest one, half
        the time, so that some are), or too late, or a slot it took itself (refused)."""
        found = self._live_one(data, frontend_only, newest=newest)
        if found is not None:
            sender, assignment, task = found
            self._send("decline", task.terms.as_tuple(), assignment.as_tuple(), sender=sender)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), slasher=st.sampled_from(["stranger", "requester", "prover"]), frozen=st.booleans())
    def slash(self, data, slasher, frozen):
        """Anyone slashes a live assignment (refused before its deadline unless the market
        is frozen): a keeper, the task's requester or the prover itself; one in the custom
        market half the time, whose verifier's code is then replaced (a void, not a slash)."""
        found = None
        if frozen:  # in the custom market, its verifier's code replaced first: a void
            found = self._live_one(data, market=self.markets[2])
            if found is not None and not self.code_replaced:
                self._hostile_market("replace code")
        sender, assignment, task = found or self._live_one(data)
        who = {"stranger": self.stranger, "requester": self.requester, "prover": sender}[slasher]
        args = (task.terms.as_tuple(), sender.address, assignment.as_tuple())
        self._send("slash", *args, sender=who)

    @precondition(lambda self: any(t.terms.market_id == self.markets[2] for (_, _, t) in self.live.values()))
    @rule(data=st.data())
    def void(self, data):
        """An assignment is live in the custom market when its verifier's code is replaced:
        a slash voids it at once, deadline or not (slash's `frozen` finds one only now and
        then, as few assignments land there)."""
        sender, assignment, task = self._live_one(data, market=self.markets[2])
        if not self.code_replaced:
            self._hostile_market("replace code")
        args = (task.terms.as_tuple(), sender.address, assignment.as_tuple())
        self._send("slash", *args, sender=self.stranger)

    @precondition(lambda self: bool(self.live) or any(t.terms.mechanism_id == OPEN_RACE for t in self.tasks))
    @rule(data=st.data(), p=st.integers(0, 2), size=st.integers(1, 3))
    def prove_batch(self, data, p, size):
        """A prover's batch: its live assignments and races, some already lost or late."""
        prover = self.provers[p]
        mine = [(a, t) for (who, a, t) in self.live.values() if who == prover.address]
        races = [
            t
            for t in self.tasks
            if t.terms.mechanism_id == OPEN_RACE and t.terms.market_id != self.markets[3]
        ]
        items = []
        for _ in range(size):
            if mine and (not races or data.draw(st.booleans())):
                assignment, task = data.draw(st.sampled_from(mine))
                items.append(
                    (
                        task.terms.as_tuple(),
                        assignment.as_tuple(),
                        STATEMENT,
                        self._proof(task, prover.address),
                    )
                )
            elif races:
                task = data.draw(st.sampled_from(races))
                race = (0, 0, 0, ZERO_ADDRESS)
                items.append((task.terms.as_tuple(), race, STATEMENT, proof_for(STATEMENT, prover.address)))
        if items:
            self._send("prove_batch", items, sender=prover)

    @precondition(lambda self: any(t.terms.mechanism_id == OPEN_RACE for t in self.tasks))
    @rule(data=st.data(), p=st.integers(0, 2))
    def race(self, data, p):
        races = [t for t in self.tasks if t.terms.mechanism_id == OPEN_RACE]
        task = data.draw(st.sampled_from(races))
        prover = self.provers[p]
        proof = proof_for(STATEMENT, prover.address)
        self._send("prove", task.terms.as_tuple(), (0, 0, 0, ZERO_ADDRESS), STATEMENT, proof, sender=prover)

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data(), cancel=st.booleans())
    def close(self, data, cancel):
        task = data.draw(st.sampled_from(self.tasks))
        if cancel:
            self._send("cancel", task.terms.as_tuple(), sender=self.requester)
        else:
            self._send("reclaim", task.terms.as_tuple(), sender=self.stranger)

    def _hostile_market(self, change):
        """The custom verifier flips its answer (its code hash stays), or its code is
        replaced (its market freezes) and later restored (it thaws); or someone opens a
        market with a grace period of 0 (refused), 1 (refused), 2 or too long (refused)."""
        if change.startswith("grace"):
            sample = list(STATEMENT)
            sample[0] = int(self.stranger.address, 16)
            terms = (0, 0, int(change.split()[1]), 5_000, 1_000, 1, 0)
            proof = proof_for(tuple(sample))
            self._send("create_market", self.ctx["verifier"], sample, proof, *terms, sender=self.stranger)
            return
        STEPS["steps"] += 1
        if change in ("reject", "accept"):
            if self.code_replaced:
                return
            data = self.ctx["flipping_codec"].data("set_accepting", (change == "accept",))
            tx = {"from": self.stranger.address, "to": self.flipping, "data": data}
            self.node.receipt(self.node.result("eth_sendTransaction", tx))
        else:
            self.code_replaced = change == "replace code"
            code = self.ctx["other_code"] if self.code_replaced else self.ctx["flipping_code"]
            self.node.request("anvil_setCode", self.flipping, code)
        OUTCOMES[f"verifier: {change}"] = OUTCOMES.get(f"verifier: {change}", 0) + 1

    @rule(seconds=st.sampled_from([5, 30, 5, 120, 310, 400, 4_000, MONTH + 1]))
    def wait(self, seconds):
        STEPS["steps"] += 1
        self.node.jump(seconds)

    # ---------------------------------------------------------------- invariants

    def _audit(self):
        provers = [p.address for p in self.provers]
        accounts = [a.address for a in self.accounts]
        return self.node.audit(self.ctx["registry"], provers, self.markets, accounts)

    @invariant()
    def money_and_capacity_add_up(self):
        stakes, locked, unbonding, used, balances, burnt, balance = self._audit()
        for i, prover in enumerate(self.provers):
            assert locked[i] <= stakes[i], "locked stake exceeds stake"
            live = [t for (who, _, t) in self.live.values() if who == prover.address]
            assert locked[i] == sum(t.terms.collateral for t in live), (
                "locked stake differs from live collateral"
            )
            for j, market in enumerate(self.markets):
                in_market = sum(1 for t in live if t.terms.market_id == market)
                assert used[i * len(self.markets) + j] == in_market, "capacity use differs from live"
        held = sum(
            t.terms.max_reward + t.terms.frontend_fee
            for t in self.tasks
            for slot in range(t.terms.redundancy)
            if t.slots.get(slot) != "done"
        )
        assert balance == sum(stakes) + sum(unbonding) + sum(balances) + held + burnt, (
            "the registry's ETH does not add up"
        )

    @invariant()
    def overdue_assignments_can_be_settled(self):
        """No collateral is locked for good: an assignment past its deadline can always
        be slashed (or voided, in a frozen market) now."""
        now = self.node.now()
        for prover, assignment, task in self.live.values():
            if now > assignment.deadline:
                try:
                    self.node.call(
                        "slash",
                        task.terms.as_tuple(),
                        prover,
                        assignment.as_tuple(),
                        sender=self.stranger.address,
                    )
                except ContractLogicError as error:
                    raise AssertionError(f"an overdue assignment cannot be settled: {error}") from None

    def teardown(self):
        try:
            self._settle_everything()
        finally:
            self.node.request("evm_revert", self.snapshot)

    def _settle_everything(self) -> None:
        """Jump past every window, settle every assignment and close every task: nothing
        may be left locked, used or held."""
        self.node.jump(2 * MONTH + 2)
        for prover, assignment, task in list(self.live.values()):
            events = self._send(
                "slash", task.terms.as_tuple(), prover, assignment.as_tuple(), sender=self.stranger
            )
            assert events is not None, "an overdue assignment could not be settled at the end"
        for task in self.tasks:
            if any(task.slots.get(slot) is None for slot in range(task.terms.redundancy)):
                assert self._send("reclaim", task.terms.as_tuple(), sender=self.stranger) is not None
        stakes, locked, unbonding, used, balances, burnt, balance = self._audit()
        assert not any(locked) and not any(used), (
            "collateral or capacity left locked after settling everything"
        )
        assert balance == sum(stakes) + sum(unbonding) + sum(balances) + burnt, "escrow left after settling"


def test_registry_state_machine(
    chain,
    project,
    registry,
    staked_provers,
    market,
    create_market,
    deploy_verifier,
    mechanism,
    owner,
    requester,
    keeper,
    stranger,
):
    web3 = chain.provider.web3
    flipping_source = (TESTS / "contracts" / "FlippingVerifier.vy").read_text()
    flipping = owner.deploy(
        ape.compilers.compile_source("vyper", flipping_source, contractName="FlippingVerifier")
    )
    lens_source = (TESTS / "contracts" / "RegistryLens.vy").read_text()
    lens = owner.deploy(ape.compilers.compile_source("vyper", lens_source, contractName="RegistryLens"))
    markets = [
        market,
        create_market(grace_period=MIN_GRACE_PERIOD),
        create_market(verifier_address=flipping),
        create_market(binding=BINDING_COMMIT_REVEAL),
    ]
    for prover in staked_provers:
        for market_id in markets[1:]:
            registry.join_market(market_id, 2, ETHER // 100, 60, 3, [mechanism], sender=prover)
    chain.set_balance(requester.address, 2**130)  # escrows at MAX_REWARD
    other = deploy_verifier()  # another verifier's code: the custom market freezes under it
    abi = [entry.model_dump(mode="json", by_alias=True) for entry in registry.contract_type.abi]
    RegistryMachine.ctx = dict(
        node=Node(chain.provider.uri, registry.address, lens.address, abi, lens_abi(lens)),
        registry=registry.address,
        chain_id=chain.chain_id,
        provers=staked_provers,
        markets=markets,
        mechanism=mechanism,
        verifier=deploy_verifier().address,
        flipping=flipping.address,
        flipping_codec=Codec(lens_abi(flipping)),
        flipping_code="0x" + bytes(chain.provider.get_code(flipping.address)).hex(),
        other_code="0x" + bytes(chain.provider.get_code(other.address)).hex(),
        requester=requester,
        keeper=keeper,
        stranger=stranger,
    )
    started = time.perf_counter()
    # The chain's clock moves one second a block, whatever the wall clock does, so every
    # example replays exactly (hypothesis replays examples to shrink them).
    web3.provider.make_request("anvil_setBlockTimestampInterval", [1])
    try:
        run_state_machine_as_test(RegistryMachine, settings=settings.get_profile(PROFILE))
    finally:
        web3.provider.make_request("anvil_removeBlockTimestampInterval", [])
    seconds = time.perf_counter() - started
    print(
        f"\nstate machine ({PROFILE}): {STEPS['steps']:,} steps in {STEPS['examples']:,} examples, "
        f"{seconds:,.0f} s ({STEPS['steps'] / seconds:,.0f} steps/s)"
    )
    print("outcomes:", ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.items())))
    # The runs must reach the interesting states, or the invariants prove little.
    for needed in (
        "TaskAssigned",
        "TaskProven",
        "Slashed",
        "TaskDeclined",
        "SlotsClosed",
        "AssignmentVoided",
    ):
        assert OUTCOMES.get(needed, 0) > 0, f"no {needed} in {PROFILE} runs: the machine is not exploring"
    refused = [k for k in OUTCOMES if k.startswith("post_task refused (") and "window too long" in k]
    assert refused, f"no hostile window refused in {PROFILE} runs: the machine is not exploring"


def lens_abi(contract) -> list:
    return [entry.model_dump(mode="json", by_alias=True) for entry in contract.contract_type.abi]
