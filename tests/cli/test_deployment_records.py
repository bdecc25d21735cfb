"""Deployment records that cannot hurt their user: written only for a chain that outlives
the command, replaced only with --replace (the old one kept), carrying the chain's identity
so a command on another chain stops with one line naming the --network used; a testnet
without its RPC URL is one line naming the variable to set; old records still load."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from provingmarket import deployments
from provingmarket.chain.identity import EXIT_WRONG_CHAIN, ChainIdentity
from provingmarket.cli import DEPLOYMENTS_ENV
from provingmarket.deployments import Deployment, MarketRecord


def ape_run(*argv: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["ape", "run", *argv], capture_output=True, text=True, env=env, timeout=timeout)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_deploy_without_network__throwaway_chain__refused_and_nothing_recorded(tmp_path):
    folder = tmp_path / "deployments"
    env = dict(os.environ, **{DEPLOYMENTS_ENV: str(folder)})

    done = ape_run("operator", "deploy", "--account", "TEST::0", env=env)

    assert done.returncode == 1, done.stderr
    [line] = errors(done.stderr)
    assert "--network ethereum:local:foundry is a throwaway chain" in line
    assert "nothing deployed, nothing recorded" in line and "ethereum:local:node" in line
    assert "Traceback" not in done.stderr
    assert not folder.exists() or not any(folder.iterdir())


@pytest.mark.ape_run
def test_deploy__records_identity__stale_record_replaced__live_one_only_with_replace__backups_kept(
    run, deployments_folder, chain
):
    uri = chain.provider.uri
    web3 = chain.provider.web3
    # A record from before a chain restart: same chain id, another genesis.
    stale = Deployment(
        "ethereum:custom", chain.chain_id, "0x" + "12" * 20, 1, 60, genesis_hash="0x" + "ab" * 32
    )
    deployments.save(stale, deployments_folder)

    shown = run("operator", "market", "show", "1")
    assert shown.code == EXIT_WRONG_CHAIN, shown.err
    [line] = shown.error.splitlines()
    assert "belongs to chain" in line and "genesis 0xabababab" in line
    assert f"deploy again: ape run operator deploy --network {uri} --account <account>" in line
    assert "ethereum:local" not in line  # the hint names the network that was used

    first = run("operator", "deploy", "--json", account="TEST::0")  # stale: no --replace needed
    assert first.code == 0, first.err
    record = deployments.load("ethereum:custom", deployments_folder)
    receipt = web3.eth.get_transaction_receipt(record.deploy_tx)
    assert receipt["contractAddress"] == record.registry and receipt["blockNumber"] == record.block
    assert record.version == deployments.SCHEMA_VERSION
    assert record.identity() == ChainIdentity.read(web3, record.registry, record.block)
    assert record.abi_hash == deployments.abi_hash() and record.abi_hash.startswith("0x")
    [kept] = deployments_folder.glob("ethereum-custom.json.*.bak")
    assert deployments.Deployment.from_json(kept.read_text(), "bak").registry == stale.registry

    again = run("operator", "deploy", account="TEST::0")
    assert again.code == 1 and "pass --replace" in again.error
    assert deployments.load("ethereum:custom", deployments_folder).registry == record.registry

    replaced = run("operator", "deploy", "--replace", "--json", account="TEST::0")
    assert replaced.code == 0, replaced.err
    new = deployments.load("ethereum:custom", deployments_folder)
    assert new.registry != record.registry and new.registry == replaced.json()["registry"]
    backups = sorted(deployments_folder.glob("ethereum-custom.json.*.bak"))
    assert len(backups) == 2 and str(backups[-1]) == replaced.json()["backup"]
    assert deployments.Deployment.from_json(backups[-1].read_text(), "bak").registry == record.registry


def test_record__version_1_loads_migrated__version_2_round_trips(tmp_path, chain, registry):
    old = {
        "network": "ethereum:local",
        "chain_id": chain.chain_id,
        "registry": registry.address,
        "block": 0,
        "unbonding_delay": 60,
        "markets": {"1": {"circuit": "square", "verifier": "0x" + "11" * 20}},
    }
    path = deployments.path_for("ethereum:local", tmp_path)
    path.write_text(json.dumps(old))
    record = deployments.load("ethereum:local", tmp_path)
    assert (record.version, record.genesis_hash, record.block_hash) == (1, "", "")
    assert record.markets == {1: MarketRecord("square", "0x" + "11" * 20)}
    record.identity().verify(chain.provider.web3)  # only the chain id to compare: it holds

    record.genesis_hash = ChainIdentity.read(chain.provider.web3).genesis_hash
    record.version = deployments.SCHEMA_VERSION
    deployments.save(record, tmp_path)
    assert json.loads(path.read_text())["version"] == 2
    assert deployments.load("ethereum:local", tmp_path) == record

    path.write_text(json.dumps({**old, "version": 99}))
    with pytest.raises(deployments.DeploymentError, match="schema 99 is newer"):
        deployments.load("ethereum:local", tmp_path)


def test_abi_hash__canonical_json__layout_does_not_change_it(tmp_path):
    abi = json.loads(deployments.REGISTRY_ABI.read_text())
    spaced = tmp_path / "abi.json"
    spaced.write_text(json.dumps(abi, indent=4))
    assert deployments.abi_hash(spaced) == deployments.abi_hash()
    spaced.write_text(json.dumps(abi[1:]))
    assert deployments.abi_hash(spaced) != deployments.abi_hash()


@pytest.mark.parametrize(
    ("network", "variable", "value"),
    [
        ("ethereum:sepolia:node", "SEPOLIA_RPC_URL", None),
        ("ethereum:sepolia:node", "SEPOLIA_RPC_URL", ""),
        ("ethereum:hoodi:node", "HOODI_RPC_URL", " "),
    ],
)
def test_testnet_without_rpc_url__one_line_naming_the_variable(tmp_path, network, variable, value):
    env = {k: v for k, v in os.environ.items() if k != variable}
    env[DEPLOYMENTS_ENV] = str(tmp_path)
    if value is not None:
        env[variable] = value

    done = ape_run("operator", "market", "show", "1", "--network", network, env=env, timeout=60)

    assert done.returncode == 1
    assert errors(done.stderr) == [
        f"error: no RPC URL for {network.rsplit(':', 1)[0]}: set {variable} to your node's or provider's URL "
        f"(export {variable}=https://...) and run the command again"
    ]
    assert "Traceback" not in done.stderr and "RPC at" not in done.stderr  # no public endpoint tried
