"""The indexer for the registry on a network: it follows the registry into a shared mirror
in PostgreSQL that frontends (`--database`), the explorer (`--mirror URL`) and `ape run qos
--database` read without syncing one of their own.

    ape run indexer --network ethereum:local:node --database postgresql://market@127.0.0.1/market

It runs until SIGTERM or Ctrl-C, one JSON line per round that applied events; one indexer
writes a database (a second is refused in one line). `python -m
provingmarket.runtime.indexer` is the same process without ape (for a service:
deploy/config/indexer.toml).
"""

from __future__ import annotations

import click

from provingmarket.chain.database import StoreError
from provingmarket.chain.mirror import MirrorError
from provingmarket.cli import client, command, fail
from provingmarket.runtime.config import as_service
from provingmarket.runtime.indexer import run_indexer
from provingmarket.runtime.process import Stopper, configure_logging


@command(
    click,
    click.option(
        "--database",
        required=True,
        metavar="URL",
        help="Where the mirror is written: postgresql://user@host/db (schema `mirror`, or the "
        "URL's #schema).",
    ),
    click.option("--confirmations", default=0, show_default=True, type=click.IntRange(0, 1000)),
    click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.05, 600)),
    click.option(
        "--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics, /healthz and /readyz."
    ),
    click.option("--log-level", default="INFO", show_default=True),
    as_json=False,
)
def cli(database, confirmations, poll, metrics_port, log_level):
    """Follow this network's registry into a shared mirror (Postgres), until SIGTERM."""
    configure_logging(log_level)
    stop = Stopper()
    try:
        run_indexer(client(), database, stop, confirmations, poll, metrics_port)
    except (StoreError, MirrorError) as error:
        fail(str(error))


as_service(cli, "PROVINGMARKET_INDEXER")
