"""The checks `operator market create` runs before it opens a market (proving/checks.py),
without a chain: the proving key's header against the manifest and the witness generator,
the public signals in the proving system's order, outputs that do not depend on the
prover's address, and the sample proved with snarkjs and checked by a verifier. Each
refusal is one CircuitError starting with the manifest's path and naming the field to fix.

The verifier here is groth16py's `Verifier` over the circuit's verification_key.json (the
same pairing check as contracts/verifiers/Groth16Verifier.vy, run in this process);
the on-chain verifier runs it in tests/chain. Circuits other than the samples are compiled
here with circom2 from node_modules, and given keys by snarkjs when a test proves them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import groth16py
import pytest

from provingmarket.proving.backends import CommandBackend
from provingmarket.proving.checks import (
    PROBE_ADDRESSES,
    check_binding,
    check_circuit,
    check_keys,
    check_signal_order,
    zkey_header,
)
from provingmarket.proving.circuits import CIRCUITS, Circuit, CircuitError, sample_circuits
from provingmarket.proving.witness import WitnessGenerator
from tests.circuit_tools import compile_circom, groth16_setup

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "node_modules" / ".bin"
SQUARE = CIRCUITS / "square"
SQUARINGS = CIRCUITS / "squarings-1000"
ORDER = (
    "name them in the proving system's order (outputs first, then the public inputs as the circuit "
    "declares them)"
)

# The prover's address in no constraint: any value of it satisfies the circuit.
LOOSE = """pragma circom 2.0.0;
template Loose() {
    signal input prover;
    signal input y;
    signal input x;
    y === x * x;
}
component main {public [prover, y]} = Loose();
"""

# An output computed from the prover's address: tag = prover * x.
TAGGED = """pragma circom 2.0.0;
template Tagged() {
    signal input prover;
    signal input y;
    signal input x;
    signal output tag;
    tag <== prover * x;
    y === x * x;
}
component main {public [prover, y]} = Tagged();
"""


def write_manifest(folder: Path, **fields) -> Path:
    """circuit.json in `folder`: square's, with `fields` replaced (None drops one)."""
    data = json.loads((SQUARE / "circuit.json").read_text())
    data.update(fields)
    for name in [n for n, v in data.items() if v is None]:
        del data[name]
    (folder / "circuit.json").write_text(json.dumps(data, indent=2))
    return folder / "circuit.json"


def verifier(circuit: Circuit) -> Callable[[bytes, list[int]], bool]:
    """groth16py's verifier over the circuit's verification_key.json."""
    return groth16py.Verifier(
        groth16py.VerifyingKey.from_snarkjs_file(str(circuit.verification_key_file))
    ).verify


def refusal(check: Callable[..., object], *args: object) -> str:
    with pytest.raises(CircuitError) as error:
        check(*args)
    message = str(error.value)
    assert "\n" not in message, message
    return message


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the square circuit's folder, to spoil."""
    return Path(shutil.copytree(SQUARE, tmp_path / "square"))


@pytest.fixture(scope="module")
def snarkjs() -> CommandBackend:
    return CommandBackend.snarkjs(timeout=120)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> Path:
    """TAGGED compiled, with square's proving key (2 public signals) and square's verifying
    key given a third IC point, so that a manifest naming tag, prover, y loads."""
    folder = compile_circom(TAGGED, tmp_path_factory.mktemp("tagged"))
    shutil.copy(SQUARE / "circuit.zkey", folder / "circuit.zkey")
    key = json.loads((SQUARE / "verification_key.json").read_text())
    key["IC"].append(key["IC"][2])
    key["nPublic"] = 3
    (folder / "verification_key.json").write_text(json.dumps(key))
    return folder


def tagged_manifest(folder: Path, *names: str, **fields) -> Path:
    signals = [{"name": n, "output": True} if n == "tag" else {"name": n} for n in names]
    return write_manifest(folder, name="tagged", public_signals=signals, **fields)


# ------------------------------------------------------------------ proving key headers


@pytest.mark.parametrize("name", sample_circuits())
def test_zkey_header__samples__their_system_two_public_as_many_variables_as_the_witness(name):
    """PLONK's variables count its additions, which the witness lacks: the header says so."""
    header = zkey_header(CIRCUITS / name / "circuit.zkey")
    assert (header.protocol, header.public) == (Circuit.load(name).proving_system, 2)
    assert header.variables == WitnessGenerator(CIRCUITS / name / "circuit.wasm").size()


def test_zkey_header__square__five_variables():
    """1, prover, y, x, proverSquared."""
    assert zkey_header(SQUARE / "circuit.zkey").variables == 5


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not a snarkjs proving key (zkey)"),
        ((SQUARE / "circuit.wasm").read_bytes(), "not a snarkjs proving key (zkey)"),
        ((SQUARE / "circuit.zkey").read_bytes()[:100], "not a snarkjs proving key (zkey), or cut short"),
        ((SQUARE / "circuit.zkey").read_bytes()[:20], "not a snarkjs proving key (zkey), or cut short"),
    ],
    ids=["empty", "wasm", "cut-in-the-header", "cut-in-the-sections"],
)
def test_zkey_header__not_a_zkey__refused_with_the_path(tmp_path, content, says):
    path = tmp_path / "circuit.zkey"
    path.write_bytes(content)
    assert refusal(zkey_header, path) == f"{path}: {says}"


def test_zkey_header__no_such_file__refused_with_the_path(tmp_path):
    path = tmp_path / "circuit.zkey"
    assert refusal(zkey_header, path) == f"{path}: not a snarkjs proving key (zkey), or cut short"


# ------------------------------------------------------------------ keys and generator of one circuit


@pytest.mark.parametrize("name", sample_circuits())
def test_check_keys__samples__pass(name):
    check_keys(Circuit.load(name))


def test_check_keys__witness_generator_of_another_circuit__names_files_witness_generator(folder):
    shutil.copy(SQUARINGS / "circuit.wasm", folder / "circuit.wasm")
    assert refusal(check_keys, Circuit.load(folder)) == (
        f"{folder / 'circuit.json'}: files.witness_generator: circuit.wasm computes 1004 signals but "
        "circuit.zkey's circuit has 5: they are not the same circuit"
    )


def test_check_keys__proving_key_of_another_circuit__names_files_witness_generator(folder):
    shutil.copy(SQUARINGS / "circuit.zkey", folder / "circuit.zkey")
    assert refusal(check_keys, Circuit.load(folder)) == (
        f"{folder / 'circuit.json'}: files.witness_generator: circuit.wasm computes 5 signals but "
        "circuit.zkey's circuit has 1004: they are not the same circuit"
    )


def test_check_keys__proving_key_for_fewer_public_signals__names_public_signals(tagged):
    """The manifest and the verifying key name three public signals, the proving key has two."""
    manifest = tagged_manifest(tagged, "tag", "prover", "y")
    assert refusal(check_keys, Circuit.load(tagged)) == (
        f"{manifest}: public_signals: 3 are named but circuit.zkey has 2"
    )


def test_check_keys__proving_key_not_a_zkey__names_it(folder):
    shutil.copy(SQUARE / "circuit.wasm", folder / "circuit.zkey")
    assert refusal(check_keys, Circuit.load(folder)) == (
        f"{folder / 'circuit.zkey'}: not a snarkjs proving key (zkey)"
    )


# ------------------------------------------------------------------ public signal order


@pytest.mark.parametrize("name", sample_circuits())
def test_check_signal_order__samples__pass(name):
    circuit = Circuit.load(name)
    check_signal_order(circuit, circuit.check_inputs(circuit.sample))


def test_check_signal_order__square_listed_y_then_prover__names_public_signals_position_0(folder):
    manifest = write_manifest(folder, public_signals=[{"name": "y"}, {"name": "prover"}])
    circuit = Circuit.load(folder)
    assert refusal(check_signal_order, circuit, circuit.check_inputs(circuit.sample)) == (
        f"{manifest}: public_signals: position 0 is named y, but the circuit puts prover's value "
        f"there; {ORDER}"
    )


def test_check_signal_order__an_input_marked_an_output__names_public_signals(folder):
    """The circuit's prover input, declared by the manifest as an output p the witness computes."""
    manifest = write_manifest(
        folder,
        public_signals=[{"name": "p", "output": True}, {"name": "y"}],
        inputs={"x": "field", "y": "field", "prover": "address"},
        address_signal=None,
        binding="none",
        sample={"x": "7", "y": "49", "prover": "0x" + "ab" * 20},
    )
    circuit = Circuit.load(folder)
    assert refusal(check_signal_order, circuit, circuit.check_inputs(circuit.sample)) == (
        f"{manifest}: public_signals: p (position 0) is marked an output, but the proof has input "
        "prover's value there"
    )


def test_check_signal_order__sample_the_circuit_refuses__names_sample(folder):
    manifest = write_manifest(folder, sample={"x": "7", "y": "50"})
    circuit = Circuit.load(folder)
    assert refusal(check_signal_order, circuit, circuit.check_inputs(circuit.sample)) == (
        f"{manifest}: sample: the circuit refuses it (a constraint is not satisfied (assert failed) "
        "(Error in template Square_0 line: 14))"
    )


def test_check_signal_order__output_first__passes_and_comes_from_the_witness(tagged):
    tagged_manifest(tagged, "tag", "prover", "y")
    circuit = Circuit.load(tagged)
    check_signal_order(circuit, circuit.check_inputs(circuit.sample))
    assert circuit.outputs == ("tag",)
    assert circuit.public_inputs(circuit.sample, 5) == [35, 5, 49]


def test_check_signal_order__public_inputs_swapped_after_an_output__names_position_1(tagged):
    manifest = tagged_manifest(tagged, "tag", "y", "prover")
    circuit = Circuit.load(tagged)
    assert refusal(check_signal_order, circuit, circuit.check_inputs(circuit.sample)) == (
        f"{manifest}: public_signals: position 1 is named y, but the circuit puts prover's value "
        f"there; {ORDER}"
    )


# ------------------------------------------------------------------ outputs and the prover's address


def test_check_binding__output_computed_from_the_address__names_binding(tagged):
    manifest = tagged_manifest(tagged, "tag", "prover", "y")
    circuit = Circuit.load(tagged)
    assert refusal(check_binding, circuit, circuit.check_inputs(circuit.sample)) == (
        f"{manifest}: binding: output tag depends on the prover's address, so a task's statement cannot "
        "be fixed when it is posted; use commit-reveal or none"
    )


def test_check_binding__same_circuit_in_commit_reveal__the_address_is_the_requesters(tagged):
    tagged_manifest(
        tagged,
        "tag",
        "prover",
        "y",
        address_signal=None,
        binding="commit-reveal",
        inputs={"x": "field", "y": "field", "prover": "address"},
        sample={"x": "7", "y": "49", "prover": "5"},
    )
    circuit = Circuit.load(tagged)
    check_binding(circuit, circuit.check_inputs(circuit.sample))
    assert circuit.statement(circuit.sample) == [35, 5, 49]


@pytest.mark.parametrize("name", sample_circuits())
def test_check_binding__samples__no_outputs__pass(name):
    circuit = Circuit.load(name)
    check_binding(circuit, circuit.check_inputs(circuit.sample))


# ------------------------------------------------------------------ the sample proved and verified


def test_check_circuit__square__sample_proves_for_the_probe_address_only(snarkjs):
    circuit = Circuit.load("square")
    verify = verifier(circuit)
    proved = check_circuit(circuit, snarkjs, verify)
    assert proved.public_inputs == [PROBE_ADDRESSES[0], 49]
    assert proved.backend == "command"
    assert verify(proved.proof, proved.public_inputs)
    assert not verify(proved.proof, [PROBE_ADDRESSES[1], 49])
    assert not verify(proved.proof, [PROBE_ADDRESSES[0], 50])


def test_check_circuit__verifying_key_of_another_setup__names_files_verifying_key(folder, snarkjs):
    """square's proving key and witness generator with squarings-1000's verifying key (two
    public signals too): the sample proves, the verifier rejects it."""
    shutil.copy(SQUARINGS / "verification_key.json", folder / "verification_key.json")
    circuit = Circuit.load(folder)
    assert refusal(check_circuit, circuit, snarkjs, verifier(circuit)) == (
        f"{folder / 'circuit.json'}: files.verifying_key: the verifier rejects the sample's proof: "
        "verification_key.json and circuit.zkey are not keys of one setup"
    )


def test_check_circuit__proving_key_of_another_circuit__refused_before_proving(folder, snarkjs):
    shutil.copy(SQUARINGS / "circuit.zkey", folder / "circuit.zkey")
    circuit = Circuit.load(folder)
    assert refusal(check_circuit, circuit, snarkjs, verifier(circuit)).startswith(
        f"{folder / 'circuit.json'}: files.witness_generator: "
    )


def test_check_circuit__proving_key_cut_short__names_files_proving_key(folder, snarkjs):
    """The header reads, the proving key's sections do not: snarkjs fails, and says so."""
    zkey = folder / "circuit.zkey"
    zkey.write_bytes(zkey.read_bytes()[:2000])
    circuit = Circuit.load(folder)
    with pytest.raises(CircuitError) as error:
        check_circuit(circuit, snarkjs, verifier(circuit))
    assert str(error.value).startswith(
        f"{folder / 'circuit.json'}: files.proving_key: the sample does not prove (backend command bash "
        "failed with exit code 1; its output ended:\n"
    )


def test_check_circuit__sample_not_of_the_input_types__refused_before_proving(folder, snarkjs):
    """Circuit.load refuses such a sample; a Circuit made another way is checked again."""
    circuit = Circuit.load(folder)
    bad = circuit.manifest.model_copy(update={"sample": {"x": "7"}})
    spoiled = Circuit(circuit.manifest_file, bad)
    assert refusal(check_circuit, spoiled, snarkjs, verifier(circuit)).startswith(
        "inputs do not fit circuit square: missing y"
    )


def test_check_circuit__address_signal_in_no_constraint__still_bound_by_snarkjs_keys(tmp_path, snarkjs):
    """circom and the manifest format ask for a constraint on the address signal (square's
    proverSquared), and a key whose IC point for it is at infinity is refused on load
    (test_circuits.py). snarkjs's Groth16 setup, though, adds a constraint for each public
    input, so LOOSE, whose prover is in no constraint, gets a key whose point for prover is
    not at infinity: the proof made for one address fails for another, and the checks pass.
    The circuit has no files.source: the snarkjs backend proves without one."""
    folder = groth16_setup(compile_circom(LOOSE, tmp_path / "loose"))
    files = {"verifying_key": "verification_key.json", "proving_key": "circuit.zkey"}
    write_manifest(folder, name="loose", files={**files, "witness_generator": "circuit.wasm"})
    circuit = Circuit.load(folder)
    assert json.loads(circuit.verification_key_file.read_text())["IC"][1][2] == "1"
    verify = verifier(circuit)
    proved = check_circuit(circuit, snarkjs, verify)
    assert proved.public_inputs == [PROBE_ADDRESSES[0], 49]
    assert not verify(proved.proof, [PROBE_ADDRESSES[1], 49])
