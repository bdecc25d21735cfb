"""Circuit folders, verifying keys and task inputs, read in plain Python: the sample circuits
load and commit to their samples, and every kind of bad key file, circuit folder, input or
proof file is refused with a CircuitError naming the file (or input) and what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from provingmarket.formats import inputs_commitment
from provingmarket.proving.circuits import (
    CIRCUITS,
    MAX_PUBLIC_INPUTS,
    PROOF_SIZE,
    Circuit,
    CircuitError,
    P,
    R,
    VerifyingKey,
    proof_from_snarkjs,
    sample_circuits,
)

SQUARE_KEY = CIRCUITS / "square" / "verification_key.json"
PROVER = "0x" + "ab" * 20


@pytest.fixture(scope="module")
def square():
    return Circuit.load("square")


@pytest.fixture
def key_data():
    """A fresh copy of the square circuit's verification_key.json, to spoil."""
    return json.loads(SQUARE_KEY.read_text())


@pytest.fixture
def folder(tmp_path):
    """A copy of the square circuit's folder, to spoil."""
    return Path(shutil.copytree(CIRCUITS / "square", tmp_path / "square"))


def key_error(tmp_path: Path, data: object) -> str:
    """Write `data` as a key file and return the CircuitError's message, which must name the file."""
    path = tmp_path / "verification_key.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(CircuitError) as error:
        VerifyingKey.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    return message


def bump(coordinate: str) -> str:
    return str(int(coordinate) + 1)


# ------------------------------------------------------------------ sample circuits


def test_sample_circuits__square_and_squarings__shipped():
    assert {"square", "squarings-1000"} <= set(sample_circuits())


@pytest.mark.parametrize("name", sample_circuits("groth16"))
def test_sample_circuit__load__key_has_one_ic_point_per_public_input(name):
    circuit = Circuit.load(name)
    assert circuit.name == name
    assert circuit.path == CIRCUITS / name
    assert circuit.public[circuit.address_input] == "prover"
    key = circuit.verifying_key()
    assert key.public_inputs == len(circuit.public)
    assert len(key.ic) == len(circuit.public) + 1
    assert len(key.constructor_args()[4]) == len(circuit.public) + 1


@pytest.mark.parametrize("name", sample_circuits("groth16"))
def test_sample_circuit__sample__is_the_kinds_inputs_and_commits_to_its_statement(name):
    circuit = Circuit.load(name)
    sample = circuit.sample
    assert circuit.inputs_for(sample["x"]) == sample
    statement = circuit.statement(sample)
    assert statement[circuit.address_input] == 0
    assert [v for i, v in enumerate(statement) if i != circuit.address_input] == [
        sample[n] for n in circuit.public if n != "prover"
    ]
    assert circuit.commitment(sample) == inputs_commitment(statement)
    assert circuit.commitment(sample) == inputs_commitment(
        circuit.public_inputs(sample, PROVER), circuit.address_input
    )
    other = circuit.inputs_for(sample["x"] + 1)
    assert circuit.commitment(other) != circuit.commitment(sample)


def test_circuit__load_by_path__same_as_by_name(square):
    assert Circuit.load(CIRCUITS / "square") == Circuit.load(str(CIRCUITS / "square")) == square


def test_verifying_key__square__g2_points_in_eip197_order(key_data, square):
    """snarkjs writes G2 as [[x.c0, x.c1], [y.c0, y.c1]]; the verifier takes (x.c1, x.c0, y.c1, y.c0)."""
    key = square.verifying_key()
    (x0, x1), (y0, y1), _ = key_data["vk_beta_2"]
    assert key.beta == tuple(int(c) for c in (x1, x0, y1, y0))
    assert key.alpha == tuple(int(c) for c in key_data["vk_alpha_1"][:2])
    assert key.ic == tuple(tuple(int(c) for c in p[:2]) for p in key_data["IC"])


def test_verifying_key__hex_coordinates__same_key(tmp_path, key_data, square):
    def to_hex(value):
        if isinstance(value, list):
            return [to_hex(v) for v in value]
        return hex(int(value)) if isinstance(value, str) else value

    for name in ("vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC"):
        key_data[name] = to_hex(key_data[name])
    assert key_data["IC"][0][2] == "0x1"
    path = tmp_path / "verification_key.json"
    path.write_text(json.dumps(key_data))
    assert VerifyingKey.load(path) == square.verifying_key()


# ------------------------------------------------------------------ malformed key files


def test_verifying_key__no_such_file__names_it(tmp_path):
    path = tmp_path / "verification_key.json"
    with pytest.raises(CircuitError, match="no such file") as error:
        VerifyingKey.load(path)
    assert str(path) in str(error.value)


def test_verifying_key__not_json__refused(tmp_path):
    assert "not valid JSON" in key_error(tmp_path, '{"protocol": "groth16",')


@pytest.mark.parametrize("data", [[1, 2], "groth16", 3, None])
def test_verifying_key__not_an_object__refused(tmp_path, data):
    assert "expected a JSON object" in key_error(tmp_path, json.dumps(data))


def test_verifying_key__wrong_protocol__refused(tmp_path, key_data):
    key_data["protocol"] = "plonk"
    assert "protocol is 'plonk', expected 'groth16'" in key_error(tmp_path, key_data)


def test_verifying_key__wrong_curve__refused(tmp_path, key_data):
    key_data["curve"] = "bls12381"
    assert "curve is 'bls12381', expected 'bn128'" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("name", ["vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC", "nPublic"])
def test_verifying_key__field_missing__names_it(tmp_path, key_data, name):
    del key_data[name]
    assert f"{name} is missing" in key_error(tmp_path, key_data)


def test_verifying_key__npublic_not_matching_ic__refused(tmp_path, key_data):
    key_data["nPublic"] = 3
    assert "nPublic is 3 but IC has 3 points" in key_error(tmp_path, key_data)


def test_verifying_key__ic_point_dropped__refused(tmp_path, key_data):
    key_data["IC"].pop()
    assert "nPublic is 2 but IC has 2 points (expected nPublic + 1)" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("ic", [[], "none", None])
def test_verifying_key__ic_not_a_list_of_points__refused(tmp_path, key_data, ic):
    key_data["IC"] = ic
    assert "IC should be a non-empty list of G1 points" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("value", ["twelve", None, [1], {"x": 1}])
def test_verifying_key__coordinate_not_a_number__names_it(tmp_path, key_data, value):
    key_data["vk_alpha_1"][0] = value
    assert f"vk_alpha_1[0] is {value!r}, not a number" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("value", [str(P), str(P + 5), hex(P), "-1"])
def test_verifying_key__coordinate_outside_the_field__names_it(tmp_path, key_data, value):
    key_data["IC"][1][0] = value
    assert "IC[1][0] is not a coordinate below the field modulus" in key_error(tmp_path, key_data)


def test_verifying_key__g2_coordinate_outside_the_field__names_it(tmp_path, key_data):
    key_data["vk_gamma_2"][1][1] = str(P)
    assert "vk_gamma_2[1] is not a coordinate below the field modulus" in key_error(tmp_path, key_data)


@pytest.mark.parametrize(
    ("name", "field", "index"), [("vk_alpha_1", "vk_alpha_1", None), ("IC[0]", "IC", 0), ("IC[2]", "IC", 2)]
)
def test_verifying_key__g1_point_off_the_curve__names_it(tmp_path, key_data, name, field, index):
    point = key_data[field] if index is None else key_data[field][index]
    point[1] = bump(point[1])
    assert f"{name} is not on the BN254 curve" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("name", ["vk_beta_2", "vk_gamma_2", "vk_delta_2"])
def test_verifying_key__g2_point_off_the_twist__names_it(tmp_path, key_data, name):
    key_data[name][1][0] = bump(key_data[name][1][0])
    assert f"{name} is not a point of BN254's G2 twist" in key_error(tmp_path, key_data)


def test_verifying_key__g2_coordinates_swapped__off_the_twist(tmp_path, key_data):
    """A key exported in EIP-197 order (c1 first) instead of snarkjs's is refused, not misread."""
    x, y, z = key_data["vk_delta_2"]
    key_data["vk_delta_2"] = [x[::-1], y[::-1], z]
    assert "vk_delta_2 is not a point of BN254's G2 twist" in key_error(tmp_path, key_data)


def test_verifying_key__g2_point_zero__refused(tmp_path, key_data):
    key_data["vk_beta_2"] = [["0", "0"], ["0", "0"], ["1", "0"]]
    assert "vk_beta_2 is not a point of BN254's G2 twist" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("point", [["1"], ["1", "2", "1", "0"], "1,2", None])
def test_verifying_key__g1_point_malformed__names_it(tmp_path, key_data, point):
    key_data["vk_alpha_1"] = point
    assert "vk_alpha_1 should be a G1 point [x, y, 1]" in key_error(tmp_path, key_data)


def test_verifying_key__g1_point_not_affine__refused(tmp_path, key_data):
    key_data["IC"][0][2] = "2"
    assert "IC[0] is not in affine form (z must be 1)" in key_error(tmp_path, key_data)


@pytest.mark.parametrize("index", [1, 2])
def test_verifying_key__ic_point_at_infinity__input_in_no_constraint(tmp_path, key_data, index):
    key_data["IC"][index] = ["0", "1", "0"]
    message = key_error(tmp_path, key_data)
    assert f"IC[{index}] is the point at infinity" in message
    assert f"public input {index - 1} takes part in no constraint" in message


def test_verifying_key__ic_point_affine_zero__input_in_no_constraint(tmp_path, key_data):
    key_data["IC"][1] = ["0", "0"]
    assert "public input 0 takes part in no constraint" in key_error(tmp_path, key_data)


def test_verifying_key__constant_ic_point_at_infinity__accepted(tmp_path, key_data):
    """IC[0] multiplies no input: at infinity it only means the constant term is zero."""
    key_data["IC"][0] = ["0", "1", "0"]
    path = tmp_path / "verification_key.json"
    path.write_text(json.dumps(key_data))
    assert VerifyingKey.load(path).ic[0] == (0, 0)


def test_verifying_key__alpha_at_infinity__refused(tmp_path, key_data):
    """With alpha at infinity, A = vk_x, B = gamma, C = 0 verifies for any inputs; the
    on-chain verifier refuses such a key at deployment, so loading it fails too."""
    key_data["vk_alpha_1"] = ["0", "1", "0"]
    assert "vk_alpha_1 is the point at infinity" in key_error(tmp_path, key_data)


def test_verifying_key__gamma_equals_delta__refused_as_forgeable(tmp_path, key_data):
    key_data["vk_delta_2"] = key_data["vk_gamma_2"]
    assert "vk_gamma_2 equals vk_delta_2: with such a key anyone can forge" in key_error(tmp_path, key_data)


def test_verifying_key__more_than_16_public_inputs__refused(tmp_path, key_data):
    n = MAX_PUBLIC_INPUTS + 1
    key_data["IC"] = [key_data["IC"][0]] + [key_data["IC"][1]] * n
    key_data["nPublic"] = n
    assert f"{n} public inputs; the verifier takes at most 16" in key_error(tmp_path, key_data)


def test_verifying_key__exactly_16_public_inputs__accepted(tmp_path, key_data):
    key_data["IC"] = [key_data["IC"][0]] + [key_data["IC"][1]] * MAX_PUBLIC_INPUTS
    key_data["nPublic"] = MAX_PUBLIC_INPUTS
    path = tmp_path / "verification_key.json"
    path.write_text(json.dumps(key_data))
    assert VerifyingKey.load(path).public_inputs == MAX_PUBLIC_INPUTS


# ------------------------------------------------------------------ bad circuit folders


def circuit_error(path: Path) -> str:
    with pytest.raises(CircuitError) as error:
        Circuit.load(path)
    return str(error.value)


def edit_manifest(folder: Path, **changes) -> None:
    manifest = folder / "circuit.json"
    data = json.loads(manifest.read_text())
    for name, value in changes.items():
        if value is None:
            del data[name]
        else:
            data[name] = value
    manifest.write_text(json.dumps(data))


def test_circuit__copied_folder__loads(folder, square):
    circuit = Circuit.load(folder)
    assert circuit.path == folder
    assert (circuit.name, circuit.public, circuit.sample) == (square.name, square.public, square.sample)
    assert circuit.verifying_key() == square.verifying_key()


def test_circuit__no_such_folder__names_the_manifest(tmp_path):
    message = circuit_error(tmp_path / "cube")
    assert f"{tmp_path / 'cube' / 'circuit.json'}: no such file" in message


def test_circuit__manifest_missing__names_it(folder):
    (folder / "circuit.json").unlink()
    assert f"{folder / 'circuit.json'}: no such file" in circuit_error(folder)


def test_circuit__manifest_not_json__names_it(folder):
    (folder / "circuit.json").write_text("name: square\n")
    assert f"{folder / 'circuit.json'}: not valid JSON" in circuit_error(folder)


def test_circuit__manifest_not_an_object__names_it(folder):
    (folder / "circuit.json").write_text('["square"]')
    assert f"{folder / 'circuit.json'}: expected name, kind, public" in circuit_error(folder)


@pytest.mark.parametrize("name", ["name", "kind", "public", "address_input", "constraints", "sample"])
def test_circuit__manifest_field_missing__names_the_field(folder, name):
    edit_manifest(folder, **{name: None})
    message = circuit_error(folder)
    assert message.startswith(f"{folder / 'circuit.json'}: expected name, kind, public (a list)")
    assert repr(name) in message


def test_circuit__address_input_not_public__refused(folder):
    edit_manifest(folder, address_input="x")
    message = circuit_error(folder)
    assert message.startswith(f"{folder / 'circuit.json'}: ")
    assert "address_input (one of public)" in message


def test_circuit__constraints_not_a_number__refused(folder):
    edit_manifest(folder, constraints="many")
    assert circuit_error(folder).startswith(f"{folder / 'circuit.json'}: expected name")


def test_circuit__unknown_kind__refused(folder):
    edit_manifest(folder, kind="cube")
    assert f"{folder / 'circuit.json'}: unknown kind 'cube' (known: square, squarings)" in circuit_error(
        folder
    )


@pytest.mark.parametrize("name", ["circuit.zkey", "verification_key.json", "circuit.circom"])
def test_circuit__file_missing__names_it(folder, name):
    (folder / name).unlink()
    assert f"{folder / name}: missing; regenerate with circuits/build.py" in circuit_error(folder)


def test_circuit__key_for_fewer_public_inputs__names_key_and_manifest(folder, key_data):
    """A well-formed key with the wrong number of points for the manifest's public inputs."""
    key_data["IC"].pop()
    key_data["nPublic"] = 1
    (folder / "verification_key.json").write_text(json.dumps(key_data))
    circuit = Circuit.load(folder)
    with pytest.raises(CircuitError) as error:
        circuit.verifying_key()
    message = str(error.value)
    assert message.startswith(f"{folder / 'verification_key.json'}: the key has 1 public inputs")
    assert f"{folder / 'circuit.json'} names 2 (prover, y)" in message


def test_circuit__bad_key_file__error_names_it(folder, key_data):
    key_data["curve"] = "bls12381"
    (folder / "verification_key.json").write_text(json.dumps(key_data))
    with pytest.raises(CircuitError, match="curve is 'bls12381'") as error:
        Circuit.load(folder).verifying_key()
    assert str(error.value).startswith(f"{folder / 'verification_key.json'}: ")


# ------------------------------------------------------------------ inputs


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({"x": 7}, "missing y"),
        ({}, "missing y, x"),
        ({"x": 7, "y": 49, "z": 1}, "unknown z"),
        ({"x": 7, "y": 49, "prover": 1}, "unknown prover"),
        ({"y": 49, "w": 7}, "missing x; unknown w"),
    ],
)
def test_check_inputs__names_not_fitting__names_them(square, inputs, says):
    with pytest.raises(CircuitError) as error:
        square.check_inputs(inputs)
    message = str(error.value)
    assert message.startswith(f"inputs do not fit circuit square: {says} (")
    assert "it takes y, x; prover is the prover's address" in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (R, "not a field element"),
        (R + 49, "not a field element"),
        (2**256, "not a field element"),
        (-49, "not a field element"),
        ("-49", "not a field element"),
        (hex(R), "not a field element"),
        ("forty-nine", "'forty-nine', not a number"),
        ("", "'', not a number"),
        (True, "True, not a field element"),
        (49.0, "49.0, not a field element"),
        (None, "None, not a field element"),
    ],
)
def test_check_inputs__value_not_a_field_element__names_the_input(square, value, says):
    with pytest.raises(CircuitError) as error:
        square.check_inputs({"x": 7, "y": value})
    message = str(error.value)
    assert message.startswith("input y is ")
    assert says in message


def test_check_inputs__decimal_with_leading_zero__read_as_decimal(square):
    assert square.check_inputs({"x": "07", "y": "049"}) == {"x": 7, "y": 49}


def test_check_inputs__hex_and_decimal_strings__accepted(square):
    assert square.check_inputs({"x": "0x7", "y": "49"}) == {"x": 7, "y": 49}
    assert square.check_inputs({"x": "7", "y": "0x31"}) == {"x": 7, "y": 49}
    assert square.commitment({"x": "0x7", "y": "49"}) == square.commitment(square.sample)


def test_check_inputs__bounds__zero_and_r_minus_one_accepted(square):
    assert square.check_inputs({"x": 0, "y": R - 1}) == {"x": 0, "y": R - 1}
    assert square.check_inputs({"x": str(R - 1), "y": 0}) == {"x": R - 1, "y": 0}


def test_public_inputs__prover_address__at_the_address_input(square):
    public = square.public_inputs(square.sample, PROVER)
    assert public[square.address_input] == int(PROVER, 16)
    assert public == [int(PROVER, 16), 49]
    assert square.public_inputs(square.sample, int(PROVER, 16)) == public
    assert square.witness(square.sample, PROVER) == {"x": 7, "y": 49, "prover": int(PROVER, 16)}


def test_public_inputs__bad_input__refused_before_the_address_goes_in(square):
    with pytest.raises(CircuitError, match="input x is -7"):
        square.public_inputs({"x": -7, "y": 49}, PROVER)
    with pytest.raises(CircuitError, match="missing y"):
        square.witness({"x": 7}, PROVER)


# ------------------------------------------------------------------ proof files


def snarkjs_proof(words: list[int]) -> dict:
    a0, a1, b01, b00, b11, b10, c0, c1 = (str(w) for w in words)
    return {
        "pi_a": [a0, a1, "1"],
        "pi_b": [[b00, b01], [b10, b11], ["1", "0"]],
        "pi_c": [c0, c1, "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }


def test_proof_from_snarkjs__proof_json__eight_words_in_eip197_order():
    words = list(range(101, 109))
    proof = proof_from_snarkjs(snarkjs_proof(words))
    assert len(proof) == PROOF_SIZE
    assert [int.from_bytes(proof[i : i + 32], "big") for i in range(0, PROOF_SIZE, 32)] == words


@pytest.mark.parametrize(
    "data",
    [
        None,
        "proof",
        [1, 2, 3],
        {},
        {"pi_a": ["1", "2"], "pi_b": [["1", "2"], ["3", "4"]]},
        {"pi_a": ["1"], "pi_b": [["1", "2"], ["3", "4"]], "pi_c": ["5", "6"]},
        {"pi_a": ["1", "2"], "pi_b": ["1", "2"], "pi_c": ["5", "6"]},
        {"pi_a": ["0x1", "2"], "pi_b": [["1", "2"], ["3", "4"]], "pi_c": ["5", "6"]},
        {"pi_a": ["one", "2"], "pi_b": [["1", "2"], ["3", "4"]], "pi_c": ["5", "6"]},
        {"pi_a": [None, "2"], "pi_b": [["1", "2"], ["3", "4"]], "pi_c": ["5", "6"]},
    ],
)
def test_proof_from_snarkjs__garbage__refused(data):
    with pytest.raises(CircuitError, match=r"^proof.json: not a snarkjs Groth16 proof \(pi_a, pi_b, pi_c\)$"):
        proof_from_snarkjs(data, "proof.json")


@pytest.mark.parametrize("index", range(8))
def test_proof_from_snarkjs__coordinate_outside_the_field__refused(index):
    words = list(range(101, 109))
    words[index] = P if index % 2 else -1
    with pytest.raises(CircuitError, match="proof.json: a coordinate is not below the field modulus"):
        proof_from_snarkjs(snarkjs_proof(words), "proof.json")


def test_sample_circuits__all_committed():
    assert {"square", "squarings-1000", "squarings-10000"} <= set(sample_circuits())
