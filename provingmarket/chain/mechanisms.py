"""What the registry knows about its assignment mechanisms, for `ape run operator mechanism
list` and `show`: the built-in ones (open race, Dutch auction: no registrant, no frontend)
and each registered one's name, registrant, whether it is retired, the frontends allowed
to assign for it now, and the markets where provers accept it now.

The registry keeps no parameters for a mechanism: a task's terms carry the built-in ones'
(reward, ramp, windows), and a registered mechanism's frontend keeps its own
configuration. Names, frontends and acceptances come from the registry's events, each
confirmed by a read of its current state (`is_frontend`, `accepts`).

Instances
---------
A registered name may publish an instance's parameters, so the router and the explorer
read them from the name (the mirror's mechanisms table) with no other service:
`KIND/KEY=VALUE[,KEY=VALUE]`, e.g. `auction/window=30`, `orderbook/interval=5`,
`election/delay=4` or `double_auction/round=30`. The kind names the frontend that serves
it; each value is a whole number (seconds, blocks, a count). A name with no "/" is the
kind alone and publishes nothing. `instance_name` writes the
format, `parse_instance` reads it, and both check a known kind's keys and bounds
(`INSTANCE_PARAMETERS`); a frontend refuses to serve an id whose name disagrees with the
parameters it was given (docs/mechanisms.md, "Instances"). `least_time` is what an
instance's parameters make a task wait before it can be assigned (an auction's window, an
election's delay in blocks), the router's least time for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from provingmarket.chain.client import ClientError, RegistryClient
from provingmarket.formats import BUILT_IN_MECHANISMS, MAX_NAME

# The parameters each kind of frontend takes per instance: key -> (least, most).
INSTANCE_PARAMETERS: dict[str, dict[str, tuple[int, int]]] = {
    "auction": {"window": (1, 86_400)},  # seconds of bidding
    "orderbook": {"interval": (0, 86_400)},  # least seconds between two matchings
    "election": {"delay": (1, 256)},  # blocks from a round's trigger to its randomness block
    "double_auction": {"round": (0, 86_400)},  # least seconds between two clearings
}
# The parameter that makes every task of an instance wait before it can be assigned, and
# its unit: the auction's bidding window, the election's draw delay. (An orderbook's or a
# double auction's interval is at most a wait: a task may come just before a matching.)
WAITS: dict[str, tuple[str, str]] = {"auction": ("window", "seconds"), "election": ("delay", "blocks")}
MAX_PARAMETER = 2**32 - 1  # a value of a kind that is not in INSTANCE_PARAMETERS
_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_VALUE = re.compile(r"0|[1-9][0-9]{0,9}")


class InstanceError(ValueError):
    """A name or parameters that do not follow the instance format; the message says why."""


def parse_parameters(text: str, kind: str) -> dict[str, int]:
    """`KEY=VALUE[,KEY=VALUE]` as a dict, each key once and known to `kind` (if its kind is
    in INSTANCE_PARAMETERS), each value a whole number within its bounds."""
    params: dict[str, int] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        if not eq or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise InstanceError(
                f"'{item.strip()}': write each parameter as key=value, the value a whole number"
            )
        if key in params:
            raise InstanceError(f"parameter {key} given twice")
        params[key] = int(value)
    return check_parameters(kind, params)


def check_parameters(kind: str, params: Mapping[str, int]) -> dict[str, int]:
    """`params` if `kind` takes them: known keys within their bounds (any key, values up to
    MAX_PARAMETER, for a kind this library does not know)."""
    known = INSTANCE_PARAMETERS.get(kind)
    for key, value in params.items():
        if known is None:
            least, most = 0, MAX_PARAMETER
        elif key not in known:
            raise InstanceError(f"{kind} takes no parameter {key} (it takes {', '.join(known) or 'none'})")
        else:
            least, most = known[key]
        if not least <= value <= most:
            raise InstanceError(f"{kind} {key}={value}: give {least} to {most}")
    return dict(params)


def parse_instance(name: str) -> tuple[str, dict[str, int]]:
    """A registered name as (kind, parameters): `auction/window=30` -> ("auction",
    {"window": 30}); a name with no "/" is its kind with no parameters."""
    kind, slash, text = name.partition("/")
    if not slash:
        return name, {}
    if not kind.strip():
        raise InstanceError(f"'{name}': the kind comes before the '/' (auction/window=30)")
    return kind, parse_parameters(text, kind)


def published(name: str) -> dict[str, int] | None:
    """The parameters a registered name publishes (None: none, or a name not in the format)."""
    try:
        return parse_instance(name)[1] or None
    except InstanceError:
        return None


def instance_name(kind: str, params: Mapping[str, int]) -> str:
    """The registered name of an instance of `kind` with `params` (a known kind's keys in
    its order, others sorted); one the registry takes (at most MAX_NAME characters)."""
    if not kind or "/" in kind or kind != kind.strip():
        raise InstanceError(f"kind '{kind}': give a name without '/' or surrounding spaces")
    checked = check_parameters(kind, params)
    order = list(INSTANCE_PARAMETERS.get(kind, {})) + sorted(checked)
    keys = [k for k in dict.fromkeys(order) if k in checked]
    name = kind + ("/" + ",".join(f"{k}={checked[k]}" for k in keys) if keys else "")
    if len(name) > MAX_NAME:
        raise InstanceError(f"'{name}' has {len(name)} characters; the registry takes at most {MAX_NAME}")
    parse_instance(name)  # what is written reads back (keys and values follow the grammar)
    return name


def least_time(name: str, block_seconds: float) -> int | None:
    """The whole seconds an instance's published parameters make each of its tasks wait
    before an assignment (`WAITS`: its window, or its delay in blocks of `block_seconds`
    each, rounded up); None when its name publishes no such parameter."""
    params = published(name) or {}
    key, unit = WAITS.get(name.partition("/")[0], ("", ""))
    if key not in params:
        return None
    return params[key] if unit == "seconds" else math.ceil(params[key] * max(block_seconds, 0.0))


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
        data["params"] = self.params  # published in its name (module docstring), or None
        return data

    @property
    def params(self) -> dict[str, int] | None:
        return published(self.name)


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


__all__ = [
    "INSTANCE_PARAMETERS",
    "InstanceError",
    "WAITS",
    "MechanismInfo",
    "check_parameters",
    "instance_name",
    "least_time",
    "mechanism",
    "mechanisms",
    "parse_instance",
    "parse_parameters",
    "published",
]
