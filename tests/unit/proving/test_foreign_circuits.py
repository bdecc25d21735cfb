"""The foreign circuits (circuits/foreign/: built from circomlib's templates by
circuits/foreign/build.py) are sound, checked with the real snarkjs under node, no chain:
each manifest agrees with its verifying key; each sample's witness computes and its proof
verifies with `snarkjs groth16 verify`; the proof's public signals (public.json) come in the
manifest's order, outputs first; and wrong inputs make the witness fail or change the outputs.
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from provingmarket.proving.circuits import R, VerifyingKey

ROOT = Path(__file__).resolve().parents[3]
FOREIGN = ROOT / "circuits" / "foreign"
SNARKJS = ROOT / "node_modules" / ".bin" / "snarkjs"
NAMES = ("poseidon-preimage", "merkle-inclusion", "multi-output")
PROVER = 0x70997970C51812DC3A010C7D01B50E0D17DC79C8  # the address a proof is made for
OTHER = 0x3C44CDDDB6A900FA2B585DD299E03D12FA4293BC  # another prover's


def snarkjs(*argv: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(SNARKJS), *map(str, argv)], capture_output=True, text=True, timeout=120
    )


def manifest(name: str) -> dict:
    return json.loads((FOREIGN / name / "circuit.json").read_text())


def read_wtns(path: Path) -> list[int]:
    """The witness values of a snarkjs/circom .wtns file (section 1: field size, prime and
    count; section 2: the values, little-endian)."""
    data = path.read_bytes()
    assert data[:4] == b"wtns"
    (sections,) = struct.unpack_from("<I", data, 8)
    offset, n8, count, values = 12, 0, 0, []
    for _ in range(sections):
        kind, size = struct.unpack_from("<IQ", data, offset)
        body = offset + 12
        if kind == 1:
            (n8,) = struct.unpack_from("<I", data, body)
            (count,) = struct.unpack_from("<I", data, body + 4 + n8)
        elif kind == 2:
            values = [
                int.from_bytes(data[body + i * n8 : body + (i + 1) * n8], "little") for i in range(count)
            ]
        offset = body + size
    assert len(values) == count > 0, f"{path}: no witness values"
    return values


class Run:
    """snarkjs on one circuit's files, in a temporary folder of the test's."""

    def __init__(self, name: str, work: Path):
        self.name, self.folder, self.work = name, FOREIGN / name, work
        self.manifest = manifest(name)
        self.runs = 0

    def inputs(self, **changes: object) -> dict[str, object]:
        """The sample, the prover's address added (if the circuit has one), with `changes`."""
        inputs = dict(self.manifest["sample"])
        if self.manifest["address_signal"] is not None:
            inputs[self.manifest["address_signal"]] = str(PROVER)
        inputs.update(changes)
        return inputs

    def witness(self, inputs: dict[str, object]) -> tuple[list[int] | None, str]:
        """`snarkjs wtns calculate`: the witness (w[0] = 1, then the public signals) or None
        and what snarkjs said, when the inputs satisfy no witness."""
        self.runs += 1
        (self.work / f"input{self.runs}.json").write_text(json.dumps(inputs))
        wtns = self.work / f"w{self.runs}.wtns"
        done = snarkjs(
            "wtns", "calculate", self.folder / "circuit.wasm", self.work / f"input{self.runs}.json", wtns
        )
        if done.returncode != 0 or not wtns.exists():
            return None, done.stdout + done.stderr
        return read_wtns(wtns), ""

    def outputs(self, inputs: dict[str, object]) -> list[int]:
        """The public signals the witness of `inputs` gives (outputs, then public inputs)."""
        witness, said = self.witness(inputs)
        assert witness is not None, f"{self.name}: the witness failed: {said}"
        return witness[1 : 1 + len(self.manifest["public_signals"])]

    def prove(self, inputs: dict[str, object]) -> tuple[list[int], list[int], Path]:
        """The witness, the proof's public signals (public.json) and the proof's file."""
        witness, said = self.witness(inputs)
        assert witness is not None, f"{self.name}: the sample's witness failed: {said}"
        proof, public = self.work / "proof.json", self.work / "public.json"
        done = snarkjs(
            "groth16", "prove", self.folder / "circuit.zkey", self.work / f"w{self.runs}.wtns", proof, public
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return witness, [int(v) for v in json.loads(public.read_text())], proof

    def verifies(self, public: list[int], proof: Path) -> bool:
        """`snarkjs groth16 verify` of `proof` with these public signals."""
        self.runs += 1
        signals = self.work / f"public{self.runs}.json"
        signals.write_text(json.dumps([str(v) for v in public]))
        done = snarkjs("groth16", "verify", self.folder / "verification_key.json", signals, proof)
        return done.returncode == 0 and "OK" in done.stdout


class Proved(NamedTuple):
    run: Run
    witness: list[int]
    public: list[int]
    proof: Path


@pytest.fixture(scope="module")
def proved(tmp_path_factory) -> Callable[[str], Proved]:
    """Each circuit's sample proved once for the module (for PROVER)."""
    done: dict[str, Proved] = {}

    def get(name: str) -> Proved:
        if name not in done:
            run = Run(name, tmp_path_factory.mktemp(name))
            done[name] = Proved(run, *run.prove(run.inputs()))
        return done[name]

    return get


def values(run: Run, public: list[int]) -> dict[str, int]:
    """The public signals by their manifest names."""
    names = [signal["name"] for signal in run.manifest["public_signals"]]
    assert len(public) == len(names), f"{run.name}: {len(public)} public signals, manifest names {names}"
    return dict(zip(names, public, strict=True))


# ------------------------------------------------------------------ every circuit


@pytest.mark.parametrize("name", NAMES)
def test_the_manifest_agrees_with_the_verifying_key(name):
    m = manifest(name)
    folder = FOREIGN / name
    for file in m["files"].values():
        assert (folder / file).is_file(), f"{name}: {file} is missing"
    key = VerifyingKey.load(folder / m["files"]["verifying_key"])  # no public input at infinity
    signals = m["public_signals"]
    assert key.public_inputs == len(signals)
    outputs = [bool(s.get("output", False)) for s in signals]
    assert outputs == sorted(outputs, reverse=True), f"{name}: outputs must come first: {signals}"
    assert any(outputs), f"{name}: every foreign circuit has an output"
    inputs = [s["name"] for s in signals if not s.get("output")]
    if m["binding"] == "address-input":
        assert m["address_signal"] in inputs
    else:
        assert m["binding"] in ("commit-reveal", "none") and m["address_signal"] is None
    assert set(inputs) - {m["address_signal"]} <= set(m["inputs"])
    assert set(m["sample"]) == set(m["inputs"])
    assert m["proving_system"] == "groth16" and m["setup"].startswith("single-party")


@pytest.mark.parametrize("name", NAMES)
def test_the_sample_proves_and_verifies_with_its_public_signals_in_order(proved, name):
    run, witness, public, proof = proved(name)
    # public.json is w[1..n]: the outputs, then the public inputs, as the manifest lists them.
    assert public == witness[1 : 1 + len(public)]
    named = values(run, public)
    for signal, value in named.items():
        if signal == run.manifest["address_signal"]:
            assert value == PROVER
        elif signal in run.manifest["sample"]:
            assert value == int(run.manifest["sample"][signal])
    assert run.verifies(public, proof)
    # The proof holds for these signals only: a different first output fails.
    assert not run.verifies([(public[0] + 1) % R, *public[1:]], proof)


# ------------------------------------------------------------------ each circuit


def test_poseidon_preimage_binds_the_proof_to_the_prover(proved):
    run, _, public, proof = proved("poseidon-preimage")
    named = values(run, public)
    assert named["prover"] == PROVER
    copied = [OTHER if name == "prover" else v for name, v in named.items()]
    assert not run.verifies(copied, proof), "another prover could submit this proof as its own"
    # Another preimage hashes elsewhere; the prover's address does not change the hash.
    assert run.outputs(run.inputs(x="8"))[0] != named["hash"]
    assert run.outputs(run.inputs(prover=str(OTHER))) == [named["hash"], OTHER]


def test_merkle_inclusion_roots_depend_on_the_path(tmp_path):
    run = Run("merkle-inclusion", tmp_path)
    sample = run.manifest["sample"]
    (root,) = run.outputs(run.inputs())
    # The sibling leaf's path (the leaf and its sibling swapped, bit 0 flipped) reaches the
    # same root: the switcher puts each pair in the tree's order.
    elements, indices = list(sample["pathElements"]), list(sample["pathIndices"])
    sibling = {
        "leaf": elements[0],
        "pathElements": [sample["leaf"], *elements[1:]],
        "pathIndices": [str(1 - int(indices[0])), *indices[1:]],
    }
    assert run.outputs(run.inputs(**sibling)) == [root]
    # A wrong path bit, a wrong sibling or a wrong leaf reach another root.
    for level in (0, 7):
        flipped = [str(1 - int(b)) if i == level else b for i, b in enumerate(indices)]
        assert run.outputs(run.inputs(pathIndices=flipped)) != [root], f"path bit {level} is not used"
    assert run.outputs(run.inputs(pathElements=[*elements[:3], "999", *elements[4:]])) != [root]
    assert run.outputs(run.inputs(leaf="12346")) != [root]
    # A path index that is not a bit satisfies no witness.
    witness, said = run.witness(run.inputs(pathIndices=["2", *indices[1:]]))
    assert witness is None and "Assert Failed" in said


def test_multi_output_computes_each_output(tmp_path):
    run = Run("multi-output", tmp_path)
    named = values(run, run.outputs(run.inputs()))
    a, b, salt = (int(run.manifest["sample"][k]) for k in ("a", "b", "salt"))
    assert (named["sum"], named["product"], named["less"], named["salt"]) == (a + b, a * b, int(a < b), salt)
    # a >= b clears the flag; another salt changes the hash and nothing else.
    swapped = values(run, run.outputs(run.inputs(a=str(b), b=str(a))))
    assert swapped["less"] == 0 and swapped["sum"] == a + b and swapped["hash"] != named["hash"]
    salted = values(run, run.outputs(run.inputs(salt=str(salt + 1))))
    assert salted["hash"] != named["hash"]
    assert {k: v for k, v in salted.items() if k not in ("hash", "salt")} == {
        k: v for k, v in named.items() if k not in ("hash", "salt")
    }
    # a must be below 2^64 (LessThan(64) is only sound there): 2^64 satisfies no witness.
    witness, said = run.witness(run.inputs(a=str(2**64)))
    assert witness is None and "Assert Failed" in said
