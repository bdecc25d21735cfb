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

from provingmarket.formats import TaskTerms


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
