"""Requester personas: the seed's three requesters as ready-made task terms.

A persona is a requester's weights over speed, cost, safety (redundancy, collateral) and
censorship resistance (how many distinct provers could take the task), each 1 to 10, and
the mechanism and terms the seed argues serve those weights. The router
(provingmarket/market/router.py; `requester post --auto --persona NAME`) learns the mapping from
what the chain delivered instead; `post --persona NAME` alone posts the fixed mapping
below, with the seed's argument for each choice in its `why`:

- **arbitrage** (speed 10, cost 3, safety 1, censorship resistance 1): a proof within
  seconds or never. The open race: every staked prover in the market may prove the
  moment the task appears, with no auction to close and no election to wait for; a
  30 s race; a reward decaying from 5x the market's least reward to 1x, so the fastest
  prover earns most; one proof is enough (redundancy 1) and the least collateral keeps
  every staked prover in the race.
- **rollup** (speed 3, cost 2, safety 10, censorship resistance 1): a daily settlement
  that must happen. Election then race: a registered election mechanism draws 3
  provers at random among the eligible ones, each locking 5x the market's least
  collateral, so one prover failing cannot stop the settlement and a missed deadline
  costs its prover more than the task pays; a 2 h proving window inside a 4 h
  assignment window lets a missed deadline be slashed and the slot drawn again well
  within the day; the reward decays from 2x to 1x the least reward, so the elected
  still race.
- **batch** (speed 2, cost 10, safety 3, censorship resistance 1): the lowest price,
  whenever. A registered sealed-bid auction (second price: bidding one's true cost is a
  prover's best strategy, and the winner is paid the best losing bid), or, when no
  auction mechanism is given, the built-in reverse Dutch auction, whose price rises from
  0 to the maximum over the assignment window, so the prover with the lowest ask locks
  the task first. The maximum is the market's least reward, no decay (speed is not worth
  paying for), and 6 h windows admit slow, cheap hardware.

No persona weighs censorship resistance above 1, so none narrows who may take its
tasks (no capabilities); a requester that needs hardware still says so.

Amounts are multiples of the market's least reward and collateral, so a persona fits
any market. A registered mechanism's id is per deployment: the caller names it, by role
(`ELECTION`, `AUCTION`). Every term can still be overridden.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provingmarket.errors import ProvingMarketError
from provingmarket.formats import DUTCH, OPEN_RACE

# The roles a registered mechanism plays for a persona; the built-in ones need no id.
ELECTION = "election"
AUCTION = "auction"
BUILT_IN_ROLES = {"open race": OPEN_RACE, "dutch": DUTCH}

HOUR = 3_600  # seconds

# TaskTerms fields a persona sets; the rest (inputs, fee, capabilities, salt) are the task's.
PERSONA_FIELDS = (
    "mechanism_id",
    "redundancy",
    "assign_window",
    "proving_window",
    "max_reward",
    "collateral",
    "decay",
    "decay_floor",
    "start_price",
    "ramp",
)


class PersonaError(ProvingMarketError, ValueError):
    """A persona cannot be used as asked; the message says why and what to give."""


class UnknownPersona(PersonaError):
    pass


class MissingMechanism(PersonaError):
    """The persona posts through a registered mechanism whose id was not given."""

    def __init__(self, persona: str, role: str):
        self.persona, self.role = persona, role
        super().__init__(
            f"persona {persona} posts through the {role} mechanism, whose id each deployment "
            f"registers: give the {role} mechanism's id"
        )


@dataclass(frozen=True)
class Weights:
    """What a requester cares about, each from 1 (not at all) to 10 (above all)."""

    speed: int
    cost: int
    safety: int
    censorship_resistance: int

    def __str__(self) -> str:
        return (
            f"speed {self.speed}, cost {self.cost}, safety {self.safety}, "
            f"censorship resistance {self.censorship_resistance}"
        )


@dataclass(frozen=True)
class Plan:
    """A mechanism and the terms a persona posts with through it. Amounts are multiples
    of the market's least reward (`*_x`) and least collateral."""

    mechanism: str  # a built-in one ("open race", "dutch") or a role (ELECTION, AUCTION)
    redundancy: int
    assign_window: int  # seconds; unused by the open race
    proving_window: int  # seconds; the open race's length
    reward_x: int
    collateral_x: int
    decay: bool
    floor_x: int  # of the least reward: what a decaying reward falls to
    start_price_x: int = 0  # dutch: the price at posting
    why: str = ""

    def mechanism_id(self, mechanisms: Mapping[str, int]) -> int | None:
        """The plan's mechanism id: built in, or the id given for its role (None if not)."""
        if self.mechanism in BUILT_IN_ROLES:
            return BUILT_IN_ROLES[self.mechanism]
        return mechanisms.get(self.mechanism)


@dataclass(frozen=True)
class Persona:
    name: str
    weights: Weights
    description: str
    plans: tuple[Plan, ...]  # by preference: the first whose mechanism is available is used

    def roles(self) -> tuple[str, ...]:
        """The registered mechanisms the persona can use, by role."""
        return tuple(p.mechanism for p in self.plans if p.mechanism not in BUILT_IN_ROLES)


PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona(
            name="arbitrage",
            weights=Weights(speed=10, cost=3, safety=1, censorship_resistance=1),
            description="an arbitrage bot: a proof within seconds or never",
            plans=(
                Plan(
                    mechanism="open race",
                    redundancy=1,
                    assign_window=0,
                    proving_window=30,
                    reward_x=5,
                    collateral_x=1,
                    decay=True,
                    floor_x=1,
                    why=(
                        "speed above all: every staked prover may prove the moment the task appears "
                        "(no auction or election to wait for), and a reward decaying over a 30 s race "
                        "pays the fastest most; one proof is enough"
                    ),
                ),
            ),
        ),
        Persona(
            name="rollup",
            weights=Weights(speed=3, cost=2, safety=10, censorship_resistance=1),
            description="a rollup settling daily: redundancy and a guarantee",
            plans=(
                Plan(
                    mechanism=ELECTION,
                    redundancy=3,
                    assign_window=4 * HOUR,
                    proving_window=2 * HOUR,
                    reward_x=2,
                    collateral_x=5,
                    decay=True,
                    floor_x=1,
                    why=(
                        "safety above all: 3 provers drawn at random each prove and each lock 5x the "
                        "least collateral, so one failing cannot stop the settlement; a missed 2 h "
                        "deadline is slashed and its slot drawn again within the 4 h assignment window"
                    ),
                ),
            ),
        ),
        Persona(
            name="batch",
            weights=Weights(speed=2, cost=10, safety=3, censorship_resistance=1),
            description="a cost-sensitive batch job: the lowest price, whenever",
            plans=(
                Plan(
                    mechanism=AUCTION,
                    redundancy=1,
                    assign_window=6 * HOUR,
                    proving_window=6 * HOUR,
                    reward_x=1,
                    collateral_x=1,
                    decay=False,
                    floor_x=0,
                    why=(
                        "cost above all: a sealed-bid second-price auction makes bidding one's true cost "
                        "a prover's best strategy and pays the best losing bid, at most the least reward; "
                        "6 h windows admit slow, cheap hardware"
                    ),
                ),
                Plan(
                    mechanism="dutch",
                    redundancy=1,
                    assign_window=6 * HOUR,
                    proving_window=6 * HOUR,
                    reward_x=1,
                    collateral_x=1,
                    decay=False,
                    floor_x=0,
                    start_price_x=0,
                    why=(
                        "cost above all, and no auction mechanism given: the built-in reverse Dutch price "
                        "rises from 0 to the least reward over the 6 h assignment window, so the prover "
                        "with the lowest ask locks it first; 6 h windows admit slow, cheap hardware"
                    ),
                ),
            ),
        ),
    )
}


def persona(name: str) -> Persona:
    """The persona called `name`, or an error listing the known ones."""
    found = PERSONAS.get(name.strip().lower())
    if found is None:
        raise UnknownPersona(f"no persona {name!r}; the personas are {', '.join(PERSONAS)}")
    return found


def choose(
    chosen: Persona, mechanisms: Mapping[str, int] | None = None, mechanism_id: int | None = None
) -> tuple[Plan, int]:
    """The plan a persona posts with and its mechanism id.

    `mechanisms` gives registered mechanisms' ids by role. `mechanism_id`, when given,
    overrides the persona's mechanism: the plan for that built-in mechanism if the
    persona has one, else its first plan, is used for the other terms."""
    mechanisms = {k: v for k, v in (mechanisms or {}).items() if v is not None}
    if mechanism_id is not None:
        for plan in chosen.plans:
            if plan.mechanism_id({}) == mechanism_id:
                return plan, mechanism_id
        return chosen.plans[0], mechanism_id
    for plan in chosen.plans:
        found = plan.mechanism_id(mechanisms)
        if found is not None:
            return plan, found
    raise MissingMechanism(chosen.name, chosen.plans[0].mechanism)


def plan_terms(
    plan: Plan, mechanism_id: int, min_reward: int, min_collateral: int, **overrides: int | bool
) -> dict[str, int | bool]:
    """The TaskTerms fields of PERSONA_FIELDS for a plan in a market with these least
    reward and collateral, with `overrides` (same names) taking precedence. Terms the
    mechanism does not use are left at 0: an open race's assignment window, a start
    price and ramp outside a Dutch auction, a floor without decay."""
    unknown = set(overrides) - set(PERSONA_FIELDS)
    if unknown:
        raise TypeError(f"not a term a persona sets: {', '.join(sorted(unknown))}")
    terms: dict[str, int | bool] = {
        "mechanism_id": mechanism_id,
        "redundancy": plan.redundancy,
        "assign_window": 0 if mechanism_id == OPEN_RACE else plan.assign_window,
        "proving_window": plan.proving_window,
        "max_reward": plan.reward_x * min_reward,
        "collateral": plan.collateral_x * min_collateral,
        "decay": plan.decay,
    }
    terms.update({k: v for k, v in overrides.items() if k in terms})
    reward = terms["max_reward"]
    floor = plan.floor_x * min_reward if terms["decay"] else 0
    terms["decay_floor"] = overrides.get("decay_floor", min(floor, reward))
    is_dutch = mechanism_id == DUTCH
    start = plan.start_price_x * min_reward if is_dutch else 0
    terms["start_price"] = overrides.get("start_price", min(start, reward))
    terms["ramp"] = overrides.get("ramp", terms["assign_window"] if is_dutch else 0)
    return terms


def persona_terms(
    name: str | Persona,
    min_reward: int,
    min_collateral: int,
    mechanisms: Mapping[str, int] | None = None,
    **overrides: int | bool,
) -> dict[str, int | bool]:
    """The TaskTerms fields a persona posts with in a market whose least reward and
    collateral are given; `mechanisms` gives registered mechanisms' ids by role
    ({ELECTION: 4}), `overrides` any field of PERSONA_FIELDS.

    >>> persona_terms("batch", 10, 100)["mechanism_id"]  # no auction given: the Dutch one
    2
    """
    chosen = name if isinstance(name, Persona) else persona(name)
    mechanism_id = overrides.pop("mechanism_id", None)
    plan, mechanism_id = choose(chosen, mechanisms, mechanism_id)
    return plan_terms(plan, mechanism_id, min_reward, min_collateral, **overrides)


__all__ = [
    "AUCTION",
    "ELECTION",
    "PERSONAS",
    "PERSONA_FIELDS",
    "MissingMechanism",
    "Persona",
    "PersonaError",
    "Plan",
    "UnknownPersona",
    "Weights",
    "choose",
    "persona",
    "persona_terms",
    "plan_terms",
]
