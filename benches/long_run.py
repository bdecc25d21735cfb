"""A long run stays flat (`make longrun`): thousands of tasks through the orderbook at the
chain's speed, and the keeper's and the agent's memory and round time as history grows.

    .venv/bin/python -m benches.long_run [--tasks 10000] [--block-time 1] [--window 80] [--capacity 12]

An anvil of its own with a 1 gwei base fee mining a block every `--block-time` seconds (1:
a fast chain's pace, which the frontend and the agent must keep up with; 0 mines each
transaction at once). The orderbook frontend (`python -m frontends.orderbook.process`) and
one prover agent (`python -m provingmarket.agent`, real Groth16 proofs of the square
circuit, the cheapest sample) run as processes of their own, on data directories in a
temporary folder. A requester posts tasks in batches of signed raw transactions, keeping
at most `--window` posted and not yet paid: the work in flight stays the same while the
history (the mirror's tables and journal, the outbox, the agent's rows) grows with every
task.

Sampled at each `--every` tasks paid (1,000 by default; a tenth of `--tasks` when fewer):
the resident memory of the two processes started here (VmRSS of /proc/<their pid>/status),
the keeper's round times from its JSON log (`orderbook.round`, ms: p50 and p95 of the
rounds in that stretch) and the agent's mean round time from its own histogram (its
/metrics: `agent_round_seconds` sum over count in that stretch). The first stretch is the
warm-up. Flat means: after it, each process's memory grows by under 10% to the end, and
neither the keeper's median round (all rounds of the rows pooled) nor the agent's mean
round of the last third of the rows is more than the first third's plus 25% (or plus 2
ms, whichever is more: the noise of a shared machine). Exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ape
import requests
from ape import accounts, chain
from ape.logging import logger
from eth_account import Account
from eth_utils import keccak

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.deployments import Deployment, MarketRecord, save
from provingmarket.devnet import (
    BASE_FEE,
    ETHER,
    PROVER_INPUT,
    Anvil,
    Stack,
    deploy_stack,
    send_all,
    task_terms,
)
from provingmarket.devnet.processes import AGENT, ORDERBOOK, LoggedProcess, command

MEMORY_GROWTH = 0.10  # at most, after warm-up
ROUND_GROWTH = 0.25  # the last stretch's p50 over the first's after warm-up, at most…
ROUND_SLACK_MS = 2.0  # …or this many ms more, whichever is larger
STALL_SECONDS = 180  # no task paid for this long: the run stopped making progress


def fresh_key(label: str) -> str:
    return "0x" + keccak(f"long-run-{label}-{time.time_ns()}".encode()).hex()


def rss_kib(pid: int) -> int:
    """The resident memory of the process `pid` (one started here), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"process {pid} has no VmRSS (exited?)")


def percentile(values: list[float], q: float) -> float:
    """Nearest rank; nan without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


@dataclass
class Log:
    """New lines of a LoggedProcess's log, read once each."""

    process: LoggedProcess
    seen: int = 0

    def new(self) -> list[dict]:
        lines = self.process.lines
        end = len(lines)
        fresh = [entry for _, entry in lines[self.seen : end]]
        self.seen = end
        return fresh


@dataclass
class Stretch:
    """One row of the table: what happened until `paid` tasks were paid."""

    paid: int
    seconds: float
    keeper_kib: int
    agent_kib: int
    rounds_ms: list[float]
    agent_round_ms: float
    posted: int


@dataclass
class Run:
    tasks: int
    every: int
    block_time: int
    window: int
    capacity: int
    stretches: list[Stretch] = field(default_factory=list)
    setup_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to post and see paid")
    parser.add_argument(
        "--every", type=int, default=0, help="tasks per row (default 1,000, or a tenth of --tasks)"
    )
    parser.add_argument("--block-time", type=int, default=1, help="seconds between blocks (0: automine)")
    parser.add_argument("--window", type=int, default=80, help="tasks posted and not yet paid, at most")
    parser.add_argument(
        "--capacity", type=int, default=12, help="the prover's capacity (its proving threads)"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the processes' data directories here")
    args = parser.parse_args(argv)
    if args.tasks < 10 or args.window < 1 or args.capacity < 1 or args.block_time < 0:
        parser.error(
            "--tasks of at least 10, --window and --capacity of at least 1, --block-time of 0 or more"
        )
    every = args.every or min(1_000, max(1, args.tasks // 10))
    run = Run(args.tasks, every, args.block_time, args.window, args.capacity)
    logger.set_level("WARNING")  # no line per setup transaction
    anvil = Anvil(block_time=args.block_time or None, base_fee=BASE_FEE)
    with anvil, ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
        if args.keep:
            folder = Path(args.keep)
            folder.mkdir(parents=True, exist_ok=True)
            drive(run, anvil.uri, folder)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                drive(run, anvil.uri, Path(tmp))
    return report(run)


def drive(run: Run, rpc: str, folder: Path) -> None:
    """Set up the market, start the two processes, post and sample until every task is
    paid, stop them by their pids."""
    started = time.perf_counter()
    web3 = chain.provider.web3
    owner = accounts.test_accounts[0]
    frontend_key, prover_key, requester_key = (
        fresh_key("frontend"),
        fresh_key("prover"),
        fresh_key("requester"),
    )
    for key, ether in ((frontend_key, 100), (prover_key, 100), (requester_key, 2 + run.tasks // 40)):
        owner.transfer(Account.from_key(key).address, ether * ETHER)
    stack = deploy_stack(ape, owner, [Account.from_key(frontend_key).address], unbonding_delay=600)
    prover = RegistryClient(web3, stack.registry.address, KeySigner(prover_key))
    f = prover.contract.functions
    join = f.join_market(stack.market_id, run.capacity, ETHER // 100, 30, 0, [stack.mechanism_id])
    send_all(prover, [(f.stake(), 10 * ETHER), (join, 0)])
    requester = RegistryClient(web3, stack.registry.address, KeySigner(requester_key))
    markets = {stack.market_id: MarketRecord("square", stack.verifier.address)}
    record = save(
        Deployment("ethereum:local", chain.chain_id, stack.registry.address, 0, 600, markets), folder
    )
    mechanism = ("--mechanism", str(stack.mechanism_id))
    keeper_argv = command(ORDERBOOK, rpc, record, folder / "orderbook", *mechanism)
    agent_argv = command(
        AGENT, rpc, record, folder / "agent", "--no-race", "--no-dutch", "--metrics-port", "0"
    )
    run.setup_seconds = time.perf_counter() - started
    with LoggedProcess(keeper_argv, frontend_key) as keeper, LoggedProcess(agent_argv, prover_key) as agent:
        Follower(run, stack, requester, keeper, agent).until_paid()


AGENT_TROUBLE = ("agent.give_up", "agent.declined", "agent.proving_failed", "agent.refused", "agent.error")


class Follower:
    """The run as the bench follows it: the two processes' logs read as they come, tasks
    posted while there is room in the window, a row sampled every `run.every` tasks paid."""

    def __init__(self, run: Run, stack: Stack, requester: RegistryClient, keeper, agent) -> None:
        self.run, self.stack, self.requester = run, stack, requester
        self.keeper, self.agent = keeper, agent
        self.keeper_log, self.agent_log = Log(keeper), Log(agent)
        self.metrics_url: str | None = None
        self.posted = self.paid = 0
        self.rounds: list[float] = []
        self.agent_sum = self.agent_count = 0.0
        self.began = self.progress = time.monotonic()

    def until_paid(self) -> None:
        """Until every task is paid, or Ctrl-C / SIGTERM: then the rows so far are judged."""
        next_row = self.run.every
        try:
            self._loop(next_row)
        except KeyboardInterrupt:
            self.run.interrupted = True
            print(f"interrupted with {self.paid:,} of {self.run.tasks:,} tasks paid", flush=True)

    def _loop(self, next_row: int) -> None:
        while self.paid < self.run.tasks:
            self.alive()
            self.read()
            if self.paid >= next_row:
                self.sample()
                next_row += self.run.every
            elif not self.feed():
                time.sleep(0.1)

    def alive(self) -> None:
        for process, name in ((self.keeper, "the orderbook frontend"), (self.agent, "the agent")):
            if process.process.poll() is not None:
                raise RuntimeError(
                    f"{name} (pid {process.process.pid}) exited with {process.process.returncode}"
                )
        if time.monotonic() - self.progress > STALL_SECONDS:
            raise RuntimeError(
                f"no task paid for {STALL_SECONDS} s "
                f"({self.paid} of {self.run.tasks} paid, {self.posted} posted)"
            )

    def read(self) -> None:
        for entry in self.keeper_log.new():
            if entry.get("event") == "orderbook.round":
                self.rounds.append(float(entry["ms"]))
        for entry in self.agent_log.new():
            kind = entry.get("event")
            if kind == "agent.paid":
                self.paid += 1
                self.progress = time.monotonic()
            elif kind == "agent.start":
                self.metrics_url = f"http://127.0.0.1:{entry['metrics_port']}/metrics"
            elif kind in AGENT_TROUBLE:
                self.run.errors.append(f"{kind}: {entry}")

    def sample(self) -> None:
        """One row: the memory of each process now, the rounds since the last row."""
        total, count = agent_round(self.metrics_url)
        done = count - self.agent_count
        mean_ms = (total - self.agent_sum) / done * 1000 if done > 0 else float("nan")
        self.agent_sum, self.agent_count = total, count
        keeper_kib, agent_kib = rss_kib(self.keeper.process.pid), rss_kib(self.agent.process.pid)
        seconds = time.monotonic() - self.began
        row = Stretch(self.paid, seconds, keeper_kib, agent_kib, self.rounds, mean_ms, self.posted)
        self.run.stretches.append(row)
        print_row(self.run, row)
        self.rounds = []

    def feed(self) -> bool:
        """Post the next tasks when half the window or the last of them is free; whether it did."""
        room = min(self.run.window - (self.posted - self.paid), self.run.tasks - self.posted)
        if room <= 0 or (room < self.run.window // 2 and self.posted + room < self.run.tasks):
            return False
        post(self.stack, self.requester, self.posted, room)
        self.posted += room
        return True


def post(stack: Stack, requester: RegistryClient, done: int, count: int) -> None:
    """`count` tasks more, salts after `done`, sent at once as raw transactions; waits until mined."""
    calls = []
    for i in range(done, done + count):
        terms = task_terms(
            stack.market_id, stack.mechanism_id, salt=i + 1, max_reward=ETHER // 50, collateral=ETHER // 10
        )
        calls.append(
            (requester.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, ""), terms.escrow())
        )
    send_all(requester, calls)


SAMPLE = re.compile(r"^agent_round_seconds_(sum|count) ([0-9.e+-]+)$", re.MULTILINE)


def agent_round(url: str | None) -> tuple[float, float]:
    """The agent's round-time histogram: (sum of seconds, rounds), from its /metrics."""
    if url is None:
        return 0.0, 0.0
    found = dict(SAMPLE.findall(requests.get(url, timeout=10).text))
    return float(found.get("sum", 0)), float(found.get("count", 0))


HEADER = (
    "paid",
    "posted",
    "s",
    "tasks/s",
    "keeper MiB",
    "agent MiB",
    "rounds",
    "round p50 ms",
    "p95 ms",
    "agent ms",
)
WIDTHS = [max(len(h), 7) for h in HEADER]


def print_row(run: Run, s: Stretch) -> None:
    if len(run.stretches) == 1:
        print(
            f"\nLong run: {run.tasks:,} tasks through the orderbook, "
            + (f"a block every {run.block_time} s" if run.block_time else "each transaction mined at once")
            + f", 1 gwei base fee, at most {run.window} in flight, prover capacity {run.capacity} "
            f"(setup {run.setup_seconds:.0f} s)\n"
        )
        print("  ".join(h.rjust(w) for h, w in zip(HEADER, WIDTHS, strict=True)))
    previous = run.stretches[-2] if len(run.stretches) > 1 else None
    span = s.seconds - (previous.seconds if previous else 0)
    rate = (s.paid - (previous.paid if previous else 0)) / span if span > 0 else float("nan")
    cells = (
        f"{s.paid:,}",
        f"{s.posted:,}",
        f"{s.seconds:.0f}",
        f"{rate:.1f}",
        f"{s.keeper_kib / 1024:.1f}",
        f"{s.agent_kib / 1024:.1f}",
        str(len(s.rounds_ms)),
        f"{percentile(s.rounds_ms, 0.5):.0f}",
        f"{percentile(s.rounds_ms, 0.95):.0f}",
        f"{s.agent_round_ms:.1f}",
    )
    print("  ".join(c.rjust(w) for c, w in zip(cells, WIDTHS, strict=True)), flush=True)


def report(run: Run) -> int:
    """The verdict after warm-up (the first row); 1 if the run did not stay flat."""
    if len(run.stretches) < 4:
        print("too few rows to judge (give --tasks of at least 4 x --every)")
        return 1
    warm, after = run.stretches[0], run.stretches[1:]
    third = max(1, len(after) // 3)
    early, late = after[:third], after[-third:]
    failed = []
    print(f"\nafter warm-up ({warm.paid:,} tasks paid) to the end ({after[-1].paid:,}):")
    for name, start, end in (
        ("keeper", warm.keeper_kib, after[-1].keeper_kib),
        ("agent", warm.agent_kib, after[-1].agent_kib),
    ):
        growth = end / start - 1
        ok = growth < MEMORY_GROWTH
        failed += [] if ok else [f"{name} memory"]
        print(
            f"  {name} memory: {start / 1024:.1f} -> {end / 1024:.1f} MiB "
            f"({growth:+.1%}; under {MEMORY_GROWTH:.0%}: {'yes' if ok else 'NO'})"
        )
    before_late = run.stretches[-len(late) - 1]
    span = f"tasks {warm.paid:,}-{early[-1].paid:,} vs {before_late.paid:,}-{late[-1].paid:,}"
    for name, first, last in (
        ("keeper round p50", pooled(early), pooled(late)),
        ("agent round mean", mean_of(early), mean_of(late)),
    ):
        bound = max(first * (1 + ROUND_GROWTH), first + ROUND_SLACK_MS)
        ok = last <= bound
        failed += [] if ok else [name]
        print(
            f"  {name}: {first:.1f} -> {last:.1f} ms ({span}; at most {bound:.1f}: {'yes' if ok else 'NO'})"
        )
    if run.errors:
        print(f"  the agent's log had {len(run.errors)} give-ups, declines or errors; the first:")
        print(f"    {run.errors[0][:300]}")
    if run.interrupted:
        print(f"  (interrupted: judged on the {len(run.stretches)} rows sampled)")
    print("flat" if not failed else "NOT flat: " + ", ".join(failed))
    return 1 if failed else 0


def pooled(stretches: list[Stretch]) -> float:
    """The median keeper round of these rows together."""
    return percentile([ms for s in stretches for ms in s.rounds_ms], 0.5)


def mean_of(stretches: list[Stretch]) -> float:
    """The agent's mean round over these rows (each row's mean, weighted alike)."""
    return statistics.fmean(s.agent_round_ms for s in stretches)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by its pid: the processes stop, the rows are judged
    sys.exit(main())
