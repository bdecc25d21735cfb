"""How long the orderbook takes to match a round, and how that grows with the number of tasks.

    .venv/bin/python -m benches.orderbook_bench [--provers 1000] [--tasks 1000,10000,100000]

A random but market-like snapshot per size (fixed seeds): 4 markets, provers joining one
or two of them with capacities of 5 to 50, asks, proving times, hardware and accepted
mechanisms that differ; tasks with rewards, collaterals, proving windows, capabilities and
redundancies that differ, a few already partly assigned, a few with barred provers, a few
past their assignment window or for another mechanism. Only `match_orders` is timed, a
few runs on the same snapshot (which matching never changes), the median and the least
shown; building the snapshot is not. The last two
columns divide the time's growth since the smallest size by n log n's growth: near 1 or
below means the matching grows no faster than n log n. The least time is the steadier
figure on a busy machine.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time

from frontends.book import MarketState, MembershipState, OpenTask, ProverState, Snapshot
from frontends.orderbook.mechanism import match_orders
from provingmarket.formats import TaskTerms

MECHANISM = 3  # the orderbook's registered mechanism in this snapshot
OTHER_MECHANISM = 4
MARKETS = 4
NOW = 1_000_000  # seconds
WEI = 10**9  # prices in gwei steps, so they look like real ones


def _address(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def make_snapshot(tasks: int, provers: int, seed: int = 1) -> Snapshot:
    """A market-like snapshot of `tasks` open tasks and `provers` provers."""
    rng = random.Random(seed)
    prover_states = []
    memberships = []
    addresses = []
    for n in range(provers):
        address = _address(rng)
        addresses.append(address)
        prover_states.append(ProverState(address, rng.randint(1, 200) * WEI))
        for market_id in rng.sample(range(1, MARKETS + 1), rng.choice((1, 1, 2))):
            memberships.append(
                MembershipState(
                    prover=address,
                    market_id=market_id,
                    ask=rng.randint(5, 100) * WEI,
                    capacity=rng.randint(5, 50),
                    used=rng.choice((0, 0, 0, 1, 3)),
                    proving_time=rng.choice((30, 60, 120, 300, 600)),
                    capabilities=rng.choice((0b0000, 0b0001, 0b0011, 0b0111, 0b1111)),
                    mechanisms=frozenset(
                        (MECHANISM,) if rng.random() < 0.8 else (MECHANISM, OTHER_MECHANISM)
                    ),
                    since=n,
                )
            )
    open_tasks = []
    for n in range(tasks):
        redundancy = rng.choice((1, 1, 1, 1, 2, 2, 3, 8))
        open_slots = redundancy if rng.random() < 0.9 else rng.randint(0, redundancy)
        barred = (
            frozenset(rng.sample(addresses, redundancy - open_slots))
            if open_slots < redundancy
            else frozenset()
        )
        terms = TaskTerms(
            market_id=rng.randint(1, MARKETS),
            requester=_address(rng),
            posted_at=NOW - rng.randint(0, 700),
            inputs_commitment=b"\x00" * 32,
            prover_input_hash=b"\x00" * 32,
            max_reward=rng.randint(10, 150) * WEI,
            frontend_fee=WEI,
            assign_window=600,
            proving_window=rng.choice((60, 300, 900, 3600)),
            collateral=rng.choice((1, 2, 5)) * WEI,
            capabilities=rng.choice((0b0000, 0b0000, 0b0001, 0b0011)),
            redundancy=redundancy,
            mechanism_id=MECHANISM if rng.random() < 0.95 else OTHER_MECHANISM,
            start_price=0,
            ramp=0,
            decay=False,
            decay_floor=0,
            salt=n,
        )
        open_tasks.append(OpenTask(rng.randbytes(32), terms, open_slots, barred))
    return Snapshot(
        now=NOW,
        mechanisms=frozenset((MECHANISM,)),
        markets=tuple(MarketState(m) for m in range(1, MARKETS + 1)),
        provers=tuple(prover_states),
        memberships=tuple(memberships),
        tasks=tuple(open_tasks),
    )


def measure(snapshot: Snapshot, runs: int) -> tuple[float, float, int]:
    """Median and least seconds of `runs` matchings of the snapshot, and how many
    assignments it made."""
    times = []
    decisions = 0
    for _ in range(runs):
        gc.collect()  # no run pays for the garbage of the one before
        started = time.perf_counter()
        decisions = len(match_orders(snapshot))
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), decisions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time the orderbook's matching.")
    parser.add_argument("--provers", type=int, default=1_000)
    parser.add_argument("--tasks", default="1000,10000,100000", help="comma-separated task counts")
    parser.add_argument("--runs", type=int, default=5, help="runs per size")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.tasks.split(",")]

    rows = []
    base = None
    for tasks in sizes:
        snapshot = make_snapshot(tasks, args.provers)
        median, best, decisions = measure(snapshot, args.runs)
        nlogn = tasks * math.log(tasks)
        if base is None:
            base = (median, best, nlogn)
        rows.append(
            (
                f"{tasks:,}",
                f"{args.provers:,}",
                f"{decisions:,}",
                f"{median * 1e3:.1f}",
                f"{best * 1e3:.1f}",
                f"{median / tasks * 1e6:.2f}",
                f"{nlogn / base[2]:.1f}",
                f"{median / base[0]:.1f}",
                f"{(median / base[0]) / (nlogn / base[2]):.2f}",
                f"{(best / base[1]) / (nlogn / base[2]):.2f}",
            )
        )
    header = (
        "tasks",
        "provers",
        "assigned",
        "median ms",
        "best ms",
        "us/task",
        "n log n x",
        "median x",
        "median/nlogn",
        "best/nlogn",
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(
        f"{args.runs} runs per size; us/task from the median; the x columns are growth since "
        f"{sizes[0]:,} tasks, and */nlogn that growth over n log n's (at or below 1: no faster)"
    )


if __name__ == "__main__":
    main()
