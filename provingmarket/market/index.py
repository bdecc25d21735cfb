"""A market's price and latency index as the registry keeps it (issue 18): exponential
moving averages, updated by each proof, of the price paid for a slot and of the time from
assignment to proof. Readers (the router, the requester's client, the explorer) take it
as a `MarketIndex`; reading it from the chain is provingmarket.chain's business."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarketIndex:
    """One market's index: `price` in wei per slot and `latency` in seconds, each an
    exponential moving average over the proofs so far; `proofs` counts the proofs folded
    in (0: no proof yet, and the averages mean nothing)."""

    price: int
    latency: int
    proofs: int

    @property
    def known(self) -> bool:
        return self.proofs > 0
