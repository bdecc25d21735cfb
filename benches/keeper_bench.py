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
assignment, at 12-second blocks, against which the keeper's rate is judged. The chain
starts with a 1 gwei base fee, and the fees the frontend and the requester paid are
reported from the receipts (gas used x effective gas price).
"""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import ape
import click
from ape import accounts, chain
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.devnet import (
    BASE_FEE,
    ETHER,
    PROVER_INPUT,
    Anvil,
    Stack,
    deploy_stack,
    fees_paid,
    send_all,
    spend_of,
    task_terms,
)
from provingmarket.devnet.processes import ORDERBOOK, LoggedProcess, logged_frontend

TASKS = 1_000
PROVERS = 20
CAPACITY = 50
BLOCK_SECONDS = 12  # Ethereum's slot


def fresh_key(label: str, owner, ether: int) -> str:
    key = "0x" + keccak(f"keeper-bench-{label}-{time.time_ns()}".encode()).hex()
    owner.transfer(Account.from_key(key).address, ether * ETHER)
    return key


class Market(NamedTuple):
    """The bench's market on its anvil: the stack and the frontend's key and address."""

    web3: Web3
    owner: object
    stack: Stack
    frontend_key: str
    frontend: str


def main() -> None:
    """`ape run keeper_bench` (scripts/keeper_bench.py)."""
    with Anvil(base_fee=BASE_FEE) as anvil, ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
        run()


def run() -> None:
    """Set up the market, post, run the frontend as its own process, measure, print the table."""
    market = set_up()
    join_provers(market)
    posted_in, requester = post_tasks(market)
    with logged_frontend(
        ORDERBOOK, chain.provider.uri, chain.chain_id, market.stack, market.frontend_key,
        unbonding_delay=60, poll=0.1,
    ) as frontend:  # fmt: skip
        frontend.wait("orderbook.assigned", TASKS, 600)
    print_table(measure(market, frontend, requester), posted_in)


def set_up() -> Market:
    """A fresh stack whose mechanism the frontend (a fresh account with 10 ETH) serves."""
    owner = accounts.test_accounts[0]
    frontend_key = fresh_key("frontend", owner, 10)
    frontend = Account.from_key(frontend_key).address
    stack = deploy_stack(ape, owner, [frontend])
    return Market(chain.provider.web3, owner, stack, frontend_key, frontend)


def join_provers(market: Market) -> None:
    """PROVERS fresh provers stake 30 ETH each and join with CAPACITY, asking 0.010 ETH up."""
    stack = market.stack
    for i in range(PROVERS):
        key = fresh_key(f"prover-{i}", market.owner, 40)
        prover = RegistryClient(market.web3, stack.registry.address, KeySigner(key))
        f = prover.contract.functions
        ask = (10 + i) * ETHER // 1000
        join = f.join_market(stack.market_id, CAPACITY, ask, 60, 0, [stack.mechanism_id])
        send_all(prover, [(f.stake(), 30 * ETHER), (join, 0)])


def post_tasks(market: Market) -> tuple[float, str]:
    """A fresh requester posts TASKS tasks at once; the seconds they took to mine, and its address."""
    stack = market.stack
    key = fresh_key("requester", market.owner, 200)
    requester = RegistryClient(market.web3, stack.registry.address, KeySigner(key))
    posting = time.perf_counter()
    calls = []
    for i in range(TASKS):
        terms = task_terms(stack.market_id, stack.mechanism_id, salt=i + 1, max_reward=ETHER // 20)
        calls.append(
            (requester.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, ""), terms.escrow())
        )
    send_all(requester, calls)
    return time.perf_counter() - posting, Account.from_key(key).address


def measure(market: Market, frontend: LoggedProcess, requester: str) -> dict:
    """The run's figures from the frontend's log, the batches' receipts and the chain."""
    web3 = market.web3
    assigned_at = frontend.seconds("orderbook.assigned")
    batches = frontend.events("outbox.mined")
    gas = [web3.eth.get_transaction_receipt(b["tx"])["gasUsed"] for b in batches]
    events = RegistryClient(web3, market.stack.registry.address).events(["TaskAssigned"])
    on_chain = [e for e in events if e.frontend == market.frontend]
    first_decision = next((e["ts"] for e in frontend.events("orderbook.decision")), None)
    start_line = next((e["ts"] for e in frontend.events("orderbook.start")), None)
    nan = float("nan")
    per_assignment = sum(gas) / max(len(on_chain), 1)
    block_limit = web3.eth.get_block("latest")["gasLimit"]
    per_block = block_limit // per_assignment if per_assignment else 0
    spent = fees_paid(web3, 1)
    return {
        "frontend_fees": spend_of(spent, [market.frontend]),
        "requester_fees": spend_of(spent, [requester]),
        "assigned": len(assigned_at),
        "on_chain": len(on_chain),
        "total": assigned_at[-1] if assigned_at else nan,
        "backfill": first_decision - start_line if first_decision and start_line else nan,
        "first": assigned_at[0] if assigned_at else nan,
        "batches": len(batches),
        "median_gas": statistics.median(gas) if gas else 0,
        "per_assignment": per_assignment,
        "block_limit": block_limit,
        "per_block": per_block,
        "bound": per_block / BLOCK_SECONDS,
    }


def print_table(m: dict, posted_in: float) -> None:
    """The figures as a table, then the verdict against the chain's bound."""
    total, bound, per_block, block_limit = m["total"], m["bound"], m["per_block"], m["block_limit"]
    click.echo(
        f"\nOrderbook frontend end to end on anvil: {TASKS:,} tasks posted at once (in {posted_in:.1f} s), "
        f"{PROVERS} provers x capacity {CAPACITY}; the frontend started after, with an empty database\n"
    )
    rows = [
        ("tasks assigned on chain", f"{m['on_chain']:,} of {TASKS:,}"),
        ("backfill: start to first decision", f"{m['backfill']:.2f} s"),
        ("process start to first assignment mined", f"{m['first']:.2f} s"),
        ("process start to last assignment mined", f"{total:.2f} s"),
        ("tasks assigned per second (whole run)", f"{m['assigned'] / total:,.0f}"),
        ("assign_batch transactions", f"{m['batches']} (median {m['median_gas']:,.0f} gas)"),
        ("gas per assignment, as batched", f"{m['per_assignment']:,.0f}"),
        ("the chain's bound: assignments per block", f"{per_block:,.0f} (gas limit {block_limit:,})"),
        (f"the chain's bound at {BLOCK_SECONDS} s blocks", f"{bound:,.0f} assignments/s"),
        ("fees paid by the frontend (its batches)", m["frontend_fees"].eth()),
        (f"fees paid by the requester ({TASKS:,} posts)", m["requester_fees"].eth()),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        click.echo(f"  {name:<{width}}  {value}")
    rate = m["assigned"] / total if m["assigned"] else 0
    verdict = "met" if rate >= bound else "MISSED"
    click.echo(
        f"\ntarget, no slower than the registry's gas allows per block: {rate:,.0f}/s "
        f"vs {bound:,.0f}/s ({verdict})"
    )
