"""The orderbook's batch applied by the registry on anvil: every decision the mechanism makes
is an assignment the registry takes, with no skip."""

from __future__ import annotations

from frontends.book import MarketState, MembershipState, OpenTask, ProverState, Snapshot
from frontends.orderbook.mechanism import match_orders
from provingmarket.formats import TaskTerms
from tests.factories import ETHER


def chain_snapshot(chain, registry, market: int, mechanism: int, provers, tasks: list[TaskTerms]) -> Snapshot:
    """The registry's state as a snapshot, read from its views (provers listed in join order)."""
    memberships = []
    for since, p in enumerate(provers):
        m = registry.membership(p, market)
        accepted = {mechanism} if registry.accepts(p, market, mechanism) else set()
        memberships.append(
            MembershipState(
                p.address, market, m.ask, m.capacity, m.used, m.proving_time, m.capabilities, accepted, since
            )
        )
    open_tasks = []
    for t in tasks:
        task_id = bytes(registry.task_id(t.as_tuple()))
        barred = {p.address for p in provers if registry.engagement(task_id, p) != 0}
        open_tasks.append(OpenTask(task_id, t, registry.task_status(task_id).open, barred))
    return Snapshot(
        now=chain.pending_timestamp,
        mechanisms=frozenset({mechanism}),
        markets=(MarketState(market, registry.market(market).paused),),
        provers=tuple(ProverState(p.address, registry.standing(p).free) for p in provers),
        memberships=tuple(memberships),
        tasks=tuple(open_tasks),
    )


def test_match__its_batch__is_applied_by_the_registry_without_a_skip(
    chain, registry, market, mechanism, staked_provers, create_task, keeper
):
    p0, p1, p2 = staked_provers  # capacity 2 each, capabilities 0b11
    ask = ETHER // 100
    # Proving time 90 s each: a task with a 61 s window is too fast for all of them (a
    # frontend's task must give more than the market's 60 s grace).
    registry.update_membership(market, 2, ask, 90, 0b11, sender=p0)
    registry.update_membership(market, 2, 2 * ask, 90, 0b11, sender=p1)
    registry.update_membership(market, 2, 3 * ask, 90, 0b11, sender=p2)
    big = create_task(redundancy=2, max_reward=ETHER // 10)
    mid = create_task(redundancy=3, max_reward=ETHER // 20)
    small = create_task(max_reward=2 * ask)  # only p2 has capacity left for it, at 3 * ask
    needs_gpu = create_task(capabilities=0b100)
    rushed = create_task(proving_window=61)
    # p2 already holds a slot of `mid`: two slots open, p2 barred from them.
    registry.assign((mid.as_tuple(), p2.address, 3 * ask, 0, 0, 0, b""), sender=keeper)
    tasks = [big, mid, small, needs_gpu, rushed]

    decisions = match_orders(chain_snapshot(chain, registry, market, mechanism, staked_provers, tasks))
    tx = registry.assign_batch([d.as_item() for d in decisions], sender=keeper)

    big_id, mid_id = (bytes(registry.task_id(t.as_tuple())) for t in (big, mid))
    expected = [(big_id, p0, ask), (big_id, p1, 2 * ask), (mid_id, p0, ask), (mid_id, p1, 2 * ask)]
    assert [(d.task_id, d.prover, d.price) for d in decisions] == [(i, p.address, a) for i, p, a in expected]
    assert [e.reason for e in tx.events.filter(registry.AssignmentSkipped)] == []
    applied = [(bytes(e.task_id), e.prover, e.price) for e in tx.events.filter(registry.TaskAssigned)]
    assert applied == [(i, p.address, a) for i, p, a in expected]
    assert [registry.membership(p, market).used for p in staked_provers] == [2, 2, 1]
    # What is left cannot match: p0 and p1 are full, p2 asks too much for `small`.
    assert match_orders(chain_snapshot(chain, registry, market, mechanism, staked_provers, tasks)) == []
