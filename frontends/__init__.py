"""Assignment mechanisms and the keepers that run them.

Mechanisms (orderbook, sealed-bid auction, election) are plain functions over a
snapshot of registry state; keepers feed them the registry's events and submit
their assignments in batches. They arrive with the frontend issues; the registry
rules they must respect are in contracts/Registry.vy.
"""
