"""A chained task (fallback chain: mechanism_id packs the links) is the orderbook's and the
double auction's to assign while their link is current, and no longer after it: the
orderbook's batch intervals (`frontends.process.Intervals`), its books and the double
auction's pool read the link current now (`rules.mechanism_at`), not the packed id, which
no instance or membership holds. (The simulation's chain policies found that the orderbook
never assigned a chained task: only its race link ever served.)"""

from __future__ import annotations

from frontends.book import MarketState, OpenTask, ProverState, Snapshot
from frontends.double_auction.mechanism import clear_double_auction
from frontends.orderbook.mechanism import match_orders
from frontends.process import Instances, Intervals
from provingmarket.formats import OPEN_RACE, Link, encode_chain
from tests.factories import offchain_member, offchain_terms

ORDERBOOK, DOUBLE_AUCTION = 3, 6
POSTED = 1_000
A, B, C = ("0x" + c * 40 for c in "abc")


def chained(first: int, number: int = 1) -> OpenTask:
    """A task whose chain is `first` for 30 s, then the open race for 30 s."""
    mechanism_id = encode_chain([Link(first, 30), Link(OPEN_RACE, 30)])
    terms = offchain_terms(mechanism_id=mechanism_id, posted_at=POSTED, assign_window=60, salt=number)
    return OpenTask(number.to_bytes(32, "big"), terms, 1, frozenset())


def snapshot(task: OpenTask, mechanism: int, now: int) -> Snapshot:
    members = [
        offchain_member(p, ask=10 + i, mechanisms=frozenset({mechanism})) for i, p in enumerate((A, B, C))
    ]
    return Snapshot(
        now=now,
        mechanisms=frozenset({mechanism}),
        markets=(MarketState(1),),
        provers=tuple(ProverState(m.prover, 1_000) for m in members),
        memberships=tuple(members),
        tasks=(task,),
    )


def test_the_orderbook_assigns_a_chained_task_in_its_link_and_not_after():
    task = chained(ORDERBOOK)
    decisions = match_orders(snapshot(task, ORDERBOOK, POSTED + 10))
    assert [(d.prover, d.price) for d in decisions] == [(A, 10)]
    assert match_orders(snapshot(task, ORDERBOOK, POSTED + 40)) == []  # the race link's time


def test_the_orderbooks_batch_intervals_pass_a_chained_task_to_its_links_instance():
    instances = Instances("orderbook", {"interval": 0}, [ORDERBOOK])
    instances.params[ORDERBOOK] = {"interval": 0}  # its registered name checked
    orderbook = Intervals(match_orders, instances, "interval")
    assert [d.prover for d in orderbook(snapshot(chained(ORDERBOOK), ORDERBOOK, POSTED + 10))] == [A]


def test_the_double_auction_clears_a_chained_task_in_its_link_and_not_after():
    task = chained(DOUBLE_AUCTION)
    decisions = clear_double_auction(snapshot(task, DOUBLE_AUCTION, POSTED + 10))
    assert [(d.prover, d.price) for d in decisions] == [(A, 11)]  # at the first ask left out
    assert clear_double_auction(snapshot(task, DOUBLE_AUCTION, POSTED + 40)) == []
