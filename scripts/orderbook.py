"""Run the orderbook frontend through ape: its network, its account.

    ape run orderbook --mechanism 3 --data-dir ~/pm/orderbook --network ethereum:local:node --account frontend

The same process as `python -m frontends.orderbook.process` (which takes an RPC URL, a
deployment record and a key from the environment): it follows the registry recorded for
the network, matches open tasks with provers' asks by price then time, and assigns them
in batches until SIGTERM or Ctrl-C. See frontends/keeper.py and frontends/orderbook/mechanism.py.
"""

from __future__ import annotations

import click

from frontends.keeper import keeper_options
from frontends.orderbook.process import orderbook_options, run_orderbook
from provingmarket.cli import command, run_frontend
from provingmarket.runtime.config import as_service


@command(click, orderbook_options, keeper_options, account=True, as_json=False)
def cli(account, log_level, **keeper):
    """Match open tasks with provers' asks by price and time, and assign them."""
    run_frontend(run_orderbook, account, log_level, **keeper)


as_service(cli, "PROVINGMARKET_ORDERBOOK")  # -h; PROVINGMARKET_ORDERBOOK_<OPTION> variables
