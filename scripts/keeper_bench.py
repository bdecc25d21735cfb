"""End to end on anvil (`make bench`; an anvil of its own, started and stopped here, mining
each transaction at once): 1,000 tasks posted at once, then the orderbook
frontend started as its own process (`python -m frontends.orderbook.process`), timed
until every task is assigned.

Twenty provers (fresh accounts, 30 ETH stake each) sit in the square circuit's market with
asks from 0.010 to 0.029 ETH and a capacity of 50 each: exactly enough for the 1,000
tasks. The frontend starts with an empty database, so its time includes reading the
whole history (the backfill) before its first decision. Reported: time to first and last
assignment, tasks assigned per second, the batches and their gas per assignment (from the
receipts), and what the chain would allow: a block's gas limit divided by the gas per
assignment, at 12-second blocks, against which the keeper's rate is judged.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ape
import click
from ape import accounts, chain
from eth_account import Account
from eth_utils import keccak

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.deployments import Deployment, MarketRecord, save
from provingmarket.devnet import ETHER, PROVER_INPUT, Anvil, deploy_stack, send_all, task_terms

ROOT = Path(__file__).resolve().parent.parent
TASKS = 1_000
PROVERS = 20
CAPACITY = 50
BLOCK_SECONDS = 12  # Ethereum's slot


def fresh_key(label: str, owner, ether: int) -> str:
    key = "0x" + keccak(f"keeper-bench-{label}-{time.time_ns()}".encode()).hex()
    owner.transfer(Account.from_key(key).address, ether * ETHER)
    return key


@click.command()
def cli():
    """Time the orderbook frontend assigning 1,000 tasks posted at once, on an anvil of its own."""
    with Anvil() as anvil, ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
        run()


def run() -> None:
    web3 = chain.provider.web3
    owner = accounts.test_accounts[0]
    frontend_key = fresh_key("frontend", owner, 10)
    frontend = Account.from_key(frontend_key).address
    stack = deploy_stack(ape, owner, [frontend])
    registry = stack.registry.address

    for i in range(PROVERS):
        prover = RegistryClient(web3, registry, KeySigner(fresh_key(f"prover-{i}", owner, 40)))
        f = prover.contract.functions
        send_all(
            prover,
            [
                (f.stake(), 30 * ETHER),
                (
                    f.join_market(
                        stack.market_id, CAPACITY, (10 + i) * ETHER // 1000, 60, 0, [stack.mechanism_id]
                    ),
                    0,
                ),
            ],
        )
    requester = RegistryClient(web3, registry, KeySigner(fresh_key("requester", owner, 200)))
    posting = time.perf_counter()
    calls = []
    for i in range(TASKS):
        terms = task_terms(stack.market_id, stack.mechanism_id, salt=i + 1, max_reward=ETHER // 20)
        calls.append(
            (requester.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, ""), terms.escrow())
        )
    send_all(requester, calls)
    posted_in = time.perf_counter() - posting

    with tempfile.TemporaryDirectory() as tmp:
        record = Deployment(
            "ethereum:local",
            chain.chain_id,
            registry,
            0,
            60,
            {stack.market_id: MarketRecord("square", stack.verifier.address)},
        )
        path = save(record, Path(tmp))
        argv = [
            sys.executable, "-m", "frontends.orderbook.process", "--rpc", chain.provider.uri,
            "--deployment", str(path), "--mechanism", str(stack.mechanism_id),
            "--db", str(Path(tmp) / "orderbook.sqlite"), "--poll", "0.1",
        ]  # fmt: skip
        env = dict(os.environ, ORDERBOOK_KEY=frontend_key, PYTHONPATH=str(ROOT))
        lines: list[dict] = []
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        assigned_at: list[float] = []

        def read() -> None:
            for line in process.stderr:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                lines.append(entry)
                if entry.get("event") == "orderbook.assigned":
                    assigned_at.append(time.perf_counter() - started)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 600
            while len(assigned_at) < TASKS and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            reader.join(5)

    batches = [e for e in lines if e.get("event") == "outbox.mined"]
    gas = [web3.eth.get_transaction_receipt(b["tx"])["gasUsed"] for b in batches]
    on_chain = [e for e in RegistryClient(web3, registry).events(["TaskAssigned"]) if e.frontend == frontend]
    first_decision = next((e["ts"] for e in lines if e.get("event") == "orderbook.decision"), None)
    start_line = next((e["ts"] for e in lines if e.get("event") == "orderbook.start"), None)
    nan = float("nan")
    total = assigned_at[-1] if assigned_at else nan
    backfill = first_decision - start_line if first_decision and start_line else nan
    first = assigned_at[0] if assigned_at else nan
    median_gas = statistics.median(gas) if gas else 0
    per_assignment = sum(gas) / max(len(on_chain), 1)
    block_limit = web3.eth.get_block("latest")["gasLimit"]
    per_block = block_limit // per_assignment if per_assignment else 0
    bound = per_block / BLOCK_SECONDS

    click.echo(
        f"\nOrderbook frontend end to end on anvil: {TASKS:,} tasks posted at once (in {posted_in:.1f} s), "
        f"{PROVERS} provers x capacity {CAPACITY}; the frontend started after, with an empty database\n"
    )
    rows = [
        ("tasks assigned on chain", f"{len(on_chain):,} of {TASKS:,}"),
        ("backfill: start to first decision", f"{backfill:.2f} s"),
        ("process start to first assignment mined", f"{first:.2f} s"),
        ("process start to last assignment mined", f"{total:.2f} s"),
        ("tasks assigned per second (whole run)", f"{len(assigned_at) / total:,.0f}"),
        ("assign_batch transactions", f"{len(batches)} (median {median_gas:,.0f} gas)"),
        ("gas per assignment, as batched", f"{per_assignment:,.0f}"),
        ("the chain's bound: assignments per block", f"{per_block:,.0f} (gas limit {block_limit:,})"),
        (f"the chain's bound at {BLOCK_SECONDS} s blocks", f"{bound:,.0f} assignments/s"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        click.echo(f"  {name:<{width}}  {value}")
    rate = len(assigned_at) / total if assigned_at else 0
    verdict = "met" if rate >= bound else "MISSED"
    click.echo(
        f"\ntarget, no slower than the registry's gas allows per block: {rate:,.0f}/s "
        f"vs {bound:,.0f}/s ({verdict})"
    )
