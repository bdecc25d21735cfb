"""Run the auction frontend through ape: its network, its account.

    ape run auction --mechanism 3 --data-dir ~/pm/auction --window 10 --port 8000 \\
        --network ethereum:local:node --account frontend

The same process as `python -m frontends.auction.process` (which takes an RPC URL, a
deployment record and a key from the environment): for each open task of the mechanism
it runs a sealed-bid second-price auction, takes provers' signed bids over HTTP (OpenAPI
at /openapi.json), and assigns the winners with their signatures until SIGTERM or
Ctrl-C. See frontends/auction/process.py, frontends/auction/mechanism.py and frontends/auction/api.py.
"""

from __future__ import annotations

import click

from frontends.auction.process import auction_options, run_auction
from frontends.keeper import keeper_options
from provingmarket.cli import command, run_frontend
from provingmarket.runtime.config import as_service


@command(click, auction_options, keeper_options, account=True, as_json=False)
def cli(account, log_level, **options):
    """Run sealed-bid second-price auctions for open tasks, and assign the winners."""
    run_frontend(run_auction, account, log_level, **options)


as_service(cli, "PROVINGMARKET_AUCTION")  # -h; PROVINGMARKET_AUCTION_<OPTION> variables
