"""Run the orderbook frontend through ape: its network, its account.

    ape run orderbook --mechanism 3 --db orderbook.sqlite --network ethereum:local:node --account frontend

The same process as `python -m frontends.orderbook_frontend` (which takes an RPC URL, a
deployment record and a key from the environment): it follows the registry recorded for
the network, matches open tasks with provers' asks by price then time, and assigns them
in batches until SIGTERM or Ctrl-C. See frontends/keeper.py and frontends/orderbook.py.
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from frontends.keeper import MAX_BATCH
from frontends.orderbook_frontend import run_orderbook
from frontends.runtime import Stopper, configure_logging
from provingmarket.cli import client, handled, require


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.option(
    "--mechanism", "mechanisms", type=int, multiple=True, required=True, help="Mechanism id (repeatable)."
)
@click.option(
    "--db", required=True, type=click.Path(dir_okay=False), help="SQLite file: mirror, cursor, outbox."
)
@click.option("--confirmations", default=0, show_default=True, type=click.IntRange(0, 1000))
@click.option("--batch-size", default=MAX_BATCH, show_default=True, type=click.IntRange(1, MAX_BATCH))
@click.option(
    "--poll", default=1.0, show_default=True, type=click.FloatRange(0.05, 600), help="Seconds between rounds."
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus metrics (0: any free port)."
)
@click.option(
    "--slash/--no-slash", default=True, show_default=True, help="Slash overdue assignments of its tasks."
)
@click.option("--reclaim/--no-reclaim", default=True, show_default=True, help="Refund slots left unfilled.")
@click.option("--log-level", default="INFO", show_default=True)
@handled
def cli(account, mechanisms, db, confirmations, batch_size, poll, metrics_port, slash, reclaim, log_level):
    """Match open tasks with provers' asks by price and time, and assign them."""
    configure_logging(log_level)
    stop = Stopper()
    registry = client(require(account))
    run_orderbook(
        registry, db, mechanisms, confirmations, batch_size, poll, metrics_port, slash, reclaim, stop
    )
