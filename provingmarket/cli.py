"""What the `ape run` commands share: the client for the network ape is connected to,
their options, one-line errors with exit code 1, tables or JSON."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from provingmarket import deployments
from provingmarket.chain.checks import existing_market, when
from provingmarket.chain.client import ClientError, Market, RegistryClient, format_ether
from provingmarket.chain.identity import WrongChain
from provingmarket.errors import ProvingMarketError
from provingmarket.formats import BUILT_IN_MECHANISMS
from provingmarket.runtime.process import Stopper, configure_logging, exit_wrong_chain

# The mechanisms every registry has, by id.
BUILT_IN = BUILT_IN_MECHANISMS

# Where deployment records live; tests point this at a folder of their own.
DEPLOYMENTS_ENV = deployments.FOLDER_ENV


class _ToStderr(dict):
    """Echo arguments for every log level: stderr."""

    def get(self, key, default=None):  # noqa: ARG002 (every level alike)
        return {"err": True}

    def __getitem__(self, key):  # noqa: ARG002
        return {"err": True}


def _ape_messages_to_stderr() -> None:
    """ape logs "Connecting to ...", "Confirmed ..." and "SUCCESS: Contract ... deployed"
    through click on stdout. A command's stdout is its output (`--json` must parse as it
    stands), so every ape message goes to stderr: the handlers ape has made, and those it
    makes later. Done when the commands' module loads, before `ape run` connects."""
    try:
        import ape.logging as ape_logging
    except ImportError:  # the library without ape: no ape messages to move
        return
    ape_logging.CLICK_ECHO_KWARGS = _ToStderr()
    loggers = [ape_logging.logger._logger, *ape_logging.logger._extra_loggers.values()]
    for handler in (h for lg in loggers for h in lg.handlers):
        if isinstance(handler, ape_logging.ClickHandler):
            handler.echo_kwargs = _ToStderr()


_ape_messages_to_stderr()


def deployments_folder() -> Path:
    return deployments.default_folder()


def network_name() -> str:
    """ecosystem:network of the chain ape is connected to (the provider does not matter)."""
    import ape

    network = ape.chain.provider.network
    return f"{network.ecosystem.name}:{network.name}"


def client(account=None) -> RegistryClient:
    return RegistryClient.from_ape(network_name(), account, deployments_folder())


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def require(account) -> Any:
    if account is None:
        fail("this command sends a transaction: pass --account (an alias, or TEST::0 on a local chain)")
    return account


def handled(function: Callable) -> Callable:
    """Turn every error a person can act on into one line and exit code 1; a revert
    that still happens shows its reason, never a stack trace."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ProvingMarketError as error:  # every error a person can act on (provingmarket/errors.py)
            fail(str(error))
        except click.ClickException:
            raise
        except Exception as error:  # the node or ape failing: its message, not a trace
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            fail(f"{type(error).__name__}: {message}")

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def command(
    group: Any = click,
    *params: Callable,
    name: str | None = None,
    account: bool = False,
    as_json: bool = True,
) -> Callable:
    """A command of GROUP on the network ape connects to: --network, --account (ACCOUNT),
    PARAMS (click arguments and options, in order), --json (AS_JSON), and every error a
    person can act on as one line (`handled`)."""
    from ape.cli import ConnectedProviderCommand, account_option, network_option

    def decorate(function: Callable) -> click.Command:
        function = handled(function)
        if as_json:
            function = json_option(function)
        for param in reversed(params):
            function = param(function)
        if account:
            function = account_option(prompt=False)(function)
        return group.command(name, cls=ConnectedProviderCommand)(network_option()(function))

    return decorate


def run_frontend(run: Callable, account, log_level: str, **options) -> None:
    """Run a frontend's long-running process with the --account's client, until SIGTERM
    or Ctrl-C. On another chain than its data directory's: one `wrong_chain` line, exit 2."""
    configure_logging(log_level)
    stop = Stopper()
    try:
        run(client(require(account)), stop=stop, **options)
    except WrongChain as error:
        exit_wrong_chain(error)


def emit(as_json: bool, data: Any, text: Callable[[], str] | str) -> None:
    """JSON (bytes as 0x hex) or the readable form."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default))
    else:
        click.echo(text() if callable(text) else text)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    raise TypeError(f"not JSON: {type(value).__name__}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def eth(wei: int) -> str:
    return format_ether(wei)


def market_or_fail(registry: RegistryClient, market_id: int) -> Market:
    """The market, or one line saying it does not exist and how many do."""
    try:
        return existing_market(registry, market_id)
    except ClientError as error:
        fail(str(error))


__all__ = [
    "BUILT_IN",
    "client",
    "command",
    "deployments_folder",
    "emit",
    "eth",
    "fail",
    "handled",
    "json_option",
    "market_or_fail",
    "network_name",
    "require",
    "run_frontend",
    "table",
    "when",
]
