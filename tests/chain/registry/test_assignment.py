"""Assigning tasks as a frontend: every rule `_assign` enforces, as a revert of the single
form `assign` and as a named skip of `assign_batch` that leaves the other items applied,
and what an applied assignment takes from the prover (collateral, one unit of capacity)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import count
from typing import Any

import ape
import pytest
from eth_utils import keccak

from provingmarket import DUTCH, TaskTerms, assignment_word, sign_bid
from tests.factories import (
    ETHER,
    PROVER_INPUT,
    advance,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    returned_by,
    skipped,
)

ASK = ETHER // 100  # the staked provers' ask
SECP256K1_N = 115792089237316195423570985008687907852837564279074904382605163141518161494337


@dataclass(frozen=True)
class Case:
    """One item of the mixed batch: `reason` is "" when the item holds."""

    terms: TaskTerms
    prover: Any  # an account
    price: int
    reason: str = ""
    signature: bytes = b""
    min_price: int = 0
    expiry: int = 0
    nonce: int = 0

    @property
    def item(self) -> tuple:
        return item(
            self.terms, self.prover, self.price, self.signature, self.min_price, self.expiry, self.nonce
        )


@dataclass(frozen=True)
class Mixed:
    cases: list[Case]
    holders: dict[str, int]  # prover -> assignments the valid cases give it


_inputs = count()


@pytest.fixture
def post(create_task):
    """create_task, with a prover input of its own: anvil may mine two posts in the same
    second, and equal terms posted at the same timestamp are one task."""

    def create(**overrides) -> TaskTerms:
        uri = f"ipfs://input-{next(_inputs)}"
        return create_task(prover_input=b"", input_uri=uri, prover_input_hash=keccak(text=uri), **overrides)

    return create


def register(registry, name: str, frontends: list, sender) -> int:
    tx = registry.register_mechanism(name, frontends, sender=sender)
    return tx.events.filter(registry.MechanismRegistered)[0].mechanism_id


def only_assignment(registry, tx):
    [(_, assignment)] = assigned(registry, tx)
    return assignment


def high_s(signature: bytes) -> bytes:
    """The other valid signature of the same digest: s -> n - s, v flipped."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


def limited_provers(registry, accounts, provers, market, mechanism) -> tuple:
    """(at capacity, poor, refuser): three more members of the market, each short of
    something; p2 leaves the market and p1 revokes its signatures once."""
    _, p1, p2 = provers
    at_capacity, poor, refuser = accounts[7], accounts[8], accounts[9]
    registry.stake(sender=at_capacity, value=5 * ETHER)
    registry.join_market(market, 1, ASK, 60, 0b11, [mechanism], sender=at_capacity)
    registry.stake(sender=poor, value=ETHER // 10)  # below the 0.5 ETH collateral
    registry.join_market(market, 2, ASK, 60, 0b11, [mechanism], sender=poor)
    registry.stake(sender=refuser, value=5 * ETHER)
    registry.join_market(market, 2, ASK, 60, 0b11, [], sender=refuser)
    # p2 leaves the market. Its acceptance of the mechanism outlives the membership (leave_market
    # keeps it), so an item for p2 passes the acceptance rule and fails on membership.
    registry.leave_market(market, sender=p2)
    # p1 revokes its signatures once: its Bids must carry nonce 1.
    registry.revoke_signatures(sender=p1)
    return at_capacity, poor, refuser


def closed_market_tasks(
    chain, registry, owner, requester, p0, mechanism, create_market, deploy_custom_verifier
):
    """(paused, frozen): a task in a market then paused, one in a market then frozen."""
    # A task in a market its creator then pauses.
    paused_market = create_market()
    terms = make_terms(paused_market, mechanism)
    paused = posted_terms(
        registry,
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms)),
    )
    registry.set_market_paused(paused_market, True, sender=owner)

    # A task in a custom market whose verifier's code then changes: the market freezes.
    changing = deploy_custom_verifier()
    frozen_market = create_market(verifier_address=changing)
    registry.join_market(frozen_market, 2, ASK, 60, 0b11, [mechanism], sender=p0)
    terms = make_terms(frozen_market, mechanism)
    frozen = posted_terms(
        registry,
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms)),
    )
    chain.provider.make_request("anvil_setCode", [changing.address, "0x00"])
    return paused, frozen


def signed_cases(chain, registry, c, p0, p1, now: int) -> list:
    """Items for p1 on task c carrying a Bid, each breaking one rule of signatures but the last."""
    bid_fields = dict(min_price=ASK // 2, expiry=now + 3_600, nonce=1)

    def bid(signer, **fields) -> bytes:
        values = {**bid_fields, **fields}
        task = registry.task_id(c.as_tuple())
        return sign_bid(
            signer.private_key,
            chain.chain_id,
            registry.address,
            task,
            values["min_price"],
            values["expiry"],
            values["nonce"],
        )

    def signed(reason: str, signature: bytes, price: int = ASK // 2, **fields) -> Case:
        """An item for p1 on task c carrying a Bid (c's price is then free of p1's ask)."""
        return Case(c, p1, price, reason, signature, **{**bid_fields, **fields})

    good = bid(p1)
    return [
        signed("registry: signature expired", bid(p1, expiry=now - 1), expiry=now - 1),
        signed("registry: signature revoked", bid(p1, nonce=0), nonce=0),
        signed("registry: price below signed minimum", good, price=ASK // 2 - 1),
        signed("registry: invalid signature v", good[:64] + bytes([29])),
        signed("registry: malleable signature", high_s(good)),
        signed("registry: signer is not the prover", bid(p0)),
        signed("registry: invalid signature", good[:64]),
        signed("registry: invalid signature", bytes(32) + good[32:]),  # r = 0: ecrecover finds nobody
        # A valid Bid lets the frontend go below the prover's ask, down to the signed minimum.
        signed("", good),
    ]


@pytest.fixture
def mixed(
    chain,
    accounts,
    registry,
    owner,
    requester,
    keeper,
    stranger,
    provers,
    market,
    mechanism,
    create_market,
    deploy_custom_verifier,
    post,
) -> Mixed:
    """A world where each assignment rule has an item that breaks it, and the items of
    `cases`, applied in order, hold or fail with the listed reason."""
    p0, p1, p2 = provers
    at_capacity, poor, refuser = limited_provers(registry, accounts, provers, market, mechanism)
    paused, frozen = closed_market_tasks(
        chain, registry, owner, requester, p0, mechanism, create_market, deploy_custom_verifier
    )

    # A mechanism keeper is no frontend of.
    foreign = register(registry, "auction", [stranger], owner)
    dutch = post(mechanism_id=DUTCH)
    foreign_task = post(mechanism_id=foreign)

    # Tasks whose state needs time: an assignment window that runs out, a decline, a slash.
    expired = post(assign_window=10)
    declined = post()
    slashed = post(proving_window=61)
    assignment = only_assignment(registry, registry.assign(item(declined, p0, ASK), sender=keeper))
    registry.decline(declined.as_tuple(), assignment.as_tuple(), sender=p0)
    assignment = only_assignment(registry, registry.assign(item(slashed, p1, ASK), sender=keeper))
    advance(chain, 62)
    registry.slash(slashed.as_tuple(), p1, assignment.as_tuple(), sender=stranger)

    a, b, c = post(), post(), post()
    pair = post(redundancy=2)
    special = post(capabilities=0b100)
    # A proving window below p1's 60 s must still exceed the market's grace: a market
    # with a 10 s grace, which p1 joins.
    quick_market = create_market(grace_period=10)
    registry.join_market(quick_market, 2, ASK, 60, 0b11, [mechanism], sender=p1)
    fast_terms = make_terms(quick_market, mechanism, proving_window=30, salt=99)
    fast = posted_terms(
        registry,
        registry.post_task(
            fast_terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(fast_terms)
        ),
    )
    unknown = replace(a, max_reward=a.max_reward + 1)  # never posted

    now = chain.blocks.head.timestamp
    cases = [
        Case(a, p0, 5 * ASK),
        Case(paused, p0, ASK, "registry: market paused"),
        Case(frozen, p0, ASK, "registry: verifier changed"),
        Case(unknown, p0, ASK, "registry: unknown task"),
        Case(expired, p0, ASK, "registry: task expired"),
        Case(dutch, p0, ASK, "registry: task is not for frontends"),
        Case(foreign_task, p0, ASK, "registry: not a frontend of the mechanism"),
        Case(b, refuser, ASK, "registry: mechanism not accepted by prover"),
        Case(b, p2, ASK, "registry: prover not in market"),
        Case(pair, p1, ASK),
        Case(pair, p1, ASK, "registry: prover already on task"),
        Case(declined, p0, ASK, "registry: prover declined task"),
        Case(slashed, p1, ASK, "registry: prover was slashed on task"),
        Case(a, p1, ASK, "registry: no free slot"),
        Case(b, at_capacity, 2 * ASK),
        Case(c, at_capacity, ASK, "registry: prover at capacity"),
        Case(c, poor, ASK, "registry: not enough free stake"),
        Case(special, p1, ASK, "registry: prover lacks capabilities"),
        Case(fast, p1, ASK, "registry: proving time exceeds window"),
        Case(c, p1, c.max_reward + 1, "registry: price above maximum"),
        Case(c, p1, ASK - 1, "registry: price below ask"),
        *signed_cases(chain, registry, c, p0, p1, now),
    ]
    return Mixed(cases=cases, holders={p0.address: 1, p1.address: 2, at_capacity.address: 1})


def assert_valid_cases_applied(registry, keeper, mixed: Mixed, applied: list, timestamps: list[int]):
    """The valid cases, in order, got slot 0 of their task at their price, with the
    frontend named and the deadline one proving window after the assignment's block;
    each holder has one collateral locked and one unit of capacity used per assignment."""
    valid = [case for case in mixed.cases if not case.reason]
    assert [who for who, _ in applied] == [case.prover.address for case in valid]
    for case, (who, assignment), timestamp in zip(valid, applied, timestamps, strict=True):
        task = registry.task_id(case.terms.as_tuple())
        assert assignment.price == case.price
        assert assignment.deadline == timestamp + case.terms.proving_window
        assert assignment.frontend == keeper.address
        assert assignment.slot == 0
        assert registry.slot_word(task, assignment.slot) == assignment_word(task, who, assignment)
    collateral = valid[0].terms.collateral
    for holder, held in mixed.holders.items():
        assert registry.standing(holder).locked == held * collateral
        assert registry.membership(holder, valid[0].terms.market_id).used == held
    # No frontend fee is credited before a proof.
    assert registry.balances(keeper) == 0


def test_assign_batch__one_item_breaking_each_rule__skips_each_with_its_reason_and_applies_the_rest(
    chain, registry, keeper, mixed
):
    items = [case.item for case in mixed.cases]
    expected = [case.reason for case in mixed.cases if case.reason]

    applied_count = registry.assign_batch.call(items, sender=keeper)
    tx = registry.assign_batch(items, sender=keeper)

    assert applied_count == 4
    assert skipped(registry, tx) == expected
    # Every reason the registry can give for an assignment of a posted task is in the
    # batch (an unknown market cannot hold a posted task, and only a prover's own lock of a
    # chain meets "not a dutch task": test_chains.py).
    possible = set().union(
        returned_by("assignments", "_assign"), returned_by("bids", "check"), returned_by("markets", "refusal")
    )
    assert set(expected) == possible - {"registry: unknown market", "registry: not a dutch task"}
    failing = [case for case in mixed.cases if case.reason]
    for case, event in zip(failing, tx.events.filter(registry.AssignmentSkipped), strict=True):
        assert event.task_id == registry.task_id(case.terms.as_tuple())
        assert event.prover == case.prover.address
        assert event.frontend == keeper.address
    applied = assigned(registry, tx)
    assert len(applied) == applied_count
    timestamp = chain.blocks[tx.block_number].timestamp
    assert_valid_cases_applied(registry, keeper, mixed, applied, [timestamp] * len(applied))


# Reasons also checked through the single form (each revert costs ape a source traceback).
SINGLE_FORM = {
    "registry: market paused",
    "registry: task is not for frontends",
    "registry: prover already on task",
    "registry: no free slot",
    "registry: prover at capacity",
    "registry: price below ask",
}


def test_assign__mixed_batch_items_one_by_one__the_breaking_ones_revert_with_the_batch_skip_reason(
    chain, registry, keeper, mixed
):
    applied, timestamps, reverted = [], [], set()
    for case in mixed.cases:
        if not case.reason:
            tx = registry.assign(case.item, sender=keeper)
            applied += assigned(registry, tx)
            timestamps.append(chain.blocks[tx.block_number].timestamp)
        elif case.reason in SINGLE_FORM:
            with ape.reverts(case.reason):
                registry.assign(case.item, sender=keeper)
            reverted.add(case.reason)
    assert reverted == SINGLE_FORM
    assert_valid_cases_applied(registry, keeper, mixed, applied, timestamps)


def test_assign__task_of_a_mechanism_retired_after_posting__still_holds_while_new_posts_revert(
    registry, post, prover, keeper, owner, market
):
    retiring = register(registry, "election", [keeper], owner)
    registry.set_mechanism_accepted(market, retiring, True, sender=prover)
    terms = post(mechanism_id=retiring)

    registry.retire_mechanism(retiring, sender=owner)

    tx = registry.assign(item(terms, prover, ASK), sender=keeper)
    [(who, assignment)] = assigned(registry, tx)
    assert (who, assignment.frontend) == (prover.address, keeper.address)
    with ape.reverts("registry: mechanism retired"):
        post(mechanism_id=retiring)


def test_assign__valid_item__locks_the_collateral_and_one_unit_of_capacity_and_reports_price_and_deadline(
    chain, registry, post, prover, keeper, requester
):
    terms = post()
    task = registry.task_id(terms.as_tuple())
    before = registry.standing(prover)
    price = 3 * ASK

    tx = registry.assign(item(terms, prover, price), sender=keeper)

    [event] = tx.events.filter(registry.TaskAssigned)
    assert event.task_id == task
    assert (event.prover, event.frontend) == (prover.address, keeper.address)
    assert (event.slot, event.price) == (0, price)
    assert event.deadline == chain.blocks[tx.block_number].timestamp + terms.proving_window
    after = registry.standing(prover)
    assert after.stake == before.stake
    assert after.locked == before.locked + terms.collateral
    assert after.free == before.free - terms.collateral
    membership = registry.membership(prover, terms.market_id)
    assert (membership.capacity, membership.used) == (2, 1)
    [(_, assignment)] = assigned(registry, tx)
    assert registry.slot_word(task, 0) == assignment_word(task, prover.address, assignment)
    assert registry.task_status(task).assigned == 1
    assert registry.task_status(task).open == 0
    # Nobody is paid at assignment: the fee waits for the proof, the escrow stays put.
    assert registry.balances(keeper) == 0
    assert registry.balances(requester) == 0


def test_assign_batch__two_frontends_race_for_one_slot__the_later_skips_it_and_applies_its_other_items(
    registry, post, provers, keeper, stranger, owner, mechanism
):
    registry.set_frontend(mechanism, stranger, True, sender=owner)
    p0, p1, p2 = provers
    contested, first_other, second_other = post(), post(), post()
    contested_id = registry.task_id(contested.as_tuple())

    first = registry.assign_batch([item(contested, p0, ASK), item(first_other, p1, ASK)], sender=keeper)
    second = registry.assign_batch(
        [item(contested, p2, 2 * ASK), item(second_other, p2, 2 * ASK)], sender=stranger
    )

    assert skipped(registry, first) == []
    assert [who for who, _ in assigned(registry, first)] == [p0.address, p1.address]
    assert skipped(registry, second) == ["registry: no free slot"]
    [(who, assignment)] = assigned(registry, second)
    assert (who, assignment.frontend) == (p2.address, stranger.address)
    assert registry.slot_word(registry.task_id(second_other.as_tuple()), 0) == assignment_word(
        registry.task_id(second_other.as_tuple()), p2.address, assignment
    )
    # The first frontend's assignment of the contested slot is untouched.
    [(_, kept), _] = assigned(registry, first)
    assert registry.slot_word(contested_id, 0) == assignment_word(contested_id, p0.address, kept)
    assert registry.membership(p2, contested.market_id).used == 1
    with ape.reverts("registry: no free slot"):
        registry.assign(item(contested, p2, 2 * ASK), sender=stranger)


def test_assign_batch__ten_items_over_distinct_tasks__applies_all_ten(
    registry, post, provers, keeper, market
):
    for p in provers:
        registry.update_membership(market, 4, ASK, 60, 0b11, sender=p)
    tasks = [post() for _ in range(10)]
    holders = [provers[i % 3] for i in range(10)]
    items = [item(terms, p, ASK + i) for i, (terms, p) in enumerate(zip(tasks, holders, strict=True))]

    assert registry.assign_batch.call(items, sender=keeper) == 10
    tx = registry.assign_batch(items, sender=keeper)

    assert skipped(registry, tx) == []
    applied = assigned(registry, tx)
    assert [who for who, _ in applied] == [p.address for p in holders]
    assert [a.price for _, a in applied] == [ASK + i for i in range(10)]
    for terms, (who, assignment) in zip(tasks, applied, strict=True):
        task = registry.task_id(terms.as_tuple())
        assert registry.slot_word(task, 0) == assignment_word(task, who, assignment)
    for p, held in zip(provers, (4, 3, 3), strict=True):
        assert registry.membership(p, market).used == held
        assert registry.standing(p).locked == held * tasks[0].collateral
