"""What the registry would refuse about a market or a mechanism, looked at before a
transaction is sent and said in one line with the values seen (a ClientError). The
operator's, the prover's and the requester's commands share these."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from provingmarket.chain.client import ClientError, Market, RegistryClient
from provingmarket.formats import BUILT_IN_MECHANISMS, chain_links


def when(timestamp: int) -> str:
    """A chain timestamp as a person reads it, in UTC."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def existing_market(registry: RegistryClient, market_id: int) -> Market:
    """The market, or a ClientError saying it does not exist and how many do."""
    found = registry.market(market_id)
    if not found.exists:
        count = registry.call("market_count")
        raise ClientError(
            f"no market {market_id} (this registry has {count} market{'s' if count != 1 else ''})"
        )
    return found


def mechanism_name(registry: RegistryClient, mechanism_id: int) -> str:
    """A built-in mechanism's name, or the name a registered one was registered with; a
    chain's links in order with their windows ("auction 30 s, then orderbook 60 s, then
    open race 100 s")."""
    links = chain_links(mechanism_id)
    if links:
        return ", then ".join(f"{mechanism_name(registry, link.mechanism)} {link.window} s" for link in links)
    if mechanism_id in BUILT_IN_MECHANISMS:
        return BUILT_IN_MECHANISMS[mechanism_id]
    for e in registry.events(["MechanismRegistered"]):
        if e.mechanism_id == mechanism_id:
            return e.args["name"]  # (e.name is the event's)
    return "?"


def not_built_in(mechanism_id: int, why: str) -> None:
    """Refuse a built-in mechanism where only a registered one makes sense; `why` says so."""
    if mechanism_id in BUILT_IN_MECHANISMS:
        name = BUILT_IN_MECHANISMS[mechanism_id]
        raise ClientError(f"mechanism {mechanism_id} ({name}) is built in: {why}")


def registered_mechanism(
    registry: RegistryClient, mechanism_id: int, known: Callable[[int], str]
) -> tuple[str, bool]:
    """The registrant of registered mechanism MECHANISM_ID and whether it is retired;
    a ClientError if none is registered under it (`known(last id)` says which are)."""
    registrant, retired = registry.mechanism(mechanism_id)
    if int(registrant, 16) == 0:
        raise ClientError(f"no mechanism {mechanism_id} ({known(registry.call('mechanism_count'))})")
    return registrant, retired


__all__ = ["existing_market", "mechanism_name", "not_built_in", "registered_mechanism", "when"]
