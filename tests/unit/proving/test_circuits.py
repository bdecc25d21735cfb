"""Circuit folders, verifying keys and task inputs, read in plain Python: the sample circuits
load and commit to their samples, and every kind of bad key file, circuit folder, input or
proof file is refused with a CircuitError naming the file (or input) and what is wrong.
The manifest's own fields are tested in test_manifest.py, the witness generator in
test_witness.py and the checks before a market is opened in test_checks.py."""

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
    UnsatisfiedInputs,
    VerifyingKey,
    proof_from_snarkjs,
    sample_circuits,
    sample_inputs,
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


@pytest.mark.parametrize("name", sample_circuits())
def test_sample_circuit__sample__is_its_secrets_inputs_and_commits_to_its_statement(name):
    circuit = Circuit.load(name)
    sample = circuit.check_inputs(circuit.sample)
    assert sample_inputs(circuit, sample["x"]) == sample
    statement = circuit.statement(circuit.sample)
    assert statement[circuit.address_input] == 0
    assert [v for i, v in enumerate(statement) if i != circuit.address_input] == [
        sample[n] for n in circuit.public if n != "prover"
    ]
    assert circuit.commitment(circuit.sample) == inputs_commitment(statement)
    assert circuit.commitment(sample) == inputs_commitment(
        circuit.public_inputs(sample, PROVER), circuit.address_input
    )
    other = sample_inputs(circuit, sample["x"] + 1)
    assert circuit.commitment(other) != circuit.commitment(sample)


def test_sample_inputs__secret__reduced_into_the_field(square):
    assert sample_inputs(square, 7) == {"x": 7, "y": 49}
    assert sample_inputs(square, R + 7) == {"x": 7, "y": 49}
    assert sample_inputs(square, R - 1) == {"x": R - 1, "y": 1}


def test_sample_inputs__another_circuit__says_to_give_inputs_by_name(folder):
    edit_manifest(folder, name="cube")
    with pytest.raises(CircuitError) as error:
        sample_inputs(Circuit.load(folder), 7)
    assert str(error.value) == (
        "--secret makes inputs for the sample circuits only; give circuit cube's inputs by name "
        "(--input NAME=VALUE or --inputs-file)"
    )


def test_circuit__load_by_path__same_as_by_name(square):
    assert Circuit.load(CIRCUITS / "square") == Circuit.load(str(CIRCUITS / "square")) == square
    assert Circuit.load(CIRCUITS / "square" / "circuit.json") == square
    assert square.reference == "square"


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
    assert circuit.reference == str(folder / "circuit.json")


def test_circuit__manifest_of_another_name__loads_and_is_referenced_by_its_path(folder, square):
    (folder / "circuit.json").rename(folder / "square-copy.json")
    circuit = Circuit.load(folder / "square-copy.json")
    assert (circuit.path, circuit.manifest_file) == (folder, folder / "square-copy.json")
    assert circuit.reference == str(folder / "square-copy.json")
    assert circuit.commitment(circuit.sample) == square.commitment(square.sample)


def test_circuit__no_such_folder__names_it_and_the_sample_circuits(tmp_path):
    message = circuit_error(tmp_path / "cube")
    assert message == (
        f"{tmp_path / 'cube'}: no such circuit folder or manifest "
        f"(sample circuits: {', '.join(sample_circuits())})"
    )


def test_circuit__manifest_missing__names_it(folder):
    (folder / "circuit.json").unlink()
    assert f"{folder / 'circuit.json'}: no such file" in circuit_error(folder)


def test_circuit__manifest_not_json__names_it(folder):
    (folder / "circuit.json").write_text("name: square\n")
    assert f"{folder / 'circuit.json'}: not valid JSON" in circuit_error(folder)


@pytest.mark.parametrize("text", ['["square"]', '"square"', "null", "7"])
def test_circuit__manifest_not_an_object__names_it(folder, text):
    (folder / "circuit.json").write_text(text)
    assert (
        circuit_error(folder) == f"{folder / 'circuit.json'}: expected a JSON object (see docs/circuits.md)"
    )


def test_circuit__manifest_of_the_old_format__refused_naming_a_field(folder):
    """The format before circuit.json had a manifest model (kind, public, address_input)."""
    (folder / "circuit.json").write_text(
        json.dumps(
            {
                "name": "square",
                "kind": "square",
                "parameters": {},
                "public": ["prover", "y"],
                "private": ["x"],
                "address_input": "prover",
                "constraints": 2,
                "sample": {"x": 7, "y": 49},
            }
        )
    )
    message = circuit_error(folder)
    assert message.startswith(f"{folder / 'circuit.json'}: proving_system: missing")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("circuit.zkey", "proving_key"),
        ("verification_key.json", "verifying_key"),
        ("circuit.circom", "source"),
        ("circuit.wasm", "witness_generator"),
    ],
)
def test_circuit__file_missing__names_the_manifest_field_and_the_file(folder, name, field):
    (folder / name).unlink()
    assert circuit_error(folder) == f"{folder / 'circuit.json'}: files.{field}: {folder / name}: no such file"


def test_circuit__file_a_folder__refused_as_no_such_file(folder):
    (folder / "circuit.zkey").unlink()
    (folder / "circuit.zkey").mkdir()
    assert circuit_error(folder).startswith(f"{folder / 'circuit.json'}: files.proving_key: ")


def test_circuit__key_for_fewer_public_inputs__names_key_and_manifest(folder, key_data):
    """A well-formed key with the wrong number of points for the manifest's public signals."""
    key_data["IC"].pop()
    key_data["nPublic"] = 1
    (folder / "verification_key.json").write_text(json.dumps(key_data))
    assert circuit_error(folder) == (
        f"{folder / 'circuit.json'}: public_signals: 2 are named (prover, y) but verification_key.json has 1"
    )


@pytest.mark.parametrize(
    ("index", "field", "name"), [(1, "address_signal", "prover"), (2, "public_signals", "y")]
)
def test_circuit__public_signal_in_no_constraint__names_its_manifest_field(
    folder, key_data, index, field, name
):
    """A key whose IC point for a public signal is at infinity (as a setup that adds no
    constraint per public input makes for a signal in none): any value of it verifies."""
    key_data["IC"][index] = ["0", "1", "0"]
    (folder / "verification_key.json").write_text(json.dumps(key_data))
    assert circuit_error(folder) == (
        f"{folder / 'circuit.json'}: {field}: {name} takes part in no constraint (verification_key.json "
        f"has IC[{index}] at infinity): any value of it would verify, so add a constraint on it"
    )


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
        ({}, "missing x, y"),
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
    assert message.endswith("(it takes x (field), y (field); prover is the prover's address)")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (R, f"{R}, not a field element"),
        (R + 49, f"{R + 49}, not a field element"),
        (2**256, f"{2**256}, not a field element"),
        (-49, "-49, not a field element"),
        ("-49", "'-49', not a field element"),
        (hex(R), f"{hex(R)!r}, not a field element"),
        ("forty-nine", "'forty-nine', not a number"),
        ("", "'', not a number"),
        (True, "True, not a number (field)"),
        (49.0, "49.0, not a number (field)"),
        (None, "None, not a number (field)"),
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
    assert square.signal_inputs(square.sample, PROVER) == {"x": 7, "y": 49, "prover": int(PROVER, 16)}


def test_public_inputs__bad_input__refused_before_the_address_goes_in(square):
    with pytest.raises(CircuitError, match="input x is -7"):
        square.public_inputs({"x": -7, "y": 49}, PROVER)
    with pytest.raises(CircuitError, match="missing y"):
        square.signal_inputs({"x": 7}, PROVER)


@pytest.mark.parametrize("call", ["statement", "commitment", "public_inputs"])
def test_unsatisfiable_inputs__refused_naming_the_circuit_and_the_failed_constraint(square, call):
    """y is not x * x: no proof of them exists, whoever proves."""
    args = ({"x": 7, "y": 50}, PROVER) if call == "public_inputs" else ({"x": 7, "y": 50},)
    with pytest.raises(UnsatisfiedInputs) as error:
        getattr(square, call)(*args)
    assert str(error.value) == (
        "the inputs do not satisfy circuit square: a constraint is not satisfied (assert failed) "
        "(Error in template Square_0 line: 14)"
    )


def test_named__public_signals_by_name(square):
    assert square.named(square.public_inputs(square.sample, PROVER)) == {"prover": int(PROVER, 16), "y": 49}


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
