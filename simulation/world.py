"""One seed's world: a real anvil, the real registry and Groth16 market, the real
frontends (orderbook, sealed-bid auction, election) and one real prover agent per
simulated prover, each a process of its own, as a user starts them.

What is simulated, and only that: the provers' hardware (each agent's --simulate makes a
proof take longer, fail silently on a seeded share of its work, and reach the chain late)
and the requesters (the personas' weights and limits, posting a seeded workload). Proofs
are real Groth16 proofs checked by the verifier on chain; prices, assignments, slashes
and payments are the registry's.

A policy serves the whole workload: every task through one mechanism, or through the
router's choice. Each task's terms come from the same rule (`Router.tune`), so policies
differ only in the mechanism. The policy's tasks are followed on chain until every one has
settled (proven, or its unfilled slots refunded); overdue assignments nobody slashed
and slots nobody reclaimed are slashed and reclaimed by the world (anyone may), so no
task is left hanging.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

from provingmarket.chain.client import KeySigner, Refused, RegistryClient
from provingmarket.deployments import Deployment, MarketRecord, save
from provingmarket.devnet import ETHER, PROVER_INPUT, deploy_stack, send_signed, stop_processes, task_terms
from provingmarket.formats import DUTCH, OPEN_RACE, TaskTerms
from provingmarket.market.preferences import Preferences, utility
from provingmarket.market.qos import TaskQoS, block_clock, measure
from provingmarket.market.router import Arm, Infeasible, Router
from provingmarket.market.routing import market_view, persona_preferences
from simulation.config import ROUTER, Fleet, Requester, SimConfig

ROOT = Path(__file__).resolve().parent.parent
FEE = ETHER // 1000  # the frontend fee per slot through a registered mechanism
STAKE = 5 * ETHER


class SimulationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Arrival:
    index: int
    at: float  # seconds after the policy starts
    persona: str


@dataclass
class Outcome:
    seed: int
    policy: str
    index: int
    persona: str
    mechanism: str  # the arm it went through ("-" if nothing was posted)
    reason: str  # the router's, or why nothing was posted
    qos: TaskQoS | None = None
    utility: float = 0.0


def workload(config: SimConfig, seed: int) -> list[Arrival]:
    """The seed's tasks: every persona at least once, the rest drawn by share, in a
    seeded order with exponential gaps of mean `arrival_every`."""
    rng = random.Random(seed)
    names = [r.persona for r in config.requesters]
    weights = [r.share for r in config.requesters]
    chosen = names + rng.choices(names, weights, k=config.tasks - len(names))
    rng.shuffle(chosen)
    at, arrivals = 0.0, []
    for i, name in enumerate(chosen):
        arrivals.append(Arrival(i, at, name))
        at += rng.expovariate(1 / config.arrival_every)
    return arrivals


def preferences(requester: Requester, min_reward: int) -> Preferences:
    """The persona's weights with the requester's limits (its price in wei)."""
    price = None if requester.max_price_x is None else int(requester.max_price_x * min_reward)
    return persona_preferences(
        requester.persona,
        max_time=requester.max_time,
        max_price=price,
        min_redundancy=requester.min_redundancy,
    )


def _key(seed: int, role: str) -> str:
    return "0x" + keccak(text=f"simulation {seed} {role}").hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """Started with `start()` inside an ape network context on the seed's anvil; every
    process it starts is stopped by `stop()`, by its pid."""

    def __init__(self, ape, anvil, config: SimConfig, seed: int, logs: Path, say=print):
        self.ape, self.anvil, self.config, self.seed, self.logs, self.say = (
            ape,
            anvil,
            config,
            seed,
            logs,
            say,
        )
        self.web3 = ape.chain.provider.web3
        self.processes: dict[str, subprocess.Popen] = {}
        self.events: list = []
        self.cursor = 0
        self.block_time = block_clock(self.web3)
        self.policy_number = 0
        self.choices: dict[str, tuple] = {}  # salt → the router's (choice, preferences, requester)

    # -------------------------------------------------------------- setting up

    def start(self) -> None:
        ape, config = self.ape, self.config
        owner = ape.accounts.test_accounts[0]
        keys = {role: _key(self.seed, role) for role in ("orderbook", "auction", "election", "janitor")}
        keys.update(
            {f"requester {r.persona}": _key(self.seed, f"requester {r.persona}") for r in config.requesters}
        )
        self.prover_keys: list[tuple[Fleet, str, str]] = []
        for fleet in config.fleets:
            for i in range(fleet.provers):
                name = f"{fleet.name}-{i + 1}"
                self.prover_keys.append((fleet, name, _key(self.seed, f"prover {name}")))
        for _, _, key in self.prover_keys:
            keys[key] = key
        funding = [
            self.web3.eth.send_transaction(
                {"from": owner.address, "to": Account.from_key(k).address, "value": 100 * ETHER}
            )
            for k in sorted(set(keys.values()))
        ]
        for tx in funding:  # mined before the owner sends anything else
            self.web3.eth.wait_for_transaction_receipt(tx, timeout=60)
        address = {role: Account.from_key(k).address for role, k in keys.items()}
        stack = deploy_stack(ape, owner, [address["orderbook"]], unbonding_delay=600, grace_period=2)
        registry = stack.registry
        ids = {"orderbook": stack.mechanism_id}
        for role in ("auction", "election"):
            tx = registry.register_mechanism(role, [address[role]], sender=owner)
            ids[role] = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
        self.market_id = stack.market_id
        self.client = RegistryClient(self.web3, registry.address, KeySigner(keys["janitor"]))
        self.min_reward = self.client.market(stack.market_id).min_reward
        self.logs.mkdir(parents=True, exist_ok=True)
        self.record = save(
            Deployment(
                "ethereum:local",
                self.web3.eth.chain_id,
                registry.address,
                0,
                600,
                {stack.market_id: MarketRecord("square", stack.verifier.address)},
            ),
            self.logs,
        )
        self.cursor = 0  # a fresh chain: every event from genesis, the market's creation included
        self.arms = [
            Arm("orderbook", ids["orderbook"], least_time=2, fee=FEE),
            Arm("auction", ids["auction"], least_time=config.auction_window + 2, fee=FEE),
            Arm("election", ids["election"], least_time=4, fee=FEE),
            Arm("open race", OPEN_RACE),
            Arm("dutch", DUTCH, least_time=2),
        ]
        accepted = sorted(ids.values())
        for fleet, _, key in self.prover_keys:
            client = RegistryClient(self.web3, registry.address, KeySigner(key))
            proving_time = math.ceil(fleet.prove_seconds) + 2
            client.transact("stake", value=STAKE)
            ask = int(fleet.ask_x * self.min_reward)
            client.transact("join_market", stack.market_id, fleet.capacity, ask, proving_time, 0, accepted)
        self.market = market_view(self.client.events(from_block=0), stack.market_id)  # as the chain has it
        self.requesters = {
            r.persona: RegistryClient(self.web3, registry.address, KeySigner(keys[f"requester {r.persona}"]))
            for r in config.requesters
        }
        self.nonces = {
            name: self.web3.eth.get_transaction_count(c.signer.address, "pending")
            for name, c in self.requesters.items()
        }
        self.prefs = {r.persona: preferences(r, self.min_reward) for r in config.requesters}

        self._spawn(
            "orderbook",
            "frontends.orderbook.process",
            keys["orderbook"],
            "--mechanism",
            str(ids["orderbook"]),
        )
        port = _free_port()
        auction_url = f"http://127.0.0.1:{port}"
        self._spawn(
            "auction",
            "frontends.auction.process",
            keys["auction"],
            *(
                "--mechanism",
                str(ids["auction"]),
                "--port",
                str(port),
                "--window",
                str(config.auction_window),
            ),
        )
        self._spawn(
            "election",
            "frontends.election.process",
            keys["election"],
            "--mechanism",
            str(ids["election"]),
            sub=("run",),
        )
        for fleet, name, key in self.prover_keys:
            hardware = {
                "prove_seconds": fleet.prove_seconds,
                "failure_rate": fleet.failure_rate,
                "latency": fleet.latency,
                "seed": self.seed,
            }
            self._spawn(
                name,
                "provingmarket.agent",
                key,
                *("--auction", auction_url, "--simulate", json.dumps(hardware)),
                *("--cost-per-second", fleet.cost_per_second, "--margin", "1"),
            )
        self.say(
            f"seed {self.seed}: registry {registry.address}; {len(self.prover_keys)} provers in "
            f"{len(config.fleets)} fleets; frontends and agents started "
            f"({', '.join(f'{n} (pid {p.pid})' for n, p in self.processes.items())})"
        )

    def _spawn(self, name: str, module: str, key: str, *args: str, sub: tuple[str, ...] = ()) -> None:
        env = dict(os.environ, SIM_KEY=key, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        log = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 (the child holds it)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module, *sub, "--rpc", self.anvil.uri, "--deployment", str(self.record),
             "--key-env", "SIM_KEY", "--db", str(self.logs / f"{name}.sqlite"), "--poll", "0.5", *args],
            cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()

    def stop(self) -> bool:
        """Stop every process started, by pid; True if each exited cleanly."""
        return stop_processes(self.processes, self.logs, self.say)

    # -------------------------------------------------------------- following the chain

    def follow(self) -> list[TaskQoS]:
        head = self.web3.eth.block_number
        if head >= self.cursor:
            self.events += self.client.events(from_block=self.cursor, to_block=head)
            self.cursor = head + 1
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SimulationError(
                    f"{name} (pid {process.pid}) exited with {process.returncode}; see its log"
                )
        return measure(self.events, self.block_time)

    def tidy(self, tasks: list[TaskQoS], ours: set[str]) -> None:
        """Slash assignments overdue by a few seconds and reclaim unfilled slots past their
        windows, for tasks nobody else tidies (anyone may; a keeper that was faster makes
        ours refused, which is fine)."""
        now = self.web3.eth.get_block("latest")["timestamp"]
        live: dict[tuple[str, str], tuple[int, int, int, str]] = {}
        for e in self.events:
            if "task_id" not in e.args or "0x" + bytes(e.task_id).hex() not in ours:
                continue
            key = ("0x" + bytes(e.task_id).hex(), e.args.get("prover", ""))  # checksummed, as logged
            if e.name == "TaskAssigned":
                live[key] = (e.slot, e.price, e.deadline, e.frontend)
            elif e.name in ("TaskProven", "Slashed", "TaskDeclined", "AssignmentVoided"):
                live.pop(key, None)
        by_id = {q.task_id: q for q in tasks}
        for (tid, prover), (slot, price, deadline, frontend) in live.items():
            if now > deadline + 3:
                self._try("slash", by_id[tid].terms.as_tuple(), prover, (slot, price, deadline, frontend))
        for q in tasks:
            if q.task_id not in ours or q.settled:
                continue
            end = q.posted_at + (
                q.terms.proving_window if q.mechanism_id == OPEN_RACE else q.terms.assign_window
            )
            taken = q.proofs + q.refunded + sum(1 for (tid, _) in live if tid == q.task_id)
            if now > end + 3 and taken < q.redundancy:
                self._try("reclaim", q.terms.as_tuple())

    def _try(self, name: str, *args) -> None:
        try:
            self.client.transact(name, *args)
        except Refused:
            pass  # someone else did it first, or its time has not come

    # -------------------------------------------------------------- serving a workload

    def serve(self, policy: str, arrivals: list[Arrival], router: Router) -> list[Outcome]:
        """Post `arrivals` through `policy` (a mechanism's name, or ROUTER), follow them
        until every one has settled, and return their outcomes. The router learns from
        each of its tasks as it settles; under a single mechanism it learns nothing."""
        self.policy_number += 1
        arms = {a.name: a for a in self.arms}
        outcomes: dict[int, Outcome] = {}
        posted: dict[str, Outcome] = {}  # salt → outcome, until its task id is seen
        by_task: dict[str, Outcome] = {}
        started = time.monotonic()
        queue = list(arrivals)
        deadline = started + self.config.settle_timeout + (arrivals[-1].at if arrivals else 0)
        while True:
            now = time.monotonic()
            while queue and now - started >= queue[0].at:
                arrival = queue.pop(0)
                outcomes[arrival.index] = self._post(policy, arrival, arms, router, posted)
            tasks = self.follow()
            for q in tasks:
                salt = str(q.terms.salt)
                if salt in posted:
                    by_task[q.task_id] = posted.pop(salt)
                    by_task[q.task_id].qos = q
                    if salt in self.choices:  # the router learns from it once it settles
                        router.record(q.task_id, *self.choices.pop(salt))
                elif q.task_id in by_task:
                    by_task[q.task_id].qos = q
            if policy == ROUTER:
                router.learn(tasks)
            self.tidy(tasks, set(by_task))
            if not queue and not posted and all(o.qos.settled for o in by_task.values()):
                break
            if now > deadline:
                waiting = [o.index for o in by_task.values() if not o.qos.settled] + [
                    o.index for o in posted.values()
                ]
                raise SimulationError(
                    f"seed {self.seed}, {policy}: tasks {waiting} did not settle within "
                    f"{self.config.settle_timeout} s of the last posting; see {self.logs}"
                )
            time.sleep(0.5)
        for o in outcomes.values():
            if o.qos is not None:
                o.utility = utility(o.qos, self.prefs[o.persona])
        return [outcomes[i] for i in sorted(outcomes)]

    def _post(
        self, policy: str, arrival: Arrival, arms: dict[str, Arm], router: Router, posted: dict
    ) -> Outcome:
        prefs = self.prefs[arrival.persona]
        client = self.requesters[arrival.persona]
        requester = client.signer.address
        outcome = Outcome(self.seed, policy, arrival.index, arrival.persona, "-", "")
        if policy == ROUTER:
            try:
                choice = router.choose(prefs, self.market, requester)
            except Infeasible as error:
                outcome.reason = str(error)
                return outcome
            arm, chosen, reason = choice.arm, choice.terms, choice.reason
        else:
            arm = arms[policy]
            chosen, limit, why = router.tune(arm, prefs, self.market, router.level(arm, prefs, None))
            if chosen is None:
                outcome.mechanism, outcome.reason = arm.name, f"cannot meet {limit}: {why}"
                return outcome
            reason = f"every task through {policy}"
        salt = self.policy_number * 100_000 + arrival.index
        terms: TaskTerms = task_terms(self.market_id, salt=salt, **chosen)
        call = client.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, "")
        send_signed(client, call, terms.escrow(), self.nonces[arrival.persona], gas=600_000)
        self.nonces[arrival.persona] += 1
        outcome.mechanism, outcome.reason = arm.name, reason
        posted[str(salt)] = outcome
        if policy == ROUTER:
            self.choices[str(salt)] = (choice, prefs, requester)
        self.say(f"  [{policy}] task {arrival.index} ({arrival.persona}) → {arm.name}: {reason}")
        return outcome
