"""A market's price and latency index, read from the registry (`market_index`), and the
Dutch auction's start price a requester's client takes from it.

The registry keeps, per market, exponential moving averages with smoothing 1/8 of the
price each proof paid its prover and of the time from the slot's assignment (a race: its
start) to the proof, updated by every proof (contracts/registry/words.vy, docs/registry.md
"The price and latency index"). Readers take them as `IndexReading(price, latency,
proofs)`: wei, seconds, and the proofs counted (up to 255); the market layer calls it
`MarketIndex` (provingmarket/market/index.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

MAX_COUNTED = 255  # the registry counts proofs up to this, then stops counting


class Caller(Protocol):
    """What reads the registry: a `RegistryClient` (its `call(name, *args)`)."""

    def call(self, name: str, *args: Any) -> Any: ...


class IndexReading(NamedTuple):
    """A market's index as the registry reports it: `price` in wei and `latency` in whole
    seconds (rounded down), each a moving average over the proofs so far; `proofs` counts
    them up to 255 (0: no proof yet, and the averages mean nothing)."""

    price: int
    latency: int
    proofs: int

    @property
    def known(self) -> bool:
        return self.proofs > 0


def read(registry: Caller, market_id: int) -> IndexReading:
    """The index of `market_id` now (all zero for a market with no proof yet, or unknown)."""
    price, latency, proofs = registry.call("market_index", market_id)
    return IndexReading(int(price), int(latency), int(proofs))


def dutch_start_price(index: IndexReading, min_reward: int, reward: int) -> int:
    """Where a Dutch auction's price starts when the requester names none. The registry's
    Dutch price rises from the start price to the reward over the ramp, and a prover locks
    the task when it is worth its while: starting at half the market's going price (the
    index's) leaves room below it for cheaper provers, and the reward above it for the
    rest. Never below the market's least reward, never above the task's reward; with no
    proof in the market yet, the least reward (as before the index)."""
    if not index.known:
        return min(min_reward, reward)
    return min(max(index.price // 2, min_reward), reward)
