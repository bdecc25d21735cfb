"""What every long-running process (a frontend's keeper, a prover's agent) shares:
connecting from a command line, JSON log lines, stopping on SIGTERM, and a loop that
rides out a node that stops answering.

    client = connect(rpc, deployment_file, key)
    stop = Stopper()                      # SIGTERM / SIGINT set it
    run_forever(round_, stop, poll=1.0, name="keeper")
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import requests
from web3.exceptions import TimeExhausted, Web3Exception

from provingmarket import deployments
from provingmarket.chain.client import ClientError, KeySigner, NoNodeAnswers, RegistryClient
from provingmarket.chain.database import server_gone
from provingmarket.chain.endpoints import unavailable
from provingmarket.chain.heads import HeadFollower
from provingmarket.chain.identity import WrongChain

log = logging.getLogger("provingmarket.runtime.process")

# Errors that mean "the node did not answer (well)": wait and try again.
RPC_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    ConnectionError,
    TimeoutError,
    TimeExhausted,
    Web3Exception,
    OSError,
)

MAX_BACKOFF = 30.0  # seconds between attempts while the node is down


def connect(
    rpc: str | Sequence[str], deployment_file: str | Path, key: str | None, ws: str | Sequence[str] = ()
) -> RegistryClient:
    """A client for the registry recorded in `deployment_file` (as `ape run operator
    deploy` writes it), through the node at `rpc` (one URL, or several of the same chain,
    comma-separated or a list: tried in order, failing over, provingmarket/chain/endpoints.py),
    signing with `key`; its rounds woken by the new heads of `ws` (WebSocket URLs,
    provingmarket/chain/heads.py). Every endpoint answering must be the record's chain."""
    path = Path(deployment_file)
    if not path.exists():
        raise ClientError(f"no deployment record at {path}; deploy first: ape run operator deploy")
    record = deployments.Deployment.from_json(path.read_text(), str(path))
    client = RegistryClient.connect(rpc, record.registry, None, record.block, chain_id=record.chain_id, ws=ws)
    if key:
        client.signer = KeySigner(key)
    client.deployment = record
    return client


def key_from_env(name: str) -> str:
    """A private key from an environment variable (never from the command line, where
    every user of the machine can read it)."""
    key = os.environ.get(name, "").strip()
    if not key:
        raise ClientError(f"set {name} to the account's private key (0x followed by 64 hex digits)")
    return key


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the message if it is one (the runtime's own lines), else
    {"event": "log", "message": ...}; with the time and the logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            fields = json.loads(message)
            if not isinstance(fields, dict):
                raise ValueError
        except ValueError:
            fields = {"event": "log", "message": message}
        if record.exc_info:
            fields["trace"] = self.formatException(record.exc_info)
        return json.dumps(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                **fields,
            },
            default=str,
        )


def configure_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "web3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def emit(logger: logging.Logger, kind: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, json.dumps({"event": kind, **fields}, default=str))


class Stopper:
    """Set by SIGTERM or SIGINT (or `set()`); `wait(seconds)` sleeps unless it is set."""

    def __init__(self, install: bool = True):
        self.event = threading.Event()
        self.signal: str | None = None
        if install and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    def set(self) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def run_forever(
    round_: Callable[[], Any],
    stop: Stopper,
    poll: float,
    name: str,
    on_error: Callable[[str], None] | None = None,
    heads: HeadFollower | None = None,
) -> None:
    """Call `round_` every `poll` seconds until `stop` is set; with `heads` (a WebSocket
    subscription, provingmarket/chain/heads.py), also as soon as a new head arrives, at
    most once per head. A node that does not answer
    is waited for with exponential backoff (0.5 s doubling to 30 s) and a log line per
    attempt, and so is a database server out of reach (`store_error`); any other error is
    logged with its trace and the loop goes on: a process
    never dies of one bad round. But `WrongChain` (the node is another chain than the
    process's files) ends the loop: the caller stops the process (`exit_wrong_chain`)."""
    failures = 0
    while not stop.stopped:
        try:
            round_()
            if failures:
                emit(log, f"{name}.rpc_back", after_failures=failures)
            failures = 0
            if heads is not None:
                heads.wait(stop, poll)
            else:
                stop.wait(poll)
            continue
        except WrongChain:
            raise
        except RPC_ERRORS as error:
            kind, event, level = "rpc", "rpc_error", logging.WARNING
            fields = {"error": f"{type(error).__name__}: {error}"[:300], "attempt": failures + 1}
        except Exception as error:
            if server_gone(error):  # the database server restarting or out of reach: wait for it
                kind, event, level = "store", "store_error", logging.WARNING
                fields = {"error": f"{type(error).__name__}: {error}"[:300], "attempt": failures + 1}
            else:  # a bug or a malformed answer: log it, keep going
                kind, event, level = "internal", "error", logging.ERROR
                fields = {
                    "error": f"{type(error).__name__}: {error}"[:300],
                    "trace": traceback.format_exc(limit=8),
                }
        failures += 1
        delay = min(0.5 * 2 ** (failures - 1), MAX_BACKOFF)
        emit(log, f"{name}.{event}", level, **fields, retry_in=delay)
        if on_error:
            on_error(kind)
        stop.wait(delay)


START_ATTEMPTS = 4  # tries of a process's start when no endpoint answers a call (0.5, 1, 2 s apart)


def starting(step: Callable[[], Any], name: str, attempts: int = START_ATTEMPTS) -> Any:
    """Run a process's start (`step`: connecting, reading the chain's identity, opening its
    files) again when a call found no endpoint answering (each failed at that moment: a
    reset, a 5xx or 429, a timeout; or none answered at all), `attempts` times in all with a
    log line each, then give up (the last error: no node answers, exit 1). A start made of
    reads and of opening the process's own files can be made again. Anything else (an
    answer refusing, another chain, a file that cannot be used) is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except WrongChain:
            raise
        except Exception as error:
            if not (unavailable(error) or isinstance(error, NoNodeAnswers)) or attempt == attempts:
                raise
            delay = 0.5 * 2 ** (attempt - 1)
            emit(
                log, f"{name}.start_rpc_error", logging.WARNING,
                error=f"{type(error).__name__}: {error}"[:300], attempt=attempt, retry_in=delay,
            )  # fmt: skip
            time.sleep(delay)
    raise AssertionError("unreachable")


def run_main(
    command: click.Command,
    prog: str,
    argv: list[str] | None = None,
    errors: tuple[type[BaseException], ...] = (),
) -> NoReturn:
    """Run a process's click `command` as its `main`: what is wrong before it starts (a
    usage error, one of `errors`) is one line, `error: ...`, exit 1; otherwise the
    command's own exit code (0 if it returns none)."""

    def fail(message: str) -> NoReturn:
        click.echo(f"error: {message}", err=True)
        sys.exit(1)

    try:
        code = command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.ClickException as error:
        fail(error.format_message())
    except errors as error:
        fail(str(error))
    except click.exceptions.Abort:
        fail("aborted")
    sys.exit(code if isinstance(code, int) else 0)


def exit_wrong_chain(error: WrongChain) -> NoReturn:
    """End a process that found itself on another chain: one log line, `wrong_chain`,
    saying what differs and what to do, and exit code 2 (`WrongChain.exit_code`)."""
    emit(log, "wrong_chain", logging.ERROR, error=str(error))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.exit(error.exit_code)


def monotonic_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def rpc_option(default: str | None = None) -> Callable:
    """--rpc URL (repeatable, or comma-separated): the node's JSON-RPC endpoints, of one
    chain, tried in order (provingmarket/chain/endpoints.py); the command receives `rpc`,
    a tuple of strings."""
    return click.option(
        "--rpc",
        multiple=True,
        required=default is None,
        default=(default,) if default else None,
        show_default=bool(default),
        help="The node's JSON-RPC URL; several (repeated or comma-separated) of one chain are "
        "tried in order, a call failing over to the next when one does not answer.",
    )


ws_option = click.option(
    "--ws",
    multiple=True,
    help="A WebSocket URL (ws://...) of the same chain: a round starts on each new head it "
    "announces, and at least every --poll seconds (repeatable; without it: polling).",
)


def connection_options(key_env: str) -> Callable:
    """--rpc, --ws, --deployment and --key-env (defaulting to `key_env`): how a process run
    without ape reaches the registry and holds its account's key."""

    def decorate(command: Callable) -> Callable:
        options = [
            rpc_option(default="http://127.0.0.1:8545"),
            ws_option,
            click.option(
                "--deployment",
                required=True,
                type=click.Path(dir_okay=False),
                help="The deployment record (deployments/<network>.json).",
            ),
            click.option(
                "--key-env",
                default=key_env,
                show_default=True,
                help="Variable holding the account's private key.",
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def gwei_to_wei(gwei: float | None) -> int | None:
    return None if gwei is None else int(round(gwei * 10**9))


def fee_options(command: Callable) -> Callable:
    """--replace-after and --max-fee-gwei: how the process's outbox prices its transactions
    (provingmarket/chain/outbox.py, "Fees")."""
    command = click.option(
        "--max-fee-gwei",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Never sign a transaction paying more than this per gas (gwei); above it the "
        "outbox waits and says so (log, fee_cap_hits_total). Default: no cap.",
    )(command)
    return click.option(
        "--replace-after",
        type=click.FloatRange(min=0, min_open=True),
        default=36.0,
        show_default=True,
        help="Seconds a sent transaction may wait unmined before it is sent again with the "
        "same nonce and fees raised by 12.5%.",
    )(command)
