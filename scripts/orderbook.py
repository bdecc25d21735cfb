"""Run the orderbook frontend through ape: its network, its account.

    ape run orderbook --mechanism 3 --db orderbook.sqlite --network ethereum:local:node --account frontend

The same process as `python -m frontends.orderbook.process` (which takes an RPC URL, a
deployment record and a key from the environment): it follows the registry recorded for
the network, matches open tasks with provers' asks by price then time, and assigns them
in batches until SIGTERM or Ctrl-C. See frontends/keeper.py and frontends/orderbook/mechanism.py.
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from frontends.keeper import keeper_options
from frontends.orderbook.process import run_orderbook
from provingmarket.cli import client, handled, require
from provingmarket.runtime.process import Stopper, configure_logging


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@keeper_options
@handled
def cli(account, log_level, **keeper):
    """Match open tasks with provers' asks by price and time, and assign them."""
    configure_logging(log_level)
    stop = Stopper()
    run_orderbook(client(require(account)), stop=stop, **keeper)
