"""`ape run rehearse`: the testnet path on a local anvil that looks like Sepolia, through
the Sepolia network config (provingmarket/devnet/rehearsal.py says what it runs and how).

    ape run rehearse                    (12-second blocks, as `make rehearse`)
    ape run rehearse --block-time 1     (the short form)
"""

from __future__ import annotations

import json
import sys

import click

from provingmarket.cli import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option(
    "--block-time", default=12, show_default=True, help="Seconds between blocks (1: the short form)."
)
@click.option(
    "--unbonding-delay",
    type=int,
    help="Seconds unstaked ETH waits (the rehearsal waits it out).  [default: 3 blocks]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (steps go to stderr).")
def cli(block_time, unbonding_delay, as_json):
    """Rehearse the testnet path (deploy, market, stake, post, prove, withdraw) on a local
    anvil that looks like Sepolia, through the Sepolia network config."""
    if block_time < 1:
        click.echo(f"error: --block-time {block_time}: at least 1 second", err=True)
        sys.exit(1)
    # Loaded when it runs (`ape run` loads every script to list its commands).
    from provingmarket.devnet.rehearsal import RehearsalError, rehearse, report

    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    try:
        data = rehearse(block_time, unbonding_delay if unbonding_delay is not None else 3 * block_time, echo)
    except RehearsalError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(report(data))
