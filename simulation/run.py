"""Run the simulation: for every seed, a world of its own (a fresh anvil), every mechanism
alone over the seed's workload, then the router over the same workload; the report at
the end. Training seeds come first: what every policy delivered there is history the
router learns from (as it would from the chain); on the held-out seeds it starts from
that history alone and is judged on workloads it never saw. Switch seeds, if any, run last
in another world (SimConfig.switched): the router goes on with everything it learnt, as if
the fleets and demand had changed under it, and the report says how soon it recovered."""

from __future__ import annotations

import time
from pathlib import Path

from provingmarket.devnet import BASE_FEE, Anvil, Spend
from provingmarket.market.router import Pace, Router
from simulation import report
from simulation.config import ROUTER, SimConfig
from simulation.world import Outcome, SimulationError, World, workload


def simulate(ape, config: SimConfig, folder: Path, say=print) -> dict:
    """Run `config`, write the report into `folder`; returns the results (report.write)."""
    started = time.monotonic()
    policies = [*config.policies, ROUTER]
    splits: dict[str, list[Outcome]] = {"training": [], "held-out": [], report.SWITCHED: []}
    fees: dict[str, dict[str, dict[str, Spend]]] = {split: {} for split in splits}  # split → policy → role
    state = None
    for split, seeds, world_config in (
        ("training", config.train_seeds, config),
        ("held-out", config.held_out_seeds, config),
        (report.SWITCHED, config.switch_seeds, config.switched()),
    ):
        for seed in seeds:
            with (
                Anvil(block_time=1, base_fee=BASE_FEE) as anvil,
                ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"),
            ):
                say(f"seed {seed}: anvil at {anvil.uri} (pid {anvil.process.pid})")
                world = World(ape, anvil, world_config, seed, folder / "logs" / f"seed-{seed}", say)
                clean = False
                try:
                    world.start()
                    router = Router(
                        world.arms, Pace(config.race_window, config.assign_window, config.proving_window)
                    )
                    if state is not None:
                        router.state = state
                    arrivals = workload(world_config, seed)
                    for policy in policies:
                        say(f"seed {seed} ({split}): {len(arrivals)} tasks through {policy}")
                        outcomes = world.serve(policy, arrivals, router)
                        splits[split] += outcomes
                        for role, spend in world.fees[policy].items():
                            fees[split].setdefault(policy, {}).setdefault(role, Spend()).add(spend)
                        if split == "training" and policy != ROUTER:
                            for o in outcomes:  # history the router learns from, as from the chain
                                if o.qos is not None and o.qos.settled:
                                    router.observe(o.mechanism, o.qos, world.prefs[o.persona], None)
                        served = sum(1 for o in outcomes if o.utility > 0)
                        mean = sum(o.utility for o in outcomes) / len(outcomes)
                        say(
                            f"seed {seed}, {policy}: {served}/{len(outcomes)} served, mean utility {mean:.3f}"
                        )
                    state = router.state
                    folder.mkdir(parents=True, exist_ok=True)  # its choices, for the explorer to show
                    router.save(folder / "router-state.json")
                finally:
                    clean = world.stop()
                if not clean:
                    raise SimulationError(f"seed {seed}: a process did not stop cleanly; see {world.logs}")
    minutes = (time.monotonic() - started) / 60
    preamble = (
        _world(config)
        + (
            f". After the switch (seeds {', '.join(map(str, config.switch_seeds))}): "
            + _world(config.switched())
            if config.switch_seeds
            else ""
        )
        + f". Windows: race {config.race_window} s, assignment {config.assign_window} s, proving "
        f"{config.proving_window} s, auction bidding {config.auction_window} s. Each seed's chain "
        f"starts with a base fee of {BASE_FEE / 10**9:g} gwei (EIP-1559: it then moves with demand). "
        f"Run time {minutes:.1f} min.\n\nUtility, QoS loss and the router's method: "
        "provingmarket/market/preferences.py and provingmarket/market/router.py.\n"
    )
    personas = list(dict.fromkeys(r.persona for r in (*config.requesters, *config.switch_requesters)))
    return report.write(folder, config.name, splits, personas, policies, preamble, fees)


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
