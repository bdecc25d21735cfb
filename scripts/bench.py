"""Benchmarks on anvil (`make bench`): registry gas and code size, Groth16 verifier gas,
proving time. benches/registry_bench.py says what each part measures and how; `ape run
bench --only registry|verifier|proving` runs one part."""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, network_option

# The package now, its modules when the command runs: `ape run` takes the project folder off
# sys.path once it has listed the scripts.
import benches  # noqa: F401

PARTS = ("registry", "verifier", "proving")


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option(
    "--only",
    type=click.Choice(PARTS),
    default=None,
    help="Run one part: registry gas and code size, Groth16 verifier gas, or proving time.",
)
def cli(network, only):
    """Print gas per registry operation and per Groth16 verification, and proving times."""
    # Loaded when it runs: `ape run` loads every script to list its commands.
    from benches.registry_bench import main

    main(only)
