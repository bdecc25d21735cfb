"""The agent's process entry point: `python -m provingmarket.agent` (the command line a
service manager runs, the key in an environment variable) and the options it shares with
`ape run agent` (scripts/agent.py). What the agent does: docs/agent.md."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import click

from provingmarket.agent.agent import SETUP_ERRORS, run_agent
from provingmarket.agent.settings import settings_from_options
from provingmarket.chain.identity import WrongChain
from provingmarket.runtime import process as runtime
from provingmarket.runtime.config import as_service, config_option, readiness_options

PROG = "python -m provingmarket.agent"

# The agent's options, in the order --help lists them.
OPTIONS = [
    config_option,
    click.option(
        "--data-dir",
        default=None,
        help="Directory of its files (mirror.sqlite, outbox.sqlite, agent.sqlite). "
        "Default: $XDG_DATA_HOME/provingmarket/chain-<id>/agent-<prover>.",
    ),
    click.option(
        "--db",
        "legacy_db",
        default=None,
        help="Deprecated: the single SQLite file of earlier versions; its work and unsent "
        "transactions are moved into the data directory on the first start.",
    ),
    click.option(
        "--backend",
        default="auto",
        show_default=True,
        help="groth16py, snarkjs, or a JSON backend configuration (for every market, or per market id).",
    ),
    click.option("--poll", type=float, default=0.5, show_default=True, help="Seconds between rounds."),
    click.option("--confirmations", type=int, default=0, show_default=True, help="Blocks the mirror trails."),
    click.option(
        "--metrics-port",
        type=int,
        default=None,
        help="Serve /metrics, /healthz and /readyz here (0: any free port).",
    ),
    readiness_options,
    click.option(
        "--withdraw-at", default=None, metavar="ETH", help="Withdraw earnings once they reach this."
    ),
    click.option(
        "--race/--no-race",
        default=True,
        show_default=True,
        help="Enter OPEN_RACE tasks whose reward pays the floor.",
    ),
    click.option(
        "--race-min-reward",
        default="0",
        metavar="ETH",
        help="Least reward of a race worth entering (the floor still applies).",
    ),
    click.option(
        "--dutch/--no-dutch",
        default=True,
        show_default=True,
        help="Lock DUTCH tasks once their rising price reaches the floor.",
    ),
    click.option(
        "--auction",
        multiple=True,
        metavar="URL",
        help="An auction frontend's API base URL to bid at (repeatable).",
    ),
    click.option(
        "--cost-per-second",
        default="0",
        metavar="ETH",
        show_default=True,
        help="What a second of proving costs (times the expected proving time).",
    ),
    click.option(
        "--risk-rate",
        default="0",
        metavar="FRACTION",
        show_default=True,
        help="Expected loss to a slash, as a fraction of the collateral at risk.",
    ),
    click.option(
        "--price-margin",
        default="0",
        metavar="FRACTION",
        show_default=True,
        help="Profit asked on top of the cost (0.1: ten per cent).",
    ),
    click.option("--retries", type=int, default=3, show_default=True, help="Retries of a failed backend."),
    click.option(
        "--trust-verifier",
        "trust_verifier",
        multiple=True,
        metavar="0xHASH",
        help=(
            "The code hash (0x and 64 hex digits) of a custom market's verifier you reviewed "
            "(repeatable). A custom market's verifier was not deployed by the registry, so "
            "what it accepts may change: without its hash here the agent takes no work there."
        ),
    ),
    click.option(
        "--simulate",
        default=None,
        metavar="JSON",
        help=(
            "For simulations only: makes this real agent behave like slower, less reliable "
            "hardware; the proofs stay real. A JSON object: "
            '{"prove_seconds": extra seconds per proof, "failure_rate": share of work (0 to 1) '
            "silently never proven nor declined, "
            '"latency": seconds before each transaction, "seed": of the failure draws}'
        ),
    ),
    click.option(
        "--queue",
        default=None,
        metavar="URL",
        help="Prove through the task queue at this Redis URL (workers: python -m "
        "provingmarket.proving.worker); without it the agent proves in its own threads.",
    ),
    click.option(
        "--queue-name",
        default="proving",
        show_default=True,
        help="The queue the workers consume (with --queue).",
    ),
    click.option(
        "--margin",
        type=float,
        default=2.0,
        show_default=True,
        help="Seconds kept before a deadline (the price's margin is --price-margin).",
    ),
    click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        show_default=True,
    ),
]


def agent_options(function: Callable) -> Callable:
    """The agent's options, shared by `python -m provingmarket.agent` and `ape run agent`."""
    for option in reversed(OPTIONS):
        function = option(function)
    return runtime.fee_options(function)


@click.command()
@runtime.rpc_option()
@runtime.ws_option
@click.option(
    "--deployment", required=True, help="The deployment record (as `ape run operator deploy` writes it)."
)
@click.option("--key-env", required=True, help="Environment variable holding the prover's private key.")
@agent_options
def command(
    rpc: tuple[str, ...],
    ws: tuple[str, ...],
    deployment: str,
    key_env: str,
    data_dir: str | None,
    legacy_db: str | None,
    log_level: str,
    **options: Any,
) -> int:
    """Prove what the registry assigns to one prover, race open races, lock DUTCH tasks
    and bid in auctions that pay its cost model's floor; decline tasks whose posted
    inputs nobody can prove and work in custom markets not trusted (--trust-verifier);
    submit before the deadlines, withdraw earnings; resumes where it stopped."""
    runtime.configure_logging(log_level)
    try:
        settings = settings_from_options(**options)
        key = runtime.key_from_env(key_env)
        return run_agent(rpc, deployment, key, data_dir, settings, legacy_db=legacy_db, ws=ws)
    except WrongChain as error:
        runtime.exit_wrong_chain(error)
    except SETUP_ERRORS as error:
        raise click.ClickException(str(error)) from None
    except sqlite3.Error as error:
        raise click.ClickException(f"--data-dir {data_dir or '(default)'}: {error}") from None


as_service(command, "PROVINGMARKET_AGENT")


def main(argv: list[str] | None = None) -> None:
    """Run the command; what is wrong before it starts is one line, `error: ...`, exit 1."""
    runtime.run_main(command, PROG, argv)


if __name__ == "__main__":
    main()
