"""The chaos run's tasks and its tidying: a seeded mix over every mechanism (the orderbook,
the sealed-bid auction, the election, the double auction, the open race, the reverse-Dutch
auction and a fallback chain orderbook → open race), posted in waves by one requester that
counts its own nonces (no waiting for each transaction), and a janitor that slashes
assignments left overdue and reclaims slots left unfilled once their windows are over, so
every task ends proven or refunded whoever was killed meanwhile."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from provingmarket.chain.client import RegistryClient
from provingmarket.devnet.chain import fees_from_node, send_signed
from provingmarket.devnet.stack import Requester, task_terms
from provingmarket.formats import DUTCH, OPEN_RACE, Link, TaskTerms, encode_chain
from provingmarket.market.qos import Tally, TaskQoS

CHAIN = "chain"  # a fallback chain: the orderbook, then the open race
SHARES = {  # each mechanism's share of the tasks
    "orderbook": 3,
    "auction": 3,
    "election": 3,
    "double_auction": 3,
    "open race": 3,
    "dutch": 3,
    CHAIN: 1,
}
OVERDUE = 5  # seconds past a deadline or a window before the janitor steps in (keepers first)
RESEND = 15.0  # seconds before the janitor sends a slash or reclaim again that did not take


@dataclass(frozen=True)
class Pace:
    assign_window: int = 20  # seconds for a frontend to assign (a chain: split between its links)
    proving_window: int = 30  # seconds to prove once assigned (the open race: to win)


def mix(seed: int, tasks: int) -> list[str]:
    """The mechanism of each task, in posting order: every one of SHARES at least once
    (when `tasks` allows), the rest drawn by share, shuffled."""
    rng = random.Random(seed)
    names = list(SHARES)
    chosen = names[:tasks] + rng.choices(names, [SHARES[n] for n in names], k=max(0, tasks - len(names)))
    rng.shuffle(chosen)
    return chosen


def terms_for(
    mechanism: str,
    mechanisms: dict[str, int],
    market_id: int,
    salt: int,
    reward: int,
    collateral: int,
    pace: Pace,
) -> TaskTerms:
    """A task's terms through `mechanism` (`mechanisms`: the registered ones' ids by name)."""
    common = dict(salt=salt, max_reward=reward, collateral=collateral, proving_window=pace.proving_window)
    if mechanism == "open race":
        return task_terms(market_id, OPEN_RACE, **common)
    if mechanism == "dutch":
        return task_terms(
            market_id, DUTCH, assign_window=pace.assign_window, ramp=pace.assign_window, **common
        )
    if mechanism == CHAIN:
        half = pace.assign_window // 2
        links = [Link(mechanisms["orderbook"], half), Link(OPEN_RACE, pace.assign_window - half)]
        return task_terms(market_id, encode_chain(links), assign_window=pace.assign_window, **common)
    return task_terms(market_id, mechanisms[mechanism], assign_window=pace.assign_window, **common)


@dataclass
class Posted:
    index: int
    mechanism: str
    terms: TaskTerms
    tx: bytes
    task_id: str = ""  # 0x hex, once its TaskPosted is seen


class Poster:
    """Posts the planned tasks in waves: `due(elapsed)` posts every task whose time has come."""

    def __init__(self, requester: Requester, plan: list[tuple[float, str, TaskTerms]]):
        self.requester = requester
        self.plan = sorted(plan, key=lambda p: p[0])
        self.posted: list[Posted] = []
        self.by_salt: dict[int, Posted] = {}

    def due(self, elapsed: float) -> int:
        """Post what is due by `elapsed` seconds; how many were posted."""
        sent = 0
        while self.plan and self.plan[0][0] <= elapsed:
            _, mechanism, terms = self.plan.pop(0)
            tx = self.requester.post(terms, gas=800_000)
            posted = Posted(len(self.posted), mechanism, terms, tx)
            self.posted.append(posted)
            self.by_salt[terms.salt] = posted
            sent += 1
        return sent

    @property
    def done(self) -> bool:
        return not self.plan


@dataclass
class Follower:
    """The registry's events as they come, for the janitor and the checks at the end:
    every event (oldest first), the tasks' QoS (provingmarket.market.qos.Tally) and the
    assignments still held."""

    client: RegistryClient
    cursor: int = 0
    events: list = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    held: dict[tuple[str, str], tuple[int, int, int, str]] = field(default_factory=dict)
    _times: dict[int, int] = field(default_factory=dict)

    def block_time(self, number: int) -> int:
        if number not in self._times:
            self._times[number] = int(self.client.web3.eth.get_block(number).get("timestamp", 0))
        return self._times[number]

    def follow(self) -> list[TaskQoS]:
        head = self.client.web3.eth.block_number
        if head >= self.cursor:
            new = self.client.events(from_block=self.cursor, to_block=head)
            self.cursor = head + 1
            self.events += new
            self.tally.feed(new, self.block_time)
            for e in new:
                if "task_id" not in e.args:
                    continue
                key = ("0x" + bytes(e.task_id).hex(), e.args.get("prover", ""))
                if e.name == "TaskAssigned":
                    self.held[key] = (e.slot, e.price, e.deadline, e.frontend)
                elif e.name in ("TaskProven", "Slashed", "TaskDeclined", "AssignmentVoided"):
                    self.held.pop(key, None)
        return self.tally.tasks()


class Janitor:
    """Slashes assignments OVERDUE seconds past their deadline and reclaims slots left
    unfilled OVERDUE seconds after their windows, for the tasks in `ours` (anyone may; a
    keeper that was first makes ours revert, which costs gas, nothing else). Sends without
    waiting (its own nonces); what did not take is sent again after RESEND seconds."""

    def __init__(self, client: RegistryClient):
        self.client = client
        me = client.require_signer("the janitor needs an account").address
        self.nonce = client.web3.eth.get_transaction_count(me, "pending")
        self.sent: dict[str, float] = {}  # what → when last sent
        self.slashes = 0
        self.reclaims = 0

    def tidy(self, follower: Follower, tasks: list[TaskQoS], ours: set[str]) -> None:
        now = follower.block_time(follower.client.web3.eth.block_number)
        by_id = {q.task_id: q for q in tasks}
        fees = None
        for (task_id, prover), (slot, price, deadline, frontend) in list(follower.held.items()):
            if task_id in ours and now > deadline + OVERDUE and task_id in by_id:
                fees = fees or fees_from_node(self.client.web3)
                call = self.client.contract.functions.slash(
                    by_id[task_id].terms.as_tuple(), prover, (slot, price, deadline, frontend)
                )
                self.slashes += self._send(f"slash:{task_id}:{prover}", call, fees)
        for q in tasks:
            if q.task_id not in ours or q.settled:
                continue
            window = q.terms.proving_window if q.mechanism_id == OPEN_RACE else q.terms.assign_window
            held = sum(1 for (tid, _) in follower.held if tid == q.task_id)
            if now > q.posted_at + window + OVERDUE and q.proofs + q.refunded + held < q.redundancy:
                fees = fees or fees_from_node(self.client.web3)
                call = self.client.contract.functions.reclaim(q.terms.as_tuple())
                self.reclaims += self._send(f"reclaim:{q.task_id}", call, fees)

    def _send(self, what: str, call, fees) -> int:
        if time.monotonic() - self.sent.get(what, -RESEND) < RESEND:
            return 0
        send_signed(self.client, call, 0, self.nonce, 500_000, fees)
        self.nonce += 1
        self.sent[what] = time.monotonic()
        return 1
