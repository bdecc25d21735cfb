"""The Groth16 verifier on anvil: it accepts real proofs of every sample circuit, answers
False (never reverts, never accepts) for every kind of bad proof or input, reverts when
starved of gas, and refuses a bad verifying key at deployment."""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from provingmarket.devnet import default_backend
from provingmarket.proving.circuits import Circuit, P, R, _on_g2, sample_circuits

PROVER = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
SELECTOR = function_signature_to_4byte_selector("verify(uint256[],bytes)")


@pytest.fixture(scope="module")
def backend():
    return default_backend()


@pytest.fixture(scope="module")
def circuits():
    return {name: Circuit.load(name) for name in sample_circuits("groth16")}


@pytest.fixture(scope="module")
def verifiers(project, owner, circuits):
    return {
        name: owner.deploy(project.Groth16Verifier, *c.verifying_key().constructor_args())
        for name, c in circuits.items()
    }


@pytest.fixture(scope="module")
def square(circuits, verifiers, backend):
    """The square circuit, its verifier and a valid proof with its public inputs."""
    circuit = circuits["square"]
    result = backend.prove(circuit, circuit.sample, PROVER)
    return circuit, verifiers["square"], result.proof, result.public_inputs


def words(proof: bytes) -> list[int]:
    return [int.from_bytes(proof[i : i + 32], "big") for i in range(0, len(proof), 32)]


def pack(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in values)


def test_verify__real_proof_of_each_sample_circuit__accepted(circuits, verifiers, backend):
    for name, circuit in circuits.items():
        result = backend.prove(circuit, circuit.sample, PROVER)
        assert verifiers[name].verify(result.public_inputs, result.proof), name
        assert verifiers[name].public_inputs() == len(circuit.public)


def test_verify__proof_made_for_one_address__fails_for_another(circuits, verifiers, backend):
    for name, circuit in circuits.items():
        result = backend.prove(circuit, circuit.sample, PROVER)
        copied = list(result.public_inputs)
        copied[circuit.address_input] = int(OTHER, 16)
        assert not verifiers[name].verify(copied, result.proof), name


def test_verify__wrong_public_inputs__false(square):
    circuit, verifier, proof, public = square
    y = circuit.public.index("y")
    for changed in (public[y] + 1, 0, 64):
        inputs = list(public)
        inputs[y] = changed
        assert not verifier.verify(inputs, proof)


def test_verify__wrong_number_of_inputs__false(square):
    _, verifier, proof, public = square
    assert not verifier.verify(public[:-1], proof)
    assert not verifier.verify([*public, 0], proof)
    assert not verifier.verify([], proof)
    assert not verifier.verify([*public, *([1] * 14)], proof)  # the interface's bound, 16


def test_verify__input_at_or_above_the_field_modulus__false(square):
    """y + R is the same field element as y: a verifier that reduced inputs would accept
    it, and the same proof would then verify for two different input lists."""
    _, verifier, proof, public = square
    for index in range(len(public)):
        for bad in (public[index] + R, R, 2**256 - 1):
            inputs = list(public)
            inputs[index] = bad
            assert not verifier.verify(inputs, proof)


def test_verify__proof_of_wrong_length__false(square):
    _, verifier, proof, public = square
    for bad in (b"", proof[:-1], proof + b"\x00", proof[:128], proof + proof, b"\x01" * 1024):
        assert not verifier.verify(public, bad)


def test_verify__points_off_the_curve__false(square):
    _, verifier, proof, public = square
    w = words(proof)
    for index in range(8):  # every coordinate nudged: A, C leave the curve, B leaves the twist
        bad = list(w)
        bad[index] = (bad[index] + 1) % P
        assert not verifier.verify(public, pack(bad)), index


def test_verify__coordinate_at_or_above_base_field_modulus__false(square):
    """x + P names the same point mod P; the precompile must see it as invalid."""
    _, verifier, proof, public = square
    w = words(proof)
    for index in range(8):
        bad = list(w)
        bad[index] += P
        if bad[index] < 2**256:
            assert not verifier.verify(public, pack(bad)), index


def test_verify__b_on_the_twist_outside_the_subgroup__false(square):
    _, verifier, proof, public = square
    x, y = twist_point_outside_subgroup()
    w = words(proof)
    bad = w[:2] + [x[1], x[0], y[1], y[0]] + w[6:]
    assert not verifier.verify(public, pack(bad))


def test_verify__points_at_infinity__false(square):
    _, verifier, proof, public = square
    w = words(proof)
    assert not verifier.verify(public, pack([0, 0] + w[2:]))
    assert not verifier.verify(public, pack(w[:6] + [0, 0]))
    assert not verifier.verify(public, pack(w[:2] + [0, 0, 0, 0] + w[6:]))
    assert not verifier.verify(public, bytes(256))


def test_verify__valid_points_mixed_up__false(square):
    """Every point is valid, but in the wrong place: A and C swapped, or A negated."""
    _, verifier, proof, public = square
    w = words(proof)
    assert not verifier.verify(public, pack(w[6:8] + w[2:6] + w[0:2]))
    assert not verifier.verify(public, pack([w[0], P - w[1]] + w[2:]))
    assert not verifier.verify(public, pack(w[:6] + [w[0], w[1]]))


def test_verify__proof_for_a_different_circuit__false(circuits, verifiers, backend):
    """squarings-1000 has the same public inputs (prover, y) as square: its proof,
    for the very same inputs, fails under square's key."""
    heavy = circuits["squarings-1000"]
    result = backend.prove(heavy, heavy.sample, PROVER)
    assert verifiers["squarings-1000"].verify(result.public_inputs, result.proof)
    assert not verifiers["square"].verify(result.public_inputs, result.proof)
    assert not verifiers["squarings-10000"].verify(result.public_inputs, result.proof)


def test_verify__starved_of_gas__reverts_never_answers_false(square, chain):
    """At every gas limit the call either runs out (reverts) or accepts the valid proof.
    A verifier that answered False when starved would let a caller choose the answer."""
    _, verifier, proof, public = square
    web3 = chain.provider.web3
    data = SELECTOR + encode(["uint256[]", "bytes"], [public, proof])
    call = {"to": verifier.address, "data": "0x" + data.hex()}
    needed = web3.eth.estimate_gas(call)
    answers = {}
    for gas in [*range(25_000, needed + 20_000, 7_919), needed]:
        try:
            answer = web3.eth.call({**call, "gas": gas})
        except Exception as error:  # the node reports a revert or out of gas
            answers[gas] = f"reverted: {error}"
            continue
        answers[gas] = int.from_bytes(answer, "big")
    accepted = [gas for gas, a in answers.items() if a == 1]
    assert all(a == 1 or str(a).startswith("reverted") for a in answers.values()), answers
    assert answers[needed] == 1, "the gas estimate must be enough to verify"
    assert min(accepted) > 190_000
    # Short of the pairing's price the verifier refuses to call it; shorter still, the
    # input arithmetic runs out first. Both are reverts.
    assert any("verifier: out of gas" in str(a) for a in answers.values()), answers


def test_verify__invalid_proof_with_plenty_of_gas__false_not_revert(square, chain):
    _, verifier, proof, public = square
    web3 = chain.provider.web3
    w = words(proof)
    bad = pack(w[:2] + [(w[2] + 1) % P] + w[3:])  # B off the twist: the precompile fails
    data = SELECTOR + encode(["uint256[]", "bytes"], [public, bad])
    answer = web3.eth.call({"to": verifier.address, "data": "0x" + data.hex(), "gas": 1_000_000})
    assert int.from_bytes(answer, "big") == 0


# ------------------------------------------------------------------ the verifying key


def test_verifying_key__reads_back_as_deployed(circuits, verifiers):
    for name, circuit in circuits.items():
        vk = circuit.verifying_key()
        alpha, beta, gamma, delta, ic = verifiers[name].verifying_key()
        read = [[int(v) for v in point] for point in (alpha, beta, gamma, delta)]
        assert read == [list(vk.alpha), list(vk.beta), list(vk.gamma), list(vk.delta)]
        assert [[int(v) for v in p] for p in ic] == [list(p) for p in vk.ic]


def test_deploy__bad_verifying_key__refused_with_reason(project, owner, circuits):
    alpha, beta, gamma, delta, ic = circuits["square"].verifying_key().constructor_args()
    cases = [
        ((alpha, beta, gamma, delta, []), "verifier: key has no IC points"),
        (([alpha[0], alpha[1] + 1], beta, gamma, delta, ic), "verifier: alpha not a G1 point"),
        (([0, 0], beta, gamma, delta, ic), "verifier: alpha not a G1 point"),
        ((alpha, beta, gamma, delta, [[ic[0][0], P]] + ic[1:]), "verifier: IC[0] not a G1 point"),
        ((alpha, beta, gamma, delta, ic[:1] + [[1, 3]] + ic[2:]), "verifier: an IC point is not a G1 point"),
        (
            (alpha, beta, gamma, delta, ic[:1] + [[0, 0]] + ic[2:]),
            "verifier: a public input takes part in no constraint",
        ),
        ((alpha, [0, 0, 0, 0], gamma, delta, ic), "verifier: beta not a G2 point"),
        ((alpha, beta, [gamma[0] + 1, *gamma[1:]], delta, ic), "verifier: gamma not a G2 point"),
        ((alpha, beta, gamma, [*delta[:3], P], ic), "verifier: delta not a G2 point"),
        ((alpha, beta, gamma, gamma, ic), "verifier: gamma equals delta"),
    ]
    for args, reason in cases:
        with ape.reverts(reason):
            owner.deploy(project.Groth16Verifier, *args)


def test_deploy__g2_point_outside_the_subgroup__refused(project, owner, circuits):
    alpha, beta, gamma, delta, ic = circuits["square"].verifying_key().constructor_args()
    x, y = twist_point_outside_subgroup()
    with ape.reverts("verifier: gamma not a G2 point"):
        owner.deploy(project.Groth16Verifier, alpha, beta, [x[1], x[0], y[1], y[0]], delta, ic)


# ------------------------------------------------------------------ Fp2 arithmetic for a bad B


def _mul(a, b):
    return ((a[0] * b[0] - a[1] * b[1]) % P, (a[0] * b[1] + a[1] * b[0]) % P)


def _pow(a, e):
    result = (1, 0)
    while e:
        if e & 1:
            result = _mul(result, a)
        a = _mul(a, a)
        e >>= 1
    return result


def _sqrt(a):
    """Square root in Fp2 = Fp[u]/(u^2 + 1), p = 3 mod 4 (Adj & Rodriguez-Henriquez, alg. 9)."""
    a1 = _pow(a, (P - 3) // 4)
    alpha = _mul(_mul(a1, a1), a)
    a0 = _mul(_pow(alpha, P), alpha)
    if a0 == (P - 1, 0):
        return None
    x0 = _mul(a1, a)
    if alpha == (P - 1, 0):
        return _mul((0, 1), x0)
    b = _pow(((1 + alpha[0]) % P, alpha[1]), (P - 1) // 2)
    return _mul(b, x0)


def twist_point_outside_subgroup():
    """A point on BN254's G2 twist that is not in the order-R subgroup (the twist's
    cofactor is about 2^254, so the first point found is outside it)."""
    b = (
        19485874751759354771024239261021720505790618469301721065564631296452457478373,
        266929791119991161246907387137283842545076965332900288569378510910307636690,
    )
    for i in range(1, 100):
        x = (i, 1)
        rhs = _mul(_mul(x, x), x)
        rhs = ((rhs[0] + b[0]) % P, (rhs[1] + b[1]) % P)
        y = _sqrt(rhs)
        if y is not None and _mul(y, y) == rhs:
            assert _on_g2(x, y)
            return x, y
    raise AssertionError("no twist point found")
