"""Proving time per circuit and backend, and Groth16 beside PLONK for one statement: parts
3 and 4 of `ape run bench` (benches/registry_bench.py, which says what each measures), with the
helpers the bench's parts share. Runs inside `ape run bench`, on its network."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from ape import chain, project
from ape.contracts import ContractContainer
from ethpm_types import ContractType

from provingmarket.proving import plonk
from provingmarket.proving.backends import BackendError, CommandBackend, Groth16pyBackend
from provingmarket.proving.circuits import CIRCUITS as SAMPLES
from provingmarket.proving.circuits import Circuit, CircuitError, R, VerifyingKey, sample_circuits
from provingmarket.proving.witness import WitnessGenerator, write_wtns

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / ".bin"
FOREIGN = ROOT / "circuits" / "foreign"  # circuits built from circomlib templates


OURS = "Groth16Verifier.vy"


def intrinsic(tx) -> int:
    data = bytes(chain.provider.web3.eth.get_transaction(tx.txn_hash)["input"])
    return 21_000 + sum(4 if b == 0 else 16 for b in data)


def verifier_gas(tx) -> int:
    """Gas used inside the verifier's STATICCALL(s), from anvil's call tracer. A
    STATICCALL's gas includes the precompile calls it makes, so its children are not
    counted again."""
    trace = chain.provider.make_request("debug_traceTransaction", [tx.txn_hash, {"tracer": "callTracer"}])
    total = 0
    stack = [trace]
    while stack:
        frame = stack.pop()
        for call in frame.get("calls", []) or []:
            if call.get("type") == "STATICCALL":
                total += int(call["gasUsed"], 16)
            else:
                stack.append(call)
    return total


def one_line(error: BaseException, limit: int = 100) -> str:
    """An error as one line, short enough for a table's note."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ruled(header: str, lines: list[str]) -> str:
    """A table: `header`, a rule as long, then `lines`; no line ends in spaces."""
    return "\n".join(line.rstrip() for line in [header, "-" * len(header), *lines])


def run_tool(*argv: str | Path | int, cwd: Path | None = None, stdin: str | None = None) -> str:
    """Run a command; a failure raises RuntimeError with the command and its output's tail."""
    result = subprocess.run([str(a) for a in argv], cwd=cwd, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip()[-1500:]
        shown = " ".join(str(a) for a in argv[:4])
        raise RuntimeError(f"{shown} failed with exit code {result.returncode}: {tail}")
    return result.stdout


# ------------------------------------------------------------------ proving time

GROTH16PY_RUNS = 5
SNARKJS_RUNS = 3
PROVING_BUDGET = 20.0  # seconds of timed runs per circuit and backend: a slow circuit gets fewer


class ProvingRow(NamedTuple):
    circuit: str
    constraints: int
    backend: str
    seconds: tuple[float, ...] = ()  # each timed run's ProofResult.seconds
    on_chain: str = ""  # the last proof, by an eth_call of Groth16Verifier: valid / REJECTED
    note: str = ""

    HEADER = (
        f"{'circuit':<16} {'constraints':>11}  {'backend':<10} {'runs':>4} {'median ms':>10} "
        f"{'min ms':>9} {'µs/constraint':>13}  {'on chain':<8}  note"
    )

    def line(self) -> str:
        """The row in the table under HEADER."""
        if not self.seconds:
            return f"{self.circuit:<16} {self.constraints:>11,}  {self.backend:<10} {'-':>4}  {self.note}"
        median = statistics.median(self.seconds)
        return (
            f"{self.circuit:<16} {self.constraints:>11,}  {self.backend:<10} {len(self.seconds):>4} "
            f"{median * 1e3:>10,.1f} {min(self.seconds) * 1e3:>9,.1f} "
            f"{median * 1e6 / self.constraints:>13,.1f}  {self.on_chain:<8}  {self.note}"
        )


class ProvingBench:
    """Time to prove each committed sample circuit's sample with each proving backend."""

    def __init__(self, owner):
        self.owner = owner
        self.rows: list[ProvingRow] = []

    def backends(self) -> list[tuple[str, object, int, bool]]:
        """(label, backend or why it is unavailable, timed runs, whether to warm up)."""
        found = []
        for label, make, runs, warm_up in (
            ("groth16py", Groth16pyBackend, GROTH16PY_RUNS, True),  # the first call loads the key
            ("snarkjs", CommandBackend.snarkjs, SNARKJS_RUNS, False),
        ):
            try:
                found.append((label, make(), runs, warm_up))
            except BackendError as error:
                found.append((label, f"not measured: {one_line(error)}", runs, warm_up))
        return found

    def circuits(self) -> list[tuple[str, Circuit | str]]:
        """(name, circuit or why it is not measured): the Groth16 samples, the circomlib
        circuits of circuits/foreign/, and poseidon-chain-308 if circuits/foreign/build.py
        has made it (it needs a Powers of Tau of 2^17: over an hour here, so the bench does
        not make it)."""
        found: list[tuple[str, Circuit | str]] = []
        folders = [
            *sample_circuits("groth16"),
            *sorted(str(p.parent) for p in FOREIGN.glob("*/circuit.json")),
        ]
        large = ROOT / "circuits" / ".cache" / "poseidon-chain-308"
        if (large / "circuit.json").exists():
            folders.append(str(large))
        else:
            found.append((large.name, "not built: `circuits/foreign/build.py poseidon-chain` makes it"))
        for folder in folders:
            try:
                found.append((Path(folder).name, Circuit.load(folder)))
            except CircuitError as error:
                found.append((Path(folder).name, f"not measured: {one_line(error)}"))
        return found

    def run(self) -> None:
        backends = self.backends()
        for name, circuit in self.circuits():
            if isinstance(circuit, str):
                self.rows.append(ProvingRow(name, 0, "-", note=circuit))
                continue
            verifier = self.owner.deploy(project.Groth16Verifier, *circuit.verifying_key().constructor_args())
            for label, backend, runs, warm_up in backends:
                if isinstance(backend, str):
                    self.rows.append(ProvingRow(name, circuit.constraints or 0, label, note=backend))
                    continue
                self.rows.append(self.timed(circuit, verifier, label, backend, runs, warm_up))
        self.rows.append(self.large())

    def large(self) -> ProvingRow:
        """squarings-65536 (65,537 constraints, over 2^16) with groth16py: compiled with circom2
        and given a key by groth16py's own single-party setup (no Powers of Tau needed; the
        key is for this measurement only), kept in circuits/.cache/; proved from the witness
        generator's witness, as Groth16pyBackend proves a circuit whose source it does not
        compile. snarkjs needs a zkey, so a Powers of Tau of 2^17: see poseidon-chain-308."""
        name, k = "squarings-65536", 65_536
        try:
            import groth16py
        except ImportError:
            return ProvingRow(name, k + 1, "groth16py", note="not measured: groth16py is not installed")
        try:
            folder = large_squarings(k)
            proving_key = groth16py.ProvingKey.load(str(folder / "pk.bin"))
            verifier = self.owner.deploy(
                project.Groth16Verifier,
                *VerifyingKey.load(folder / "verification_key.json").constructor_args(),
            )
            generator = WitnessGenerator(folder / "circuit.wasm")
            x, y = 7, 7
            for _ in range(k):
                y = y * y % R
            signals = {"prover": int(self.owner.address, 16), "y": y, "x": x}
            seconds, proof, public = [], b"", []
            started = time.perf_counter()
            while len(seconds) < 3 and (not seconds or time.perf_counter() - started < PROVING_BUDGET):
                began = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    witness = generator.witness(signals)
                    write_wtns(Path(tmp) / "w.wtns", witness)
                    proof = bytes(groth16py.prove_wtns(proving_key, str(Path(tmp) / "w.wtns")))
                seconds.append(time.perf_counter() - began)
                public = witness[1:3]
        except Exception as error:  # a measurement only: say what went wrong
            return ProvingRow(name, k + 1, "groth16py", note=f"failed: {one_line(error)}")
        on_chain = "valid" if verifier.verify(public, proof) else "REJECTED"
        return ProvingRow(
            name, k + 1, "groth16py", tuple(seconds), on_chain, "groth16py's own setup; from the witness"
        )

    def timed(self, circuit: Circuit, verifier, label: str, backend, runs: int, warm_up: bool) -> ProvingRow:
        """Prove `circuit`'s sample `runs` times (fewer past PROVING_BUDGET); check the last on chain."""
        prover = self.owner.address
        results = []
        try:
            if warm_up:
                backend.prove(circuit, circuit.sample, prover)
            started = time.perf_counter()
            while len(results) < runs and (not results or time.perf_counter() - started < PROVING_BUDGET):
                results.append(backend.prove(circuit, circuit.sample, prover))
        except (BackendError, CircuitError) as error:
            return ProvingRow(circuit.name, circuit.constraints, label, note=f"failed: {one_line(error)}")
        last = results[-1]
        on_chain = "valid" if verifier.verify(last.public_inputs, last.proof) else "REJECTED"
        note = f"{len(results)} of {runs} runs within {PROVING_BUDGET:g} s" if len(results) < runs else ""
        return ProvingRow(
            circuit.name, circuit.constraints, label, tuple(r.seconds for r in results), on_chain, note
        )

    def table(self) -> str:
        return ruled(ProvingRow.HEADER, [row.line() for row in self.rows])


def large_squarings(k: int) -> Path:
    """circuits/.cache/squarings-<k>/: the circuit compiled (circom2), a groth16py key and
    verifying key; made once, reused."""
    folder = ROOT / "circuits" / ".cache" / f"squarings-{k}"
    if (folder / "pk.bin").exists() and (folder / "verification_key.json").exists():
        return folder
    import groth16py

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "lib" / "squarings.circom", folder / "squarings.circom")
    (folder / "circuit.circom").write_text(
        'pragma circom 2.0.0;\ninclude "squarings.circom";\n'
        f"component main {{public [prover, y]}} = Squarings({k});\n"
    )
    run_tool(
        "node", NODE_BIN / "circom2", "circuit.circom", "--r1cs", "--wasm", "--O2", "-o", ".", cwd=folder
    )
    shutil.copy(folder / "circuit_js" / "circuit.wasm", folder / "circuit.wasm")
    proving_key, verifying_key = groth16py.setup(str(folder / "circuit.r1cs"))
    proving_key.save(str(folder / "pk.bin"))
    (folder / "verification_key.json").write_text(verifying_key.to_json())
    return folder


# ------------------------------------------------------------------ Groth16 beside PLONK


class SystemRow(NamedTuple):
    system: str
    circuit: str
    verifier: str
    proof_bytes: int = 0
    gas: int | None = None  # receipt gasUsed
    intrinsic: int | None = None  # 21,000 + the transaction's calldata
    note: str = ""

    HEADER = (
        f"{'system':<8} {'circuit':<13} {'verifier':<30} {'proof':>6} {'gas':>9} {'intrinsic':>9} "
        f"{'net':>9}  note"
    )

    def line(self) -> str:
        """The row in the table under HEADER."""
        if self.gas is None:
            return f"{self.system:<8} {self.circuit:<13} {self.verifier:<30} {'-':>6} {'-':>9}  {self.note}"
        return (
            f"{self.system:<8} {self.circuit:<13} {self.verifier:<30} {self.proof_bytes:>6} {self.gas:>9,} "
            f"{self.intrinsic:>9,} {self.gas - self.intrinsic:>9,}  {self.note}"
        )


class SystemsBench:
    """Gas to verify one proof of the square statement with Groth16 and with PLONK."""

    def __init__(self, owner):
        self.owner = owner
        self.rows: list[SystemRow] = []
        self.prover = CommandBackend.snarkjs(timeout=120)

    def run(self) -> None:
        for system, name, verifier in (
            ("groth16", "square", OURS),
            ("plonk", "square-plonk", f"{plonk.ADAPTER_NAME} (snarkjs)"),
        ):
            try:
                self.rows.append(self.measure(system, name, verifier))
            except Exception as error:  # a comparison only: report whatever went wrong
                self.rows.append(SystemRow(system, name, verifier, note=f"not measured: {one_line(error)}"))

    def deploy(self, system: str, circuit: Circuit):
        if system == "groth16":
            return self.owner.deploy(project.Groth16Verifier, *circuit.verifying_key().constructor_args())
        compiled = plonk.verifier_contract(circuit.path)
        contract_type = ContractType(
            contractName=compiled.name, abi=compiled.abi, deploymentBytecode={"bytecode": compiled.bytecode}
        )
        return self.owner.deploy(ContractContainer(contract_type))

    def measure(self, system: str, name: str, label: str) -> SystemRow:
        circuit = Circuit.load(name)
        verifier = self.deploy(system, circuit)
        result = self.prover.prove(circuit, circuit.sample, self.owner.address)
        if not verifier.verify(result.public_inputs, result.proof):
            return SystemRow(system, name, label, note="not measured: the verifier rejects the proof")
        tx = verifier.verify.transact(result.public_inputs, result.proof, sender=self.owner)
        note = f"inner verifyProof {verifier_gas(tx):,}" if system == "plonk" else ""
        return SystemRow(system, name, label, len(result.proof), tx.gas_used, intrinsic(tx), note)

    def table(self) -> str:
        return ruled(SystemRow.HEADER, [row.line() for row in self.rows])

    def verdict(self) -> str:
        measured = {row.system: row for row in self.rows if row.gas is not None}
        if set(measured) != {"groth16", "plonk"}:
            return "PLONK against Groth16: not compared (a row was not measured)"
        g, p = (measured[s].gas - measured[s].intrinsic for s in ("groth16", "plonk"))
        return f"PLONK net {p:,} against Groth16 net {g:,}: {p - g:+,} ({p / g - 1:+.1%})"
