"""The marketplace's lifecycle on a local anvil node that this command starts and stops.

A market is created, three provers stake and join it, a requester posts tasks, a
frontend assigns them in one batch (one item is refused and reported, the rest
apply), provers submit proofs and are paid, one prover misses its deadline and is
slashed, its task is reassigned and proven, and everyone withdraws.

Every proof is a real Groth16 proof, made by a proving backend (groth16py in-process)
from the inputs the requester posted, and checked on-chain by the market's verifier
(contracts/verifiers/Groth16Verifier.vy). A second market for a circuit a thousand
times larger (circuits/squarings-10000) shows proving times that really differ. The
circuits' keys come from a single-party setup: for demos only.
"""

from __future__ import annotations

import json
import random

import ape
import click
from ape import accounts, chain
from ape.cli import ConnectedProviderCommand, network_option
from eth_utils import keccak

from provingmarket.circuits import Circuit
from provingmarket.devnet import ETHER, SQUARE, default_backend, deploy_stack, task_terms
from provingmarket.formats import OPEN_RACE, Assignment, TaskTerms
from provingmarket.markets import MarketTerms, open_market


def eth(wei: int) -> str:
    return f"{wei / ETHER:.4f} ETH"


class Demo:
    def __init__(self):
        test = accounts.test_accounts
        self.owner, self.requester, self.keeper = test[0], test[1], test[2]
        self.provers = {"alice": test[3], "bob": test[4], "carol": test[5]}
        self.names = {a.address: n for n, a in self.provers.items()}
        self.names.update(
            {
                self.owner.address: "owner",
                self.requester.address: "requester",
                self.keeper.address: "frontend",
            }
        )
        self.stack = deploy_stack(ape, self.owner, [self.keeper])
        self.registry = self.stack.registry
        self.tasks: dict[bytes, str] = {}
        self.inputs: dict[str, dict] = {}  # task label -> the inputs its requester posted
        self.circuits = {self.stack.market_id: SQUARE}
        self.backend = default_backend()
        self.random = random.Random(7)
        self.salt = 0

    def name(self, address: str) -> str:
        return self.names.get(address, address[:10])

    def say(self, text: str) -> None:
        click.echo(f"  [{chain.pending_timestamp - self.start:>5}s] {text}")

    def report(self, tx) -> None:
        """One line per registry event in the transaction."""
        for e in tx.events:
            n = e.event_name
            if n == "TaskPosted":
                t = TaskTerms.from_event(e.terms)
                self.say(
                    f"task {self.tasks[bytes(e.task_id)]} posted: N={t.redundancy}, "
                    f"max reward {eth(t.max_reward)}, collateral {eth(t.collateral)}, "
                    f"proving window {t.proving_window}s"
                )
            elif n == "TaskAssigned":
                self.say(
                    f"task {self.tasks[bytes(e.task_id)]} slot {e.slot} assigned to {self.name(e.prover)} "
                    f"at {eth(e.price)}, deadline in {e.deadline - chain.pending_timestamp + 1}s"
                )
            elif n == "AssignmentSkipped":
                self.say(f"task {self.tasks[bytes(e.task_id)]} for {self.name(e.prover)} skipped: {e.reason}")
            elif n == "TaskProven":
                self.say(
                    f"task {self.tasks[bytes(e.task_id)]} slot {e.slot} proven by {self.name(e.prover)}: "
                    f"paid {eth(e.paid)}, frontend fee {eth(e.fee)}, refund {eth(e.refund)}"
                )
            elif n == "Slashed":
                self.say(
                    f"{self.name(e.prover)} slashed on task {self.tasks[bytes(e.task_id)]}: "
                    f"{eth(e.collateral)} collateral -> requester {eth(e.to_requester)}, "
                    f"keeper {eth(e.to_caller)}, burnt {eth(e.burnt)}; "
                    f"{'slot reopened' if e.reopened else 'escrow refunded'}"
                )
            elif n == "Staked":
                self.say(f"{self.name(e.prover)} staked {eth(e.amount)}")
            elif n == "ProverJoined":
                self.say(
                    f"{self.name(e.prover)} joined market {e.market_id}: capacity {e.capacity}, "
                    f"ask {eth(e.ask)}, proving time {e.proving_time}s"
                )
            elif n == "Withdrawn":
                self.say(f"{self.name(e.account)} withdrew {eth(e.amount)}")

    def post(self, label: str, market: int | None = None, **overrides) -> TaskTerms:
        """Post a task with fresh inputs: the commitment goes on-chain, the inputs go to
        the prover in the TaskPosted event."""
        self.salt += 1
        market = market or self.stack.market_id
        circuit = self.circuits[market]
        inputs = circuit.inputs_for(self.random.randrange(2, 2**64))
        prover_input = json.dumps(inputs, sort_keys=True).encode()
        mechanism = overrides.pop("mechanism_id", self.stack.mechanism_id)
        terms = task_terms(
            market,
            mechanism,
            salt=self.salt,
            inputs_commitment=circuit.commitment(inputs),
            prover_input_hash=keccak(prover_input),
            **overrides,
        )
        tx = self.registry.post_task(
            terms.as_tuple(), prover_input, "", sender=self.requester, value=terms.escrow()
        )
        event = tx.events.filter(self.registry.TaskPosted)[0]
        self.tasks[bytes(event.task_id)] = label
        self.inputs[label] = json.loads(bytes(event.prover_input))
        self.report(tx)
        return TaskTerms.from_event(event.terms)

    def prove(self, terms: TaskTerms, prover, assignment: Assignment) -> float:
        """The prover proves from the posted inputs with its backend and submits."""
        label = self.tasks[bytes(self.registry.task_id(terms.as_tuple()))]
        circuit = self.circuits[terms.market_id]
        result = self.backend.prove(circuit, self.inputs[label], prover.address)
        self.say(
            f"{self.name(prover.address)} proved {label} ({circuit.name}, {circuit.constraints:,} "
            f"constraints) in {result.seconds * 1000:,.0f} ms with {result.backend}"
        )
        tx = self.registry.prove(
            terms.as_tuple(), assignment.as_tuple(), result.public_inputs, result.proof, sender=prover
        )
        self.report(tx)
        return result.seconds

    def run(self) -> None:
        registry, market = self.registry, self.stack.market_id
        self.start = chain.pending_timestamp
        click.echo(
            f"\nregistry {registry.address}, market {market} for circuit {SQUARE.name} "
            f"(Groth16 verifier {self.stack.verifier.address}), "
            f"mechanism {self.stack.mechanism_id} 'orderbook' run by the frontend {self.keeper.address}\n"
        )

        click.echo("Provers stake and join the market")
        for name, (stake, capacity, ask) in {
            "alice": (2, 2, 0.01),
            "bob": (2, 1, 0.02),
            "carol": (1, 1, 0.015),
        }.items():
            p = self.provers[name]
            self.report(registry.stake(sender=p, value=stake * ETHER))
            self.report(
                registry.join_market(
                    market, capacity, int(ask * ETHER), 60, 0b1, [self.stack.mechanism_id], sender=p
                )
            )

        click.echo("\nThe requester posts tasks, escrowing each one's maximum payout")
        t1 = self.post("T1")
        t2 = self.post("T2")
        t3 = self.post("T3", redundancy=2, max_reward=ETHER // 5)
        t4 = self.post("T4", proving_window=120)

        click.echo("\nThe frontend assigns in one batch; bob has capacity 1, so his second item is skipped")
        alice, bob, carol = self.provers["alice"], self.provers["bob"], self.provers["carol"]
        items = [
            (t1.as_tuple(), alice.address, ETHER // 50, 0, 0, 0, b""),
            (t2.as_tuple(), bob.address, ETHER // 40, 0, 0, 0, b""),
            (t3.as_tuple(), alice.address, ETHER // 20, 0, 0, 0, b""),
            (t3.as_tuple(), bob.address, ETHER // 20, 0, 0, 0, b""),
            (t4.as_tuple(), carol.address, ETHER // 50, 0, 0, 0, b""),
        ]
        tx = registry.assign_batch(items, sender=self.keeper)
        self.report(tx)
        live = {
            (bytes(e.task_id), e.prover): Assignment.from_event(e)
            for e in tx.events.filter(registry.TaskAssigned)
        }
        task = {self.tasks[k]: k for k in self.tasks}

        click.echo("\nProvers submit proofs; each is checked by the market's verifier and paid")
        chain.mine(1, deltatime=20)
        self.prove(t1, alice, live[(task["T1"], alice.address)])
        self.prove(t2, bob, live[(task["T2"], bob.address)])
        self.prove(t3, alice, live[(task["T3"], alice.address)])
        tx = registry.assign((t3.as_tuple(), bob.address, ETHER // 20, 0, 0, 0, b""), sender=self.keeper)
        self.report(tx)
        e = tx.events.filter(registry.TaskAssigned)[0]
        self.prove(t3, bob, Assignment.from_event(e))

        click.echo("\ncarol misses T4's deadline; the keeper slashes her and T4 goes to bob")
        chain.mine(1, deltatime=121)
        carol_t4 = live[(task["T4"], carol.address)]
        self.report(registry.slash(t4.as_tuple(), carol.address, carol_t4.as_tuple(), sender=self.keeper))
        tx = registry.assign((t4.as_tuple(), bob.address, ETHER // 40, 0, 0, 0, b""), sender=self.keeper)
        self.report(tx)
        e = tx.events.filter(registry.TaskAssigned)[0]
        self.prove(t4, bob, Assignment.from_event(e))

        click.echo("\nAn open race needs no frontend: the first valid proof is paid")
        race = self.post(
            "R1", mechanism_id=OPEN_RACE, proving_window=300, decay=True, decay_floor=ETHER // 100
        )
        chain.mine(1, deltatime=60)
        self.prove(race, carol, Assignment(0, 0, 0))

        click.echo("\nA second market for a heavier circuit: same rules, proofs a thousand times larger")
        heavy_circuit = Circuit.load("squarings-10000")
        heavy = open_market(ape, registry, heavy_circuit, self.owner, self.backend, MarketTerms()).market_id
        self.circuits[heavy] = heavy_circuit
        self.say(f"market {heavy} opened for circuit {heavy_circuit.name} (verifier deployed, sample proven)")
        self.report(
            registry.join_market(heavy, 1, ETHER // 50, 60, 0b1, [self.stack.mechanism_id], sender=alice)
        )
        light_task = self.post("L1")
        heavy_task = self.post("H1", market=heavy, max_reward=ETHER // 5)
        tx = registry.assign_batch(
            [
                (light_task.as_tuple(), bob.address, ETHER // 40, 0, 0, 0, b""),
                (heavy_task.as_tuple(), alice.address, ETHER // 10, 0, 0, 0, b""),
            ],
            sender=self.keeper,
        )
        self.report(tx)
        by_prover = {e.prover: Assignment.from_event(e) for e in tx.events.filter(registry.TaskAssigned)}
        light_seconds = self.prove(light_task, bob, by_prover[bob.address])
        heavy_seconds = self.prove(heavy_task, alice, by_prover[alice.address])
        self.say(
            f"proving time: {SQUARE.name} {light_seconds * 1000:,.1f} ms, "
            f"{heavy_circuit.name} {heavy_seconds * 1000:,.0f} ms ({heavy_seconds / light_seconds:,.0f}x)"
        )

        click.echo("\nEveryone withdraws what was credited to them")
        rows = []
        for who in [self.requester, self.keeper, alice, bob, carol]:
            credited = registry.balances(who)
            if credited:
                self.report(registry.withdraw(sender=who))
            standing = registry.standing(who)
            rows.append((self.name(who.address), credited, standing.stake))

        click.echo(f"\n{'account':<10} {'withdrawn':>14} {'stake left':>14}")
        for name, credited, stake in rows:
            click.echo(f"{name:<10} {eth(credited):>14} {eth(stake):>14}")
        delivered = {label: registry.proofs_delivered(tid) for tid, label in self.tasks.items()}
        click.echo(
            f"\nproofs delivered: {', '.join(f'{k}={v}' for k, v in sorted(delivered.items()))}; "
            f"burnt by slashing: {eth(registry.burnt())}; "
            f"registry holds {eth(chain.provider.get_balance(registry.address))} "
            "(stakes and burnt collateral)"
        )
        expected = {"T1": 1, "T2": 1, "T3": 2, "T4": 1, "R1": 1, "L1": 1, "H1": 1}
        if delivered != expected:
            raise click.ClickException(f"the demo did not deliver every proof: {delivered}")


@click.command(cls=ConnectedProviderCommand)
@network_option()
def cli(network):
    """Run the marketplace's lifecycle on a local chain and print what happened."""
    Demo().run()
    click.echo("\ndemo finished")
