"""Assignment mechanisms and the keepers that run them.

Mechanisms are plain functions over a snapshot of registry state: the orderbook
(`orderbook.match_orders` over `book.Snapshot`) so far. `mirror.Mirror` follows the
registry's events into SQLite, the base of the keeper runtime that will feed the
mechanisms and submit their assignments in batches. The registry rules they must respect
are in contracts/Registry.vy.
"""
