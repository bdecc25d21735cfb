"""Proving: who is paid what for a proof, decaying rewards, redundancy, batches, open
races, and the commit-reveal binding that stops a proof from being copied."""

import ape
import ape.exceptions
import pytest

from provingmarket import BINDING_COMMIT_REVEAL, OPEN_RACE, Assignment, TaskTerms, proof_commit_digest
from provingmarket.circuits import Circuit
from provingmarket.formats import ZERO_ADDRESS
from tests.conftest import advance
from tests.utils.market import (
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    assigned,
    escrow,
    item,
    make_terms,
    proof_for,
)

RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)  # ignored by an OPEN_RACE proof


def assign(registry, keeper, terms, prover, price=None) -> Assignment:
    price = terms.max_reward if price is None else price
    [(who, assignment)] = assigned(registry, registry.assign(item(terms, prover, price), sender=keeper))
    assert who == prover.address
    return assignment


def prove(registry, terms, assignment, prover, inputs=STATEMENT, proof=None, **kwargs):
    """Prove as `prover`; by default with the proof made for `prover`'s address."""
    proof = proof_for(STATEMENT, prover.address) if proof is None else proof
    return registry.prove(terms.as_tuple(), assignment.as_tuple(), inputs, proof, sender=prover, **kwargs)


def block_time(chain, tx) -> int:
    return chain.blocks[tx.block_number].timestamp


def counts(registry, terms) -> tuple:
    status = registry.task_status(registry.task_id(terms.as_tuple()))
    return (status.open, status.assigned, status.proven, status.closed)


# ------------------------------------------------------------------ assigned proofs


def test_prove__assigned_prover__pays_price_fee_to_frontend_and_rest_to_requester(
    registry, create_task, prover, keeper, requester
):
    terms = create_task()
    task = registry.task_id(terms.as_tuple())
    price = 3 * ETHER // 100
    assignment = assign(registry, keeper, terms, prover, price)

    tx = prove(registry, terms, assignment, prover)

    rest = terms.max_reward - price
    [proven] = tx.events.filter(registry.TaskProven)
    assert (proven.task_id, proven.prover, proven.frontend) == (task, prover.address, keeper.address)
    assert (proven.slot, proven.paid, proven.fee, proven.refund) == (0, price, terms.frontend_fee, rest)
    assert list(proven.public_inputs) == [int(prover.address, 16), *STATEMENT[1:]]
    assert proven.proof == proof_for(STATEMENT, prover.address)
    assert registry.balances(prover) == price
    assert registry.balances(keeper) == terms.frontend_fee
    assert registry.balances(requester) == rest
    assert registry.proofs_delivered(task) == 1
    assert counts(registry, terms) == (0, 0, 1, 0)
    standing = registry.standing(prover)
    assert (standing.stake, standing.locked) == (5 * ETHER, 0)


def test_reward_at__decaying_task__falls_linearly_to_the_floor(registry, create_task):
    price, floor, window = ETHER // 10 - 1, ETHER // 100 + 1, 300
    terms = create_task(decay=True, decay_floor=floor, proving_window=window)
    deadline = terms.posted_at + 1_000

    def reward(at, p=price):
        return registry.reward_at(terms.as_tuple(), p, deadline, at)

    def expected(at, p=price):
        f = min(floor, p)
        return f + (p - f) * (deadline - at) // window  # multiply before divide

    assert reward(deadline - window) == price
    assert reward(deadline - window - 50) == price  # before the assignment: nothing decayed yet
    for remaining in (299, 200, 150, 77, 1):
        assert reward(deadline - remaining) == expected(deadline - remaining)
    assert reward(deadline - 77) != floor + (price - floor) // window * 77  # not divide-first
    assert reward(deadline) == floor
    assert reward(deadline + 100) == floor
    # A price under the floor does not decay at all.
    assert reward(deadline - 100, p=floor - 1) == floor - 1
    assert reward(deadline + 100, p=floor - 1) == floor - 1
    # Without decay the price holds, even late.
    flat = create_task()
    assert registry.reward_at(flat.as_tuple(), price, deadline, deadline + 100) == price


def test_prove__halfway_through_a_decaying_task__pays_the_decayed_reward_and_refunds_the_rest(
    registry, create_task, prover, keeper, requester, chain
):
    floor = ETHER // 100
    terms = create_task(decay=True, decay_floor=floor)
    price = terms.max_reward
    assignment = assign(registry, keeper, terms, prover, price)
    advance(chain, terms.proving_window // 2)

    tx = prove(registry, terms, assignment, prover)

    remaining = assignment.deadline - block_time(chain, tx)
    paid = floor + (price - floor) * remaining // terms.proving_window
    assert floor < paid < price
    assert paid == registry.reward_at(terms.as_tuple(), price, assignment.deadline, block_time(chain, tx))
    [proven] = tx.events.filter(registry.TaskProven)
    assert (proven.paid, proven.refund) == (paid, terms.max_reward - paid)
    assert registry.balances(prover) == paid
    assert registry.balances(keeper) == terms.frontend_fee
    assert registry.balances(requester) == terms.max_reward - paid


def test_prove__redundancy_three__each_prover_proves_and_is_paid(
    registry, create_task, staked_provers, keeper, requester
):
    terms = create_task(redundancy=3)
    task = registry.task_id(terms.as_tuple())
    price = 5 * ETHER // 100
    tx = registry.assign_batch([item(terms, p, price) for p in staked_provers], sender=keeper)
    assignments = dict(assigned(registry, tx))
    assert sorted(a.slot for a in assignments.values()) == [0, 1, 2]

    for done, p in enumerate(staked_provers, start=1):
        prove(registry, terms, assignments[p.address], p)
        assert registry.proofs_delivered(task) == done
        assert counts(registry, terms) == (0, 3 - done, done, 0)

    for p in staked_provers:
        assert registry.balances(p) == price
        assert registry.standing(p).locked == 0
    assert registry.balances(keeper) == 3 * terms.frontend_fee
    assert registry.balances(requester) == 3 * (terms.max_reward - price)


def test_prove_batch__all_valid__applies_every_proof(registry, create_task, prover, keeper):
    first, second = create_task(), create_task(max_reward=ETHER // 5)
    items = [
        (
            t.as_tuple(),
            assign(registry, keeper, t, prover).as_tuple(),
            STATEMENT,
            proof_for(STATEMENT, prover.address),
        )
        for t in (first, second)
    ]

    registry.prove_batch(items, sender=prover)

    assert registry.balances(prover) == first.max_reward + second.max_reward
    for t in (first, second):
        assert registry.proofs_delivered(registry.task_id(t.as_tuple())) == 1
    assert registry.membership(prover, first.market_id).used == 0


def test_prove_batch__one_invalid_proof__reverts_them_all(registry, create_task, prover, keeper):
    first, second = create_task(), create_task(max_reward=ETHER // 5)
    good, bad = proof_for(STATEMENT, prover.address), proof_for(STATEMENT)
    items = [
        (t.as_tuple(), assign(registry, keeper, t, prover).as_tuple(), STATEMENT, proof)
        for t, proof in ((first, good), (second, bad))
    ]

    with ape.reverts("registry: invalid proof"):
        registry.prove_batch(items, sender=prover)

    assert registry.balances(prover) == 0
    for t in (first, second):
        assert registry.proofs_delivered(registry.task_id(t.as_tuple())) == 0
    assert registry.standing(prover).locked == first.collateral + second.collateral


def test_prove__not_the_assignment__reverts_not_assigned(registry, create_task, provers, keeper):
    terms = create_task()
    prover, other = provers[0], provers[1]
    assignment = assign(registry, keeper, terms, prover, ETHER // 50)
    higher = Assignment(assignment.slot, assignment.price + 1, assignment.deadline, assignment.frontend)

    with ape.reverts("registry: not assigned"):
        prove(registry, terms, assignment, other)  # another prover with the real assignment
    with ape.reverts("registry: not assigned"):
        prove(registry, terms, higher, prover)  # the prover claiming a higher price
    prove(registry, terms, assignment, prover)
    assert registry.balances(prover) == ETHER // 50


def test_prove__after_the_deadline__reverts(registry, create_task, prover, keeper, chain):
    terms = create_task()
    assignment = assign(registry, keeper, terms, prover)
    advance(chain, terms.proving_window + 1)

    with ape.reverts("registry: deadline passed"):
        prove(registry, terms, assignment, prover)


def test_prove__bad_statement_or_proof__reverts_with_reason(
    registry, create_task, provers, keeper, verifier, deploy_verifier, chain
):
    terms = create_task()
    prover, other = provers[0], provers[1]
    assignment = assign(registry, keeper, terms, prover)
    other_statement = [0, 64]  # x = 8

    with ape.reverts("registry: inputs do not match commitment"):
        prove(
            registry,
            terms,
            assignment,
            prover,
            inputs=other_statement,
            proof=proof_for(other_statement, prover.address),
        )
    with ape.reverts("registry: address input missing"):
        prove(registry, terms, assignment, prover, inputs=[])
    with ape.reverts("registry: invalid proof"):  # a proof copied from another prover
        prove(registry, terms, assignment, prover, proof=proof_for(STATEMENT, other.address))
    # The verifier's code replaced by a verifier for another circuit: it rejects this proof.
    other_code = chain.provider.get_code(deploy_verifier(Circuit.load("squarings-1000")).address)
    chain.provider.make_request("anvil_setCode", [verifier.address, "0x" + bytes(other_code).hex()])
    with ape.reverts("registry: invalid proof"):
        prove(registry, terms, assignment, prover)
    assert registry.balances(prover) == 0
    assert registry.standing(prover).locked == terms.collateral


def test_prove__gas_too_low_for_the_verifier__reverts_saying_so_and_a_retry_pays(
    registry, create_task, prover, keeper, chain
):
    """A prover whose transaction starves the verifier is told the verifier ran out of
    gas, not that its proof is invalid; the same proof with enough gas is paid."""
    terms = create_task()
    assignment = assign(registry, keeper, terms, prover)
    args = (terms.as_tuple(), assignment.as_tuple(), STATEMENT, proof_for(STATEMENT, prover.address))
    needed = registry.prove.estimate_gas_cost(*args, sender=prover)

    with ape.reverts("registry: verifier reverted (out of gas?)"):
        registry.prove(*args, sender=prover, gas=needed - 40_000)
    assert registry.balances(prover) == 0

    registry.prove(*args, sender=prover, gas=needed)
    assert registry.balances(prover) == assignment.price


# ------------------------------------------------------------------ open races


def test_prove__open_race__first_n_staked_provers_are_paid_and_the_next_finds_no_slot(
    registry, create_task, staked_provers, requester
):
    terms = create_task(mechanism_id=OPEN_RACE, redundancy=2)
    task = registry.task_id(terms.as_tuple())
    first, second, late = staked_provers

    for p in (first, second):
        tx = prove(registry, terms, RACE, p)
        [proven] = tx.events.filter(registry.TaskProven)
        assert (proven.prover, proven.paid, proven.fee, proven.refund) == (p.address, terms.max_reward, 0, 0)
    with ape.reverts("registry: no free slot"):
        prove(registry, terms, RACE, late)

    assert registry.proofs_delivered(task) == 2
    assert registry.balances(first) == registry.balances(second) == terms.max_reward
    assert registry.balances(late) == registry.balances(requester) == 0
    assert registry.standing(first).locked == 0  # a race locks no collateral


def test_prove__open_race_same_prover_twice__reverts(registry, create_task, prover):
    terms = create_task(mechanism_id=OPEN_RACE, redundancy=2)
    prove(registry, terms, RACE, prover)

    with ape.reverts("registry: prover already on task"):
        prove(registry, terms, RACE, prover)
    assert registry.balances(prover) == terms.max_reward


def test_prove__open_race_after_its_window__reverts(registry, create_task, prover, chain):
    terms = create_task(mechanism_id=OPEN_RACE)
    advance(chain, terms.proving_window + 1)

    with ape.reverts("registry: race over"):
        prove(registry, terms, RACE, prover)


@pytest.mark.parametrize(
    "overrides, outsider, reason",
    [
        ({"capabilities": 0b100}, False, "registry: prover lacks capabilities"),
        ({"collateral": 5 * ETHER + 1}, False, "registry: not enough free stake"),
        ({}, True, "registry: prover not in market"),
    ],
)
def test_prove__open_race_by_an_ineligible_prover__reverts(
    registry, create_task, prover, accounts, overrides, outsider, reason
):
    terms = create_task(mechanism_id=OPEN_RACE, **overrides)
    who = accounts[7] if outsider else prover

    with ape.reverts(reason):
        prove(registry, terms, RACE, who)


# ------------------------------------------------------------------ commit-reveal


@pytest.fixture
def reveal_market(registry, create_market, staked_provers, mechanism):
    """A commit-reveal market (no address input) that the staked provers joined."""
    market_id = create_market(binding=BINDING_COMMIT_REVEAL)
    for p in staked_provers:
        registry.join_market(market_id, 2, ETHER // 100, 60, 0b11, [mechanism], sender=p)
    return market_id


@pytest.fixture
def reveal_task(registry, reveal_market, mechanism, requester):
    """Post a task of redundancy `redundancy` in the commit-reveal market."""

    def post(redundancy=1) -> TaskTerms:
        terms = make_terms(reveal_market, mechanism, redundancy=redundancy)
        tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
        return TaskTerms.from_event(tx.events.filter(registry.TaskPosted)[0].terms)

    return post


PROOF = proof_for(STATEMENT)  # the same bytes for every prover: nothing in it names one


def commit(registry, terms, prover, proof=PROOF, **kwargs):
    digest = proof_commit_digest(registry.task_id(terms.as_tuple()), prover.address, proof)
    return registry.commit_proof(digest, sender=prover, **kwargs)


def test_prove__commit_then_reveal_in_a_later_block__pays_the_prover(
    registry, reveal_task, prover, keeper, requester
):
    terms = reveal_task()
    assignment = assign(registry, keeper, terms, prover)

    tx = commit(registry, terms, prover)
    [event] = tx.events.filter(registry.ProofCommitted)
    assert event.prover == prover.address
    prove(registry, terms, assignment, prover, proof=PROOF)

    assert registry.balances(prover) == terms.max_reward
    assert registry.balances(keeper) == terms.frontend_fee
    assert registry.proofs_delivered(registry.task_id(terms.as_tuple())) == 1


def test_prove__commit_reveal_without_a_commit__reverts(registry, reveal_task, prover, keeper):
    terms = reveal_task()
    assignment = assign(registry, keeper, terms, prover)

    with ape.reverts("registry: proof not committed"):
        prove(registry, terms, assignment, prover, proof=PROOF)


def test_commit_proof__same_digest_twice__reverts(registry, reveal_task, prover):
    terms = reveal_task()
    commit(registry, terms, prover)

    with ape.reverts("registry: already committed"):
        commit(registry, terms, prover)


def test_prove__reveal_in_the_commit_block__fails_then_works_a_block_later(
    registry, reveal_task, prover, keeper, chain
):
    terms = reveal_task()
    assignment = assign(registry, keeper, terms, prover)
    nonce = prover.nonce
    chain.provider.auto_mine = False
    try:  # both transactions go into one block
        sent = [
            commit(registry, terms, prover, nonce=nonce, gas=200_000, required_confirmations=0),
            prove(
                registry,
                terms,
                assignment,
                prover,
                proof=PROOF,
                nonce=nonce + 1,
                gas=500_000,
                required_confirmations=0,
            ),
        ]
        chain.mine(1)
    finally:
        chain.provider.auto_mine = True
    committed, revealed = (chain.provider.get_receipt(tx.txn_hash) for tx in sent)

    assert committed.block_number == revealed.block_number
    assert not committed.failed
    assert revealed.failed
    assert revealed.trace.revert_message == "registry: reveal too early"
    assert registry.balances(prover) == 0

    prove(registry, terms, assignment, prover, proof=PROOF)
    assert registry.balances(prover) == terms.max_reward


def test_prove__commit_reveal_redundancy_two__both_committed_before_the_first_reveal__both_paid(
    registry, reveal_task, provers, keeper
):
    terms = reveal_task(redundancy=2)
    first, second = provers[0], provers[1]
    assignments = {p: assign(registry, keeper, terms, p) for p in (first, second)}
    for p in (first, second):
        commit(registry, terms, p)

    for p in (first, second):
        prove(registry, terms, assignments[p], p, proof=PROOF)

    assert registry.balances(first) == registry.balances(second) == terms.max_reward


def test_prove__commit_reveal_commit_after_another_provers_reveal__reverts(
    registry, reveal_task, provers, keeper
):
    terms = reveal_task(redundancy=2)
    first, copier = provers[0], provers[1]
    assignments = {p: assign(registry, keeper, terms, p) for p in (first, copier)}
    commit(registry, terms, first)
    prove(registry, terms, assignments[first], first, proof=PROOF)

    commit(registry, terms, copier)  # the revealed proof, committed afterwards under its own name
    with ape.reverts("registry: committed after a reveal"):
        prove(registry, terms, assignments[copier], copier, proof=PROOF)
    assert registry.balances(copier) == 0
