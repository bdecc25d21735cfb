"""Run the election frontend through ape (its network, its account), and check elections.

    ape run election run --mechanism 3 --data-dir ~/pm/election --delay 2 --confirmations 2 \\
        --network ethereum:local:node --account frontend
    ape run election verify 0x<task id> --network ethereum:local:node

`run` is the same process as `python -m frontends.election.process run` (which takes an
RPC URL, a deployment record and a key from the environment): for each task of its
mechanisms it waits for the randomness block (the delay of the task's instance after the
task was posted: `--instance ID:delay=D`, else the one its registered name publishes,
`election/delay=D`, else `--delay`; with `--confirmations` on it), draws the task's
provers at random among those eligible, and assigns them at the task's maximum reward,
until SIGTERM or Ctrl-C. `verify` recomputes a task's draws from the chain alone, with
its instance's delay, and prints them beside what the frontend sent: "matches" (exit
code 0) or "does not match" (1). See frontends/election/mechanism.py and
frontends/election/process.py.
"""

from __future__ import annotations

import click

from frontends.election.process import (
    election_options,
    print_verdict,
    run_election,
    verify_options,
    verify_task,
)
from frontends.keeper import keeper_options
from provingmarket.cli import client, command, run_frontend
from provingmarket.runtime.config import as_service


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Elect provers at random for tasks, and check a frontend's elections."""


@command(cli, election_options, keeper_options, account=True, as_json=False)
def run(account, log_level, **options):
    """Draw provers at random for the open tasks of a mechanism, and assign them."""
    run_frontend(run_election, account, log_level, **options)


@command(cli, verify_options, as_json=False)
def verify(task_id, frontend, delay, confirmations):
    """Recompute a task's draws from the chain; say whether the frontends' choices match."""
    print_verdict(*verify_task(client(), task_id, frontend, delay, confirmations))


as_service(run, "PROVINGMARKET_ELECTION")  # PROVINGMARKET_ELECTION_<OPTION> variables
as_service(verify)
