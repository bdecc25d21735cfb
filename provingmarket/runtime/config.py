"""A long-running process's settings from a TOML file, environment variables and flags.

    @click.command()
    @click.option("--rpc", default="http://127.0.0.1:8545")
    @config_option
    def main(rpc): ...

    as_service(main, "PROVINGMARKET_ORDERBOOK")

Each setting is taken from, first found: the command line (`--rpc URL`), the environment
(`PROVINGMARKET_ORDERBOOK_RPC`: the prefix, then the flag's name in capitals with `_`
for `-`; `--no-slash` is `..._SLASH=false`; a repeatable option's values are separated by
spaces), the `--config` file (`rpc = "..."`: the flag's name without `--`), the default.
A key the command has no flag for stops it with one line naming the key and the file.
Relative paths in the file are relative to the working directory, as on the command line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

HELP = ["-h", "--help"]


def as_service(command: click.Command, prefix: str | None = None) -> click.Command:
    """`command` answering `-h` as well as `--help`, and (with `prefix`) reading each option
    from the environment variable `<prefix>_<OPTION>`, shown in its help."""
    command.context_settings["help_option_names"] = HELP
    if prefix is None:
        return command
    for param in command.params:
        flags = [flag for flag in getattr(param, "opts", ()) if flag.startswith("--")]
        if isinstance(param, click.Option) and flags and param.envvar is None:
            param.envvar = f"{prefix}_{flags[0][2:].upper().replace('-', '_')}"
            param.show_envvar = True
    return command


def _keys(command: click.Command) -> dict[str, click.Option]:
    """The file's keys for `command`'s options: each long flag's name without `--`, with
    `_` accepted for `-`."""
    keys: dict[str, click.Option] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("config", "help"):
            continue
        for flag in param.opts:
            if flag.startswith("--"):
                keys[flag[2:]] = param
                keys[flag[2:].replace("-", "_")] = param
    return keys


def read_config(command: click.Command, path: str | Path) -> dict[str, Any]:
    """The file at `path` as `command`'s default_map (option name -> value); ClickException
    (one line) for a file missing or not TOML, or a key `command` has no option for."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise click.ClickException(f"--config {path}: no such file") from None
    except OSError as error:
        raise click.ClickException(f"--config {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise click.ClickException(f"--config {path} is not TOML: {error}") from None
    known = _keys(command)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        option = known.get(key)
        if option is None:
            names = sorted({k for k in known if "_" not in k or k.replace("_", "-") not in known})
            raise click.ClickException(
                f"unknown key {key!r} in {path}; the keys are the options without '--': {', '.join(names)}"
            )
        if isinstance(value, dict):
            raise click.ClickException(f"{path}: {key} is a table; give it a value, as for --{key}")
        if option.multiple and not isinstance(value, list):
            value = [value]
        assert option.name is not None
        values[option.name] = value
    return values


def _load(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.default_map = {**(ctx.default_map or {}), **read_config(ctx.command, value)}


def config_option(command: Callable) -> Callable:
    """--config FILE.toml: settings for every other option (flags and environment
    variables override it)."""
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=_load,
        help="TOML file of settings: the options' names without '--' (flags and environment override).",
    )(command)


def readiness_options(command: Callable) -> Callable:
    """--ready-lag and --ready-age: when /readyz answers 200 (provingmarket/runtime/health.py)."""
    from provingmarket.runtime.health import READY_AGE, READY_LAG

    command = click.option(
        "--ready-age",
        type=click.FloatRange(min=0, min_open=True),
        default=READY_AGE,
        show_default=True,
        help="/readyz: seconds since the last completed round, at most.",
    )(command)
    return click.option(
        "--ready-lag",
        type=click.IntRange(min=0),
        default=READY_LAG,
        show_default=True,
        help="/readyz: blocks the mirror may trail the head (beyond --confirmations).",
    )(command)
