"""The double auction (frontends/double_auction/mechanism.py) with no chain: on random instances,
no requester and no prover gains by misreporting (every report over a grid tried), nobody pays
more than its bid or is paid less than its ask, the frontend never runs a deficit, tasks get
all their slots or none and provers one slot each; over snapshots, the registry's rules hold
for every decision."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.book import MarketState, MembershipState, OpenTask, ProverState, Snapshot
from frontends.double_auction.mechanism import Ask, Bid, clear, clear_double_auction
from provingmarket import rules
from tests.factories import offchain_member, offchain_terms

MECHANISM = 3
NOW = 1_000
GRID = range(0, 23)  # every report tried; true values lie in 1..20


def prover(n: int) -> str:
    return "0x" + f"{n + 1:040x}"


def task_id(n: int) -> bytes:
    return (n + 1).to_bytes(32, "big")


instances = st.integers(1, 3).flatmap(
    lambda size: st.tuples(
        st.lists(st.tuples(st.integers(1, 20), st.just(size)), max_size=6),  # bids: value, slots
        st.lists(st.tuples(st.integers(1, 20), st.integers(0, 2)), max_size=9),  # asks: value, used
    )
)


def run(bids: list[tuple[int, int]], asks: list[tuple[int, int]]):
    return clear(
        [Bid(task_id(j), value, units) for j, (value, units) in enumerate(bids)],
        [Ask(prover(i), value, (used, i * 7 % 5)) for i, (value, used) in enumerate(asks)],
    )


def utilities(bids, asks):
    out = run(bids, asks)
    buyers = [
        units * (value - out.price) if task_id(j) in out.buyers else 0
        for j, (value, units) in enumerate(bids)
    ]
    sellers = [out.price - value if prover(i) in out.sellers else 0 for i, (value, _) in enumerate(asks)]
    return out, buyers, sellers


@settings(max_examples=300, deadline=None)
@given(instances)
def test_clear__no_requester_gains_by_misreporting_its_reward(instance):
    bids, asks = instance
    _, truthful, _ = utilities(bids, asks)
    for j, (value, units) in enumerate(bids):
        for report in GRID:
            lied = [*bids[:j], (report, units), *bids[j + 1 :]]
            out = run(lied, asks)
            gained = units * (value - out.price) if task_id(j) in out.buyers else 0
            assert gained <= truthful[j], (j, report, out)


@settings(max_examples=300, deadline=None)
@given(instances)
def test_clear__no_prover_gains_by_misreporting_its_ask(instance):
    bids, asks = instance
    _, _, truthful = utilities(bids, asks)
    for i, (value, used) in enumerate(asks):
        for report in GRID:
            lied = [*asks[:i], (report, used), *asks[i + 1 :]]
            out = run(bids, lied)
            gained = out.price - value if prover(i) in out.sellers else 0
            assert gained <= truthful[i], (i, report, out)


@settings(max_examples=500, deadline=None)
@given(instances)
def test_clear__rational_balanced_and_all_or_nothing(instance):
    bids, asks = instance
    out, buyers, sellers = utilities(bids, asks)
    assert min(buyers, default=0) >= 0 and min(sellers, default=0) >= 0  # nobody pays above its bid
    demand = sum(units for j, (_, units) in enumerate(bids) if task_id(j) in out.buyers)
    assert len(out.sellers) == demand == len(set(out.sellers))  # every slot one distinct prover
    # One price both ways: what requesters pay is exactly what provers get, never less.
    paid = demand * (out.price or 0)
    received = len(out.sellers) * (out.price or 0)
    assert paid - received == 0
    if out.buyers:  # the price lies between every trading ask and every trading bid
        assert all(value >= out.price for j, (value, _) in enumerate(bids) if task_id(j) in out.buyers)
        assert all(value <= out.price for i, (value, _) in enumerate(asks) if prover(i) in out.sellers)


def test_clear__the_price_is_the_first_ask_left_out():
    # Two tasks of one slot bid 9 and 8; asks 2, 3, 5: D(2) = 2 > 0... D(5) = 2 <= 2.
    out = clear(
        [Bid(task_id(0), 9, 1), Bid(task_id(1), 8, 1)],
        [Ask(prover(0), 2), Ask(prover(1), 3), Ask(prover(2), 5)],
    )
    assert out.price == 5 and set(out.buyers) == {task_id(0), task_id(1)}
    assert set(out.sellers) == {prover(0), prover(1)}


def test_clear__a_task_needing_more_provers_than_are_in_the_money__waits_whole():
    out = clear([Bid(task_id(0), 9, 3)], [Ask(prover(0), 2), Ask(prover(1), 3)])
    assert out.buyers == () and out.sellers == ()


# ------------------------------------------------------------------ over snapshots


def member(n: int, ask: int, **overrides) -> MembershipState:
    return offchain_member(prover(n), **{"ask": ask, "mechanisms": frozenset({MECHANISM}), **overrides})


def open_task(n: int, reward: int, redundancy: int = 1, **overrides) -> OpenTask:
    terms = offchain_terms(
        max_reward=reward, redundancy=redundancy, posted_at=NOW - 10 + n, salt=n, **overrides
    )
    return OpenTask(task_id(n), terms, redundancy)


def snapshot(tasks, members, stake: int = 1_000) -> Snapshot:
    return Snapshot(
        now=NOW,
        mechanisms=frozenset({MECHANISM}),
        markets=(MarketState(1), MarketState(2)),
        provers=tuple(ProverState(m.prover, stake) for m in members),
        memberships=tuple(members),
        tasks=tuple(tasks),
    )


snapshots = st.tuples(
    st.lists(st.tuples(st.integers(1, 30), st.integers(1, 3), st.integers(1, 2)), max_size=6),
    st.lists(st.tuples(st.integers(1, 30), st.integers(0, 3), st.integers(1, 2), st.booleans()), max_size=8),
    st.integers(5, 40),
)


def build(tasks, members, stake) -> Snapshot:
    return snapshot(
        [
            open_task(n, reward, redundancy, market_id=market)
            for n, (reward, redundancy, market) in enumerate(tasks)
        ],
        [
            member(n, ask, used=used, capacity=2, market_id=market, proving_time=400 if slow else 60)
            for n, (ask, used, market, slow) in enumerate(members)
        ],
        stake,
    )


@settings(max_examples=300, deadline=None)
@given(snapshots)
def test_clear_double_auction__every_decision_holds_at_the_registry(case):
    snap = build(*case)
    decisions = clear_double_auction(snap)
    tasks = {t.task_id: t for t in snap.tasks}
    members = {(m.prover, m.market_id): m for m in snap.memberships}
    per_task: dict[bytes, list[str]] = {}
    stake = {p.address: p.free_stake for p in snap.provers}
    for d in decisions:
        per_task.setdefault(d.task_id, []).append(d.prover)
        m = members[(d.prover, d.terms.market_id)]
        who = rules.Candidate(
            d.prover,
            ask=m.ask,
            capacity=m.capacity,
            used=m.used,
            proving_time=m.proving_time,
            free_stake=stake[d.prover],
        )
        assert rules.assign_refusal(d.terms, rules.Slots(open=1), who, NOW, d.price) == ""
        stake[d.prover] -= d.terms.collateral
    for tid, provers in per_task.items():
        assert len(provers) == tasks[tid].open_slots == len(set(provers))  # all or nothing, distinct
    chosen = [d.prover for d in decisions]
    for address in set(chosen):  # one slot per prover and market in a round
        assert len({d.terms.market_id for d in decisions if d.prover == address}) == chosen.count(address)
    prices = {d.terms.market_id: d.price for d in decisions}
    assert all(d.price == prices[d.terms.market_id] for d in decisions)  # one price per market


@settings(max_examples=150, deadline=None)
@given(snapshots, st.data())
def test_clear_double_auction__no_one_gains_by_misreporting_over_a_snapshot(case, data):
    tasks, members, stake = case
    snap = build(tasks, members, stake)

    def utility(decisions, who) -> int:
        if isinstance(who, bytes):
            value = next(t.terms.max_reward for t in snap.tasks if t.task_id == who)
            return sum(value - d.price for d in decisions if d.task_id == who)
        cost = {m.market_id: m.ask for m in snap.memberships if m.prover == who}
        return sum(d.price - cost[d.terms.market_id] for d in decisions if d.prover == who)

    truthful = clear_double_auction(snap)
    for t in snap.tasks:
        for report in GRID:
            lied = replace(t, terms=replace(t.terms, max_reward=report + 1))
            other = replace(snap, tasks=tuple(lied if x is t else x for x in snap.tasks))
            assert utility(clear_double_auction(other), t.task_id) <= utility(truthful, t.task_id)
    for m in snap.memberships:
        for report in GRID:
            other = replace(
                snap, memberships=tuple(replace(x, ask=report) if x is m else x for x in snap.memberships)
            )
            assert utility(clear_double_auction(other), m.prover) <= utility(truthful, m.prover)


def test_clear_double_auction__a_task_some_provers_cannot_serve__leaves_them_out_of_its_pool():
    slow = member(0, 1, proving_time=400)  # too slow for a 300 s proving window
    snap = snapshot([open_task(0, 50)], [slow, member(1, 5), member(2, 7)])
    decisions = clear_double_auction(snap)
    assert [(d.prover, d.price) for d in decisions] == [(prover(1), 7)]


def test_clear_double_auction__a_task_no_asks_can_serve__does_not_keep_other_sizes_out_round_after_round():
    """The earliest task wants two proofs at 6 a slot, and only one prover asks that little:
    it cannot trade. A later task wanting one proof at 50 trades in the rounds whose turn is
    its size (drawn from the round's time alone), at the first ask left out."""
    tasks = [open_task(0, 6, redundancy=2), open_task(1, 50)]
    members = [member(1, 5), member(2, 7), member(3, 100)]
    rounds = [clear_double_auction(replace(snapshot(tasks, members), now=NOW + i)) for i in range(20)]

    traded = [r for r in rounds if r]
    assert traded, "the single-proof task never got its turn"
    assert all([(d.task_id, d.prover, d.price) for d in r] == [(task_id(1), prover(1), 7)] for r in traded)
    assert len(traded) < len(rounds)  # the two-proof task's size has its turns too
