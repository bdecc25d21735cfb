"""QoS kept up to date as events come (provingmarket/market/qos.py: `Tally.updates` and
`Groups`), with no chain: on seeded random histories (tasks of every mechanism, in two
markets, from two requesters, assigned, proven, slashed, closed and cancelled in any
order), fed in random pieces, the incremental aggregates equal `summarize` over `measure`
of every event so far, per mechanism, market and requester, after every piece; a task
whose figures, or whose key alone, move it to another group leaves the old one (gone
once empty); and a refresh hands `Groups` only the tasks the new events touched."""

from __future__ import annotations

import random

import pytest

from provingmarket.formats import DUTCH, OPEN_RACE
from provingmarket.market.qos import Groups, Tally, measure, summarize
from tests.unit.market.test_qos import (
    AUCTION,
    MARKET,
    ORDERBOOK,
    OTHER_MARKET,
    OTHER_REQUESTER,
    REQUESTER,
    History,
    block_time,
    prover,
)

KEYS = ("mechanism", "market", "requester")


def random_history(seed: int, tasks: int = 120) -> History:
    """Two markets, four provers in both, then `tasks` tasks posted over time, each slot
    proven, slashed (and then closed), closed, cancelled or left open, events in block order."""
    rng = random.Random(seed)
    h = History()
    h.market()
    h.market(OTHER_MARKET, min_reward=50)
    h.mechanism(AUCTION, "auction")
    h.mechanism(ORDERBOOK, "orderbook")
    provers = [prover(n) for n in range(1, 5)]
    for who in provers:
        h.member(who, accepts=(AUCTION, ORDERBOOK))
        h.member(who, stake=0, accepts=(ORDERBOOK,), market_id=OTHER_MARKET)
    start = h.block + 1
    later: list[tuple[int, int, object]] = []  # (block, order, what to add then)
    for n in range(1, tasks + 1):
        posted = start + n // 3
        mechanism = rng.choice((AUCTION, ORDERBOOK, OPEN_RACE, DUTCH))
        redundancy = rng.choice((1, 1, 2, 3))
        terms = dict(
            mechanism_id=mechanism,
            market_id=rng.choice((MARKET, OTHER_MARKET)),
            requester=rng.choice((REQUESTER, OTHER_REQUESTER)),
            redundancy=redundancy,
            max_reward=rng.choice((100, 150, 200)),
        )
        later.append((posted, len(later), lambda n=n, b=posted, t=terms: h.post(n, block=b, **t)))
        for slot in range(redundancy):
            who = rng.choice(provers)
            at = posted + rng.randint(1, 40)
            fate = rng.choice(("proven", "proven", "slashed", "closed", "open"))
            if fate != "closed" and fate != "open":
                later.append((at, len(later), lambda n=n, w=who, b=at, s=slot: h.assign(n, w, b, s, 90)))
            if fate == "proven":
                done = at + rng.randint(0, 30)
                paid = rng.randint(50, 100)
                later.append(
                    (done, len(later), lambda n=n, w=who, b=done, s=slot, p=paid: h.prove(n, w, b, p, 5, s))
                )
            elif fate == "slashed":
                done = at + rng.randint(20, 60)
                later.append((done, len(later), lambda n=n, w=who, b=done: h.slash(n, w, b)))
                later.append((done + 1, len(later), lambda n=n, b=done + 1: h.close(n, 1, b)))
            elif fate == "closed":
                done = at + 50
                cancel = rng.random() < 0.5
                later.append((done, len(later), lambda n=n, b=done, c=cancel: h.close(n, 1, b, c)))
    for _, _, add in sorted(later, key=lambda x: (x[0], x[1])):
        add()
    return h


def pieces(rng: random.Random, total: int) -> list[int]:
    """Cut points from 0 to `total`, a few events to a few hundred apart."""
    cuts, at = [], 0
    while at < total:
        at = min(total, at + rng.choice((1, 2, 5, 17, 60, 250)))
        cuts.append(at)
    return cuts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_groups_fed_in_pieces__equal_summarize_over_measure_of_every_event_so_far(seed):
    h = random_history(seed)
    rng = random.Random(seed)
    tally = Tally()
    groups = {key: Groups(key) for key in KEYS}
    fed = 0
    for cut in pieces(rng, len(h.events)):
        tally.feed(h.events[fed:cut], block_time)
        fed = cut
        fresh = tally.updates()
        for g in groups.values():
            g.update(fresh)
        whole = measure(h.events[:cut], block_time)
        for key, g in groups.items():
            assert g.groups() == summarize(whole, key), (seed, cut, key)
    assert tally.tasks() == measure(h.events, block_time)


def test_a_task_that_changes_group__leaves_the_old_one__gone_once_empty():
    h = random_history(4, tasks=30)
    proven = Groups(lambda q: "proven" if q.proofs else "waiting")
    tally = Tally()
    posts = [i for i, e in enumerate(h.events) if e.name == "TaskPosted"]
    tally.feed(h.events[: posts[-1] + 1], block_time)  # every task posted, few proven yet
    proven.update(tally.updates())
    whole = measure(h.events[: posts[-1] + 1], block_time)
    assert proven.groups() == summarize(whole, lambda q: "proven" if q.proofs else "waiting")
    tally.feed(h.events[posts[-1] + 1 :], block_time)
    proven.update(tally.updates())
    everything = measure(h.events, block_time)
    expected = summarize(everything, lambda q: "proven" if q.proofs else "waiting")
    assert proven.groups() == expected
    assert sum(g.tasks for g in proven.groups()) == 30  # each task counted once, in its latest group

    one = History()  # one task, posted, then proven: it moves from "waiting" to "proven"
    one.market()
    one.mechanism(AUCTION, "auction")
    one.member(prover(1))
    moving = Groups(lambda q: "proven" if q.proofs else "waiting")
    tally = Tally()
    posted = one.post(1)
    tally.feed(one.events, block_time)
    moving.update(tally.updates())
    assert [g.key for g in moving.groups()] == ["waiting"]
    one.assign(1, prover(1), block=posted + 1)
    one.prove(1, prover(1), block=posted + 2, paid=80)
    tally.feed(one.events[-2:], block_time)
    moving.update(tally.updates())
    assert [(g.key, g.tasks, g.first_proof) for g in moving.groups()] == [("proven", 1, 24)]
    assert moving.group("waiting") is None


def test_updates__only_the_tasks_new_events_touched():
    h = random_history(5, tasks=60)
    tally = Tally()
    half = len(h.events) // 2
    tally.feed(h.events[:half], block_time)
    assert len(tally.updates()) == sum(1 for e in h.events[:half] if e.name == "TaskPosted")
    assert tally.updates() == []  # nothing came since
    one = next(e for e in h.events[half:] if e.name == "TaskProven")
    tally.feed([one], block_time)
    (changed,) = tally.updates()
    assert changed.task_id == "0x" + one.args["task_id"].hex()
    assert changed.proofs >= 1


def test_a_task_given_again_under_another_key__moves_though_its_figures_did_not():
    h = random_history(6, tasks=20)
    everything = measure(h.events, block_time)
    label = {q.task_id: "a" for q in everything}
    groups = Groups(lambda q: label[q.task_id])
    groups.update(everything)
    assert [(g.key, g.tasks) for g in groups.groups()] == [("a", 20)]
    moved = everything[:5]
    for q in moved:
        label[q.task_id] = "b"  # e.g. the explorer matched the task to another persona
    groups.update(moved)
    assert groups.groups() == summarize(everything, lambda q: label[q.task_id])
    assert [(g.key, g.tasks) for g in groups.groups()] == [("a", 15), ("b", 5)]
