"""The orderbook frontend: the keeper runtime (frontends/keeper.py) with the orderbook
mechanism (frontends/orderbook.py), as one process.

    ORDERBOOK_KEY=0x… python -m frontends.orderbook_frontend \\
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

from frontends.keeper import MAX_BATCH, Keeper
from frontends.metrics import Metrics
from frontends.mirror import MirrorError
from frontends.orderbook import match_orders
from frontends.runtime import Stopper, configure_logging, connect, emit, key_from_env, log
from provingmarket.client import ClientError
from provingmarket.deployments import DeploymentError


def run_orderbook(
    client,
    db: str,
    mechanisms: tuple[int, ...],
    confirmations: int,
    batch_size: int,
    poll: float,
    metrics_port: int | None,
    slash: bool,
    reclaim: bool,
    stop: Stopper | None = None,
) -> None:
    metrics = Metrics("orderbook")
    try:
        keeper = Keeper(
            client,
            db,
            match_orders,
            mechanisms,
            name="orderbook",
            confirmations=confirmations,
            batch_size=batch_size,
            poll=poll,
            slash=slash,
            reclaim=reclaim,
            metrics=metrics,
        )
    except ValueError as error:
        raise ClientError(str(error)) from None
    if metrics_port is not None:
        port = metrics.serve(metrics_port)
        emit(log, "orderbook.metrics", url=f"http://127.0.0.1:{port}/metrics")
    keeper.run(stop or Stopper())
    metrics.close()


@click.command()
@click.option("--rpc", default="http://127.0.0.1:8545", show_default=True, help="The node's JSON-RPC URL.")
@click.option(
    "--deployment",
    required=True,
    type=click.Path(dir_okay=False),
    help="The deployment record (deployments/<network>.json).",
)
@click.option(
    "--key-env", default="ORDERBOOK_KEY", show_default=True, help="Variable holding the frontend's key."
)
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
def main(
    rpc,
    deployment,
    key_env,
    mechanisms,
    db,
    confirmations,
    batch_size,
    poll,
    metrics_port,
    slash,
    reclaim,
    log_level,
):
    """Match open tasks with provers' asks by price and time, and assign them."""
    configure_logging(log_level)
    stop = Stopper()  # before anything slow: a SIGTERM while starting stops it cleanly too
    try:
        client = connect(rpc, deployment, key_from_env(key_env))
        run_orderbook(
            client, db, mechanisms, confirmations, batch_size, poll, metrics_port, slash, reclaim, stop
        )
    except (ClientError, DeploymentError, MirrorError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
