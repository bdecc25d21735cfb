"""The router: a requester's preferences in, a mechanism and its terms out, learnt from
what the chain delivered.

**Method: a bandit per preference profile (UCB1).** Requesters whose weights normalise to
the same profile (provingmarket/market/preferences.py, `Preferences.profile`) share one bandit;
its arms are the mechanisms registered in the market (plus the built-in open race and
reverse Dutch auction). Each task the router posted, once settled on chain, is scored with
its poster's utility and counted for its arm. To choose, the router:

1. tunes every arm's terms to the preferences (below) and drops arms whose terms cannot
   meet a hard limit; if none is left it says which limit and posts nothing
   (`Infeasible`);
2. tries an arm never observed for the profile first (in the order given), since nothing
   else can be known about it;
3. otherwise picks the arm with the highest upper confidence bound,
   mean utility + c·√(ln N / n) (n tasks of the arm, N of the profile, c = `EXPLORATION`).

Why UCB1 and not ε-greedy or Thompson sampling: its choice is a deterministic function of
what was observed, so a choice can be explained in a sentence and a simulation repeated
from its seed; it explores an arm in proportion to how uncertain its estimate still is
(not at a fixed rate forever), and its regret grows only logarithmically. A bandit per
profile rather than per requester lets a new requester start from what others with the
same weights saw. c = 0.2 was fixed before any simulation ran, from the scale of the
utility (scores from 0 to 1, differences between mechanisms of the order of 0.05 to 0.3:
c = 1 would keep exploring long after such a ranking is clear) and is the same on the
training and held-out seeds.

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

**Retuning**: when one of a requester's tasks through an arm delivered nothing, the next
task it posts through that arm pays one step more (up to 5x the least and the ceiling) and
the reason says so; when a requester's last three tasks through an arm scored on average
more than 0.2 below the arm's mean for its profile, the router moves it off that arm for its
next task and says why (three more tasks through it are needed before it is judged again).
A task still running counts as trying its arm: the router does not pile a profile's tasks
onto an arm it has not seen an outcome of yet.

**Its recent choices** are kept with the state (`choices`, the last `RECENT_CHOICES`,
oldest first): for each task recorded, the arm, its terms in a line, the reason given,
the preferences (and the persona whose weights they are, if any), the requester and when;
the explorer's mechanisms page shows them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provingmarket.formats import DUTCH, MAX_REDUNDANCY, OPEN_RACE
from provingmarket.market.personas import PERSONAS
from provingmarket.market.preferences import Preferences, breaks_limit, utility
from provingmarket.market.qos import TaskQoS

EXPLORATION = 0.2  # c in the UCB1 bound; see the module's docstring
SAFETY_SHARE_FOR_REDUNDANCY = 0.4
REDUNDANT = 3
MOST_LEVEL = 5  # the most a retuned reward reaches, in multiples of the market's least
SHORTFALL = 0.2  # how far below the arm's mean a requester's last tasks may fall
RECENT = 3  # tasks a shortfall is judged over
HOUR = 3_600
RECENT_CHOICES = 200  # choices kept in the state's log, the newest


class Infeasible(ValueError):
    """No mechanism can meet the hard limits; `limit` names the one that bars most (or
    the only one), the message says why and what would do."""

    def __init__(self, limit: str, message: str):
        self.limit = limit
        super().__init__(message)


@dataclass(frozen=True)
class Pace:
    """The windows the router posts with, in seconds. The defaults suit a real chain; a
    simulation on a fast local chain gives shorter ones."""

    race_window: int = 10 * 60  # an open race's length
    assign_window: int = 4 * HOUR
    proving_window: int = 2 * HOUR


@dataclass(frozen=True)
class Arm:
    """A mechanism the router can post through."""

    name: str  # as the registry names it ("orderbook") or "open race", "dutch"
    mechanism_id: int
    least_time: int = 0  # seconds it needs before an assignment can be made (a bidding window, a draw)
    fee: int = 0  # the frontend fee per slot it is posted with (0 for the built-in ones)


@dataclass(frozen=True)
class MarketView:
    """What the router needs of a market: its least reward and collateral, and the
    provers in it (their declared proving time and the mechanisms each accepts)."""

    market_id: int
    min_reward: int
    min_collateral: int
    provers: tuple[tuple[int, frozenset[int]], ...]  # (proving_time, accepted mechanism ids)

    def could(self, arm: Arm, proving_window: int) -> int:
        built_in = arm.mechanism_id in (OPEN_RACE, DUTCH)
        return sum(
            1
            for time, accepts in self.provers
            if time <= proving_window and (built_in or arm.mechanism_id in accepts)
        )


@dataclass(frozen=True)
class Choice:
    arm: Arm
    terms: dict[str, int | bool]  # TaskTerms fields: mechanism_id, redundancy, windows, rewards, …
    reason: str
    estimates: dict[str, tuple[float, int]]  # arm → (mean utility, tasks) for the profile
    level: float  # the reward offered, in multiples of the market's least

    def describe(self) -> str:
        t = self.terms
        windows = (
            f"a {t['proving_window']} s race"
            if t["mechanism_id"] == OPEN_RACE
            else f"{t['assign_window']} s to assign, {t['proving_window']} s to prove"
        )
        return (
            f"{self.arm.name}: {t['redundancy']} proof{'s' if t['redundancy'] > 1 else ''}, "
            f"up to {self.level:g}x the least reward{' decaying' if t['decay'] else ''}, {windows}"
        )


@dataclass
class _State:
    # profile → arm → utilities of the tasks observed
    seen: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # requester → arm → [utility, delivered?] of its tasks, oldest first
    mine: dict[str, dict[str, list[list]]] = field(default_factory=dict)
    # task id → what was posted: {"arm", "requester", "preferences"} until it settles
    pending: dict[str, dict] = field(default_factory=dict)
    # requester → arm → its tasks through the arm when it was last moved off it
    moved: dict[str, dict[str, int]] = field(default_factory=dict)
    # the last RECENT_CHOICES tasks recorded, oldest first: {"task_id", "arm", "terms", "reason",
    # "preferences", "persona", "requester", "at"} (see `Router.record`)
    choices: list[dict] = field(default_factory=list)


def persona_of(prefs: Preferences) -> str | None:
    """The persona (provingmarket/market/personas.py) whose weights these are, or None."""
    for name, persona in PERSONAS.items():
        w = persona.weights
        if prefs.weights == (w.speed, w.cost, w.safety, w.censorship_resistance):
            return name
    return None


def read_state(path: str | Path) -> _State:
    """What a router saved at `path` (a missing file: nothing learnt yet); ValueError saying
    what is wrong with a file that is not a router's state. A file written before the
    choices were logged loads with none."""
    path = Path(path)
    if not path.exists():
        return _State()
    try:
        raw = json.loads(path.read_text())
        state = _State(raw["seen"], raw["mine"], raw["pending"], raw.get("moved", {}), raw.get("choices", []))
        if not all(isinstance(part, dict) for part in (state.seen, state.mine, state.pending, state.moved)):
            raise TypeError("seen, mine, pending and moved must be objects")
        if not isinstance(state.choices, list) or not all(isinstance(c, dict) for c in state.choices):
            raise TypeError("choices must be a list of objects")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a router state file ({error}); move it away to start afresh") from None
    return state


def _share(prefs: Preferences, value: float) -> float:
    return value / sum(prefs.weights)


class Router:
    def __init__(self, arms: Sequence[Arm], pace: Pace | None = None, exploration: float = EXPLORATION):
        if not arms:
            raise ValueError("the router needs at least one mechanism to route to")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"mechanism names must differ: {names}")
        self.arms = list(arms)
        self.pace = pace or Pace()
        self.exploration = exploration
        self.state = _State()

    # -------------------------------------------------------------- learning

    def record(
        self, task_id: str, choice: Choice, prefs: Preferences, requester: str, at: int | None = None
    ) -> None:
        """Remember a task posted on `choice`, to learn from once it settles, and log the
        choice with its reason (`at`: when it was posted, unix seconds; now if not given)."""
        self.state.pending[task_id.lower()] = {
            "arm": choice.arm.name,
            "requester": requester.lower(),
            "preferences": asdict(prefs),
        }
        self.state.choices.append(
            {
                "task_id": task_id.lower(),
                "arm": choice.arm.name,
                "terms": choice.describe(),
                "reason": choice.reason,
                "preferences": asdict(prefs),
                "persona": persona_of(prefs),
                "requester": requester.lower(),
                "at": int(time.time()) if at is None else at,
            }
        )
        del self.state.choices[:-RECENT_CHOICES]

    def learn(self, tasks: Sequence[TaskQoS]) -> int:
        """Observe every settled task among `tasks` (as provingmarket.market.qos measures them)
        that the router posted and has not observed yet; returns how many."""
        learnt = 0
        for q in tasks:
            posted = self.state.pending.get(q.task_id.lower())
            if posted is None or not q.settled:
                continue
            del self.state.pending[q.task_id.lower()]
            self.observe(posted["arm"], q, Preferences(**posted["preferences"]), posted["requester"])
            learnt += 1
        return learnt

    def observe(self, arm: str, q: TaskQoS, prefs: Preferences, requester: str | None = None) -> float:
        """Count a settled task of `arm` for the profile of `prefs`; returns its utility."""
        u = utility(q, prefs)
        self.state.seen.setdefault(prefs.profile, {}).setdefault(arm, []).append(u)
        if requester is not None:
            delivered = breaks_limit(q, prefs) != "no proof was delivered"
            self.state.mine.setdefault(requester.lower(), {}).setdefault(arm, []).append([u, delivered])
        return u

    def estimates(self, prefs: Preferences) -> dict[str, tuple[float, int]]:
        seen = self.state.seen.get(prefs.profile, {})
        return {
            a.name: (sum(seen[a.name]) / len(seen[a.name]), len(seen[a.name]))
            for a in self.arms
            if seen.get(a.name)
        }

    # -------------------------------------------------------------- choosing

    def level(self, arm: Arm, prefs: Preferences, requester: str | None) -> int:
        """The reward, in multiples of the market's least: by the weights, one step more per
        unserved task of the requester's through the arm (up to MOST_LEVEL)."""
        base = 1 + round(4 * prefs.speed / (prefs.speed + prefs.cost)) if prefs.speed + prefs.cost else 1
        history = self.state.mine.get((requester or "").lower(), {}).get(arm.name, [])
        unserved = sum(1 for _, delivered in history if not delivered)
        return min(MOST_LEVEL, base + unserved)

    def tune(
        self, arm: Arm, prefs: Preferences, market: MarketView, level: int
    ) -> tuple[dict | None, str, str]:
        """The terms for `arm` (with "" for limit and why), or None with the limit that bars
        it and why."""
        assign, prove = self._windows(arm, prefs.max_time)
        fastest = min((t for t, _ in market.provers), default=None)
        if fastest is None:
            return None, "min_redundancy", f"{arm.name}: no prover in market {market.market_id}"
        if not self._fit(arm, assign, prove, fastest):
            needed = self._time_needed(arm, fastest)
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
                f"{arm.name} needs a time limit of at least {needed} s (its own {arm.least_time} s "
                f"and the fastest prover's {fastest} s)",
            )
        could = market.could(arm, prove)
        redundancy = max(
            prefs.min_redundancy,
            REDUNDANT if _share(prefs, prefs.safety) >= SAFETY_SHARE_FOR_REDUNDANCY else 1,
        )
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
            "collateral": market.min_collateral * (1 + round(4 * _share(prefs, prefs.safety))),
            "decay": decay,
            "decay_floor": market.min_reward if decay else 0,
            "start_price": 0,
            "ramp": assign if arm.mechanism_id == DUTCH else 0,
        }
        return terms, "", ""

    def _windows(self, arm: Arm, max_time: int | None) -> tuple[int, int]:
        """The assignment and proving windows for `arm`: the pace's, shrunk to end by `max_time`."""
        if arm.mechanism_id == OPEN_RACE:
            assign, prove = 0, self.pace.race_window
        else:
            assign, prove = self.pace.assign_window, self.pace.proving_window
        if max_time is not None and assign + prove > max_time:
            scale = max_time / (assign + prove)
            assign, prove = int(assign * scale), int(prove * scale)
        return assign, prove

    @staticmethod
    def _fit(arm: Arm, assign: int, prove: int, fastest: int) -> bool:
        """Whether the windows leave the arm its time before an assignment and the fastest prover
        its proving time."""
        if arm.mechanism_id == OPEN_RACE:
            return prove >= fastest
        return assign >= max(arm.least_time, 1) and prove >= fastest

    def _time_needed(self, arm: Arm, fastest: int) -> int | None:
        """The least time limit whose windows fit the arm and the fastest prover (the windows
        shrink in proportion), or None if not even the pace's own do."""
        whole = sum(self._windows(arm, None))
        if not self._fit(arm, *self._windows(arm, None), fastest):
            return None
        low, high = 1, whole  # the windows fit at `high`
        while low < high:
            middle = (low + high) // 2
            if self._fit(arm, *self._windows(arm, middle), fastest):
                high = middle
            else:
                low = middle + 1
        return high

    def choose(self, prefs: Preferences, market: MarketView, requester: str | None = None) -> Choice:
        """The arm and terms for one task of a requester with these preferences (see the
        module's docstring), or Infeasible naming the hard limit no mechanism can meet."""
        tuned: dict[str, tuple[dict, int]] = {}
        barred: dict[str, list[str]] = {}
        for arm in self.arms:
            level = self.level(arm, prefs, requester)
            terms, limit, why = self.tune(arm, prefs, market, level)
            if terms is None:
                barred.setdefault(limit, []).append(why)
            else:
                tuned[arm.name] = (terms, level)
        if not tuned:
            limit = max(barred, key=lambda k: len(barred[k]))
            value = {
                "max_time": f"{prefs.max_time} s",
                "max_price": f"{(prefs.max_price or 0) / 10**18:g} ETH",
                "min_redundancy": str(prefs.min_redundancy),
            }[limit]
            raise Infeasible(
                limit,
                f"no mechanism can meet {limit} = {value}; nothing posted: "
                + "; ".join(sum(barred.values(), [])),
            )
        estimates = self.estimates(prefs)
        candidates = [a for a in self.arms if a.name in tuned]
        moved = self._shortfall(candidates, estimates, requester)
        if moved and len(candidates) > 1:
            candidates = [a for a in candidates if a.name != moved[0]]
            who = (requester or "").lower()  # judged: the next move needs RECENT new tasks
            self.state.moved.setdefault(who, {})[moved[0]] = len(self.state.mine[who][moved[0]])
        else:
            moved = None  # the only arm left: not moved off it
        arm, reason = self._pick(candidates, estimates, self._pending(prefs))
        if moved:
            reason = moved[1] + "; " + reason
        barred_text = "; ".join(sum(barred.values(), []))
        if barred_text:
            reason += f" (not possible within the limits: {barred_text})"
        terms, level = tuned[arm.name]
        offered = terms["max_reward"] / market.min_reward if market.min_reward else level
        base = self.level(arm, prefs, None)
        if level > base:
            history = self.state.mine.get((requester or "").lower(), {}).get(arm.name, [])
            unserved = sum(1 for _, delivered in history if not delivered)
            reason += (
                f"; retuned: {unserved} of your tasks through {arm.name} went unproven, so it offers "
                f"{offered:g}x the least reward instead of {base}x"
                + (" (as far as your price limit allows)" if offered < level else "")
            )
        return Choice(arm, terms, reason, estimates, offered)

    def _pick(
        self, candidates: list[Arm], estimates: dict[str, tuple[float, int]], waiting: dict[str, int]
    ) -> tuple[Arm, str]:
        """The arm to use among `candidates` and why: one never tried for these preferences
        first, else the highest upper confidence bound on its utility."""
        untried = [a for a in candidates if a.name not in estimates and a.name not in waiting]
        known = [a for a in candidates if a.name in estimates]
        if not untried and not known:  # every arm left awaits its first outcome
            arm = min(candidates, key=lambda a: waiting.get(a.name, 0))
            return arm, (
                f"{arm.name}: no outcome observed yet for these preferences ({waiting.get(arm.name, 0)} "
                "task(s) through it still running), and no other mechanism has one either"
            )
        if untried:
            arm = untried[0]
            return arm, f"exploring: no task through {arm.name} observed yet for these preferences"
        total = sum(n for _, n in estimates.values())

        def bound(a: Arm) -> float:
            mean, n = estimates[a.name]
            return mean + self.exploration * math.sqrt(math.log(total) / n)

        arm = max(known, key=bound)
        best = max(known, key=lambda a: estimates[a.name][0])
        mean, n = estimates[arm.name]
        if arm is not best:
            return arm, (
                f"exploring {arm.name}: utility {mean:.2f} over only {n} tasks could still beat "
                f"{best.name}'s {estimates[best.name][0]:.2f} (upper bound {bound(arm):.2f})"
            )
        runner = [a for a in known if a is not arm]
        other = max(runner, key=lambda a: estimates[a.name][0]) if runner else None
        return arm, (
            f"{arm.name} serves these preferences best so far: utility {mean:.2f} over {n} tasks"
            + (
                f" (next, {other.name}: {estimates[other.name][0]:.2f} over {estimates[other.name][1]})"
                if other
                else ""
            )
        )

    def _pending(self, prefs: Preferences) -> dict[str, int]:
        """Tasks posted for this profile whose outcome is not in yet, per arm: an arm with
        one running is being tried, and is not tried again before it settles."""
        counts: dict[str, int] = {}
        for posted in self.state.pending.values():
            if Preferences(**posted["preferences"]).profile == prefs.profile:
                counts[posted["arm"]] = counts.get(posted["arm"], 0) + 1
        return counts

    def _shortfall(
        self, candidates: Sequence[Arm], estimates: Mapping[str, tuple[float, int]], requester: str | None
    ) -> tuple[str, str] | None:
        """The arm a requester's recent tasks fell short on, and why, or None."""
        who = (requester or "").lower()
        history = self.state.mine.get(who, {})
        for arm in candidates:
            since = self.state.moved.get(who, {}).get(arm.name, 0)  # tasks already judged by a move
            recent = [u for u, _ in history.get(arm.name, [])[since:]][-RECENT:]
            if len(recent) < RECENT or arm.name not in estimates:
                continue
            got, expected = sum(recent) / RECENT, estimates[arm.name][0]
            if got < expected - SHORTFALL:
                return arm.name, (
                    f"moved off {arm.name}: your last {RECENT} tasks through it scored {got:.2f} on average, "
                    f"against {expected:.2f} for these preferences"
                )
        return None

    # -------------------------------------------------------------- state on disk

    def save(self, path: str | Path) -> None:
        """Write what was learnt (JSON), atomically."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=1, sort_keys=True))
        tmp.replace(path)

    def load(self, path: str | Path) -> Router:
        """Read what was learnt; a missing file is a router that has seen nothing."""
        self.state = read_state(path)
        return self


__all__ = [
    "EXPLORATION",
    "RECENT_CHOICES",
    "Arm",
    "Choice",
    "Infeasible",
    "MarketView",
    "Pace",
    "Router",
    "persona_of",
    "read_state",
]
