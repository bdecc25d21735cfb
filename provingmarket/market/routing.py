"""Between the chain and the router (provingmarket/market/router.py): what the router needs to
know, read from the registry's events.

- `market_view`: a market's least reward and collateral and the provers that could take
  its tasks now, by replaying the registry's events;
- `arms`: the mechanisms a task can be posted through (the built-in open race and reverse
  Dutch auction, and every registered mechanism not retired), by name; an instance's
  least time from its published window or draw delay (`chain_block_seconds` turns blocks
  into seconds);
- `routable`: of those, the ones some prover in the market takes tasks from;
- `persona_preferences`: a persona's weights (provingmarket/market/personas.py) as preferences.

The events are `provingmarket.chain.client.RegistryClient.events(from_block=...)`, oldest first
(anything with `name` and `args` as provingmarket.chain.client.Event has them); give the history
from the registry's deployment, or provers who joined earlier are missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict

from provingmarket.chain.mechanisms import least_time as instance_wait
from provingmarket.market.personas import persona
from provingmarket.market.preferences import Preferences
from provingmarket.market.qos import BUILT_IN, ProverBook
from provingmarket.market.router import Arm, MarketView


def market_view(events: Iterable, market_id: int, capabilities: int = 0) -> MarketView:
    """The market's least reward and collateral (MarketCreated) and its provers now: each
    one joined (ProverJoined, ProverUpdated, not ProverLeft since) with capacity above 0,
    with stake (Staked, Unstaked, Slashed) at least the market's least collateral, and
    covering `capabilities` (a task's hardware bitmask; 0: any); for each, its declared
    proving time and the mechanisms it accepts in the market (MechanismAccepted).

    Raises ValueError if the events hold no market `market_id`."""
    created: dict[int, tuple[int, int]] = {}
    provers = ProverBook()
    for e in events:
        provers.apply(e)
        if e.name == "MarketCreated":
            created[e.args["market_id"]] = (e.args["min_reward"], e.args["min_collateral"])
    if market_id not in created:
        known = ", ".join(map(str, sorted(created))) or "none"
        raise ValueError(f"no market {market_id} in the registry's events (markets: {known})")
    min_reward, min_collateral = created[market_id]
    return MarketView(
        market_id=market_id,
        min_reward=min_reward,
        min_collateral=min_collateral,
        provers=tuple(
            (m.proving_time, frozenset(m.accepts))
            for m in provers.eligible(market_id, min_collateral, capabilities)
        ),
    )


BLOCK_SECONDS = 12.0  # Ethereum's slot: a block's seconds where the chain's own are not measured


def chain_block_seconds(block_time: Callable[[int], int], head: int, span: int = 256) -> float:
    """The chain's mean seconds per block over its last `span` blocks up to `head`
    (`block_time(number)`: a block's timestamp); BLOCK_SECONDS for a chain of one block."""
    first = max(0, head - span)
    if head <= first:
        return BLOCK_SECONDS
    return (block_time(head) - block_time(first)) / (head - first)


def arms(
    events: Iterable,
    fees: Mapping[str, int] | None = None,
    least_times: Mapping[str, int] | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> list[Arm]:
    """The open race, the Dutch auction and every registered mechanism not retired, in
    that order (registered ones by id), each named as the registry names it. A registered
    mechanism whose name is taken already (by a built-in one or one registered before it)
    is named with its id too: "auction #5". `fees` (wei per slot) and `least_times`
    (seconds before an assignment can be made) are per name (the suffixed name, else the
    registered one unless a built-in one has it, else for an instance such as
    "auction/window=30" its kind's, its least time being what its published parameters make
    a task wait if they do: an auction's window, an election's delay of blocks of
    `block_seconds` each, "election/delay=4" 48 s at 12 s blocks); 0 when not given. The
    built-in mechanisms pay no frontend, so no fee."""
    fees, least_times = dict(fees or {}), dict(least_times or {})
    registered: dict[int, str] = {}
    retired: set[int] = set()
    for e in events:
        if e.name == "MechanismRegistered":
            registered[e.args["mechanism_id"]] = e.args["name"]
        elif e.name == "MechanismRetired":
            retired.add(e.args["mechanism_id"])
    found = [
        Arm(name, mechanism_id, least_time=least_times.get(name, 0))
        for mechanism_id, name in BUILT_IN.items()
    ]
    taken = {a.name for a in found}
    for mechanism_id in sorted(registered):
        base = registered[mechanism_id]
        name = base if base not in taken else f"{base} #{mechanism_id}"
        taken.add(name)  # a retired one keeps its name: the names stay the same as others retire
        if mechanism_id in retired:
            continue
        # "auction #5" takes what is given for "auction" too, but never a built-in one's; an
        # instance ("auction/window=30") what is given for its kind, its own wait first
        alias = base if base not in BUILT_IN.values() else name
        kind = base.partition("/")[0]
        kind = kind if kind not in BUILT_IN.values() else name
        waits = instance_wait(base, block_seconds)
        found.append(
            Arm(
                name,
                mechanism_id,
                least_time=least_times.get(
                    name, least_times.get(alias, least_times.get(kind, 0) if waits is None else waits)
                ),
                fee=fees.get(name, fees.get(alias, fees.get(kind, 0))),
            )
        )
    return found


def routable(candidates: Sequence[Arm], market: MarketView) -> list[Arm]:
    """The arms some prover of the market takes tasks from: the built-in ones if any prover
    is in it, a registered one if one of them accepts it. The router bars the others
    anyway; leaving them out keeps its reasons about the mechanisms that could serve."""
    return [a for a in candidates if market.could(a, proving_window=2**255) > 0]


def persona_preferences(
    name: str, *, max_time: int | None = None, max_price: int | None = None, min_redundancy: int | None = None
) -> Preferences:
    """A persona's weights (provingmarket/market/personas.py) as preferences, with the hard limits
    given (None: no limit). Raises personas.UnknownPersona for a name it does not know and
    preferences.PreferenceError for a limit that cannot be used."""
    redundancy = {} if min_redundancy is None else {"min_redundancy": min_redundancy}
    weights = asdict(persona(name).weights)
    return Preferences(**weights, max_time=max_time, max_price=max_price, **redundancy)


__all__ = ["BLOCK_SECONDS", "arms", "chain_block_seconds", "market_view", "persona_preferences", "routable"]
