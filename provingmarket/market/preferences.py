"""A requester's preferences, the utility they give a task's measured QoS, and QoS loss.

**Preferences** are weights over four qualities, each a number ≥ 0 (not all zero; only
their ratios matter), and hard limits, each optional:

- `max_time`: the latest acceptable time from posting to proof, in seconds (with a
  minimum redundancy above 1, to the last of those proofs);
- `max_price`: the most the requester will spend on the task, in wei (provers' rewards
  and frontend fees, which is what posting escrows);
- `min_redundancy`: the fewest independent proofs the requester needs.

**The utility** of a task's QoS (provingmarket/market/qos.py) for preferences is the weighted
mean of four scores, each from 0 (worst) to 1 (best):

- speed = τ / (τ + t), t the seconds from posting to the first proof, τ = `SPEED_SCALE`
  (30 s): a proof at once scores 1, in 30 s 0.5, in 5 minutes 0.09;
- cost = m / (m + spent), m the market's least reward, spent what the requester paid in
  all (provers and frontends): free scores 1, the least reward 0.5, five times it 0.17;
- safety = 1 − 2^−p, p the valid proofs delivered: each independent proof halves the
  remaining risk that a wrong statement goes unchallenged (1 proof 0.5, 3 proofs 0.875);
- censorship resistance = n / (n + 2), n the provers that could have taken the task
  when it was posted: a single gatekeeper scores 0.33, six provers 0.75.

A task that delivered no proof, or broke a hard limit (its proofs came after `max_time`,
it cost more than `max_price`, fewer than `min_redundancy` proofs), has utility 0: it did
not serve the requester at all, whatever it saved.

**QoS loss** for a requester is how far the mean utility it got falls short of the best
achievable for its preferences: the best mean utility any of the policies compared (each
mechanism alone, and the router) delivered for the same requester on the same workload.
The best policy's loss is 0; lower is better.

Every weight and limit here is fixed before any simulation runs (the personas'
weights are the seed's), so no result can be tuned into them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provingmarket.errors import ProvingMarketError
from provingmarket.market.qos import TaskQoS

SPEED_SCALE = 30.0  # seconds to a proof that halve the speed score
QUALITIES = ("speed", "cost", "safety", "censorship_resistance")


class PreferenceError(ProvingMarketError, ValueError):
    """Preferences that cannot be used; the message says which value and why."""


@dataclass(frozen=True)
class Preferences:
    speed: float
    cost: float
    safety: float
    censorship_resistance: float
    max_time: int | None = None  # seconds from posting to proof
    max_price: int | None = None  # wei, everything the task may cost
    min_redundancy: int = 1

    def __post_init__(self) -> None:
        for name in QUALITIES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PreferenceError(f"weight {name} must be a finite number, not {value!r}")
            if value < 0:
                raise PreferenceError(f"weight {name} is {value}: weights must be 0 or more")
        if not any(getattr(self, name) for name in QUALITIES):
            raise PreferenceError(
                "every weight is 0: give at least one of speed, cost, safety, censorship resistance a weight"
            )
        for name in ("max_time", "max_price"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise PreferenceError(f"{name} must be a whole number above 0, not {value!r}")
        if (
            isinstance(self.min_redundancy, bool)
            or not isinstance(self.min_redundancy, int)
            or self.min_redundancy < 1
        ):
            raise PreferenceError(
                f"min_redundancy must be a whole number of 1 or more, not {self.min_redundancy!r}"
            )

    @property
    def weights(self) -> tuple[float, float, float, float]:
        return (self.speed, self.cost, self.safety, self.censorship_resistance)

    @property
    def profile(self) -> str:
        """The weights as a key for a learner: normalised to sum to 1, rounded to 0.05,
        so requesters who value the same things share what was learned."""
        total = sum(self.weights)
        return ",".join(f"{round(20 * w / total) / 20:.2f}" for w in self.weights)

    def describe(self) -> str:
        text = (
            f"speed {self.speed:g}, cost {self.cost:g}, safety {self.safety:g}, "
            f"censorship resistance {self.censorship_resistance:g}"
        )
        limits = self.limits()
        return text + (f"; limits: {limits}" if limits else "")

    def limits(self) -> str:
        parts = []
        if self.max_time is not None:
            parts.append(f"proof within {self.max_time} s")
        if self.max_price is not None:
            parts.append(f"at most {self.max_price / 10**18:g} ETH")
        if self.min_redundancy > 1:
            parts.append(f"at least {self.min_redundancy} proofs")
        return ", ".join(parts)


def parse_weights(text: str) -> tuple[float, float, float, float]:
    """ "10,3,1,1" (speed, cost, safety, censorship resistance) as four numbers, or a
    PreferenceError saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise PreferenceError(
            f"weights {text!r}: give four numbers, speed,cost,safety,censorship_resistance (e.g. 10,3,1,1)"
        )
    values = []
    for name, part in zip(QUALITIES, parts, strict=True):
        try:
            value = float(part)
        except ValueError:
            raise PreferenceError(f"weight {name} {part!r} is not a number") from None
        values.append(value)
    return tuple(values)  # type: ignore[return-value]


def scores(q: TaskQoS) -> dict[str, float]:
    """The four scores of a task's QoS (0 to 1 each; see the module's docstring)."""
    first = q.first_proof
    unit = max(q.min_reward, 1)
    return {
        "speed": 0.0 if first is None else SPEED_SCALE / (SPEED_SCALE + first),
        "cost": unit / (unit + q.spent),
        "safety": 1 - 2.0**-q.proofs,
        "censorship_resistance": q.could / (q.could + 2),
    }


def breaks_limit(q: TaskQoS, prefs: Preferences) -> str | None:
    """The hard limit the task's outcome broke, said as a person would, or None."""
    if q.proofs < prefs.min_redundancy:
        if not q.proofs:
            return "no proof was delivered"
        return (
            f"{q.proofs} proof{'s' if q.proofs > 1 else ''} delivered, at least {prefs.min_redundancy} needed"
        )
    needed = q.proof_times[prefs.min_redundancy - 1]
    if prefs.max_time is not None and needed > prefs.max_time:
        return f"proof after {needed} s, the limit is {prefs.max_time} s"
    if prefs.max_price is not None and q.spent > prefs.max_price:
        return f"it cost {q.spent} wei, the limit is {prefs.max_price}"
    return None


def utility(q: TaskQoS, prefs: Preferences) -> float:
    """The weighted mean of the task's scores for these preferences, or 0 if it broke a
    hard limit or delivered nothing."""
    if breaks_limit(q, prefs) is not None:
        return 0.0
    s = scores(q)
    return sum(w * s[name] for name, w in zip(QUALITIES, prefs.weights, strict=True)) / sum(prefs.weights)


def qos_loss(utilities: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each policy's QoS loss for one requester: the best mean utility among the policies
    given, less the policy's own (0 for the best; policies with no task are left out)."""
    means = {name: sum(u) / len(u) for name, u in utilities.items() if u}
    if not means:
        return {}
    best = max(means.values())
    return {name: best - mean for name, mean in means.items()}


__all__ = [
    "QUALITIES",
    "SPEED_SCALE",
    "PreferenceError",
    "Preferences",
    "breaks_limit",
    "parse_weights",
    "qos_loss",
    "scores",
    "utility",
]
