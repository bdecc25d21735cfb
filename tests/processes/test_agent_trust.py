"""The prover agent (`python -m provingmarket.agent`) against tasks it must not take: a
task whose posted inputs nobody can prove (nothing on chain ties them to the task's
commitment), and work in a custom market (a verifier the registry did not deploy) whose
code hash the operator did not name with --trust-verifier, or whose verifier's code
changed (frozen). Real processes on this session's anvil, tasks assigned by the
mechanism's frontend (the test, as `keeper`), real Groth16 proofs. Each test checks what
the prover would look up on the chain: TaskDeclined in the grace period, its stake
intact and nothing locked, AssignmentVoided, TaskProven."""

from __future__ import annotations

import json
import time

import ape
import pytest
from eth_utils import keccak

from provingmarket import deployments
from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.chain.markets import MarketTerms, open_market
from provingmarket.deployments import MarketRecord
from provingmarket.devnet import SQUARE, default_backend
from provingmarket.formats import OPEN_RACE, inputs_commitment
from tests.factories import (
    ETHER,
    SLOW_BACKEND,
    address,
    assign_in,
    backend_file,
    escrow,
    for_task,
    make_terms,
    posted_terms,
    proofs,
    spawn_agent,
    task_id,
)

STAKE = 5 * ETHER
GRACE = 5  # seconds: the processes' stacks' grace period
# snarkjs after 3 s: the agent's workers stay busy while the test assigns more work.
BUSY_BACKEND = {
    **SLOW_BACKEND,
    "command": ["bash", "-c", 'sleep 3 && exec bash "$0" "$@"', *SLOW_BACKEND["command"][3:]],
}


@pytest.fixture
def joined(funded, chain):
    """joined(stack, market_id, capacity=2) -> a fresh prover's key, staked and in the
    market (ask 0.01 ETH, 1 s proving time), accepting the stack's mechanism."""

    def join(stack, market_id: int, capacity: int = 2) -> str:
        key = funded()
        client = RegistryClient(chain.provider.web3, stack.registry.address, KeySigner(key))
        client.transact("stake", value=STAKE)
        client.transact("join_market", market_id, capacity, ETHER // 100, 1, 0, [stack.mechanism_id])
        return key

    return join


@pytest.fixture
def start_agent(spawn, tmp_path):
    """start_agent(stack, key, *options) -> the agent's Process, once it logged agent.start."""

    def start(stack, key: str, *options: str):
        return spawn_agent(spawn, stack, key, tmp_path / f"agent-{time.monotonic_ns()}", *options)

    return start


@pytest.fixture
def custom_market(owner, deploy_custom_verifier):
    """custom_market(stack) -> (market id, verifier): a square market on the stack's
    registry whose Groth16 verifier was deployed directly, not by the registry (custom),
    recorded in the stack's deployment record."""

    def make(stack):
        verifier = deploy_custom_verifier()
        opened = open_market(
            ape, stack.registry, SQUARE, owner, default_backend(), MarketTerms(grace_period=GRACE), verifier
        )
        assert opened.custom
        stack.client.deployment.markets[opened.market_id] = MarketRecord("square", verifier.address)
        deployments.save(stack.client.deployment, stack.record.parent)
        return opened.market_id, verifier

    return make


def post_inputs(stack, requester, inputs: dict, committed: dict, market_id: int | None = None, **terms):
    """Post a task whose prover input is `inputs` and whose commitment is `committed`'s."""
    prover_input = json.dumps(inputs).encode()
    terms = make_terms(
        market_id or stack.market_id,
        terms.pop("mechanism_id", stack.mechanism_id),
        # The square circuit's statement is [prover, y]; built by hand, since a requester's
        # tools refuse to commit to inputs no witness satisfies.
        inputs_commitment=inputs_commitment([0, committed["y"]], SQUARE.address_input),
        prover_input_hash=keccak(prover_input),
        salt=time.monotonic_ns(),
        **terms,
    )
    tx = stack.registry.post_task(
        terms.as_tuple(), prover_input, "", sender=requester, value=escrow(terms), gas_limit=1_000_000
    )
    return posted_terms(stack.registry, tx)


def declined_in_grace(stack, terms, prover: str, assignment) -> None:
    """The registry's TaskDeclined by `prover`, mined within the grace period."""
    found = []
    deadline = time.monotonic() + 20
    while not found and time.monotonic() < deadline:
        found = stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms))
        time.sleep(0.1)
    assert [e.prover for e in found] == [prover]
    mined_at = stack.client.web3.eth.get_block(found[0].block)["timestamp"]
    assert mined_at <= assignment.deadline - terms.proving_window + GRACE


def stake_intact(stack, prover: str) -> None:
    standing = stack.client.standing(prover)
    assert (standing.stake, standing.locked) == (STAKE, 0)


# ------------------------------------------------------------------ unprovable inputs


def test_agent__assigned_unprovable_inputs__declined_at_once_in_the_grace_period_never_proven(
    make_stack, keeper, requester, joined, start_agent, post, tmp_path
):
    stack = make_stack([keeper.address], grace_period=GRACE)
    key = joined(stack, stack.market_id, capacity=2)
    me = address(key)
    agent = start_agent(stack, key, "--backend", backend_file(tmp_path, BUSY_BACKEND))
    races = [post(stack, mechanism_id=OPEN_RACE) for _ in range(2)]
    agent.wait_for("agent.proving", count=2)
    # Both its units of capacity are busy with races: the inputs of an assignment are
    # checked the moment it is seen, not once a worker is free.
    # Posts x = 8, y = 64 but commits to y = 49: a proof of the posted inputs is refused.
    other = post_inputs(stack, requester, {"x": 8, "y": 64}, committed={"x": 7, "y": 49})
    # Posts and commits to y = 50, but x = 7 gives 49: nobody can make that proof.
    wrong = post_inputs(stack, requester, {"x": 7, "y": 50}, committed={"x": 7, "y": 50})
    assignments = {id(terms): assign_in(stack, keeper, terms, me) for terms in (other, wrong)}

    reasons = {
        id(terms): agent.wait_for("agent.declined", where=for_task(stack, terms))[0]["reason"]
        for terms in (other, wrong)
    }
    assert not agent.events("agent.proved")  # declined while the races were still being proven
    assert reasons[id(other)] == (
        "the task's inputs do not match its inputs_commitment: the posted inputs give public signals "
        "(y = 64) committing to "
        f"0x{SQUARE.commitment({'x': 8, 'y': 64}).hex()}, the task's terms to "
        f"0x{SQUARE.commitment(SQUARE.sample).hex()}; nobody can prove it"
    )
    assert reasons[id(wrong)] == (
        "the task's posted inputs do not satisfy circuit square: a constraint is not satisfied "
        "(assert failed) (Error in template Square_0 line: 14); nobody can prove it"
    )
    for terms in (other, wrong):
        declined_in_grace(stack, terms, me, assignments[id(terms)])
        assert not proofs(stack, terms)
        assert not stack.client.events(["Slashed"], task_id=task_id(stack, terms))
    for terms in races:
        agent.wait_for("agent.paid", where=for_task(stack, terms))
    stake_intact(stack, me)
    proving = {line["task"] for line in agent.events("agent.proving")}
    assert proving == {"0x" + task_id(stack, terms).hex() for terms in races}


# ------------------------------------------------------------------ custom markets


def test_agent__custom_market__declined_unless_its_code_hash_is_trusted_then_proven(
    make_stack, keeper, requester, joined, start_agent, custom_market
):
    stack = make_stack([keeper.address], grace_period=GRACE)
    market_id, verifier = custom_market(stack)
    codehash = "0x" + bytes(stack.client.market(market_id).codehash).hex()
    assert codehash == "0x" + keccak(bytes(ape.chain.provider.get_code(verifier.address))).hex()
    key = joined(stack, market_id)
    me = address(key)
    sample = SQUARE.sample

    untrusting = start_agent(stack, key)
    race = post_inputs(stack, requester, sample, sample, market_id, mechanism_id=OPEN_RACE)
    first = post_inputs(stack, requester, sample, sample, market_id)
    held = assign_in(stack, keeper, first, me)
    declined = untrusting.wait_for("agent.declined", where=for_task(stack, first))[0]
    [said] = untrusting.events("agent.untrusted_market")
    assert (said["market"], said["verifier"], said["codehash"]) == (market_id, verifier.address, codehash)
    assert f"pass --trust-verifier {codehash}" in said["reason"]
    assert declined["reason"] == said["reason"]
    declined_in_grace(stack, first, me, held)
    time.sleep(0.5)  # rounds enough to have raced, were it going to
    assert not untrusting.events("agent.proving") and not untrusting.events("agent.race")
    assert not proofs(stack, first) and not proofs(stack, race)
    stake_intact(stack, me)
    assert untrusting.stop() == 0

    trusting = start_agent(stack, key, "--trust-verifier", codehash)
    assert trusting.events("agent.start")[0]["trusted_verifiers"] == [codehash]
    second = post_inputs(stack, requester, sample, sample, market_id)
    assign_in(stack, keeper, second, me)
    for terms in (second, race):
        trusting.wait_for("agent.paid", where=for_task(stack, terms))
        assert [e.prover for e in proofs(stack, terms)] == [me]
    assert not trusting.events("agent.untrusted_market")


def test_agent__frozen_market__voids_its_live_assignment_and_never_proves(
    make_stack, keeper, requester, joined, start_agent, custom_market, chain
):
    stack = make_stack([keeper.address], grace_period=GRACE)
    market_id, verifier = custom_market(stack)
    codehash = "0x" + bytes(stack.client.market(market_id).codehash).hex()
    key = joined(stack, market_id)
    me = address(key)
    terms = post_inputs(stack, requester, SQUARE.sample, SQUARE.sample, market_id)
    assign_in(stack, keeper, terms, me)
    assert stack.client.standing(me).locked == terms.collateral
    chain.provider.make_request("anvil_setCode", [verifier.address, "0x00"])  # the verifier changed
    assert stack.client.market(market_id).frozen

    agent = start_agent(stack, key, "--trust-verifier", codehash)
    voided = agent.wait_for("agent.voided", where=for_task(stack, terms))[0]
    assert f"market {market_id} is frozen" in voided["reason"]
    agent.wait_for("agent.lost", where=for_task(stack, terms))
    [event] = stack.client.events(["AssignmentVoided"], task_id=task_id(stack, terms))
    assert event.prover == me and event.tx == voided["tx"]
    stake_intact(stack, me)
    assert not agent.events("agent.proving") and not proofs(stack, terms)
