"""Circuits nobody on this project wrote, from files to a market to paid proofs, with the
documented commands alone (docs/circuits.md): `operator market create FOLDER`, `prover
stake` and `join`, `requester post --inputs-file` (the witness generator computes the
outputs), `prover lock` and `prove`, `requester proof` (signals by name).

The circuits: three built from circomlib templates and committed with their build script
(circuits/foreign/: a Poseidon preimage with a public hash output bound by address, a
depth-8 Merkle inclusion proof with a public root under commit-reveal, four public outputs
and no address input), the PLONK sample (a second proving system: snarkjs's Solidity
verifier behind the same IVerifier, a custom market), and a circuit written here the way a
user brings one: circom source, keys from a snarkjs Groth16 setup, a manifest by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from provingmarket.formats import DUTCH
from provingmarket.proving.circuits import CIRCUITS, Circuit
from tests.circuit_tools import compile_circom, groth16_setup, write_manifest
from tests.factories import advance

ETHER = 10**18
FOREIGN = Path(__file__).resolve().parents[2] / "circuits" / "foreign"

# Two public inputs and two public outputs, no input carrying the prover's address:
# "I know a secret s with s * a = prod and s + b = total".
USERS_CIRCUIT = """pragma circom 2.0.0;
template Blend() {
    signal input a;
    signal input b;
    signal input s;
    signal output prod;
    signal output total;
    prod <== s * a;
    total <== s + b;
}
component main {public [a, b]} = Blend();
"""

USERS_MANIFEST = {
    "name": "blend",
    "description": "I know s with s * a = prod and s + b = total",
    "proving_system": "groth16",
    "files": {
        "verifying_key": "verification_key.json",
        "proving_key": "circuit.zkey",
        "witness_generator": "circuit.wasm",
    },
    "public_signals": [
        {"name": "prod", "output": True},
        {"name": "total", "output": True},
        {"name": "a"},
        {"name": "b"},
    ],
    "inputs": {"a": "field", "b": "field", "s": "field"},
    "binding": "none",
    "sample": {"a": "3", "b": "4", "s": "5"},
}

# Each circuit and inputs a requester posts for it (not its sample).
CASES = {
    "poseidon-preimage": (FOREIGN / "poseidon-preimage", {"x": "987654321"}),
    "merkle-inclusion": (
        FOREIGN / "merkle-inclusion",
        {"leaf": "777", "pathElements": [str(11 * i) for i in range(1, 9)], "pathIndices": [0, 1] * 4},
    ),
    "multi-output": (FOREIGN / "multi-output", {"a": "1000", "b": "20", "salt": "0x2a"}),
    "square-plonk": (CIRCUITS / "square-plonk", {"x": "11", "y": "121"}),
    "users-own": (None, {"a": "6", "b": "100", "s": "9"}),
}


@pytest.fixture(scope="module")
def users_circuit(tmp_path_factory) -> Path:
    folder = compile_circom(USERS_CIRCUIT, tmp_path_factory.mktemp("blend"))
    groth16_setup(folder)
    write_manifest(folder, USERS_MANIFEST)
    return folder


@pytest.mark.parametrize("name", CASES)
def test_own_circuit__from_files_to_a_market__task_locked_proven_paid_and_shown_by_name(
    run, recorded, registry, chain, accounts, users_circuit, tmp_path, name
):
    folder, inputs = CASES[name]
    folder = folder or users_circuit
    circuit = Circuit.load(folder)
    prover = accounts[7]

    created = run("operator", "market", "create", str(folder), "--json", account="TEST::0")
    assert created.code == 0, created.err
    opened = created.json()
    market_id = opened["market_id"]
    market = registry.market(market_id)
    assert opened["binding"] == circuit.binding
    assert market.custom == (circuit.proving_system == "plonk")  # PLONK has no blueprint
    assert market.address_input == (circuit.address_input or 0)

    shown = run("operator", "market", "show", str(market_id), "--json").json()
    assert (shown["proving_system"], shown["public_signals"]) == (
        circuit.proving_system,
        list(circuit.public),
    )
    assert shown["custom"] == market.custom and shown["codehash"] == "0x" + bytes(market.codehash).hex()

    trust = ["--trust-verifier", shown["codehash"]] if market.custom else []
    staked = run("prover", "stake", "1", account="TEST::7")
    assert staked.code == 0, staked.err
    joined = run(
        "prover", "join", str(market_id), "--capacity", "2", "--ask", "0.01", "--proving-time", "60",
        *trust, account="TEST::7",
    )  # fmt: skip
    assert joined.code == 0, joined.err

    inputs_file = tmp_path / "inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    posted = run(
        "requester", "post", str(market_id), "--inputs-file", str(inputs_file), "--mechanism", str(DUTCH),
        "--reward", "0.05", "--start-price", "0.01", "--ramp", "600", "--json", account="TEST::1",
    )  # fmt: skip
    assert posted.code == 0, posted.err
    task = posted.json()["task_id"]
    advance(chain, 30)

    balance = registry.balances(prover)
    locked = run("prover", "lock", task, "--json", account="TEST::7")
    assert locked.code == 0, locked.err
    proved = run("prover", "prove", task, "--backend", "snarkjs", "--json", account="TEST::7")
    assert proved.code == 0, proved.err
    assert registry.balances(prover) - balance == locked.json()["price"]

    shown = run("requester", "proof", task, "--json")
    assert shown.code == 0, shown.err
    (delivered,) = shown.json()["proofs"]
    expected = circuit.named(circuit.public_inputs(circuit.check_inputs(inputs), prover.address))
    assert delivered["public_signals"] == {k: str(v) for k, v in expected.items()}
    assert set(circuit.outputs) <= set(delivered["public_signals"])
    status = run("requester", "status", task, "--json").json()
    statement = circuit.named(circuit.statement(circuit.check_inputs(inputs)))
    assert status["public_signals"] == {k: str(v) for k, v in statement.items()}


# ------------------------------------------------------------------ refused before anything is sent


def square_copy(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(CIRCUITS / "square", folder)
    return folder


def edit(folder: Path, **fields) -> Path:
    """Change the manifest's fields (None drops one)."""
    path = folder / "circuit.json"
    data = json.loads(path.read_text())
    data.update(fields)
    for name in [n for n, v in data.items() if v is None]:
        del data[name]
    path.write_text(json.dumps(data, indent=2))
    return folder


def bad_circuits(tmp_path: Path, users_circuit: Path) -> list[tuple[Path, str]]:
    """(folder, what the one-line error says after the manifest's path) per bad input."""
    cases = []
    folder = edit(square_copy(tmp_path, "missing"), binding=None)
    cases.append((folder, "binding: missing"))
    folder = edit(square_copy(tmp_path, "misspelled"), bindng="address-input")
    cases.append((folder, "bindng: unknown field (fields: name, description, proving_system, files,"))
    folder = square_copy(tmp_path, "other-wasm")
    shutil.copy(CIRCUITS / "squarings-1000" / "circuit.wasm", folder / "circuit.wasm")
    cases.append((folder, "files.witness_generator: circuit.wasm computes 1004 signals but circuit.zkey's"))
    folder = edit(square_copy(tmp_path, "order"), public_signals=[{"name": "y"}, {"name": "prover"}])
    cases.append((folder, "public_signals: position 0 is named y, but the circuit puts prover's value there"))
    folder = edit(square_copy(tmp_path, "unsatisfied"), sample={"x": "7", "y": "50"})
    cases.append((folder, "sample: the circuit refuses it (a constraint is not satisfied"))
    folder = square_copy(tmp_path, "unconstrained")
    key = json.loads((folder / "verification_key.json").read_text())
    key["IC"][1] = ["0", "1", "0"]  # the prover's address in no constraint: any address verifies
    (folder / "verification_key.json").write_text(json.dumps(key))
    cases.append((folder, "address_signal: prover takes part in no constraint"))
    folder = tmp_path / "unbindable"
    shutil.copytree(users_circuit, folder)
    edit(folder, binding="address-input")
    cases.append((folder, "binding: address-input needs address_signal"))
    folder = tmp_path / "mismatched-keys"
    shutil.copytree(users_circuit, folder)
    other = groth16_setup(compile_circom(USERS_CIRCUIT, tmp_path / "other-setup"))
    shutil.copy(other / "verification_key.json", folder / "verification_key.json")
    cases.append((folder, "files.verifying_key: the verifier rejects the sample's proof"))
    return cases


def test_market_create__each_bad_circuit__one_line_naming_file_and_field_exit_1_nothing_sent(
    run, recorded, registry, accounts, users_circuit, tmp_path
):
    owner = accounts[0]
    nonce, markets = owner.nonce, registry.market_count()
    for folder, says in bad_circuits(tmp_path, users_circuit):
        result = run("operator", "market", "create", str(folder), account="TEST::0")
        assert result.code == 1, (folder.name, result.out)
        assert result.error.count("\n") == 0 and result.error.startswith("error: "), result.error
        assert result.error.startswith(f"error: {folder / 'circuit.json'}: {says}"), result.error
    assert owner.nonce == nonce  # no verifier deployed, no market created: nothing sent
    assert registry.market_count() == markets
