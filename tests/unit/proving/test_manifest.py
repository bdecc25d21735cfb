"""The circuit manifest (circuit.json): every bad manifest is refused when the circuit is
loaded, with one line that starts with the manifest's path and names the field to fix;
good ones load, and a requester's values are read in the manifest's input types.

Each test edits the circuit.json of a copy of the sample circuit square (public signals
prover, y; inputs x, y; address signal prover; binding address-input)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from provingmarket.proving.circuits import CIRCUITS, Circuit, CircuitError
from provingmarket.proving.manifest import MAX_PUBLIC_SIGNALS, InputType, R, read_manifest

TYPES = "use field, bool, address, uintN (N up to 253), or an array of one such as field[8]"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the square circuit's folder, its circuit.json to edit."""
    return Path(shutil.copytree(CIRCUITS / "square", tmp_path / "square"))


def edit(folder: Path, change: Callable[[dict], object]) -> Path:
    """Apply `change` to the folder's manifest (a dict, edited in place); returns the manifest's path."""
    manifest = folder / "circuit.json"
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data, indent=2))
    return manifest


def refused(folder: Path, change: Callable[[dict], object]) -> str:
    """The CircuitError of loading the folder once `change` is applied: one line that starts
    with the manifest's path. Returns what follows the path."""
    manifest = edit(folder, change)
    with pytest.raises(CircuitError) as error:
        Circuit.load(folder)
    message = str(error.value)
    assert message.startswith(f"{manifest}: "), message
    assert "\n" not in message, message
    return message.removeprefix(f"{manifest}: ")


def signals(*names: str, outputs: tuple[str, ...] = ()) -> list[dict]:
    return [{"name": n, "output": True} if n in outputs else {"name": n} for n in names]


# ------------------------------------------------------------------ good manifests


def test_manifest__sample_square__read_as_written():
    circuit = Circuit.load("square")
    assert circuit.proving_system == "groth16"
    assert (circuit.public, circuit.outputs, circuit.address_signal) == (("prover", "y"), (), "prover")
    assert (circuit.address_input, circuit.binding, circuit.private) == (0, "address-input", ("x",))
    assert {name: t.text for name, t in circuit.inputs.items()} == {"x": "field", "y": "field"}
    assert circuit.zkey == CIRCUITS / "square" / "circuit.zkey"
    assert circuit.wasm == CIRCUITS / "square" / "circuit.wasm"
    assert circuit.source == CIRCUITS / "square" / "circuit.circom"
    assert circuit.verification_key_file == CIRCUITS / "square" / "verification_key.json"
    assert circuit.constraints == 2


@pytest.mark.parametrize("name", ["description", "constraints", "setup"])
def test_manifest__optional_field_left_out__loads(folder, name):
    edit(folder, lambda d: d.pop(name))
    assert Circuit.load(folder).name == "square"


def test_manifest__optional_files_left_out__loads_and_says_so_when_asked(folder):
    manifest = edit(folder, lambda d: d["files"].pop("source"))
    circuit = Circuit.load(folder)
    with pytest.raises(CircuitError, match=f"^{manifest}: files.source is not given$"):
        circuit.source  # noqa: B018


def test_manifest__without_an_address_signal__its_public_input_is_the_requesters(folder):
    """A circuit that binds no prover may still be opened for commit-reveal or assigned tasks;
    prover is then a public input like any other, which the requester supplies."""
    for binding in ("commit-reveal", "none"):

        def change(d, binding=binding):
            d.pop("address_signal", None)
            d["binding"] = binding
            d["inputs"]["prover"] = "address"
            d["sample"]["prover"] = "0x" + "ab" * 20

        edit(folder, change)
        circuit = Circuit.load(folder)
        assert (circuit.binding, circuit.address_signal, circuit.address_input) == (binding, None, None)
        assert circuit.statement(circuit.sample) == [int("ab" * 20, 16), 49]


def test_manifest__typed_inputs__sample_read_in_its_types(folder):
    edit(
        folder,
        lambda d: (
            d["inputs"].update(flag="bool", byte="uint8", who="address", grid="field[2][3]"),
            d["sample"].update(
                flag=True, byte="0xff", who="0x" + "ab" * 20, grid=[[1, 2, 3], ["4", "0x5", 6]]
            ),
        ),
    )
    circuit = Circuit.load(folder)
    assert circuit.check_inputs(circuit.sample) == {
        "x": 7,
        "y": 49,
        "flag": 1,
        "byte": 255,
        "who": int("ab" * 20, 16),
        "grid": [[1, 2, 3], [4, 5, 6]],
    }
    assert circuit.private == ("x", "flag", "byte", "who", "grid")


def test_manifest__sixteen_public_signals__read(folder):
    """The bound is the verifiers': 16 is a manifest (a key with as many points then decides)."""
    names = ["prover", "y"] + [f"p{i}" for i in range(MAX_PUBLIC_SIGNALS - 2)]
    manifest = edit(
        folder,
        lambda d: (
            d.update(public_signals=signals(*names)),
            d["inputs"].update(dict.fromkeys(names[2:], "field")),
        ),
    )
    assert [s.name for s in read_manifest(manifest).public_signals] == names
    with pytest.raises(CircuitError, match=f"^{manifest}: public_signals: 16 are named .* has 2$"):
        Circuit.load(folder)


# ------------------------------------------------------------------ missing and unknown fields


@pytest.mark.parametrize(
    "name", ["name", "proving_system", "files", "public_signals", "inputs", "binding", "sample"]
)
def test_manifest__required_field_missing__named(folder, name):
    assert refused(folder, lambda d: d.pop(name)) == f"{name}: missing"


def test_manifest__verifying_key_missing__named(folder):
    assert refused(folder, lambda d: d["files"].pop("verifying_key")) == "files.verifying_key: missing"


def test_manifest__public_signal_without_a_name__named(folder):
    assert refused(folder, lambda d: d["public_signals"][1].pop("name")) == "public_signals.1.name: missing"


def test_manifest__proving_key_missing_without_a_prover_command__named(folder):
    assert refused(folder, lambda d: d["files"].pop("proving_key")) == (
        "files.proving_key: needed unless prover_command is given"
    )


def test_manifest__witness_generator_missing_without_a_prover_command__named(folder):
    assert refused(folder, lambda d: d["files"].pop("witness_generator")) == (
        "files.witness_generator: needed to prove with snarkjs (or give prover_command)"
    )


def test_manifest__witness_generator_missing_with_outputs__needed_for_them(folder):
    def change(d):
        d["files"].pop("witness_generator")
        d["prover_command"] = ["my-prover", "{inputs}", "{proof}"]
        d["public_signals"] = signals("z", "prover", "y", outputs=("z",))

    assert refused(folder, change) == (
        "files.witness_generator: needed to compute the outputs and check requesters' inputs"
    )


@pytest.mark.parametrize(
    ("change", "field", "fields"),
    [
        (
            lambda d: d.update(bindng="none"),
            "bindng",
            "name, description, proving_system, files, prover_command, public_signals, inputs, "
            "address_signal, binding, sample, constraints, setup",
        ),
        (
            lambda d: d.update(address_input="prover"),
            "address_input",
            "name, description, proving_system, files, prover_command, public_signals, inputs, "
            "address_signal, binding, sample, constraints, setup",
        ),
        (
            lambda d: d["files"].update(proving_kye="circuit.zkey"),
            "files.proving_kye",
            "verifying_key, proving_key, witness_generator, source",
        ),
        (lambda d: d["public_signals"][1].update(outptu=True), "public_signals.1.outptu", "name, output"),
    ],
    ids=["top-level", "old-address-input", "files", "public-signal"],
)
def test_manifest__unknown_field__named_with_the_known_ones(folder, change, field, fields):
    assert refused(folder, change) == f"{field}: unknown field (fields: {fields})"


# ------------------------------------------------------------------ values of the wrong shape


@pytest.mark.parametrize(
    ("field", "value", "choices"),
    [
        ("proving_system", "Groth16", "'groth16' or 'plonk'"),
        ("proving_system", "fflonk", "'groth16' or 'plonk'"),
        ("binding", "address", "'address-input', 'commit-reveal' or 'none'"),
        ("binding", "commit_reveal", "'address-input', 'commit-reveal' or 'none'"),
    ],
)
def test_manifest__not_one_of_the_choices__named(folder, field, value, choices):
    assert refused(folder, lambda d: d.update({field: value})) == (
        f"{field}: {value!r} is not one of the choices ({choices})"
    )


@pytest.mark.parametrize("text", ["fild", "uint0", "uint254", "field[0]", "Field", "uint", "field[]", "int8"])
def test_manifest__bad_input_type__named(folder, text):
    assert refused(folder, lambda d: d["inputs"].update(x=text)) == f"inputs: {text!r} is not a type: {TYPES}"


def test_manifest__bad_input_name__named(folder):
    assert (
        refused(folder, lambda d: d["inputs"].update({"1x": "field"})) == "inputs: '1x' is not a signal name"
    )


def test_manifest__name_not_a_slug__named(folder):
    assert refused(folder, lambda d: d.update(name="Square Circuit")).startswith("name: ")


@pytest.mark.parametrize("value", ["many", -1, 2.5])
def test_manifest__constraints_not_a_count__named(folder, value):
    assert refused(folder, lambda d: d.update(constraints=value)).startswith("constraints: ")


def test_manifest__empty_prover_command__named(folder):
    assert refused(folder, lambda d: d.update(prover_command=[])) == (
        "prover_command: should be a non-empty list of arguments, or left out"
    )


# ------------------------------------------------------------------ fields that disagree


def test_manifest__public_input_missing_from_inputs__named(folder):
    assert refused(folder, lambda d: d["inputs"].pop("y")) == (
        "inputs: public input y is missing (a requester supplies every public input but the address)"
    )


def test_manifest__public_input_an_array__named(folder):
    assert refused(folder, lambda d: d["inputs"].update(y="field[2]")) == (
        "inputs: public input y must be a single value, not an array"
    )


def test_manifest__output_in_inputs__named(folder):
    def change(d):
        d["public_signals"] = signals("z", "prover", "y", outputs=("z",))
        d["inputs"]["z"] = "field"

    assert refused(folder, change) == (
        "inputs: z is an output (computed from the witness); a requester does not supply it"
    )


def test_manifest__address_in_inputs__named(folder):
    assert refused(folder, lambda d: d["inputs"].update(prover="address")) == (
        "inputs: prover is the prover's address; a requester does not supply it"
    )


def test_manifest__output_after_an_input__named(folder):
    assert refused(
        folder, lambda d: d.update(public_signals=signals("prover", "z", "y", outputs=("z",)))
    ) == (
        "public_signals: output z comes after input prover; circom orders a proof's public signals "
        "outputs first, then public inputs"
    )


def test_manifest__public_signal_listed_twice__named(folder):
    assert refused(folder, lambda d: d.update(public_signals=signals("prover", "y", "y"))) == (
        "public_signals: y is listed twice"
    )


def test_manifest__no_public_signal__named(folder):
    assert refused(folder, lambda d: d.update(public_signals=[])).startswith("public_signals: ")


def test_manifest__more_than_16_public_signals__named(folder):
    names = ["prover", "y"] + [f"p{i}" for i in range(MAX_PUBLIC_SIGNALS - 1)]

    def change(d):
        d["public_signals"] = signals(*names)
        d["inputs"].update({n: "field" for n in names[2:]})

    message = refused(folder, change)
    assert message.startswith("public_signals: ")
    assert "at most 16" in message


def test_manifest__address_signal_not_a_public_signal__named(folder):
    assert refused(folder, lambda d: d.update(address_signal="x")) == (
        "address_signal: x is not one of public_signals"
    )


def test_manifest__address_signal_an_output__named(folder):
    def change(d):
        d["public_signals"] = signals("z", "prover", "y", outputs=("z",))
        d["address_signal"] = "z"

    assert refused(folder, change) == (
        "address_signal: z is an output; the prover's address must be a public input"
    )


@pytest.mark.parametrize(
    "change", [lambda d: d.pop("address_signal"), lambda d: d.update(address_signal=None)]
)
def test_manifest__address_input_binding_without_address_signal__named(folder, change):
    assert refused(folder, change) == (
        "binding: address-input needs address_signal (a public input the circuit constrains that "
        "carries the prover's address); without one use commit-reveal or none"
    )


@pytest.mark.parametrize("binding", ["none", "commit-reveal"])
def test_manifest__address_signal_with_another_binding__named(folder, binding):
    assert refused(folder, lambda d: d.update(binding=binding)) == (
        f"binding: {binding} does not use address_signal prover; use address-input, or leave "
        "address_signal out"
    )


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("source", "nope.circom"),
        ("verifying_key", "vk.json"),
        ("proving_key", "keys/circuit.zkey"),
        ("witness_generator", "circuit_js/circuit.wasm"),
    ],
)
def test_manifest__file_named_that_does_not_exist__named(folder, field, name):
    assert refused(folder, lambda d: d["files"].update({field: name})) == (
        f"files.{field}: {folder / name}: no such file"
    )


# ------------------------------------------------------------------ the sample


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        ("bool", 2, "input x is 2, which is not 0 or 1"),
        ("bool", "2", "input x is 2, which is not 0 or 1"),
        ("uint8", 256, "input x is 256, which is not below 2^8 (uint8)"),
        ("uint8", "0x100", "input x is 256, which is not below 2^8 (uint8)"),
        ("address", 2**160, f"input x is {2**160}, which is not below 2^160 (address)"),
        ("field", R, f"input x is {R}, not a field element (0 <= value < the BN254 scalar field)"),
        ("field", str(R), f"input x is '{R}', not a field element (0 <= value < the BN254 scalar field)"),
        ("field", -1, "input x is -1, not a field element (0 <= value < the BN254 scalar field)"),
        ("field", "seven", "input x is 'seven', not a number"),
        ("field[3]", [1, 2], "input x should be a list of 3 (field[3])"),
        ("field[3]", 1, "input x should be a list of 3 (field[3])"),
        ("field[2][2]", [[1, 2], [3]], "input x[1] should be a list of 2 (field[2][2])"),
        ("bool[2]", [1, 2], "input x[1] is 2, which is not 0 or 1"),
    ],
)
def test_manifest__sample_not_of_the_input_types__named(folder, kind, value, says):
    def change(d):
        d["inputs"]["x"] = kind
        d["sample"]["x"] = value

    assert refused(folder, change) == f"sample: {says}"


def test_manifest__sample_missing_an_input__named(folder):
    assert refused(folder, lambda d: d["sample"].pop("x")) == (
        "sample: inputs do not fit circuit square: missing x (it takes x (field), y (field); prover is "
        "the prover's address)"
    )


def test_manifest__sample_giving_the_address__named(folder):
    assert refused(folder, lambda d: d["sample"].update(prover="1")).startswith(
        "sample: inputs do not fit circuit square: unknown prover ("
    )


# ------------------------------------------------------------------ input types


@pytest.mark.parametrize(
    ("text", "base", "shape", "bits", "size"),
    [
        ("field", "field", (), None, 1),
        ("bool", "bool", (), 1, 1),
        ("address", "address", (), 160, 1),
        ("uint1", "uint1", (), 1, 1),
        ("uint253", "uint253", (), 253, 1),
        ("field[20]", "field", (20,), None, 20),
        ("bool[4][2]", "bool", (4, 2), 1, 8),
    ],
)
def test_input_type__read(text, base, shape, bits, size):
    kind = InputType(text)
    assert (kind.base, kind.shape, kind.bits, kind.size) == (base, shape, bits, size)


@pytest.mark.parametrize(
    ("text", "value", "read"),
    [
        ("bool", True, 1),
        ("bool", False, 0),
        ("bool", "1", 1),
        ("uint8", 255, 255),
        ("uint253", 2**253 - 1, 2**253 - 1),
        ("field", R - 1, R - 1),
        ("field", " 0x31 ", 49),
        ("address", "0x" + "ff" * 20, 2**160 - 1),
        ("uint8[2][2]", [[1, 2], ["3", "0x4"]], [[1, 2], [3, 4]]),
    ],
)
def test_input_type__values_at_the_bounds__read(text, value, read):
    assert InputType(text).read(value, "input v") == read


@pytest.mark.parametrize(("text", "value"), [("uint253", 2**253), ("field", True), ("uint8", True)])
def test_input_type__values_past_the_bounds__refused(text, value):
    with pytest.raises(ValueError, match="^input v is "):
        InputType(text).read(value, "input v")


def test_manifest__more_values_than_a_task_may_post__named(folder):
    message = refused(folder, lambda d: d["inputs"].update(x="field[4097]"))
    assert message == "inputs: more than 4096 values in all"
