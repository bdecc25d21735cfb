"""Quality of service as the chain recorded it: per task, and aggregated.

Everything here is read from the registry's events (no frontend's or agent's word is
taken): `measure` replays them in order and returns one `TaskQoS` per posted task:

- **time to assignment**: from the task's posting block to its first `TaskAssigned`
  (None for an open race, which nobody assigns, and for a task never assigned);
- **time to first proof** and the time of every valid proof (`TaskProven`), in seconds
  after posting, by block timestamps;
- **price paid against the maximum**: what the provers were paid over what the proofs
  could have cost at the task's maximum reward (`paid / (max_reward × proofs)`), and what
  the requester spent in all (paid plus frontend fees);
- **proofs delivered against the redundancy asked**;
- **slashes** of the task's provers;
- **provers who could take part** (in the task's market when it was posted, accepting
  its mechanism unless built in, with stake at least the task's collateral, capabilities
  covering the task's and a proving time within its proving window) and **provers who
  did** (distinct provers assigned or that proved);
- whether its slots were refunded, and whether the requester cancelled it.

`summarize` aggregates tasks per mechanism with its parameters (`arm`), per market or per
requester; `table` prints the aggregate.

Following a chain, neither needs the whole history again: `Tally` is fed each event once
and `Tally.updates()` gives only the tasks the new events touched; `Groups` folds those
into running sums and sorted times per group (the task's previous figures taken out, the
new ones put in) and gives what `summarize` would over every task, at a cost that grows
with the new events, not with the history. The scores a requester's weights give these
numbers are in provingmarket/market/preferences.py.
"""

from __future__ import annotations

import bisect
import functools
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provingmarket.formats import BUILT_IN_MECHANISMS, TaskTerms

BUILT_IN = BUILT_IN_MECHANISMS  # the registry runs these itself: id -> name


@dataclass(frozen=True)
class TaskQoS:
    task_id: str  # 0x hex
    market_id: int
    mechanism_id: int
    mechanism: str  # the registered name, or "open race" / "dutch"
    requester: str
    posted_at: int  # unix seconds: the posting block's timestamp
    terms: TaskTerms
    min_reward: int  # the market's least reward: the unit the cost score measures in
    assigned_after: int | None  # seconds from posting to the first assignment
    proof_times: tuple[int, ...]  # seconds from posting to each valid proof, in order
    provers: tuple[str, ...]  # who proved, in order
    paid: int  # to provers, every proof
    fees: int  # to frontends
    slashes: int
    could: int  # distinct provers that could take part when it was posted
    took_part: int  # distinct provers assigned to it or that proved it
    refunded: int  # slots closed unfilled (windows passed, cancelled or assignment voided)
    cancelled: bool

    @property
    def redundancy(self) -> int:
        return self.terms.redundancy

    @property
    def proofs(self) -> int:
        return len(self.proof_times)

    @property
    def first_proof(self) -> int | None:
        return self.proof_times[0] if self.proof_times else None

    @property
    def spent(self) -> int:
        """What the requester paid in all: the provers and the frontends."""
        return self.paid + self.fees

    @property
    def price_ratio(self) -> float | None:
        """Paid over the most its proofs could have cost (None without a proof)."""
        ceiling = self.terms.max_reward * self.proofs
        return self.paid / ceiling if ceiling else None

    @property
    def settled(self) -> bool:
        """Every slot ended: proven, or closed with its escrow refunded."""
        return self.proofs + self.refunded >= self.redundancy

    @property
    def arm(self) -> str:
        """The mechanism with the parameters that shape its service, e.g. "auction ×1"
        or "election ×3 decaying"."""
        return arm_label(self.mechanism, self.terms)


def arm_label(mechanism: str, terms: TaskTerms) -> str:
    return f"{mechanism} ×{terms.redundancy}" + (" decaying" if terms.decay else "")


@dataclass
class Member:
    """A prover's membership of a market, as its events left it."""

    capacity: int
    proving_time: int
    capabilities: int
    accepts: set[int] = field(default_factory=set)


class ProverBook:
    """Provers' stake and market memberships replayed from the registry's events: what
    the QoS (who could take a task) and the router (who is in a market) both read."""

    def __init__(self) -> None:
        self.stake: dict[str, int] = {}  # lowercase address → stake, locked included
        self.members: dict[int, dict[str, Member]] = {}  # market → lowercase address → membership

    def apply(self, e) -> None:
        """Apply one event; events about anything else are ignored."""
        a = e.args
        if e.name == "Staked":
            self.stake[a["prover"].lower()] = a["stake"]  # the stake after it, in all
        elif e.name in ("Unstaked", "Slashed"):
            who = a["prover"].lower()
            self.stake[who] = self.stake.get(who, 0) - a["amount" if e.name == "Unstaked" else "collateral"]
        elif e.name in ("ProverJoined", "ProverUpdated"):
            market = self.members.setdefault(a["market_id"], {})
            who = a["prover"].lower()
            old = market.get(who)
            # A join starts afresh: acceptances made before a leave do not hold after it.
            accepts = old.accepts if old is not None and e.name == "ProverUpdated" else set()
            market[who] = Member(a["capacity"], a["proving_time"], a["capabilities"], accepts)
        elif e.name == "ProverLeft":
            self.members.get(a["market_id"], {}).pop(a["prover"].lower(), None)
        elif e.name == "MechanismAccepted":
            member = self.members.get(a["market_id"], {}).get(a["prover"].lower())
            if member is not None:
                (member.accepts.add if a["accepted"] else member.accepts.discard)(a["mechanism_id"])

    def eligible(
        self,
        market_id: int,
        collateral: int,
        capabilities: int = 0,
        mechanism_id: int | None = None,
        proving_window: int | None = None,
    ) -> list[Member]:
        """The market's members with capacity, stake of at least `collateral` and
        capabilities covering `capabilities`; accepting `mechanism_id` unless it is None
        or built in, and proving within `proving_window` unless it is None."""
        return [
            m
            for who, m in self.members.get(market_id, {}).items()
            if m.capacity > 0
            and self.stake.get(who, 0) >= collateral
            and m.capabilities & capabilities == capabilities
            and (mechanism_id is None or mechanism_id in BUILT_IN or mechanism_id in m.accepts)
            and (proving_window is None or m.proving_time <= proving_window)
        ]


@dataclass
class _Task:
    terms: TaskTerms
    requester: str
    posted_at: int
    could: int
    min_reward: int
    mechanism: str
    assigned_at: int | None = None
    proofs: list[tuple[int, str]] = field(default_factory=list)
    paid: int = 0
    fees: int = 0
    slashes: int = 0
    took_part: set[str] = field(default_factory=set)
    refunded: int = 0
    cancelled: bool = False

    def apply(self, name: str, a: Mapping[str, Any], at: Callable[[], int]) -> None:
        """One of the task's events after its posting; `at()` is when it was mined."""
        if name == "TaskAssigned":
            if self.assigned_at is None:
                self.assigned_at = at()
            self.took_part.add(a["prover"].lower())
        elif name == "TaskProven":
            self.proofs.append((at(), a["prover"]))
            self.paid += a["paid"]
            self.fees += a["fee"]
            self.took_part.add(a["prover"].lower())
        elif name == "Slashed":
            self.slashes += 1
        elif name == "SlotsClosed":
            self.refunded += a["slots"]
            self.cancelled = self.cancelled or bool(a["cancelled"])
        elif name == "AssignmentVoided":
            # The verifier changed under the assignment: the registry ends the slot and
            # refunds its escrow without a SlotsClosed.
            self.refunded += 1

    def qos(self, task_id: str) -> TaskQoS:
        """What the task got, its times counted from its posting."""
        return TaskQoS(
            task_id=task_id,
            market_id=self.terms.market_id,
            mechanism_id=self.terms.mechanism_id,
            mechanism=self.mechanism,
            requester=self.requester,
            posted_at=self.posted_at,
            terms=self.terms,
            min_reward=self.min_reward,
            assigned_after=None if self.assigned_at is None else self.assigned_at - self.posted_at,
            proof_times=tuple(at - self.posted_at for at, _ in self.proofs),
            provers=tuple(who for _, who in self.proofs),
            paid=self.paid,
            fees=self.fees,
            slashes=self.slashes,
            could=self.could,
            took_part=len(self.took_part),
            refunded=self.refunded,
            cancelled=self.cancelled,
        )


def _hex(value: bytes | str) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def measure(events: Iterable, block_time: Callable[[int], int]) -> list[TaskQoS]:
    """One TaskQoS per task posted in `events` (the registry's decoded events, oldest
    first, with `name`, `args` and `block` as provingmarket.chain.client.Event has them), in
    posting order. `block_time(number)` gives a block's timestamp. Events of tasks posted
    before the first event given are ignored: give the history from the registry's
    deployment to count who could take part."""
    tally = Tally()
    tally.feed(events, block_time)
    return tally.tasks()


class Tally:
    """`measure` kept up to date: `feed` it events as they come (oldest first, every one
    once), and `tasks()` gives what `measure` would give for all the events fed so far,
    building again only the TaskQoS of tasks whose events came since the last call."""

    def __init__(self) -> None:
        self.names: dict[int, str] = dict(BUILT_IN)
        self.min_rewards: dict[int, int] = {}
        self.provers = ProverBook()
        self._tasks: dict[str, _Task] = {}
        self._built: dict[str, TaskQoS] = {}
        self._changed: dict[str, None] = {}  # task ids in the order their events came

    def feed(self, events: Iterable, block_time: Callable[[int], int]) -> None:
        for e in events:
            a = e.args
            self.provers.apply(e)
            if e.name == "MarketCreated":
                self.min_rewards[a["market_id"]] = a["min_reward"]
            elif e.name == "MechanismRegistered":
                self.names[a["mechanism_id"]] = a["name"]
            elif e.name == "TaskPosted":
                terms = TaskTerms.from_event(a["terms"])
                could = len(
                    self.provers.eligible(
                        terms.market_id,
                        terms.collateral,
                        terms.capabilities,
                        terms.mechanism_id,
                        terms.proving_window,
                    )
                )
                tid = _hex(a["task_id"])
                self._tasks[tid] = _Task(
                    terms,
                    a["requester"],
                    terms.posted_at or block_time(e.block),
                    could,
                    self.min_rewards.get(terms.market_id, 0),
                    self.names.get(terms.mechanism_id, f"mechanism {terms.mechanism_id}"),
                )
                self._changed[tid] = None
            elif "task_id" in a and _hex(a["task_id"]) in self._tasks:
                tid = _hex(a["task_id"])
                self._tasks[tid].apply(e.name, a, functools.partial(block_time, e.block))
                self._changed[tid] = None

    def tasks(self) -> list[TaskQoS]:
        """Every task fed so far, in posting order."""
        self.updates()
        return [self._built[tid] for tid in self._tasks]

    def updates(self) -> list[TaskQoS]:
        """The TaskQoS of each task posted or changed since the last call (of this or of
        `tasks`): what a `Groups` is given, so that following the chain costs what the new
        events cost, not what the whole history does."""
        fresh = []
        for tid in self._changed:
            self._built[tid] = q = self._tasks[tid].qos(tid)
            fresh.append(q)
        self._changed.clear()
        return fresh


def block_clock(web3) -> Callable[[int], int]:
    """A block's timestamp by its number, each block's header read once."""
    times: dict[int, int] = {}

    def block_time(number: int) -> int:
        if number not in times:
            times[number] = web3.eth.get_block(number)["timestamp"]
        return times[number]

    return block_time


def from_chain(client, from_block: int | None = None, to_block: int | str = "latest") -> list[TaskQoS]:
    """Measure every task from the registry's history (provingmarket.chain.client.RegistryClient;
    from its deployment block unless `from_block` is given)."""
    return measure(client.events(from_block=from_block, to_block=to_block), block_clock(client.web3))


# ------------------------------------------------------------------ aggregates


@dataclass(frozen=True)
class GroupQoS:
    """QoS over a group of tasks. Times in seconds; None where no task had one."""

    key: str
    tasks: int
    proven: int  # with at least one proof
    delivered: int  # with every proof asked for
    assigned_after: float | None  # median
    first_proof: float | None  # median
    first_proof_p95: float | None
    price_ratio: float | None  # paid over the maxima of the proofs delivered, in all
    spent: int  # what the requesters paid, in all
    proofs: int
    proofs_asked: int
    slashes: int
    could: float  # mean provers that could take part
    took_part: float  # mean provers that did
    refunded: int  # tasks with a refunded slot

    @property
    def delivery(self) -> float:
        """Proofs delivered over proofs asked for."""
        return self.proofs / self.proofs_asked if self.proofs_asked else 0.0


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _p95(values: Sequence[float]) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


KEYS: dict[str, Callable[[TaskQoS], str]] = {
    "mechanism": lambda q: q.arm,
    "market": lambda q: f"market {q.market_id}",
    "requester": lambda q: q.requester,
}


def summarize(tasks: Iterable[TaskQoS], key: str | Callable[[TaskQoS], str] = "mechanism") -> list[GroupQoS]:
    """Aggregate per `key`: "mechanism" (with its parameters), "market", "requester", or
    a function of a task. Groups sorted by key."""
    by = KEYS[key] if isinstance(key, str) else key
    groups: dict[str, list[TaskQoS]] = {}
    for q in tasks:
        groups.setdefault(by(q), []).append(q)
    return [_group(name, groups[name]) for name in sorted(groups)]


def _group(key: str, tasks: Sequence[TaskQoS]) -> GroupQoS:
    firsts = [q.first_proof for q in tasks if q.first_proof is not None]
    ceiling = sum(q.terms.max_reward * q.proofs for q in tasks)
    return GroupQoS(
        key=key,
        tasks=len(tasks),
        proven=sum(1 for q in tasks if q.proofs),
        delivered=sum(1 for q in tasks if q.proofs >= q.redundancy),
        assigned_after=_median([q.assigned_after for q in tasks if q.assigned_after is not None]),
        first_proof=_median(firsts),
        first_proof_p95=_p95(firsts),
        price_ratio=sum(q.paid for q in tasks) / ceiling if ceiling else None,
        spent=sum(q.spent for q in tasks),
        proofs=sum(q.proofs for q in tasks),
        proofs_asked=sum(q.redundancy for q in tasks),
        slashes=sum(q.slashes for q in tasks),
        could=statistics.fmean(q.could for q in tasks),
        took_part=statistics.fmean(q.took_part for q in tasks),
        refunded=sum(1 for q in tasks if q.refunded),
    )


def _middle(ordered: Sequence[float]) -> float | None:
    """`statistics.median` of values already sorted."""
    n = len(ordered)
    if not n:
        return None
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


class _Running:
    """One group's sums and sorted times, a task added or taken away at a time."""

    def __init__(self) -> None:
        self.tasks = self.proven = self.delivered = self.paid = self.ceiling = self.spent = 0
        self.proofs = self.proofs_asked = self.slashes = self.could = self.took_part = self.refunded = 0
        self.assigned: list[int] = []  # sorted
        self.firsts: list[int] = []  # sorted

    def add(self, q: TaskQoS, sign: int = 1) -> None:
        self.tasks += sign
        self.proven += sign * bool(q.proofs)
        self.delivered += sign * (q.proofs >= q.redundancy)
        self.paid += sign * q.paid
        self.ceiling += sign * q.terms.max_reward * q.proofs
        self.spent += sign * q.spent
        self.proofs += sign * q.proofs
        self.proofs_asked += sign * q.redundancy
        self.slashes += sign * q.slashes
        self.could += sign * q.could
        self.took_part += sign * q.took_part
        self.refunded += sign * bool(q.refunded)
        for ordered, value in ((self.assigned, q.assigned_after), (self.firsts, q.first_proof)):
            if value is None:
                continue
            if sign > 0:
                bisect.insort(ordered, value)
            else:
                del ordered[bisect.bisect_left(ordered, value)]

    def group(self, key: str) -> GroupQoS:
        """What `summarize` gives for the group's tasks."""
        firsts = self.firsts
        p95 = firsts[max(0, round(0.95 * len(firsts)) - 1)] if firsts else None
        return GroupQoS(
            key=key,
            tasks=self.tasks,
            proven=self.proven,
            delivered=self.delivered,
            assigned_after=_middle(self.assigned),
            first_proof=_middle(firsts),
            first_proof_p95=p95,
            price_ratio=self.paid / self.ceiling if self.ceiling else None,
            spent=self.spent,
            proofs=self.proofs,
            proofs_asked=self.proofs_asked,
            slashes=self.slashes,
            could=self.could / self.tasks,
            took_part=self.took_part / self.tasks,
            refunded=self.refunded,
        )


class Groups:
    """`summarize` kept up to date as tasks change: `update` takes the TaskQoS of tasks
    new or changed (`Tally.updates`), takes each one's previous figures out of its group
    and puts the new ones in (sums, and times kept sorted for the medians and p95), so a
    refresh costs what changed, not the whole history. `groups()` is what `summarize`
    gives for every task given so far, each at its latest."""

    def __init__(self, key: str | Callable[[TaskQoS], str] = "mechanism") -> None:
        self.by = KEYS[key] if isinstance(key, str) else key
        self._counted: dict[str, tuple[str, TaskQoS]] = {}  # task id → its group and the figures in it
        self._running: dict[str, _Running] = {}

    def update(self, tasks: Iterable[TaskQoS]) -> None:
        for q in tasks:
            key = self.by(q)
            before = self._counted.get(q.task_id)
            if before is not None:
                if before == (key, q):
                    continue
                running = self._running[before[0]]
                running.add(before[1], -1)
                if not running.tasks:
                    del self._running[before[0]]
            self._running.setdefault(key, _Running()).add(q)
            self._counted[q.task_id] = (key, q)

    def groups(self) -> list[GroupQoS]:
        """Per key, sorted by key, as `summarize` gives them."""
        return [self._running[key].group(key) for key in sorted(self._running)]

    def group(self, key: str) -> GroupQoS | None:
        running = self._running.get(key)
        return running.group(key) if running is not None else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = (
    ("tasks", 5),
    ("proven", 6),
    ("to assign", 9),
    ("to proof", 8),
    ("p95", 5),
    ("paid/max", 8),
    ("proofs/asked", 12),
    ("slashes", 7),
    ("could", 5),
    ("did", 4),
    ("refunded", 8),
)


def table(
    groups: Sequence[GroupQoS], title: str = "mechanism", extra: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The groups as a text table: times are medians in seconds after posting; paid/max
    is what provers were paid over the maxima of the proofs delivered; could/did are the
    mean provers that could take part and that did. `extra` adds columns (name → one
    cell per group)."""
    extra = dict(extra or {})
    width = max([len(title), *(len(g.key) for g in groups)])
    head = f"{title:<{width}}  " + " ".join(f"{n:>{w}}" for n, w in COLUMNS)
    head += "".join(f" {n:>{max(len(n), 6)}}" for n in extra)
    lines = [head]
    for i, g in enumerate(groups):
        cells = [
            str(g.tasks),
            str(g.proven),
            _fmt(g.assigned_after, ".0f"),
            _fmt(g.first_proof, ".0f"),
            _fmt(g.first_proof_p95, ".0f"),
            _fmt(None if g.price_ratio is None else 100 * g.price_ratio, ".0f")
            + ("%" if g.price_ratio is not None else ""),
            f"{g.proofs}/{g.proofs_asked}",
            str(g.slashes),
            f"{g.could:.1f}",
            f"{g.took_part:.1f}",
            str(g.refunded),
        ]
        row = f"{g.key:<{width}}  " + " ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True))
        row += "".join(f" {v[i]:>{max(len(n), 6)}}" for n, v in extra.items())
        lines.append(row)
    return "\n".join(lines)


__all__ = [
    "BUILT_IN",
    "GroupQoS",
    "Groups",
    "Member",
    "ProverBook",
    "Tally",
    "TaskQoS",
    "block_clock",
    "arm_label",
    "from_chain",
    "measure",
    "summarize",
    "table",
]
