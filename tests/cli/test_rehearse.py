"""`ape run rehearse --block-time 1`: the testnet path as real commands through the Sepolia
network config, on an anvil that looks like Sepolia; every step succeeds, every wei is
accounted for, anvil is stopped, and no other node is ever used."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from provingmarket.devnet.rehearsal import SEPOLIA_CHAIN_ID, RehearsalError, check_node

STEPS = [
    "deploy",
    "market create",
    "stake",
    "join",
    "post",
    "lock",
    "prove",
    "prover withdraw",
    "requester withdraw",
    "unstake",
    "withdraw-stake",
]


def test_rehearse_short_form__every_step_succeeds__balances_add_up__anvil_stopped(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SEPOLIA_RPC_URL"}
    env["PROVINGMARKET_DEPLOYMENTS"] = str(tmp_path / "not-used")  # the rehearsal uses its own folder
    done = subprocess.run(
        ["ape", "run", "rehearse", "--block-time", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    steps = data["steps"]
    assert [s["name"] for s in steps] == STEPS
    for step in steps:
        assert step["ok"] and step["txs"] >= 1 and step["gas"] > 0 and step["fee"] > 0, step
        assert "--network ethereum:sepolia:node" in step["argv"]
    assert data["txs"] == sum(s["txs"] for s in steps) and data["gas"] == sum(s["gas"] for s in steps)
    # A base fee of 1 gwei: every transaction paid at least that per gas.
    assert data["fees"] >= data["gas"] * 10**9

    accounts = data["accounts"]  # "moved": an account's change beside the fees its steps paid
    # The requester's escrow went to the prover (the locked price) and back to the requester
    # (the rest); the operator only paid fees; the stake came back whole; nothing is left.
    assert data["paid"] == data["price"] and data["refunded"] == data["escrow"] - data["price"]
    assert accounts["requester"]["moved"] == -data["price"]
    assert accounts["prover"]["moved"] == data["price"] == data["earned"]
    assert accounts["operator"]["moved"] == 0
    assert data["registry_left"] == 0

    # The rehearsal waited for its anvil (a return code exists only once the child is gone);
    # no look at pids from here, which could be anyone's by now.
    pid = data["anvil_pid"]
    assert re.search(rf"anvil stopped \(pid {pid}, exit code -?\d+\)", done.stderr), done.stderr[-1000:]
    assert not (tmp_path / "not-used").exists()


def test_check_node__refuses_any_node_but_a_sepolia_like_anvil(chain):
    web3 = chain.provider.web3  # this session's anvil: chain id 31337
    assert web3.eth.chain_id != SEPOLIA_CHAIN_ID
    with pytest.raises(RehearsalError, match="runs only on an anvil with Sepolia's chain id 11155111"):
        check_node(web3)
