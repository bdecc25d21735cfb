"""Proving backends on anvil: groth16py in-process and snarkjs through the command backend
make proofs of the sample circuits that the Groth16 verifier accepts, bound to the
prover's address; inputs that do not satisfy a circuit and every way an external command
can fail give a BackendError saying what happened, never a proof."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provingmarket.proving.backends import (
    BackendError,
    CommandBackend,
    Groth16pyBackend,
    ProofResult,
    backend_from_config,
)
from provingmarket.proving.circuits import (
    CIRCUITS,
    PROOF_SIZE,
    Circuit,
    CircuitError,
    UnsatisfiedInputs,
    sample_inputs,
)

CIRCUIT_NAMES = ("square", "squarings-1000")


@pytest.fixture(scope="module")
def circuits():
    return {name: Circuit.load(name) for name in CIRCUIT_NAMES}


@pytest.fixture(scope="module")
def verifiers(deploy_verifier, circuits):
    """A Groth16 verifier on anvil per circuit, deployed with the circuit's own key."""
    return {name: deploy_verifier(circuit) for name, circuit in circuits.items()}


@pytest.fixture(scope="module")
def groth16py():
    return Groth16pyBackend()


@pytest.fixture(scope="module")
def snarkjs():
    return CommandBackend.snarkjs(timeout=120)


@pytest.fixture(scope="module")
def prove(circuits, groth16py, snarkjs):
    """prove(backend, circuit name, prover, secret=None): a ProofResult, made once per
    arguments (None proves the circuit's sample)."""
    backends = {"groth16py": groth16py, "snarkjs": snarkjs}
    made: dict[tuple, ProofResult] = {}

    def make(backend: str, name: str, prover, secret: int | None = None) -> ProofResult:
        key = (backend, name, prover.address, secret)
        if key not in made:
            circuit = circuits[name]
            inputs = circuit.sample if secret is None else sample_inputs(circuit, secret)
            made[key] = backends[backend].prove(circuit, inputs, prover.address)
        return made[key]

    return make


def python(code: str, *args: str) -> list[str]:
    """A command running `code` in this Python, with `args` (placeholders) as sys.argv[1:]."""
    return [sys.executable, "-c", code, *args]


WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"  # write argv[2] into argv[1]


def command_error(command: list[str], circuits, prover, timeout: float = 30, check=None) -> str:
    """Prove the square circuit's sample with `command`; the BackendError's message."""
    backend = CommandBackend(command, timeout=timeout, check=check)
    with pytest.raises(BackendError) as error:
        backend.prove(circuits["square"], circuits["square"].sample, prover.address)
    return str(error.value)


PR_SET_CHILD_SUBREAPER = 36  # prctl(2): orphans of our children become our children


@pytest.fixture
def command_group(monkeypatch):
    """The process group of the backend command this test runs, its processes ours alone:
    the test process becomes the reaper of whatever the command leaves behind
    (PR_SET_CHILD_SUBREAPER), so it sees exactly the processes it started and never looks at
    any other on the machine. Yields a list holding the group's id once the command started."""
    libc = ctypes.CDLL(None, use_errno=True)
    groups: list[int] = []
    popen = subprocess.Popen

    def recording(*args, **kwargs):
        process = popen(*args, **kwargs)
        if kwargs.get("start_new_session"):  # the backend's command: a group of its own
            groups.append(process.pid)
        return process

    monkeypatch.setattr(subprocess, "Popen", recording)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield groups
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def outlived(group: int, seconds: float = 5) -> bool:
    """Whether a process of `group` (our children by then) still runs after `seconds`,
    reaping those that end; any left is killed, so the test leaves nothing behind."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-group, os.WNOHANG)
        except ChildProcessError:
            return False  # none of the group is left
        if pid == 0:
            time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    return True


# ------------------------------------------------------------------ groth16py


@pytest.mark.parametrize("backend, reported", [("groth16py", "groth16py"), ("snarkjs", "command")])
@pytest.mark.parametrize("name", CIRCUIT_NAMES)
def test_backend__sample_circuit__proof_verifies_on_chain(
    circuits, verifiers, prove, prover, name, backend, reported
):
    """Both backends, the in-process one and snarkjs (a second, independent tool), with
    the same keys: the proof verifies on-chain for the prover's own address."""
    circuit = circuits[name]
    result = prove(backend, name, prover)
    assert result.backend == reported
    assert len(result.proof) == PROOF_SIZE
    assert result.public_inputs[circuit.address_input] == int(prover.address, 16)
    assert result.public_inputs == circuit.public_inputs(circuit.sample, prover.address)
    assert verifiers[name].verify(result.public_inputs, result.proof)


@pytest.mark.parametrize("name", CIRCUIT_NAMES)
def test_groth16py__inputs_not_satisfying_the_circuit__backend_error_no_proof(
    circuits, groth16py, prover, name
):
    circuit = circuits[name]
    wrong = dict(circuit.sample, y=circuit.sample["y"] + 1)  # y != x^(2^k)
    with pytest.raises(UnsatisfiedInputs) as error:  # found by the witness generator, before proving
        groth16py.prove(circuit, wrong, prover.address)
    message = str(error.value)
    assert message.startswith(f"the inputs do not satisfy circuit {name}: a constraint is not satisfied")


def test_groth16py__inputs_not_fitting__circuit_error(circuits, groth16py, prover):
    with pytest.raises(CircuitError, match="missing y"):
        groth16py.prove(circuits["square"], {"x": 7}, prover.address)


# ------------------------------------------------------------------ snarkjs (the command backend)


@pytest.mark.parametrize("name", CIRCUIT_NAMES)
def test_both_backends__same_inputs__both_proofs_verify(circuits, verifiers, prove, provers, name):
    """Two independent provers, one key: for the same task inputs and prover, both verify."""
    secret = 123_456_789
    someone = provers[2]
    ours = prove("groth16py", name, someone, secret)
    theirs = prove("snarkjs", name, someone, secret)
    assert ours.public_inputs == theirs.public_inputs
    assert ours.public_inputs == circuits[name].public_inputs(
        sample_inputs(circuits[name], secret), someone.address
    )
    assert ours.proof != theirs.proof  # Groth16 proofs are randomised
    assert verifiers[name].verify(ours.public_inputs, ours.proof)
    assert verifiers[name].verify(theirs.public_inputs, theirs.proof)


@pytest.mark.parametrize("name", CIRCUIT_NAMES)
def test_snarkjs__proof_for_prover_a__fails_on_chain_for_prover_b(circuits, verifiers, prove, provers, name):
    circuit = circuits[name]
    a, b = provers[0], provers[1]
    result = prove("snarkjs", name, a)
    assert verifiers[name].verify(result.public_inputs, result.proof)
    claimed = circuit.public_inputs(circuit.sample, b.address)
    assert claimed != result.public_inputs
    assert not verifiers[name].verify(claimed, result.proof)


@pytest.mark.parametrize("name", CIRCUIT_NAMES)
def test_snarkjs__inputs_not_satisfying_the_circuit__refused_before_node_starts(
    circuits, snarkjs, prover, name
):
    circuit = circuits[name]
    wrong = dict(circuit.sample, y=circuit.sample["y"] + 1)
    with pytest.raises(UnsatisfiedInputs) as error:  # found in-process, before node starts
        snarkjs.prove(circuit, wrong, prover.address)
    message = str(error.value)
    assert message.startswith(f"the inputs do not satisfy circuit {name}: a constraint is not satisfied")
    assert "line:" in message  # the witness generator's own words: which template line failed


def test_snarkjs__timeout__stops_node_too(prover, command_group, tmp_path, monkeypatch):
    """snarkjs-prove.sh runs node under bash; a timeout stops both, not only bash. Here
    node runs a snarkjs that takes a minute (the script's SNARKJS), so a node left running
    would hold the command's output and outlive the timeout by far."""
    slow = tmp_path / "slow-snarkjs.js"
    slow.write_text("setTimeout(() => {}, 60000);\n")
    monkeypatch.setenv("SNARKJS", str(slow))
    circuit = Circuit.load(CIRCUITS / "squarings-1000")
    started = time.monotonic()
    with pytest.raises(BackendError, match="timed out after 0.5s"):
        CommandBackend.snarkjs(timeout=0.5).prove(circuit, circuit.sample, prover.address)
    assert time.monotonic() - started < 5
    [group] = command_group
    assert not outlived(group), "snarkjs processes outlived the timeout"


# ------------------------------------------------------------------ any command


def test_command__exits_3__exit_code_and_tail_of_output(circuits, prover):
    code = (
        "import sys\n"
        "for i in range(100): print(f'step {i:03}')\n"
        "print('prover: out of GPU memory', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    message = command_error(python(code), circuits, prover)
    assert message.startswith(
        f"backend command {sys.executable} failed with exit code 3; its output ended:\n"
    )
    assert "step 099" in message
    assert message.endswith("prover: out of GPU memory")
    assert "step 000" not in message  # only the tail
    assert len(message.splitlines()) == 21


def test_command__exits_1_silently__says_no_output(circuits, prover):
    message = command_error(python("raise SystemExit(1)"), circuits, prover)
    assert "exit code 1" in message
    assert message.endswith("(no output)")


def test_command__sleeps_past_timeout__timed_out(circuits, prover):
    code = "import time; print('loading the proving key', flush=True); time.sleep(60)"
    started = time.monotonic()
    message = command_error(python(code), circuits, prover, timeout=1)
    assert time.monotonic() - started < 10
    assert message.startswith(f"backend command {sys.executable} timed out after 1s")
    assert "loading the proving key" in message


def test_command__timeout__stops_what_the_command_started(circuits, prover, command_group):
    """A prover command that starts helpers: on timeout the helpers are stopped as well."""
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('helper', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    message = command_error(python(code), circuits, prover, timeout=1)
    assert time.monotonic() - started < 10  # the helper holds the output: not stopped, it would block
    assert "timed out" in message
    pid = int(message.rsplit("helper ", 1)[1].split()[0])
    [group] = command_group
    if outlived(group):
        pytest.fail(f"the command's helper process {pid} outlived the timeout")


def test_command__exits_0_writes_nothing__wrote_no_proof(circuits, prover):
    message = command_error(python("print('all done')"), circuits, prover)
    assert message.startswith("backend command exited 0 but wrote no proof to {proof}")
    assert message.endswith("all done")


def test_command__writes_empty_proof_file__wrote_no_proof(circuits, prover):
    message = command_error(python(WRITE, "{proof}", ""), circuits, prover)
    assert "wrote no proof" in message


@pytest.mark.parametrize("text", ["proof: 0x1234", "{'proof': '0x12'}", "\x80\x81\x82 binary"])
def test_command__writes_non_json__not_json(circuits, prover, text):
    code = "import sys; open(sys.argv[1], 'wb').write(sys.argv[2].encode('latin-1'))"
    message = command_error(python(code, "{proof}", text), circuits, prover)
    assert message == "backend command wrote a proof file that is not JSON"


@pytest.mark.parametrize("size", [0, 64, PROOF_SIZE - 1, PROOF_SIZE + 1, 512])
def test_command__proof_of_wrong_length__refused(circuits, prover, size):
    proof = json.dumps({"proof": "0x" + "01" * size})
    message = command_error(python(WRITE, "{proof}", proof), circuits, prover)
    assert f"proof is {size} bytes, expected {PROOF_SIZE} (A, B, C)" in message


def test_command__proof_not_hex__refused(circuits, prover):
    message = command_error(python(WRITE, "{proof}", '{"proof": "0xnothex"}'), circuits, prover)
    assert message == "backend command's proof is not hex"


def test_command__proof_points_off_the_curve__refused(circuits, prover, prove):
    proof = bytearray(prove("groth16py", "square", prover).proof)
    proof[31] ^= 1  # A.x
    message = command_error(
        python(WRITE, "{proof}", json.dumps({"proof": "0x" + proof.hex()})), circuits, prover
    )
    assert "proof point A or C is not on the BN254 curve" in message


def test_command__snarkjs_json_not_a_proof__refused(circuits, prover):
    message = command_error(python(WRITE, "{proof}", '{"pi_a": [1, 2]}'), circuits, prover)
    assert message == "backend command's proof: not a snarkjs Groth16 proof (pi_a, pi_b, pi_c)"


def test_command__public_json_not_the_tasks__refused(circuits, prover, prove):
    valid = json.dumps({"proof": "0x" + prove("groth16py", "square", prover).proof.hex()})
    code = WRITE + "; open(sys.argv[3], 'w').write('[\"1\", \"49\"]')"
    message = command_error(python(code, "{proof}", valid, "{public}"), circuits, prover)
    expected = circuits["square"].public_inputs(circuits["square"].sample, prover.address)
    assert message == f"backend command proved public inputs [1, 49], but the task's are {expected}"


@pytest.mark.parametrize("text", ["not json", '{"y": 49}', "49", '["0x31"]'])
def test_command__public_json_not_numbers__refused(circuits, prover, prove, text):
    valid = json.dumps({"proof": "0x" + prove("groth16py", "square", prover).proof.hex()})
    code = WRITE + "; open(sys.argv[3], 'w').write(sys.argv[4])"
    message = command_error(python(code, "{proof}", valid, "{public}", text), circuits, prover)
    assert message == "backend command wrote public.json that is not a list of numbers"


def test_command__writes_valid_proof__result_verifies_on_chain(circuits, verifiers, prover, prove, tmp_path):
    """A command that writes {"proof": "0x..."} (and the right public.json) is a backend;
    it is given every input signal as decimal strings, the prover's address included."""
    made = prove("groth16py", "square", prover)
    seen = tmp_path / "seen.json"
    code = (
        "import json, shutil, sys\n"
        "shutil.copy(sys.argv[1], sys.argv[2])\n"
        "open(sys.argv[3], 'w').write(json.dumps({'proof': sys.argv[4]}))\n"
        "open(sys.argv[5], 'w').write(json.dumps([str(v) for v in json.loads(sys.argv[6])]))\n"
    )
    command = python(
        code,
        "{inputs}",
        str(seen),
        "{proof}",
        "0x" + made.proof.hex(),
        "{public}",
        json.dumps(made.public_inputs),
    )
    circuit = circuits["square"]
    result = CommandBackend(command, timeout=30).prove(circuit, circuit.sample, prover.address)
    assert result.backend == "command"
    assert result.proof == made.proof
    assert result.public_inputs == made.public_inputs == circuit.public_inputs(circuit.sample, prover.address)
    assert verifiers["square"].verify(result.public_inputs, result.proof)
    assert json.loads(seen.read_text()) == {"x": "7", "y": "49", "prover": str(int(prover.address, 16))}


def test_command__placeholders__replaced_with_the_circuits_files(circuits, prover, prove, tmp_path):
    seen = tmp_path / "argv.json"
    valid = json.dumps({"proof": "0x" + prove("groth16py", "square", prover).proof.hex()})
    code = (
        "import json, sys\n"
        "json.dump(sys.argv[2:-2], open(sys.argv[1], 'w'))\n"
        "open(sys.argv[-2], 'w').write(sys.argv[-1])\n"
    )
    args = ["{circuit}", "--zkey={zkey}", "{wasm}", "{source}", "{verification_key}", "{workdir}"]
    circuit = circuits["square"]
    CommandBackend(python(code, str(seen), *args, "{proof}", valid)).prove(
        circuit, circuit.sample, prover.address
    )
    circuit_dir, zkey, wasm, source, key, workdir = json.loads(seen.read_text())
    assert (circuit_dir, zkey, wasm, source, key) == (
        str(circuit.path),
        f"--zkey={circuit.zkey}",
        str(circuit.wasm),
        str(circuit.source),
        str(circuit.verification_key_file),
    )
    assert not Path(workdir).exists()  # the scratch folder is removed afterwards


def test_command__not_found__says_so(circuits, prover):
    message = command_error(["no-such-prover-binary", "{proof}"], circuits, prover)
    assert message == "backend command 'no-such-prover-binary' not found"


def test_command__check_rejects__refused(circuits, prover, prove):
    made = prove("groth16py", "square", prover)
    valid = json.dumps({"proof": "0x" + made.proof.hex()})
    calls = []

    def check(proof: bytes, public: list[int]) -> bool:
        calls.append((proof, public))
        return False

    message = command_error(python(WRITE, "{proof}", valid), circuits, prover, check=check)
    assert message == f"backend command {sys.executable} produced a proof the verifier rejects"
    assert calls == [(made.proof, made.public_inputs)]


def test_command__on_chain_check__refuses_a_proof_made_for_another_prover(
    circuits, verifiers, provers, prove
):
    """With the market's verifier as `check` (what the prover agent passes), a command
    that hands back someone else's proof is caught before it costs gas."""
    a, b = provers[0], provers[1]
    stolen = json.dumps({"proof": "0x" + prove("groth16py", "square", a).proof.hex()})

    def on_chain(proof: bytes, public: list[int]) -> bool:
        return verifiers["square"].verify(public, proof)

    message = command_error(python(WRITE, "{proof}", stolen), circuits, b, check=on_chain)
    assert "produced a proof the verifier rejects" in message
    circuit = circuits["square"]
    result = CommandBackend(python(WRITE, "{proof}", stolen), check=on_chain).prove(
        circuit, circuit.sample, a.address
    )
    assert result.proof == prove("groth16py", "square", a).proof


# ------------------------------------------------------------------ configuration


def test_config__command__runs_the_configured_command(circuits, verifiers, prover, prove):
    valid = json.dumps({"proof": "0x" + prove("groth16py", "square", prover).proof.hex()})
    config = {"backend": "command", "command": python(WRITE, "{proof}", valid), "timeout": 30}
    backend = backend_from_config(config)
    assert isinstance(backend, CommandBackend)
    assert backend.timeout == 30.0
    circuit = circuits["square"]
    result = backend.prove(circuit, circuit.sample, prover.address)
    assert verifiers["square"].verify(result.public_inputs, result.proof)
