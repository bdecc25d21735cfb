"""The orderbook mechanism: price-time priority between open tasks and provers' asks.

`match_orders(snapshot)` is a plain function of a `Snapshot` (frontends/book.py): no chain
inside, the same snapshot in any order gives the same decisions.

The book
--------
- **Offers** are provers' memberships: a prover offers its free capacity in a market at its
  ask. Offers rest: a membership stands from round to round until the prover changes it.
- **Bids** are tasks with open slots: a task bids for `open_slots` distinct provers, each at
  most its `max_reward` (its limit price).

Price: the prover's ask
-----------------------
A task matched with a prover pays the prover's ask, and matches only if
`ask <= max_reward`. The ask is the resting order's price: a task's bid executes against
the standing offers at their prices, as a marketable limit order executes against an
exchange's book. The registry takes any price from the ask to `max_reward` when no
signed Bid comes with the item (`_assign`: "price above maximum", "price below ask"); the
ask is its lower end, so a requester never pays more than the cheapest eligible provers
ask, gets the rest of its escrow back, and a prover gets exactly what it asked for.
(Provers who want to be paid a second price have the auction mechanism.)

Priority
--------
- Tasks, best first: higher `max_reward`, then earlier `posted_at`, then lower task id.
- Offers, for each task, best first: lower ask, then earlier `since` (when the ask was
  posted), then lower address.

Tasks take offers, in task priority order (task-side greedy): the best task takes its
`open_slots` best eligible offers, then the next task takes from what is left, and so on.
This is price-time priority on both sides:

- On the bid side, when provers are scarce, the task that offers more is served first,
  which is what a limit price is for; as the price is the ask, not the limit, a requester
  loses nothing by stating its true limit.
- On the offer side, a task always gets the cheapest eligible offers still free when its
  turn comes: no cheaper eligible prover with capacity and stake left at the end of the
  round was passed over for a dearer one on the same task.
- A task needs N *distinct* provers: taking them in one step per task makes distinctness,
  the provers barred from the task and partial fills local to that task.

The other order, prover-side greedy (each prover in ask order takes the best tasks it
fits), comes to much the same when every prover fits every task; when they differ it can
spend a cheap prover's capacity on a task that had other offers and leave a better-paying
task unfilled or with a dearer prover; and since the price is the ask, a prover gains
nothing from choosing among tasks.

Every registry rule (`_assign` in contracts/Registry.vy)
--------------------------------------------------------
A decision is made only if all of these hold, with each earlier decision of the round
applied (each locks the task's collateral from the prover's free stake and a unit of its
capacity in the market, so both go down as the round goes on):

- the task's mechanism is not a built-in one (OPEN_RACE, DUTCH) and is one this frontend
  assigns for (`snapshot.mechanisms`); its market is in the snapshot and not paused;
- the task is inside its assignment window: `now <= posted_at + assign_window`;
- the task has an open slot left: at most `open_slots` decisions per task;
- the prover is in the task's market and accepts the task's mechanism there;
- the prover is not barred from the task (assigned, proven, declined or slashed on it) and
  not already chosen for it this round: N distinct provers;
- the prover has free capacity (`used < capacity`) and free stake `>= collateral`;
- its capabilities cover the task's (`task & prover == task`) and its proving time fits the
  proving window (`proving_time <= proving_window`);
- the price, its ask, is at most `max_reward`.

Resources only go down within a round, so each decision also holds when any of the
earlier ones is skipped (another frontend took the slot first: the prover keeps what that
one would have locked): batches sent in order are never skipped for anything this round
decided. Send them before `now` passes: a task's window is checked against it.

Cost
----
Offers are sorted once per market, tasks once. The offers of a market that suit a kind of
task by what cannot change within a round (the mechanism accepted, the capabilities
covered) form a book, built when a task first needs it: a segment tree over them in
priority order, each node holding the least proving time and the most free stake among
the usable offers under it. A task finds its best offers by a walk from the root, cheaper
half first, that skips every subtree whose offers are all too slow for its proving window,
all too poor for its collateral, or all above its `max_reward`; a decision updates one leaf
and its ancestors, and an offer out of capacity leaves the book for good. A decision thus
costs O(log M) (M offers in the book) and a task that finds nothing mostly stops at the
root: a round is O(T log T + B M + D log M) for T tasks, B books, D decisions. Tasks with
any mix of proving windows and collaterals share one book. A prover assigned from one book
looks richer than it is in its others until a walk reaches its leaf and corrects it, once.
The slow case: cheaper offers that are each either too slow or too poor for a task,
interleaved so that no subtree is all of one kind, are walked one by one.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Set

from frontends.book import BUILT_IN, Decision, MembershipState, OpenTask, Snapshot
from provingmarket import rules

__all__ = ["match_orders"]

_GONE = 1 << 256  # the proving time of an offer that left the book: slower than any window


class _Purse:
    """A prover's free stake, shared by its offers in every market."""

    __slots__ = ("free",)

    def __init__(self, free: int) -> None:
        self.free = free


class _Offer:
    """A membership with what is left of it this round."""

    __slots__ = ("membership", "address", "ask", "left", "purse")

    def __init__(self, membership: MembershipState, address: str, left: int, purse: _Purse) -> None:
        self.membership = membership
        self.address = address
        self.ask = membership.ask
        self.left = left
        self.purse = purse


class _Book:
    """The offers of a market that accept one mechanism and cover one capability mask, in
    priority order, under a segment tree of (least proving time, most free stake).

    A leaf may hold more free stake than its prover has left (the prover was assigned
    from another book): that only makes a subtree look better than it is, and the leaf is
    corrected when the walk reaches it."""

    __slots__ = ("offers", "asks", "size", "fastest", "richest", "start")

    def __init__(self, offers: list[_Offer]) -> None:
        self.offers = offers
        self.asks = [o.ask for o in offers]
        size = 1
        while size < len(offers):
            size *= 2
        self.size = size
        fastest = [_GONE] * (2 * size)
        richest = [-1] * (2 * size)
        for index, offer in enumerate(offers):
            fastest[size + index] = offer.membership.proving_time
            richest[size + index] = offer.purse.free
        for node in range(size - 1, 0, -1):
            fastest[node] = min(fastest[2 * node], fastest[2 * node + 1])
            richest[node] = max(richest[2 * node], richest[2 * node + 1])
        self.fastest = fastest
        self.richest = richest
        # The first offer under each node: a walk skips subtrees past the price limit.
        start = [0] * (2 * size)
        for node in range(2 * size - 1, 0, -1):
            start[node] = node - size if node >= size else start[2 * node]
        self.start = start

    def _refresh(self, index: int) -> None:
        """Set a leaf from its offer and fix the nodes above it."""
        offer = self.offers[index]
        fastest = self.fastest
        richest = self.richest
        node = self.size + index
        if offer.left > 0:
            fastest[node] = offer.membership.proving_time
            richest[node] = offer.purse.free
        else:
            fastest[node] = _GONE
            richest[node] = -1
        node >>= 1
        while node:
            left = 2 * node
            a, b = fastest[left], fastest[left + 1]
            least = a if a < b else b
            a, b = richest[left], richest[left + 1]
            most = a if a > b else b
            if fastest[node] == least and richest[node] == most:
                break
            fastest[node] = least
            richest[node] = most
            node >>= 1

    def take(
        self, wanted: int, max_price: int, window: int, collateral: int, barred: Set[str]
    ) -> list[_Offer]:
        """The `wanted` best offers with an ask at most `max_price`, a proving time within
        `window`, capacity, free stake of at least `collateral` and no bar; each loses a unit
        of capacity and the collateral from its prover's free stake."""
        fastest = self.fastest
        richest = self.richest
        if fastest[1] > window or richest[1] < collateral:
            return []
        end = bisect_right(self.asks, max_price)
        if end == 0:
            return []
        size = self.size
        start = self.start
        taken: list[int] = []
        stack = [1]
        while stack:
            node = stack.pop()
            if fastest[node] > window or richest[node] < collateral or start[node] >= end:
                continue
            if node < size:
                stack.append(2 * node + 1)
                stack.append(2 * node)  # the cheaper half first
                continue
            if self._usable(node - size, richest[node], collateral, barred):
                taken.append(node - size)
                if len(taken) == wanted:
                    break
        return self._spend(taken, collateral)

    def _usable(self, index: int, leaf_free: int, collateral: int, barred: Set[str]) -> bool:
        """Whether the offer at a leaf the walk reached can take the task, its leaf
        refreshed first if it was assigned from another book since it was set."""
        offer = self.offers[index]
        if offer.left <= 0 or offer.purse.free != leaf_free:
            self._refresh(index)
            if offer.left <= 0 or offer.purse.free < collateral:
                return False
        return offer.address not in barred

    def _spend(self, taken: list[int], collateral: int) -> list[_Offer]:
        """The offers taken each lose a unit of capacity and the collateral from their purse."""
        chosen = [self.offers[index] for index in taken]
        for offer in chosen:
            offer.left -= 1
            offer.purse.free -= collateral
        for index in taken:
            self._refresh(index)
        return chosen


def match_orders(snapshot: Snapshot) -> list[Decision]:
    """Match the snapshot's open tasks with provers' asks by price-time priority (see the
    module's description). Returns the assignments in batch order: tasks best first, and
    for each task its provers best first. Raises ValueError on a snapshot that names a
    market, prover, membership or task twice."""
    by_market = _offers(snapshot)
    books: dict[tuple[int, int, int], _Book] = {}
    decisions: list[Decision] = []
    for task in _tasks(snapshot, by_market):
        terms = task.terms
        # a chain's task is offered to the members accepting its link current now
        key = (terms.market_id, rules.mechanism_at(terms, snapshot.now), terms.capabilities)
        book = books.get(key)
        if book is None:
            mechanism, capabilities = key[1], key[2]
            book = books[key] = _Book(
                [
                    o
                    for o in by_market[terms.market_id]
                    if o.left > 0
                    and mechanism in o.membership.mechanisms
                    and o.membership.capabilities & capabilities == capabilities
                ]
            )
        barred = {a.lower() for a in task.barred} if task.barred else task.barred
        for offer in book.take(
            task.open_slots, terms.max_reward, terms.proving_window, terms.collateral, barred
        ):
            decisions.append(Decision(task.task_id, terms, offer.membership.prover, offer.ask))
    return decisions


def _offers(snapshot: Snapshot) -> dict[int, list[_Offer]]:
    """The offers of each unpaused market with capacity left, in priority order; the
    offers of one prover share its purse."""
    paused: dict[int, bool] = {}
    for market in snapshot.markets:
        if market.market_id in paused:
            raise ValueError(f"market {market.market_id} appears twice in the snapshot; give each once")
        paused[market.market_id] = market.paused

    purses: dict[str, _Purse] = {}
    for prover in snapshot.provers:
        address = prover.address.lower()
        if address in purses:
            raise ValueError(f"prover {prover.address} appears twice in the snapshot; give each once")
        purses[address] = _Purse(prover.free_stake)

    by_market: dict[int, list[_Offer]] = {}
    seen: set[tuple[str, int]] = set()
    for membership in snapshot.memberships:
        address = membership.prover.lower()
        if (address, membership.market_id) in seen:
            raise ValueError(
                f"prover {membership.prover} has two memberships of market {membership.market_id} "
                "in the snapshot; give its current one only"
            )
        seen.add((address, membership.market_id))
        left = membership.capacity - membership.used
        if left <= 0 or paused.get(membership.market_id, True):
            continue
        purse = purses.get(address)
        if purse is None:  # no standing given: no free stake
            purse = purses[address] = _Purse(0)
        by_market.setdefault(membership.market_id, []).append(_Offer(membership, address, left, purse))
    for offers in by_market.values():
        offers.sort(key=lambda o: (o.ask, o.membership.since, o.address))
    return by_market


def _tasks(snapshot: Snapshot, by_market: dict[int, list[_Offer]]) -> list[OpenTask]:
    """The tasks that may be matched now (an open slot, a mechanism of this frontend, inside
    their assignment window, a market with offers), best first."""
    now = snapshot.now
    mechanisms = snapshot.mechanisms - BUILT_IN
    task_ids: set[bytes] = set()
    tasks = []
    for task in snapshot.tasks:
        if task.task_id in task_ids:
            raise ValueError(
                f"task 0x{bytes(task.task_id).hex()} appears twice in the snapshot; give each once"
            )
        task_ids.add(task.task_id)
        terms = task.terms
        if (
            task.open_slots > 0
            and rules.mechanism_at(terms, now) in mechanisms  # a chain: its link current now
            and now <= terms.posted_at + terms.assign_window
            and terms.market_id in by_market
        ):
            tasks.append(task)
    tasks.sort(key=lambda t: (-t.terms.max_reward, t.terms.posted_at, bytes(t.task_id)))
    return tasks
