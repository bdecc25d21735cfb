"""Slashing a prover that missed its deadline, declining within the grace period, and
the registry's books: every wei it holds is stake, a credit, live escrow or burnt."""

import ape
import ape.exceptions

from provingmarket import TaskTerms
from tests.factories import (
    ETHER,
    GRACE_PERIOD,
    PROVER_INPUT,
    advance,
    assign,
    escrow,
    item,
    make_terms,
    prove,
)

BPS = 10_000


def slash(registry, terms, prover, assignment, caller):
    return registry.slash(terms.as_tuple(), prover, assignment.as_tuple(), sender=caller)


def counts(registry, terms) -> tuple:
    status = registry.task_status(registry.task_id(terms.as_tuple()))
    return (status.open, status.assigned, status.proven, status.closed)


def slot_value(terms) -> int:
    return terms.max_reward + terms.frontend_fee


# ------------------------------------------------------------------ slash


def test_slash__after_the_deadline_by_a_stranger__splits_collateral_between_requester_caller_and_burn(
    registry, create_task, prover, keeper, requester, stranger, chain
):
    collateral = ETHER // 10 + 7  # odd, so every share rounds
    terms = create_task(collateral=collateral)
    assignment = assign(registry, keeper, terms, prover)
    advance(chain, terms.proving_window + 1)
    held = registry.balance

    tx = slash(registry, terms, prover, assignment, stranger)

    market = registry.market(terms.market_id)
    to_requester = collateral * market.requester_bps // BPS
    to_caller = collateral * market.caller_bps // BPS
    burn = collateral - to_requester - to_caller
    assert to_requester < terms.max_reward and burn > 0  # no cap at play here
    [event] = tx.events.filter(registry.Slashed)
    assert (event.prover, event.caller, event.slot, event.collateral) == (
        prover.address,
        stranger.address,
        0,
        collateral,
    )
    assert (event.to_requester, event.to_caller, event.burnt) == (to_requester, to_caller, burn)
    assert registry.balances(requester) == to_requester
    assert registry.balances(stranger) == to_caller
    assert registry.burnt() == burn
    standing = registry.standing(prover)
    assert (standing.stake, standing.locked) == (5 * ETHER - collateral, 0)
    assert registry.membership(prover, terms.market_id).used == 0
    assert registry.balance == held  # nothing left the registry
    assert event.reopened
    assert counts(registry, terms) == (1, 0, 0, 0)


def test_slash__requester_share_above_max_reward__is_capped_and_the_excess_burnt(
    registry, create_market, mechanism, prover, keeper, requester, stranger, staked_provers, chain
):
    market_id = create_market(requester_bps=BPS, caller_bps=0)
    registry.join_market(market_id, 1, ETHER // 100, 60, 0b11, [mechanism], sender=prover)
    terms = make_terms(market_id, mechanism, collateral=ETHER // 2, max_reward=ETHER // 10)
    tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
    terms = TaskTerms.from_event(tx.events.filter(registry.TaskPosted)[0].terms)
    assignment = assign(registry, keeper, terms, prover)
    advance(chain, terms.proving_window + 1)

    tx = slash(registry, terms, prover, assignment, stranger)

    [event] = tx.events.filter(registry.Slashed)
    excess = terms.collateral - terms.max_reward
    assert (event.to_requester, event.to_caller, event.burnt) == (terms.max_reward, 0, excess)
    assert registry.balances(requester) == terms.max_reward
    assert registry.balances(stranger) == 0
    assert registry.burnt() == excess
    assert registry.standing(prover).stake == 5 * ETHER - terms.collateral


def test_slash__within_the_assignment_window__reopens_the_slot_to_others_but_not_the_slashed_prover(
    registry, create_task, provers, keeper, stranger, chain
):
    terms = create_task()
    slashed, other = provers[0], provers[1]
    assignment = assign(registry, keeper, terms, slashed)
    advance(chain, terms.proving_window + 1)
    slash(registry, terms, slashed, assignment, stranger)

    with ape.reverts("registry: prover was slashed on task"):
        registry.assign(item(terms, slashed, terms.max_reward), sender=keeper)
    again = assign(registry, keeper, terms, other)
    prove(registry, terms, again, other)

    assert again.slot == assignment.slot
    assert registry.balances(other) == terms.max_reward
    assert counts(registry, terms) == (0, 0, 1, 0)


def test_slash__after_the_assignment_window__refunds_the_slot_escrow_to_the_requester(
    registry, create_task, prover, keeper, requester, stranger, chain
):
    terms = create_task(redundancy=2)
    assignment = assign(registry, keeper, terms, prover)
    advance(chain, terms.assign_window + 1)

    tx = slash(registry, terms, prover, assignment, stranger)

    [event] = tx.events.filter(registry.Slashed)
    assert not event.reopened
    [closed] = tx.events.filter(registry.SlotsClosed)
    assert (closed.slots, closed.refund, closed.cancelled) == (1, slot_value(terms), False)
    assert registry.balances(requester) == event.to_requester + slot_value(terms)
    assert counts(registry, terms) == (1, 0, 0, 1)  # the never-assigned slot waits for reclaim


def test_slash__before_the_deadline__reverts(registry, create_task, prover, keeper, stranger):
    terms = create_task()
    assignment = assign(registry, keeper, terms, prover)

    with ape.reverts("registry: deadline not passed"):
        slash(registry, terms, prover, assignment, stranger)


def test_slash__another_prover_or_a_proven_assignment__reverts_not_assigned(
    registry, create_task, provers, keeper, stranger, chain
):
    late = create_task()
    proven = create_task(redundancy=2)
    prover, other = provers[0], provers[1]
    late_assignment = assign(registry, keeper, late, prover)
    proven_assignment = assign(registry, keeper, proven, prover)
    prove(registry, proven, proven_assignment, prover)
    advance(chain, late.proving_window + 1)

    with ape.reverts("registry: not assigned"):
        slash(registry, late, other, late_assignment, stranger)
    with ape.reverts("registry: not assigned"):
        slash(registry, proven, prover, proven_assignment, stranger)
    assert registry.standing(prover).stake == 5 * ETHER
    assert registry.burnt() == 0


# ------------------------------------------------------------------ decline


def test_decline__within_the_grace_period__frees_collateral_and_capacity_and_reopens_the_slot(
    registry, create_task, provers, keeper, requester
):
    terms = create_task()
    decliner, other = provers[0], provers[1]
    assignment = assign(registry, keeper, terms, decliner)
    assert registry.standing(decliner).locked == terms.collateral

    tx = registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=decliner)

    [event] = tx.events.filter(registry.TaskDeclined)
    assert (event.prover, event.slot, event.reopened) == (decliner.address, 0, True)
    standing = registry.standing(decliner)
    assert (standing.stake, standing.locked) == (5 * ETHER, 0)
    assert registry.membership(decliner, terms.market_id).used == 0
    assert registry.balances(requester) == registry.burnt() == 0
    assert counts(registry, terms) == (1, 0, 0, 0)
    with ape.reverts("registry: prover declined task"):
        registry.assign(item(terms, decliner, terms.max_reward), sender=keeper)
    assert assign(registry, keeper, terms, other).slot == 0
    # With the slot held again, the decliner hears that first, whatever the slot's word.
    with ape.reverts("registry: no free slot"):
        registry.assign(item(terms, decliner, terms.max_reward), sender=keeper)


def test_decline__after_the_grace_period__reverts(registry, create_task, prover, keeper, chain):
    terms = create_task()
    assignment = assign(registry, keeper, terms, prover)
    advance(chain, GRACE_PERIOD + 1)

    with ape.reverts("registry: grace period over"):
        registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=prover)
    assert registry.standing(prover).locked == terms.collateral


# ------------------------------------------------------------------ conservation


def test_registry_balance__after_proofs_declines_slashes_and_refunds__equals_stakes_credits_escrow_and_burnt(
    registry, create_task, provers, keeper, requester, stranger, owner, chain
):
    p0, p1, p2 = provers
    odd = create_task(redundancy=3, collateral=ETHER // 10 + 7)
    single = create_task(max_reward=ETHER // 5)
    cancelled = create_task(redundancy=2, max_reward=ETHER // 20)
    long_lived = create_task(assign_window=10_000, proving_window=5_000)
    untouched = create_task(redundancy=2, assign_window=10_000)
    tasks = [odd, single, cancelled, long_lived, untouched]
    people = [owner, requester, *provers, keeper, stranger]

    def assert_conserved():
        stakes = sum(registry.standing(p).stake + registry.standing(p).unbonding for p in provers)
        credits = sum(registry.balances(p) for p in people)
        live = 0
        for t in tasks:
            open_, assigned_, _, _ = counts(registry, t)
            live += (open_ + assigned_) * slot_value(t)
        assert registry.balance == stakes + credits + live + registry.burnt()

    on_odd = {p: assign(registry, keeper, odd, p, ETHER // 20) for p in provers}
    on_single = assign(registry, keeper, single, p0)
    on_cancelled = assign(registry, keeper, cancelled, p1)
    assign(registry, keeper, long_lived, p2)
    prove(registry, odd, on_odd[p0], p0)
    registry.decline(odd.as_tuple(), on_odd[p1].as_tuple(), sender=p1)
    registry.cancel(cancelled.as_tuple(), sender=requester)
    registry.unstake(ETHER, sender=p1)
    assert_conserved()

    advance(chain, odd.proving_window + 1)
    slash(registry, odd, p2, on_odd[p2], stranger)
    slash(registry, single, p0, on_single, stranger)
    slash(registry, cancelled, p1, on_cancelled, requester)
    assert_conserved()

    advance(chain, odd.assign_window)
    for t in (odd, single):  # the cancelled task's slot closed when its prover was slashed
        registry.reclaim(t.as_tuple(), sender=stranger)
    registry.withdraw(sender=requester)
    registry.withdraw(sender=stranger)

    assert registry.burnt() > 0
    assert counts(registry, odd) == (0, 0, 1, 2)
    assert counts(registry, cancelled) == (0, 0, 0, 2)
    assert counts(registry, long_lived) == (0, 1, 0, 0)
    assert counts(registry, untouched) == (2, 0, 0, 0)
    assert_conserved()
