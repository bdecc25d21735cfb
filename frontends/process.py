"""The skeleton every frontend process shares (orderbook, auction, election, double
auction): its command line, connecting, its metrics, the keeper's loop until SIGTERM, and
an error a person can act on as one line and exit code 1.

    @click.command()
    @connection_options("ORDERBOOK_KEY")
    @keeper_options
    def main(**options):
        serve(run_orderbook, **options)

    def run_orderbook(client, metrics_port=None, stop=None, **keeper):
        run_frontend("orderbook", lambda metrics: Keeper(client, ..., metrics=metrics), metrics_port, stop)

One process may serve several mechanism ids, each an instance with its own parameters
(`Instances`, `--instance ID:KEY=VALUE`, or the parameters its registered name publishes:
provingmarket/chain/mechanisms.py); `Intervals` runs a mechanism for each instance at its
own pace.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import click

from frontends import book
from provingmarket import rules
from provingmarket.chain.client import ClientError, RegistryClient
from provingmarket.chain.database import StoreError
from provingmarket.chain.identity import WrongChain
from provingmarket.chain.mechanisms import InstanceError, instance_name, parse_instance, parse_parameters
from provingmarket.chain.mirror import MirrorError, Snapshot
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
    starting,
)

# What stops a process with one line: the registry or the node refused, a bad deployment
# record, a mirror that belongs to another chain or registry.
FATAL: tuple[type[BaseException], ...] = (ClientError, DeploymentError, MirrorError, StoreError)


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
    rpc: str | Sequence[str],
    deployment: str,
    key_env: str,
    log_level: str,
    errors: tuple[type[BaseException], ...] = FATAL,
    ws: Sequence[str] = (),
    **options: Any,
) -> None:
    """The body of a frontend's command: JSON logs, a `Stopper` installed before anything
    slow (a SIGTERM while starting stops it cleanly too), connect with the key from
    `key_env`, then `run(client, stop=…, **options)`; `errors` end it with one line."""
    configure_logging(log_level)
    stop = Stopper()
    with exit_on(errors):
        key = key_from_env(key_env)
        client = starting(lambda: connect(rpc, deployment, key, ws), "frontend")
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
            runner = starting(lambda: build(metrics), name)
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


# ------------------------------------------------------------------ instances


def _shown(params: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


class Instances:
    """The parameters of each mechanism id a frontend of `kind` serves: those given for it
    (`--instance ID:KEY=VALUE`), else those its registered name publishes
    (`auction/window=30`), over the frontend's `defaults`. An id whose name disagrees (other
    values, another kind's parameters, not in the format) is refused: when the frontend
    starts, with one line naming both (`start`); registered later, with a warning line
    and nothing decided for it (`observe`)."""

    def __init__(
        self,
        kind: str,
        defaults: Mapping[str, int],
        mechanisms: Iterable[int] = (),
        given: Mapping[int, Mapping[str, int]] | None = None,
    ):
        self.kind = kind
        self.defaults = dict(defaults)
        self.given = {i: dict(p) for i, p in (given or {}).items()}
        self.ids = sorted(set(mechanisms) | set(self.given))
        self.params: dict[int, dict[str, int]] = {}  # mechanism id -> its parameters, once known
        self.refused: dict[int, str] = {}  # mechanism id -> why

    def get(self, mechanism_id: int, key: str) -> int | None:
        """A parameter of an instance whose name was checked (None: not served yet)."""
        found = self.params.get(mechanism_id)
        return None if found is None else found[key]

    def ready(self) -> frozenset[int]:
        return frozenset(self.params)

    def agree(self, mechanism_id: int, name: str) -> dict[str, int]:
        """Its parameters, if its registered `name` agrees with what was given; else an
        InstanceError saying what differs and what to do."""
        try:
            kind, published = parse_instance(name)
        except InstanceError as error:
            raise InstanceError(
                f"mechanism {mechanism_id}'s name '{name}' is not an instance name: {error}"
            ) from None
        if published and kind != self.kind:
            raise InstanceError(
                f"mechanism {mechanism_id} is registered as '{name}', an instance of {kind}, not of "
                f"{self.kind}: serve it with the {kind} frontend"
            )
        given = self.given.get(mechanism_id, {})
        differ = {k for k in set(given) & set(published) if given[k] != published[k]}
        if differ:
            raise InstanceError(
                f"mechanism {mechanism_id} is registered as '{name}' but --instance "
                f"{mechanism_id}:{_shown(given)} was given: give --instance {mechanism_id}:"
                f"{_shown(published)}, or none (its name's parameters are used), or register an "
                f"instance '{instance_name(self.kind, {**published, **given})}' and serve that"
            )
        return {**self.defaults, **published, **given}

    def learn(self, names: Mapping[int, str], strict: bool) -> None:
        """Check the ids whose names are now known: a disagreement is a ClientError if
        `strict`, else a warning line and the id refused."""
        for mechanism_id in self.ids:
            if mechanism_id in self.params or mechanism_id in self.refused or mechanism_id not in names:
                continue
            try:
                params = self.agree(mechanism_id, names[mechanism_id])
            except InstanceError as error:
                if strict:
                    raise ClientError(str(error)) from None
                self.refused[mechanism_id] = str(error)
                emit(
                    log,
                    f"{self.kind}.instance_refused",
                    logging.WARNING,
                    mechanism=mechanism_id,
                    reason=str(error),
                )
                continue
            self.params[mechanism_id] = params
            emit(
                log, f"{self.kind}.instance", mechanism=mechanism_id, name=names[mechanism_id], params=params
            )

    def start(self, client: RegistryClient) -> None:
        """Check the ids registered already, from the registry's events (ClientError: refused)."""
        names = {e.mechanism_id: e.args["name"] for e in client.events(["MechanismRegistered"])}
        self.learn(names, strict=True)

    def observe(self, snap: Snapshot, _view: book.Snapshot | None = None) -> None:
        """A keeper's `observe` hook: check the ids registered since (from the mirror)."""
        self.learn({i: m.name for i, m in snap.mechanisms.items()}, strict=False)


class Intervals:
    """`mechanism` run for each instance at most once every `key` seconds of chain time
    (its own parameter), on the tasks of the instances due; provers' capacity and stake
    are one book whatever the instance. An instance not checked yet decides nothing."""

    def __init__(
        self, mechanism: Callable[[book.Snapshot], list[book.Decision]], instances: Instances, key: str
    ):
        self.mechanism = mechanism
        self.instances = instances
        self.key = key
        self.last: dict[int, int] = {}  # mechanism id -> chain time of its last run

    def __call__(self, view: book.Snapshot) -> list[book.Decision]:
        due = set()
        for mechanism_id in view.mechanisms & self.instances.ready():
            last = self.last.get(mechanism_id)
            if last is None or view.now >= last + (self.instances.get(mechanism_id, self.key) or 0):
                due.add(mechanism_id)
                self.last[mechanism_id] = view.now
        # a chain's task is due with the instance of its link current now
        tasks = tuple(t for t in view.tasks if rules.mechanism_at(t.terms, view.now) in due)
        if not tasks:
            return []
        return self.mechanism(dataclasses.replace(view, mechanisms=frozenset(due), tasks=tasks))


def instance_option(kind: str) -> Callable:
    """--instance ID:KEY=VALUE[,KEY=VALUE] (repeatable): a mechanism id served with its own
    parameters; the command receives `instances`, {id: {key: value}}."""

    def parse(_ctx, _param, values: Sequence[str]) -> dict[int, dict[str, int]]:
        found: dict[int, dict[str, int]] = {}
        for value in values:
            head, colon, text = value.partition(":")
            if not colon or not head.strip().isdigit():
                raise click.BadParameter(f"'{value}': give ID:key=value[,key=value], e.g. 3:{_example(kind)}")
            mechanism_id = int(head)
            if mechanism_id in found:
                raise click.BadParameter(f"mechanism {mechanism_id} given twice")
            try:
                found[mechanism_id] = parse_parameters(text, kind)
            except InstanceError as error:
                raise click.BadParameter(f"'{value}': {error}") from None
        return found

    return click.option(
        "--instance",
        "instances",
        multiple=True,
        callback=parse,
        metavar="ID:KEY=VALUE[,KEY=VALUE]",
        help="A mechanism id served with its own parameters (repeatable); other ids take those "
        f"their registered names publish ({kind}/{_example(kind)}), else the options'.",
    )


def _example(kind: str) -> str:
    examples = {
        "auction": "window=30",
        "orderbook": "interval=5",
        "election": "delay=4",
        "double_auction": "round=30",
    }
    return examples.get(kind, "key=1")
