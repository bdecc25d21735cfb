"""Proving backends: given a market's circuit and a task's inputs, the proof bytes and the
public inputs the registry expects.

Two backends implement `ProvingBackend`:

- `Groth16pyBackend` proves in-process with groth16py (PyPI). groth16py is GPL-3.0, so it
  is an optional extra (requirements-groth16py.txt); nothing else imports it, and without
  it this backend says how to install it.
- `CommandBackend` runs any external command (snarkjs, a zkVM's prover wrapped to emit a
  Groth16 proof, a remote prover's client), configured, not coded: see `from_config`. Its
  snarkjs configuration proves Groth16 and PLONK circuits (plonk.py), by the circuit's
  proving system.

Neither returns a proof it has not checked: the in-process backend verifies its proof with
the circuit's verifying key (a witness that does not satisfy the circuit would otherwise
give a well-formed but invalid proof), and the command backend checks the output's shape,
its points and its public inputs, and then runs the caller's `check` if given (the prover
agent passes an eth_call of the market's verifier). Failures raise `BackendError` with
what happened: the exit code and the tail of a command's output, or the inputs that do
not fit.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provingmarket.errors import ProvingMarketError
from provingmarket.proving import plonk
from provingmarket.proving.circuits import (
    CIRCUITS,
    PROOF_SIZE,
    Circuit,
    CircuitError,
    P,
    _on_g1,
    _on_g2,
    proof_from_snarkjs,
)
from provingmarket.proving.witness import write_wtns

if TYPE_CHECKING:  # an optional extra: imported for its types only, never at run time here
    from groth16py import ProvingKey, Verifier

ProofCheck = Callable[[bytes, list[int]], bool]
# The snarkjs command backend's script, shipped with the sample circuits.
SNARKJS_PROVE = CIRCUITS / "snarkjs-prove.sh"


class BackendError(ProvingMarketError, RuntimeError):
    """A proof could not be produced; the message says why and what to look at."""


@dataclass(frozen=True)
class ProofResult:
    # Groth16: 256 bytes, A, B, C (contracts/verifiers/Groth16Verifier.vy); PLONK: 768 (plonk.py)
    proof: bytes
    public_inputs: list[int]  # in the circuit's order, the prover's address included
    seconds: float  # wall time of the proving itself
    backend: str


class ProvingBackend(Protocol):
    name: str

    def prove(self, circuit: Circuit, inputs: Mapping[str, object], prover: str) -> ProofResult:
        """Prove `circuit` for a task's `inputs` as `prover` (its address goes in the
        circuit's address input). Raises CircuitError for inputs that do not fit the
        circuit and BackendError when no valid proof came out."""
        ...


def check_proof_shape(proof: bytes, source: str) -> None:
    """The proof is 256 bytes of reduced coordinates with A and C on the curve and B on
    the twist; anything else is refused before it costs gas."""
    if len(proof) != PROOF_SIZE:
        raise BackendError(f"{source}: proof is {len(proof)} bytes, expected {PROOF_SIZE} (A, B, C)")
    words = [int.from_bytes(proof[i : i + 32], "big") for i in range(0, PROOF_SIZE, 32)]
    if any(w >= P for w in words):
        raise BackendError(f"{source}: a proof coordinate is not below the field modulus")
    if not _on_g1(words[0], words[1]) or not _on_g1(words[6], words[7]):
        raise BackendError(f"{source}: proof point A or C is not on the BN254 curve")
    if not _on_g2((words[3], words[2]), (words[5], words[4])):
        raise BackendError(f"{source}: proof point B is not on BN254's G2 twist")


# ------------------------------------------------------------------ in-process (groth16py)


@contextmanager
def _quiet():
    """groth16py's circuit compiler prints to the process's stdout; keep it off ours."""
    saved = os.dup(1)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


class Groth16pyBackend:
    """Prove in this process with groth16py, from the circuit's snarkjs proving key: from
    the inputs when groth16py compiles the circuit's circom source itself, else from the
    witness the circuit's own witness generator computes (`witness.py`), so any Groth16
    circuit with a witness generator proves here, circomlib's included."""

    name = "groth16py"

    def __init__(self) -> None:
        try:
            import groth16py
        except ImportError:
            raise BackendError(
                "the groth16py backend needs the optional groth16py package (GPL-3.0): "
                "pip install -r requirements-groth16py.txt, or use the command backend"
            ) from None
        self._lib = groth16py
        # per circuit folder: the proving key, a verifier, and whether it proves from a witness
        self._keys: dict[Path, tuple[ProvingKey, Verifier, bool]] = {}

    def _load(self, circuit: Circuit) -> tuple[ProvingKey, Verifier, bool]:
        key = circuit.path.resolve()
        if circuit.proving_system != "groth16":
            raise BackendError(
                f"{circuit.name}: groth16py proves Groth16 circuits, and this one is "
                f"{circuit.proving_system}: use the snarkjs backend"
            )
        if key not in self._keys:
            circuit.verifying_key()  # clear errors for a bad key file first
            try:
                verifier = self._lib.Verifier(
                    self._lib.VerifyingKey.from_snarkjs_file(str(circuit.verification_key_file))
                )
                proving_key, from_witness = self._proving_key(circuit)
            except BackendError:
                raise
            except Exception as error:
                raise BackendError(
                    f"{circuit.zkey}: groth16py cannot load it ({error}); regenerate the keys"
                ) from None
            self._keys[key] = (proving_key, verifier, from_witness)
        return self._keys[key]

    def _proving_key(self, circuit: Circuit) -> tuple[ProvingKey, bool]:
        """The key with the compiled source if groth16py compiles it (proving from inputs),
        else the key alone (proving from the witness generator's witness)."""
        if circuit.manifest.files.source is not None:
            try:
                with _quiet():
                    proving_key, _ = self._lib.import_zkey(str(circuit.zkey), str(circuit.source))
                return proving_key, False
            except Exception:  # includes it cannot resolve, say: the witness path serves
                pass
        if circuit.manifest.files.witness_generator is None:
            raise BackendError(
                f"{circuit.name}: groth16py needs the circuit's source it can compile or its witness "
                "generator (files.witness_generator); use the command backend"
            )
        with _quiet():
            proving_key, _ = self._lib.import_zkey(str(circuit.zkey))
        return proving_key, True

    def prove(self, circuit: Circuit, inputs: Mapping[str, object], prover: str) -> ProofResult:
        signals = circuit.signal_inputs(inputs, prover)
        public = circuit.public_inputs(inputs, prover)
        proving_key, verifier, from_witness = self._load(circuit)
        started = time.perf_counter()
        try:
            if from_witness:
                proof = self._prove_witness(circuit, proving_key, signals)
            else:
                proof = bytes(self._lib.prove(proving_key, dict(signals)))
        except Exception as error:
            raise BackendError(f"{circuit.name}: groth16py could not prove ({error})") from None
        seconds = time.perf_counter() - started
        if not verifier.verify(proof, public):
            shown = ", ".join(f"{k}={v}" for k, v in signals.items())
            raise BackendError(
                f"{circuit.name}: the inputs do not satisfy the circuit ({shown}); "
                "the proof would be rejected, so none is returned"
            )
        return ProofResult(proof, public, seconds, self.name)

    def _prove_witness(
        self, circuit: Circuit, proving_key: ProvingKey, signals: Mapping[str, object]
    ) -> bytes:
        generator = circuit.generator()
        assert generator is not None  # _proving_key made sure
        with tempfile.TemporaryDirectory(prefix="witness-") as tmp:
            path = Path(tmp) / "witness.wtns"
            write_wtns(path, generator.witness(signals))
            return bytes(self._lib.prove_wtns(proving_key, str(path)))


# ------------------------------------------------------------------ external command

PLACEHOLDERS = (
    "circuit",
    "zkey",
    "wasm",
    "source",
    "verification_key",
    "inputs",
    "proof",
    "public",
    "workdir",
    "proving_system",
)


class CommandBackend:
    """Run an external prover. Each argument of `command` may name placeholders:

        {circuit} the circuit's folder     {zkey} {wasm} {source} {verification_key} its files
        {inputs}  a JSON file of every input signal, the prover's address included,
                  as decimal strings (circom's input.json)
        {proof}   where to write the proof: snarkjs's proof.json (Groth16: pi_a, pi_b,
                  pi_c; PLONK: A ... eval_zw) or {"proof": "0x" + its bytes in hex}
        {public}  where the command may write the public inputs (snarkjs's public.json);
                  if it does they must be the ones expected
        {workdir} a scratch folder, removed afterwards
        {proving_system} the circuit's: groth16 or plonk

    The command must exit 0 within `timeout` seconds."""

    name = "command"

    def __init__(
        self, command: Sequence[str], timeout: float = 600.0, check: ProofCheck | None = None
    ) -> None:
        if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
            raise BackendError("the command backend needs a command: a non-empty list of strings")
        self.command = list(command)
        self.timeout = timeout
        self.check = check

    @classmethod
    def snarkjs(cls, timeout: float = 600.0, check: ProofCheck | None = None) -> CommandBackend:
        """snarkjs from node_modules: witness from the circuit's wasm, then a Groth16 or
        PLONK proof (the circuit's proving system)."""
        return cls(
            [
                "bash",
                str(SNARKJS_PROVE),
                "{wasm}",
                "{zkey}",
                "{inputs}",
                "{proof}",
                "{public}",
                "{proving_system}",
            ],
            timeout,
            check,
        )

    def _argv(self, values: Mapping[str, str]) -> list[str]:
        # One pass per argument, so a substituted path that happens to contain
        # "{proof}" is not substituted again.
        pattern = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
        for arg in self.command:
            for name in pattern.findall(arg):
                if name not in values:
                    raise BackendError(
                        f"the backend command uses {{{name}}}, but the circuit's manifest gives no "
                        f"files.{_FILE_PLACEHOLDERS[name]}"
                    )
        return [pattern.sub(lambda m: values[m.group(1)], arg) for arg in self.command]

    def prove(self, circuit: Circuit, inputs: Mapping[str, object], prover: str) -> ProofResult:
        witness = circuit.signal_inputs(inputs, prover)
        expected = circuit.public_inputs(inputs, prover)
        with tempfile.TemporaryDirectory(prefix="prove-") as tmp:
            work = Path(tmp)
            (work / "input.json").write_text(json.dumps(_decimal(witness)))
            values = {
                "circuit": str(circuit.path),
                **_circuit_files(circuit),
                "inputs": str(work / "input.json"),
                "proof": str(work / "proof.json"),
                "public": str(work / "public.json"),
                "workdir": str(work),
                "proving_system": circuit.proving_system,
            }
            argv = self._argv(values)
            started = time.perf_counter()
            result = self._run(argv, work)
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise BackendError(
                    f"backend command {argv[0]} failed with exit code {result.returncode}; "
                    f"its output ended:\n{_tail(result.stdout, result.stderr)}"
                )
            proof = self._read_proof(Path(values["proof"]), result, circuit.proving_system)
            public_file = Path(values["public"])
            if public_file.exists():
                try:
                    public = [int(v) for v in json.loads(public_file.read_text())]
                except (ValueError, TypeError):
                    raise BackendError(
                        f"backend command wrote {public_file.name} that is not a list of numbers"
                    ) from None
                if public != expected:
                    raise BackendError(
                        f"backend command proved public inputs {public}, but the task's are {expected}"
                    )
        if circuit.proving_system == "plonk":
            plonk.check_proof_shape(proof, f"backend command {argv[0]}")
        else:
            check_proof_shape(proof, f"backend command {argv[0]}")
        if self.check is not None and not self.check(proof, expected):
            raise BackendError(f"backend command {argv[0]} produced a proof the verifier rejects")
        return ProofResult(proof, expected, seconds, self.name)

    def _run(self, argv: list[str], work: Path) -> subprocess.CompletedProcess:
        """Run the command in a process group of its own, so that a timeout (or an
        interrupt) stops everything it started (snarkjs-prove.sh's node, say), not only
        the command itself."""
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=work,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise BackendError(f"backend command {argv[0]!r} not found") from None
        with process:
            try:
                stdout, stderr = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                stdout, stderr = process.communicate()
                raise BackendError(
                    f"backend command {argv[0]} timed out after {self.timeout:g}s; its output ended:\n"
                    + _tail(stdout, stderr)
                ) from None
            except BaseException:
                _kill_group(process)
                raise
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)

    @staticmethod
    def _read_proof(path: Path, result: subprocess.CompletedProcess, proving_system: str) -> bytes:
        if not path.exists() or path.stat().st_size == 0:
            raise BackendError(
                "backend command exited 0 but wrote no proof to {proof}; its output ended:\n"
                + _tail(result.stdout, result.stderr)
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError("backend command wrote a proof file that is not JSON") from None
        if isinstance(data, dict) and isinstance(data.get("proof"), str):
            text = data["proof"].removeprefix("0x")
            try:
                return bytes.fromhex(text)
            except ValueError:
                raise BackendError("backend command's proof is not hex") from None
        read = plonk.proof_from_snarkjs if proving_system == "plonk" else proof_from_snarkjs
        try:
            return read(data, "backend command's proof")
        except CircuitError as error:
            raise BackendError(str(error)) from None


# The placeholders naming a circuit's files, and the manifest field each comes from.
_FILE_PLACEHOLDERS = {
    "zkey": "proving_key",
    "wasm": "witness_generator",
    "source": "source",
    "verification_key": "verifying_key",
}


def _circuit_files(circuit: Circuit) -> dict[str, str]:
    """The placeholders of the files the manifest gives (files.source and others are optional)."""
    files = circuit.manifest.files
    return {
        placeholder: str(circuit.path / name)
        for placeholder, field in _FILE_PLACEHOLDERS.items()
        if (name := getattr(files, field)) is not None
    }


def _decimal(value: object) -> object:
    """Signal values as circom's input.json has them: decimal strings, arrays as lists."""
    if isinstance(value, dict):
        return {k: _decimal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decimal(v) for v in value]
    return str(value)


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the command and everything it started (its process group; see `_run`)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(stdout: str | bytes, stderr: str | bytes, lines: int = 20) -> str:
    text = "\n".join(
        (s.decode(errors="replace") if isinstance(s, bytes) else s).strip() for s in (stdout, stderr) if s
    )
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


# ------------------------------------------------------------------ either


class AutoBackend:
    """groth16py where it can prove the circuit (installed, a Groth16 circuit whose circom
    source it compiles), snarkjs for every other one: any circuit, the fastest way at hand."""

    name = "auto"

    def __init__(self, timeout: float = 600.0, check: ProofCheck | None = None) -> None:
        try:
            self._groth16py: Groth16pyBackend | None = Groth16pyBackend()
        except BackendError:
            self._groth16py = None
        self._snarkjs = CommandBackend.snarkjs(timeout, check)
        self._not_groth16py: set[Path] = set()

    def prove(self, circuit: Circuit, inputs: Mapping[str, object], prover: str) -> ProofResult:
        if self._groth16py is not None and circuit.path.resolve() not in self._not_groth16py:
            try:
                self._groth16py._load(circuit)
            except BackendError:  # not a circuit groth16py can load: snarkjs proves it
                self._not_groth16py.add(circuit.path.resolve())
            else:
                return self._groth16py.prove(circuit, inputs, prover)
        return self._snarkjs.prove(circuit, inputs, prover)


# ------------------------------------------------------------------ configuration


def backend_from_config(config: Mapping[str, object], check: ProofCheck | None = None) -> ProvingBackend:
    """A backend from configuration (a prover agent's, per market):

    {"backend": "auto"}          groth16py where it can, else snarkjs
    {"backend": "groth16py"}
    {"backend": "snarkjs", "timeout": 120}
    {"backend": "command", "command": ["my-prover", "--in", "{inputs}", "--out", "{proof}"],
     "timeout": 600}
    """
    kind = config.get("backend")
    timeout = config.get("timeout", 600)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise BackendError(f"a backend's timeout should be a positive number of seconds, not {timeout!r}")
    timeout = float(timeout)
    if kind == "auto":
        return AutoBackend(timeout, check)
    if kind == "groth16py":
        return Groth16pyBackend()
    if kind == "snarkjs":
        return CommandBackend.snarkjs(timeout, check)
    if kind == "command":
        command = config.get("command")
        if not isinstance(command, list):
            raise BackendError("a command backend's configuration needs command: a list of arguments")
        return CommandBackend(command, timeout, check)
    raise BackendError(f"unknown backend {kind!r}: use auto, groth16py, snarkjs or command")
