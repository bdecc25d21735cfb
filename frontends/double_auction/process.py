"""The double auction frontend: the keeper runtime (frontends/keeper.py) with the double
auction mechanism (frontends/double_auction/mechanism.py), as one process.

    DOUBLE_AUCTION_KEY=0x… python -m frontends.double_auction \\
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json \\
        --mechanism 6 --data-dir /var/lib/provingmarket/double-auction --round 5

Every `--round` seconds (at most; a keeper round is every `--poll` seconds) it clears the
open tasks of its mechanisms and the provers' standing asks together, one price per
market, and sends the assignments at that price in `assign_batch`. Between clearings the
keeper keeps following the chain, settling what it sent, slashing and reclaiming. A
longer round gathers more tasks and asks into one clearing (a deeper market, a price
closer to the crossing); a shorter one assigns sooner.

The account must be one of the mechanism's frontends. The key is read from an environment
variable (`--key-env`, DOUBLE_AUCTION_KEY by default). SIGTERM stops it after the round in
progress; restarted on the same `--data-dir`, it resumes from its cursor and never sends an
assignment twice. Log lines are JSON on stderr (`double_auction.decision`, `.assigned`, …).

Instances: one process serves every `--mechanism` id, each cleared at most once every
`round` seconds of chain time: `--instance 7:round=30`, else what the id's registered name
publishes (`double_auction/round=30`), else `--round`. One clearing covers the instances
due together (one price per market over their tasks, provers' asks and capacity one book
whatever the instance); an instance not due waits for its round. A name that disagrees
with `--instance` stops it with one line (frontends/process.py, `Instances`).
"""

from __future__ import annotations

import click

from frontends.double_auction.mechanism import clear_double_auction
from frontends.keeper import Keeper, keeper_options
from frontends.process import Instances, Intervals, instance_option, run_frontend, serve, with_options
from provingmarket.chain.client import RegistryClient
from provingmarket.runtime.config import as_service
from provingmarket.runtime.health import READY_AGE, READY_LAG
from provingmarket.runtime.process import Stopper, connection_options

NAME = "double_auction"


def run_double_auction(
    client: RegistryClient,
    metrics_port: int | None = None,
    stop: Stopper | None = None,
    ready_lag: int = READY_LAG,
    ready_age: float = READY_AGE,
    round_seconds: int = 0,
    instances: dict[int, dict[str, int]] | None = None,
    **keeper,
) -> None:
    """Run the double auction keeper until `stop` (SIGTERM); `keeper` are the Keeper's
    arguments (`keeper_options`); `instances` the rounds given per mechanism id, over
    `round_seconds`."""
    served = Instances(NAME, {"round": round_seconds}, keeper.pop("mechanisms", ()), instances)

    def build(metrics):
        served.start(client)
        return Keeper(
            client,
            mechanism=Intervals(clear_double_auction, served, "round"),
            mechanisms=served.ids,
            name=NAME,
            metrics=metrics,
            observe=served.observe,
            **keeper,
        )

    run_frontend(NAME, build, metrics_port, stop, ready_lag, ready_age)


def double_auction_options(command):
    """The double auction's own options: the command receives `round_seconds` and `instances`."""
    return with_options(
        command,
        [
            click.option(
                "--round",
                "round_seconds",
                default=0,
                show_default=True,
                type=click.IntRange(0, 86_400),
                help="Least seconds between clearings (0: every keeper round).",
            ),
            instance_option(NAME),
        ],
    )


@click.command()
@connection_options("DOUBLE_AUCTION_KEY")
@double_auction_options
@keeper_options
def main(**options):
    """Clear open tasks and provers' asks together at one price per market, and assign them."""
    serve(run_double_auction, **options)


as_service(main, "PROVINGMARKET_DOUBLE_AUCTION")


if __name__ == "__main__":
    main()
