"""The Groth16 verifier at the ends of its range of public inputs, 1 and 16 (the sample
circuits have 2): throwaway circom circuits in which every public input is squared,
compiled, set up (one single-party Powers of Tau) and proved with snarkjs in a temporary
folder. Each key's verifier accepts its real proofs, zero inputs included (the verifier
multiplies a zero input like any other, with no branch of its own), and answers False for
every changed input, an input at or above the scalar field modulus and a wrong count."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from provingmarket.proving.circuits import R, VerifyingKey, proof_from_snarkjs

ROOT = Path(__file__).resolve().parents[3]
NODE_BIN = ROOT / "node_modules" / ".bin"
COUNTS = (1, 16)
TIMEOUT = 120  # seconds for one snarkjs or circom command

CIRCUIT = """pragma circom 2.0.0;

template Inputs(n) {
    signal input in[n];
    signal sq[n];
    for (var i = 0; i < n; i++) {
        sq[i] <== in[i] * in[i];
    }
}

component main {public [in]} = Inputs(%d);
"""


def run(*argv: str | Path | int) -> None:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"{argv[:3]} failed: {(result.stdout + result.stderr)[-800:]}"


def snarkjs(*argv: str | Path | int) -> None:
    run("node", NODE_BIN / "snarkjs", *argv)


class Keyed:
    """A compiled and set-up circuit with `n` public inputs: its key and a prover."""

    def __init__(self, n: int, ptau: Path, work: Path):
        self.n, self.work = n, work
        work.mkdir()
        (work / "c.circom").write_text(CIRCUIT % n)
        run(NODE_BIN / "circom2", work / "c.circom", "--r1cs", "--wasm", "-o", work)
        snarkjs("groth16", "setup", work / "c.r1cs", ptau, work / "c0.zkey")
        snarkjs(
            "zkey",
            "contribute",
            work / "c0.zkey",
            work / "c.zkey",
            "--name=test",
            "-e=" + os.urandom(16).hex(),
        )
        snarkjs("zkey", "export", "verificationkey", work / "c.zkey", work / "vk.json")
        self.vk = VerifyingKey.load(work / "vk.json")

    def prove(self, values: list[int]) -> bytes:
        """A real proof that `values` are the circuit's public inputs."""
        (self.work / "input.json").write_text(json.dumps({"in": [str(v) for v in values]}))
        snarkjs(
            "wtns", "calculate", self.work / "c_js" / "c.wasm", self.work / "input.json", self.work / "w.wtns"
        )
        proof, public = self.work / "proof.json", self.work / "public.json"
        snarkjs("groth16", "prove", self.work / "c.zkey", self.work / "w.wtns", proof, public)
        assert [int(v) for v in json.loads(public.read_text())] == values
        return proof_from_snarkjs(json.loads(proof.read_text()))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    work = tmp_path_factory.mktemp("inputs")
    snarkjs("powersoftau", "new", "bn128", 8, work / "pot0.ptau")
    snarkjs(
        "powersoftau",
        "contribute",
        work / "pot0.ptau",
        work / "pot1.ptau",
        "--name=test",
        "-e=" + os.urandom(16).hex(),
    )
    snarkjs("powersoftau", "prepare", "phase2", work / "pot1.ptau", work / "pot.ptau")
    return {n: Keyed(n, work / "pot.ptau", work / f"inputs-{n}") for n in COUNTS}


@pytest.fixture(scope="module")
def verifiers(project, owner, keyed):
    return {n: owner.deploy(project.Groth16Verifier, *k.vk.constructor_args()) for n, k in keyed.items()}


@pytest.fixture(scope="module")
def proven(keyed):
    """Per count: random nonzero public inputs below R and a real proof of them."""
    made = {}
    for n, k in keyed.items():
        values = [secrets.randbelow(R - 1) + 1 for _ in range(n)]
        made[n] = (values, k.prove(values))
    return made


@pytest.mark.parametrize("n", COUNTS)
def test_verify__real_proof__accepted(verifiers, proven, n):
    values, proof = proven[n]
    assert verifiers[n].public_inputs() == n
    assert verifiers[n].verify(values, proof)


@pytest.mark.parametrize("n", COUNTS)
def test_verify__any_one_input_changed__false(verifiers, proven, n):
    values, proof = proven[n]
    for index in range(n):
        changed = list(values)
        changed[index] = (changed[index] + 1) % R
        assert not verifiers[n].verify(changed, proof), index


@pytest.mark.parametrize("n", COUNTS)
def test_verify__input_at_or_above_the_field_modulus__false(verifiers, proven, n):
    """value + R is the same field element: a verifier that reduced it would accept."""
    values, proof = proven[n]
    for index in {0, n // 2, n - 1}:
        for bad in (values[index] + R, 2**256 - 1):
            inputs = list(values)
            inputs[index] = bad
            assert not verifiers[n].verify(inputs, proof), index


@pytest.mark.parametrize("n", COUNTS)
def test_verify__wrong_number_of_inputs__false(verifiers, proven, n):
    values, proof = proven[n]
    assert not verifiers[n].verify(values[:-1], proof)
    assert not verifiers[n].verify([], proof)
    if n < 16:
        assert not verifiers[n].verify([*values, 0], proof)


def test_verify__proof_with_zero_inputs__accepted_and_bound_to_them(keyed, verifiers):
    """Zero inputs, first, middle and last, go through ecMul like the others (the point at
    infinity, which ecAdd leaves out): the proof verifies, and only for those zeros."""
    n = 16
    values = [secrets.randbelow(R - 1) + 1 for _ in range(n)]
    for index in (0, 7, 15):
        values[index] = 0
    proof = keyed[n].prove(values)
    assert verifiers[n].verify(values, proof)
    for index in (0, 7, 15):
        changed = list(values)
        changed[index] = 1
        assert not verifiers[n].verify(changed, proof), index
    all_zero = [0] * n
    assert verifiers[n].verify(all_zero, keyed[n].prove(all_zero))
