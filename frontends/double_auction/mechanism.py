"""The double auction mechanism: requesters' tasks and provers' asks cleared together at
one price per market and round, truthful for both sides.

`clear_double_auction(snapshot)` is a plain function of a `Snapshot` (frontends/book.py):
no chain inside; the same snapshot gives the same decisions. `clear(bids, asks)` is its
core over bare numbers, the part the truthfulness argument is about.

What it follows
---------------
McAfee's trade reduction (R. P. McAfee, "A dominant strategy double auction", Journal of
Economic Theory 56, 1992) is truthful for both sides but pays sellers less than buyers
pay, and the registry cannot keep the difference: a task's assignment carries one price,
the prover is paid it and the requester gets the rest of its escrow back. So this follows
its strongly budget-balanced variant, SBBA (E. Segal-Halevi, A. Hassidim, Y. Aumann,
"SBBA: a strongly-budget-balanced double-auction mechanism", SAGT 2016), where the one
price is the ask of the first seller left out, adapted, as DARA's knapsack double auction
does for proof requests (Lagrange, eprint 2024/1750), to buyers whose demand is
all-or-nothing: a task gets all its open slots or none.

The participants
----------------
- **Buyers**: the open tasks of a market. A task's bid is its `max_reward` (per slot), its
  demand its open slots (its redundancy, less slots already filled), all or nothing.
- **Sellers**: the market's provers, each offering **one slot per round** at its ask (the
  membership's `ask`); a prover with free capacity c can be assigned over c rounds.

The rule (`clear`), for one pool whose tasks all want N slots
------------------------------------------------------------
Sort the asks up, s_1 <= s_2 <= ... (ties by address), and the bids down, b_1 >= b_2 >=
... (ties by task id). Let k be the most tasks that can trade efficiently: the largest k
with k*N asks and b_k >= s_(kN) (the k-th task values a slot at least at the ask of the
kN-th seller). Then, as SBBA:

- **Case 1**, the price p = max(s_(kN+1), b_(k+1)) (the first ask left out, or the first
  bid left out if higher: that task found too few sellers for all its slots) is at most
  b_k: the k best tasks trade at p. If the ask left out set it, the kN cheapest sellers
  trade; if the bid did, the sellers with ask <= p are in the money.
- **Case 2**, otherwise (trade reduction): the price is b_k, the k-th task does not trade,
  tasks 1..k-1 do, and the sellers with ask <= b_k are in the money.

Sellers in the money beyond those needed are rationed by a priority no report moves: the
fewest live assignments first (spreading load), then a hash of the round's time and the
address (rotating from round to round). Each trading task takes the next N chosen
provers, tasks in posting order. One demand size N per pool keeps the bundles alike (the
prefix argument breaks when a small task can jump a large one); a market's tasks of
other sizes wait for a later round. Which size a round's pool takes is drawn from the
round's time alone among the sizes waiting (`_turn`), so a task no set of asks can serve,
say one wanting more proofs than the provers asking below its bid, cannot keep the other
sizes out until its window ends.

What it guarantees
------------------
- **Truthful (dominant strategy) for requesters**, each a single-parameter buyer: its
  value per slot is private; its demand (open slots) and its other terms are public and
  not misreported. A winning task's bid moves neither k nor the price while it still
  wins; a losing task that bids up to win pays a price at least its value.
- **Truthful (dominant strategy) for provers**, each a single-unit seller in a round: its
  cost per task private; its capacity, stake, capabilities and proving time public. The
  price is an ask left out or a bid, which a seller in the money cannot raise and stay in;
  a seller left out that asks less to get in brings the price below its cost; who trades
  among those in the money is fixed by the priority, which no report moves.
- Both are checked, not only argued: the property tests try every report over a grid for
  every participant of random instances (tests/unit/mechanisms/test_double_auction.py).
  Not claimed: incentives across rounds (a loser comes back next round, a prover can
  take one slot per round), nor a participant acting under several addresses.
- **Individually rational**: a task pays the price <= its bid; a prover is paid the price
  >= its ask.
- **Budget-balanced, strongly**: each slot's one price is what its requester pays and its
  prover gets (through the registry, `assign_batch` at it; `max_reward` less it goes back to
  the requester when the proof lands, the `frontend_fee` is the requester's fixed fee to
  this frontend, as with every mechanism). The frontend never holds money, so it can
  never run a deficit: nothing is left on the table.
- **The price** lies between the winners' asks and every winning `max_reward`, so the
  registry accepts each item without a signed Bid (price >= ask, price <= max_reward).

Pools (what keeps the truthfulness with a registry's rules)
-----------------------------------------------------------
Tasks differ in what they ask of a prover (collateral, capabilities, proving window,
provers barred from them) and provers in what they can give. Each market is one pool,
built before any price is read, from public facts only: candidates are the market's
members accepting the mechanism with a free unit of capacity; tasks are taken in posting
order (then id), and a task joins the pool if the candidates left that can serve it are
at least the pool's demand with its own; the pool's sellers are then only those. A task
that would shrink the pool too much waits for a later round (or its requester's fallback).
A prover's free stake is shared by its markets: each pool reserves from it the largest
collateral among its tasks (markets in id order), so a prover chosen in several markets at
once has the stake for all of them. As the pools depend on no bid and no ask, the
argument above holds in each.

Within a round, the decisions only take resources (a unit of capacity, one collateral),
so each still holds when another frontend takes a slot first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from frontends.book import BUILT_IN, Decision, MembershipState, OpenTask, Snapshot, candidate
from provingmarket import rules

__all__ = ["Ask", "Bid", "Clearing", "clear", "clear_double_auction"]


@dataclass(frozen=True, slots=True)
class Bid:
    """A buyer: `value` per slot, `units` slots all or nothing; `key` orders ties."""

    key: bytes
    value: int
    units: int


@dataclass(frozen=True, slots=True)
class Ask:
    """A seller of one slot at `value`; `key` orders equal asks, `priority` (lower first)
    picks among the sellers in the money (it must not depend on any report)."""

    key: str
    value: int
    priority: tuple = ()


@dataclass(frozen=True, slots=True)
class Clearing:
    """One pool's outcome: the price, the winning bids' keys and the winning asks' keys
    (as many asks as the winning bids' units)."""

    price: int | None
    buyers: tuple[bytes, ...] = ()
    sellers: tuple[str, ...] = ()


def clear(bids: Sequence[Bid], asks: Sequence[Ask]) -> Clearing:
    """The rule of the module's docstring over one pool, whose bids all want the same
    number of slots."""
    sizes = {b.units for b in bids}
    if len(sizes) > 1:
        raise ValueError(f"a pool's tasks all want the same number of slots; got {sorted(sizes)}")
    size = sizes.pop() if sizes else 1
    ordered = sorted(asks, key=lambda a: (a.value, int(a.key, 16)))
    by_value = sorted(bids, key=lambda b: (-b.value, b.key))
    k = 0
    while k < len(by_value) and (k + 1) * size <= len(ordered):
        if by_value[k].value < ordered[(k + 1) * size - 1].value:
            break
        k += 1
    if k == 0:
        return Clearing(None)
    # The price: the first ask left out, or the first bid left out if that is higher (the
    # next task, which found too few sellers for all its slots, would pay it); when that
    # is above the k-th bid, trade reduction: the k-th task sets the price and waits.
    left_out = ordered[k * size].value if k * size < len(ordered) else None
    next_bid = by_value[k].value if k < len(by_value) else 0
    if left_out is not None and max(left_out, next_bid) <= by_value[k - 1].value:
        price, buyers = max(left_out, next_bid), k
    else:
        price, buyers = by_value[k - 1].value, k - 1
    if price == left_out and buyers == k:  # the seller left out sets the price: the others trade
        money = ordered[: k * size]
    else:  # a task's bid sets it: every seller it suits is in the money, rationed
        money = [a for a in ordered if a.value <= price]
    chosen = sorted(money, key=lambda a: (a.priority, int(a.key, 16)))[: buyers * size]
    return Clearing(price, tuple(b.key for b in by_value[:buyers]), tuple(a.key for a in chosen))


def clear_double_auction(snapshot: Snapshot) -> list[Decision]:
    """The round's decisions: every market's pool cleared at its price (module docstring)."""
    mechanisms = snapshot.mechanisms - BUILT_IN
    paused = {m.market_id: m.paused for m in snapshot.markets}
    free = {p.address.lower(): p.free_stake for p in snapshot.provers}
    reserved: dict[str, int] = {}
    by_market: dict[int, list[OpenTask]] = {}
    for t in snapshot.tasks:
        current = rules.mechanism_at(t.terms, snapshot.now)  # a chain: its link current now
        if current in mechanisms and t.open_slots > 0 and t.terms.market_id in paused:
            by_market.setdefault(t.terms.market_id, []).append(t)
    decisions: list[Decision] = []
    for market_id in sorted(by_market):
        if paused[market_id]:
            continue
        members = [m for m in snapshot.memberships if m.market_id == market_id and m.free_capacity > 0]
        tasks, sellers = _pool(snapshot.now, by_market[market_id], members, free, reserved)
        if not tasks:
            continue
        for s in sellers:
            address = s.prover.lower()
            reserved[address] = reserved.get(address, 0) + max(t.terms.collateral for t in tasks)
        decisions.extend(_decide(snapshot.now, tasks, sellers))
    return decisions


def _decide(now: int, tasks: list[OpenTask], sellers: list[MembershipState]) -> list[Decision]:
    """One pool cleared: each winning task takes the next chosen provers, in posting order."""
    bids = [Bid(t.task_id, t.terms.max_reward, t.open_slots) for t in tasks]
    asks = [Ask(s.prover, s.ask, (s.used, _rotation(now, s.prover))) for s in sellers]
    cleared = clear(bids, asks)
    if cleared.price is None or not cleared.buyers:
        return []
    winners = set(cleared.buyers)
    chosen = iter(cleared.sellers)
    return [
        Decision(t.task_id, t.terms, next(chosen), cleared.price)
        for t in tasks
        if t.task_id in winners
        for _ in range(t.open_slots)
    ]


def _pool(
    now: int,
    tasks: list[OpenTask],
    members: list[MembershipState],
    free: dict[str, int],
    reserved: dict[str, int],
) -> tuple[list[OpenTask], list[MembershipState]]:
    """A market's pool from public facts only: tasks in posting order, each joining if the
    sellers left that can serve it cover the pool's demand with its own."""
    sellers = members
    pool: list[OpenTask] = []
    demand = 0
    ordered = [
        t
        for t in sorted(tasks, key=lambda t: (t.terms.posted_at, bytes(t.task_id)))
        if not rules.task_refusal(t.terms, rules.Slots(open=t.open_slots), now, frontend_serves=True)
    ]
    sizes = list(dict.fromkeys(t.open_slots for t in ordered))  # in order of each size's first task
    size = sizes[_turn(now, len(sizes))] if sizes else 0
    for t in ordered:
        if t.open_slots != size:
            continue  # one size of demand per pool and round: the others wait their turn
        slots = rules.Slots(open=t.open_slots)
        barred = {a.lower() for a in t.barred}
        able = [
            m
            for m in sellers
            if not rules.prover_refusal(
                t.terms,
                slots,
                candidate(
                    m,
                    free.get(m.prover.lower(), 0) - reserved.get(m.prover.lower(), 0),
                    rules.mechanism_at(t.terms, now),  # a chain: its link current now
                    m.prover.lower() in barred,
                ),
                by_frontend=True,
            )
        ]
        if len(able) >= demand + t.open_slots:
            pool.append(t)
            sellers = able
            demand += t.open_slots
    return pool, (sellers if pool else [])


def _turn(now: int, sizes: int) -> int:
    """Which demand size a round's pool takes, of `sizes` in order of each one's earliest
    task: a turn moved by the round's time alone (no report moves it, so each round stays
    truthful), so a size whose tasks cannot trade, a task wanting more proofs than the
    asks can meet, does not keep the other sizes out round after round."""
    return int.from_bytes(hashlib.sha256(b"size" + now.to_bytes(8, "big")).digest()[:8], "big") % sizes


def _rotation(now: int, prover: str) -> bytes:
    """A tie-break among provers in the money that changes every round and that no
    report moves."""
    return hashlib.sha256(now.to_bytes(8, "big") + bytes.fromhex(prover.lower()[2:])).digest()
