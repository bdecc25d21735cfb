"""Provers: stake, unbonding and withdrawal, market memberships, accepted mechanisms,
revoked signatures, withdrawal of earnings, and a withdrawal that tries to re-enter."""

import json
import subprocess

import ape
import pytest
from eth_utils import keccak

from tests.factories import ETHER, STATEMENT, TESTS, UNBONDING_DELAY, advance, assigned, item, proof_for

STAKE = 5 * ETHER  # what each of `staked_provers` holds


def assign(registry, terms, prover, keeper):
    [(_, assignment)] = assigned(
        registry, registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    )
    return assignment


def prove(registry, terms, assignment, prover):
    return registry.prove(
        terms.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )


def fees(receipt) -> int:
    return receipt.total_fees_paid


# ------------------------------------------------------------------ stake


def test_stake__twice__adds_up_and_emits_staked(registry, stranger):
    registry.stake(sender=stranger, value=ETHER)
    tx = registry.stake(sender=stranger, value=2 * ETHER)

    [event] = tx.events.filter(registry.Staked)
    assert (event.prover, event.amount, event.stake) == (stranger.address, 2 * ETHER, 3 * ETHER)
    standing = registry.standing(stranger)
    assert (standing.stake, standing.locked, standing.free, standing.unbonding) == (
        3 * ETHER,
        0,
        3 * ETHER,
        0,
    )


def test_stake__nothing_sent__reverts(registry, stranger):
    with ape.reverts("registry: zero stake"):
        registry.stake(sender=stranger, value=0)


def test_stake__total_above_2_128__reverts(registry, stranger, chain):
    chain.set_balance(stranger.address, 2**130)
    registry.stake(sender=stranger, value=ETHER)
    with ape.reverts("registry: stake too large"):
        registry.stake(sender=stranger, value=2**128 - ETHER)
    assert registry.standing(stranger).stake == ETHER


# ------------------------------------------------------------------ unstake and withdraw


def test_unstake__free_stake__moves_to_unbonding(registry, staked_provers, prover, chain):
    tx = registry.unstake(2 * ETHER, sender=prover)

    [event] = tx.events.filter(registry.Unstaked)
    ready_at = tx.timestamp + UNBONDING_DELAY
    assert (event.prover, event.amount, event.unbonding, event.ready_at) == (
        prover.address,
        2 * ETHER,
        2 * ETHER,
        ready_at,
    )
    standing = registry.standing(prover)
    assert (standing.stake, standing.free) == (STAKE - 2 * ETHER, STAKE - 2 * ETHER)
    assert (standing.unbonding, standing.unbonding_ready_at) == (2 * ETHER, ready_at)


def test_unstake__zero__reverts(registry, staked_provers, prover):
    with ape.reverts("registry: zero amount"):
        registry.unstake(0, sender=prover)


def test_unstake__stake_locked_by_live_assignment__keeps_it(registry, create_task, prover, keeper):
    terms = create_task()
    assign(registry, terms, prover, keeper)
    free = STAKE - terms.collateral

    with ape.reverts("registry: not enough free stake"):
        registry.unstake(free + 1, sender=prover)
    registry.unstake(free, sender=prover)

    standing = registry.standing(prover)
    assert (standing.stake, standing.locked, standing.free) == (terms.collateral, terms.collateral, 0)
    assert standing.unbonding == free


def test_unstake__unbonding_stake__cannot_be_locked(registry, create_task, prover, keeper):
    terms = create_task()
    registry.unstake(STAKE - terms.collateral + 1, sender=prover)

    with ape.reverts("registry: not enough free stake"):
        registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    assert registry.standing(prover).locked == 0


def test_withdraw_stake__after_delay__sends_eth_once(registry, staked_provers, prover, chain):
    registry.unstake(ETHER, sender=prover)
    with ape.reverts("registry: still unbonding"):
        registry.withdraw_stake(sender=prover)
    advance(chain, UNBONDING_DELAY)
    before = prover.balance

    tx = registry.withdraw_stake(sender=prover)

    assert prover.balance == before + ETHER - fees(tx)
    assert [(e.prover, e.amount) for e in tx.events.filter(registry.StakeWithdrawn)] == [
        (prover.address, ETHER)
    ]
    assert registry.standing(prover).unbonding == 0
    assert registry.standing(prover).stake == STAKE - ETHER
    with ape.reverts("registry: nothing unbonding"):
        registry.withdraw_stake(sender=prover)


def test_withdraw_stake__second_unstake__restarts_the_delay(registry, staked_provers, prover, chain):
    registry.unstake(ETHER, sender=prover)
    advance(chain, UNBONDING_DELAY // 2)
    tx = registry.unstake(ETHER, sender=prover)
    advance(chain, UNBONDING_DELAY // 2)

    with ape.reverts("registry: still unbonding"):
        registry.withdraw_stake(sender=prover)
    standing = registry.standing(prover)
    assert (standing.unbonding, standing.unbonding_ready_at) == (2 * ETHER, tx.timestamp + UNBONDING_DELAY)


def test_withdraw_stake__reentrant_receiver__fails_and_pays_nothing(registry, owner, chain):
    source = (TESTS / "contracts" / "Reentrant.vy").read_text()
    attacker = owner.deploy(ape.compilers.compile_source("vyper", source, contractName="Reentrant"), registry)
    attacker.stake(sender=owner, value=2 * ETHER)
    attacker.unstake_and_withdraw(ETHER, sender=owner)
    advance(chain, UNBONDING_DELAY)
    held = chain.provider.get_balance(registry.address)

    with ape.reverts("registry: transfer failed"):
        attacker.withdraw_stake(sender=owner)

    assert chain.provider.get_balance(registry.address) == held
    assert chain.provider.get_balance(attacker.address) == 0
    standing = registry.standing(attacker)
    assert (standing.stake, standing.unbonding) == (ETHER, ETHER)


# ------------------------------------------------------------------ memberships


def test_join_update_leave__own_membership__emits_events_and_updates_view(
    registry, create_market, mechanism, stranger
):
    market = create_market()

    tx = registry.join_market(market, 3, 1234, 90, 0b101, [mechanism], sender=stranger)
    [joined] = tx.events.filter(registry.ProverJoined)
    assert (joined.prover, joined.market_id, joined.capacity, joined.ask) == (
        stranger.address,
        market,
        3,
        1234,
    )
    assert (joined.proving_time, joined.capabilities) == (90, 0b101)
    [accepted] = tx.events.filter(registry.MechanismAccepted)
    assert (accepted.market_id, accepted.mechanism_id, accepted.accepted) == (market, mechanism, True)
    assert registry.accepts(stranger, market, mechanism)
    view = registry.membership(stranger, market)
    assert (view.joined, view.capacity, view.used, view.ask, view.proving_time, view.capabilities) == (
        True,
        3,
        0,
        1234,
        90,
        0b101,
    )

    tx = registry.update_membership(market, 1, 99, 30, 0b1, sender=stranger)
    [updated] = tx.events.filter(registry.ProverUpdated)
    assert (updated.prover, updated.market_id, updated.capacity, updated.ask) == (
        stranger.address,
        market,
        1,
        99,
    )
    assert (updated.proving_time, updated.capabilities) == (30, 0b1)
    view = registry.membership(stranger, market)
    assert (view.capacity, view.ask, view.proving_time, view.capabilities) == (1, 99, 30, 0b1)

    tx = registry.leave_market(market, sender=stranger)
    assert [(e.prover, e.market_id) for e in tx.events.filter(registry.ProverLeft)] == [
        (stranger.address, market)
    ]
    assert registry.membership(stranger, market).joined is False


def test_join_market__unknown_market__reverts(registry, market, stranger):
    with ape.reverts("registry: unknown market"):
        registry.join_market(market + 1, 1, 0, 60, 0, [], sender=stranger)


def test_join_market__already_joined__reverts(registry, staked_provers, market, prover):
    with ape.reverts("registry: already joined"):
        registry.join_market(market, 1, 0, 60, 0, [], sender=prover)


@pytest.mark.parametrize(
    "capacity, ask, proving_time, capabilities, reason",
    [
        (0, 0, 60, 0, "registry: zero capacity"),
        (2**16, 0, 60, 0, "registry: capacity too large"),
        (1, 2**96, 60, 0, "registry: ask too large"),
        (1, 0, 2**32, 0, "registry: proving time too long"),
        (1, 0, 60, 2**64, "registry: capabilities too wide"),
    ],
)
def test_join_market__field_out_of_range__reverts(
    registry, market, stranger, capacity, ask, proving_time, capabilities, reason
):
    with ape.reverts(reason):
        registry.join_market(market, capacity, ask, proving_time, capabilities, [], sender=stranger)
    assert registry.membership(stranger, market).joined is False


def test_update_membership__field_out_of_range__reverts(registry, staked_provers, market, prover):
    with ape.reverts("registry: ask too large"):
        registry.update_membership(market, 2, 2**96, 60, 0b11, sender=prover)
    assert registry.membership(prover, market).ask == ETHER // 100


def test_membership_calls__not_joined__revert(registry, market, mechanism, stranger):
    with ape.reverts("registry: prover not in market"):
        registry.update_membership(market, 1, 0, 60, 0, sender=stranger)
    with ape.reverts("registry: prover not in market"):
        registry.leave_market(market, sender=stranger)
    with ape.reverts("registry: prover not in market"):
        registry.set_mechanism_accepted(market, mechanism, True, sender=stranger)


def test_leave_market__live_assignment__reverts(registry, create_task, market, prover, keeper):
    terms = create_task()
    assignment = assign(registry, terms, prover, keeper)

    with ape.reverts("registry: live assignments in market"):
        registry.leave_market(market, sender=prover)

    prove(registry, terms, assignment, prover)
    registry.leave_market(market, sender=prover)
    assert registry.membership(prover, market).joined is False


def test_update_membership__capacity_below_use__stops_new_assignments_only(
    registry, create_task, market, prover, keeper
):
    live = create_task()
    assignment = assign(registry, live, prover, keeper)
    waiting = create_task(max_reward=live.max_reward // 2)

    registry.update_membership(market, 0, ETHER // 100, 60, 0b11, sender=prover)

    assert (registry.membership(prover, market).capacity, registry.membership(prover, market).used) == (0, 1)
    with ape.reverts("registry: prover at capacity"):
        registry.assign(item(waiting, prover, waiting.max_reward), sender=keeper)
    prove(registry, live, assignment, prover)
    assert registry.balances(prover) == live.max_reward
    assert registry.membership(prover, market).used == 0


def test_set_mechanism_accepted__refused__stops_its_frontends(
    registry, create_task, market, mechanism, prover, keeper
):
    terms = create_task()
    assert registry.accepts(prover, market, mechanism)

    tx = registry.set_mechanism_accepted(market, mechanism, False, sender=prover)

    [event] = tx.events.filter(registry.MechanismAccepted)
    assert (event.prover, event.market_id, event.mechanism_id, event.accepted) == (
        prover.address,
        market,
        mechanism,
        False,
    )
    assert not registry.accepts(prover, market, mechanism)
    with ape.reverts("registry: mechanism not accepted by prover"):
        registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    registry.set_mechanism_accepted(market, mechanism, True, sender=prover)
    assert registry.accepts(prover, market, mechanism)
    assert len(assigned(registry, registry.assign(item(terms, prover, terms.max_reward), sender=keeper))) == 1


# ------------------------------------------------------------------ signatures and earnings


def test_join_market__after_leaving__forgets_mechanisms_accepted_before(
    registry, create_task, staked_provers, market, mechanism, prover, keeper
):
    assert registry.accepts(prover, market, mechanism)
    registry.leave_market(market, sender=prover)
    assert not registry.accepts(prover, market, mechanism)

    registry.join_market(market, 2, ETHER // 100, 60, 0b11, [], sender=prover)

    # The rejoin accepted no mechanism: the one accepted before the leave no longer holds.
    assert not registry.accepts(prover, market, mechanism)
    terms = create_task()
    with ape.reverts("registry: mechanism not accepted by prover"):
        registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    registry.set_mechanism_accepted(market, mechanism, True, sender=prover)
    assert registry.accepts(prover, market, mechanism)
    assign(registry, terms, prover, keeper)


def test_revoke_signatures__twice__bumps_the_nonce(registry, stranger):
    registry.revoke_signatures(sender=stranger)
    tx = registry.revoke_signatures(sender=stranger)

    assert [(e.prover, e.nonce) for e in tx.events.filter(registry.SignaturesRevoked)] == [
        (stranger.address, 2)
    ]
    assert registry.signature_nonce(stranger) == 2
    assert registry.standing(stranger).nonce == 2


def test_withdraw__credited_earnings__sends_eth_and_empties_balance(registry, create_task, prover, keeper):
    terms = create_task()
    prove(registry, terms, assign(registry, terms, prover, keeper), prover)
    assert registry.standing(prover).balance == terms.max_reward
    before = prover.balance

    tx = registry.withdraw(sender=prover)

    assert prover.balance == before + terms.max_reward - fees(tx)
    assert [(e.account, e.amount) for e in tx.events.filter(registry.Withdrawn)] == [
        (prover.address, terms.max_reward)
    ]
    assert registry.balances(prover) == 0
    with ape.reverts("registry: nothing to withdraw"):
        registry.withdraw(sender=prover)


def test_withdraw__nothing_credited__reverts(registry, stranger):
    with ape.reverts("registry: nothing to withdraw"):
        registry.withdraw(sender=stranger)


def storage_slot(variable: str) -> int:
    """The storage slot the compiler gave one of the harness's variables."""
    layout = json.loads(
        subprocess.check_output(
            ["vyper", "-f", "layout", "-p", "contracts", "contracts/testing/RegistryHarness.vy"],
            cwd=TESTS.parent,
        )
    )["storage_layout"]
    node = layout
    for part in variable.split("."):
        node = node[part]
    return node["slot"]


def test_join_market__join_count_at_its_field_limit__reverts_joined_too_often(
    registry, create_market, stranger, chain
):
    """A membership word counts joins in 24 bits, so acceptances made before a leave lapse.
    Sixteen million joins cannot be sent here: the count is set in storage instead, at a
    slot found as Vyper lays out a nested HashMap (keccak256(slot . key), twice)."""
    market_id = create_market()
    slot = storage_slot("Registry.memberships._memberships").to_bytes(32, "big")
    prover_key = bytes(12) + bytes.fromhex(stranger.address[2:])
    word_slot = keccak(keccak(slot + prover_key) + market_id.to_bytes(32, "big"))
    registry.join_market(market_id, 1, 0, 0, 0, [], sender=stranger)
    assert int(
        chain.provider.make_request("eth_getStorageAt", [registry.address, "0x" + word_slot.hex(), "latest"]),
        16,
    )
    registry.leave_market(market_id, sender=stranger)

    at_limit = (2**24 - 1) << 232
    chain.provider.make_request(
        "anvil_setStorageAt",
        [registry.address, "0x" + word_slot.hex(), "0x" + at_limit.to_bytes(32, "big").hex()],
    )

    with ape.reverts("registry: joined too often"):
        registry.join_market(market_id, 1, 0, 0, 0, [], sender=stranger)
