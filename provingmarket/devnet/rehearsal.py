"""A testnet rehearsal: the whole path a new operator, requester and prover walk on Sepolia,
run against a local anvil that looks like Sepolia (chain id 11155111, a base fee of 1 gwei,
12-second blocks), through the Sepolia network config, each step the real command in a
subprocess with keyfile accounts, as on the real network.

    ape run rehearse                    (12-second blocks: about five minutes; `make rehearse`)
    ape run rehearse --block-time 1     (the short form the tests run)

This module is the rehearsal; scripts/rehearse.py its command.

deploy -> market create (the sample `square` circuit) -> prover stake -> join -> requester
post (a Dutch auction) -> prover lock -> prove -> prover withdraw -> requester withdraw ->
unstake -> withdraw-stake. Each step prints its transactions, gas and fees; the summary
says the total gas, the ETH each account spent on fees, where the task's payment went
and the time taken, and checks that every wei is accounted for (the registry ends empty).

The commands read the project's own ape-config.yaml. The short form (`--block-time`
other than Sepolia's 12 s) runs them in a folder of links to the project whose
ape-config.yaml differs in one value, Sepolia's `block_time`, so that ape polls for
confirmations as often as that chain makes blocks (it sleeps half a block time between
polls: six seconds a transaction at 12 s).

It never touches a real network: SEPOLIA_RPC_URL is set only in the commands' environment,
to the anvil this script starts, and the script refuses any node that is not anvil with
Sepolia's chain id. The accounts (made afresh, in a temporary ape data folder, unlocked by
APE_ACCOUNTS_<alias>_PASSPHRASE) and the deployment record (PROVINGMARKET_DEPLOYMENTS) live
in a temporary folder: the repository's deployments/ is untouched. anvil is stopped, and
the folder removed, however the rehearsal ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from eth_account import Account
from web3 import Web3

from provingmarket.deployments import FOLDER_ENV as DEPLOYMENTS_ENV
from provingmarket.deployments import TESTNET_RPC_ENV
from provingmarket.devnet.chain import Anvil

SEPOLIA_CHAIN_ID = 11_155_111
NETWORK = "ethereum:sepolia:node"
BASE_FEE = 10**9  # 1 gwei
SEPOLIA_BLOCK_TIME = 12  # ape-config.yaml's, Sepolia's
FUNDING = 10 * 10**18  # each account's ETH from anvil's first account
ACCOUNTS = ("operator", "requester", "prover")


class RehearsalError(RuntimeError):
    """A step failed, or the node is not one the rehearsal may use."""


@dataclass
class Step:
    name: str
    account: str
    argv: list[str]
    ok: bool = False
    seconds: float = 0.0
    txs: int = 0
    gas: int = 0
    fee: int = 0  # wei
    output: dict = field(default_factory=dict)
    error: str = ""


def check_node(web3: Any) -> None:
    """Refuse any node but an anvil with Sepolia's chain id: the rehearsal must never
    spend real testnet ETH."""
    chain_id = web3.eth.chain_id
    client = str(web3.client_version)
    if chain_id != SEPOLIA_CHAIN_ID or not client.lower().startswith("anvil"):
        raise RehearsalError(
            f"the node is {client} on chain {chain_id}; the rehearsal runs only on an anvil with "
            f"Sepolia's chain id {SEPOLIA_CHAIN_ID}, never on a real network"
        )


def make_accounts(data_folder: Path) -> dict[str, tuple[str, str]]:
    """alias -> (address, passphrase): a fresh key for each of ACCOUNTS, as the keyfile
    `ape accounts import` writes, in `data_folder`/accounts."""
    folder = data_folder / "accounts"
    folder.mkdir(parents=True)
    made = {}
    for alias in ACCOUNTS:
        key, passphrase = secrets.token_bytes(32), secrets.token_hex(16)
        # A light key derivation (each command decrypts once): these keys live for one
        # rehearsal, in a folder removed after it; `ape accounts import` uses scrypt.
        keyfile = Account.encrypt(key, passphrase, kdf="pbkdf2", iterations=1_000)
        (folder / f"{alias}.json").write_text(json.dumps(keyfile))
        made[alias] = (Account.from_key(key).address, passphrase)
    return made


def project_root() -> Path:
    """The checkout this module runs from (else the current directory: `ape run` runs in it)."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "ape-config.yaml").is_file() else Path.cwd()


def project_view(root: Path, folder: Path, block_time: int) -> Path:
    """Where the commands run: the project itself at Sepolia's block time; else a folder
    of links to its files with an ape-config.yaml that differs only in Sepolia's block_time."""
    if block_time == SEPOLIA_BLOCK_TIME:
        return root
    view = folder / "project"
    view.mkdir()
    for item in root.iterdir():
        if item.name not in ("ape-config.yaml", "deployments", ".ape"):
            (view / item.name).symlink_to(item)
    config = yaml.safe_load((root / "ape-config.yaml").read_text())
    config["ethereum"]["sepolia"]["block_time"] = block_time
    (view / "ape-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return view


class Rehearsal:
    def __init__(self, web3: Any, env: dict[str, str], addresses: dict[str, str], echo, cwd: Path) -> None:
        self.web3 = web3
        self.env = env
        self.cwd = cwd
        self.addresses = addresses
        self.echo = echo
        self.steps: list[Step] = []

    def run(self, name: str, script: str, *args: str, account: str) -> dict:
        """One step: `ape run SCRIPT ARGS --network ethereum:sepolia:node --account ACCOUNT
        --json`; its transactions are those of ACCOUNT mined meanwhile."""
        argv = ["ape", "run", script, *args, "--network", NETWORK, "--account", account, "--json"]
        step = Step(name, account, argv)
        self.steps.append(step)
        first = self.web3.eth.block_number + 1
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=900)
        step.seconds = time.monotonic() - started
        for tx in self._sent_by(self.addresses[account], first):
            receipt = self.web3.eth.get_transaction_receipt(tx)
            step.txs += 1
            step.gas += receipt["gasUsed"]
            step.fee += receipt["gasUsed"] * receipt["effectiveGasPrice"]
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            step.error = (errors or done.stderr.strip().splitlines()[-1:] or ["no output"])[-1]
            self.echo(f"{name:<18} FAILED: {step.error}")
            raise RehearsalError(f"step {name} failed: {step.error}")
        step.ok = True
        step.output = json.loads(done.stdout)
        self.echo(
            f"{name:<18} {account:<10} {step.txs} tx  {step.gas:>9,} gas  "
            f"{_ether(step.fee)}  {step.seconds:5.1f} s"
        )
        return step.output

    def _sent_by(self, address: str, first: int) -> list[bytes]:
        sent = []
        for number in range(first, self.web3.eth.block_number + 1):
            block = self.web3.eth.get_block(number, full_transactions=True)
            sent += [tx["hash"] for tx in block["transactions"] if tx["from"] == address]
        return sent

    def wait_until(self, timestamp: int) -> None:
        """Until the chain's clock reaches `timestamp` (blocks keep coming every block time)."""
        while self.web3.eth.get_block("latest")["timestamp"] < timestamp:
            time.sleep(0.5)


def rehearse(block_time: int, unbonding_delay: int, echo) -> dict:
    """The whole path on a Sepolia-like anvil; returns the summary (see `summary`)."""
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="rehearse-"))
    anvil = None
    try:
        anvil = Anvil(block_time=block_time, chain_id=SEPOLIA_CHAIN_ID, base_fee=BASE_FEE)
        web3: Any = Web3(Web3.HTTPProvider(anvil.uri, request_kwargs={"timeout": 30}))
        check_node(web3)
        echo(
            f"anvil at {anvil.uri} (pid {anvil.process.pid}): chain {SEPOLIA_CHAIN_ID}, "
            f"{block_time} s blocks, base fee {BASE_FEE // 10**9} gwei; commands use --network {NETWORK}"
        )
        accounts = make_accounts(folder / "ape")
        addresses = {alias: address for alias, (address, _) in accounts.items()}
        faucet = web3.eth.accounts[0]
        for address in addresses.values():  # the faucet step of a real testnet
            web3.eth.wait_for_transaction_receipt(
                web3.eth.send_transaction({"from": faucet, "to": address, "value": FUNDING}), timeout=120
            )
        root = project_root()
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])),
                TESTNET_RPC_ENV["sepolia"]: anvil.uri,
                "APE_DATA_FOLDER": str(folder / "ape"),
                DEPLOYMENTS_ENV: str(folder / "deployments"),
            }
        )
        env.update({f"APE_ACCOUNTS_{alias}_PASSPHRASE": p for alias, (_, p) in accounts.items()})
        before = {alias: web3.eth.get_balance(a) for alias, a in addresses.items()}
        r = Rehearsal(web3, env, addresses, echo, project_view(root, folder, block_time))
        deployed = r.run(
            "deploy", "operator", "deploy", "--unbonding-delay", str(unbonding_delay), account="operator"
        )
        market = r.run("market create", "operator", "market", "create", "square", account="operator")
        market_id = str(market["market_id"])
        r.run("stake", "prover", "stake", "1", account="prover")
        r.run(
            "join", "prover", "join", market_id, "--capacity", "1", "--ask", "0.01", "--proving-time", "60",
            account="prover",
        )  # fmt: skip
        posted = r.run(
            "post", "requester", "post", market_id, "--secret", "7", "--mechanism", "2",
            "--start-price", "0.01", "--reward", "0.02", account="requester",
        )  # fmt: skip
        task = posted["task_id"]
        locked = r.run("lock", "prover", "lock", task, account="prover")
        proved = r.run("prove", "prover", "prove", task, account="prover")
        earned = r.run("prover withdraw", "prover", "withdraw", account="prover")
        refunded = r.run("requester withdraw", "requester", "withdraw", account="requester")
        unstaked = r.run("unstake", "prover", "unstake", "1", account="prover")
        ready_at = web3.eth.get_block("latest")["timestamp"] + int(unstaked["unbonding_ready_in"])
        r.wait_until(ready_at)
        r.run("withdraw-stake", "prover", "withdraw-stake", account="prover")
        after = {alias: web3.eth.get_balance(a) for alias, a in addresses.items()}
        return summary(
            r,
            before,
            after,
            registry_left=web3.eth.get_balance(deployed["registry"]),
            price=int(locked["price"]),
            paid=int(proved["paid"]),
            escrow=int(posted["escrow"]),
            earned=int(earned["withdrawn"]),
            refunded=int(refunded["amount"]),
            seconds=time.monotonic() - started,
            anvil_pid=anvil.process.pid,
            block_time=block_time,
        )
    finally:
        if anvil is not None:
            anvil.stop()
            echo(f"anvil stopped (pid {anvil.process.pid}, exit code {anvil.process.returncode})")
        shutil.rmtree(folder, ignore_errors=True)


def summary(r: Rehearsal, before: dict, after: dict, **figures) -> dict:
    """The steps, and per account: ETH before and after, fees paid, and what moved
    otherwise (the task's payment, the stake that came back)."""
    fees = {alias: sum(s.fee for s in r.steps if s.account == alias) for alias in ACCOUNTS}
    accounts = {
        alias: {
            "address": r.addresses[alias],
            "before": before[alias],
            "after": after[alias],
            "fees": fees[alias],
            "moved": after[alias] - before[alias] + fees[alias],  # beside the fees
        }
        for alias in ACCOUNTS
    }
    return {
        "steps": [asdict(s) | {"argv": " ".join(s.argv[:-1])} for s in r.steps],
        "txs": sum(s.txs for s in r.steps),
        "gas": sum(s.gas for s in r.steps),
        "fees": sum(fees.values()),
        "accounts": accounts,
        **figures,
    }


def _ether(wei: int) -> str:
    return f"{'-' if wei < 0 else ''}{Web3.from_wei(abs(wei), 'ether'):.8f} ETH"


def report(data: dict) -> str:
    a = data["accounts"]
    lines = [
        "",
        f"{len(data['steps'])} steps, {data['txs']} transactions, {data['gas']:,} gas, "
        f"{_ether(data['fees'])} in fees, {data['seconds']:.0f} s ({data['block_time']} s blocks)",
    ]
    for alias, acc in a.items():
        lines.append(
            f"  {alias:<10} fees {_ether(acc['fees'])}; besides fees {_ether(acc['moved'])} "
            f"({_ether(acc['before'])} -> {_ether(acc['after'])})"
        )
    lines += [
        f"  the task: escrow {_ether(data['escrow'])}, locked at {_ether(data['price'])}, paid to the prover "
        f"{_ether(data['paid'])}, refunded to the requester {_ether(data['refunded'])}",
        f"  the registry holds {data['registry_left']} wei at the end",
    ]
    return "\n".join(lines)


__all__ = ["SEPOLIA_CHAIN_ID", "RehearsalError", "check_node", "rehearse", "report"]
