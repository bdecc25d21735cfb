"""The seed's two designs as the registry pays them.

Design A, election then race: N provers are assigned a task (here by a frontend of a
registered mechanism, as the election frontend does) and each that proves in time is
paid; one that misses is paid nothing and slashed. Design B, the open race: every
staked prover may prove at once and the first N valid proofs are paid. In both, a
decaying reward pays what the curve says at the proof's block.

Already covered elsewhere, so not repeated here (tests/registry/test_proofs.py):
every one of 3 assigned provers proving (`..._redundancy_three__each_prover_proves_and_is_paid`),
a single assignment proven halfway through a decaying task and the `reward_at` curve
itself (`..._halfway_through_a_decaying_task...`, `test_reward_at__decaying_task...`), and
an open race of N=2 with three valid proofs in a row
(`..._open_race__first_n_staked_provers_are_paid_and_the_next_finds_no_slot`).
"""

import ape

from provingmarket import OPEN_RACE, Assignment, TaskTerms
from provingmarket.formats import ZERO_ADDRESS
from tests.factories import ETHER, REQUESTER_BPS, STATEMENT, advance, assigned, item, proof_for

BPS = 10_000
RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)  # ignored by an OPEN_RACE proof


def prove(registry, terms: TaskTerms, assignment: Assignment, prover, proof: bytes | None = None):
    """Prove the sample statement as `prover`, by default with a real proof bound to its address."""
    proof = proof_for(STATEMENT, prover.address) if proof is None else proof
    return registry.prove(terms.as_tuple(), assignment.as_tuple(), STATEMENT, proof, sender=prover)


def counts(registry, terms: TaskTerms) -> tuple:
    status = registry.task_status(registry.task_id(terms.as_tuple()))
    return (status.open, status.assigned, status.proven, status.closed)


def block_time(chain, tx) -> int:
    return chain.blocks[tx.block_number].timestamp


def decayed(price: int, floor: int, window: int, deadline: int, at: int) -> int:
    """The documented curve (Registry.vy `_reward_at`): linear from the price, a full
    window before the deadline, down to the floor (never above the price) at the
    deadline; multiply before divide, rounding down."""
    least = min(floor, price)
    if at >= deadline:
        return least
    remaining = min(deadline - at, window)
    return least + (price - least) * remaining // window


# ------------------------------------------------------------------ design A: election then race


def test_prove__redundancy_three_two_prove_in_time_one_misses__the_two_are_paid_the_third_is_slashed(
    registry, create_task, staked_provers, keeper, requester, stranger, chain
):
    # The assignment window ends before the proving window: an elected slot that is
    # missed is refunded, not offered again.
    terms = create_task(redundancy=3, assign_window=100, proving_window=300)
    price = 4 * ETHER // 100
    on_time, also_on_time, late = staked_provers
    tx = registry.assign_batch([item(terms, p, price) for p in staked_provers], sender=keeper)
    assignments = dict(assigned(registry, tx))
    assert sorted(a.slot for a in assignments.values()) == [0, 1, 2]
    deadline = assignments[late.address].deadline

    advance(chain, 60)
    first = prove(registry, terms, assignments[on_time.address], on_time)
    chain.pending_timestamp = deadline  # the last second that is still in time
    # Checked before the proof: a refused transaction mines no block, so the slash is
    # judged at the deadline itself (the block after the proof may already be later).
    with ape.reverts("registry: deadline not passed"):
        registry.slash(terms.as_tuple(), late, assignments[late.address].as_tuple(), sender=stranger)
    # Pinned again: on a loaded machine a refusal has been seen to mine a block after all,
    # and the proof must still land on the deadline's second.
    chain.pending_timestamp = deadline
    second = prove(registry, terms, assignments[also_on_time.address], also_on_time)
    assert block_time(chain, second) == deadline
    advance(chain, 1)

    with ape.reverts("registry: deadline passed"):
        prove(registry, terms, assignments[late.address], late)
    slashed = registry.slash(terms.as_tuple(), late, assignments[late.address].as_tuple(), sender=stranger)

    proven = [e for tx in (first, second) for e in tx.events.filter(registry.TaskProven)]
    assert [(e.prover, e.paid, e.fee) for e in proven] == [
        (on_time.address, price, terms.frontend_fee),
        (also_on_time.address, price, terms.frontend_fee),
    ]
    assert registry.balances(on_time) == registry.balances(also_on_time) == price
    assert registry.balances(late) == 0
    assert registry.standing(late).stake == 5 * ETHER - terms.collateral
    assert registry.standing(late).locked == 0
    assert registry.balances(keeper) == 2 * terms.frontend_fee  # only proven assignments pay the fee
    # The requester: what each proof left of its slot, the missed slot's whole escrow
    # and its share of the missing prover's collateral.
    [slash_event] = slashed.events.filter(registry.Slashed)
    [closed] = slashed.events.filter(registry.SlotsClosed)
    share = min(terms.collateral * REQUESTER_BPS // BPS, terms.max_reward)
    assert (slash_event.prover, slash_event.to_requester, slash_event.reopened) == (
        late.address,
        share,
        False,
    )
    assert (closed.slots, closed.refund) == (1, terms.max_reward + terms.frontend_fee)
    refund = 2 * (terms.max_reward - price) + terms.max_reward + terms.frontend_fee + share
    assert sum(e.refund for e in proven) + closed.refund + slash_event.to_requester == refund
    assert registry.balances(requester) == refund
    assert counts(registry, terms) == (0, 0, 2, 1)
    assert registry.task_status(registry.task_id(terms.as_tuple())).proven == 2

    withdrawn = registry.withdraw(sender=requester)
    assert [e.amount for e in withdrawn.events.filter(registry.Withdrawn)] == [refund]


def test_prove__elected_provers_on_a_decaying_task__each_is_paid_the_curve_at_its_own_proof(
    registry_math, registry, create_task, staked_provers, keeper, requester, chain
):
    floor = ETHER // 50
    terms = create_task(redundancy=3, decay=True, decay_floor=floor, proving_window=300)
    price = terms.max_reward
    tx = registry.assign_batch([item(terms, p, price) for p in staked_provers], sender=keeper)
    assignments = dict(assigned(registry, tx))
    deadline = assignments[staked_provers[0].address].deadline
    assert {a.deadline for a in assignments.values()} == {deadline}  # elected together

    # The first proves 30 s in, the second 5 min minus 1 s in, the third at the deadline.
    paid = {}
    for p, at in zip(staked_provers, (deadline - 270, deadline - 1, deadline), strict=True):
        chain.pending_timestamp = at
        proof_tx = prove(registry, terms, assignments[p.address], p)
        assert block_time(chain, proof_tx) == at
        [event] = proof_tx.events.filter(registry.TaskProven)
        expected = decayed(price, floor, terms.proving_window, deadline, at)
        assert expected == registry_math.reward_at(terms.as_tuple(), price, deadline, at)
        assert (event.paid, event.refund) == (expected, terms.max_reward - expected)
        paid[p.address] = expected

    first, second, third = (paid[p.address] for p in staked_provers)
    assert price > first > second > third == floor
    for p in staked_provers:
        assert registry.balances(p) == paid[p.address]
    assert registry.balances(requester) == sum(terms.max_reward - v for v in paid.values())
    assert registry.balances(keeper) == 3 * terms.frontend_fee


# ------------------------------------------------------------------ design B: the open race


def test_prove__open_race_with_decay__the_faster_prover_is_paid_more_and_a_proof_at_the_end_the_floor(
    registry_math, registry, create_task, staked_provers, requester, chain
):
    floor, window = ETHER // 100, 90  # the window must exceed the market's 60 s grace
    terms = create_task(
        mechanism_id=OPEN_RACE, redundancy=2, decay=True, decay_floor=floor, proving_window=window
    )
    end = terms.posted_at + window  # a race's deadline: its end
    fast, slow, too_late = staked_provers

    advance(chain, 10)
    fast_tx = prove(registry, terms, RACE, fast)
    chain.pending_timestamp = end
    slow_tx = prove(registry, terms, RACE, slow)
    assert block_time(chain, slow_tx) == end
    advance(chain, 1)
    with ape.reverts("registry: race over"):
        prove(registry, terms, RACE, too_late)

    fast_paid = decayed(terms.max_reward, floor, window, end, block_time(chain, fast_tx))
    assert floor < fast_paid < terms.max_reward
    for tx, who, expected in ((fast_tx, fast, fast_paid), (slow_tx, slow, floor)):
        [event] = tx.events.filter(registry.TaskProven)
        at = block_time(chain, tx)
        assert expected == registry_math.reward_at(terms.as_tuple(), terms.max_reward, end, at)
        assert (event.prover, event.paid, event.refund) == (
            who.address,
            expected,
            terms.max_reward - expected,
        )
        assert registry.balances(who) == expected
    assert registry.balances(too_late) == 0
    assert registry.balances(requester) == 2 * terms.max_reward - fast_paid - floor
    assert counts(registry, terms) == (0, 0, 2, 0)


def test_prove__open_race_of_two__an_invalid_proof_takes_no_slot_and_the_first_two_valid_are_paid(
    registry, create_task, staked_provers, requester, chain
):
    terms = create_task(mechanism_id=OPEN_RACE, redundancy=2)
    copier, first, second = staked_provers

    # A proof bound to another prover's address is invalid for the copier: refused,
    # and it neither takes a slot nor bars the copier from proving for itself.
    with ape.reverts("registry: invalid proof"):
        prove(registry, terms, RACE, copier, proof=proof_for(STATEMENT, first.address))
    assert counts(registry, terms) == (2, 0, 0, 0)
    winners = [prove(registry, terms, RACE, p) for p in (first, second)]
    with ape.reverts("registry: no free slot"):
        prove(registry, terms, RACE, copier)

    proven = [e for tx in winners for e in tx.events.filter(registry.TaskProven)]
    assert [(e.prover, e.slot, e.paid, e.refund) for e in proven] == [
        (first.address, 0, terms.max_reward, 0),
        (second.address, 1, terms.max_reward, 0),
    ]
    assert registry.balances(first) == registry.balances(second) == terms.max_reward
    assert registry.balances(copier) == registry.balances(requester) == 0
    assert counts(registry, terms) == (0, 0, 2, 0)
    advance(chain, terms.proving_window + 1)
    with ape.reverts("registry: no open slots"):  # nothing left to refund: both slots were paid
        registry.reclaim(terms.as_tuple(), sender=requester)
