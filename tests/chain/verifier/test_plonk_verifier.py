"""The PLONK verifier on anvil (snarkjs's PlonkVerifier behind IVerifier, provingmarket/
proving/plonk.py): it accepts a real snarkjs PLONK proof of the square-plonk sample for the
prover whose address is in it and no other, answers False (never reverts) for tampered
proofs, tampered inputs and wrong lengths, reverts when starved of gas; and the registry,
unchanged, takes it as a custom market in which a task is proven and paid."""

from __future__ import annotations

import json

import ape
import pytest
from ape.contracts import ContractContainer
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, keccak
from ethpm_types import ContractType

from provingmarket import OPEN_RACE, Assignment, TaskTerms
from provingmarket.formats import ZERO_ADDRESS
from provingmarket.proving import plonk
from provingmarket.proving.backends import CommandBackend
from provingmarket.proving.circuits import Circuit, P, R
from tests.factories import (
    CALLER_BPS,
    ETHER,
    GRACE_PERIOD,
    MIN_COLLATERAL,
    MIN_REWARD,
    REQUESTER_BPS,
    make_terms,
)

PROVER = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
SELECTOR = function_signature_to_4byte_selector("verify(uint256[],bytes)")
BINDING_ADDRESS_INPUT = 1


@pytest.fixture(scope="module")
def circuit():
    return Circuit.load("square-plonk")


@pytest.fixture(scope="module")
def compiled(circuit, tmp_path_factory):
    """The verifier's ABI and bytecode, compiled into this module's own cache folder."""
    return plonk.verifier_contract(circuit.path, cache=tmp_path_factory.mktemp("plonk-cache"))


@pytest.fixture(scope="module")
def plonk_verifier(owner, compiled):
    contract_type = ContractType(
        contractName=compiled.name,
        abi=compiled.abi,
        deploymentBytecode={"bytecode": compiled.bytecode},
    )
    return owner.deploy(ContractContainer(contract_type))


@pytest.fixture(scope="module")
def snarkjs():
    return CommandBackend.snarkjs(timeout=120)


@pytest.fixture(scope="module")
def sample(circuit, snarkjs):
    """A real snarkjs PLONK proof of the sample (x = 7, y = 49) as PROVER."""
    result = snarkjs.prove(circuit, circuit.sample, PROVER)
    return result.proof, result.public_inputs


@pytest.fixture(scope="module", autouse=True)
def setup(plonk_market, requester, keeper, prover):
    """The module's chain state made before any test (ape snapshots around each test)."""


def words(proof: bytes) -> list[int]:
    return plonk.proof_words(proof)


def pack(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in values)


# ------------------------------------------------------------------ answers


def test_verify__real_proof__accepted_for_its_prover_only(plonk_verifier, sample, circuit):
    proof, public = sample
    assert public == [int(PROVER, 16), 49]
    assert len(proof) == plonk.PROOF_SIZE == 768
    assert plonk_verifier.verify(public, proof)
    assert not plonk_verifier.verify([int(OTHER, 16), 49], proof)
    assert plonk_verifier.public_inputs() == len(circuit.public) == 2


def test_verify__another_provers_proof__accepted_for_that_prover(plonk_verifier, circuit, snarkjs):
    result = snarkjs.prove(circuit, {"x": 5, "y": 25}, OTHER)
    assert plonk_verifier.verify(result.public_inputs, result.proof)
    assert not plonk_verifier.verify([int(PROVER, 16), 25], result.proof)


def test_verify__each_proof_word_tampered__false(plonk_verifier, sample):
    """Every commitment moved to another point of the curve (its negation, so the curve
    check passes and the pairing must catch it), every evaluation changed by one."""
    proof, public = sample
    w = words(proof)
    for i in range(plonk.PROOF_WORDS):
        changed = list(w)
        if i < 18 and i % 2 == 1:
            changed[i] = P - w[i]  # y -> -y: still on the curve
        elif i < 18:
            continue  # x is covered below (off the curve)
        else:
            changed[i] = (w[i] + 1) % R
        assert not plonk_verifier.verify(public, pack(changed)), f"word {i} tampered, still accepted"


@pytest.mark.parametrize("point", range(9))
def test_verify__point_off_curve_or_unreduced_or_at_infinity__false(plonk_verifier, sample, point):
    proof, public = sample
    w = words(proof)
    x, y = 2 * point, 2 * point + 1
    for spoiled in (
        {x: (w[x] + 1) % P},  # off the curve
        {x: w[x] + P},  # the same point, a coordinate not below p
        {y: w[y] + P},
        {x: 0, y: 0},  # the point at infinity
    ):
        changed = list(w)
        for index, value in spoiled.items():
            changed[index] = value
        assert not plonk_verifier.verify(public, pack(changed)), (point, spoiled)


def test_verify__evaluation_not_below_r__false(plonk_verifier, sample):
    proof, public = sample
    w = words(proof)
    for i in range(18, 24):
        changed = list(w)
        changed[i] = w[i] + R
        assert not plonk_verifier.verify(public, pack(changed)), i


def test_verify__tampered_inputs__false(plonk_verifier, sample):
    proof, public = sample
    address, y = public
    for inputs in (
        [address, y + 1],
        [address, 0],
        [address + 1, y],
        [0, y],
        [address, y + R],  # the same value mod r: refused, not reduced
        [address + R, y],
        [address, R],
        [address, 2**256 - 1],
        [y, address],
    ):
        assert not plonk_verifier.verify(inputs, proof), inputs


def test_verify__wrong_lengths__false_not_revert(plonk_verifier, sample):
    proof, public = sample
    for inputs in ([], public[:1], [*public, 0], [*public, *public], [1] * 16):
        assert plonk_verifier.verify(inputs, proof) is False, len(inputs)
    for size in (0, 32, 256, 767, 769, 800, 1024):
        spoiled = (proof * 2)[:size]
        assert plonk_verifier.verify(public, spoiled) is False, size
    assert plonk_verifier.verify(public, proof + b"\0" * 32) is False


def test_verify__random_bytes__false(plonk_verifier, sample):
    _, public = sample
    for seed in range(4):
        junk = b"".join(keccak(bytes([seed, i])) for i in range(24))
        assert plonk_verifier.verify(public, junk) is False


# ------------------------------------------------------------------ gas


def test_verify__starved_of_gas__reverts_never_answers_false(plonk_verifier, sample, chain):
    """At every gas limit the call either runs out (reverts) or accepts the valid proof: a
    starved call cannot make snarkjs's plonk_verifier see a failed precompile call and answer
    False."""
    proof, public = sample
    web3 = chain.provider.web3
    data = SELECTOR + encode(["uint256[]", "bytes"], [public, proof])
    call = {"to": plonk_verifier.address, "data": "0x" + data.hex()}
    needed = web3.eth.estimate_gas(call)
    answers = {}
    # Coarse steps over the whole range, fine ones where the plonk_verifier starts to answer.
    for gas in [*range(30_000, needed + 30_000, 9_973), *range(needed - 12_000, needed, 97), needed]:
        try:
            answer = web3.eth.call({**call, "gas": gas})
        except Exception as error:  # the node reports a revert or out of gas
            answers[gas] = f"reverted: {error}"
            continue
        answers[gas] = int.from_bytes(answer, "big")
    assert all(a == 1 or str(a).startswith("reverted") for a in answers.values()), answers
    assert answers[needed] == 1, "the gas estimate must be enough to verify"
    assert any("verifier: out of gas" in str(a) for a in answers.values()), answers
    assert min(gas for gas, a in answers.items() if a == 1) > plonk_verifier.verify_gas()


def test_verify__gas_bound__above_what_a_real_verification_takes(
    plonk_verifier, sample, chain, owner, compiled, circuit
):
    """The bound the adapter checks before its self-call covers the self-call's real cost
    (read from the call trace), with the 1/64 a call keeps back."""
    proof, public = sample
    tx = plonk_verifier.verify.transact(public, proof, sender=owner)
    trace = chain.provider.make_request("debug_traceTransaction", [tx.txn_hash, {"tracer": "callTracer"}])
    [inner] = [c for c in trace.get("calls", []) if c["type"] == "STATICCALL"]
    used = int(inner["gasUsed"], 16)
    bound = plonk_verifier.verify_gas()
    key = plonk.PlonkKey.load(circuit.verification_key_file)
    assert bound == compiled.verify_gas == plonk.verify_gas(key)
    assert used <= (bound - 2_000) * 63 // 64, (used, bound)


def test_verifier_contract__second_call__read_from_the_cache(circuit, compiled, tmp_path, monkeypatch):
    """Compiled once per key: a second call with the same cache runs neither snarkjs nor solc."""
    first = plonk.verifier_contract(circuit.path, cache=tmp_path)
    assert first == compiled
    assert len(list(tmp_path.glob("*.json"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(plonk, "_snarkjs", refuse)
    monkeypatch.setattr(plonk, "compile_solidity", refuse)
    assert plonk.verifier_contract(circuit.path, cache=tmp_path) == first


# ------------------------------------------------------------------ on the registry


@pytest.fixture(scope="module")
def plonk_market(registry, plonk_verifier, owner, circuit, snarkjs, mechanism, provers):
    """A market on the PLONK plonk_verifier, opened with a sample proof made for its creator;
    the provers staked in it."""
    made = snarkjs.prove(circuit, circuit.sample, owner.address)
    tx = registry.create_market(
        plonk_verifier,
        made.public_inputs,
        made.proof,
        MIN_COLLATERAL,
        MIN_REWARD,
        GRACE_PERIOD,
        REQUESTER_BPS,
        CALLER_BPS,
        BINDING_ADDRESS_INPUT,
        circuit.address_input,
        sender=owner,
    )
    [created] = tx.events.filter(registry.MarketCreated)
    for p in provers:
        registry.stake(sender=p, value=2 * ETHER)
        registry.join_market(created.market_id, 2, ETHER // 100, 60, 0, [mechanism, OPEN_RACE], sender=p)
    return created


def test_create_market__plonk_verifier__custom_market_with_its_code_hash(
    registry, plonk_market, plonk_verifier, chain, circuit
):
    market = registry.market(plonk_market.market_id)
    assert market.verifier == plonk_verifier.address
    assert market.custom and plonk_market.custom
    assert market.binding == BINDING_ADDRESS_INPUT
    assert market.address_input == circuit.address_input == 0
    code = bytes(chain.provider.get_code(plonk_verifier.address))
    assert bytes(market.codehash) == keccak(code) == bytes(plonk_market.codehash)


def test_create_market__sample_proof_for_another_address__refused(registry, plonk_verifier, owner, sample):
    proof, public = sample  # made for PROVER, submitted by owner with owner's address in
    with ape.reverts("registry: sample proof rejected"):
        registry.create_market(
            plonk_verifier,
            [int(owner.address, 16), public[1]],
            proof,
            MIN_COLLATERAL,
            MIN_REWARD,
            GRACE_PERIOD,
            REQUESTER_BPS,
            CALLER_BPS,
            BINDING_ADDRESS_INPUT,
            0,
            sender=owner,
        )


def post(registry, requester, market_id, mechanism, circuit, inputs, **overrides):
    prover_input = json.dumps(inputs, sort_keys=True).encode()  # what the prover is sent
    terms = make_terms(
        market_id,
        mechanism,
        inputs_commitment=circuit.commitment(inputs),
        prover_input_hash=keccak(prover_input),
        **overrides,
    )
    tx = registry.post_task(terms.as_tuple(), prover_input, "", sender=requester, value=terms.escrow())
    [posted] = tx.events.filter(registry.TaskPosted)
    return TaskTerms.from_event(posted.terms), json.loads(bytes(posted.prover_input))


def test_plonk_market__assigned_task_proven_with_snarkjs__prover_paid(
    registry, plonk_market, circuit, snarkjs, mechanism, requester, keeper, prover
):
    terms, inputs = post(registry, requester, plonk_market.market_id, mechanism, circuit, {"x": 12, "y": 144})
    tx = registry.assign((terms.as_tuple(), prover.address, terms.max_reward, 0, 0, 0, b""), sender=keeper)
    assignment = Assignment.from_event(tx.events.filter(registry.TaskAssigned)[0])
    before = registry.balances(prover)

    result = snarkjs.prove(circuit, inputs, prover.address)
    assert len(result.proof) == plonk.PROOF_SIZE
    tx = registry.prove(
        terms.as_tuple(), assignment.as_tuple(), result.public_inputs, result.proof, sender=prover
    )

    [proven] = tx.events.filter(registry.TaskProven)
    assert proven.prover == prover.address
    assert list(proven.public_inputs) == result.public_inputs == [int(prover.address, 16), 144]
    assert registry.balances(prover) == before + terms.max_reward
    assert registry.standing(prover).locked == 0


def test_plonk_market__open_race__copied_proof_refused_maker_paid(
    registry, plonk_market, circuit, snarkjs, requester, provers
):
    maker, copier = provers[1], provers[2]
    terms, inputs = post(
        registry, requester, plonk_market.market_id, OPEN_RACE, circuit, {"x": 3, "y": 9}, redundancy=2
    )
    result = snarkjs.prove(circuit, inputs, maker.address)
    empty = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS).as_tuple()  # ignored in a race
    before = registry.balances(maker), registry.balances(copier)

    with ape.reverts("registry: invalid proof"):
        registry.prove(terms.as_tuple(), empty, result.public_inputs, result.proof, sender=copier)
    registry.prove(terms.as_tuple(), empty, result.public_inputs, result.proof, sender=maker)

    assert registry.balances(maker) == before[0] + terms.max_reward
    assert registry.balances(copier) == before[1]
