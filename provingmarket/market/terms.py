"""The terms the router posts an arm with, tuned by rule from the preferences (the router
then learns better ones per profile: provingmarket/market/router.py).

**Terms, tuned by rule from the preferences** (shares are a weight over their sum):

- redundancy: 3 when safety has at least 40 % of the weight, else 1; never below the
  requester's minimum, never above the provers who could take the task nor above what the
  price ceiling pays at the market's least reward (fewer proofs rather than none);
- collateral: the market's least × (1 + round(4 × safety share));
- maximum reward per proof: the market's least × (1 + round(4 × speed ÷ (speed + cost))),
  one step more for each of the requester's tasks that went unserved (retuning, below), and
  cut to fit the price ceiling (every proof's reward and fee within it);
- decaying reward (to the market's least) when speed weighs more than cost: the fast are
  paid more;
- windows: the pace's (`Pace`), shrunk to fit the time limit: an open race's whole window,
  or the assignment and proving windows together, end by the limit, so no proof the
  registry accepts can be later than it; a reverse Dutch auction ramps over its whole
  assignment window from 0.

**Hard limits are never broken by what is posted**: the escrow (rewards and fees) is at
most the price ceiling, the redundancy at least the minimum, and the registry refuses any
proof after the windows, which end by the time limit. A task may still go unproven; that
scores 0 for the arm, which is how the router learns to avoid it.
"""

from __future__ import annotations

from provingmarket.formats import DUTCH, MAX_REDUNDANCY, OPEN_RACE
from provingmarket.market.arms import Arm, MarketView, Pace
from provingmarket.market.index import MarketIndex
from provingmarket.market.preferences import Preferences

SAFETY_SHARE_FOR_REDUNDANCY = 0.4
REDUNDANT = 3
MOST_LEVEL = 5  # the most a retuned reward reaches, in multiples of the market's least


def share(prefs: Preferences, value: float) -> float:
    return value / sum(prefs.weights)


def tune(
    arm: Arm, prefs: Preferences, market: MarketView, level: int, pace: Pace, redundancy: int | None = None
) -> tuple[dict | None, str, str]:
    """The terms for `arm` at reward `level` (with "" for limit and why), or None with the
    limit that bars it and why; `redundancy` asks for that many proofs instead of the
    rule's (still within the requester's minimum, the provers and the price)."""
    wanted = redundancy
    assign, prove = windows(arm, pace, prefs.max_time)
    fastest = min((t for t, _ in market.provers), default=None)
    if fastest is None:
        return None, "min_redundancy", f"{arm.name}: no prover in market {market.market_id}"
    if not fit(arm, assign, prove, fastest):
        needed = time_needed(arm, pace, fastest)
        if needed is None:  # no time limit would do: the pace's own windows are too short
            return (
                None,
                "min_redundancy",
                f"{arm.name}: no prover could take part within its windows ({assign} s to "
                f"assign, {prove} s to prove; it needs {arm.least_time} s before an assignment, "
                f"the fastest prover {fastest} s)",
            )
        return (
            None,
            "max_time",
            f"{arm.name} needs a time limit of at least {needed} s (its "
            + (f"links' {assign} s" if arm.links else f"own {arm.least_time} s")
            + f" and the fastest prover's {fastest} s)",
        )
    could = market.could(arm, prove)
    if wanted is None:
        wanted = REDUNDANT if share(prefs, prefs.safety) >= SAFETY_SHARE_FOR_REDUNDANCY else 1
    redundancy = max(prefs.min_redundancy, wanted)
    if prefs.min_redundancy > MAX_REDUNDANCY:
        return (
            None,
            "min_redundancy",
            f"{arm.name}: a task has at most {MAX_REDUNDANCY} provers",
        )
    if could < prefs.min_redundancy:
        return (
            None,
            "min_redundancy",
            f"{arm.name}: only {could} prover{'s' if could != 1 else ''} could take part",
        )
    redundancy = min(redundancy, max(could, 1))
    if prefs.max_price is not None and market.min_reward + arm.fee > 0:
        affordable = prefs.max_price // (market.min_reward + arm.fee)
        redundancy = max(prefs.min_redundancy, min(redundancy, affordable))
    reward = level * market.min_reward
    if prefs.max_price is not None:
        reward = min(reward, prefs.max_price // redundancy - arm.fee)
    if reward < market.min_reward:
        least = redundancy * (market.min_reward + arm.fee)
        return (
            None,
            "max_price",
            f"{arm.name} costs at least {least / 10**18:g} ETH for {redundancy} proof(s)",
        )
    decay = prefs.speed > prefs.cost
    terms: dict[str, int | bool] = {
        "mechanism_id": arm.mechanism_id,
        "redundancy": redundancy,
        "assign_window": assign,
        "proving_window": prove,
        "max_reward": reward,
        "frontend_fee": arm.fee,
        "collateral": market.min_collateral * (1 + round(4 * share(prefs, prefs.safety))),
        "decay": decay,
        "decay_floor": market.min_reward if decay else 0,
        "start_price": 0,
        "ramp": assign if DUTCH in ({link.mechanism for link in arm.links} or {arm.mechanism_id}) else 0,
    }
    return terms, "", ""


def windows(arm: Arm, pace: Pace, max_time: int | None) -> tuple[int, int]:
    """The assignment and proving windows for `arm`: the pace's, shrunk to end by `max_time`;
    a chain's assignment window is its links' (fixed by its mechanism_id), only its
    proving window shrinks."""
    if arm.links:
        assign, prove = sum(link.window for link in arm.links), pace.proving_window
        if max_time is not None and assign + prove > max_time:
            prove = max(0, max_time - assign)
        return assign, prove
    if arm.mechanism_id == OPEN_RACE:
        assign, prove = 0, pace.race_window
    else:
        assign, prove = pace.assign_window, pace.proving_window
    if max_time is not None and assign + prove > max_time:
        scale = max_time / (assign + prove)
        assign, prove = int(assign * scale), int(prove * scale)
    return assign, prove


def fit(arm: Arm, assign: int, prove: int, fastest: int) -> bool:
    """Whether the windows leave the arm its time before an assignment and the fastest prover
    its proving time."""
    if arm.mechanism_id == OPEN_RACE:
        return prove >= fastest
    return assign >= max(arm.least_time, 1) and prove >= fastest  # a chain: its links' windows


def time_needed(arm: Arm, pace: Pace, fastest: int) -> int | None:
    """The least time limit whose windows fit the arm and the fastest prover (the windows
    shrink in proportion), or None if not even the pace's own do."""
    whole = sum(windows(arm, pace, None))
    if not fit(arm, *windows(arm, pace, None), fastest):
        return None
    low, high = 1, whole  # the windows fit at `high`
    while low < high:
        middle = (low + high) // 2
        if fit(arm, *windows(arm, pace, middle), fastest):
            high = middle
        else:
            low = middle + 1
    return high


def index_level(index: MarketIndex | None, market: MarketView) -> int | None:
    """The reward level (multiples of the market's least, at most MOST_LEVEL) that pays at
    least the price the market's index says provers were paid lately; None without an
    index or before its first proof."""
    if index is None or not index.known or market.min_reward <= 0:
        return None
    return min(MOST_LEVEL, max(1, -(-index.price // market.min_reward)))
