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
    seconds (so a target comes back and works between two kills; when every one was, the
    one killed longest ago), each down for a pause drawn from `pause`."""
    if kills < 0 or end < start:
        raise ValueError(f"{kills} kills between {start} and {end} s: need kills >= 0 and end >= start")
    if kills and not targets:
        raise ValueError("kills need at least one target")
    rng = random.Random(seed)
    times = sorted(rng.uniform(start, end) for _ in range(kills))
    last: dict[str, float] = {}
    names = sorted(targets)
    schedule = []
    for at in times:
        rested = [n for n in names if at - last.get(n, -rest) >= rest]
        if rested:
            target = rng.choices(rested, [targets[n] for n in rested])[0]
        else:
            target = min(names, key=lambda n: last[n])
        last[target] = at
        schedule.append(Kill(round(at, 3), target, round(rng.uniform(*pause), 3)))
    return schedule
