"""`ape run sim [--config small|full|switch|FILE] [--report DIR] [--jobs N]`: the simulation
(simulation/): every policy alone (each mechanism, the double auction, the fallback chains)
and then the router, over seeded workloads on real anvil chains with the real frontends and
prover agents, each (policy, seed) run on a chain of its own, N at once; writes a report with
tables and plots."""

import sys
from pathlib import Path

import ape
import click

from simulation.config import SimConfigError, default_jobs, load

ROOT = Path(__file__).resolve().parent.parent


@click.command()
@click.option(
    "--config",
    "source",
    default="full",
    show_default=True,
    help="small, full, switch (the world changes mid-run), or a JSON file.",
)
@click.option("--report", default=None, help="Report folder (default: reports/sim-<config>).")
@click.option(
    "--jobs",
    type=click.IntRange(1, 16),
    default=default_jobs(),
    show_default=True,
    help="(policy, seed) runs at once, each with its own chain and processes (two per core, at most 4).",
)
def cli(source: str, report: str | None, jobs: int):
    """Simulate provers and requesters against the real contracts; compare the router
    with every mechanism alone."""
    try:
        config = load(source)
    except SimConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    folder = Path(report) if report else ROOT / "reports" / f"sim-{config.name}"
    # Loaded when it runs (`ape run` loads every script to list its commands).
    from simulation.run import simulate
    from simulation.world import SimulationError

    try:
        results = simulate(ape, config, folder, say=lambda text: click.echo(text), jobs=jobs)
    except SimulationError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    for split, table in results["splits"].items():
        click.echo(f"\n{split} seeds: {table['verdict']['text']}")
        for policy, roles in table.get("fees", {}).items():
            wei, gas = sum(r["wei"] for r in roles.values()), sum(r["gas"] for r in roles.values())
            click.echo(f"  fees paid under {policy}: {wei / 10**18:.6f} ETH, {gas:,} gas")
    click.echo(f"\nreport: {folder / 'report.md'}")
