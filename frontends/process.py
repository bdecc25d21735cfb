"""The skeleton every frontend process shares (orderbook, auction, election): its command
line, connecting, its metrics, the keeper's loop until SIGTERM, and an error a person can
act on as one line and exit code 1.

    @click.command()
    @connection_options("ORDERBOOK_KEY")
    @keeper_options
    def main(**options):
        serve(run_orderbook, **options)

    def run_orderbook(client, metrics_port=None, stop=None, **keeper):
        run_frontend("orderbook", lambda metrics: Keeper(client, ..., metrics=metrics), metrics_port, stop)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import click

from provingmarket.chain.client import ClientError
from provingmarket.chain.identity import WrongChain
from provingmarket.chain.mirror import MirrorError
from provingmarket.deployments import DeploymentError
from provingmarket.runtime.health import READY_AGE, READY_LAG, Health
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import (
    Stopper,
    configure_logging,
    connect,
    emit,
    exit_wrong_chain,
    key_from_env,
    log,
)

# What stops a process with one line: the registry or the node refused, a bad deployment
# record, a mirror that belongs to another chain or registry.
FATAL: tuple[type[BaseException], ...] = (ClientError, DeploymentError, MirrorError)


class Runner(Protocol):
    """A frontend: its keeper, or what wraps it (`run` returns once `stop` is set)."""

    def run(self, stop: Stopper) -> None: ...


def with_options(command: Callable, options: Sequence[Callable]) -> Callable:
    """`command` with click `options`, listed in the order `--help` shows them."""
    for option in reversed(options):
        command = option(command)
    return command


def shown(name: str, default: Any, kind: click.ParamType | None, help: str | None = None) -> Callable:
    """A click option whose default `--help` shows."""
    return click.option(name, default=default, show_default=True, type=kind, help=help)


def data_dir_option() -> Callable:
    """--data-dir: where a process keeps its files (provingmarket/runtime/datadir.py)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        help="Directory of its files (mirror.sqlite, outbox.sqlite, ...). "
        "Default: $XDG_DATA_HOME/provingmarket/chain-<id>/<process>-<account>.",
    )


def legacy_db_option() -> Callable:
    """--db (deprecated): the single file of the previous layout, moved from once."""
    return click.option(
        "--db",
        "legacy_db",
        type=click.Path(dir_okay=False),
        help="Deprecated: the single SQLite file of earlier versions; its unsent transactions "
        "(and bids, rounds) are moved into the data directory on the first start.",
    )


@contextmanager
def exit_on(errors: tuple[type[BaseException], ...] = FATAL) -> Iterator[None]:
    """Turn `errors` into `error: <message>` on stderr and exit code 1; another chain than
    the process's files (`WrongChain`) into one `wrong_chain` log line and exit code 2."""
    try:
        yield
    except WrongChain as error:
        exit_wrong_chain(error)
    except errors as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


def serve(
    run: Callable[..., None],
    rpc: str,
    deployment: str,
    key_env: str,
    log_level: str,
    errors: tuple[type[BaseException], ...] = FATAL,
    **options: Any,
) -> None:
    """The body of a frontend's command: JSON logs, a `Stopper` installed before anything
    slow (a SIGTERM while starting stops it cleanly too), connect with the key from
    `key_env`, then `run(client, stop=…, **options)`; `errors` end it with one line."""
    configure_logging(log_level)
    stop = Stopper()
    with exit_on(errors):
        client = connect(rpc, deployment, key_from_env(key_env))
        run(client, stop=stop, **options)


def run_frontend(
    name: str,
    build: Callable[[Metrics], Runner],
    metrics_port: int | None = None,
    stop: Stopper | None = None,
    ready_lag: int = READY_LAG,
    ready_age: float = READY_AGE,
) -> None:
    """Build a frontend from its metrics (a ValueError, an argument the keeper refuses,
    becomes a ClientError), serve the metrics and its health (/healthz, /readyz: ready
    within `ready_lag` blocks of the head and `ready_age` seconds of a round) on
    `metrics_port` if given, and run it until `stop` (SIGTERM)."""
    metrics = Metrics(name, Health(ready_lag, ready_age))
    try:
        # The port first: a port in use stops the process before it opens its files.
        port = metrics.serve(metrics_port) if metrics_port is not None else None
        try:
            runner = build(metrics)
        except ValueError as error:
            raise ClientError(str(error)) from None
        if port is not None:
            base = f"http://127.0.0.1:{port}"
            emit(
                log,
                f"{name}.metrics",
                url=f"{base}/metrics",
                health=f"{base}/healthz",
                ready=f"{base}/readyz",
            )
        runner.run(stop or Stopper())
    finally:
        metrics.close()
