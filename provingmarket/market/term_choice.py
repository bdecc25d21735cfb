"""The terms chosen for a requester who does not set them all: by the router (`post
--auto`, `route`), after it learns from the chain how its earlier tasks were served, or by
a persona's plan over the market's minimums; and the routed task recorded for the router
once posted. Its state is kept per chain beside the deployment record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from provingmarket.chain import index as market_index
from provingmarket.chain.client import ClientError, Market, RegistryClient
from provingmarket.chain.client import format_ether as eth
from provingmarket.formats import BINDING_NONE, BUILT_IN_MECHANISMS, DUTCH, OPEN_RACE
from provingmarket.market import personas as persona_book
from provingmarket.market import qos, routing
from provingmarket.market.files import per_chain_file
from provingmarket.market.post_options import Draft, PostOptions, whole
from provingmarket.market.preferences import Preferences
from provingmarket.market.router import Choice, Infeasible, Router

LIMIT_OPTIONS = {"max_time": "--max-time", "max_price": "--max-price", "min_redundancy": "--min-redundancy"}


def state_path(registry: RegistryClient, given: str | None, folder: Path, create: bool = True) -> Path:
    """Where the router keeps what it learnt: --router-state, else in FOLDER (next to the
    deployment record), one file per chain."""
    return per_chain_file(registry, given, folder, "router", "--router-state", create)


def _settled_events(events: list, pending: set[str]) -> list:
    """The events the router needs to measure its pending tasks: all but the assignments
    and proofs of other tasks (each of those costs a block header to time)."""
    return [
        e
        for e in events
        if e.name not in ("TaskAssigned", "TaskProven") or "0x" + bytes(e.args["task_id"]).hex() in pending
    ]


@dataclass
class Routed:
    """The router's choice for one task, with what it chose from and learnt."""

    router: Router
    choice: Choice
    prefs: Preferences
    source: str  # where the preferences' weights came from
    learnt: int  # settled tasks newly learnt from the chain
    state: Path

    def data(self) -> dict:
        choice = self.choice
        return {
            "arm": choice.arm.name,
            "mechanism_id": choice.arm.mechanism_id,
            "choice": choice.describe(),
            "reason": choice.reason,
            "level": choice.level,
            "terms": choice.terms,
            "estimates": {name: {"utility": u, "tasks": n} for name, (u, n) in choice.estimates.items()},
            "preferences": {**asdict(self.prefs), "from": self.source},
            "learnt": self.learnt,
            "state": str(self.state),
        }


def route(
    registry: RegistryClient,
    market: Market,
    prefs: Preferences,
    source: str,
    requester: str | None,
    state: Path,
    *,
    capabilities: int,
    fee: int,
) -> Routed:
    """The router with what it learnt from the chain and its choice for one task in MARKET;
    a ClientError if no prover could take it or no mechanism meets the limits."""
    events = registry.events()
    try:
        view = routing.market_view(events, market.market_id, capabilities)
    except ValueError as error:
        raise ClientError(str(error)) from None
    if not view.provers:
        covering = f" covering capabilities {capabilities:#x}" if capabilities else ""
        raise ClientError(
            f"market {market.market_id} has no prover{covering} with at least its least collateral "
            f"({eth(market.min_collateral)}) staked and capacity free to take a task: nothing posted"
        )
    clock = qos.block_clock(registry.web3)
    block_seconds = routing.chain_block_seconds(clock, registry.web3.eth.block_number)
    candidates = [
        a if a.mechanism_id in BUILT_IN_MECHANISMS else replace(a, fee=fee)
        for a in routing.arms(events, block_seconds=block_seconds)  # an election's delay, in seconds
    ]
    if market.binding == BINDING_NONE:  # a proof could be copied: the registry takes no race
        candidates = [a for a in candidates if a.mechanism_id != OPEN_RACE]
    router = Router(routing.routable(candidates, view))
    try:
        router.load(state)
    except ValueError as error:
        raise ClientError(str(error)) from None
    pending = set(router.state.pending)
    learnt = 0
    if pending:
        learnt = router.learn(qos.measure(_settled_events(events, pending), clock))
    index = market_index.read(registry, market.market_id)
    try:
        choice = router.choose(prefs, view, requester, index=index)
    except Infeasible as error:
        raise ClientError(f"{LIMIT_OPTIONS.get(error.limit, error.limit)}: {error}") from None
    return Routed(router, choice, prefs, source, learnt, state)


def remember(routed: Routed, task_id: str, requester: str) -> str | None:
    """Record the routed task for the router to learn from once settled; a warning if its
    state cannot be written."""
    routed.router.record(task_id, routed.choice, routed.prefs, requester)
    try:
        routed.router.save(routed.state)
    except OSError as error:  # posted already: say so, and what is lost
        return (
            f"warning: task {task_id} is posted, but the router could not write {routed.state} "
            f"({error.strerror or error}): it will not learn from this task"
        )
    return None


def take_choice(d: Draft, chosen: dict) -> None:
    """The terms the router chose."""
    d.mechanism_id, d.redundancy = chosen["mechanism_id"], chosen["redundancy"]
    d.assign_window, d.proving_window = chosen["assign_window"], chosen["proving_window"]
    d.reward, d.fee = chosen["max_reward"], chosen["frontend_fee"]
    d.collateral = chosen["collateral"]
    d.decay, d.decay_floor = bool(chosen["decay"]), chosen["decay_floor"]
    d.start_price, d.ramp = chosen["start_price"], chosen["ramp"]


def fill_from_plan(d: Draft, o: PostOptions, market: Market) -> None:
    """The amounts the persona's plan sets in multiples of the market's minimums, where
    no option set them."""
    if d.mechanism_id is None:
        raise ClientError(f"persona {d.persona.name}'s plan needs the task's mechanism: give --mechanism ID")
    explicit = {
        "redundancy": d.redundancy,
        "assign_window": d.assign_window,
        "proving_window": d.proving_window,
        "decay": d.decay,
        "max_reward": d.reward,
        "collateral": d.collateral,
        "decay_floor": None if o.decay_floor is None else d.decay_floor,
        "start_price": d.start_price,
        "ramp": None if o.ramp is None else whole(o.ramp, "--ramp"),
    }
    filled = persona_book.plan_terms(
        d.plan,
        d.mechanism_id,
        market.min_reward,
        market.min_collateral,
        **{k: v for k, v in explicit.items() if v is not None},
    )
    d.reward, d.collateral = filled["max_reward"], filled["collateral"]
    d.decay_floor = filled["decay_floor"]
    if d.mechanism_id == DUTCH:
        d.start_price = filled["start_price"]
