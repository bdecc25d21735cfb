"""A market's price and latency index as the registry keeps it (issue 18): exponential
moving averages, updated by each proof, of the price paid for a slot and of the time from
assignment to proof. Readers (the router, the requester's client, the explorer) take it
as a `MarketIndex`, which is the chain layer's reading (`provingmarket.chain.index`)."""

from __future__ import annotations

from provingmarket.chain.index import IndexReading as MarketIndex

__all__ = ["MarketIndex"]
