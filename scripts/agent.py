"""Run the prover agent (provingmarket/agent/; docs/agent.md) for an ape account, on the network ape is
connected to, with the deployment recorded for it:

    ape run agent --network ethereum:local:node --account TEST::2 --data-dir ~/provingmarket/alice
    ape run agent --network ethereum:local:node --account TEST::2 --data-dir ~/provingmarket/alice \\
        --backend snarkjs --withdraw-at 0.5 --metrics-port 9102

The same agent as `python -m provingmarket.agent`, which a service manager runs with the
key in an environment variable; this one takes the key of an ape account that holds it in
the clear (the test accounts). It runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import sys

import ape
import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from provingmarket import deployments
from provingmarket.agent.agent import run_agent
from provingmarket.agent.main import agent_options
from provingmarket.agent.settings import settings_from_options
from provingmarket.chain.identity import WrongChain
from provingmarket.cli import deployments_folder, fail, handled, network_name, require
from provingmarket.runtime import process as runtime
from provingmarket.runtime.config import as_service


@click.command(cls=ConnectedProviderCommand, context_settings={"help_option_names": ["-h", "--help"]})
@network_option()
@account_option(prompt=False)
@agent_options
@handled
def cli(account, data_dir, legacy_db, log_level, **options):
    """Prove what the registry assigns to the account (and open races), submit before the
    deadlines, withdraw earnings; resumes where it stopped."""
    account = require(account)
    key = getattr(account, "private_key", None)
    if not key:
        fail(
            f"account {account.address} does not hold its key in the clear (a keyfile or hardware "
            "account); run the agent with the key in an environment variable: "
            "python -m provingmarket.agent --key-env PROVER_KEY ..."
        )
    record = deployments.path_for(network_name(), deployments_folder())
    if not record.exists():
        fail(
            f"no deployment recorded for {deployments.network_key(network_name())} ({record}); "
            f"deploy first: ape run operator deploy --network {network_name()} --account <account>"
        )
    settings = settings_from_options(**options)
    runtime.configure_logging(log_level)
    try:
        code = run_agent(ape.chain.provider.uri, record, key, data_dir, settings, legacy_db=legacy_db)
    except WrongChain as error:
        runtime.exit_wrong_chain(error)
    sys.exit(code)


as_service(cli, "PROVINGMARKET_AGENT")  # PROVINGMARKET_AGENT_<OPTION> variables
