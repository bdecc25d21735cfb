"""The seeded kill schedule: when each SIGKILL lands, on which process or server, and how
long it stays down before it is started again. The same seed gives the same schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Kill:
    at: float  # seconds after the workload starts
    target: str  # an entry's name (supervisor.Entry)
    pause: float  # seconds it stays down before its restart


def kill_schedule(
    seed: int,
    targets: dict[str, float],
    kills: int,
    start: float,
    end: float,
    pause: tuple[float, float] = (0.5, 3.0),
    rest: float = 15.0,
) -> list[Kill]:
    """`kills` kills between `start` and `end` seconds, in time order, each on one of
    `targets` (name → weight) drawn by weight among those not killed in the last `rest`
    seconds (so a target comes back and works between two kills), each down for a pause
    drawn from `pause`. When every target was killed within `rest`, the kill waits until
    one has rested: more kills than `end - start` leaves room for end later than `end`."""
    if kills < 0 or end < start:
        raise ValueError(f"{kills} kills between {start} and {end} s: need kills >= 0 and end >= start")
    if kills and not targets:
        raise ValueError("kills need at least one target")
    rng = random.Random(seed)
    times = sorted(rng.uniform(start, end) for _ in range(kills))
    last: dict[str, float] = {}
    names = sorted(targets)
    schedule = []
    previous = start
    for drawn in times:
        at = round(max(drawn, previous, min(last.get(n, -rest) for n in names) + rest), 3)
        rested = [n for n in names if at - last.get(n, -rest) >= rest - 1e-6]
        target = rng.choices(rested, [targets[n] for n in rested])[0]
        last[target] = previous = at
        schedule.append(Kill(at, target, round(rng.uniform(*pause), 3)))
    return schedule
