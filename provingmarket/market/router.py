"""The router: a requester's preferences in, a mechanism and its terms out, learnt from
what the chain delivered.

**Method: a hierarchical bandit per preference profile (UCB1 at two levels).** Requesters
whose weights normalise to the same profile (provingmarket/market/preferences.py,
`Preferences.profile`) share one bandit. Its first level chooses the mechanism among those
registered in the market (plus the built-in open race and reverse Dutch auction); its second
level chooses, within that mechanism, the terms: the reward level (in multiples of the
market's least reward) and the redundancy. Each task the router posted, once settled on
chain, is scored with its poster's utility and counted for its mechanism and for the terms
it was posted with. To choose, the router:

1. tunes every mechanism's terms to the preferences by rule (below) and drops mechanisms
   whose terms cannot meet a hard limit; if none is left it says which limit and posts
   nothing (`Infeasible`);
2. tries a mechanism never observed for the profile first (in the order given), since
   nothing else can be known about it;
3. otherwise picks the mechanism with the highest upper confidence bound,
   mean utility + c·√(ln N / n) (n tasks of the mechanism, N of the profile, c = `EXPLORATION`);
4. then, within it, the terms (`_terms`): the rule's, the best observed so far, their
   neighbours (one reward step up or down, one proof more or fewer) and any tried before
   that still fit the limits; each is scored by its mean utility shrunk towards the
   mechanism's (a prior worth `PRIOR_TASKS` task) plus the same bound with the mechanism's
   tasks as N. An untried neighbour is thus tried once its bound beats what is known, not
   before, and the search walks towards better terms a step at a time.

Outcomes come only when a task settles, which can take its whole windows, and a busy
profile posts many tasks meanwhile: in both bounds a task still running counts as tried at
the mean so far (the delayed-feedback bandit's usual remedy), so tasks do not pile up on a
mechanism or terms whose first outcome is not in yet.

Why hierarchical rather than one flat bandit over (mechanism, level, redundancy): five
mechanisms × five levels × three redundancies is 75 arms per profile, and a profile sees a
few dozen tasks, so a flat bandit would spend them all exploring. The mechanism matters
most (who can take the task at all, how fast), so it is learnt first from every task of
the profile; the terms only shift the utility within a mechanism, so they are learnt from
that mechanism's tasks, starting at the rule's terms and moving one step at a time. It
also keeps each choice explainable in one line: the mechanism and why, then the terms and
why. A contextual bandit over the weights would share more across profiles, but needs a
model of utility in the weights that the data here could not check.

Why UCB1 and not ε-greedy or Thompson sampling: its choice is a deterministic function of
what was observed, so a choice can be explained in a sentence and a simulation repeated
from its seed; it explores an arm in proportion to how uncertain its estimate still is
(not at a fixed rate forever), and its regret grows only logarithmically. A bandit per
profile rather than per requester lets a new requester start from what others with the
same weights saw. c = 0.2 was fixed before any simulation ran, from the scale of the
utility (scores from 0 to 1, differences between mechanisms of the order of 0.05 to 0.3:
c = 1 would keep exploring long after such a ranking is clear) and is the same on the
training and held-out seeds.

**Noticing change: a change detector on each mechanism's utility, and a window.** Each
mechanism's outcomes for a profile feed a two-sided CUSUM test (Page's): the sums of how far
each new utility falls below (and rises above) what its terms were expected to give, less a
tolerance `DRIFT` (0.05) per task, floored at 0. What terms are expected to give is their
mean so far shrunk towards the mechanism's (which weighs `REFERENCE_TASKS`, 10, tasks): the
router posts the terms whose mean is highest so far, and that mean is biased upwards by the
choice itself, so judged alone its next outcomes would look like a fall. When either sum
passes `ALARM` (2.0: a sustained shift of 0.3 is caught in nine tasks, one of 0.6 in
four; a single lost task, worth at most 1, is never enough, nor are three tasks scoring 0.6
below the mean), the world is taken to have changed:

- that mechanism keeps only its outcomes since the sum last stood at 0 (the change point)
  and the one that raised the alarm, so its estimate is what it delivers now;
- every other mechanism of the profile keeps only its last `PRIOR_TASKS` outcome, and is
  re-checked once (its next task, before the bound decides again): what was learnt before
  the change survives as a weak prior, not as history from another world;
- the choice's reason says so for the next `CHANGE_NOTED` tasks of the profile.

Besides, each mechanism keeps at most its last `WINDOW` (100) outcomes per profile, so a
drift too slow for the test still wears old outcomes out. Why detection and not
discounting every outcome: with discounting the estimates of a world that does not change
keep the noise of a short memory and the router keeps re-exploring; a detector keeps the
full memory while nothing changes (the stable case the router is in most of the time) and
forgets at once when something does, and the moment is a fact it can state in its reason.
The price: a change in a mechanism the router is not using is found only by exploring (or
by an alarm on the one it uses, which re-opens every other).

**Leading signal: tasks running late.** `learn` reads the router's tasks still running too.
A running task can score at most its utility if every open slot were proven now, at what it
has paid so far (`utility_bound`; 0 once past the time limit), and it counts as an early
failure (0) once it has no proof later than any of its mechanism's last `USUAL` (20) first
proofs for the profile. Once that bound is below what its terms are expected to give, the
fall feeds the change detector at once (later falls as the task grows later, the rest when
it settles, and an overdue task proven after all takes back what it fed); and the choice
counts it at its bound in its mechanism's mean (the estimates the choice reports stay the
settled ones, and the reason says how many such tasks were counted). An outcome that comes
only when the windows end is thus half known long before.

**The market's index** (`choose(..., index=MarketIndex)`): while a mechanism has no outcome
for the profile, the rule's reward is raised to the index price if below it (`index_level`,
rounded up to a step, at most `MOST_LEVEL`): provers were paid that lately. Outcomes decide
after that.

**Terms** are tuned by rule from the preferences (provingmarket/market/terms.py), and the
hard limits are never broken by what is posted; the arms, chains among them, and the choice
are provingmarket/market/arms.py's, the saved state provingmarket/market/router_state.py's.

**Retuning**: for each of a requester's last `RETUNE_MEMORY` (5) tasks through an arm that
delivered nothing, the next task it posts through that arm pays one step more than the
terms chosen (up to 5x the least and the ceiling) and the reason says so; when a
requester's last three tasks through an arm scored on average more than 0.2 below the arm's
mean for its profile, the router moves it off that arm for its next task and says why (three
more tasks through it are needed before it is judged again). If one of those very tasks
raised the change detector's alarm on the arm, they are judged against the arm's mean before
the fall: with no one else's tasks to compare, the detector cannot tell a requester's bad run
from a change of the world, and forgetting must not excuse the run it was raised on.
A task still running counts as trying its arm: the router does not pile a profile's tasks
onto an arm it has not seen an outcome of yet.

"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from provingmarket.formats import MAX_REDUNDANCY
from provingmarket.market import terms as terms_by_rule
from provingmarket.market.arms import Arm, Choice, Infeasible, MarketView, Pace, chain_arm
from provingmarket.market.index import MarketIndex
from provingmarket.market.preferences import Preferences, breaks_limit, utility
from provingmarket.market.qos import TaskQoS
from provingmarket.market.repricing import policy_for
from provingmarket.market.router_state import (
    State,
    describe_variant,
    persona_of,
    read_state,
    variant,
    variant_of,
)
from provingmarket.market.terms import MOST_LEVEL, REDUNDANT, index_level

EXPLORATION = 0.2  # c in the UCB1 bound; see the module's docstring
TERMS_EXPLORATION = 0.1  # c in the bound on terms within a mechanism: half, the differences are smaller
SHORTFALL = 0.2  # how far below the arm's mean a requester's last tasks may fall
RECENT = 3  # tasks a shortfall is judged over
RECENT_CHOICES = 200  # choices kept in the state's log, the newest
RETUNE_MEMORY = 5  # a requester's last tasks through an arm whose failures raise its reward
WINDOW = 100  # outcomes kept per profile and mechanism, the newest
DRIFT = 0.05  # the change detector's tolerance per task (utility)
ALARM = 2.0  # the change detector's threshold (utility summed over tasks)
SETTLED = 5  # outcomes a mechanism needs before its change detector runs
PRIOR_TASKS = 1  # a mechanism's mean as its terms' prior, in tasks; outcomes others keep after a change
REFERENCE_TASKS = 10  # a mechanism's mean in what its terms are expected to give (detector), in tasks
USUAL = 20  # a mechanism's last first proofs per profile whose longest is the usual wait for one
CHANGE_NOTED = 10  # tasks of the profile after a change whose reasons mention it


def utility_bound(q: TaskQoS, prefs: Preferences, now: int) -> float:
    """The most a running task can still score for `prefs` at `now` (unix seconds): its
    utility if every open slot were proven right now at what it has paid so far. Its
    proofs can only come later, and cost more, so its outcome scores at most this."""
    elapsed = max(0, now - q.posted_at, *q.proof_times)
    open_slots = max(0, q.redundancy - q.proofs - q.refunded)
    return utility(replace(q, proof_times=(*q.proof_times, *(elapsed,) * open_slots)), prefs)


class Router:
    def __init__(
        self,
        arms: Sequence[Arm],
        pace: Pace | None = None,
        exploration: float = EXPLORATION,
        chains: Sequence[str] = (),
    ):
        """`arms`: the mechanisms to route to (`routing.arms`); `chains`: fallback chains to
        offer besides, as `requester post --chain` texts (`chain_arm`); a chain with a link
        that is not among `arms` is not offered, and `left_out` says why."""
        if not arms:
            raise ValueError("the router needs at least one mechanism to route to")
        self.pace = pace or Pace()
        self.left_out: dict[str, str] = {}  # chain text → why it is not offered
        offered = list(arms)
        for text in chains:
            try:
                offered.append(chain_arm(text, arms, self.pace))
            except ValueError as error:
                self.left_out[text] = str(error)
        names = [a.name for a in offered]
        if len(set(names)) != len(names):
            raise ValueError(f"mechanism names must differ: {names}")
        self.arms = offered
        self.exploration = exploration
        self.state = State()
        self._profiles: dict[str, str] = {}  # task id → its poster's profile, while pending

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
        if choice.variant:
            self.state.posted_terms[task_id.lower()] = choice.variant
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

    def learn(self, tasks: Sequence[TaskQoS], now: int | None = None) -> int:
        """Observe every settled task among `tasks` (as provingmarket.market.qos measures them)
        that the router posted and has not observed yet; returns how many.

        The router's tasks among them still running are read too, for what they can still
        score at most (`utility_bound`) at `now` (unix seconds; not given: the latest moment
        the tasks show, a posting or a proof, which never runs ahead of the chain): a task
        unassigned or unproven long past what its mechanism usually takes can no longer score
        what its mechanism's outcomes promise, and that is known before it settles (see
        "Leading signal" in the module's docstring)."""
        if now is None:
            now = max(
                (max((q.posted_at, *(q.posted_at + t for t in q.proof_times))) for q in tasks), default=0
            )
        learnt = 0
        for q in tasks:
            task_id = q.task_id.lower()
            posted = self.state.pending.get(task_id)
            if posted is None:
                continue
            prefs = Preferences(**posted["preferences"])
            if not q.settled:
                self._running_late(task_id, posted, q, prefs, now)
                continue
            del self.state.pending[task_id]
            self._profiles.pop(task_id, None)
            terms = self.state.posted_terms.pop(task_id, None)
            fed = self.state.running.pop(task_id, {}).get("fed")
            self.observe(posted["arm"], q, prefs, posted["requester"], terms, fed)
            learnt += 1
        return learnt

    def _running_late(self, task_id: str, posted: dict, q: TaskQoS, prefs: Preferences, now: int) -> None:
        """Note what a running task can still score at most (nothing if it has no proof
        later than any of the arm's last USUAL first proofs: an early failure); once that is
        below what its terms are expected to give, feed the fall to the change detector
        (each fall once, the rest when it settles)."""
        profile, arm = prefs.profile, posted["arm"]
        waits = self.state.first_proofs.get(profile, {}).get(arm, [])
        overdue = not q.proofs and len(waits) >= SETTLED and now - q.posted_at > max(waits)
        bound = 0.0 if overdue else utility_bound(q, prefs, now)  # overdue: an early failure
        key = self.state.posted_terms.get(task_id) or variant_of(q)
        mean = self._expected(profile, arm, key)
        if mean is None or bound >= mean:
            return
        late = self.state.running.setdefault(task_id, {})
        late["bound"] = round(bound, 4)
        change = self.state.change.setdefault(profile, {"arms": {}, "observed": 0, "last": None})
        sums = change["arms"].setdefault(arm, [0.0, 0.0, 0, 0])
        fed = late.get("fed")
        if fed is None:
            if bound >= mean - DRIFT:
                return
            sums[0] = max(0.0, sums[0] + mean - bound - DRIFT)
            sums[2] = sums[2] + 1 if sums[0] > 0 else 0
        elif bound < fed:  # later still
            sums[0] += fed - bound
        else:
            return
        late["fed"] = round(bound, 4)
        self._alarm(profile, arm, mean, None)

    def observe(
        self,
        arm: str,
        q: TaskQoS,
        prefs: Preferences,
        requester: str | None = None,
        terms: str | None = None,
        fed: float | None = None,
    ) -> float:
        """Count a settled task of `arm` for the profile of `prefs`, posted with the terms
        `terms` (a `variant` key; None: read from the task's terms); `fed`: what the change
        detector was given for it while it ran late (`learn`). Returns its utility."""
        u = utility(q, prefs)
        profile = prefs.profile
        seen = self.state.seen.setdefault(profile, {}).setdefault(arm, [])
        keys = self.state.variants.setdefault(profile, {}).setdefault(arm, [])
        keys[:0] = [""] * (len(seen) - len(keys))  # outcomes from before terms were learnt
        key = terms or variant_of(q)
        alarm = self._detect(profile, arm, key, u, fed)
        if q.first_proof is not None:
            waits = self.state.first_proofs.setdefault(profile, {}).setdefault(arm, [])
            waits.append(q.first_proof)
            del waits[:-USUAL]
        seen.append(u)
        keys.append(key)
        del seen[:-WINDOW], keys[:-WINDOW]
        if requester is not None:
            delivered = breaks_limit(q, prefs) != "no proof was delivered"
            mine = self.state.mine.setdefault(requester.lower(), {}).setdefault(arm, [])
            mine.append([u, delivered])
            if alarm:  # whose task raised it, and which of its tasks through the arm (see `_shortfall`)
                self.state.change[profile]["last"].update(by=requester.lower(), task=len(mine))
        return u

    def _by_variant(self, profile: str, arm: str) -> tuple[dict[str, list[float]], float]:
        """The arm's utilities for the profile by the terms they were posted with (those
        whose terms are unknown left out), and the arm's mean over all (0 with none)."""
        seen = self.state.seen.get(profile, {}).get(arm, [])
        keys = self.state.variants.get(profile, {}).get(arm, [])
        keys = [""] * (len(seen) - len(keys)) + keys
        stats: dict[str, list[float]] = {}
        for key, u in zip(keys, seen, strict=True):
            if key:
                stats.setdefault(key, []).append(u)
        return stats, (sum(seen) / len(seen) if seen else 0.0)

    @staticmethod
    def _shrunk(got: Sequence[float], prior: float) -> tuple[float, int]:
        """A mean over `got` shrunk towards `prior` (worth PRIOR_TASKS tasks), and its weight."""
        n = len(got) + PRIOR_TASKS
        return (prior * PRIOR_TASKS + sum(got)) / n, n

    def _expected(self, profile: str, arm: str, key: str) -> float | None:
        """What the change detector expects of an outcome of `arm` posted with terms `key`:
        their mean shrunk towards the arm's (REFERENCE_TASKS); None before the arm has
        SETTLED outcomes."""
        seen = self.state.seen.get(profile, {}).get(arm, [])
        if len(seen) < SETTLED:
            return None
        stats, arm_mean = self._by_variant(profile, arm)
        known = stats.get(key, [])
        return (arm_mean * REFERENCE_TASKS + sum(known)) / (REFERENCE_TASKS + len(known))

    def _detect(self, profile: str, arm: str, key: str, u: float, fed: float | None = None) -> bool:
        """Run the arm's change detector on a new utility `u` of terms `key` (before it is
        counted), against what those terms were expected to give (so a change of terms is
        not taken for a change of the world); `fed`: what it was given for this task while
        it ran late, so only the rest of its fall is added now. On an alarm, forget what
        came before the change (see the module's docstring) and return True."""
        change = self.state.change.setdefault(profile, {"arms": {}, "observed": 0, "last": None})
        change["observed"] += 1
        if arm in change.get("recheck", []):
            change["recheck"].remove(arm)
        mean = self._expected(profile, arm, key)
        if mean is None:
            return False
        sums = change["arms"].setdefault(arm, [0.0, 0.0, 0, 0])
        if fed is None:
            sums[0] = max(0.0, sums[0] + mean - u - DRIFT)
            sums[2] = sums[2] + 1 if sums[0] > 0 else 0
        else:  # counted as a step when it was fed; an overdue task proven after all takes back the rest
            sums[0] = max(0.0, sums[0] + fed - u)
        sums[1] = max(0.0, sums[1] + u - mean - DRIFT)
        sums[3] = sums[3] + 1 if sums[1] > 0 else 0
        return self._alarm(profile, arm, mean, u)

    def _alarm(self, profile: str, arm: str, mean: float, u: float | None) -> bool:
        """If the arm's sums passed ALARM, forget what came before the change and return
        True. `u`: the settled outcome that moved them (not counted yet), or None if a task
        running late did."""
        change = self.state.change[profile]
        sums = change["arms"][arm]
        if max(sums[0], sums[1]) <= ALARM:
            return False
        fell = sums[0] > ALARM
        profile_running = [
            task_id
            for task_id, posted in self.state.pending.items()
            if self._profile_of(task_id, posted) == profile
        ]
        late = [  # the arm's running tasks the detector was given: steps not in `seen`
            self.state.running[t]["fed"]
            for t in profile_running
            if self.state.pending[t]["arm"] == arm and "fed" in self.state.running.get(t, {})
        ]
        seen = self.state.seen[profile][arm]
        steps = sums[2] if fell else sums[3]  # since the change point, this one too
        since = max(0, min(len(seen), steps - len(late) - (u is not None)))  # settled ones in `seen`
        recent = [*seen[len(seen) - since :], *([u] if u is not None else []), *late]
        after = sum(recent) / len(recent) if recent else mean
        variants = self.state.variants[profile]
        for other, utilities in self.state.seen[profile].items():
            keys = variants.setdefault(other, [])
            keys[:0] = [""] * (len(utilities) - len(keys))
            keep = since if other == arm else PRIOR_TASKS  # the alarmed arm: what came since
            if keep:
                del utilities[:-keep], keys[:-keep]
            else:
                utilities.clear()
                keys.clear()
        for task_id in profile_running:  # the detector starts afresh: they count when they settle
            self.state.running.get(task_id, {}).pop("fed", None)
        change["arms"] = {}
        change["alarms"] = change.get("alarms", 0) + 1
        change["recheck"] = [o for o, us in self.state.seen[profile].items() if us and o != arm]
        change["last"] = {
            "arm": arm,
            "fell": fell,
            "at": change["observed"],
            "before": round(mean, 4),
            "after": round(after, 4),
        }
        return True

    def change_note(self, prefs: Preferences) -> str:
        """What the reason says of a change detected within the profile's last CHANGE_NOTED
        tasks ("" if none)."""
        change = self.state.change.get(prefs.profile) or {}
        last = change.get("last")
        if not last:
            return ""
        ago = change["observed"] - last["at"]
        if ago >= CHANGE_NOTED:
            return ""
        return (
            f"change noticed {ago} task{'s' if ago != 1 else ''} ago: {last['arm']}'s utility "
            f"{'fell' if last['fell'] else 'rose'} from {last['before']:.2f} to {last['after']:.2f}, "
            "so outcomes from before it are forgotten"
        )

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
        return min(MOST_LEVEL, base + self._unserved(arm, requester))

    def _unserved(self, arm: Arm, requester: str | None) -> int:
        """The requester's tasks through `arm` that delivered nothing, of its last RETUNE_MEMORY."""
        history = self.state.mine.get((requester or "").lower(), {}).get(arm.name, [])
        return sum(1 for _, delivered in history[-RETUNE_MEMORY:] if not delivered)

    def tune(
        self, arm: Arm, prefs: Preferences, market: MarketView, level: int, redundancy: int | None = None
    ) -> tuple[dict | None, str, str]:
        """`terms.tune` at this router's pace."""
        return terms_by_rule.tune(arm, prefs, market, level, self.pace, redundancy)

    def choose(
        self,
        prefs: Preferences,
        market: MarketView,
        requester: str | None = None,
        index: MarketIndex | None = None,
    ) -> Choice:
        """The arm and terms for one task of a requester with these preferences (see the
        module's docstring), or Infeasible naming the hard limit no mechanism can meet.
        `index`: the market's on-chain price and latency index, the prior for the reward of
        terms with no outcomes yet (see "The market's index" in the module's docstring)."""
        candidates, barred_text = self._feasible(prefs, market, requester)
        estimates = self.estimates(prefs)
        moved = self._shortfall(candidates, estimates, requester, prefs)
        if moved and len(candidates) > 1:
            candidates = [a for a in candidates if a.name != moved[0]]
            who = (requester or "").lower()  # judged: the next move needs RECENT new tasks
            self.state.moved.setdefault(who, {})[moved[0]] = len(self.state.mine[who][moved[0]])
        else:
            moved = None  # the only arm left: not moved off it
        change = self.state.change.get(prefs.profile) or {}
        judged, late = self._with_late(prefs, estimates)
        arm, reason = self._pick(
            candidates, judged, self._pending(prefs), self._elapsed(prefs), change.get("recheck", [])
        )
        reason = "; ".join(filter(None, (moved and moved[1], self.change_note(prefs), reason + late)))
        if barred_text:
            reason += f" (not possible within the limits: {barred_text})"
        terms, level, base, why = self._terms(arm, prefs, market, requester, index)
        offered = terms["max_reward"] / market.min_reward if market.min_reward else level
        if level > base:
            unserved = self._unserved(arm, requester)
            why += (
                f"; retuned: {unserved} of your tasks through {arm.name} went unproven, so it offers "
                f"{offered:g}x the least reward instead of {base:g}x"
                + (" (as far as your price limit allows)" if offered < level else "")
            )
        reprice = ""
        if policy_for(prefs, terms, 0) is not None:
            reprice = (
                f"your price limit leaves room above {offered:g}x the least reward: re-post higher if untaken"
            )
            why += "; re-pricing advised: " + reprice
        reason = "; ".join(filter(None, (reason, why.removeprefix("; "))))
        return Choice(
            arm, terms, reason, estimates, offered, variant(offered, int(terms["redundancy"])), reprice
        )

    def _feasible(
        self, prefs: Preferences, market: MarketView, requester: str | None
    ) -> tuple[list[Arm], str]:
        """The arms whose terms can meet the hard limits, and what bars the others ("" if
        none); Infeasible naming the limit that bars most if no arm can."""
        candidates: list[Arm] = []
        barred: dict[str, list[str]] = {}
        for arm in self.arms:
            terms, limit, why = self.tune(arm, prefs, market, self.level(arm, prefs, requester))
            if terms is None:
                barred.setdefault(limit, []).append(why)
            else:
                candidates.append(arm)
        if not candidates:
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
        return candidates, "; ".join(sum(barred.values(), []))

    def _terms(
        self,
        arm: Arm,
        prefs: Preferences,
        market: MarketView,
        requester: str | None,
        index: MarketIndex | None = None,
    ) -> tuple[dict, int, int, str]:
        """The second level of the bandit: the terms for `arm`, the level they ask, the level
        chosen before the requester's retuning and why: among the rule's terms (raised to
        the market's index price while the arm has no outcomes), the best seen and its
        neighbours (`_term_options`); then the retuning on top."""
        stats, arm_mean = self._by_variant(prefs.profile, arm.name)
        options, rule_key, prior = self._term_options(arm, prefs, market, stats, index)
        means = {k: sum(u) / len(u) for k, u in stats.items()}
        running = self._pending(prefs, arm.name)
        # each option's mean shrunk towards the arm's (a prior of PRIOR_TASKS), and its bound;
        # its tasks still running count as tried at that mean, so they do not pile up on terms
        # whose outcome is not in yet
        total = sum(len(u) for u in stats.values()) + PRIOR_TASKS + sum(running.values())

        def bound(key: str) -> float:
            mean, n = self._shrunk(stats.get(key, []), arm_mean)
            return mean + TERMS_EXPLORATION * math.sqrt(math.log(total + 1) / (n + running.get(key, 0)))

        chosen = max(options, key=bound) if stats else rule_key
        tried = len(stats.get(chosen, []))
        if not stats or chosen == rule_key:  # the rule's terms: the reason is the mechanism's alone
            why = prior
        elif not tried:
            why = f"trying {describe_variant(chosen)} (untried, next to the best known)"
        else:
            rule_seen = stats.get(rule_key, [])
            rule = f"{means[rule_key]:.2f} over {len(rule_seen)}" if rule_seen else "untried"
            why = (
                f"{describe_variant(chosen)}: {means[chosen]:.2f} over {tried} "
                f"(the rule's {describe_variant(rule_key)}: {rule})"
            )
        terms, level = options[chosen]
        bump = self._unserved(arm, requester)
        if bump:
            higher = min(MOST_LEVEL, level + bump)
            retuned, _, _ = self.tune(arm, prefs, market, higher, int(terms["redundancy"]))
            if retuned is not None:
                return retuned, higher, level, why and "terms " + why
        return terms, level, level, why and "terms " + why

    def _term_options(
        self,
        arm: Arm,
        prefs: Preferences,
        market: MarketView,
        stats: Mapping[str, Sequence[float]],
        index: MarketIndex | None = None,
    ) -> tuple[dict[str, tuple[dict, int]], str, str]:
        """The terms to choose among, by variant key (each with the level asked), the
        rule's key and what the index made of it ("" if nothing): the rule's terms, and a
        local search around the best seen (at least two tasks; else the rule's): itself and
        one reward step or one proof either way, each within the limits and at most
        `REDUNDANT` proofs (or the requester's minimum). While the arm has no outcome for
        the profile, the rule's reward is at least the market's index price (`index_level`)."""
        least = market.min_reward or 1

        def key_of(t: dict) -> str:
            return variant(t["max_reward"] / least, int(t["redundancy"]))

        rule_level = self.level(arm, prefs, None)
        prior = ""
        going = index_level(index, market)
        if not stats and index is not None and going is not None and going > rule_level:
            prior = (
                f", not the rule's {rule_level}x: the market's index says provers were paid {index.price} wei"
            )
            rule_level = going
        rule_terms, _, _ = self.tune(arm, prefs, market, rule_level)
        assert rule_terms is not None  # the arm was tuned with a level at least the rule's
        rule_key = key_of(rule_terms)
        if prior:
            prior = f"{describe_variant(rule_key)}{prior} a slot lately (no outcome of these terms yet)"
        means = {k: sum(u) / len(u) for k, u in stats.items() if len(u) >= 2}
        best_key = max(means, key=lambda k: means[k], default=rule_key)
        options: dict[str, tuple[dict, int]] = {rule_key: (rule_terms, rule_level)}
        most = min(MAX_REDUNDANCY, max(REDUNDANT, prefs.min_redundancy))
        level_text, redundancy_text = best_key.split("x")
        level, redundancy = max(1, round(float(level_text))), int(redundancy_text)
        for dl, dr in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
            if not 1 <= level + dl <= MOST_LEVEL or not 1 <= redundancy + dr <= most:
                continue
            t, _, _ = self.tune(arm, prefs, market, level + dl, redundancy + dr)
            if t is not None and t["redundancy"] == redundancy + dr:
                options.setdefault(key_of(t), (t, level + dl))
        return options, rule_key, prior

    def _elapsed(self, prefs: Preferences) -> int:
        """The profile's tasks observed since its last change (all, if none): the N of the
        bound, which keeps growing when the window caps each mechanism's count, so an arm
        with a poor start is still tried again, ever more rarely."""
        change = self.state.change.get(prefs.profile) or {}
        last = change.get("last") or {}
        return change.get("observed", 0) - last.get("at", 0)

    def _pick(
        self,
        candidates: list[Arm],
        estimates: dict[str, tuple[float, int]],
        waiting: dict[str, int],
        elapsed: int = 0,
        recheck: Sequence[str] = (),
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
        stale = [a for a in known if a.name in recheck and a.name not in waiting]
        if stale:
            arm = stale[0]
            return arm, f"re-checking {arm.name}: no outcome through it since the change"
        total = max(elapsed, sum(n for _, n in estimates.values())) + sum(waiting.values())

        def bound(a: Arm) -> float:  # tasks still running count as tried, at the mean so far
            mean, n = estimates[a.name]
            return mean + self.exploration * math.sqrt(math.log(total) / (n + waiting.get(a.name, 0)))

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

    def _with_late(
        self, prefs: Preferences, estimates: Mapping[str, tuple[float, int]]
    ) -> tuple[dict[str, tuple[float, int]], str]:
        """The estimates the choice is made on: each arm's mean with its tasks still running
        that can no longer score it counted at the most they can (`learn`), its count of
        settled tasks unchanged; and what the reason says of them ("" if none)."""
        judged = dict(estimates)
        late: dict[str, int] = {}
        bounds: dict[str, list[float]] = {}
        for task_id, running in self.state.running.items():
            posted = self.state.pending.get(task_id)
            if posted is None or self._profile_of(task_id, posted) != prefs.profile:
                continue
            bounds.setdefault(posted["arm"], []).append(running["bound"])
        for name, found in bounds.items():
            if name not in estimates:
                continue
            mean, n = estimates[name]
            lower = [b for b in found if b < mean]
            if lower:
                judged[name] = ((mean * n + sum(lower)) / (n + len(lower)), n)
                late[name] = len(lower)
        if not late:
            return judged, ""
        counted = ", ".join(
            f"{name}'s {n} task{'s' if n > 1 else ''} running late" for name, n in sorted(late.items())
        )
        return judged, f"; counting {counted} at the most they can still score"

    def _profile_of(self, task_id: str, posted: dict) -> str:
        """The profile of a pending task's poster (kept while the router runs: it is asked often)."""
        profile = self._profiles.get(task_id)
        if profile is None:
            profile = self._profiles[task_id] = Preferences(**posted["preferences"]).profile
        return profile

    def _pending(self, prefs: Preferences, arm: str | None = None) -> dict[str, int]:
        """Tasks posted for this profile whose outcome is not in yet, per arm (or, given `arm`,
        per terms through it): an arm with one running is being tried, and is not tried
        again before it settles."""
        counts: dict[str, int] = {}
        for task_id, posted in self.state.pending.items():
            if self._profile_of(task_id, posted) != prefs.profile:
                continue
            if arm is None:
                key = posted["arm"]
            elif posted["arm"] == arm:
                key = self.state.posted_terms.get(task_id, "")
            else:
                continue
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _shortfall(
        self,
        candidates: Sequence[Arm],
        estimates: Mapping[str, tuple[float, int]],
        requester: str | None,
        prefs: Preferences,
    ) -> tuple[str, str] | None:
        """The arm a requester's recent tasks fell short on, and why, or None. They are judged
        against the arm's mean for the profile; if one of those very tasks raised the change
        detector's alarm on a fall of the arm, against its mean before the fall: the
        detector cannot tell one requester's bad run from a change of the world, and
        forgetting the past must not excuse the run it was raised on."""
        who = (requester or "").lower()
        history = self.state.mine.get(who, {})
        last = (self.state.change.get(prefs.profile) or {}).get("last") or {}
        for arm in candidates:
            since = self.state.moved.get(who, {}).get(arm.name, 0)  # tasks already judged by a move
            recent = history.get(arm.name, [])[since:][-RECENT:]
            if len(recent) < RECENT or arm.name not in estimates:
                continue
            got, expected = sum(u for u, _ in recent) / RECENT, estimates[arm.name][0]
            raised = last.get("by") == who and last.get("task", 0) > len(history[arm.name]) - RECENT
            before = ""
            if raised and last["arm"] == arm.name and last["fell"] and last["before"] > expected:
                expected, before = last["before"], " before the change it raised"
            if got < expected - SHORTFALL:
                return arm.name, (
                    f"moved off {arm.name}: your last {RECENT} tasks through it scored {got:.2f} on average, "
                    f"against {expected:.2f} for these preferences{before}"
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
