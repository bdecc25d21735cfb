"""Proving: who is paid what for a proof, decaying rewards, redundancy, batches, open
races, and the commit-reveal binding, whose races are run by commits that take a slot."""

import ape
import ape.exceptions
import pytest

from provingmarket import BINDING_COMMIT_REVEAL, OPEN_RACE, Assignment, TaskTerms, proof_commit_digest
from provingmarket.chain.markets import groth16_args, groth16_initcode
from provingmarket.formats import REVEAL_WINDOW, ZERO_ADDRESS
from provingmarket.proving.circuits import Circuit
from tests.factories import (
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    advance,
    assign,
    assigned,
    escrow,
    item,
    make_terms,
    proof_for,
    prove,
)

RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)  # ignored by an OPEN_RACE proof


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
    assert registry.task_status(task).proven == 1
    assert counts(registry, terms) == (0, 0, 1, 0)
    standing = registry.standing(prover)
    assert (standing.stake, standing.locked) == (5 * ETHER, 0)


def test_reward_at__decaying_task__falls_linearly_to_the_floor(registry_math, registry, create_task):
    price, floor, window = ETHER // 10 - 1, ETHER // 100 + 1, 300
    terms = create_task(decay=True, decay_floor=floor, proving_window=window)
    deadline = terms.posted_at + 1_000

    def reward(at, p=price):
        return registry_math.reward_at(terms.as_tuple(), p, deadline, at)

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
    assert registry_math.reward_at(flat.as_tuple(), price, deadline, deadline + 100) == price


def test_prove__halfway_through_a_decaying_task__pays_the_decayed_reward_and_refunds_the_rest(
    registry_math, registry, create_task, prover, keeper, requester, chain
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
    assert paid == registry_math.reward_at(
        terms.as_tuple(), price, assignment.deadline, block_time(chain, tx)
    )
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
        assert registry.task_status(task).proven == done
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
        assert registry.task_status(registry.task_id(t.as_tuple())).proven == 1
    assert registry.membership(prover, first.market_id).used == 0


def test_prove_batch__one_invalid_proof__is_skipped_with_its_reason_and_the_rest_apply(
    registry, create_task, prover, keeper
):
    first, second = create_task(), create_task(max_reward=ETHER // 5)
    good, bad = proof_for(STATEMENT, prover.address), proof_for(STATEMENT)
    items = [
        (t.as_tuple(), assign(registry, keeper, t, prover).as_tuple(), STATEMENT, proof)
        for t, proof in ((first, good), (second, bad))
    ]

    assert registry.prove_batch.call(items, sender=prover) == 1
    tx = registry.prove_batch(items, sender=prover)

    [skipped] = tx.events.filter(registry.ProofSkipped)
    assert bytes(skipped.task_id) == bytes(registry.task_id(second.as_tuple()))
    assert (skipped.prover, skipped.reason) == (prover.address, "registry: invalid proof")
    assert registry.balances(prover) == first.max_reward
    assert registry.task_status(registry.task_id(first.as_tuple())).proven == 1
    assert registry.task_status(registry.task_id(second.as_tuple())).proven == 0
    assert registry.standing(prover).locked == second.collateral  # still held: it may prove again


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


def test_prove__bad_statement_or_proof__reverts_with_reason(registry, create_task, provers, keeper, chain):
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
    # The market's verifier's code replaced by a verifier for another circuit: it rejects
    # this proof. That code is what the registry's blueprint would deploy for the other key,
    # made by an eth_call of its deployment code (nothing deployed); the verifier is the one
    # the market names on chain.
    market_verifier = registry.market(terms.market_id).verifier
    web3 = chain.provider.web3
    initcode = groth16_initcode(web3, registry) + groth16_args(Circuit.load("squarings-1000").verifying_key())
    other_code = bytes(web3.eth.call({"data": "0x" + initcode.hex(), "gas": 30_000_000}))
    assert other_code and other_code != bytes(chain.provider.get_code(market_verifier))
    chain.provider.make_request("anvil_setCode", [market_verifier, "0x" + other_code.hex()])
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

    # Short by more than what the proof costs after the verifier's call: the call gets
    # 63/64 of what is left, so a shortfall smaller than that work leaves the verifier
    # enough and runs out of gas after it instead.
    with ape.reverts("registry: verifier reverted (out of gas?)"):
        registry.prove(*args, sender=prover, gas=needed - 60_000)
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

    assert registry.task_status(task).proven == 2
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
    """Post a task in the commit-reveal market (an open race by default)."""
    salts = iter(range(1, 1_000))

    def post(mechanism_id=OPEN_RACE, **overrides) -> TaskTerms:
        terms = make_terms(reveal_market, mechanism_id, salt=next(salts), **overrides)
        tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
        return TaskTerms.from_event(tx.events.filter(registry.TaskPosted)[0].terms)

    return post


PROOF = proof_for(STATEMENT)  # the same bytes for every prover: nothing in it names one


def commit(registry, terms, prover, proof=PROOF, **kwargs):
    digest = proof_commit_digest(registry.task_id(terms.as_tuple()), prover.address, proof)
    return registry.commit_proof(terms.as_tuple(), digest, sender=prover, **kwargs)


def test_commit_proof__race_in_a_commit_reveal_market__takes_a_slot_and_the_reveal_is_paid(
    registry, reveal_task, prover, requester, chain
):
    terms = reveal_task()
    task = registry.task_id(terms.as_tuple())

    tx = commit(registry, terms, prover)
    [committed] = tx.events.filter(registry.ProofCommitted)
    [claim] = assigned(registry, tx)
    assert (committed.prover, bytes(committed.digest)) == (
        prover.address,
        proof_commit_digest(task, prover.address, PROOF),
    )
    who, assignment = claim
    assert (who, assignment.frontend, assignment.price) == (prover.address, ZERO_ADDRESS, terms.max_reward)
    assert assignment.deadline == block_time(chain, tx) + REVEAL_WINDOW
    assert registry.standing(prover).locked == terms.collateral
    assert counts(registry, terms) == (0, 1, 0, 0)

    prove(registry, terms, assignment, prover, proof=PROOF)

    assert registry.balances(prover) == terms.max_reward
    assert registry.standing(prover).locked == 0
    assert registry.balances(requester) == 0
    assert counts(registry, terms) == (0, 0, 1, 0)


def test_commit_proof__decaying_race__fixes_the_reward_of_the_commit_time(
    registry_math, registry, reveal_task, prover, chain
):
    terms = reveal_task(decay=True, decay_floor=ETHER // 50)
    advance(chain, 30)  # a third of the way into the race's 300 s
    tx = commit(registry, terms, prover)
    [(_, assignment)] = assigned(registry, tx)
    expected = registry_math.reward_at(
        terms.as_tuple(), terms.max_reward, terms.posted_at + terms.proving_window, block_time(chain, tx)
    )
    advance(chain, 60)  # a later reveal is paid what the commit was worth

    prove(registry, terms, assignment, prover, proof=PROOF)

    assert assignment.price == expected < terms.max_reward
    assert registry.balances(prover) == expected


def test_prove__commit_reveal_race_without_a_commit_or_with_another_proof__reverts(
    registry, reveal_task, prover
):
    terms = reveal_task()
    with ape.reverts("registry: proof not committed"):
        prove(registry, terms, RACE, prover, proof=PROOF)

    [(_, assignment)] = assigned(registry, commit(registry, terms, prover))
    other = proof_for(STATEMENT, prover.address)  # valid too, but not the one committed
    with ape.reverts("registry: proof not committed"):
        prove(registry, terms, assignment, prover, proof=other)
    prove(registry, terms, assignment, prover, proof=PROOF)
    assert registry.balances(prover) == terms.max_reward


def test_commit_proof__not_a_race_or_not_a_commit_reveal_market__reverts(
    registry, reveal_task, create_task, prover, mechanism
):
    with ape.reverts("registry: not a race"):
        commit(registry, reveal_task(mechanism_id=mechanism), prover)
    with ape.reverts("registry: market does not commit-reveal"):
        commit(registry, create_task(mechanism_id=OPEN_RACE), prover)


def test_commit_proof__claim_not_revealed_in_time__is_slashed_and_the_race_slot_reopens(
    registry, reveal_task, provers, stranger, chain
):
    terms = reveal_task(proving_window=2 * REVEAL_WINDOW)
    lazy, fast = provers[0], provers[1]
    [(_, claim)] = assigned(registry, commit(registry, terms, lazy))
    advance(chain, REVEAL_WINDOW + 1)

    tx = registry.slash(terms.as_tuple(), lazy, claim.as_tuple(), sender=stranger)

    assert tx.events.filter(registry.Slashed)[0].reopened
    [(_, second)] = assigned(registry, commit(registry, terms, fast))
    prove(registry, terms, second, fast, proof=PROOF)
    assert registry.balances(fast) == terms.max_reward
    assert registry.standing(lazy).stake == 5 * ETHER - terms.collateral


def test_prove__commit_reveal_market_assigned_task__needs_no_commit(
    registry, reveal_task, prover, keeper, mechanism
):
    terms = reveal_task(mechanism_id=mechanism)
    assignment = assign(registry, keeper, terms, prover)

    prove(registry, terms, assignment, prover, proof=PROOF)

    assert registry.balances(prover) == terms.max_reward
    assert registry.balances(keeper) == terms.frontend_fee


def test_post_task__commit_reveal_market_redundancy_two__reverts_cannot_bind(
    registry, reveal_market, mechanism, requester
):
    """Redundancy means independent provers: in a market where a proof names nobody, a
    second prover can copy the first's (Groth16 proofs can even be re-randomized)."""
    terms = make_terms(reveal_market, mechanism, redundancy=2)
    with ape.reverts("registry: market cannot bind proofs"):
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
