"""Benchmarks on anvil (`make bench`): registry gas, Groth16 verifier gas, proving time.

1. The registry's runtime code size, and gas per registry operation, from receipts. Each
   figure is a real receipt's gasUsed;
   "net" subtracts the intrinsic cost (21,000 + calldata at 4 gas per zero byte and 16
   per other byte), which is how Boundless publishes its figures. Proofs are shown less
   the verifier's own gas (read from the call trace), so the rows measure the registry's
   work. "First use" is an account's first time (fresh balances and records); "steady"
   repeats the operation once those exist.

2. Groth16 verifier gas by number of public inputs (1, 2, 4, 8, 16). For each count a
   throwaway circom circuit in which every public input takes part in a constraint is
   compiled, set up and proved with snarkjs in a temporary directory (one single-party
   Powers of Tau of 2^8 serves them all; random nonzero inputs below the scalar field
   modulus, so calldata is realistic). Two verifiers of the same key check the same
   proof, each in a transaction of its own after an eth_call has returned true:
   contracts/verifiers/Groth16Verifier.vy and, as a reference, the Solidity verifier
   snarkjs generates (compiled with the npm package solc; if that fails the table says
   why). The floor is what the precompiles alone cost (EIP-1108): a pairing of four
   pairs, 45,000 + 4 * 34,000, plus an ecMul (6,000) and an ecAdd (150) per input. The
   targets: a net cost within 20% of that floor (the gross cost is also set against the
   floor plus the transaction's intrinsic cost), and at most snarkjs's verifier's net
   cost for the same key and proof, ratio ours / snarkjs <= 1.00 at every input count.

3. Proving time per circuit size, for the committed sample circuits, with the in-process
   groth16py backend (its key is loaded by one untimed call first) and the snarkjs
   command backend (whose time includes starting node and computing the witness): the
   median of a few runs (fewer if a circuit is slow) and microseconds per constraint.
   Each backend's last proof is checked by an eth_call of a Groth16Verifier deployed
   with the circuit's key.

4. Groth16 beside PLONK for the same statement: the square circuit (public prover and y,
   private x with x * x = y) with its Groth16 key (square, Groth16Verifier.vy) and its
   PLONK key (square-plonk, snarkjs's PlonkVerifier behind the adapter of
   provingmarket/proving/plonk.py). One snarkjs proof each, checked by an eth_call, then
   verified in a transaction of its own; net is gasUsed less the intrinsic cost (so the
   PLONK proof's larger calldata, 768 bytes against 256, is in intrinsic, not net).

`ape run bench --only verifier` runs parts 2 and 4 alone (likewise `registry`, `proving`).
At the end, the fees its transactions paid (the local test chain starts with a 1 gwei base
fee: ape-config.yaml).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import ape
import click
from ape import accounts, chain, project
from ape.contracts import ContractContainer
from ethpm_types import ContractType

from benches.circuits_bench import (
    NODE_BIN,
    OURS,
    ROOT,
    ProvingBench,
    SystemsBench,
    intrinsic,
    one_line,
    ruled,
    run_tool,
    verifier_gas,
)
from provingmarket.chain.markets import groth16_args
from provingmarket.devnet import (
    ETHER,
    PROVER_INPUT,
    SQUARE,
    STATEMENT,
    Spend,
    deploy_stack,
    fees_paid,
    proof_for,
    task_terms,
)
from provingmarket.formats import (
    DUTCH,
    GROTH16_BLUEPRINT,
    OPEN_RACE,
    Assignment,
    Link,
    TaskTerms,
    encode_chain,
)
from provingmarket.proving.circuits import (
    R,
    VerifyingKey,
    proof_from_snarkjs,
)
from provingmarket.proving.solidity import compile_solidity

# Targets, net of the intrinsic cost and calldata (issue 13: what safety may cost).
LIFECYCLE_TARGET = 115_000  # post + assign + prove, steady
BATCH_50_TARGET = 25_500  # assign, per item in a batch of 50
SIZE_TARGET = 24_300  # bytes of the registry's runtime code (EIP-170 allows 24,576)


class Bench:
    def __init__(self):
        self.owner, self.requester, self.keeper = accounts.test_accounts[:3]
        self.stack = deploy_stack(ape, self.owner, [self.keeper])
        self.registry = self.stack.registry
        self.rows: list[tuple[str, str, int, int, str]] = []
        self.salt = 0

    def prover(self, stake: int = 30 * ETHER, capacity: int = 60):
        account = accounts.test_accounts.generate_test_account()
        chain.set_balance(account.address, 100 * ETHER)
        self.registry.stake(sender=account, value=stake)
        self.registry.join_market(
            self.stack.market_id, capacity, ETHER // 100, 60, 0, [self.stack.mechanism_id], sender=account
        )
        return account

    def post(self, mechanism_id: int | None = None, **overrides) -> tuple[TaskTerms, object]:
        self.salt += 1
        mechanism_id = self.stack.mechanism_id if mechanism_id is None else mechanism_id
        terms = task_terms(self.stack.market_id, mechanism_id, salt=self.salt, **overrides)
        tx = self.registry.post_task(
            terms.as_tuple(), PROVER_INPUT, "", sender=self.requester, value=terms.escrow()
        )
        event = tx.events.filter(self.registry.TaskPosted)[0]
        return TaskTerms.from_event(event.terms), tx

    def assign(self, terms: TaskTerms, prover) -> tuple[Assignment, object]:
        item = (terms.as_tuple(), prover.address, terms.max_reward // 2, 0, 0, 0, b"")
        tx = self.registry.assign(item, sender=self.keeper)
        return Assignment.from_event(tx.events.filter(self.registry.TaskAssigned)[0]), tx

    def prove(self, terms: TaskTerms, assignment: Assignment, prover):
        return self.registry.prove(
            terms.as_tuple(),
            assignment.as_tuple(),
            STATEMENT,
            proof_for(STATEMENT, prover.address),
            sender=prover,
        )

    def row(self, operation: str, use: str, gas: int, net: int, note: str = "") -> None:
        self.rows.append((operation, use, gas, net, note))

    def lifecycle(self, prover, use: str) -> tuple[int, int]:
        """Post, assign and prove one task; returns the lifecycle's (gross, net) gas."""
        terms, post = self.post()
        assignment, assign = self.assign(terms, prover)
        prove = self.prove(terms, assignment, prover)
        v = verifier_gas(prove)
        total_gross = total_net = 0
        for name, tx in {"post": post, "assign (alone)": assign, "prove (less verifier)": prove}.items():
            verifier = v if tx is prove else 0
            gross = tx.gas_used - verifier
            net = gross - intrinsic(tx)
            self.row(name, use, gross, net, f"verifier {verifier:,}" if verifier else "")
            total_gross, total_net = total_gross + gross, total_net + net
        self.row(
            "lifecycle post+assign+prove",
            use,
            total_gross,
            total_net,
            f"target <= {LIFECYCLE_TARGET:,} net (steady)",
        )
        return total_gross, total_net

    def chained(self, prover) -> None:
        """A fallback chain of three links whose first is the stack's mechanism, posted,
        assigned by its frontend and proven, and another assigned in its second link: the
        rows beside the same single task's (steady), gross and net of the intrinsic cost
        (a chain's longer mechanism_id is calldata, in the intrinsic cost)."""
        tx = self.registry.register_mechanism("bench auction", [self.keeper], sender=self.owner)
        second = tx.events.filter(self.registry.MechanismRegistered)[0].mechanism_id
        self.registry.set_mechanism_accepted(self.stack.market_id, second, True, sender=prover)
        links = [Link(self.stack.mechanism_id, 300), Link(second, 200), Link(OPEN_RACE, 100)]
        terms, post = self.post(encode_chain(links), assign_window=600)
        assignment, assign = self.assign(terms, prover)
        prove = self.prove(terms, assignment, prover)
        later, _ = self.post(encode_chain(links), assign_window=600)
        chain.mine(1, deltatime=350)  # into the second link's window
        _, assign_later = self.assign(later, prover)
        single = {op: (gas, net) for op, use, gas, net, _ in self.rows if use == "steady"}
        for name, base, tx in (
            ("post (chain of 3 links)", "post", post),
            ("assign (chain, first link)", "assign (alone)", assign),
            ("assign (chain, second link)", "assign (alone)", assign_later),
            ("prove (chain, less verifier)", "prove (less verifier)", prove),
        ):
            gross = tx.gas_used - (verifier_gas(tx) if tx is prove else 0)
            net = gross - intrinsic(tx)
            note = f"{gross - single[base][0]:+,} gross, {net - single[base][1]:+,} net vs a single task"
            self.row(name, "steady", gross, net, note)

    def batch(self, size: int) -> int:
        provers = [self.prover() for _ in range(size)]
        tasks = [self.post()[0] for _ in range(size)]
        items = [
            (t.as_tuple(), p.address, t.max_reward // 2, 0, 0, 0, b"")
            for t, p in zip(tasks, provers, strict=True)
        ]
        tx = self.registry.assign_batch(items, sender=self.keeper)
        assert len(tx.events.filter(self.registry.TaskAssigned)) == size, "a batch item was skipped"
        per_item, net = tx.gas_used // size, (tx.gas_used - intrinsic(tx)) // size
        note = f"target <= {BATCH_50_TARGET:,} net" if size == 50 else ""
        self.row(f"assign, per item in batch of {size}", "steady", per_item, net, note)
        return net

    def run(self) -> dict[str, int]:
        first = self.prover()
        self.lifecycle(first, "first use")
        steady, steady_net = self.lifecycle(first, "steady")
        self.chained(first)

        # Slash: an assignment whose deadline passed.
        terms, _ = self.post()
        assignment, _ = self.assign(terms, first)
        chain.mine(1, deltatime=terms.proving_window + 1)
        tx = self.registry.slash(terms.as_tuple(), first.address, assignment.as_tuple(), sender=self.owner)
        self.row("slash", "first use", tx.gas_used, tx.gas_used - intrinsic(tx))
        terms, _ = self.post()
        assignment, _ = self.assign(terms, first)
        chain.mine(1, deltatime=terms.proving_window + 1)
        tx = self.registry.slash(terms.as_tuple(), first.address, assignment.as_tuple(), sender=self.owner)
        self.row("slash", "steady", tx.gas_used, tx.gas_used - intrinsic(tx))

        fresh = accounts.test_accounts.generate_test_account()
        chain.set_balance(fresh.address, 10 * ETHER)
        tx = self.registry.stake(sender=fresh, value=ETHER)
        self.row("stake", "first use", tx.gas_used, tx.gas_used - intrinsic(tx))
        tx = self.registry.stake(sender=fresh, value=ETHER)
        self.row("stake", "steady", tx.gas_used, tx.gas_used - intrinsic(tx))

        tx = self.registry.withdraw(sender=first)
        self.row("withdraw earnings", "steady", tx.gas_used, tx.gas_used - intrinsic(tx))

        # Decline within the grace period; a Dutch lock; the Groth16 verifier from the
        # registry's blueprint and a market on it.
        terms, _ = self.post()
        assignment, _ = self.assign(terms, first)
        tx = self.registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=first)
        self.row("decline", "steady", tx.gas_used, tx.gas_used - intrinsic(tx))
        self.salt += 1
        dutch = task_terms(self.stack.market_id, DUTCH, salt=self.salt, start_price=ETHER // 100, ramp=60)
        posted = self.registry.post_task(
            dutch.as_tuple(), PROVER_INPUT, "", sender=self.requester, value=dutch.escrow()
        )
        dutch = TaskTerms.from_event(posted.events.filter(self.registry.TaskPosted)[0].terms)
        tx = self.registry.lock(dutch.as_tuple(), sender=first)
        self.row("lock (dutch)", "steady", tx.gas_used, tx.gas_used - intrinsic(tx))
        tx = self.registry.deploy_verifier(
            GROTH16_BLUEPRINT, groth16_args(SQUARE.verifying_key()), sender=self.owner
        )
        self.row("deploy_verifier (blueprint)", "first use", tx.gas_used, tx.gas_used - intrinsic(tx))

        b10 = self.batch(10)
        b50 = self.batch(50)
        return {"lifecycle": steady, "lifecycle_net": steady_net, "batch10": b10, "batch50": b50}

    def size(self) -> int:
        """Bytes of the registry's runtime code, as deployed."""
        return len(bytes(chain.provider.get_code(self.registry.address)))

    def table(self) -> str:
        header = f"{'operation':<36} {'use':<10} {'gas':>9} {'net':>9}  note"
        lines = [header, "-" * len(header)]
        for operation, use, gas, net, note in self.rows:
            lines.append(f"{operation:<36} {use:<10} {gas:>9,} {net:>9,}  {note}")
        return "\n".join(lines)


# ------------------------------------------------------------------ Groth16 verifier gas

PUBLIC_INPUT_COUNTS = (1, 2, 4, 8, 16)
PAIRING_GAS = 45_000 + 4 * 34_000  # EIP-1108: one pairing check of four pairs
PER_INPUT_GAS = 6_000 + 150  # EIP-1108: one ecMul and one ecAdd per public input
FLOOR_OVERHEAD_TARGET = 0.20  # the target: net gas within 20% of the floor
SNARKJS_RATIO_TARGET = 1.00  # net gas at most snarkjs's Verifier.sol's, same key and proof
PTAU_POWER = 8  # 2^8 constraints, ample for 16 public inputs

# Every public input takes part in a constraint (its square), so none has an IC point at
# infinity (the verifier refuses such keys), and a private input is squared as well.
INPUTS_CIRCUIT = """pragma circom 2.0.0;

template Inputs(n) {
    signal input in[n];
    signal input x;
    signal sq[n];
    signal xx;
    for (var i = 0; i < n; i++) {
        sq[i] <== in[i] * in[i];
    }
    xx <== x * x;
}

component main {public [in]} = Inputs(%d);
"""

SNARKJS_SOL = "snarkjs Verifier.sol"


def floor_gas(n: int) -> int:
    """What the precompiles alone cost to verify a Groth16 proof with `n` public inputs."""
    return PAIRING_GAS + PER_INPUT_GAS * n


def npm_version(package: str) -> str:
    """The version of an npm package installed in node_modules."""
    try:
        return json.loads((ROOT / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "(version unknown)"


def snarkjs(*argv: str | Path | int) -> str:
    return run_tool("node", NODE_BIN / "snarkjs", *argv)


# Records are NamedTuples: `ape run` loads this file without registering it in
# sys.modules, and dataclasses need that to resolve postponed annotations.


class InputsCircuit(NamedTuple):
    """A throwaway circuit with `n` public inputs: its key, one proof (snarkjs's proof.json)
    of random nonzero inputs, and the Solidity verifier snarkjs generated for the key."""

    n: int
    vk: VerifyingKey
    proof: dict
    public: list[int]
    solidity: str

    def solidity_args(self) -> tuple:
        """snarkjs verifier's verifyProof(a, b, c, pubSignals) arguments. B's Fp2
        coordinates go in EIP-197's order, c1 first: snarkjs's pi_b has c0 first."""
        a, b, c = self.proof["pi_a"], self.proof["pi_b"], self.proof["pi_c"]
        return (
            [int(a[0]), int(a[1])],
            [[int(b[0][1]), int(b[0][0])], [int(b[1][1]), int(b[1][0])]],
            [int(c[0]), int(c[1])],
            self.public,
        )


def powers_of_tau(work: Path) -> Path:
    """A single-party Powers of Tau of 2^PTAU_POWER, prepared for phase 2 (bench only)."""
    snarkjs("powersoftau", "new", "bn128", PTAU_POWER, work / "pot0.ptau")
    entropy = "-e=" + os.urandom(32).hex()
    snarkjs("powersoftau", "contribute", work / "pot0.ptau", work / "pot1.ptau", "--name=bench", entropy)
    snarkjs("powersoftau", "prepare", "phase2", work / "pot1.ptau", work / "pot.ptau")
    return work / "pot.ptau"


def inputs_circuit(n: int, ptau: Path, work: Path) -> InputsCircuit:
    """Compile INPUTS_CIRCUIT for `n` public inputs in `work`, set it up (single party),
    prove random nonzero inputs and export snarkjs's Solidity verifier."""
    work.mkdir()
    (work / "c.circom").write_text(INPUTS_CIRCUIT % n)
    run_tool(NODE_BIN / "circom2", work / "c.circom", "--r1cs", "--wasm", "--O2", "-o", work)
    snarkjs("groth16", "setup", work / "c.r1cs", ptau, work / "c0.zkey")
    entropy = "-e=" + os.urandom(32).hex()
    snarkjs("zkey", "contribute", work / "c0.zkey", work / "c.zkey", "--name=bench", entropy)
    snarkjs("zkey", "export", "verificationkey", work / "c.zkey", work / "vk.json")
    snarkjs("zkey", "export", "solidityverifier", work / "c.zkey", work / "Verifier.sol")
    values = [secrets.randbelow(R - 1) + 1 for _ in range(n)]
    inputs = {"in": [str(v) for v in values], "x": str(secrets.randbelow(R - 1) + 1)}
    (work / "input.json").write_text(json.dumps(inputs))
    snarkjs("wtns", "calculate", work / "c_js" / "c.wasm", work / "input.json", work / "w.wtns")
    snarkjs("groth16", "prove", work / "c.zkey", work / "w.wtns", work / "proof.json", work / "public.json")
    public = [int(v) for v in json.loads((work / "public.json").read_text())]
    assert public == values, f"{n} inputs: snarkjs proved public inputs {public}, not {values}"
    vk = VerifyingKey.load(work / "vk.json")
    assert vk.public_inputs == n, f"{n} inputs: the key has {vk.public_inputs} public inputs"
    proof = json.loads((work / "proof.json").read_text())
    return InputsCircuit(n, vk, proof, public, (work / "Verifier.sol").read_text())


class VerifierRow(NamedTuple):
    n: int
    verifier: str
    gas: int | None = None  # receipt gasUsed
    intrinsic: int | None = None  # 21,000 + the transaction's calldata
    note: str = ""

    @property
    def net(self) -> int | None:
        return None if self.gas is None else self.gas - self.intrinsic

    @property
    def floor(self) -> int:
        return floor_gas(self.n)

    HEADER = (
        f"{'inputs':>6}  {'verifier':<20} {'gas':>9} {'net':>9} {'floor':>9} {'over':>8} {'over %':>7} "
        f"{'floor+intr':>11} {'gas over %':>10}  note"
    )

    def line(self) -> str:
        """The row in the table under HEADER."""
        if self.gas is None:
            return f"{self.n:>6}  {self.verifier:<20} {'-':>9} {'-':>9} {self.floor:>9,}  {self.note}"
        over = self.net - self.floor  # also gas - (floor + intrinsic)
        with_intrinsic = self.floor + self.intrinsic
        return (
            f"{self.n:>6}  {self.verifier:<20} {self.gas:>9,} {self.net:>9,} {self.floor:>9,} {over:>+8,} "
            f"{over / self.floor:>+7.1%} {with_intrinsic:>11,} {over / with_intrinsic:>+10.1%}  {self.note}"
        )


class VerifierBench:
    """Gas to verify one Groth16 proof by number of public inputs: our verifier and
    snarkjs's Solidity verifier for the same key and proof, against the precompile floor."""

    def __init__(self, owner):
        self.owner = owner
        self.rows: list[VerifierRow] = []
        self.solc = ""  # solc's version, once it has compiled snarkjs's verifiers

    def run(self) -> None:
        with tempfile.TemporaryDirectory(prefix="bench-verifier-") as tmp:
            work = Path(tmp)
            ptau = powers_of_tau(work)
            circuits = [inputs_circuit(n, ptau, work / f"inputs-{n}") for n in PUBLIC_INPUT_COUNTS]
        try:
            self.solc, references = compile_solidity({f"Verifier{c.n}.sol": c.solidity for c in circuits})
            failure = ""
        except (RuntimeError, ValueError, KeyError) as error:
            references, failure = {}, f"not measured: {one_line(error)}"
        for circuit in circuits:
            self.rows.append(self.ours(circuit))
            self.rows.append(self.reference(circuit, references.get(f"Verifier{circuit.n}.sol"), failure))

    def measured(self, n: int, verifier: str, tx) -> VerifierRow:
        return VerifierRow(n, verifier, tx.gas_used, intrinsic(tx))

    def ours(self, circuit: InputsCircuit) -> VerifierRow:
        verifier = self.owner.deploy(project.Groth16Verifier, *circuit.vk.constructor_args())
        proof = proof_from_snarkjs(circuit.proof)
        wrong = [(circuit.public[0] + 1) % R or 1, *circuit.public[1:]]
        assert verifier.verify(circuit.public, proof), f"{OURS} rejects the {circuit.n}-input proof"
        assert not verifier.verify(wrong, proof), f"{OURS} accepts wrong public inputs"
        return self.measured(
            circuit.n, OURS, verifier.verify.transact(circuit.public, proof, sender=self.owner)
        )

    def reference(self, circuit: InputsCircuit, compiled: dict | None, failure: str) -> VerifierRow:
        """snarkjs's verifier, if it compiled; any failure is reported in the row, not raised."""
        if compiled is None:
            return VerifierRow(circuit.n, SNARKJS_SOL, note=failure)
        contract_type = ContractType(
            contractName=f"Snarkjs{compiled['name']}{circuit.n}",
            abi=compiled["abi"],
            deploymentBytecode={"bytecode": "0x" + compiled["bytecode"]},
        )
        args = circuit.solidity_args()
        try:
            verifier = self.owner.deploy(ContractContainer(contract_type))
            if not verifier.verifyProof(*args):
                return VerifierRow(circuit.n, SNARKJS_SOL, note="not measured: verifyProof returned false")
            tx = verifier.verifyProof.transact(*args, sender=self.owner)
        except Exception as error:  # a reference only: report whatever went wrong
            return VerifierRow(circuit.n, SNARKJS_SOL, note=f"not measured: {one_line(error)}")
        return self.measured(circuit.n, SNARKJS_SOL, tx)

    def table(self) -> str:
        return ruled(VerifierRow.HEADER, [row.line() for row in self.rows])

    def pair(self, n: int) -> tuple[VerifierRow, VerifierRow]:
        """Our verifier's row and snarkjs's for `n` public inputs."""
        ours, reference = (
            next(r for r in self.rows if r.n == n and r.verifier == v) for v in (OURS, SNARKJS_SOL)
        )
        return ours, reference

    def ratios(self) -> list[float | None]:
        """Per input count, our net gas over snarkjs's (None if snarkjs's was not measured)."""
        ratios = []
        for n in PUBLIC_INPUT_COUNTS:
            ours, reference = self.pair(n)
            ratios.append(None if reference.net is None else ours.net / reference.net)
        return ratios

    def ratio_table(self) -> str:
        """Per input count: our net gas, snarkjs's and the ratio, then the verdict line."""
        header = f"{'inputs':>6}  {'ours net':>9}  {'snarkjs net':>11}  {'ours/snarkjs':>12}"
        lines = []
        for n, ratio in zip(PUBLIC_INPUT_COUNTS, self.ratios(), strict=True):
            ours, reference = self.pair(n)
            theirs = "-" if reference.net is None else f"{reference.net:,}"
            shown = "-" if ratio is None else f"{ratio:.4f}"
            lines.append(f"{n:>6}  {ours.net:>9,}  {theirs:>11}  {shown:>12}")
        return ruled(header, lines) + "\n\n" + self.ratio_verdict()

    def ratio_verdict(self) -> str:
        """The verdict against SNARKJS_RATIO_TARGET at every input count."""
        target = f"ratio <= {SNARKJS_RATIO_TARGET:.2f} at every input count"
        measured = [(r, n) for n, r in zip(PUBLIC_INPUT_COUNTS, self.ratios(), strict=True) if r is not None]
        if len(measured) < len(PUBLIC_INPUT_COUNTS):
            return f"{target}: not judged (snarkjs's verifier not measured at every input count)"
        worst, at = max(measured)
        judged = "met" if worst <= SNARKJS_RATIO_TARGET else "MISSED"
        return f"{target}: {judged} (highest {worst:.4f}, at {at} input{'s' if at > 1 else ''})"

    def verdicts(self) -> str:
        """One line per input count: our verifier's net gas against the 20% target."""
        lines = []
        for n in PUBLIC_INPUT_COUNTS:
            ours, reference = self.pair(n)
            over = ours.net / ours.floor - 1
            judged = "met" if over <= FLOOR_OVERHEAD_TARGET else "MISSED"
            compared = (
                f"snarkjs's verifier {reference.net / reference.floor - 1:+.1%}"
                if reference.gas is not None
                else "snarkjs's verifier not measured"
            )
            lines.append(
                f"{n:>2} public input{'s' if n > 1 else ' '}: net {ours.net:,} is {over:+.1%} over the floor "
                f"{ours.floor:,} (target within {FLOOR_OVERHEAD_TARGET:.0%}: {judged}); {compared}"
            )
        return "\n".join(lines)


def main(only: str | None) -> None:
    """`ape run bench [--only PART]` (scripts/bench.py): the parts asked for, then the fees paid."""
    started = time.perf_counter()
    owner = accounts.test_accounts[0]
    first_block = chain.provider.web3.eth.block_number + 1
    if only in (None, "registry"):
        registry_part()
    if only in (None, "verifier"):
        verifier_part(owner)
    if only in (None, "proving"):
        proving_part(owner)
    spent = Spend()
    for one in fees_paid(chain.provider.web3, first_block).values():
        spent.add(one)
    base = chain.provider.web3.eth.get_block(first_block).get("baseFeePerGas", 0)
    click.echo(
        f"\nfees paid by the bench's transactions (gas used x effective gas price, from the receipts; "
        f"base fee {base:,} wei at its first block): {spent.eth()}"
    )
    click.echo(f"\nbench took {time.perf_counter() - started:.0f} s (after compiling)")


def registry_part() -> None:
    bench = Bench()
    figures = bench.run()

    def judged(value: int, target: int) -> str:
        return f"{value:,} ({'met' if value <= target else 'MISSED'})"

    click.echo(
        f"\nRegistry runtime code: {judged(bench.size(), SIZE_TARGET)} bytes, target <= {SIZE_TARGET:,} "
        "(EIP-170 allows 24,576)"
    )
    click.echo(
        f"\nRegistry gas on chain {chain.chain_id} "
        "(gas = receipt gasUsed; net = gas less 21,000 and calldata)\n"
    )
    click.echo(bench.table())
    verdict = (
        f"\ntargets, steady state, net: lifecycle <= {LIFECYCLE_TARGET:,}: "
        f"{judged(figures['lifecycle_net'], LIFECYCLE_TARGET)}; "
        f"batch of 50 <= {BATCH_50_TARGET:,} per item: {judged(figures['batch50'], BATCH_50_TARGET)}"
    )
    click.echo(verdict)


def verifier_part(owner) -> None:
    verifiers = VerifierBench(owner)
    verifiers.run()
    click.echo(
        "\nGroth16 verifier gas by number of public inputs: one transaction calling the verifier, "
        f"snarkjs {npm_version('snarkjs')}'s Verifier.sol (solc {verifiers.solc or '-'}, optimizer on) "
        "for the same key and proof\n"
        f"(floor = {PAIRING_GAS:,} + {PER_INPUT_GAS:,} per input, the precompiles' EIP-1108 prices; "
        "over = net - floor; floor+intr = floor + the transaction's intrinsic gas)\n"
    )
    click.echo(verifiers.table())
    click.echo(f"\ntarget, Groth16Verifier.vy net gas within {FLOOR_OVERHEAD_TARGET:.0%} of the floor:")
    click.echo(verifiers.verdicts())
    click.echo(
        f"\ntarget, Groth16Verifier.vy net gas at most snarkjs's Verifier.sol's for the same key and proof "
        f"(ratio ours/snarkjs <= {SNARKJS_RATIO_TARGET:.2f}):\n"
    )
    click.echo(verifiers.ratio_table())

    systems = SystemsBench(owner)
    systems.run()
    click.echo(
        "\nGroth16 beside PLONK, the same statement (square: public prover and y, x * x = y), one "
        "snarkjs proof each verified in a transaction (net = gas - intrinsic, calldata included in "
        "intrinsic; the PLONK verifier's inner self-call to snarkjs's verifyProof from the call trace)\n"
    )
    click.echo(systems.table())
    click.echo(systems.verdict())


def proving_part(owner) -> None:
    proving = ProvingBench(owner)
    proving.run()
    click.echo(
        "\nProving time per circuit (the backend's own timing; groth16py after one untimed proof that "
        "loads the key; snarkjs including node's start-up and the witness; on chain = the last proof "
        "by an eth_call of Groth16Verifier)\n"
    )
    click.echo(proving.table())


__all__ = ["main", "project"]
