"""The prover agent proves any circuit a market names, with no configuration per circuit:
the PLONK sample (a second proving system, its market custom, trusted by code hash) and a
circuit built from circomlib templates with four public outputs and no address input (its
outputs computed from the witness). The agent runs with its default backend, `auto`:
groth16py where it can, snarkjs for the rest. Real processes on this session's anvil, tasks
assigned by the mechanism's frontend (the test, as `keeper`), real proofs verified on chain."""

from __future__ import annotations

import json
from pathlib import Path

import ape
from eth_utils import keccak

from provingmarket import deployments
from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.chain.markets import MarketTerms, open_market
from provingmarket.deployments import MarketRecord
from provingmarket.proving.backends import backend_from_config
from provingmarket.proving.circuits import CIRCUITS, Circuit
from tests.factories import (
    ETHER,
    PRICE,
    address,
    assign_in,
    escrow,
    for_task,
    make_terms,
    posted_terms,
    proofs,
    spawn_agent,
)

FOREIGN = Path(__file__).resolve().parents[2] / "circuits" / "foreign"


def open_for(stack, owner, circuit: Circuit) -> int:
    """Open a market for `circuit` on the stack's registry and record it as market create does."""
    opened = open_market(
        ape,
        stack.registry,
        circuit,
        owner,
        backend_from_config({"backend": "snarkjs"}),
        MarketTerms(grace_period=5),
    )
    record = stack.client.deployment
    record.markets[opened.market_id] = MarketRecord(circuit.reference, opened.verifier)
    deployments.save(record, stack.record.parent)
    return opened.market_id


def post_inputs(stack, requester, market_id: int, circuit: Circuit, inputs: dict):
    """A task in `market_id` carrying `inputs`, committed to the statement they give."""
    prover_input = json.dumps(inputs).encode()
    terms = make_terms(
        market_id,
        stack.mechanism_id,
        inputs_commitment=circuit.commitment(circuit.check_inputs(inputs)),
        prover_input_hash=keccak(prover_input),
    )
    tx = stack.registry.post_task(
        terms.as_tuple(), prover_input, "", sender=requester, value=escrow(terms), gas_limit=1_000_000
    )
    return posted_terms(stack.registry, tx)


def test_agent__plonk_and_circomlib_circuits__proven_with_the_default_backend_and_paid(
    make_stack, keeper, owner, requester, funded, chain, spawn, tmp_path
):
    stack = make_stack([keeper.address])
    plonk, outputs = Circuit.load(CIRCUITS / "square-plonk"), Circuit.load(FOREIGN / "multi-output")
    plonk_market, outputs_market = open_for(stack, owner, plonk), open_for(stack, owner, outputs)
    codehash = "0x" + bytes(stack.registry.market(plonk_market).codehash).hex()

    key = funded()
    me = address(key)
    client = RegistryClient(
        chain.provider.web3, stack.registry.address, KeySigner(key), stack.client.from_block
    )
    client.transact("stake", value=5 * ETHER)
    for market_id in (plonk_market, outputs_market):
        client.transact("join_market", market_id, 1, ETHER // 100, 1, 0, [stack.mechanism_id])

    agent = spawn_agent(spawn, stack, key, tmp_path / "agent", "--trust-verifier", codehash)
    tasks = [
        post_inputs(stack, requester, plonk_market, plonk, {"x": "12", "y": "144"}),
        post_inputs(stack, requester, outputs_market, outputs, {"a": "40", "b": "2", "salt": "9"}),
    ]
    for terms in tasks:
        assign_in(stack, keeper, terms, me)
    for terms, circuit in zip(tasks, (plonk, outputs), strict=True):
        agent.wait_for("agent.paid", where=for_task(stack, terms), timeout=120)
        (proven,) = proofs(stack, terms)
        assert (proven.prover, proven.paid) == (me, PRICE)
        signals = circuit.named(list(proven.public_inputs))
        assert signals == circuit.named(circuit.public_inputs(json.loads(posted_input(stack, terms)), me))
    assert (
        signals["sum"] == 42 and signals["product"] == 80 and signals["less"] == 0
    )  # outputs from the witness
    assert stack.client.balance(me) == 2 * PRICE
    assert agent.stop() == 0


def posted_input(stack, terms) -> bytes:
    return stack.client.task(stack.client.task_id(terms)).prover_input
