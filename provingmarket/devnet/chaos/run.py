"""One chaos run, start to end: an anvil with a nonzero base fee, the marketplace with
every mechanism, two fault proxies in front of the node, the frontends and prover agents as
processes (the supervisor's table), a seeded workload posted in waves while the seeded
schedule kills and restarts them, a janitor that tidies what nobody else did; then every
process stopped by its pid and the verdict (report.py)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from provingmarket.devnet.chain import BASE_FEE, ETHER, Anvil, free_port, fund
from provingmarket.devnet.chaos import report
from provingmarket.devnet.chaos.proxy import FaultProxy, Ledger
from provingmarket.devnet.chaos.schedule import Kill, kill_schedule
from provingmarket.devnet.chaos.supervisor import Entry, Outage, Supervisor
from provingmarket.devnet.chaos.workload import Follower, Janitor, Pace, Poster, mix, terms_for
from provingmarket.devnet.processes import AGENT, AUCTION, ELECTION, KEY_ENV, ORDERBOOK, ROOT, command
from provingmarket.devnet.stack import deploy_marketplace, register_mechanism
from provingmarket.formats import TaskTerms

DOUBLE_AUCTION = "frontends.double_auction.process"
FRONTEND_READY = "{}.start"  # a keeper's first line once connected, its mirror open
AGENT_READY = "agent.start"
WORKER = "provingmarket.proving.worker"
WORKER_READY = "worker.ready"  # consuming from the queue
INDEXER = "provingmarket.runtime.indexer"
INDEXER_READY = "indexer.start"
READY_WITHIN = 180.0  # seconds every process may take to start the first time


class ChaosFailed(RuntimeError):
    """The run could not go on (a process never came up, tasks never settled in time)."""


@dataclass(frozen=True)
class ChaosConfig:
    tasks: int = 500
    kills: int = 50
    seed: int = 1
    agents: int = 4
    capacity: int = 4  # each agent's proofs at once
    post_seconds: float = 300.0  # the tasks are posted evenly over this long; kills land meanwhile
    rpc_fault_rate: float = 0.02  # share of the RPC requests each proxy fails
    pause: tuple[float, float] = (0.5, 3.0)  # seconds a killed process stays down
    rest: float = 15.0  # least seconds between two kills of the same process
    cuts: int = 10  # processes cut off both RPC endpoints for a while (their network gone)
    cut_seconds: tuple[float, float] = (3.0, 8.0)  # how long each cut lasts
    settle_within: float = 240.0  # seconds after the last posting for every task to settle
    auction_window: int = 3  # the sealed-bid auction's bidding window and the double auction's round
    pace: Pace = field(default_factory=Pace)
    # Proving spread over workers and the shared store: `workers` proving worker processes
    # behind a Redis broker (the agents hand their proofs to them: --queue), `database` a
    # PostgreSQL server with the mirror (written by an indexer process, read by every
    # frontend: --database) and the auction's bids. Each server and process is in the kill
    # table like the frontends and agents.
    workers: int = 0
    database: bool = False

    @property
    def broker(self) -> bool:
        return self.workers > 0

    def check(self) -> ChaosConfig:
        problems = []
        if self.tasks < 1:
            problems.append(f"--tasks {self.tasks}: at least 1")
        if self.kills < 0:
            problems.append(f"--kills {self.kills}: 0 or more")
        if self.cuts < 0:
            problems.append(f"--cuts {self.cuts}: 0 or more")
        if self.workers < 0:
            problems.append(f"--workers {self.workers}: 0 or more")
        if self.agents < 1:
            problems.append(f"agents {self.agents}: at least 1")
        if self.post_seconds <= 0:
            problems.append(f"post_seconds {self.post_seconds}: more than 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass
class Result:
    text: str
    invariants: list[report.Invariant]
    rows: list[report.Row]
    outcomes: dict
    seconds: float

    @property
    def ok(self) -> bool:
        return all(i.holds for i in self.invariants)


def key(seed: int, role: str) -> str:
    return "0x" + keccak(text=f"chaos {seed} {role}").hex()


def server_entries(config: ChaosConfig) -> list[Entry]:
    """The broker and the database as servers in the table, killed and started again like
    the processes (each started before the processes: `services` gives their URLs)."""
    from provingmarket.devnet.services import PostgresServer, RedisServer

    entries = []
    if config.broker:
        entries.append(Entry("broker", "broker", server=RedisServer()))
    if config.database:
        entries.append(Entry("database", "database", server=PostgresServer()))
    return entries


def services(entries: list[Entry]) -> dict[str, str]:
    """Start the server entries; name → the URL the processes are given (the database:
    a fresh database `market` on the server)."""
    urls = {}
    for entry in entries:
        server: Any = entry.server
        server.start()
        urls[entry.name] = server.create_database("market") if entry.name == "database" else server.url
    return urls


def frontend_options(config: ChaosConfig, urls: dict[str, str]) -> tuple[str, ...]:
    """What each frontend is given beside its own options: with the shared store, the
    mirror the indexer writes (and, for the auction, its bids) on the database server."""
    return ("--database", urls["database"]) if config.database else ()


def agent_options(config: ChaosConfig, urls: dict[str, str]) -> tuple[str, ...]:
    """What each agent is given beside `--auction`: with workers, the queue its proofs go
    through (every agent's own queue name, so a worker proves for whichever agent sent)."""
    return ("--queue", urls["broker"]) if config.workers else ()


def worker_entries(config: ChaosConfig, urls: dict[str, str]) -> list[Entry]:
    """The proving workers, one process each (so a kill takes exactly one), killable like
    the agents. groth16py proves in the worker's own process: a killed worker leaves no
    prover process behind."""
    return [
        Entry(
            f"worker-{i + 1}",
            "worker",
            argv=[sys.executable, "-m", WORKER, "--queue", urls["broker"], "--backend", "groth16py"]
            + ["--lease", "2", "--name", f"worker-{i + 1}"],
            env={"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            ready=WORKER_READY,
            cwd=ROOT,
        )
        for i in range(config.workers)
    ]


def indexer_entries(config: ChaosConfig, urls: dict[str, str], proxies, record: Path) -> list[Entry]:
    """With the shared store, the one indexer writing the mirror (through both proxies,
    killable like a frontend: the frontends wait, saying so, while it trails)."""
    if not config.database:
        return []
    rpc = ",".join(p.url("indexer") for p in proxies)
    argv = [sys.executable, "-m", INDEXER, "--rpc", rpc, "--deployment", str(record)]
    argv += ["--database", urls["database"], "--poll", "0.5"]
    env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return [Entry("indexer", "indexer", argv=argv, env=env, ready=INDEXER_READY, cwd=ROOT, first=True)]


def run(config: ChaosConfig, folder: Path, say=print) -> Result:
    """Run `config` with its files (logs, deployment record, processes' data) in `folder`."""
    import ape

    networks: Any = ape.networks  # type: ignore[attr-defined]  # ape's package exports it lazily

    config.check()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    anvil = Anvil(block_time=None, base_fee=BASE_FEE)
    ledger = Ledger(clock=time.time)
    proxies = [FaultProxy(anvil.uri, ledger, config.rpc_fault_rate, config.seed * 2 + i) for i in range(2)]
    supervisor: Supervisor | None = None
    servers: list[Entry] = []
    try:
        with networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
            say(f"anvil at {anvil.uri} (pid {anvil.process.pid}), base fee {BASE_FEE / 10**9:g} gwei")
            world = _World(ape, config, folder, say)
            for proxy in proxies:
                proxy.start()
            servers += server_entries(config)
            entries = servers + world.entries(proxies, services(servers))
            supervisor = Supervisor(entries, folder)
            supervisor.start_all()
            say("started " + ", ".join(f"{n} (pid {supervisor.pid(n)})" for n in supervisor.entries))
            _wait_ready(supervisor, folder)
            say(f"every process ready after {time.monotonic() - started:.0f} s")
            targets = {e.name: e.weight for e in entries if e.weight > 0}
            schedule = kill_schedule(
                config.seed, targets, config.kills, 2.0, config.post_seconds, config.pause, config.rest
            )
            # Cut-offs take a process's RPC away: workers have none to take.
            processes = {e.name: 1.0 for e in entries if e.argv is not None and e.kind != "worker"}
            cuts = kill_schedule(
                config.seed + 1,
                processes,
                config.cuts,
                2.0,
                config.post_seconds,
                config.cut_seconds,
                config.rest,
            )
            world.serve(supervisor, schedule, ledger, list(cuts))
            for proxy in proxies:
                proxy.enabled = False
            unclean = supervisor.stop()
            for proxy in proxies:
                proxy.stop()
            left = supervisor.left_behind()
            supervisor.reap(left)
            return world.verdict(supervisor, ledger, unclean, left, time.monotonic() - started)
    finally:
        if supervisor is not None:
            supervisor.reap(supervisor.left_behind())
        for entry in servers:  # closed by supervisor.stop() unless the run failed before it
            if entry.server is not None:
                entry.server.close()
        for proxy in proxies:
            proxy.stop()
        anvil.stop()


def _wait_ready(supervisor: Supervisor, folder: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    waiting = set(supervisor.entries)
    while waiting:
        supervisor.tick()
        exited = [o for o in supervisor.exited_on_their_own() if o.name in waiting]
        if exited:
            raise ChaosFailed(f"{exited[0].name} ({exited[0].cause}) before it was ready; see {folder}")
        waiting = {n for n in waiting if not supervisor.ready(n)}
        if waiting and time.monotonic() > deadline:
            raise ChaosFailed(
                f"{', '.join(sorted(waiting))} not ready within {READY_WITHIN:.0f} s; see {folder}"
            )
        time.sleep(0.2)


def _refused_start(outage: Outage, supervisor: Supervisor, ledger: Ledger) -> bool:
    """Whether the process of `outage` exited 1 after a start made while it was cut off from
    every endpoint or while a server (the broker, the database) was down: it refuses to
    start with one line ("no node answers", "cannot open ..."), as under any supervisor.
    Its start may have begun in the outage and ended just after it (imports take seconds
    on a loaded machine), so the process's whole life is compared with the outages."""
    if outage.cause != "exit 1":
        return False
    life = (outage.started or outage.at, outage.at)
    cuts = [(c.at, c.until) for c in ledger.cuts if c.caller == outage.name]
    servers = [
        (o.at, o.up_at if o.up_at is not None else float("inf"))
        for o in supervisor.outages
        if o.cause == "kill" and supervisor.entries[o.name].server is not None
    ]
    return any(start <= life[1] and life[0] <= end for start, end in cuts + servers)


def _strike(
    elapsed: float, supervisor: Supervisor, kills: list[Kill], ledger: Ledger, cuts: list[Kill]
) -> None:
    """Do the kills and cut-offs due by `elapsed` (each removed from its list once done)."""
    while kills and kills[0].at <= elapsed:
        if supervisor.kill(kills[0].target, kills[0].pause) is None:
            break  # down, or not yet up again: the kill waits until it is
        kills.pop(0)
    while cuts and cuts[0].at <= elapsed:
        ledger.cut(cuts[0].target, cuts[0].pause)
        cuts.pop(0)


class _World:
    """The marketplace of one run and its accounts; `entries` the processes to start."""

    def __init__(self, ape, config: ChaosConfig, folder: Path, say):
        self.config, self.folder, self.say = config, folder, say
        seed = config.seed
        self.web3 = ape.chain.provider.web3
        frontends = ("orderbook", "auction", "election", "double_auction")
        self.keys = {name: key(seed, name) for name in (*frontends, "requester", "janitor")}
        self.agent_keys = {f"agent-{i + 1}": key(seed, f"agent {i + 1}") for i in range(config.agents)}
        owner = ape.accounts.test_accounts[0]
        every = [*self.keys.values(), *self.agent_keys.values()]
        fund(self.web3, owner.address, [Account.from_key(k).address for k in every], 100 * ETHER)
        addresses = {name: Account.from_key(self.keys[name]).address for name in frontends}
        market = deploy_marketplace(ape, owner, addresses, folder, grace_period=2)
        market.mechanisms["double_auction"] = register_mechanism(
            market.stack.registry, "double_auction", [addresses["double_auction"]], owner
        )
        self.marketplace = market
        self.client = market.client(self.keys["janitor"])
        self.min_reward = self.client.market(market.stack.market_id).min_reward
        for agent_key in self.agent_keys.values():
            market.join(agent_key, config.capacity, self.min_reward, 10)
        self.agents = {Account.from_key(k).address: name for name, k in self.agent_keys.items()}
        self.web3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(BASE_FEE)])
        self.web3.provider.make_request("evm_setIntervalMining", [1])  # a block a second from now on

    def entries(self, proxies: list[FaultProxy], urls: dict[str, str]) -> list[Entry]:
        """The frontends and agents, each given both proxies (`--rpc A/name,B/name`) and
        the servers' URLs its hook wants (`urls`: name → URL)."""
        config, ids = self.config, self.marketplace.mechanisms
        auction_port = free_port()
        auction_url = f"http://127.0.0.1:{auction_port}"
        window = str(config.auction_window)
        auction = ("--port", str(auction_port), "--window", window)
        table = [  # name, module, sub-command, options
            ("orderbook", ORDERBOOK, (), ()),
            ("auction", AUCTION, (), auction),
            ("election", ELECTION, ("run",), ()),
            ("double_auction", DOUBLE_AUCTION, (), ("--round", window)),
        ]
        entries = []
        shared = frontend_options(config, urls)
        for name, module, sub, options in table:
            options = ("--mechanism", str(ids[name]), *options, *shared)
            entries.append(self._entry(name, name, module, self.keys[name], proxies, options, sub))
        options = ("--auction", auction_url, *agent_options(config, urls))
        for name, agent_key in self.agent_keys.items():
            entries.append(self._entry(name, "agent", AGENT, agent_key, proxies, options))
        indexer = indexer_entries(config, urls, proxies, self.marketplace.record)
        return indexer + entries + worker_entries(config, urls)

    def _entry(self, name, kind, module, secret, proxies, options, sub=()) -> Entry:
        rpc = ",".join(p.url(name) for p in proxies)
        argv = command(module, rpc, self.marketplace.record, self.folder / name, *options, sub=sub)
        env = {KEY_ENV: secret, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        ready = AGENT_READY if module == AGENT else FRONTEND_READY.format(name)
        return Entry(name, kind, argv=argv, env=env, ready=ready, cwd=ROOT)

    # -------------------------------------------------------------- the workload

    def serve(self, supervisor: Supervisor, schedule: list[Kill], ledger: Ledger, cuts: list[Kill]) -> None:
        """Post the tasks, kill and restart as scheduled, cut processes off the RPC as
        scheduled (`cuts`: each a target and how long), tidy; until every task posted has
        settled (ChaosFailed if not within `settle_within` of the last posting)."""
        config = self.config
        poster = self.poster = Poster(self.marketplace.requester(self.keys["requester"]), self._plan())
        self.follower = Follower(self.client, cursor=self.web3.eth.block_number)
        janitor = Janitor(self.client)
        kills = list(schedule)
        begun = time.monotonic()
        last_tidy = 0.0
        last_posting: float | None = None
        said = 0.0
        while True:
            elapsed = time.monotonic() - begun
            poster.due(elapsed)
            _strike(elapsed, supervisor, kills, ledger, cuts)
            supervisor.tick()
            if time.monotonic() - last_tidy >= 1.0:
                last_tidy = time.monotonic()
                tasks = self.follower.follow()
                ours = self.ours(tasks)
                janitor.tidy(self.follower, tasks, ours)
                open_ = [q for q in tasks if q.task_id in ours and not q.settled]
                if poster.done and last_posting is None:
                    last_posting = time.monotonic()
                if elapsed - said >= 15:
                    said = elapsed
                    down = sorted(supervisor.down)
                    self.say(
                        f"{elapsed:4.0f} s: {len(poster.posted)}/{config.tasks} posted, {len(ours)} seen, "
                        f"{len(open_)} open, {len(schedule) - len(kills)}/{len(schedule)} kills, "
                        f"{len(supervisor.exited_on_their_own())} exits; down: {', '.join(down) or '-'}"
                    )
                if poster.done and not kills and len(ours) == config.tasks and not open_:
                    return
                if last_posting is not None and time.monotonic() - last_posting > config.settle_within:
                    return  # the verdict says which tasks did not settle
            time.sleep(0.1)

    def _plan(self) -> list[tuple[float, str, TaskTerms]]:
        """When each task is posted (evenly over `post_seconds`), through what, on what terms."""
        config = self.config
        market_id = self.marketplace.stack.market_id
        reward, collateral = 3 * self.min_reward, ETHER // 10
        plan = []
        for i, mechanism in enumerate(mix(config.seed, config.tasks)):
            at = i * config.post_seconds / config.tasks
            terms = terms_for(
                mechanism, self.marketplace.mechanisms, market_id, 10_000 + i, reward, collateral, config.pace
            )
            plan.append((at, mechanism, terms))
        return plan

    def ours(self, tasks) -> set[str]:
        by_salt = self.poster.by_salt
        requester = Account.from_key(self.keys["requester"]).address
        found = set()
        for q in tasks:
            posted = by_salt.get(q.terms.salt)
            if posted is not None and q.requester == requester:
                posted.task_id = q.task_id
                found.add(q.task_id)
        return found

    # -------------------------------------------------------------- the verdict

    def verdict(
        self, supervisor: Supervisor, ledger: Ledger, unclean: list[str], left: list[int], seconds: float
    ) -> Result:
        tasks = self.follower.follow()
        ours = self.ours(tasks)
        events = self.follower.events
        block_time = self.follower.block_time
        mechanism_of = {p.task_id: p.mechanism for p in self.poster.posted if p.task_id}
        unposted = [p.index for p in self.poster.posted if not p.task_id]
        open_ = [q.task_id for q in tasks if q.task_id in ours and not q.settled]
        twice = report.paid_twice(events, ours)
        kinds = {name: entry.kind for name, entry in supervisor.entries.items()}
        outages = supervisor.outages + [
            Outage(c.caller, kinds.get(c.caller, c.caller), "cut", None, c.at, up_at=c.up_at)
            for c in ledger.cuts
        ]
        slashes = report.unexplained_slashes(events, ours, self.agents, outages, block_time)
        # A process started while cut off from every endpoint, or while a server it needs
        # was down, refuses to start ("no node answers", "cannot open ...", exit 1), as a
        # supervisor expects: restarted, not counted as a crash.
        refused = [o for o in supervisor.exited_on_their_own() if _refused_start(o, supervisor, ledger)]
        exits = [o for o in supervisor.exited_on_their_own() if o not in refused]
        proofs: dict[str, list[int]] = {}
        for e in events:
            if e.name == "TaskProven":
                proofs.setdefault(e.prover, []).append(block_time(e.block))
        kills = [o for o in supervisor.outages if o.cause == "kill"]
        cut = [o for o in outages if o.cause == "cut"]
        invariants = [
            report.Invariant(
                "every task posted was mined", not unposted and len(ours) == self.config.tasks,
                f"{len(ours)} of {self.config.tasks} seen; not mined: {unposted[:10]}" if unposted else "",
            ),
            report.Invariant(
                "every task proven or refunded", not open_, f"{len(open_)} open: {open_[:5]}" if open_ else ""
            ),
            report.Invariant("no task paid twice", not twice, ", ".join(twice[:5])),
            report.Invariant(
                "no prover slashed unless its agent was down while it held the task", not slashes,
                "; ".join(slashes[:5]),
            ),
            report.Invariant(
                "no process exited unless killed (or started while cut off or a server was down)", not exits,
                "; ".join(f"{o.name} ({o.cause})" for o in exits[:5]),
            ),
            report.Invariant(
                "every killed process came back", all(o.up_at is not None for o in kills),
                ", ".join(o.name for o in kills if o.up_at is None),
            ),
            report.Invariant(
                "every process cut off got answers again", all(o.up_at is not None for o in cut),
                ", ".join(o.name for o in cut if o.up_at is None),
            ),
            report.Invariant("every process stopped cleanly", not unclean, "; ".join(unclean[:5])),
            report.Invariant("no process left behind", not left, f"pids {left}" if left else ""),
        ]  # fmt: skip
        rows = report.outage_rows(outages, proofs, self.agents) + report.rpc_rows(ledger.faults)
        table = report.outcomes(tasks, mechanism_of)
        slashed = sum(1 for e in events if e.name == "Slashed" and "0x" + bytes(e.task_id).hex() in ours)
        preamble = (
            f"Chaos run, seed {self.config.seed}: {self.config.tasks} tasks over "
            f"{self.config.post_seconds:.0f} s, {len(self.agents)} agents, {len(kills)} kills, "
            f"{len(cut)} cut-offs, {len(ledger.faults)} RPC faults; {slashed} slashes; "
            f"{len(refused)} starts refused while cut off or a server was down (restarted); "
            f"run time {seconds:.0f} s ({seconds / 60:.1f} min).\n"
        )
        text = report.render(rows, table, invariants, preamble)
        summary = {
            "seconds": round(seconds, 1),
            "invariants": {i.name: i.holds for i in invariants},
            "faults": {r.kind: {"injected": r.injected, "recovered": r.recovered} for r in rows},
            "outcomes": {m: dict(c) for m, c in table.items()},
            "pids": sorted(supervisor.sessions),  # every process started, restarts included
            "outages": [  # the kill log (and any exit): wall-clock times, as block timestamps
                {"name": o.name, "cause": o.cause, "pid": o.pid, "at": round(o.at, 3), "up_at": o.up_at}
                for o in outages
            ],
        }
        (self.folder / "chaos.json").write_text(json.dumps(summary, indent=2))
        (self.folder / "chaos.txt").write_text(text + "\n")
        return Result(text, invariants, rows, table, seconds)
