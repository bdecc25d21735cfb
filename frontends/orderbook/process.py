"""The orderbook frontend: the keeper runtime (frontends/keeper.py) with the orderbook
mechanism (frontends/orderbook/mechanism.py), as one process.

    ORDERBOOK_KEY=0x… python -m frontends.orderbook.process \\
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json \\
        --mechanism 3 --data-dir /var/lib/provingmarket/orderbook --metrics-port 9464

or, through ape (its network and account): `ape run orderbook --network … --account …
--mechanism 3 --data-dir …`.

The account must be one of the mechanism's frontends (`ape run operator mechanism
frontend`). The key is read from an environment variable (`--key-env`, ORDERBOOK_KEY by
default), never from the command line. SIGTERM stops it after the round in progress;
restarted on the same `--data-dir`, it resumes from its cursor and never sends an assignment
twice. Log lines are JSON, one per decision and per outcome, on stderr.

Instances: one process serves every `--mechanism` id, each matched at most once every
`interval` seconds of chain time (a batch interval: a longer one gathers more tasks per
matching): `--instance 4:interval=30`, else what the id's registered name publishes
(`orderbook/interval=30`), else `--interval`. A name that disagrees with `--instance`
stops it with one line (frontends/process.py, `Instances`).
"""

from __future__ import annotations

import click

from frontends.keeper import Keeper, keeper_options
from frontends.orderbook.mechanism import match_orders
from frontends.process import Instances, Intervals, instance_option, run_frontend, serve, shown, with_options
from provingmarket.chain.client import RegistryClient
from provingmarket.runtime.config import as_service
from provingmarket.runtime.health import READY_AGE, READY_LAG
from provingmarket.runtime.process import Stopper, connection_options


def run_orderbook(
    client: RegistryClient,
    metrics_port: int | None = None,
    stop: Stopper | None = None,
    ready_lag: int = READY_LAG,
    ready_age: float = READY_AGE,
    interval: int = 0,
    instances: dict[int, dict[str, int]] | None = None,
    **keeper,
) -> None:
    """Run the orderbook keeper until `stop` (SIGTERM); `keeper` are the Keeper's arguments
    (`keeper_options`); `instances` the parameters given per mechanism id, over `interval`."""
    served = Instances("orderbook", {"interval": interval}, keeper.pop("mechanisms", ()), instances)

    def build(metrics):
        served.start(client)
        return Keeper(
            client,
            mechanism=Intervals(match_orders, served, "interval"),
            mechanisms=served.ids,
            name="orderbook",
            metrics=metrics,
            observe=served.observe,
            **keeper,
        )

    run_frontend("orderbook", build, metrics_port, stop, ready_lag, ready_age)


def orderbook_options(command):
    """The orderbook's own options, shared by this process and `ape run orderbook`: the
    command receives `interval` and `instances`."""
    return with_options(
        command,
        [
            shown(
                "--interval",
                0,
                click.IntRange(0, 86_400),
                "Least seconds between matchings (0: every round).",
            ),
            instance_option("orderbook"),
        ],
    )


@click.command()
@connection_options("ORDERBOOK_KEY")
@orderbook_options
@keeper_options
def main(**options):
    """Match open tasks with provers' asks by price and time, and assign them."""
    serve(run_orderbook, **options)


as_service(main, "PROVINGMARKET_ORDERBOOK")


if __name__ == "__main__":
    main()
