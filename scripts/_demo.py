"""What `ape run demo` runs (scripts/demo.py says what it does, step by step): the actors,
the acts, the summary."""

from __future__ import annotations

import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ape
import click
from ape import accounts
from eth_account import Account

from explorer.routing import default_sim_report
from provingmarket.chain.markets import MarketTerms
from provingmarket.devnet import (
    BASE_FEE,
    ETHER,
    FRONTENDS,
    Anvil,
    Processes,
    Spend,
    deploy_marketplace,
    fees_paid,
    spend_of,
    task_terms,
)
from provingmarket.formats import DUTCH, OPEN_RACE, TaskTerms
from provingmarket.market.personas import PERSONAS, persona_terms
from provingmarket.market.qos import block_clock

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "reports" / "demo"
SUMMARY = LOGS / "summary.json"  # the demo's note on the explorer's front page
TASKS = 24  # act one, through the orderbook
AUCTION_TASKS = 8  # act two, through the auction frontend …
DUTCH_TASKS = 8  # … and the registry's Dutch auction
DUTCH_START = ETHER // 500  # 0.002 ETH at posting, rising to the maximum over DUTCH_RAMP
DUTCH_RAMP = 20
AUCTION_WINDOW = 4  # seconds of sealed bidding
PATIENCE = 40  # seconds a requester waits for a prover to take its task before cancelling it
PERSONA_NAMES = tuple(PERSONAS)  # act three: arbitrage, rollup, batch …
PERSONA_TASKS = 2  # … each posting this many tasks through each of four mechanisms
MIN_REWARD, MIN_COLLATERAL = MarketTerms().min_reward, MarketTerms().min_collateral  # the market's
ALL_TASKS = TASKS + AUCTION_TASKS + DUTCH_TASKS + len(PERSONA_NAMES) * 4 * PERSONA_TASKS
BURST_EVERY = 3.0  # seconds between bursts of 1 to 6 tasks (enough to fill every prover's capacity)
PROVING_WINDOW = 20  # seconds a prover has after its assignment
ASSIGN_WINDOW = 90
COLLATERAL = ETHER // 10
DEADLINE = 300  # seconds the whole stream may take before the demo gives up
RESTART_AFTER = PROVING_WINDOW + 10  # carol's agent restarts once she is slashed, or after this


# (Plain classes: ape loads scripts outside sys.modules, where dataclasses fail.)
class Prover:
    def __init__(self, name: str, key: str, ask: int, capacity: int, risk_rate: str):
        self.name, self.key, self.ask, self.capacity = name, key, ask, capacity
        self.risk_rate = risk_rate  # its cost model: the share of the collateral it prices in
        self.process: subprocess.Popen | None = None
        self.starts = 0


class TaskRecord:
    def __init__(self, label: str, max_reward: int, posted_at: int, mechanism: str):
        self.label, self.max_reward, self.posted_at = label, max_reward, posted_at
        self.mechanism = mechanism
        self.assigned: list[tuple[str, int]] = []  # (prover, price)
        self.proofs: list[tuple[str, int, int]] = []  # (prover, paid, timestamp)
        self.slashed: list[str] = []
        self.refunded = False  # its slots were closed and their escrow refunded
        self.persona: str | None = None
        self.redundancy = 1
        self.terms: TaskTerms | None = None
        self.cancelled = False

    @property
    def done(self) -> bool:
        return len(self.proofs) >= self.redundancy or self.refunded


def percentile(values: list[int], q: float) -> int:
    """The nearest-rank percentile of sorted values (0 for none)."""
    return values[max(0, round(q * len(values)) - 1)] if values else 0


def eth(wei: int) -> str:
    return f"{wei / ETHER:.4f}"


class Demo:
    def __init__(self, anvil: Anvil, explorer_port: int = 0):
        self.anvil = anvil
        self.explorer_port = explorer_port
        self.explorer_url: str | None = None
        self.web3 = ape.chain.provider.web3
        test = accounts.test_accounts
        self.owner = test[0]
        self.requester_key = test[1].private_key
        self.frontend_keys = {  # the frontends' accounts
            "orderbook": test[2].private_key,
            "auction": test[6].private_key,
            "election": test[7].private_key,
        }
        # Asks and cost models agree: with 0.1 ETH of collateral, a risk rate of 0.10 prices
        # 0.010 ETH in (proving the square circuit takes milliseconds, and a proof's gas at a
        # base fee near 1 gwei costs under 0.001 ETH).
        self.provers = [
            Prover("alice", test[3].private_key, ETHER // 100, 3, "0.10"),
            Prover("bob", test[4].private_key, 3 * ETHER // 200, 2, "0.15"),
            Prover("carol", test[5].private_key, ETHER // 200, 1, "0.05"),  # cheapest, smallest
        ]
        self.names = {Account.from_key(p.key).address: p.name for p in self.provers}
        self.processes: Processes | None = None  # once the marketplace is deployed
        self.tasks: dict[bytes, TaskRecord] = {}
        self.random = random.Random(7)
        self.started = time.monotonic()
        self.cursor = 0
        self.block_time = block_clock(self.web3)  # one header per block, not per event
        self.first_block = self.web3.eth.block_number + 1  # the fees paid are counted from here

    # -------------------------------------------------------------- output

    def say(self, text: str) -> None:
        click.echo(f"  [{time.monotonic() - self.started:5.1f}s] {text}")

    # -------------------------------------------------------------- setting up

    def deploy(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        for old in LOGS.glob("*"):  # the last run's logs and data directories
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        frontends = {name: Account.from_key(key).address for name, key in self.frontend_keys.items()}
        self.market = deploy_marketplace(ape, self.owner, frontends, LOGS, grace_period=5)
        self.ids = self.market.mechanisms
        self.registry = self.market.client()
        self.cursor = self.web3.eth.block_number + 1
        self.processes = Processes(self.anvil.uri, self.market.record, LOGS)
        stack = self.market.stack
        self.say(
            f"registry {stack.registry.address}, market {stack.market_id} (square circuit, Groth16 verifier "
            f"{stack.verifier.address}), mechanism {stack.mechanism_id} 'orderbook' served by "
            f"{frontends['orderbook']}"
        )
        for name in FRONTENDS[1:]:
            self.say(f"mechanism {self.ids[name]} '{name}' served by {frontends[name]}")
        self.mechanisms = {i: name for name, i in self.ids.items()} | {DUTCH: "dutch", OPEN_RACE: "open race"}

    def join(self) -> None:
        for p in self.provers:
            self.market.join(p.key, p.capacity, p.ask, 10)
            self.say(f"{p.name} staked 5 ETH and joined: ask {eth(p.ask)} ETH, capacity {p.capacity}")

    def start_frontends(self) -> None:
        self.auction_url = self.processes.start_frontends(self.frontend_keys, self.ids, AUCTION_WINDOW)
        started = self.processes.started
        self.say(f"orderbook frontend started (pid {started['orderbook'].pid})")
        self.say(f"auction frontend started (pid {started['auction'].pid}), its API at {self.auction_url}")
        self.say(f"election frontend started (pid {started['election'].pid})")
        self.note("The demo is starting", ["the frontends are up; provers' agents start next"])
        sim = default_sim_report(ROOT)  # the simulation's last report, if `make sim` wrote one
        self.explorer_url = self.processes.start_explorer(
            "orderbook",
            self.explorer_port,
            "--summary",
            str(SUMMARY),
            "--log-level",
            "WARNING",
            *(("--sim-report", str(sim)) if sim else ()),
        )
        self.say(
            f"explorer started (pid {started['explorer'].pid}): open {self.explorer_url} to watch the market"
        )

    def note(self, title: str, lines: list[str]) -> None:
        """What the explorer's front page says about the demo (written atomically)."""
        tmp = SUMMARY.with_suffix(".tmp")
        tmp.write_text(json.dumps({"title": title, "lines": lines}))
        tmp.replace(SUMMARY)

    def start_agent(self, p: Prover) -> None:
        p.process = self.processes.start_agent(p.name, p.key, self.auction_url, "--risk-rate", p.risk_rate)
        p.starts += 1
        self.say(f"{p.name}'s agent {'restarted' if p.starts > 1 else 'started'} (pid {p.process.pid})")

    # -------------------------------------------------------------- the stream

    def post(self, item: tuple[int, str | None], i: int) -> None:
        """Post task number `i`: (mechanism, persona) — a persona's own terms for that
        mechanism (provingmarket/market/personas.py), or else the stream's."""
        mechanism, persona = item
        if persona is not None:
            chosen = persona_terms(persona, MIN_REWARD, MIN_COLLATERAL, mechanism_id=mechanism)
            chosen.pop("mechanism_id")
            if mechanism != OPEN_RACE and not chosen["assign_window"]:  # a race's terms elsewhere
                chosen["assign_window"] = chosen["proving_window"]
            fee = 0 if mechanism in (OPEN_RACE, DUTCH) else ETHER // 1000
            terms = task_terms(self.market.stack.market_id, mechanism, salt=i, frontend_fee=fee, **chosen)
            self.personas[i] = persona
        else:
            max_reward = self.random.choice([2, 3, 4, 5]) * ETHER // 100
            dutch = {"start_price": DUTCH_START, "ramp": DUTCH_RAMP} if mechanism == DUTCH else {}
            terms = task_terms(
                self.market.stack.market_id,
                mechanism,
                max_reward=max_reward,
                collateral=COLLATERAL,
                proving_window=PROVING_WINDOW,
                assign_window=ASSIGN_WINDOW,
                salt=i,
                **dutch,
            )
        self.requester.post(terms, gas=500_000)

    def follow(self) -> None:
        """Read the registry's new events and say what happened."""
        head = self.web3.eth.block_number
        if head < self.cursor:
            return
        for e in self.registry.events(from_block=self.cursor, to_block=head):
            task_id = bytes(e.task_id) if "task_id" in e.args else None
            if e.name == "TaskPosted":
                label = f"T{len(self.tasks) + 1}"
                terms = TaskTerms.from_event(e.terms)
                mechanism = self.mechanisms.get(terms.mechanism_id, str(terms.mechanism_id))
                record = TaskRecord(label, terms.max_reward, self.block_time(e.block), mechanism)
                record.persona = self.personas.get(terms.salt)
                record.terms = terms
                record.redundancy = terms.redundancy
                self.tasks[task_id] = record
                who = f" for the {record.persona} persona" if record.persona else ""
                self.say(
                    f"{label} posted ({mechanism}{who}), max reward {eth(terms.max_reward)} ETH, "
                    f"{terms.redundancy} proof{'s' if terms.redundancy > 1 else ''}"
                )
                continue
            task = self.tasks.get(task_id) if task_id else None
            if task is None:
                continue
            who = self.names.get(getattr(e, "prover", ""), "?")
            if e.name == "TaskAssigned":
                task.assigned.append((who, e.price))
                self.say(f"{task.label} assigned to {who} at {eth(e.price)} ETH (max {eth(task.max_reward)})")
            elif e.name == "TaskProven":
                at = self.block_time(e.block)
                task.proofs.append((who, e.paid, at))
                self.say(
                    f"{task.label} proven by {who}, paid {eth(e.paid)} ETH, "
                    f"{at - task.posted_at} s after posting"
                )
            elif e.name == "Slashed":
                task.slashed.append(who)
                again = "reopened" if e.reopened else "refunded"
                self.say(
                    f"{task.label}: {who} missed the deadline and was slashed {eth(e.collateral)} ETH; "
                    f"slot {again}"
                )
            elif e.name == "SlotsClosed":
                task.refunded = True
                self.say(f"{task.label}: unfilled slots refunded to the requester")
        self.cursor = head + 1

    def cancel_unserved(self) -> None:
        """The requester's patience: a task no prover took within PATIENCE seconds is
        cancelled, its escrow refunded (an open race cannot be cancelled while it runs)."""
        now = self.web3.eth.get_block("latest")["timestamp"]
        for r in self.tasks.values():
            if r.done or r.cancelled or r.assigned or r.terms is None or r.terms.mechanism_id == OPEN_RACE:
                continue
            if now - r.posted_at < PATIENCE:
                continue
            r.cancelled = True
            self.requester.cancel(r.terms)
            self.say(f"{r.label}: no prover took it within {PATIENCE} s; the requester cancels it")

    def progress(self) -> str:
        t = self.tasks.values()
        live = sum(1 for r in t if r.assigned and not r.done)
        return (
            f"posted {len(self.tasks)}/{ALL_TASKS} | proven "
            f"{sum(1 for r in t if r.proofs)} | assigned, awaiting proof {live} | slashes "
            f"{sum(len(r.slashed) for r in t)} | refunded {sum(1 for r in t if r.refunded)}"
        )

    def run(self) -> bool:
        self.deploy()
        self.join()
        self.start_frontends()
        for p in self.provers:
            self.start_agent(p)
        self.requester = self.market.requester(self.requester_key)
        self.posted = 0
        self.personas: dict[int, str] = {}  # task number (its salt) -> the persona that posted it

        self.note(
            "The demo is running: act one",
            ["a stream of tasks through the orderbook; carol's agent is killed midway"],
        )
        click.echo("\nAct one: a stream of tasks through the orderbook; carol's agent is killed midway\n")
        self.act([(self.ids["orderbook"], None)] * TASKS, kill_carol=True)
        self.note("The demo is running: act two", ["sealed-bid auctions and Dutch auctions", self.progress()])
        click.echo("\nAct two: the same provers price their work: sealed-bid auctions and Dutch auctions\n")
        plan = [(self.ids["auction"], None)] * AUCTION_TASKS + [(DUTCH, None)] * DUTCH_TASKS
        self.random.shuffle(plan)
        self.act(plan)
        click.echo(
            "\nAct three: the seed's personas (arbitrage bot, daily rollup, batch job) each post "
            "through election then race, the open race, the orderbook and the auction\n"
        )
        self.note("The demo is running: act three", ["each persona through four mechanisms", self.progress()])
        plan = [
            (mechanism, persona)
            for persona in PERSONA_NAMES
            for mechanism in (self.ids["election"], OPEN_RACE, self.ids["orderbook"], self.ids["auction"])
            for _ in range(PERSONA_TASKS)
        ]
        self.random.shuffle(plan)
        self.act(plan)
        return self.summary()

    def act(self, plan: list[tuple[int, str | None]], kill_carol: bool = False) -> None:  # noqa: C901
        """Post `plan` (a mechanism and a persona or None per task) in bursts and follow until every task of
        it is proven or refunded."""
        carol = self.provers[2]
        killed_at = None

        def carol_slashed() -> bool:
            return any(who == "carol" for r in self.tasks.values() for who in r.slashed)

        queue = list(plan)
        mine: set[int] = set()
        next_post = time.monotonic()
        last_progress = time.monotonic()
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            now = time.monotonic()
            if queue and now >= next_post:
                for _ in range(min(self.random.randint(1, 6), len(queue))):
                    self.posted += 1
                    self.post(queue.pop(0), self.posted)
                    mine.add(self.posted)  # its salt
                next_post = now + BURST_EVERY
            self.follow()
            self.cancel_unserved()
            if (
                kill_carol
                and killed_at is None
                and any(who == "carol" for r in self.tasks.values() for who, _ in r.assigned if not r.done)
            ):
                carol.process.send_signal(signal.SIGKILL)
                carol.process.wait(10)
                killed_at = now
                self.say("carol's agent killed (SIGKILL) while holding an assignment")
            restart_due = killed_at is not None and (carol_slashed() or now - killed_at > RESTART_AFTER)
            if restart_due and carol.starts == 1:  # once slashed: her next assignment is hers to prove
                self.start_agent(carol)
            if now - last_progress >= 5:
                last_progress = now
                click.echo(f"  ---- {self.progress()}")
            ours = [r for r in self.tasks.values() if r.terms is not None and r.terms.salt in mine]
            if not queue and len(ours) == len(plan) and all(r.done for r in ours):
                break
            time.sleep(0.25)
        self.follow()
        click.echo(f"  ---- {self.progress()}")
        if kill_carol and carol.starts == 1:  # act one ended before her restart was due
            self.start_agent(carol)

    # -------------------------------------------------------------- the end

    def summary(self) -> bool:
        records = list(self.tasks.values())
        proven = [r for r in records if r.proofs]
        latencies = sorted(r.proofs[0][2] - r.posted_at for r in proven)
        paid = sum(sum(p for _, p, _ in r.proofs) for r in proven)
        maxima = sum(r.max_reward for r in proven)
        p95 = percentile(latencies, 0.95)
        share = paid / maxima if maxima else 0
        click.echo("\nSummary")
        rows = [
            ("tasks posted", f"{len(records)}"),
            ("tasks proven (real Groth16 proofs, verified on chain)", f"{len(proven)}"),
            ("tasks refunded (unfilled slots)", f"{sum(1 for r in records if r.refunded)}"),
            ("tasks lost", f"{sum(1 for r in records if not r.done)}"),
            ("posting to proof, median", f"{statistics.median(latencies) if latencies else 0:.0f} s"),
            ("posting to proof, p95", f"{p95} s"),
            ("paid to provers / the tasks' maxima", f"{eth(paid)} / {eth(maxima)} ETH ({share:.0%})"),
            ("slashes", f"{sum(len(r.slashed) for r in records)}"),
        ]  # fmt: skip
        width = max(len(n) for n, _ in rows)
        for name, value in rows:
            click.echo(f"  {name:<{width}}  {value}")
        self.note("The demo's summary", [f"{name}: {value}" for name, value in rows])
        click.echo(
            f"\n  {'prover':<8} {'ask':>7} {'capacity':>8} {'assigned':>8} {'proven':>6} "
            f"{'earned':>8} {'slashed':>7}"
        )
        for p in self.provers:
            assigned = sum(1 for r in records for who, _ in r.assigned if who == p.name)
            proofs = [(paid_, r) for r in records for who, paid_, _ in r.proofs if who == p.name]
            slashed = sum(1 for r in records for who in r.slashed if who == p.name)
            click.echo(
                f"  {p.name:<8} {eth(p.ask):>7} {p.capacity:>8} {assigned:>8} {len(proofs):>6} "
                f"{eth(sum(x for x, _ in proofs)):>8} {slashed:>7}"
            )
        click.echo(
            f"\n  {'mechanism':<10} {'tasks':>5} {'proven':>6} {'median':>7} {'p95':>5} "
            f"{'paid/max':>8} {'provers':>7}   (posting to proof; provers: distinct ones that proved)"
        )
        for name in ("orderbook", "auction", "dutch"):
            group = [r for r in records if r.mechanism == name]
            done = [r for r in group if r.proofs]
            times = sorted(r.proofs[0][2] - r.posted_at for r in done)
            earned = sum(p for r in done for _, p, _ in r.proofs)
            ceiling = sum(r.max_reward for r in done)
            provers = {who for r in done for who, _, _ in r.proofs}
            click.echo(
                f"  {name:<10} {len(group):>5} {len(done):>6} "
                f"{(statistics.median(times) if times else 0):>6.0f}s {percentile(times, 0.95):>4}s "
                f"{(earned / ceiling if ceiling else 0):>8.0%} {len(provers):>7}"
            )
        lost = [r.label for r in records if not r.done]
        self.persona_table(records)
        self.fee_table()
        return not lost and len(records) == ALL_TASKS

    def persona_table(self, records: list[TaskRecord]) -> None:
        click.echo(
            "\n  Act three, per persona and mechanism: time from posting to the first proof (median), "
            "price paid against the maximum, distinct provers that proved\n"
        )
        names = ("election", "open race", "orderbook", "auction")
        click.echo(f"  {'persona':<10} " + " ".join(f"{n:>22}" for n in names))
        for persona in PERSONA_NAMES:
            cells = []
            for name in names:
                done = [r for r in records if r.persona == persona and r.mechanism == name and r.proofs]
                if not done:
                    cells.append(f"{'-':>22}")
                    continue
                first = statistics.median(min(t for _, _, t in r.proofs) - r.posted_at for r in done)
                paid = sum(p for r in done for _, p, _ in r.proofs)
                ceiling = sum(r.max_reward * len(r.proofs) for r in done)
                provers = {who for r in done for who, _, _ in r.proofs}
                cells.append(f"{f'{first:.0f}s {paid / ceiling:.0%} {len(provers)}p':>22}")
            click.echo(f"  {persona:<10} " + " ".join(cells))

    def fee_table(self) -> None:
        """The transaction fees each role paid, from the receipts of every block since the
        demo started (gas used times the effective gas price: base fee and priority fee)."""
        spent = fees_paid(self.web3, self.first_block)
        test = accounts.test_accounts
        roles = [
            ("operator", [self.owner.address]),
            ("requesters", [test[1].address]),
            ("provers", list(self.names)),
            ("frontends", [Account.from_key(k).address for k in self.frontend_keys.values()]),
        ]
        base = self.web3.eth.get_block("latest").get("baseFeePerGas", 0)
        click.echo(
            f"\n  Fees paid (gas used x effective gas price, from the receipts; the base fee started at "
            f"{BASE_FEE:,} wei and falls while blocks are less than half full: {base:,} wei now)\n"
        )
        click.echo(f"  {'role':<11} {'transactions':>12} {'gas':>12} {'ETH':>10}")
        total = Spend()
        for role, addresses in roles:
            one = spend_of(spent, addresses)
            total.add(one)
            click.echo(f"  {role:<11} {one.transactions:>12} {one.gas:>12,} {one.wei / ETHER:>10.6f}")
        click.echo(f"  {'total':<11} {total.transactions:>12} {total.gas:>12,} {total.wei / ETHER:>10.6f}")
        price = total.wei / total.gas / 10**9 if total.gas else 0
        click.echo(f"\n  fees paid, every role: {total.eth()}, {price:.3f} gwei a gas on average")

    def wait_for_interrupt(self) -> None:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            click.echo("")

    def stop(self) -> bool:
        clean = self.processes is None or self.processes.stop(click.echo)
        click.echo(f"\nevery process stopped; logs in {LOGS.relative_to(ROOT)}/")
        return clean


def main(explorer_port: int, stay: bool) -> None:
    """`ape run demo` (scripts/demo.py): the marketplace end to end on a local chain of its
    own, with the explorer."""
    with (
        Anvil(block_time=1, base_fee=BASE_FEE) as anvil,
        ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"),
    ):
        click.echo(
            f"anvil at {anvil.uri} (pid {anvil.process.pid}), a block a second, "
            f"base fee {BASE_FEE / 10**9:g} gwei at the start\n"
        )
        demo = Demo(anvil, explorer_port)
        ok = False
        try:
            ok = demo.run()
            if stay and demo.explorer_url:
                click.echo(f"\nthe chain and the explorer stay up: {demo.explorer_url} (Ctrl-C stops them)")
                demo.wait_for_interrupt()
        finally:
            ok = demo.stop() and ok
    click.echo("anvil stopped")
    sys.exit(0 if ok else 1)
