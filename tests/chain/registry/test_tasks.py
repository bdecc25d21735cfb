"""Posting tasks, cancelling and reclaiming their slots, and the built-in DUTCH and
OPEN_RACE mechanisms' setup: what a requester pays, gets back, and is refused."""

import ape
import ape.exceptions
import pytest
from eth_utils import keccak

from provingmarket import DUTCH, OPEN_RACE, Assignment, TaskTerms, task_id
from provingmarket.formats import (
    MAX_ASSIGN_WINDOW,
    MAX_CAPABILITIES,
    MAX_COLLATERAL,
    MAX_PROVING_WINDOW,
    MAX_REWARD,
    ZERO_ADDRESS,
)
from tests.factories import (
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    advance,
    assigned,
    escrow,
    item,
    make_terms,
    proof_for,
)


def post(registry, requester, terms, prover_input=PROVER_INPUT, input_uri="", value=None):
    """Post `terms`; returns the recorded terms and the transaction."""
    value = escrow(terms) if value is None else value
    tx = registry.post_task(terms.as_tuple(), prover_input, input_uri, sender=requester, value=value)
    return TaskTerms.from_event(tx.events.filter(registry.TaskPosted)[0].terms), tx


def assign(registry, keeper, terms, prover, price) -> Assignment:
    [(who, assignment)] = assigned(registry, registry.assign(item(terms, prover, price), sender=keeper))
    assert who == prover.address
    return assignment


def block_time(chain, tx) -> int:
    return chain.blocks[tx.block_number].timestamp


def slot_value(terms) -> int:
    return terms.max_reward + terms.frontend_fee


# ------------------------------------------------------------------ posting


def test_post_task__valid_terms__records_requester_time_and_escrows_every_slot(
    registry, requester, market, mechanism, staked_provers, chain
):
    terms = make_terms(market, mechanism, redundancy=3)
    held = registry.balance

    recorded, tx = post(registry, requester, terms, input_uri="ipfs://statement")

    assert recorded == terms.posted(requester.address, block_time(chain, tx))
    assert registry.balance - held == 3 * (terms.max_reward + terms.frontend_fee)
    [event] = tx.events.filter(registry.TaskPosted)
    assert event.task_id == task_id(chain.chain_id, registry.address, recorded)
    assert event.task_id == registry.task_id(recorded.as_tuple())
    assert event.requester == requester.address
    assert event.market_id == market
    assert event.prover_input == PROVER_INPUT
    assert event.input_uri == "ipfs://statement"
    status = registry.task_status(event.task_id)
    assert (status.open, status.assigned, status.proven, status.closed) == (3, 0, 0, 0)


def test_post_task__uri_without_prover_input__is_accepted(
    registry, requester, market, mechanism, staked_provers
):
    terms = make_terms(market, mechanism, prover_input_hash=keccak(b"a large input"))

    recorded, tx = post(registry, requester, terms, prover_input=b"", input_uri="https://inputs.example/t/1")

    [event] = tx.events.filter(registry.TaskPosted)
    assert event.prover_input == b""
    assert event.input_uri == "https://inputs.example/t/1"
    assert registry.task_status(event.task_id).open == 1


BAD_TERMS = [
    # (term overrides, prover input, input uri, escrow paid minus escrow due (None: pay 0), reason)
    ({"market_id": 999}, PROVER_INPUT, "", 0, "registry: unknown market"),
    ({"redundancy": 0}, PROVER_INPUT, "", 0, "registry: redundancy out of range"),
    ({"redundancy": 9}, PROVER_INPUT, "", 0, "registry: redundancy out of range"),
    ({"collateral": ETHER // 10 - 1}, PROVER_INPUT, "", 0, "registry: collateral below market minimum"),
    ({"max_reward": ETHER // 100 - 1}, PROVER_INPUT, "", 0, "registry: reward below market minimum"),
    ({"proving_window": 0}, PROVER_INPUT, "", 0, "registry: zero proving window"),
    ({"mechanism_id": OPEN_RACE, "proving_window": 0}, PROVER_INPUT, "", 0, "registry: zero proving window"),
    # The market's grace is 60 s: a window of 60 s leaves no time to prove after it.
    ({"proving_window": 60}, PROVER_INPUT, "", 0, "registry: proving window not above grace"),
    ({"proving_window": MAX_PROVING_WINDOW + 1}, PROVER_INPUT, "", 0, "registry: proving window too long"),
    ({"proving_window": 2**210}, PROVER_INPUT, "", 0, "registry: proving window too long"),
    ({"assign_window": MAX_ASSIGN_WINDOW + 1}, PROVER_INPUT, "", 0, "registry: assignment window too long"),
    ({"assign_window": 2**256 - 1}, PROVER_INPUT, "", 0, "registry: assignment window too long"),
    ({"ramp": MAX_ASSIGN_WINDOW + 1}, PROVER_INPUT, "", 0, "registry: ramp too long"),
    (
        {"decay": True, "decay_floor": ETHER // 10 + 1},
        PROVER_INPUT,
        "",
        0,
        "registry: decay floor above maximum",
    ),
    ({"capabilities": MAX_CAPABILITIES + 1}, PROVER_INPUT, "", 0, "registry: capabilities too wide"),
    ({"collateral": MAX_COLLATERAL + 1}, PROVER_INPUT, "", None, "registry: amount too large"),
    ({"frontend_fee": MAX_REWARD + 1}, PROVER_INPUT, "", None, "registry: amount too large"),
    # anvil refuses to send 2**128 wei or more, so this one pays nothing: the rule comes first.
    ({"max_reward": 2**128}, PROVER_INPUT, "", None, "registry: amount too large"),
    ({"mechanism_id": OPEN_RACE, "frontend_fee": 1}, PROVER_INPUT, "", 0, "registry: fee needs a frontend"),
    ({"mechanism_id": DUTCH, "frontend_fee": 1}, PROVER_INPUT, "", 0, "registry: fee needs a frontend"),
    ({"assign_window": 0}, PROVER_INPUT, "", 0, "registry: zero assignment window"),
    ({"mechanism_id": DUTCH, "assign_window": 0}, PROVER_INPUT, "", 0, "registry: zero assignment window"),
    (
        {"mechanism_id": DUTCH, "start_price": ETHER // 10 + 1},
        PROVER_INPUT,
        "",
        0,
        "registry: start price above maximum",
    ),
    ({"start_price": ETHER // 10 + 1}, PROVER_INPUT, "", 0, "registry: start price above maximum"),
    ({}, b"x=8", "", 0, "registry: prover input hash mismatch"),
    ({}, b"", "", 0, "registry: no prover input"),
    ({}, PROVER_INPUT, "", -1, "registry: wrong escrow"),
    ({}, PROVER_INPUT, "", 1, "registry: wrong escrow"),
]


@pytest.mark.parametrize("overrides, prover_input, input_uri, extra, reason", BAD_TERMS)
def test_post_task__invalid_terms__reverts_with_reason(
    registry, requester, market, mechanism, overrides, prover_input, input_uri, extra, reason
):
    overrides = dict(overrides)
    market_id = overrides.pop("market_id", market)
    terms = make_terms(market_id, overrides.pop("mechanism_id", mechanism), **overrides)
    value = 0 if extra is None else escrow(terms) + extra

    with ape.reverts(reason):
        post(registry, requester, terms, prover_input, input_uri, value=value)


@pytest.mark.parametrize("mechanism_id", [OPEN_RACE, DUTCH])
def test_post_task__built_in_mechanism__may_be_shorter_than_the_grace_period(
    registry, requester, market, mechanism_id
):
    """Nobody assigns a race or a Dutch task: a prover takes it having seen it, and cannot
    decline it, so its window need not outlast the grace period (60 s here)."""
    recorded, _ = post(registry, requester, make_terms(market, mechanism_id, proving_window=30))
    assert recorded.proving_window == 30


def test_post_task__market_without_binding__refuses_redundancy_and_races(
    registry, requester, mechanism, create_market
):
    unbound = create_market(binding=0)

    with ape.reverts("registry: market cannot bind proofs"):
        post(registry, requester, make_terms(unbound, mechanism, redundancy=2))
    with ape.reverts("registry: market cannot bind proofs"):
        post(registry, requester, make_terms(unbound, OPEN_RACE))
    recorded, _ = post(registry, requester, make_terms(unbound, mechanism, redundancy=1))
    assert recorded.market_id == unbound


def test_post_task__same_terms_in_the_same_second__reverts_task_exists(
    registry, requester, market, mechanism, chain
):
    terms = make_terms(market, mechanism)
    _, tx = post(registry, requester, terms)
    # The next block gets the same timestamp, so the same requester's same terms get the same id.
    chain.provider.make_request("evm_setNextBlockTimestamp", [block_time(chain, tx)])

    with ape.reverts("registry: task exists"):
        post(registry, requester, terms)


# ------------------------------------------------------------------ cancel and reclaim


def test_cancel__one_slot_assigned__refunds_open_slots_and_keeps_the_assigned_escrow(
    registry, create_task, requester, prover, keeper
):
    terms = create_task(redundancy=3)
    task = registry.task_id(terms.as_tuple())
    price = terms.max_reward // 2
    assignment = assign(registry, keeper, terms, prover, price)

    tx = registry.cancel(terms.as_tuple(), sender=requester)

    [closed] = tx.events.filter(registry.SlotsClosed)
    assert (closed.slots, closed.refund, closed.cancelled) == (2, 2 * slot_value(terms), True)
    assert registry.balances(requester) == 2 * slot_value(terms)
    status = registry.task_status(task)
    assert (status.open, status.assigned, status.closed) == (0, 1, 2)

    # The assigned slot's escrow stayed: its proof is paid from it.
    registry.prove(
        terms.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )
    assert registry.balances(prover) == price
    assert registry.balances(keeper) == terms.frontend_fee
    assert registry.balances(requester) == 3 * slot_value(terms) - price - terms.frontend_fee


def test_cancel__by_someone_else__reverts(registry, create_task, stranger, prover):
    terms = create_task()

    with ape.reverts("registry: not the requester"):
        registry.cancel(terms.as_tuple(), sender=stranger)
    with ape.reverts("registry: not the requester"):
        registry.cancel(terms.as_tuple(), sender=prover)


def test_cancel__twice__reverts_no_open_slots(registry, create_task, requester):
    terms = create_task(redundancy=2)
    registry.cancel(terms.as_tuple(), sender=requester)

    with ape.reverts("registry: no open slots"):
        registry.cancel(terms.as_tuple(), sender=requester)
    assert registry.balances(requester) == escrow(terms)


def test_cancel__open_race_during_its_window__reverts_then_refunds_after(
    registry, create_task, requester, chain
):
    terms = create_task(mechanism_id=OPEN_RACE, redundancy=2)

    with ape.reverts("registry: race in progress"):
        registry.cancel(terms.as_tuple(), sender=requester)

    advance(chain, terms.proving_window + 1)
    tx = registry.cancel(terms.as_tuple(), sender=requester)
    [closed] = tx.events.filter(registry.SlotsClosed)
    assert (closed.slots, closed.refund, closed.cancelled) == (2, escrow(terms), True)
    assert registry.balances(requester) == escrow(terms)


def test_cancel_and_reclaim__terms_never_posted__revert_unknown_task(
    registry, requester, market, mechanism, chain
):
    terms = make_terms(market, mechanism).posted(requester.address, chain.pending_timestamp - 10_000)

    with ape.reverts("registry: unknown task"):
        registry.cancel(terms.as_tuple(), sender=requester)
    with ape.reverts("registry: unknown task"):
        registry.reclaim(terms.as_tuple(), sender=requester)


def test_reclaim__within_assignment_window__reverts(registry, create_task, stranger, requester):
    terms = create_task()

    with ape.reverts("registry: windows not passed"):
        registry.reclaim(terms.as_tuple(), sender=stranger)
    with ape.reverts("registry: windows not passed"):
        registry.reclaim(terms.as_tuple(), sender=requester)


def test_reclaim__after_assignment_window__refunds_unfilled_slots_to_requester_by_anyone(
    registry, create_task, requester, prover, keeper, stranger, chain
):
    terms = create_task(redundancy=3)
    task = registry.task_id(terms.as_tuple())
    assign(registry, keeper, terms, prover, terms.max_reward)
    advance(chain, terms.assign_window + 1)

    tx = registry.reclaim(terms.as_tuple(), sender=stranger)

    [closed] = tx.events.filter(registry.SlotsClosed)
    assert closed.requester == requester.address
    assert (closed.slots, closed.refund, closed.cancelled) == (2, 2 * slot_value(terms), False)
    assert registry.balances(requester) == 2 * slot_value(terms)
    assert registry.balances(stranger) == 0
    status = registry.task_status(task)
    assert (status.open, status.assigned, status.closed) == (0, 1, 2)


# ------------------------------------------------------------------ DUTCH and OPEN_RACE


def test_dutch_price__over_the_ramp__rises_linearly_from_start_to_max_reward(
    registry_math, registry, create_task, chain
):
    start, top, ramp = ETHER // 100, ETHER // 10, 90
    terms = create_task(mechanism_id=DUTCH, start_price=start, max_reward=top, ramp=ramp)
    t0 = terms.posted_at

    def price(at):
        return registry_math.dutch_price(terms.as_tuple(), at)

    assert price(t0 - 5) == start
    assert price(t0) == start
    assert price(t0 + 30) == 4 * ETHER // 100
    assert price(t0 + 45) == 55 * ETHER // 1000
    assert price(t0 + 7) == start + (top - start) * 7 // ramp
    assert price(t0 + ramp - 1) == start + (top - start) * (ramp - 1) // ramp
    assert price(t0 + ramp) == top
    assert price(t0 + 10 * ramp) == top


def test_lock_then_prove__dutch_task__pays_the_locked_price_and_refunds_the_rest(
    registry_math, registry, create_task, prover, requester, keeper, chain
):
    terms = create_task(mechanism_id=DUTCH, start_price=ETHER // 100, ramp=100)
    advance(chain, 40)

    tx = registry.lock(terms.as_tuple(), sender=prover)

    [(who, assignment)] = assigned(registry, tx)
    locked_at = block_time(chain, tx)
    price = registry_math.dutch_price(terms.as_tuple(), locked_at)
    assert who == prover.address
    assert terms.start_price < price < terms.max_reward
    assert assignment == Assignment(slot=0, price=price, deadline=locked_at + terms.proving_window)
    assert assignment.frontend == ZERO_ADDRESS
    assert registry.standing(prover).locked == terms.collateral

    tx = registry.prove(
        terms.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )

    [proven] = tx.events.filter(registry.TaskProven)
    assert (proven.paid, proven.fee, proven.refund) == (price, 0, terms.max_reward - price)
    assert proven.frontend == ZERO_ADDRESS
    assert registry.balances(prover) == price
    assert registry.balances(requester) == terms.max_reward - price
    assert registry.balances(keeper) == 0
    assert registry.standing(prover).locked == 0


def test_lock__task_of_another_mechanism__reverts(registry, create_task, prover):
    terms = create_task()

    with ape.reverts("registry: not a dutch task"):
        registry.lock(terms.as_tuple(), sender=prover)
    race = create_task(mechanism_id=OPEN_RACE)
    with ape.reverts("registry: not a dutch task"):
        registry.lock(race.as_tuple(), sender=prover)


def test_assign__dutch_or_open_race_task_by_a_frontend__reverts(registry, create_task, prover, keeper):
    dutch = create_task(mechanism_id=DUTCH)
    race = create_task(mechanism_id=OPEN_RACE, assign_window=600)

    for terms in (dutch, race):
        with ape.reverts("registry: task is not for frontends"):
            registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
        assert registry.task_status(registry.task_id(terms.as_tuple())).open == 1
