"""`make bench`'s keeper part: 1,000 tasks posted at once on an anvil of its own, then the
orderbook frontend as its own process, timed until every task is assigned
(benches/keeper_bench.py, which says what it measures)."""

from __future__ import annotations

import click

# The package now, its modules when the command runs: `ape run` takes the project folder off
# sys.path once it has listed the scripts.
import benches  # noqa: F401


@click.command()
def cli():
    """Time the orderbook frontend assigning 1,000 tasks posted at once, on an anvil of its own."""
    from benches.keeper_bench import main  # loaded when it runs: `ape run` loads every script

    main()
