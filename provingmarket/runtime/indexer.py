"""The indexer: the one process that follows the registry into a shared mirror.

    python -m provingmarket.runtime.indexer --rpc http://node:8545 --deployment deployments/local.json \\
        --database postgresql://market@db/market [--confirmations 2] [--metrics-port 9200]

Settings may come from a TOML file (`--config`, deploy/config/indexer.toml) and variables
`PROVINGMARKET_INDEXER_<OPTION>`, as for the other processes. It is a `Mirror`
(provingmarket/chain/mirror/) synced round after round into the database
(a `postgresql://` URL: the `mirror` schema of that database, or the URL's `#schema`),
which frontends (`--database`), the explorer and `ape run qos --database` read without
syncing it themselves (`SharedMirror`). One indexer writes a database: a second one on
the same mirror is refused in one line (a Postgres session lock held while it runs).

Like the other long-running processes: JSON log lines (`indexer.start`, `indexer.round`
when events were applied or a reorg rolled back, `indexer.stop`), rounds every `--poll`
seconds and on each new head with `--ws`, a node that stops answering waited for with
backoff, SIGTERM ends it after the round in progress, and with `--metrics-port` the
metrics (events applied, lag) and /healthz, /readyz (ready within `--ready-lag` blocks
of the head).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from provingmarket.chain.client import ClientError
from provingmarket.chain.database import StoreError, describe
from provingmarket.chain.heads import follow_heads
from provingmarket.chain.identity import WrongChain
from provingmarket.chain.mirror import Mirror, MirrorError
from provingmarket.chain.postgres import PostgresConnection
from provingmarket.runtime import process as runtime
from provingmarket.runtime.config import as_service, config_option, readiness_options
from provingmarket.runtime.health import Health
from provingmarket.runtime.metrics import Metrics

PROG = "python -m provingmarket.runtime.indexer"
NAME = "indexer"

log = logging.getLogger("provingmarket.indexer")


def run_indexer(
    client: Any,
    database: str,
    stop: runtime.Stopper,
    confirmations: int = 0,
    poll: float = 1.0,
    metrics_port: int | None = None,
    ready_lag: int = 5,
    ready_age: float = 60.0,
) -> None:
    """Follow the registry into `database` until `stop`."""
    metrics = Metrics(NAME, Health(ready_lag, ready_age))
    port = metrics.serve(metrics_port) if metrics_port is not None else None
    mirror = Mirror(database, client, client.from_block, confirmations)
    try:
        if isinstance(mirror.db, PostgresConnection) and not mirror.db.hold_exclusive(NAME):
            raise StoreError(
                f"another indexer is writing the mirror at {describe(database)}: one writes it, "
                "the others read it (--database on frontends); stop the other one first"
            )
        web3 = client.web3

        def round_() -> None:
            report = mirror.sync()
            head = web3.eth.block_number
            metrics.counter("events_applied_total", "Registry events applied to the mirror", report.applied)
            if report.reorgs:
                metrics.counter("reorgs_total", "Reorganisations rolled back", len(report.reorgs))
            metrics.gauge(
                "lag_blocks", "Blocks between the chain's head and the mirror's cursor", head - mirror.cursor
            )
            metrics.health.round_done(head, mirror.cursor, confirmations)
            if report.applied or report.reorgs:
                runtime.emit(
                    log,
                    f"{NAME}.round",
                    cursor=mirror.cursor,
                    head=head,
                    applied=report.applied,
                    skipped=report.skipped,
                    reorgs=len(report.reorgs),
                )

        runtime.emit(
            log,
            f"{NAME}.start",
            database=describe(database),
            registry=client.address,
            cursor=mirror.cursor,
            metrics=f"http://127.0.0.1:{port}" if port is not None else None,
        )
        metrics.health.running(True)
        heads = follow_heads(client, NAME)
        try:
            runtime.run_forever(round_, stop, poll, NAME, heads=heads)
        finally:
            if heads is not None:
                heads.close()
            metrics.health.running(False)
            runtime.emit(log, f"{NAME}.stop", signal=stop.signal, cursor=mirror.cursor)
    finally:
        mirror.close()
        metrics.close()


@click.command()
@config_option
@runtime.rpc_option()
@runtime.ws_option
@click.option(
    "--deployment", required=True, help="The deployment record (as `ape run operator deploy` writes it)."
)
@click.option(
    "--database",
    required=True,
    help="Where the mirror is written: postgresql://user@host/db (schema `mirror`, or the URL's "
    "#schema), or a SQLite file.",
)
@click.option("--confirmations", default=0, show_default=True, type=click.IntRange(0, 1000))
@click.option(
    "--poll", default=1.0, show_default=True, type=click.FloatRange(0.05, 600), help="Seconds between rounds."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics, /healthz and /readyz (0: any free port).",
)
@readiness_options
@click.option("--log-level", default="INFO", show_default=True)
def command(
    rpc, ws, deployment, database, confirmations, poll, metrics_port, ready_lag, ready_age, log_level
):
    """Follow the registry into a shared mirror (Postgres) that frontends, the explorer and
    `ape run qos` read with --database."""
    runtime.configure_logging(log_level)
    stop = runtime.Stopper()
    try:
        client = runtime.connect(rpc, deployment, None, ws)
        run_indexer(client, database, stop, confirmations, poll, metrics_port, ready_lag, ready_age)
    except WrongChain as error:
        runtime.exit_wrong_chain(error)
    except (ClientError, StoreError, MirrorError, ValueError) as error:
        raise click.ClickException(str(error)) from None


as_service(command, "PROVINGMARKET_INDEXER")


def main(argv: list[str] | None = None) -> None:
    """Run the command; what is wrong before it starts is one line, `error: ...`, exit 1."""
    runtime.run_main(command, PROG, argv)


if __name__ == "__main__":
    main()
