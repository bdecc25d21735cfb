"""The orderbook frontend: the keeper runtime (frontends/keeper.py) with the orderbook
mechanism (frontends/orderbook/mechanism.py), as one process.

    ORDERBOOK_KEY=0x… python -m frontends.orderbook.process \\
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json \\
        --mechanism 3 --db orderbook.sqlite --metrics-port 9464

or, through ape (its network and account): `ape run orderbook --network … --account …
--mechanism 3 --db orderbook.sqlite`.

The account must be one of the mechanism's frontends (`ape run operator mechanism
frontend`). The key is read from an environment variable (`--key-env`, ORDERBOOK_KEY by
default), never from the command line. SIGTERM stops it after the round in progress;
restarted on the same `--db`, it resumes from its cursor and never sends an assignment
twice. Log lines are JSON, one per decision and per outcome, on stderr.
"""

from __future__ import annotations

import sys

import click

from frontends.keeper import Keeper, keeper_options
from frontends.orderbook.mechanism import match_orders
from provingmarket.chain.client import ClientError
from provingmarket.chain.mirror import MirrorError
from provingmarket.deployments import DeploymentError
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import (
    Stopper,
    configure_logging,
    connect,
    connection_options,
    emit,
    key_from_env,
    log,
)


def run_orderbook(client, metrics_port: int | None = None, stop: Stopper | None = None, **keeper) -> None:
    """Run the orderbook keeper until `stop` (SIGTERM); `keeper` are the Keeper's arguments
    (`keeper_options`)."""
    metrics = Metrics("orderbook")
    try:
        runner = Keeper(client, mechanism=match_orders, name="orderbook", metrics=metrics, **keeper)
    except ValueError as error:
        raise ClientError(str(error)) from None
    if metrics_port is not None:
        port = metrics.serve(metrics_port)
        emit(log, "orderbook.metrics", url=f"http://127.0.0.1:{port}/metrics")
    runner.run(stop or Stopper())
    metrics.close()


@click.command()
@connection_options("ORDERBOOK_KEY")
@keeper_options
def main(rpc, deployment, key_env, log_level, **keeper):
    """Match open tasks with provers' asks by price and time, and assign them."""
    configure_logging(log_level)
    stop = Stopper()  # before anything slow: a SIGTERM while starting stops it cleanly too
    try:
        client = connect(rpc, deployment, key_from_env(key_env))
        run_orderbook(client, stop=stop, **keeper)
    except (ClientError, DeploymentError, MirrorError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
