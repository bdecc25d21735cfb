"""Proving backends off the chain: configurations and their refusals, placeholders of a
command backend, and groth16py missing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from provingmarket.proving.backends import (
    PLACEHOLDERS,
    BackendError,
    CommandBackend,
    Groth16pyBackend,
    backend_from_config,
)
from provingmarket.proving.circuits import CIRCUITS, Circuit

SNARKJS_PROVE = CIRCUITS / "snarkjs-prove.sh"


@pytest.mark.parametrize("command", [[], "prover --out {proof}", ["prover", 3], None])
def test_command__no_command__refused(command):
    with pytest.raises(
        BackendError, match="the command backend needs a command: a non-empty list of strings"
    ):
        CommandBackend(command)


def test_config__groth16py__in_process_backend():
    assert isinstance(backend_from_config({"backend": "groth16py"}), Groth16pyBackend)


def test_config__snarkjs__command_backend_running_the_script():
    def check(proof, public):
        return True

    backend = backend_from_config({"backend": "snarkjs", "timeout": 120}, check)
    assert isinstance(backend, CommandBackend)
    assert backend.command == [
        "bash",
        str(SNARKJS_PROVE),
        "{wasm}",
        "{zkey}",
        "{inputs}",
        "{proof}",
        "{public}",
        "{proving_system}",
    ]
    assert (backend.timeout, backend.check) == (120.0, check)
    assert backend_from_config({"backend": "snarkjs"}).timeout == 600.0


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({}, "unknown backend None: use auto, groth16py, snarkjs or command"),
        ({"backend": "risc0"}, "unknown backend 'risc0': use auto, groth16py, snarkjs or command"),
        ({"backend": "Groth16py"}, "unknown backend 'Groth16py'"),
        ({"backend": "command"}, "needs command: a list of arguments"),
        ({"backend": "command", "command": "prover --out {proof}"}, "needs command: a list of arguments"),
        ({"backend": "command", "command": []}, "needs a command: a non-empty list of strings"),
        ({"backend": "command", "command": ["prover", 3]}, "needs a command: a non-empty list of strings"),
        (
            {"backend": "snarkjs", "timeout": "soon"},
            "timeout should be a positive number of seconds, not 'soon'",
        ),
        ({"backend": "snarkjs", "timeout": 0}, "timeout should be a positive number of seconds, not 0"),
        ({"backend": "snarkjs", "timeout": -5}, "timeout should be a positive number of seconds, not -5"),
        ({"backend": "snarkjs", "timeout": None}, "timeout should be a positive number of seconds, not None"),
        ({"backend": "snarkjs", "timeout": True}, "timeout should be a positive number of seconds, not True"),
        ({"backend": "snarkjs", "timeout": float("inf")}, "timeout should be a positive number of seconds"),
    ],
)
def test_config__invalid__backend_error(config, says):
    with pytest.raises(BackendError) as error:
        backend_from_config(config)
    assert says in str(error.value)


def test_command_placeholders__substituted_once__a_path_naming_one_is_left_alone():
    backend = CommandBackend(["prove", "--in={inputs}", "{proof}", "{unknown}"])
    values = {name: f"/tmp/{name}" for name in PLACEHOLDERS}
    values["inputs"] = "/tmp/odd{proof}dir/input.json"
    assert backend._argv(values) == ["prove", "--in=/tmp/odd{proof}dir/input.json", "/tmp/proof", "{unknown}"]


def test_groth16py_backend__library_missing__says_how_to_install(monkeypatch):
    """groth16py is an optional (GPL-3.0) extra: without it the backend says what to do."""
    monkeypatch.setitem(sys.modules, "groth16py", None)  # makes `import groth16py` fail
    with pytest.raises(BackendError, match="pip install -r requirements-groth16py.txt"):
        Groth16pyBackend()


def test_command__file_placeholder_the_manifest_does_not_give__refused_naming_the_field(tmp_path):
    """files.source is optional: a command that needs it says so (the snarkjs one does not;
    test_checks.py proves a circuit without a source)."""
    folder = Path(shutil.copytree(CIRCUITS / "square", tmp_path / "square"))
    manifest = json.loads((folder / "circuit.json").read_text())
    del manifest["files"]["source"]
    (folder / "circuit.json").write_text(json.dumps(manifest))
    circuit = Circuit.load(folder)
    backend = CommandBackend(["groth16py-prove", "{source}", "{zkey}", "{inputs}", "{proof}"])
    with pytest.raises(BackendError) as error:
        backend.prove(circuit, circuit.sample, "0x" + "ab" * 20)
    assert str(error.value) == (
        "the backend command uses {source}, but the circuit's manifest gives no files.source"
    )


# ------------------------------------------------------------------ auto


def test_auto__groth16py_where_it_can__snarkjs_for_the_rest__from_a_folder_given_relatively(monkeypatch):
    """groth16py proves every Groth16 circuit (the sample from its source; a circomlib one,
    whose includes it cannot compile, from the witness generator's witness); PLONK goes to
    snarkjs. The circuit is named by a path relative to the working directory, which the
    prover command does not run in."""
    monkeypatch.chdir(CIRCUITS.parents[2])
    auto = backend_from_config({"backend": "auto", "timeout": 120})
    prover = "0x" + "11" * 20
    used = {}
    for name in ("square", "circuits/foreign/poseidon-preimage", "square-plonk"):
        circuit = Circuit.load(name)
        result = auto.prove(circuit, circuit.sample, prover)
        assert result.public_inputs == circuit.public_inputs(circuit.sample, prover)
        used[name] = result.backend
    assert used == {
        "square": "groth16py",
        "circuits/foreign/poseidon-preimage": "groth16py",
        "square-plonk": "command",
    }


def test_groth16py__circomlib_circuit__proven_from_the_witness_generators_witness():
    """groth16py cannot compile circomlib's includes; it proves from the witness the
    circuit's own generator computes (a .wtns file), arrays included, and checks the proof
    against the verifying key before returning it."""
    circuit = Circuit.load(CIRCUITS.parents[2] / "circuits" / "foreign" / "merkle-inclusion")
    inputs = dict(circuit.sample, pathIndices=[1] * 8)
    result = Groth16pyBackend().prove(circuit, inputs, "0x" + "22" * 20)
    assert result.backend == "groth16py" and len(result.proof) == 256
    assert result.public_inputs == circuit.public_inputs(inputs, 0)  # the root the path gives
    assert result.public_inputs != circuit.public_inputs(circuit.sample, 0)
