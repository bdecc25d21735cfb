"""Open a market for a circuit: deploy its Groth16 verifier, create the market.

    ape run create_market square --registry 0x... --account TEST::0 --network ethereum:local:foundry
    ape run create_market circuits/squarings-1000 --registry 0x... --account operator --json

CIRCUIT is a sample circuit's name (circuits/<name>) or a circuit folder. The command
deploys contracts/verifiers/Groth16Verifier.vy with the circuit's verifying key (or checks
the one given with --verifier holds that key), proves the circuit's sample as the account
(the registry's check at creation), and creates the market with the prover's address
bound through the circuit's address input. Exit code 0 on success, 1 on any failure.
"""

from __future__ import annotations

import json
import sys

import ape
import click
from ape import project
from ape.cli import ConnectedProviderCommand, account_option, network_option

from provingmarket.backends import BackendError, backend_from_config
from provingmarket.circuits import Circuit, CircuitError, sample_circuits
from provingmarket.markets import ETHER, MarketError, MarketTerms, open_market


def wei(ether: str) -> int:
    try:
        return int(round(float(ether) * ETHER))
    except ValueError:
        raise click.BadParameter(f"{ether!r} is not an amount of ETH") from None


@click.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("circuit")
@click.option("--registry", "registry_address", required=True, help="The registry's address.")
@click.option("--verifier", "verifier_address", help="Reuse a deployed verifier (its key is checked).")
@click.option("--min-collateral", default="0.1", show_default=True, help="Least collateral per prover, ETH.")
@click.option("--min-reward", default="0.01", show_default=True, help="Least maximum reward of a task, ETH.")
@click.option("--grace-period", default=60, show_default=True, help="Seconds a prover may decline for free.")
@click.option("--requester-bps", default=5_000, show_default=True, help="Slashed share to the requester.")
@click.option("--caller-bps", default=1_000, show_default=True, help="Slashed collateral to the slasher.")
@click.option(
    "--backend",
    type=click.Choice(["groth16py", "snarkjs"]),
    default="groth16py",
    show_default=True,
    help="How to prove the sample (groth16py is the optional GPL extra).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cli(
    network,
    account,
    circuit,
    registry_address,
    verifier_address,
    min_collateral,
    min_reward,
    grace_period,
    requester_bps,
    caller_bps,
    backend,
    as_json,
):
    """Deploy a circuit's verifier and create its market in the registry."""

    def fail(message: str) -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(1)

    if account is None:
        fail("pass --account: an account alias, or TEST::0 for a local test account")
    try:
        loaded = Circuit.load(circuit)
        loaded.verifying_key()
    except CircuitError as error:
        fail(f"{error} (sample circuits: {', '.join(sample_circuits())})")
    registry = project.Registry.at(registry_address) if _has_code(registry_address) else None
    if registry is None:
        fail(f"no contract at {registry_address} on chain {ape.chain.chain_id}: deploy the registry first")
    verifier = None
    if verifier_address:
        if not _has_code(verifier_address):
            fail(f"no contract at {verifier_address} on chain {ape.chain.chain_id}")
        verifier = project.Groth16Verifier.at(verifier_address)
    terms = MarketTerms(wei(min_collateral), wei(min_reward), grace_period, requester_bps, caller_bps)
    try:
        prover = backend_from_config({"backend": backend})
        opened = open_market(ape, registry, loaded, account, prover, terms, verifier)
    except (MarketError, BackendError, CircuitError) as error:
        fail(str(error))
    except Exception as error:  # a revert that still happens: its reason, not a trace
        fail(f"the registry refused: {getattr(error, 'message', error)}")

    result = {
        "market_id": opened.market_id,
        "circuit": opened.circuit,
        "verifier": opened.verifier,
        "verifier_deployed": opened.deployed_verifier,
        "registry": registry.address,
        "public_inputs": list(loaded.public),
        "address_input": loaded.public[loaded.address_input],
        "min_collateral_wei": terms.min_collateral,
        "min_reward_wei": terms.min_reward,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    verb = "deployed" if opened.deployed_verifier else "reused"
    click.echo(f"market {opened.market_id} opened for circuit {opened.circuit}")
    click.echo(f"  verifier   {opened.verifier} ({verb})")
    click.echo(f"  registry   {registry.address}")
    address = result["address_input"]
    click.echo(f"  inputs     {', '.join(loaded.public)} ('{address}' carries the prover's address)")
    click.echo(f"  minimums   collateral {min_collateral} ETH, reward {min_reward} ETH")


def _has_code(address: str) -> bool:
    try:
        return len(ape.chain.provider.get_code(address)) > 0
    except Exception:
        return False
