"""Run the election frontend through ape (its network, its account), and check elections.

    ape run election run --mechanism 3 --db election.sqlite --delay 2 --confirmations 2 \\
        --network ethereum:local:node --account frontend
    ape run election verify 0x<task id> --network ethereum:local:node

`run` is the same process as `python -m frontends.election.process run` (which takes an
RPC URL, a deployment record and a key from the environment): for each task of the
mechanism it waits for the randomness block (`--delay` blocks after the task was posted,
with `--confirmations` on it), draws the task's provers at random among those eligible,
and assigns them at the task's maximum reward, until SIGTERM or Ctrl-C. `verify`
recomputes a task's draws from the chain alone and prints them beside what the frontend
sent: "matches" (exit code 0) or "does not match" (1). See frontends/election/mechanism.py and
frontends/election/process.py.
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from frontends.election.process import (
    election_options,
    print_verdict,
    run_election,
    verify_options,
    verify_task,
)
from frontends.keeper import keeper_options
from provingmarket.cli import client, handled, require
from provingmarket.runtime.process import Stopper, configure_logging


@click.group()
def cli():
    """Elect provers at random for tasks, and check a frontend's elections."""


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@election_options
@keeper_options
@handled
def run(account, log_level, **options):
    """Draw provers at random for the open tasks of a mechanism, and assign them."""
    configure_logging(log_level)
    stop = Stopper()
    run_election(client(require(account)), stop=stop, **options)


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@verify_options
@handled
def verify(task_id, frontend, delay, confirmations):
    """Recompute a task's draws from the chain; say whether the frontends' choices match."""
    print_verdict(*verify_task(client(), task_id, frontend, delay, confirmations))
