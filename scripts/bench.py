"""Gas per registry operation, from receipts on anvil (`make bench`).

Each figure is a real receipt's gasUsed; "net" subtracts the intrinsic cost
(21,000 + calldata at 4 gas per zero byte and 16 per other byte), which is how
Boundless publishes its figures. Proofs are shown less the verifier's own gas
(read from the call trace), so the rows measure the registry's work. "First use"
is an account's first time (fresh balances and records); "steady" repeats the
operation once those exist.
"""

from __future__ import annotations

import ape
import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand, network_option

from provingmarket.devnet import ETHER, PROVER_INPUT, STATEMENT, deploy_stack, stand_in_proof, task_terms
from provingmarket.formats import Assignment, TaskTerms

LIFECYCLE_TARGET = 180_000
BATCH_50_TARGET = 35_000


def intrinsic(tx) -> int:
    data = bytes(chain.provider.web3.eth.get_transaction(tx.txn_hash)["input"])
    return 21_000 + sum(4 if b == 0 else 16 for b in data)


def verifier_gas(tx) -> int:
    """Gas used inside the verifier's STATICCALL(s), from anvil's call tracer."""
    trace = chain.provider.make_request("debug_traceTransaction", [tx.txn_hash, {"tracer": "callTracer"}])
    total = 0
    stack = [trace]
    while stack:
        frame = stack.pop()
        for call in frame.get("calls", []) or []:
            if call.get("type") == "STATICCALL":
                total += int(call["gasUsed"], 16)
            stack.append(call)
    return total


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

    def post(self) -> tuple[TaskTerms, object]:
        self.salt += 1
        terms = task_terms(self.stack.market_id, self.stack.mechanism_id, salt=self.salt)
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
            stand_in_proof(STATEMENT, prover.address),
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
            f"target <= {LIFECYCLE_TARGET:,} (steady)",
        )
        return total_gross, total_net

    def batch(self, size: int) -> int:
        provers = [self.prover() for _ in range(size)]
        tasks = [self.post()[0] for _ in range(size)]
        items = [
            (t.as_tuple(), p.address, t.max_reward // 2, 0, 0, 0, b"")
            for t, p in zip(tasks, provers, strict=True)
        ]
        tx = self.registry.assign_batch(items, sender=self.keeper)
        assert len(tx.events.filter(self.registry.TaskAssigned)) == size, "a batch item was skipped"
        per_item = tx.gas_used // size
        note = f"target <= {BATCH_50_TARGET:,}" if size == 50 else ""
        self.row(
            f"assign, per item in batch of {size}",
            "steady",
            per_item,
            (tx.gas_used - intrinsic(tx)) // size,
            note,
        )
        return per_item

    def run(self) -> dict[str, int]:
        first = self.prover()
        self.lifecycle(first, "first use")
        steady, steady_net = self.lifecycle(first, "steady")

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

        b10 = self.batch(10)
        b50 = self.batch(50)
        return {"lifecycle": steady, "lifecycle_net": steady_net, "batch10": b10, "batch50": b50}

    def table(self) -> str:
        header = f"{'operation':<36} {'use':<10} {'gas':>9} {'net':>9}  note"
        lines = [header, "-" * len(header)]
        for operation, use, gas, net, note in self.rows:
            lines.append(f"{operation:<36} {use:<10} {gas:>9,} {net:>9,}  {note}")
        return "\n".join(lines)


@click.command(cls=ConnectedProviderCommand)
@network_option()
def cli(network):
    """Print gas per registry operation, measured from receipts."""
    bench = Bench()
    figures = bench.run()
    click.echo(f"\nRegistry gas on {network} (gas = receipt gasUsed; net = gas less 21,000 and calldata)\n")
    click.echo(bench.table())
    net = figures["lifecycle_net"]

    def judged(value: int, target: int) -> str:
        return f"{value:,} ({'met' if value <= target else 'MISSED'})"

    verdict = (
        f"\ntargets, steady state: lifecycle <= {LIFECYCLE_TARGET:,}: net {judged(net, LIFECYCLE_TARGET)}, "
        f"gross {judged(figures['lifecycle'], LIFECYCLE_TARGET)}; "
        f"batch of 50 <= {BATCH_50_TARGET:,} per item: gross {judged(figures['batch50'], BATCH_50_TARGET)}"
    )
    click.echo(verdict)


__all__ = ["cli", "project"]
