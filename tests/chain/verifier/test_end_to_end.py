"""End to end on anvil with real proofs: a market opened for a sample circuit, a task with
its inputs, an assignment, the backend's proof submitted, the prover paid. (The command
that opens markets, `ape run operator market create`, is tested in tests/cli.)"""

from __future__ import annotations

import json

import ape
import pytest
from eth_utils import keccak

from provingmarket import OPEN_RACE, Assignment, TaskTerms
from provingmarket.chain.markets import MarketError, MarketTerms, open_market
from provingmarket.formats import ZERO_ADDRESS
from provingmarket.proving.backends import CommandBackend, Groth16pyBackend
from provingmarket.proving.circuits import Circuit, sample_inputs
from tests.factories import ETHER, make_terms

HEAVY = "squarings-1000"


@pytest.fixture(scope="module")
def circuit():
    return Circuit.load(HEAVY)


@pytest.fixture(scope="module")
def heavy_market(registry, owner, circuit, mechanism, provers):
    opened = open_market(ape, registry, circuit, owner, Groth16pyBackend(), MarketTerms())
    for p in provers:
        registry.stake(sender=p, value=2 * ETHER)
        registry.join_market(opened.market_id, 2, ETHER // 100, 60, 0, [mechanism, OPEN_RACE], sender=p)
    return opened


def post(registry, requester, market_id, mechanism, circuit, secret, **overrides):
    inputs = sample_inputs(circuit, secret)
    prover_input = json.dumps(inputs, sort_keys=True).encode()  # what the prover is sent
    terms = make_terms(
        market_id,
        mechanism,
        inputs_commitment=circuit.commitment(inputs),
        prover_input_hash=keccak(prover_input),
        **overrides,
    )
    tx = registry.post_task(terms.as_tuple(), prover_input, "", sender=requester, value=terms.escrow())
    posted = TaskTerms.from_event(tx.events.filter(registry.TaskPosted)[0].terms)
    return posted, json.loads(bytes(tx.events.filter(registry.TaskPosted)[0].prover_input))


def test_market_for_sample_circuit__assigned_task_proven_with_backend__prover_paid(
    registry, heavy_market, circuit, mechanism, requester, keeper, prover
):
    terms, inputs = post(registry, requester, heavy_market.market_id, mechanism, circuit, secret=11)
    tx = registry.assign((terms.as_tuple(), prover.address, terms.max_reward, 0, 0, 0, b""), sender=keeper)
    assignment = Assignment.from_event(tx.events.filter(registry.TaskAssigned)[0])

    result = Groth16pyBackend().prove(circuit, inputs, prover.address)
    assert result.public_inputs[circuit.address_input] == int(prover.address, 16)
    tx = registry.prove(
        terms.as_tuple(), assignment.as_tuple(), result.public_inputs, result.proof, sender=prover
    )

    [proven] = tx.events.filter(registry.TaskProven)
    assert proven.prover == prover.address
    assert list(proven.public_inputs) == result.public_inputs
    assert registry.balances(prover) == terms.max_reward
    assert registry.standing(prover).locked == 0
    before = prover.balance
    tx = registry.withdraw(sender=prover)
    assert prover.balance == before + terms.max_reward - tx.total_fees_paid


def test_open_race__snarkjs_proof__first_valid_prover_paid_copy_refused(
    registry, heavy_market, circuit, requester, provers
):
    """A second, independent tool (snarkjs) proves for the same market; a rival who
    copies the winner's proof, even for the same inputs, is refused."""
    fast, copier = provers[1], provers[2]
    terms, inputs = post(
        registry, requester, heavy_market.market_id, OPEN_RACE, circuit, secret=5, redundancy=2
    )
    result = CommandBackend.snarkjs().prove(circuit, inputs, fast.address)
    empty = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS).as_tuple()  # ignored in a race

    with ape.reverts("registry: invalid proof"):
        registry.prove(terms.as_tuple(), empty, result.public_inputs, result.proof, sender=copier)
    registry.prove(terms.as_tuple(), empty, result.public_inputs, result.proof, sender=fast)

    assert registry.balances(fast) == terms.max_reward
    assert registry.balances(copier) == 0


def test_open_market__existing_verifier_with_another_key__refused(registry, owner, circuit, deploy_verifier):
    square_verifier = deploy_verifier(Circuit.load("square"))
    with pytest.raises(MarketError, match="holds a different verifying key"):
        open_market(ape, registry, circuit, owner, Groth16pyBackend(), MarketTerms(), square_verifier)


def test_open_market__existing_verifier_with_its_key__reused(registry, owner, circuit, deploy_verifier):
    verifier = deploy_verifier(circuit)
    opened = open_market(ape, registry, circuit, owner, Groth16pyBackend(), MarketTerms(), verifier)
    assert not opened.deployed_verifier
    assert registry.market(opened.market_id).verifier == verifier.address


def test_open_market__bad_terms__refused_before_any_transaction(registry, owner, circuit):
    nonce = owner.nonce
    with pytest.raises(MarketError, match="above the cap"):
        open_market(ape, registry, circuit, owner, Groth16pyBackend(), MarketTerms(caller_bps=2_000))
    with pytest.raises(MarketError, match="more than 100%"):
        open_market(
            ape,
            registry,
            circuit,
            owner,
            Groth16pyBackend(),
            MarketTerms(requester_bps=9_500, caller_bps=1_000),
        )
    assert owner.nonce == nonce
