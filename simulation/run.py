"""Run the simulation: every policy alone over each seed's workload, then the router over
the same workload; the report at the end. Each (policy, seed) run is a world of its own (a
fresh anvil, marketplace, frontends and agents, simulation/world.py), so independent runs
go at once, at most `jobs` together, each in a worker process of its own.

Training seeds come first: what every policy delivered there is history the router learns
from (as it would from the chain); on the held-out seeds it goes on from what it learnt and
is judged on workloads it never saw. Switch seeds, if any, run last in another world
(SimConfig.switched): the router goes on with everything it learnt, as if the fleets and
demand had changed under it, and the report says how soon it recovered. The router's runs
therefore follow one another (training seeds, held-out seeds, switch seeds, each from the
state the last left); the single policies' runs depend on nothing and fill the other slots.

Times are chain time (block timestamps, a block a second), which tracks wall time: runs
that starve each other of CPU would show it as slower proofs, so `jobs` stays small
(docs/simulation/README.md says what was measured)."""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from provingmarket.devnet import BASE_FEE, Anvil, Spend
from provingmarket.market.router import Pace, Router
from simulation import report
from simulation.config import CHAINS, ROUTER, SimConfig, default_jobs
from simulation.world import Outcome, SimulationError, World, workload

ROOT = Path(__file__).resolve().parent.parent  # where the workers import simulation/ from
ANVIL_TRIES = 3  # a free port may be taken by another run's anvil before this one binds it


@dataclass
class Run:
    """One (policy, seed) run, as a worker process takes it."""

    split: str
    seed: int
    policy: str
    config: SimConfig  # the world it runs in (the switched one after a switch)
    pace: Pace
    logs: Path
    state: object = None  # the router's state to go on from (router runs)
    state_file: Path | None = None  # where the router's state is written after its run
    history: list[Outcome] = field(default_factory=list)  # single policies' outcomes it learns first


@dataclass
class Done:
    outcomes: list[Outcome]
    fees: dict[str, Spend]  # role → the fees it paid
    state: object = None  # the router's state after the run (router runs)
    seconds: float = 0.0


def run_one(run: Run, say=print) -> Done:
    """Run one policy over one seed's workload in a world of its own; every process it
    started is stopped by its pid before it returns. SimulationError if a process did not
    stop cleanly or the tasks did not settle."""
    import ape  # in the worker: each has its own network connection

    started = time.monotonic()
    label = f"seed {run.seed}, {run.policy}"
    anvil = _anvil()
    try:
        with ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
            say(f"{label}: anvil at {anvil.uri} (pid {anvil.process.pid})")
            world = World(
                ape, anvil, run.config, run.seed, run.logs, lambda text: say(f"{label}: {text}"), run.policy
            )
            clean = False
            try:
                world.start()
                say(f"{label}: ready after {time.monotonic() - started:.0f} s")
                chains = world.router_chains()
                router = Router(world.router_arms(), run.pace, chains=chains)
                as_offered = dict(zip(CHAINS, chains, strict=True))  # a chain policy's history
                if run.state is not None:
                    router.state = run.state  # type: ignore[assignment]
                names = {a.name for a in router.arms}
                for o in run.history:  # history the router learns from, as from the chain
                    mechanism = as_offered.get(o.mechanism, o.mechanism)
                    if o.qos is not None and o.qos.settled and mechanism in names:
                        router.observe(mechanism, o.qos, world.prefs[o.persona], None)
                arrivals = workload(run.config, run.seed)
                say(f"{label} ({run.split}): {len(arrivals)} tasks")
                outcomes = world.serve(run.policy, arrivals, router)
                say(f"{label}: served after {time.monotonic() - started:.0f} s")
                served = sum(1 for o in outcomes if o.utility > 0)
                mean = sum(o.utility for o in outcomes) / len(outcomes)
                say(f"{label}: {served}/{len(outcomes)} served, mean utility {mean:.3f}")
                if run.state_file is not None:  # its choices, for the explorer to show
                    run.state_file.parent.mkdir(parents=True, exist_ok=True)
                    router.save(run.state_file)
            finally:
                clean = world.stop()
            if not clean:
                raise SimulationError(f"{label}: a process did not stop cleanly; see {world.logs}")
    finally:
        anvil.stop()
    state = router.state if run.policy == ROUTER else None
    return Done(outcomes, world.fees[run.policy], state, time.monotonic() - started)


def _anvil() -> Anvil:
    for attempt in range(ANVIL_TRIES):
        try:  # mines each transaction at once while the world is set up (World.start)
            return Anvil(block_time=None, base_fee=BASE_FEE)
        except RuntimeError:
            if attempt == ANVIL_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _worker(run: Run) -> Done:
    return run_one(run, say=lambda text: print(text, flush=True))


def simulate(ape, config: SimConfig, folder: Path, say=print, jobs: int | None = None) -> dict:
    """Run `config` with at most `jobs` runs at once (default_jobs), write the report into
    `folder`; returns the results (report.write)."""
    del ape  # each worker process connects to its own chain
    started = time.monotonic()
    jobs = jobs or default_jobs()
    policies = [*config.policies, ROUTER]
    pace = Pace(config.race_window, config.assign_window, config.proving_window)
    plan = [
        ("training", config.train_seeds, config),
        ("held-out", config.held_out_seeds, config),
        (report.SWITCHED, config.switch_seeds, config.switched()),
    ]
    singles: list[Run] = []
    routers: list[Run] = []  # in the order they follow one another
    for split, seeds, world in plan:
        for seed in seeds:
            for policy in config.policies:
                singles.append(Run(split, seed, policy, world, pace, _logs(folder, seed, policy)))
            logs = _logs(folder, seed, ROUTER)
            routers.append(
                Run(split, seed, ROUTER, world, pace, logs, state_file=folder / "router-state.json")
            )
    say(f"{len(singles) + len(routers)} runs, at most {jobs} at once")
    done = _execute(singles, routers, jobs, say)
    splits: dict[str, list[Outcome]] = {split: [] for split, _, _ in plan}
    fees: dict[str, dict[str, list[tuple[int, dict[str, Spend]]]]] = {split: {} for split in splits}
    for split, seeds, _ in plan:
        for seed in seeds:
            for policy in policies:
                result = done[(seed, policy)]
                splits[split] += result.outcomes
                fees[split].setdefault(policy, []).append((len(result.outcomes), result.fees))
    minutes = (time.monotonic() - started) / 60
    seconds = [d.seconds for d in done.values()]
    preamble = (
        _world(config)
        + (
            f". After the switch (seeds {', '.join(map(str, config.switch_seeds))}): "
            + _world(config.switched())
            if config.switch_seeds
            else ""
        )
        + f". Windows: race {config.race_window} s, assignment {config.assign_window} s, proving "
        f"{config.proving_window} s, auction bidding and double auction rounds {config.auction_window} s; "
        f"the chains split the assignment window evenly among their links. Each run has a chain of "
        f"its own, starting with a base fee of {BASE_FEE / 10**9:g} gwei (EIP-1559: it then moves "
        f"with demand). Run time {minutes:.1f} min: {len(done)} runs, at most {jobs} at once, "
        f"{sum(seconds) / max(len(seconds), 1):.0f} s a run on average.\n\n"
        "Utility, QoS loss and the router's method: "
        "provingmarket/market/preferences.py and provingmarket/market/router.py. Every ± is one "
        "standard error over the tasks (a loss's: of the task-by-task difference from the best "
        "policy on the same arrivals; fees: over the runs).\n"
    )
    personas = list(dict.fromkeys(r.persona for r in (*config.requesters, *config.switch_requesters)))
    return report.write(folder, config.name, splits, personas, policies, preamble, fees)


def _execute(singles: list[Run], routers: list[Run], jobs: int, say) -> dict[tuple[int, str], Done]:
    """Every run, at most `jobs` at once in worker processes (`_next` picks which); (seed,
    policy) → what it did. The first run to fail ends it (those running finish first)."""
    done: dict[tuple[int, str], Done] = {}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads forked
    if str(ROOT) not in sys.path:  # a worker starts with this process's path (`ape run` drops it)
        sys.path.insert(0, str(ROOT))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running: dict[Future, Run] = {}
        state = None
        while singles or routers or running:
            while len(running) < jobs:
                run = _next(singles, routers, done, running, state)
                if run is None:
                    break
                running[pool.submit(_worker, run)] = run
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                result = future.result()  # a SimulationError ends the simulation
                done[(run.seed, run.policy)] = result
                if run.policy == ROUTER:
                    state = result.state
                say(f"seed {run.seed}, {run.policy}: done in {result.seconds:.0f} s")
    return done


def _next(singles: list[Run], routers: list[Run], done: dict, running: dict, state: object) -> Run | None:
    """The next run to start, or None until one finishes: the router's next run first once
    the one before it has finished and, on a training seed, every single policy's run of the
    seed too (its history); else the next single policy's run."""
    if routers and not any(r.policy == ROUTER for r in running.values()):
        run = routers[0]
        waiting = any(r.seed == run.seed for r in (*singles, *running.values()))
        if run.split != "training" or not waiting:
            if run.split == "training":
                run.history = [
                    o for (seed, policy), d in done.items() if seed == run.seed and policy != ROUTER
                    for o in d.outcomes
                ]  # fmt: skip
            run.state = state
            return routers.pop(0)
    return singles.pop(0) if singles else None


def _logs(folder: Path, seed: int, policy: str) -> Path:
    return folder / "logs" / f"seed-{seed}" / policy.replace(",", "-").replace(" ", "-")


def _world(config: SimConfig) -> str:
    """The fleets and demand of a configuration, in a sentence."""
    return (
        f"{config.tasks} tasks per policy and seed; fleets: "
        + "; ".join(
            f"{f.name} ×{f.provers} (+{f.prove_seconds:g} s a proof, fails {f.failure_rate:.0%}, "
            f"latency {f.latency:g} s, ask {f.ask_x:g}x, capacity {f.capacity})"
            for f in config.fleets
        )
        + "; requesters: "
        + "; ".join(
            f"{r.persona} (share {r.share:g}"
            + (f", proof within {r.max_time} s" if r.max_time else "")
            + (f", at most {r.max_price_x:g}x the least reward" if r.max_price_x else "")
            + (f", at least {r.min_redundancy} proofs" if r.min_redundancy > 1 else "")
            + ")"
            for r in config.requesters
        )
    )
