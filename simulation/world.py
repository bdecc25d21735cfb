"""One run's world: a real anvil, the real registry and Groth16 market, the real
frontends (orderbook, sealed-bid auction, election, double auction) and one real prover
agent per simulated prover, each a process of its own, as a user starts them. Every
(policy, seed) run has a world of its own, so runs can go at once (simulation/run.py).

What is simulated, and only that: the provers' hardware (each agent's --simulate makes a
proof take longer, fail silently on a seeded share of its work, and reach the chain late)
and the requesters (the personas' weights and limits, posting a seeded workload). Proofs
are real Groth16 proofs checked by the verifier on chain; prices, assignments, slashes
and payments are the registry's.

A policy serves the whole workload: every task through one mechanism, through one
fallback chain (its assignment window split evenly among the links), or through the
router's choice. A single mechanism's tasks take their terms from the router's rule
(`Router.tune`); the router learns its own terms (reward level and redundancy) as it goes.
The policy's tasks are followed on chain until every one has settled (proven, or its
unfilled slots refunded); overdue assignments nobody slashed and slots nobody reclaimed
are slashed and reclaimed by the world (anyone may), so no task is left hanging.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

from provingmarket.chain import index as market_index
from provingmarket.chain.client import Refused
from provingmarket.devnet import (
    BASE_FEE,
    ETHER,
    FRONTENDS,
    Processes,
    Spend,
    deploy_marketplace,
    fees_paid,
    fund,
    spend_of,
    task_terms,
)
from provingmarket.devnet.chain import free_port
from provingmarket.devnet.processes import AGENT, AUCTION, ELECTION, ORDERBOOK
from provingmarket.devnet.stack import register_mechanism
from provingmarket.formats import DUTCH, OPEN_RACE, Link, TaskTerms, encode_chain
from provingmarket.market.preferences import Preferences, utility
from provingmarket.market.qos import TaskQoS, block_clock, measure
from provingmarket.market.router import Arm, Infeasible, Router
from provingmarket.market.routing import market_view, persona_preferences
from simulation.config import (
    CHAINS,
    DOUBLE_AUCTION,
    ROUTER,
    Fleet,
    Requester,
    SimConfig,
    chain_links,
    chain_text,
    chain_windows,
)

FEE = ETHER // 1000  # the frontend fee per slot through a registered mechanism
READY_LINE = '"event": "mirror.batch"'  # a process's log line once it has read the chain
STOP_WITHIN = 30  # seconds the processes may take to stop after SIGTERM
READY_WITHIN = 180  # seconds the processes may take to start and read the chain
DOUBLE_AUCTION_MODULE = "frontends.double_auction.process"  # not among the devnet's FRONTENDS
DOUBLE_AUCTION_NAME = "double_auction"  # its registered name and its process's


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


def frontends_for(policy: str) -> tuple[str, ...]:
    """The frontend processes a policy's tasks need (the router's: every one): a single
    mechanism's or chain's own registered ones; none for the open race and the Dutch auction,
    which the provers take themselves (the world tidies what no frontend would)."""
    every = (*FRONTENDS, DOUBLE_AUCTION_NAME)
    if policy == ROUTER:
        return every
    names = chain_links(policy) or (DOUBLE_AUCTION_NAME if policy == DOUBLE_AUCTION else policy,)
    return tuple(name for name in every if name in names)


class World:
    """Started with `start()` inside an ape network context on the seed's anvil; every
    process it starts is stopped by `stop()`, by its pid."""

    def __init__(self, ape, anvil, config: SimConfig, seed: int, logs: Path, say=print, policy: str = ROUTER):
        self.ape, self.anvil, self.config, self.seed, self.logs, self.say = (
            ape,
            anvil,
            config,
            seed,
            logs,
            say,
        )
        self.web3 = ape.chain.provider.web3
        self.processes: Processes | None = None  # once the marketplace is deployed
        self.events: list = []
        self.cursor = 0
        self.block_time = block_clock(self.web3)
        self.policy_number = 0
        self.choices: dict[str, tuple] = {}  # salt → the router's (choice, preferences, requester)
        self.fees: dict[str, dict[str, Spend]] = {}  # policy → role → the fees it paid meanwhile
        self.frontends = frontends_for(policy)  # the frontend processes it starts

    # -------------------------------------------------------------- setting up

    def start(self) -> None:
        """Fund every account, deploy the marketplace, stake and join the provers, then
        start the frontends and one agent per prover."""
        config = self.config
        roles = [
            *FRONTENDS,
            DOUBLE_AUCTION_NAME,
            "janitor",
            *(f"requester {r.persona}" for r in config.requesters),
        ]
        keys = {role: _key(self.seed, role) for role in roles}
        self.prover_keys: list[tuple[Fleet, str, str]] = [
            (fleet, name, _key(self.seed, f"prover {name}"))
            for fleet in config.fleets
            for name in (f"{fleet.name}-{i + 1}" for i in range(fleet.provers))
        ]
        owner = self.ape.accounts.test_accounts[0]
        every = sorted({*keys.values(), *(key for _, _, key in self.prover_keys)})
        fund(self.web3, owner.address, [Account.from_key(k).address for k in every], 100 * ETHER)
        frontends = {name: Account.from_key(keys[name]).address for name in (*FRONTENDS, DOUBLE_AUCTION_NAME)}
        self.roles = {  # whose fees count for which role (the janitor slashes and closes: a keeper)
            "requesters": [
                Account.from_key(keys[f"requester {r.persona}"]).address for r in config.requesters
            ],
            "provers": [Account.from_key(key).address for _, _, key in self.prover_keys],
            "frontends": [*frontends.values(), Account.from_key(keys["janitor"]).address],
        }
        marketplace = deploy_marketplace(self.ape, owner, frontends, self.logs, grace_period=2)
        # the double auction: registered beside the devnet's frontends, so provers join it too
        marketplace.mechanisms[DOUBLE_AUCTION_NAME] = register_mechanism(
            marketplace.stack.registry, DOUBLE_AUCTION_NAME, [frontends[DOUBLE_AUCTION_NAME]], owner
        )
        self.market_id = marketplace.stack.market_id
        self.client = marketplace.client(keys["janitor"])
        self.min_reward = self.client.market(self.market_id).min_reward
        self.cursor = 0  # a fresh chain: every event from genesis, the market's creation included
        ids = marketplace.mechanisms
        self.arms = [
            Arm("orderbook", ids["orderbook"], least_time=2, fee=FEE),
            Arm("auction", ids["auction"], least_time=config.auction_window + 2, fee=FEE),
            Arm("election", ids["election"], least_time=4, fee=FEE),
            Arm("open race", OPEN_RACE),
            Arm("dutch", DUTCH, least_time=2),
            Arm(DOUBLE_AUCTION, ids[DOUBLE_AUCTION_NAME], least_time=config.auction_window + 2, fee=FEE),
        ]
        for fleet, _, key in self.prover_keys:
            marketplace.join(
                key, fleet.capacity, int(fleet.ask_x * self.min_reward), math.ceil(fleet.prove_seconds) + 2
            )
        self.market = market_view(self.client.events(from_block=0), self.market_id)  # as the chain has it
        self.requesters = {
            r.persona: marketplace.requester(keys[f"requester {r.persona}"]) for r in config.requesters
        }
        self.prefs = {r.persona: preferences(r, self.min_reward) for r in config.requesters}
        self.processes = Processes(self.anvil.uri, marketplace.record, self.logs)
        # set up at once (each transaction mined as sent), then a block a second as on a real
        # chain, from the base fee the chain started with
        self.web3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(BASE_FEE)])
        self.web3.provider.make_request("evm_setIntervalMining", [1])
        self._start_processes(keys, ids)

    def _start_processes(self, keys: dict[str, str], mechanisms: dict[str, int]) -> None:
        """The frontends the policy posts through (`frontends_for`), then one agent per prover
        made to behave like its fleet's hardware, bidding in the auction if it runs."""
        assert self.processes is not None
        auction: tuple[str, ...] = ()
        for name in self.frontends:
            mechanism = ("--mechanism", str(mechanisms[name]))
            if name == "auction":
                port = free_port()
                window = ("--port", str(port), "--window", str(self.config.auction_window))
                self.processes.start(name, AUCTION, keys[name], *mechanism, *window)
                auction = ("--auction", f"http://127.0.0.1:{port}")
            elif name == "election":
                self.processes.start(name, ELECTION, keys[name], *mechanism, sub=("run",))
            elif name == DOUBLE_AUCTION_NAME:
                rounds = ("--round", str(self.config.auction_window))
                self.processes.start(name, DOUBLE_AUCTION_MODULE, keys[name], *mechanism, *rounds)
            else:
                self.processes.start(name, ORDERBOOK, keys[name], *mechanism)
        for fleet, name, key in self.prover_keys:
            hardware = {
                "prove_seconds": fleet.prove_seconds,
                "failure_rate": fleet.failure_rate,
                "latency": fleet.latency,
                "seed": self.seed,
            }
            self.processes.start(
                name,
                AGENT,
                key,
                *auction,
                *("--simulate", json.dumps(hardware)),
                *("--cost-per-second", fleet.cost_per_second, "--margin", "1"),
            )
        started = self.processes.started
        self._wait_ready()
        self.say(
            f"seed {self.seed}: registry {self.client.address}; {len(self.prover_keys)} provers in "
            f"{len(self.config.fleets)} fleets; frontends and agents started "
            f"({', '.join(f'{n} (pid {p.pid})' for n, p in started.items())})"
        )

    def _wait_ready(self) -> None:
        """Wait until every process has read the chain once (a `mirror.batch` line in its
        log), so no policy's first tasks go by before anyone could see them; SimulationError
        if one exits first or READY_WITHIN seconds pass."""
        assert self.processes is not None
        waiting = set(self.processes.started)
        deadline = time.monotonic() + READY_WITHIN
        while waiting:
            exited = self.processes.exited()
            if exited:
                raise SimulationError(f"seed {self.seed}: {exited[0]} before it was ready; see its log")
            for name in list(waiting):
                log = self.logs / f"{name}.log"
                if log.exists() and READY_LINE in log.read_text(errors="replace"):
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise SimulationError(
                    f"seed {self.seed}: {', '.join(sorted(waiting))} did not read the chain within "
                    f"{READY_WITHIN} s; see {self.logs}"
                )
            time.sleep(0.2)

    def router_arms(self) -> list[Arm]:
        """The arms the router chooses among: the five mechanisms and the double auction
        (the chains are offered as `router_chains`)."""
        return list(self.arms)

    def router_chains(self) -> list[str]:
        """The chain policies as the router offers them (`Router(chains=...)`): each as a
        `requester post --chain` text with the configured assignment window split evenly.
        Fixed windows: the router bars a chain for a persona whose time limit they pass."""
        return [chain_text(policy, self.config.assign_window) for policy in CHAINS]

    def stop(self) -> bool:
        """Stop every process started, by pid; True if each exited cleanly. Each is sent
        SIGTERM at once, so they finish their rounds together (a second SIGTERM would stop one
        at once), then waited for; one still running after STOP_WITHIN seconds is stopped as
        `Processes.stop` stops them."""
        if self.processes is None:
            return True
        started = self.processes.started.values()
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WITHIN
        for process in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        return self.processes.stop(self.say)

    # -------------------------------------------------------------- following the chain

    def follow(self) -> list[TaskQoS]:
        head = self.web3.eth.block_number
        if head >= self.cursor:
            self.events += self.client.events(from_block=self.cursor, to_block=head)
            self.cursor = head + 1
        exited = self.processes.exited()
        if exited:
            raise SimulationError(f"{exited[0]}; see its log")
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
        with contextlib.suppress(Refused):  # someone else did it first, or its time has not come
            self.client.transact(name, *args)

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
        first_block = self.web3.eth.block_number + 1
        queue = list(arrivals)
        deadline = started + self.config.settle_timeout + (arrivals[-1].at if arrivals else 0)
        while True:
            now = time.monotonic()
            while queue and now - started >= queue[0].at:
                arrival = queue.pop(0)
                outcomes[arrival.index] = self._post(policy, arrival, arms, router, posted)
            tasks = self.follow()
            self._match(tasks, posted, by_task, router)
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
        spent = fees_paid(self.web3, first_block)
        self.fees[policy] = {role: spend_of(spent, addresses) for role, addresses in self.roles.items()}
        return [outcomes[i] for i in sorted(outcomes)]

    def _match(
        self, tasks: list, posted: dict[str, Outcome], by_task: dict[str, Outcome], router: Router
    ) -> None:
        """Tie each task seen on chain to the outcome it was posted for (by its salt), and
        keep each outcome's QoS up to date; the router learns which arm a task went to."""
        for q in tasks:
            salt = str(q.terms.salt)
            if salt in posted:
                by_task[q.task_id] = posted.pop(salt)
                by_task[q.task_id].qos = q
                if salt in self.choices:  # the router learns from it once it settles
                    router.record(q.task_id, *self.choices.pop(salt))
            elif q.task_id in by_task:
                by_task[q.task_id].qos = q

    def _post(
        self, policy: str, arrival: Arrival, arms: dict[str, Arm], router: Router, posted: dict
    ) -> Outcome:
        prefs = self.prefs[arrival.persona]
        requester = self.requesters[arrival.persona]
        outcome = Outcome(self.seed, policy, arrival.index, arrival.persona, "-", "")
        if policy == ROUTER:
            try:
                index = market_index.read(self.client, self.market_id)  # as the client reads it
                choice = router.choose(prefs, self.market, requester.address, index=index)
            except Infeasible as error:
                outcome.reason = str(error)
                return outcome
            arm, chosen, reason = choice.arm, choice.terms, choice.reason
        elif policy in CHAINS:
            arm, chosen, reason = self._chain_terms(policy, arms, prefs, router)
            if chosen is None:
                outcome.mechanism, outcome.reason = arm.name, reason
                return outcome
        else:
            arm = arms[policy]
            chosen, limit, why = router.tune(arm, prefs, self.market, router.level(arm, prefs, None))
            if chosen is None:
                outcome.mechanism, outcome.reason = arm.name, f"cannot meet {limit}: {why}"
                return outcome
            reason = f"every task through {policy}"
        salt = self.policy_number * 100_000 + arrival.index
        terms: TaskTerms = task_terms(self.market_id, salt=salt, **chosen)
        requester.post(terms, gas=600_000)
        outcome.mechanism, outcome.reason = arm.name, reason
        posted[str(salt)] = outcome
        if policy == ROUTER:
            self.choices[str(salt)] = (choice, prefs, requester.address)
        self.say(f"  [{policy}] task {arrival.index} ({arrival.persona}) → {arm.name}: {reason}")
        return outcome

    def _chain_terms(
        self, policy: str, arms: dict[str, Arm], prefs: Preferences, router: Router
    ) -> tuple[Arm, dict | None, str]:
        """A chain policy's terms: the router's rule for its first link (the provers that
        accept it, its fee, its time before an assignment), then the assignment window split
        evenly among the links; or None and why it cannot meet the limits."""
        links = [arms[name] for name in chain_links(policy)]
        first = links[0]
        arm = Arm(policy, first.mechanism_id, least_time=first.least_time, fee=FEE)
        chosen, limit, why = router.tune(arm, prefs, self.market, router.level(first, prefs, None))
        if chosen is None:
            return arm, None, f"cannot meet {limit}: {why}"
        windows = chain_windows(len(links), int(chosen["assign_window"]))
        if min(windows) < 1:
            return arm, None, f"cannot meet max_time: {chosen['assign_window']} s to assign is too short"
        chosen["mechanism_id"] = encode_chain(
            [Link(a.mechanism_id, w) for a, w in zip(links, windows, strict=True)]
        )
        text = ", ".join(f"{a.name} {w} s" for a, w in zip(links, windows, strict=True))
        return arm, chosen, f"every task through the chain {text}"
