"""Markets: who may create one and with what configuration, pausing by the creator,
and a verifier whose code changes after creation."""

import ape
import pytest
from eth_utils import keccak

from provingmarket import BINDING_ADDRESS_INPUT, BINDING_COMMIT_REVEAL, DUTCH
from provingmarket.chain.markets import groth16_args
from provingmarket.devnet import SQUARE
from provingmarket.formats import GROTH16_BLUEPRINT, MAX_GRACE_PERIOD, MIN_GRACE_PERIOD
from provingmarket.proving.circuits import VerifyingKey
from tests.factories import (
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    advance,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    proof_for,
    skipped,
)

ACCEPT_ALL_VERIFIER = """
# pragma version 0.4.3
@view
@external
def verify(public_inputs: DynArray[uint256, 16], proof: Bytes[1024]) -> bool:
    return True
"""

# create_market's arguments after (verifier, sample_inputs, sample_proof), by name.
VALID = dict(
    min_collateral=ETHER // 10,
    min_reward=ETHER // 100,
    grace_period=60,
    requester_bps=5_000,
    caller_bps=1_000,
    binding=BINDING_ADDRESS_INPUT,
    address_input=0,
)


def create(registry, verifier, sender, inputs=STATEMENT, proof=None, **overrides):
    args = {**VALID, **overrides}
    return registry.create_market(
        verifier,
        inputs,
        proof_for(inputs) if proof is None else proof,
        args["min_collateral"],
        args["min_reward"],
        args["grace_period"],
        args["requester_bps"],
        args["caller_bps"],
        args["binding"],
        args["address_input"],
        sender=sender,
    )


def created(registry, tx) -> int:
    return tx.events.filter(registry.MarketCreated)[0].market_id


def post(registry, terms, requester):
    tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
    return posted_terms(registry, tx)


def prove(registry, terms, assignment, prover):
    return registry.prove(
        terms.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )


def test_create_market__by_anyone__records_configuration_and_emits_event(registry, verifier, stranger, chain):
    before = registry.market_count()
    config = dict(
        min_collateral=3 * ETHER,
        min_reward=ETHER // 7,
        grace_period=123,
        requester_bps=7_000,
        caller_bps=1_000,
        binding=BINDING_COMMIT_REVEAL,
        address_input=2,
    )

    tx = create(registry, verifier, stranger, **config)

    [event] = tx.events.filter(registry.MarketCreated)
    codehash = keccak(bytes(chain.provider.get_code(verifier.address)))
    assert event.market_id == before + 1 == registry.market_count()
    assert event.creator == stranger.address
    assert event.verifier == verifier.address
    assert bytes(event.codehash) == codehash
    for name, value in config.items():
        assert getattr(event, name) == value
    market = registry.market(event.market_id)
    assert market.verifier == verifier.address
    assert market.creator == stranger.address
    assert bytes(market.codehash) == codehash
    assert market.paused is False
    for name, value in config.items():
        assert getattr(market, name) == value


def test_market__unknown_id__has_empty_verifier_and_creator(registry, market):
    unknown = registry.market(market + 1)
    assert int(unknown.verifier, 16) == 0
    assert int(unknown.creator, 16) == 0


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(caller_bps=1_001), "registry: caller share above cap"),
        (dict(requester_bps=9_001, caller_bps=1_000), "registry: shares above 100%"),
        (dict(binding=3), "registry: unknown binding"),
        (dict(address_input=16), "registry: address input out of range"),
        (dict(address_input=2), "registry: address input out of range"),  # the sample has 2 inputs
        (dict(grace_period=0), "registry: grace period too short"),
        (dict(grace_period=1), "registry: grace period too short"),
        (dict(grace_period=86_401), "registry: grace period too long"),
        (dict(grace_period=2**32), "registry: grace period too long"),
        (dict(min_collateral=2**88), "registry: minimum too large"),
        (dict(min_reward=2**80), "registry: minimum too large"),
        (dict(proof=bytes(256)), "registry: sample proof rejected"),
        (dict(inputs=[0, 64], proof=proof_for(STATEMENT)), "registry: sample proof rejected"),
    ],
)
def test_create_market__invalid_parameter__reverts_with_reason(registry, verifier, owner, overrides, reason):
    with ape.reverts(reason):
        create(registry, verifier, owner, **overrides)


def test_create_market__at_the_grace_bounds__opens(registry, verifier, owner):
    for grace in (MIN_GRACE_PERIOD, MAX_GRACE_PERIOD):
        assert (
            registry.market(
                created(registry, create(registry, verifier, owner, grace_period=grace))
            ).grace_period
            == grace
        )


def test_registry_deploy__blueprint_that_is_not_one__reverts(project, owner, verifier):
    """The registry's blueprints are fixed at deployment: each must be ERC-5202 code,
    which never runs, so it cannot change either."""
    with ape.reverts("registry: not a blueprint"):
        owner.deploy(project.Registry, 3_600, [verifier.address])
    with ape.reverts("registry: blueprint has no code"):
        owner.deploy(project.Registry, 3_600, [owner.address])


def test_deploy_verifier__from_the_groth16_blueprint__is_trusted_and_holds_the_key(registry, stranger):
    tx = registry.deploy_verifier(GROTH16_BLUEPRINT, groth16_args(SQUARE.verifying_key()), sender=stranger)

    [event] = tx.events.filter(registry.VerifierDeployed)
    deployed = ape.project.Groth16Verifier.at(event.verifier)
    assert (event.blueprint_id, event.deployer) == (GROTH16_BLUEPRINT, stranger.address)
    assert registry.verifier_blueprint(deployed) == GROTH16_BLUEPRINT
    assert [list(map(int, p)) for p in deployed.verifying_key()[4]] == [
        list(p) for p in SQUARE.verifying_key().ic
    ]
    market_id = created(registry, create(registry, deployed, stranger))
    assert not registry.market(market_id).custom


def test_deploy_verifier__unknown_blueprint_or_a_bad_key__reverts(registry, owner):
    vk = SQUARE.verifying_key()
    with ape.reverts("registry: unknown blueprint"):
        registry.deploy_verifier(GROTH16_BLUEPRINT + 1, groth16_args(vk), sender=owner)
    forged = VerifyingKey(vk.alpha, vk.beta, vk.gamma, vk.gamma, vk.ic)  # gamma = delta: anyone could forge
    with ape.reverts():
        registry.deploy_verifier(GROTH16_BLUEPRINT, groth16_args(forged), sender=owner)


def test_create_market__verifier_without_code__reverts(registry, owner, stranger):
    with ape.reverts("registry: verifier has no code"):
        create(registry, stranger.address, owner)


def test_set_market_paused__not_the_creator__reverts(registry, verifier, market, stranger, owner):
    # `owner` created the fixture market; the registry has no admin over it.
    with ape.reverts("registry: not the market creator"):
        registry.set_market_paused(market, True, sender=stranger)
    market_id = created(registry, create(registry, verifier, stranger))
    with ape.reverts("registry: not the market creator"):
        registry.set_market_paused(market_id, True, sender=owner)


def test_set_market_paused__paused__stops_new_tasks_and_assignments(
    registry, market, owner, create_task, requester, prover, keeper, mechanism
):
    terms = create_task()
    dutch = create_task(mechanism_id=DUTCH)

    tx = registry.set_market_paused(market, True, sender=owner)

    assert [(e.market_id, e.paused) for e in tx.events.filter(registry.MarketPaused)] == [(market, True)]
    assert registry.market(market).paused is True
    fresh = make_terms(market, mechanism)
    with ape.reverts("registry: market paused"):
        registry.post_task(fresh.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(fresh))
    with ape.reverts("registry: market paused"):
        registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    with ape.reverts("registry: market paused"):
        registry.lock(dutch.as_tuple(), sender=prover)
    tx = registry.assign_batch([item(terms, prover, terms.max_reward)], sender=keeper)
    assert skipped(registry, tx) == ["registry: market paused"]
    assert registry.task_status(registry.task_id(terms.as_tuple())).open == 1


def test_set_market_paused__resumed__accepts_tasks_and_assignments_again(
    registry, market, owner, create_task, prover, keeper
):
    registry.set_market_paused(market, True, sender=owner)

    tx = registry.set_market_paused(market, False, sender=owner)

    assert not tx.events.filter(registry.MarketPaused)[0].paused
    assert registry.market(market).paused is False
    terms = create_task()
    tx = registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    assert len(assigned(registry, tx)) == 1


def test_set_market_paused__paused__still_lets_provers_prove_and_anyone_slash(
    registry, market, owner, create_task, provers, keeper, stranger, requester, chain
):
    fast, slow = provers[0], provers[1]
    first, second = create_task(), create_task(max_reward=ETHER // 20)
    [(_, fast_assignment)] = assigned(
        registry, registry.assign(item(first, fast, first.max_reward), sender=keeper)
    )
    [(_, slow_assignment)] = assigned(
        registry, registry.assign(item(second, slow, second.max_reward), sender=keeper)
    )
    registry.set_market_paused(market, True, sender=owner)

    prove(registry, first, fast_assignment, fast)
    advance(chain, second.proving_window + 1)
    tx = registry.slash(second.as_tuple(), slow, slow_assignment.as_tuple(), sender=stranger)

    assert registry.balances(fast) == first.max_reward
    assert registry.standing(fast).locked == 0
    [slash] = tx.events.filter(registry.Slashed)
    assert slash.collateral == second.collateral
    assert registry.standing(slow).stake == 5 * ETHER - second.collateral
    assert registry.balances(stranger) == second.collateral * 1_000 // 10_000
    assert registry.balances(requester) == min(second.collateral // 2, second.max_reward)


def test_slash__custom_verifier_code_replaced_after_market_creation__voids_without_penalty(
    registry,
    owner,
    deploy_custom_verifier,
    keeper,
    staked_provers,
    prover,
    stranger,
    requester,
    mechanism,
    chain,
):
    own_verifier = deploy_custom_verifier()
    market_id = created(registry, create(registry, own_verifier, owner))
    registry.join_market(market_id, 1, 0, 60, 0, [mechanism], sender=prover)
    terms = post(registry, make_terms(market_id, mechanism), requester)
    [(_, assignment)] = assigned(
        registry, registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    )
    other = owner.deploy(ape.compilers.compile_source("vyper", ACCEPT_ALL_VERIFIER, contractName="AcceptAll"))
    new_code = bytes(chain.provider.get_code(other.address))
    chain.provider.make_request("anvil_setCode", [own_verifier.address, "0x" + new_code.hex()])
    assert keccak(bytes(chain.provider.get_code(own_verifier.address))) != bytes(
        registry.market(market_id).codehash
    )
    advance(chain, terms.proving_window + 1)

    requester_before = registry.balances(requester)
    tx = registry.slash(terms.as_tuple(), prover, assignment.as_tuple(), sender=stranger)

    # No slash is possible: the prover keeps its stake and gets its collateral and
    # capacity back; the requester gets the slot's whole escrow; the caller gets nothing.
    assert not tx.events.filter(registry.Slashed)
    [voided] = tx.events.filter(registry.AssignmentVoided)
    assert voided.prover == prover.address
    assert registry.standing(prover).locked == 0
    assert registry.standing(prover).stake == 5 * ETHER
    assert registry.membership(prover, market_id).used == 0
    assert registry.balances(requester) - requester_before == terms.max_reward + terms.frontend_fee
    assert registry.balances(stranger) == 0
    assert registry.burnt() == 0
    task = registry.task_id(terms.as_tuple())
    assert registry.task_status(task).closed == 1
