"""What the registry knows about its assignment mechanisms, for `ape run operator mechanism
list` and `show`: the built-in ones (open race, Dutch auction: no registrant, no frontend)
and each registered one's name, registrant, whether it is retired, the frontends allowed
to assign for it now, and the markets where provers accept it now.

The registry keeps no parameters for a mechanism: a task's terms carry the built-in ones'
(reward, ramp, windows), and a registered mechanism's frontend keeps its own
configuration. Names, frontends and acceptances come from the registry's events, each
confirmed by a read of its current state (`is_frontend`, `accepts`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from provingmarket.chain.client import ClientError, RegistryClient
from provingmarket.formats import BUILT_IN_MECHANISMS


@dataclass
class MechanismInfo:
    mechanism_id: int
    name: str
    kind: str  # "built in" or "registered"
    registrant: str | None  # who manages it (None: built in)
    retired: bool
    frontends: list[str] = field(default_factory=list)  # allowed to assign for it now
    markets: dict[int, int] = field(default_factory=dict)  # market -> provers accepting it now

    def to_dict(self) -> dict:
        data = asdict(self)
        data["markets"] = [{"market_id": m, "provers": n} for m, n in sorted(self.markets.items())]
        data["params"] = None  # the registry keeps none (module docstring)
        return data


def mechanisms(registry: RegistryClient) -> list[MechanismInfo]:
    """Every mechanism of the registry, by id: built in first, then registered."""
    count = registry.call("mechanism_count")
    found = {
        i: MechanismInfo(i, name, "built in", None, False) for i, name in sorted(BUILT_IN_MECHANISMS.items())
    }
    names: dict[int, str] = {}
    frontends: dict[int, set[str]] = {}
    accepted: dict[int, set[tuple[int, str]]] = {}
    events = registry.events(["MechanismRegistered", "FrontendSet", "MechanismAccepted"])
    for e in events:
        if e.name == "MechanismRegistered":
            names[e.mechanism_id] = e.args["name"]  # (e.name is the event's)
        elif e.name == "FrontendSet":
            frontends.setdefault(e.mechanism_id, set()).add(e.frontend)
        elif e.accepted:
            accepted.setdefault(e.mechanism_id, set()).add((e.market_id, e.prover))
    for i in range(len(BUILT_IN_MECHANISMS) + 1, count + 1):
        registrant, retired = registry.mechanism(i)
        allowed = sorted(f for f in frontends.get(i, ()) if registry.call("is_frontend", i, f))
        found[i] = MechanismInfo(i, names.get(i, "?"), "registered", registrant, retired, allowed)
    for i, pairs in accepted.items():
        if i not in found:
            continue
        for market_id, prover in sorted(pairs):
            if registry.call("accepts", prover, market_id, i):
                found[i].markets[market_id] = found[i].markets.get(market_id, 0) + 1
    return [found[i] for i in sorted(found)]


def mechanism(registry: RegistryClient, mechanism_id: int) -> MechanismInfo:
    """One mechanism, or a ClientError naming the ids there are."""
    for info in mechanisms(registry):
        if info.mechanism_id == mechanism_id:
            return info
    last = registry.call("mechanism_count")
    raise ClientError(f"no mechanism {mechanism_id} (ids 1 to {last}: `mechanism list` shows them)")


__all__ = ["MechanismInfo", "mechanism", "mechanisms"]
