"""What a mechanism sees of the registry, and what it decides.

A `Snapshot` is the registry's state at one moment, as far as assignments go: the time,
the mechanisms the frontend assigns for, markets (paused or not), provers' free stake,
their memberships (the standing offers) and the tasks with open slots. Mechanisms are
plain functions from a `Snapshot` to a list of `Decision`s, with no chain inside; a keeper
builds the snapshot from the registry's events and views and sends the decisions with
`assign_batch` (at most 64 items per call, in the order given).

Addresses are compared without regard to case. Amounts are wei, times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provingmarket import rules
from provingmarket.formats import DUTCH, OPEN_RACE, TaskTerms

BUILT_IN = frozenset((OPEN_RACE, DUTCH))  # mechanisms the registry runs itself: no frontend assigns


@dataclass(frozen=True, slots=True)
class MarketState:
    """A market as `Registry.market(id)` reports it; only the pause matters to assignments."""

    market_id: int
    paused: bool = False


@dataclass(frozen=True, slots=True)
class ProverState:
    """A prover's money: `Registry.standing(prover).free`, its stake not locked by live
    assignments (stake waiting out the unbonding delay is not part of it)."""

    address: str
    free_stake: int


@dataclass(frozen=True, slots=True)
class MembershipState:
    """A prover's membership of one market (`Registry.membership(prover, market)`): its
    standing offer. Only joined memberships belong in a snapshot."""

    prover: str
    market_id: int
    ask: int  # least price it is assigned at without a signed Bid
    capacity: int  # tasks at once in this market
    used: int  # live assignments in this market, from any mechanism
    proving_time: int  # seconds it needs to prove a task of this market
    capabilities: int  # hardware bitmask
    mechanisms: frozenset[int] = frozenset()  # those `Registry.accepts(prover, market, m)` is true for
    # Time priority: when this ask was posted, as any increasing key, for instance
    # block << 32 | log index of the ProverJoined or ProverUpdated event that set it.
    since: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mechanisms", frozenset(self.mechanisms))

    @property
    def free_capacity(self) -> int:
        """Assignments it can still take here (a capacity lowered below use gives none)."""
        return max(0, self.capacity - self.used)


@dataclass(frozen=True, slots=True)
class OpenTask:
    """A posted task that may still have slots to fill."""

    task_id: bytes
    terms: TaskTerms  # as recorded: requester and posted_at filled
    open_slots: int  # `Registry.task_status(task_id).open`
    # Provers the registry refuses for this task (`Registry.engagement(task, prover) != 0`):
    # assigned to it or proven it (redundancy above 1), declined it, or slashed on it.
    barred: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.open_slots <= self.terms.redundancy:
            raise ValueError(
                f"task 0x{bytes(self.task_id).hex()} has {self.open_slots} open slots but redundancy "
                f"{self.terms.redundancy}; open slots must lie between 0 and the redundancy"
            )
        object.__setattr__(self, "barred", frozenset(self.barred))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry's state one round of matching works from."""

    # The timestamp the assignments are expected to be mined at: a task whose assignment
    # window has closed by then is left alone (the registry would skip it).
    now: int
    # Mechanisms this frontend assigns for (`Registry.is_frontend(mechanism, frontend)`);
    # tasks naming any other mechanism are left alone.
    mechanisms: frozenset[int]
    markets: tuple[MarketState, ...] = ()
    provers: tuple[ProverState, ...] = ()
    memberships: tuple[MembershipState, ...] = ()
    tasks: tuple[OpenTask, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "mechanisms", frozenset(self.mechanisms))
        for name in ("markets", "provers", "memberships", "tasks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Decision:
    """One assignment a mechanism decided: `prover` takes a slot of the task at `price`."""

    task_id: bytes
    terms: TaskTerms = field(repr=False)
    prover: str
    price: int
    # A prover's signed Bid, for mechanisms that pay below the ask; empty: the ask rules.
    min_price: int = 0
    expiry: int = 0
    nonce: int = 0
    signature: bytes = field(default=b"", repr=False)

    def as_item(self) -> tuple:
        """The AssignmentItem tuple `Registry.assign` and `assign_batch` take."""
        return (
            self.terms.as_tuple(),
            self.prover,
            self.price,
            self.min_price,
            self.expiry,
            self.nonce,
            self.signature,
        )


def eligible_provers(snapshot: Snapshot, task: OpenTask, price: int | None = None) -> list[str]:
    """The provers a frontend may assign to `task` at `price` (its `max_reward` by default)
    without a signed Bid, in the snapshot's state: those `rules.assign_refusal` (the
    registry's `_assign`) refuses nothing, a frontend of the task's mechanism asking.

    Not checked, as they are the caller's business: whether the task has an open slot and
    whether the frontend serves the task's mechanism. Addresses as the memberships give
    them, sorted by their value; each once."""
    terms = task.terms
    price = terms.max_reward if price is None else price
    paused = {m.market_id: m.paused for m in snapshot.markets}
    market = rules.market_refusal(terms.market_id in paused, paused.get(terms.market_id, False))
    slots = rules.Slots(open=1, market=market)  # open slots are the caller's business
    if rules.task_refusal(terms, slots, snapshot.now, frontend_serves=True):
        return []
    free = {p.address.lower(): p.free_stake for p in snapshot.provers}
    barred = {a.lower() for a in task.barred}
    found: dict[str, str] = {}
    for m in snapshot.memberships:
        if m.market_id != terms.market_id:
            continue
        address = m.prover.lower()
        who = candidate(m, free.get(address, 0), rules.mechanism_at(terms, snapshot.now), address in barred)
        if not rules.assign_refusal(terms, slots, who, snapshot.now, price, frontend_serves=True):
            found[address] = m.prover
    return [found[a] for a in sorted(found, key=lambda a: int(a, 16))]


def candidate(
    membership: MembershipState, free_stake: int, mechanism_id: int, barred: bool
) -> rules.Candidate:
    """A member of a task's market as the registry's rules see it (provingmarket/rules.py);
    `barred`: assigned to the task already, declined it or slashed on it. `mechanism_id` is
    the one the task's slots go to now (a chain's current link: `rules.mechanism_at`)."""
    return rules.Candidate(
        address=membership.prover,
        accepts=mechanism_id in membership.mechanisms,
        ask=membership.ask,
        capacity=membership.capacity,
        used=membership.used,
        proving_time=membership.proving_time,
        capabilities=membership.capabilities,
        free_stake=free_stake,
        engagement=rules.ENGAGED if barred else "",
    )


def task_hex(task_id: bytes | str) -> str:
    """A task id as the frontends write it: 0x and 64 lowercase hex digits."""
    if isinstance(task_id, str):
        return "0x" + task_id.removeprefix("0x").lower()
    return "0x" + bytes(task_id).hex()
