"""The sealed-bid auction mechanism: a second-price reverse auction for each task's slots.

`clear_auctions(snapshot, auctions, nonces, mined_at)` is a plain function: no chain, no
I/O. The frontend process (frontends/auction/process.py) collects the bids over HTTP
(frontends/auction/api.py), keeps them sealed on disk until the auction closes, then calls
this with the registry's state and sends what it decides.

A bid
-----
A bid is a prover's EIP-712 `Bid` (task, minPrice, expiry, nonce) in the registry's domain,
signed with the prover's key (provingmarket.formats.bid_typed_data): the very message the
registry checks in `_check_bid`. It consents to be assigned the task at any price from
`min_price` up to the task's `max_reward`, and with a signature the registry does not check
the prover's ask; that is what lets a winner be paid more than it bid.

The rule
--------
For a task with `open_slots` N and its sealed bids:

1. **One bid per prover: its latest.** A prover may bid again while the auction is open;
   its latest bid (highest `seq`) replaces the earlier ones, which are dropped ("replaced
   by a later bid"). A replacement takes the time of its arrival: it loses the earlier
   bid's place among equal prices.
2. **Only bids the registry would accept when the assignment is mined**, at `mined_at`,
   with the round's earlier decisions applied (each locks the task's collateral from its
   prover's free stake and a unit of its capacity in the market):
   - the task: its mechanism is one the frontend assigns for (not a built-in one), its
     market is known and not paused, `mined_at <= posted_at + assign_window`, a slot open;
   - the prover: in the task's market and accepting the task's mechanism there, not
     barred from the task (on it already, declined it, slashed on it, or an assignment in
     flight), free capacity (`used < capacity`), free stake `>= collateral`, capabilities
     covering the task's, proving time within the proving window;
   - the signed terms: `min_price <= max_reward`, `expiry >= mined_at`, `nonce` equal to
     the prover's current `signature_nonce` (a prover revokes every bid it signed by
     bumping it). The signature itself is checked when the bid arrives (the frontend
     accepts only bids signed by their prover, with the registry's v and low-s rules).
   Each dropped bid carries the reason, in the words of the rule it breaks.
3. **Order**: lower `min_price` first, then the earlier bid (lower `seq`); `seq` is unique
   per bid, so the order is total.
4. **Winners and price**: the first N bids win (distinct provers, by rule 1); each is
   paid the (N+1)th lowest `min_price` among the eligible bids, or the task's `max_reward`
   when there are at most N eligible bids. Every winner's `min_price` is at or below that
   price, which is at most `max_reward`: the registry accepts each item.

Why this price: with a uniform price set by the best losing bid, a prover's bid decides
only whether it wins, never what it is paid; bidding its true cost is a dominant strategy
(Vickrey's argument for single-unit demand, which a prover has per task). The requester
pays no more than the first price it would have to beat, and gets the difference from
`max_reward` back.

Several auctions closing in one round are cleared in the order given (the frontend gives
them by close time): each later one sees the capacity and stake the earlier ones took,
so no decision of a round makes another of the same round fail, and as resources only go
down within a round, each still holds when an earlier one is skipped.

No eligible bid: no decision, the task stays open (its requester may cancel it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from frontends.book import BUILT_IN, Decision, OpenTask, Snapshot, candidate
from provingmarket import rules
from provingmarket.errors import Refusal  # why a bid cannot be assigned: its code and a sentence

__all__ = ["Clearing", "Eligibility", "Refusal", "SealedBid", "clear_auctions", "ordinal"]


@dataclass(frozen=True, slots=True)
class SealedBid:
    """A bid as the frontend keeps it until close (its signature checked on arrival)."""

    bid_id: str
    prover: str
    min_price: int
    expiry: int
    nonce: int
    signature: bytes = field(repr=False)
    seq: int  # arrival order: lower is earlier


@dataclass(frozen=True)
class Clearing:
    """What became of one auction."""

    task_id: bytes
    open_slots: int
    decisions: tuple[Decision, ...]  # the winners, best first, with their signatures
    price: int | None  # what each winner is paid; None when nobody won
    won: tuple[str, ...]  # bid ids, best first
    lost: tuple[str, ...]  # bid ids of eligible bids that did not win
    dropped: Mapping[str, Refusal]  # bid id -> why it could not be assigned
    note: str


class Eligibility:
    """The registry's assignment rules over one snapshot, for any (task, prover) pair.

    `take` applies a decision (the collateral and a unit of capacity leave the prover's
    purse), so later checks of the same round see it. Addresses are compared without
    regard to case."""

    def __init__(self, snapshot: Snapshot, nonces: Mapping[str, int]):
        self.now = snapshot.now
        self.mechanisms = snapshot.mechanisms - BUILT_IN
        self.paused = {m.market_id: m.paused for m in snapshot.markets}
        self.free = {p.address.lower(): p.free_stake for p in snapshot.provers}
        self.left = {(m.prover.lower(), m.market_id): m.capacity - m.used for m in snapshot.memberships}
        self.members = {(m.prover.lower(), m.market_id): m for m in snapshot.memberships}
        self.nonces = {address.lower(): nonce for address, nonce in nonces.items()}

    def nonce(self, prover: str) -> int:
        return self.nonces.get(prover.lower(), 0)

    def task_refusal(self, task: OpenTask, at: int) -> Refusal | None:
        """Why no slot of `task` can be assigned at time `at`, if so (`rules.task_refusal`)."""
        terms = task.terms
        paused = self.paused.get(terms.market_id)
        slots = rules.Slots(
            open=task.open_slots, market=rules.market_refusal(paused is not None, bool(paused))
        )
        serves = rules.mechanism_at(terms, at) in self.mechanisms  # a chain's: its link current at `at`
        reason = rules.task_refusal(terms, slots, at, frontend_serves=serves)
        if reason in (rules.NOT_FOR_FRONTENDS, rules.NOT_A_FRONTEND):
            return Refusal(
                "not_served", f"the task's mechanism {terms.mechanism_id} is not one this frontend serves"
            )
        if reason == rules.UNKNOWN_MARKET:
            return Refusal("unknown_market", f"market {terms.market_id} is not known")
        if reason == rules.MARKET_PAUSED:
            return Refusal("market_paused", f"market {terms.market_id} is paused")
        if reason == rules.TASK_EXPIRED:
            until = terms.posted_at + terms.assign_window
            return Refusal("task_expired", f"the task's assignment window closed at {until}")
        if task.open_slots <= 0:
            return Refusal("no_free_slot", "the task has no open slot")
        return None

    def prover_refusal(self, task: OpenTask, prover: str) -> Refusal | None:
        """Why `prover` cannot take a slot of `task` now, if so, its signed terms apart
        (`rules.prover_refusal`, said so the prover knows what to do)."""
        terms = task.terms
        address = prover.lower()
        key = (address, terms.market_id)
        member = self.members.get(key)
        if member is None:
            return Refusal(
                "not_in_market", f"prover {prover} is not in market {terms.market_id}: join it first"
            )
        barred = address in {b.lower() for b in task.barred}
        seen = candidate(member, self.free.get(address, 0), rules.mechanism_at(terms, self.now), barred)
        seen = replace(seen, used=member.capacity - self.left.get(key, 0))
        reason = rules.prover_refusal(
            terms, rules.Slots(open=max(task.open_slots, 1)), seen, by_frontend=True
        )
        return _prover_refusal(reason, prover, terms, seen)

    def terms_refusal(
        self, task: OpenTask, prover: str, min_price: int, expiry: int, nonce: int, at: int
    ) -> Refusal | None:
        """Why the signed terms of a bid do not hold for `task` at time `at`, if so."""
        if min_price > task.terms.max_reward:
            return Refusal(
                "price_above_maximum",
                f"min_price {min_price} wei is above the task's max_reward {task.terms.max_reward} wei",
            )
        if expiry < at:
            return Refusal("expired", f"the bid expires at {expiry}, before {at}, when it would be assigned")
        current = self.nonce(prover)
        if nonce < current:
            return Refusal(
                "revoked",
                f"the bid's nonce {nonce} was revoked: prover {prover}'s signature nonce is now "
                f"{current}; sign again with nonce {current}",
            )
        if nonce > current:
            return Refusal(
                "nonce_ahead",
                f"the bid's nonce {nonce} is not prover {prover}'s signature nonce {current}; "
                f"sign with nonce {current}",
            )
        return None

    def take(self, task: OpenTask, prover: str) -> None:
        key = (prover.lower(), task.terms.market_id)
        self.left[key] = self.left.get(key, 0) - 1
        self.free[key[0]] = self.free.get(key[0], 0) - task.terms.collateral


def _prover_refusal(reason: str, prover: str, terms, seen: rules.Candidate) -> Refusal | None:
    """The registry's reason for refusing a prover, as the auction's code and a message."""
    if not reason:
        return None
    messages = {
        rules.MECHANISM_NOT_ACCEPTED: (
            "mechanism_not_accepted",
            f"prover {prover} does not accept mechanism {terms.mechanism_id} in market "
            f"{terms.market_id}: accept it with set_mechanism_accepted",
        ),
        rules.ALREADY_ON_TASK: (
            "barred",
            f"prover {prover} is on this task already, declined it or was slashed on it (or the "
            "registry skipped its assignment to it a moment ago)",
        ),
        rules.AT_CAPACITY: (
            "at_capacity",
            f"prover {prover} has no free capacity in market {terms.market_id} "
            f"(capacity {seen.capacity}, all in use)",
        ),
        rules.NOT_ENOUGH_FREE_STAKE: (
            "not_enough_stake",
            f"prover {prover} has {seen.free_stake} wei of free stake, less than the task's collateral "
            f"{terms.collateral} wei: stake more",
        ),
        rules.LACKS_CAPABILITIES: (
            "lacks_capabilities",
            f"prover {prover} lacks capabilities: the task needs {terms.capabilities:#x}, "
            f"it has {seen.capabilities:#x}",
        ),
        rules.TOO_SLOW: (
            "too_slow",
            f"prover {prover} needs {seen.proving_time} s to prove, more than the task's "
            f"proving window of {terms.proving_window} s",
        ),
    }
    code, message = messages.get(reason, (reason.replace(" ", "_"), f"registry: {reason}"))
    return Refusal(code, message)


def clear_auctions(
    snapshot: Snapshot,
    auctions: Iterable[tuple[OpenTask, Sequence[SealedBid]]],
    nonces: Mapping[str, int],
    mined_at: int | None = None,
) -> list[Clearing]:
    """Clear each (task, bids) in the order given, by the rule in the module's description.
    `nonces`: provers' current signature nonces (a prover missing has 0). `mined_at`: when
    the assignments are expected to be mined (by default the snapshot's `now`): bids that
    expire before are dropped, and so is a task whose assignment window closes before."""
    at = snapshot.now if mined_at is None else mined_at
    rules = Eligibility(snapshot, nonces)
    return [_clear(rules, task, bids, at) for task, bids in auctions]


def _clear(rules: Eligibility, task: OpenTask, bids: Sequence[SealedBid], at: int) -> Clearing:
    slots = task.open_slots
    dropped: dict[str, Refusal] = {}
    latest = _latest_bids(bids, dropped)

    def done(note: str, won=(), lost=(), price=None, decisions=()) -> Clearing:
        return Clearing(task.task_id, slots, tuple(decisions), price, tuple(won), tuple(lost), dropped, note)

    if not latest:
        return done("no bids")
    refused = rules.task_refusal(task, at)
    if refused is not None:
        for bid in latest:
            dropped[bid.bid_id] = refused
        return done(f"not assigned: {refused.reason}")
    eligible = _eligible_bids(rules, task, latest, at, dropped)
    if not eligible:
        return done(f"no eligible bids ({len(latest)} dropped)")
    winners, losers = eligible[:slots], eligible[slots:]
    price, note = _price(task, slots, eligible, losers)
    decisions = []
    for bid in winners:
        rules.take(task, bid.prover)
        decisions.append(
            Decision(
                task.task_id,
                task.terms,
                bid.prover,
                price,
                min_price=bid.min_price,
                expiry=bid.expiry,
                nonce=bid.nonce,
                signature=bid.signature,
            )
        )
    return done(
        note,
        won=[b.bid_id for b in winners],
        lost=[b.bid_id for b in losers],
        price=price,
        decisions=decisions,
    )


def _latest_bids(bids: Sequence[SealedBid], dropped: dict[str, Refusal]) -> list[SealedBid]:
    """Each prover's latest bid, in the order they came; the earlier ones `dropped`."""
    latest: dict[str, SealedBid] = {}
    for bid in sorted(bids, key=lambda b: b.seq):
        address = bid.prover.lower()
        earlier = latest.get(address)
        if earlier is not None:
            dropped[earlier.bid_id] = Refusal("replaced", f"replaced by the prover's later bid {bid.bid_id}")
        latest[address] = bid
    return list(latest.values())


def _eligible_bids(
    rules: Eligibility, task: OpenTask, latest: list[SealedBid], at: int, dropped: dict[str, Refusal]
) -> list[SealedBid]:
    """The bids the registry would take, cheapest first (then earliest); the others `dropped`."""
    eligible: list[SealedBid] = []
    for bid in sorted(latest, key=lambda b: (b.min_price, b.seq)):
        why = rules.terms_refusal(
            task, bid.prover, bid.min_price, bid.expiry, bid.nonce, at
        ) or rules.prover_refusal(task, bid.prover)
        if why is None:
            eligible.append(bid)
        else:
            dropped[bid.bid_id] = why
    return eligible


def _price(task: OpenTask, slots: int, eligible: list[SealedBid], losers: list[SealedBid]) -> tuple[int, str]:
    """The uniform price every winner is paid, and the clearing's note."""
    winners = min(slots, len(eligible))
    if losers:
        place = ordinal(slots + 1)
        return losers[
            0
        ].min_price, f"{winners} of {slots} slots at the {place} lowest price, {len(eligible)} eligible bids"
    return task.terms.max_reward, (
        f"{winners} of {slots} slots at the task's maximum: "
        f"{len(eligible)} eligible {'bid' if len(eligible) == 1 else 'bids'} for {slots} "
        f"{'slot' if slots == 1 else 'slots'}"
    )


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
