"""PLONK off the chain (provingmarket/proving/plonk.py): the square-plonk sample loads, a real
snarkjs PLONK proof becomes the 24 words snarkjs's Solidity verifier takes (in
`snarkjs zkey export soliditycalldata`'s order), and every kind of bad key file, proof file
or proof bytes is refused with a one-line error naming the file and the field."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from provingmarket.proving import plonk
from provingmarket.proving.backends import BackendError, CommandBackend, Groth16pyBackend
from provingmarket.proving.circuits import (
    CIRCUITS,
    Circuit,
    CircuitError,
    P,
    R,
    UnsatisfiedInputs,
    VerifyingKey,
    sample_circuits,
)

FOLDER = CIRCUITS / "square-plonk"
KEY = FOLDER / "verification_key.json"
PROVER = "0x" + "ab" * 20


@pytest.fixture
def key_data():
    """A fresh copy of square-plonk's verification_key.json, to spoil."""
    return json.loads(KEY.read_text())


@pytest.fixture(scope="module")
def snarkjs_proof(tmp_path_factory):
    """A real snarkjs PLONK proof of the sample as PROVER: (proof.json, public.json, their folder)."""
    work = tmp_path_factory.mktemp("plonk-proof")
    circuit = Circuit.load("square-plonk")
    witness = circuit.signal_inputs(circuit.sample, PROVER)
    (work / "input.json").write_text(json.dumps({k: str(v) for k, v in witness.items()}))
    snarkjs = plonk.snarkjs_command()
    for argv in (
        ("wtns", "calculate", circuit.wasm, work / "input.json", work / "w.wtns"),
        ("plonk", "prove", circuit.zkey, work / "w.wtns", work / "proof.json", work / "public.json"),
    ):
        subprocess.run([*snarkjs, *argv], check=True, capture_output=True)
    return json.loads((work / "proof.json").read_text()), json.loads((work / "public.json").read_text()), work


def key_error(tmp_path: Path, data: object) -> str:
    """Write `data` as a key file; the CircuitError's message, which must name the file."""
    path = tmp_path / "verification_key.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(CircuitError) as error:
        plonk.PlonkKey.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


# ------------------------------------------------------------------ the sample circuit


def test_square_plonk__loads_as_a_plonk_circuit():
    circuit = Circuit.load("square-plonk")
    assert circuit.proving_system == "plonk"
    assert (circuit.name, circuit.public, circuit.private) == ("square-plonk", ("prover", "y"), ("x",))
    assert circuit.public[circuit.address_input] == "prover"
    assert circuit.sample == {"x": 7, "y": 49}
    assert circuit.statement(circuit.sample) == [0, 49]
    assert Circuit.load("square").proving_system == "groth16"


def test_sample_circuits__by_proving_system():
    assert sample_circuits("plonk") == ["square-plonk"]
    assert "square-plonk" not in sample_circuits("groth16")
    assert {"square", "square-plonk"} <= set(sample_circuits())


def test_square_plonk_key__read_and_checked():
    key = plonk.PlonkKey.load(KEY)
    data = json.loads(KEY.read_text())
    assert (key.public_inputs, key.power) == (2, data["power"])
    assert key.omega == int(data["w"])
    assert pow(key.omega, 2**key.power, R) == 1
    assert key.points["Qm"] == tuple(int(c) for c in data["Qm"][:2])
    (x0, x1), (y0, y1), _ = data["X_2"]
    assert key.x2 == tuple(int(c) for c in (x1, x0, y1, y0))  # EIP-197 order
    for name in plonk.KEY_POINTS:  # [0, 1, 0] (a selector that is all zero) is (0, 0)
        if data[name][2] == "0":
            assert key.points[name] == (0, 0)


def test_keys__each_reader_refuses_the_other_systems_key(tmp_path):
    with pytest.raises(CircuitError, match="protocol is 'plonk', expected 'groth16'"):
        VerifyingKey.load(KEY)
    message = key_error(tmp_path, json.loads((CIRCUITS / "square" / "verification_key.json").read_text()))
    assert message.endswith("protocol is 'groth16', expected 'plonk'")


# ------------------------------------------------------------------ bad keys


def test_key__not_json_or_not_an_object__refused(tmp_path):
    assert "not valid JSON" in key_error(tmp_path, "{")
    assert key_error(tmp_path, [1, 2]).endswith("expected a JSON object (snarkjs verification_key.json)")


def test_key__wrong_curve__refused(tmp_path, key_data):
    key_data["curve"] = "bls12381"
    assert key_error(tmp_path, key_data).endswith("curve is 'bls12381', expected 'bn128' (BN254)")


@pytest.mark.parametrize("name", plonk._PlonkKeyReader.FIELDS)
def test_key__field_missing__named(tmp_path, key_data, name):
    del key_data[name]
    assert key_error(tmp_path, key_data).endswith(f"{name} is missing")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "nPublic is 0; the verifier takes 1 to 16 public inputs"),
        (17, "nPublic is 17; the verifier takes 1 to 16 public inputs"),
        ("2", "nPublic is '2', not a whole number"),
        (True, "nPublic is True, not a whole number"),
    ],
)
def test_key__public_inputs_out_of_range__refused(tmp_path, key_data, value, says):
    key_data["nPublic"] = value
    assert key_error(tmp_path, key_data).endswith(says)


@pytest.mark.parametrize("value", [2, 29, "3", None])
def test_key__power_out_of_range__refused(tmp_path, key_data, value):
    key_data["power"] = value
    assert "expected a whole number from 3 to 28" in key_error(tmp_path, key_data)


def test_key__omega_not_a_primitive_root_of_unity__refused(tmp_path, key_data):
    w = int(key_data["w"])
    for spoiled in (str(w + 1), str(w * w % R), "1"):
        key_data["w"] = spoiled
        message = key_error(tmp_path, key_data)
        assert message.endswith(f"w is not a primitive 2^{key_data['power']}-th root of unity (power is 3)")
    key_data["w"] = str(R)
    assert key_error(tmp_path, key_data).endswith("w is not below the scalar field modulus")
    key_data["w"] = "omega"
    assert key_error(tmp_path, key_data).endswith("w is 'omega', not a number")


@pytest.mark.parametrize(("k1", "k2"), [("2", "2"), ("0", "3"), ("1", "3"), ("2", "0")])
def test_key__cosets_not_distinct__refused(tmp_path, key_data, k1, k2):
    key_data["k1"], key_data["k2"] = k1, k2
    assert key_error(tmp_path, key_data).endswith("k1 and k2 do not give three distinct cosets of the domain")


@pytest.mark.parametrize("name", ["Qm", "Ql", "Qo", "S1", "S2", "S3"])
def test_key__point_off_the_curve__refused(tmp_path, key_data, name):
    key_data[name][1] = str(int(key_data[name][1]) + 1)
    assert key_error(tmp_path, key_data).endswith(f"{name} is not on the BN254 curve")


def test_key__coordinate_not_below_p__refused(tmp_path, key_data):
    key_data["S1"][0] = str(int(key_data["S1"][0]) + P)
    assert key_error(tmp_path, key_data).endswith("S1[0] is not a coordinate below the field modulus")


def test_key__point_not_affine__refused(tmp_path, key_data):
    key_data["Qm"][2] = "2"
    assert key_error(tmp_path, key_data).endswith("Qm is not in affine form (z must be 1)")


def test_key__x2_off_the_twist_or_at_infinity__refused(tmp_path, key_data):
    key_data["X_2"][0][0] = str(int(key_data["X_2"][0][0]) + 1)
    assert key_error(tmp_path, key_data).endswith("X_2 is not a point of BN254's G2 twist")
    key_data["X_2"] = [["0", "0"], ["0", "0"], ["1", "0"]]
    assert key_error(tmp_path, key_data).endswith("X_2 is not a point of BN254's G2 twist")


# ------------------------------------------------------------------ proofs


def test_proof__words_in_the_order_of_snarkjs_soliditycalldata(snarkjs_proof):
    proof_json, public_json, work = snarkjs_proof
    argv = ("zkey", "export", "soliditycalldata", work / "public.json", work / "proof.json")
    out = subprocess.run(
        [*plonk.snarkjs_command(), *argv],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    proof_words, public_words = (json.loads(group) for group in re.findall(r"\[[^\[\]]*\]", out))
    proof = plonk.proof_from_snarkjs(proof_json)
    assert len(proof) == plonk.PROOF_SIZE == 24 * 32
    assert plonk.proof_words(proof) == [int(w, 16) for w in proof_words]
    assert [int(w, 16) for w in public_words] == [int(PROVER, 16), 49] == [int(v) for v in public_json]
    plonk.check_proof_shape(proof, "snarkjs")  # well-formed: no error


def proof_error(data: object) -> str:
    with pytest.raises(CircuitError) as error:
        plonk.proof_from_snarkjs(data, "proof.json")
    message = str(error.value)
    assert message.startswith("proof.json: ") and "\n" not in message, message
    return message


def test_proof__not_a_plonk_proof__refused(snarkjs_proof):
    proof, _, _ = snarkjs_proof
    assert proof_error([1]).endswith("not a snarkjs PLONK proof (expected a JSON object)")
    assert proof_error({**proof, "protocol": "groth16"}).endswith("protocol is 'groth16', expected 'plonk'")
    groth16 = {"pi_a": ["1", "2", "1"], "pi_b": [], "pi_c": [], "protocol": "groth16"}
    assert "expected 'plonk'" in proof_error(groth16)
    spoiled = {k: v for k, v in proof.items() if k not in ("T2", "eval_zw")}
    assert proof_error(spoiled).endswith("not a snarkjs PLONK proof (T2, eval_zw missing)")


def test_proof__bad_points_and_evaluations__named(snarkjs_proof):
    proof, _, _ = snarkjs_proof
    assert "Wxi should be a G1 point [x, y, 1]" in proof_error({**proof, "Wxi": "7"})
    unreduced = {**proof, "A": [proof["A"][0], str(P), "1"]}
    assert proof_error(unreduced).endswith("A[1] is not below the base field modulus")
    assert proof_error({**proof, "Z": [proof["Z"][0], proof["Z"][1], "0"]}).endswith(
        "Z is not in affine form (z must be 1)"
    )
    assert proof_error({**proof, "eval_s1": str(R)}).endswith("eval_s1 is not below the scalar field modulus")
    assert proof_error({**proof, "eval_a": "a"}).endswith("eval_a is 'a', not a number")
    assert proof_error({**proof, "C": [1.5, "2", "1"]}).endswith("C[0] is 1.5, not a number")


def shape_error(proof: bytes) -> str:
    with pytest.raises(BackendError) as error:
        plonk.check_proof_shape(proof, "prover")
    message = str(error.value)
    assert message.startswith("prover: ") and "\n" not in message, message
    return message


def pack(words: list[int]) -> bytes:
    return b"".join(w.to_bytes(32, "big") for w in words)


def test_check_proof_shape__every_flaw__refused(snarkjs_proof):
    words = plonk.proof_words(plonk.proof_from_snarkjs(snarkjs_proof[0]))
    valid = pack(words)
    short = shape_error(valid[:256])
    assert short.endswith("PLONK proof is 256 bytes, expected 768 (9 points, 6 evaluations)")
    assert "is 769 bytes" in shape_error(valid + b"\0")
    for i, name in enumerate(plonk.PROOF_POINTS):
        for index, value, says in (
            (2 * i, words[2 * i] + P, f"point {name} has a coordinate not below p"),
            (2 * i + 1, (words[2 * i + 1] + 1) % P, f"point {name} is not on the BN254 curve"),
        ):
            spoiled = list(words)
            spoiled[index] = value
            assert shape_error(pack(spoiled)).endswith(says)
        spoiled = list(words)
        spoiled[2 * i : 2 * i + 2] = [0, 0]
        assert shape_error(pack(spoiled)).endswith(f"point {name} is not on the BN254 curve")
    for i, name in enumerate(plonk.PROOF_EVALUATIONS, start=18):
        spoiled = list(words)
        spoiled[i] = R
        assert shape_error(pack(spoiled)).endswith(f"PLONK proof evaluation {name} is not below r")


# ------------------------------------------------------------------ backends and folders


def test_groth16py__plonk_circuit__refused_with_what_to_use():
    with pytest.raises(
        BackendError, match="groth16py proves Groth16 circuits, and this one is plonk: use the snarkjs"
    ):
        Groth16pyBackend().prove(Circuit.load("square-plonk"), {"x": 7, "y": 49}, PROVER)


def test_snarkjs_backend__plonk_circuit__plonk_proof_bytes():
    circuit = Circuit.load("square-plonk")
    result = CommandBackend.snarkjs(timeout=120).prove(circuit, {"x": 4, "y": 16}, PROVER)
    assert len(result.proof) == plonk.PROOF_SIZE
    assert result.public_inputs == [int(PROVER, 16), 16]
    plonk.check_proof_shape(result.proof, "snarkjs")


def test_snarkjs_backend__plonk_inputs_not_satisfied__no_proof():
    circuit = Circuit.load("square-plonk")
    with pytest.raises(UnsatisfiedInputs, match="do not satisfy circuit square-plonk: a constraint is not"):
        CommandBackend.snarkjs(timeout=120).prove(circuit, {"x": 4, "y": 17}, PROVER)


def manifest_error(tmp_path: Path, **changes) -> str:
    folder = Path(shutil.copytree(FOLDER, tmp_path / "square-plonk"))
    data = json.loads((folder / "circuit.json").read_text())
    data.update(changes)
    (folder / "circuit.json").write_text(json.dumps(data))
    with pytest.raises(CircuitError) as error:
        Circuit.load(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / 'circuit.json'}: ") and "\n" not in message, message
    return message


def test_manifest__unknown_proving_system__refused(tmp_path):
    message = manifest_error(tmp_path, proving_system="stark")
    assert "proving_system: 'stark' is not one of the choices ('groth16' or 'plonk')" in message


def test_manifest__address_signal_not_public__refused(tmp_path):
    assert "address_signal: x is not one of public_signals" in manifest_error(tmp_path, address_signal="x")


def test_verifier_contract__key_other_than_the_zkeys__refused(tmp_path):
    """verification_key.json must be the zkey's key: the contract is made from the zkey."""
    folder = Path(shutil.copytree(FOLDER, tmp_path / "square-plonk"))
    other = json.loads((folder / "verification_key.json").read_text())
    other["k2"] = "5"
    (folder / "verification_key.json").write_text(json.dumps(other))
    with pytest.raises(CircuitError, match="holds another key than .*verification_key.json; regenerate both"):
        plonk.verifier_contract(folder, cache=None)


def test_verifier_contract__bad_key__refused_before_compiling(tmp_path):
    folder = Path(shutil.copytree(FOLDER, tmp_path / "square-plonk"))
    (folder / "verification_key.json").write_text(json.dumps({"protocol": "groth16"}))
    with pytest.raises(CircuitError, match="protocol is 'groth16', expected 'plonk'"):
        plonk.verifier_contract(folder, cache=None)
    (folder / "circuit.zkey").unlink()
    shutil.copy(KEY, folder / "verification_key.json")
    with pytest.raises(CircuitError, match=r"circuit.zkey: no such file"):
        plonk.verifier_contract(folder, cache=None)
