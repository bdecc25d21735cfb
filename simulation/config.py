"""The simulation's configuration: prover fleets, requester personas, the workload, the
policies and the pace, with three presets (`small` for `make test`, `full` for `make sim`:
five held-out seeds and two more in another world, `switch` for a world that changes under
the router) or a JSON file of the same shape. A configuration with
`switch_seeds` runs those seeds last in another world (`switch_fleets`, `switch_requesters`,
`switch_tasks`), the router going on with what it learnt before: a world switch. Everything
is checked before anything starts: an impossible value is a `SimConfigError` naming the
field and what it must be.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from provingmarket.market.personas import PERSONAS


def default_jobs() -> int:
    """Runs at once by default: two per core (a run mostly waits for its windows), at most 4."""
    return max(1, min(4, 2 * (os.cpu_count() or 1)))


MECHANISMS = ("orderbook", "auction", "election", "open race", "dutch")  # the five first compared
DOUBLE_AUCTION = "double auction"  # the double auction frontend (frontends/double_auction)
# Fallback chains, each link a mechanism above ("race": the open race); a chain policy posts
# every task with the assignment window split evenly among its links (`chain_text`).
CHAINS = ("auction,orderbook,race", "orderbook,race")
POLICIES = (*MECHANISMS, DOUBLE_AUCTION, *CHAINS)  # every policy alone …
ROUTER = "router"  # … then the router over the same workload
LINKS = {"auction": "auction", "orderbook": "orderbook", "election": "election", "race": "open race"}


def chain_links(policy: str) -> tuple[str, ...]:
    """A chain policy's links, as the mechanisms' names ("open race" for race); () for a
    single mechanism."""
    if "," not in policy:
        return ()
    return tuple(LINKS[name.strip()] for name in policy.split(","))


def chain_windows(links: int, assign_window: int) -> tuple[int, ...]:
    """The assignment window split evenly among `links` links (the last takes what is left)."""
    each = assign_window // links
    return (*(each,) * (links - 1), assign_window - each * (links - 1))


def chain_text(policy: str, assign_window: int) -> str:
    """A chain policy as `requester post --chain` takes it, the window split evenly:
    `chain_text("auction,orderbook,race", 21)` is "auction:7,orderbook:7,race:7"."""
    names = [name.strip() for name in policy.split(",")]
    windows = chain_windows(len(names), assign_window)
    return ",".join(f"{name}:{window}" for name, window in zip(names, windows, strict=True))


class SimConfigError(ValueError):
    """A configuration that cannot run; the message names the field."""


@dataclass(frozen=True)
class Fleet:
    """Provers with the same hardware: each runs a real prover agent made to behave like
    it (the agent's --simulate: extra seconds per proof, a share of work on which it fails
    silently, latency before each transaction)."""

    name: str
    provers: int
    prove_seconds: float  # extra seconds each proof takes
    failure_rate: float  # share of work it never delivers (and is slashed for)
    latency: float  # seconds before each transaction reaches the chain
    ask_x: float  # its ask in the orderbook, in multiples of the market's least reward
    capacity: int  # proofs at once
    cost_per_second: str  # ETH a second of proving costs it (its cost model prices bids, locks, races)


@dataclass(frozen=True)
class Requester:
    """A persona (provingmarket/market/personas.py: its weights) as a requester in the workload,
    its share of the tasks and its hard limits (sim seconds; price in multiples of the
    market's least reward)."""

    persona: str
    share: float
    max_time: int | None = None
    max_price_x: float | None = None
    min_redundancy: int = 1


@dataclass(frozen=True)
class SimConfig:
    name: str
    tasks: int  # per policy and seed: the workload every policy serves
    train_seeds: tuple[int, ...]  # the router's estimates and c were set on these …
    held_out_seeds: tuple[int, ...]  # … and it is judged on these as well, reported apart
    arrival_every: float  # mean seconds between two tasks (exponential gaps)
    fleets: tuple[Fleet, ...]
    requesters: tuple[Requester, ...]
    race_window: int = 20  # the pace the router and every policy post with (seconds)
    assign_window: int = 20
    proving_window: int = 20
    auction_window: int = 4  # the auction frontend's sealed-bidding window
    policies: tuple[str, ...] = POLICIES
    settle_timeout: int = 240  # seconds a policy's tasks may take to settle before the run fails
    switch_seeds: tuple[int, ...] = ()  # run last, in the world below, the router keeping its state
    switch_fleets: tuple[Fleet, ...] = ()  # the fleets after the switch (none: the same)
    switch_requesters: tuple[Requester, ...] = ()  # the demand after the switch (none: the same)
    switch_tasks: int = 0  # tasks per policy and seed after the switch (0: `tasks`)

    def switched(self) -> SimConfig:
        """The world after the switch: its fleets, demand and tasks in place of these."""
        return replace(
            self,
            fleets=self.switch_fleets or self.fleets,
            requesters=self.switch_requesters or self.requesters,
            tasks=self.switch_tasks or self.tasks,
            switch_seeds=(),
        )

    def check(self) -> SimConfig:
        """Raise SimConfigError naming the first setting out of bounds; else self."""
        v = _Checker(self.name)
        v.whole("tasks", self.tasks, len(self.requesters))
        if not self.train_seeds:
            raise v.bad("train_seeds", "at least one seed", self.train_seeds)
        for s in (*self.train_seeds, *self.held_out_seeds, *self.switch_seeds):
            v.whole("a seed", s, 0)
        if set(self.train_seeds) & set(self.held_out_seeds):
            raise v.bad("held_out_seeds", "seeds not also used for training", self.held_out_seeds)
        v.number("arrival_every", self.arrival_every, 0, above=True)
        for name in ("race_window", "assign_window", "proving_window", "auction_window", "settle_timeout"):
            v.whole(name, getattr(self, name), 1)
        if self.auction_window >= self.assign_window:
            raise v.bad(
                "auction_window",
                f"shorter than the assignment window ({self.assign_window} s)",
                self.auction_window,
            )
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise v.bad("policies", f"a non-empty list of {', '.join(POLICIES)}", list(self.policies))
        self._check_fleets(v, self.fleets)
        self._check_requesters(v, self.requesters)
        self._check_switch(v)
        return self

    def _check_switch(self, v: _Checker) -> None:
        if set(self.switch_seeds) & {*self.train_seeds, *self.held_out_seeds}:
            raise v.bad("switch_seeds", "seeds not also used before the switch", self.switch_seeds)
        if self.switch_tasks:
            v.whole("switch_tasks", self.switch_tasks, len(self.switch_requesters or self.requesters))
        if self.switch_fleets:
            self._check_fleets(_Checker(f"{self.name} (after the switch)"), self.switch_fleets)
        if self.switch_requesters:
            self._check_requesters(_Checker(f"{self.name} (after the switch)"), self.switch_requesters)

    def _check_fleets(self, v: _Checker, fleets: tuple[Fleet, ...]) -> None:
        if not fleets:
            raise v.bad("fleets", "at least one fleet", [])
        for f in fleets:
            v.whole(f"fleet {f.name}: provers", f.provers, 1)
            v.whole(f"fleet {f.name}: capacity", f.capacity, 1)
            v.number(f"fleet {f.name}: prove_seconds", f.prove_seconds, 0)
            v.number(f"fleet {f.name}: failure_rate", f.failure_rate, 0, 1)
            v.number(f"fleet {f.name}: latency", f.latency, 0)
            v.number(f"fleet {f.name}: ask_x", f.ask_x, 0)
            try:
                if float(f.cost_per_second) < 0:
                    raise ValueError
            except ValueError:
                raise v.bad(
                    f"fleet {f.name}: cost_per_second", "an amount of ETH of 0 or more", f.cost_per_second
                ) from None
            if f.prove_seconds + 1 >= self.proving_window:
                raise v.bad(
                    f"fleet {f.name}: prove_seconds",
                    f"well under the proving window ({self.proving_window} s)",
                    f.prove_seconds,
                )
        if sum(f.provers for f in fleets) > 40:
            raise v.bad("fleets", "at most 40 provers in all", sum(f.provers for f in fleets))

    def _check_requesters(self, v: _Checker, requesters: tuple[Requester, ...]) -> None:
        if not requesters:
            raise v.bad("requesters", "at least one persona", [])
        for r in requesters:
            if r.persona not in PERSONAS:
                raise v.bad("requesters: persona", f"one of {', '.join(PERSONAS)}", r.persona)
            v.number(f"requester {r.persona}: share", r.share, 0, above=True)
            if r.max_time is not None:
                v.whole(f"requester {r.persona}: max_time", r.max_time, 1)
            if r.max_price_x is not None:
                v.number(f"requester {r.persona}: max_price_x", r.max_price_x, 0, above=True)
            v.whole(f"requester {r.persona}: min_redundancy", r.min_redundancy, 1)
        if len({r.persona for r in requesters}) != len(requesters):
            raise v.bad("requesters", "each persona once", [r.persona for r in requesters])


class _Checker:
    """Checks of one configuration's settings, each raising SimConfigError naming it."""

    def __init__(self, config: str):
        self.config = config

    def bad(self, name: str, must: str, value: Any) -> SimConfigError:
        return SimConfigError(f"{self.config}: {name} must be {must}, not {value!r}")

    def whole(self, name: str, value: Any, least: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.bad(name, f"a whole number of at least {least}", value)

    def number(
        self, name: str, value: Any, least: float, most: float = math.inf, above: bool = False
    ) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < least or value > most or (above and value == least):
            span = (
                f"above {least}" if above else f"from {least}" + (f" to {most}" if most < math.inf else " up")
            )
            raise self.bad(name, f"a number {span}", value)


FLEETS = (  # name, provers, prove_seconds, failure_rate, latency, ask_x, capacity, cost_per_second
    Fleet("fast", 1, 0.5, 0.02, 0.1, 3, 2, "0.004"),
    Fleet("standard", 1, 3, 0.05, 0.5, 1.5, 2, "0.001"),
    Fleet("cheap", 1, 8, 0.15, 1.0, 1, 3, "0"),
)
REQUESTERS = (
    Requester("arbitrage", share=1, max_time=30),
    Requester("rollup", share=1, min_redundancy=2),
    Requester("batch", share=1, max_price_x=3),
)

# The world after the switch: the fast and standard provers fail far more often, the asks
# move (standard cheaper, cheap dearer), and rollups post half the tasks.
SWITCH_FLEETS = (
    Fleet("fast", 1, 0.5, 0.5, 0.1, 3, 2, "0.004"),
    Fleet("standard", 2, 3, 0.3, 0.5, 1, 2, "0.001"),
    Fleet("cheap", 1, 6, 0.05, 1.0, 2, 3, "0"),
)
SWITCH_REQUESTERS = (
    Requester("arbitrage", share=1, max_time=30),
    Requester("rollup", share=2, min_redundancy=2),
    Requester("batch", share=1, max_price_x=3),
)

PRESETS: dict[str, SimConfig] = {
    "small": SimConfig(
        name="small",
        tasks=3,
        train_seeds=(1,),
        held_out_seeds=(),
        arrival_every=1.5,
        fleets=FLEETS,
        requesters=REQUESTERS,
        race_window=15,
        assign_window=15,
        proving_window=15,
    ),
    "full": SimConfig(  # five held-out seeds, then two in another world (the switch's)
        name="full",
        tasks=30,
        train_seeds=(1,),
        held_out_seeds=(2, 3, 4, 5, 6),
        arrival_every=2.0,
        fleets=tuple(replace(f, provers=2) for f in FLEETS),
        requesters=REQUESTERS,
        switch_seeds=(7, 8),
        switch_fleets=SWITCH_FLEETS,
        switch_requesters=SWITCH_REQUESTERS,
    ),
    "switch": SimConfig(
        name="switch",
        tasks=21,
        train_seeds=(1,),
        held_out_seeds=(),
        arrival_every=1.0,
        fleets=FLEETS,
        requesters=REQUESTERS,
        switch_seeds=(2,),
        switch_fleets=SWITCH_FLEETS,
        switch_requesters=SWITCH_REQUESTERS,
        switch_tasks=120,
    ),
}


def load(source: str) -> SimConfig:
    """A preset by name, or a JSON file with SimConfig's fields (fleets and requesters as
    lists of objects with Fleet's and Requester's fields); checked."""
    if source in PRESETS:
        return PRESETS[source].check()
    path = Path(source)
    if not path.exists():
        raise SimConfigError(f"{source}: no such file, and not a preset ({', '.join(PRESETS)})")
    try:
        raw = json.loads(path.read_text())
    except ValueError as error:
        raise SimConfigError(f"{source}: not JSON ({error})") from None
    if not isinstance(raw, dict):
        raise SimConfigError(f"{source}: the configuration must be a JSON object")
    return from_dict(raw, default_name=path.stem).check()


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise SimConfigError(f"{where} must be an object with {', '.join(f.name for f in fields(cls))}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SimConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**raw)
    except TypeError as error:
        raise SimConfigError(f"{where}: {error}") from None


def from_dict(raw: dict, default_name: str = "custom") -> SimConfig:
    raw = dict(raw)
    raw.setdefault("name", default_name)
    fleets = raw.pop("fleets", None)
    requesters = raw.pop("requesters", None)
    if not isinstance(fleets, list) or not isinstance(requesters, list):
        raise SimConfigError(f"{raw['name']}: fleets and requesters must be lists of objects")
    raw.setdefault("held_out_seeds", [])
    for key in ("train_seeds", "held_out_seeds", "switch_seeds", "policies"):
        if key in raw:
            if not isinstance(raw[key], list):
                raise SimConfigError(f"{raw['name']}: {key} must be a list")
            raw[key] = tuple(raw[key])
    raw["fleets"] = tuple(_build(Fleet, f, f"fleet {i + 1}") for i, f in enumerate(fleets))
    raw["requesters"] = tuple(_build(Requester, r, f"requester {i + 1}") for i, r in enumerate(requesters))
    for key, cls in (("switch_fleets", Fleet), ("switch_requesters", Requester)):
        if key in raw:
            if not isinstance(raw[key], list):
                raise SimConfigError(f"{raw['name']}: {key} must be a list of objects")
            raw[key] = tuple(_build(cls, x, f"{key} {i + 1}") for i, x in enumerate(raw[key]))
    return _build(SimConfig, raw, raw["name"])


__all__ = [
    "POLICIES",
    "PRESETS",
    "ROUTER",
    "Fleet",
    "Requester",
    "SimConfig",
    "SimConfigError",
    "load",
]
