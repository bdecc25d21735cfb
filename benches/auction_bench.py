"""The auction frontend under load (`make bench`), on an anvil of its own:

    .venv/bin/python -m benches.auction_bench [--provers 100] [--tasks 50] [--clients 16] [--poll 0.1]

A registry with the square circuit's market on a fresh anvil (mining each transaction at
once, its base fee 1 gwei at the start); `--provers` provers (fresh keys, staked, in the
market, accepting the mechanism, capacity for every task) and `--tasks` tasks posted at
once. The frontend runs as its own
process (`python -m frontends.auction.process`), its rate limits off (they are policy,
not capacity: the question is how many bids the API can take). Once every auction is
open, every prover bids on every task (provers x tasks bids, each a distinct EIP-712
signature made beforehand), sent over HTTP from `--clients` threads with a kept-alive
connection each, in this process: the API checks each signature, the prover's standing
and the auction's terms, and stores it sealed in SQLite before it answers 202.

Reported: bids accepted per second (first request sent to last answer received), answer
latency, and once the auctions close, the time from each auction's close (the chain's
clock) to its clearing (the keeper's next round) and to its assignment mined (the keeper
seeing the receipt), with the assignments checked on chain: every task assigned at its
second price, and the fees the frontend and the provers paid (from the receipts). Judged
against 500 bids per second.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ape
from ape import accounts, chain
from ape.logging import logger
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
    fees_from_node,
    fees_paid,
    send_all,
    spend_of,
    task_terms,
)
from provingmarket.devnet.processes import AUCTION, LoggedProcess, logged_frontend
from provingmarket.formats import sign_bid

TARGET = 500  # bids per second
WINDOW = 30  # seconds of bidding: the bids must all land inside it


def fresh_key(label: str) -> str:
    return "0x" + keccak(f"auction-bench-{label}-{time.time_ns()}".encode()).hex()


@dataclass
class Market:
    """The bench's market on its anvil: the stack, the frontend's key, and the funder, who
    funds the provers and posts the tasks."""

    web3: Web3
    stack: Stack
    frontend_key: str
    funder: RegistryClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provers", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--poll", type=float, default=0.1, help="the frontend's seconds between rounds")
    args = parser.parse_args()
    logger.set_level("WARNING")  # no line per setup transaction
    with Anvil(base_fee=BASE_FEE) as anvil, ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
        run(anvil.uri, args.provers, args.tasks, args.clients, args.poll)


def run(rpc: str, n_provers: int, n_tasks: int, n_clients: int, poll: float) -> None:
    """Set up the market, run the frontend as its own process, measure, print the table."""
    market = set_up(n_provers)
    started_setup = time.perf_counter()
    prover_keys = fund_provers(market, n_provers)
    join_provers(market, prover_keys, n_tasks)
    post_tasks(market, n_tasks)
    setup_s = time.perf_counter() - started_setup
    options = ("--window", str(WINDOW), "--port", "0", "--prover-rate", "0", "--client-rate", "0")
    with logged_frontend(
        AUCTION,
        rpc,
        chain.chain_id,
        market.stack,
        market.frontend_key,
        *options,
        unbonding_delay=3_600,
        poll=poll,
    ) as frontend:
        report = measure(frontend, market, prover_keys, n_tasks, n_clients)
    print_report(report, n_provers, n_tasks, n_clients, setup_s)


def set_up(n_provers: int) -> Market:
    """A fresh stack whose mechanism the frontend (a fresh account with 10 ETH) serves, and
    a funder with enough for every prover and task."""
    web3 = chain.provider.web3
    owner = accounts.test_accounts[0]
    frontend_key = fresh_key("frontend")
    frontend = Account.from_key(frontend_key).address
    owner.transfer(frontend, 10 * ETHER)
    stack = deploy_stack(ape, owner, [frontend])
    funder = RegistryClient(web3, stack.registry.address, KeySigner(fresh_key("funder")))
    owner.transfer(funder.signer.address, (n_provers * 7 + 100) * ETHER)
    return Market(web3, stack, frontend_key, funder)


def fund_provers(market: Market, n_provers: int) -> list[str]:
    """`n_provers` fresh keys, 7 ETH each from the funder, sent at once; the keys."""
    web3, signer = market.web3, market.funder.signer
    prover_keys = [fresh_key(f"prover-{i}") for i in range(n_provers)]
    nonce = web3.eth.get_transaction_count(signer.address)
    max_fee, tip = fees_from_node(web3)
    hashes = [
        web3.eth.send_raw_transaction(
            signer.sign_transaction(
                {
                    "to": Account.from_key(k).address,
                    "value": 7 * ETHER,
                    "gas": 21_000,
                    "nonce": nonce + i,
                    "chainId": web3.eth.chain_id,
                    "maxFeePerGas": max_fee,
                    "maxPriorityFeePerGas": tip,
                }
            )
        )
        for i, k in enumerate(prover_keys)
    ]
    for h in hashes:
        web3.eth.wait_for_transaction_receipt(h, timeout=120)
    return prover_keys


def join_provers(market: Market, prover_keys: list[str], n_tasks: int) -> None:
    """Each prover stakes 6 ETH and joins with capacity for every task, asking 0.01 ETH."""
    stack = market.stack
    for key in prover_keys:
        prover = RegistryClient(market.web3, stack.registry.address, KeySigner(key))
        f = prover.contract.functions
        join = f.join_market(stack.market_id, n_tasks, ETHER // 100, 60, 0, [stack.mechanism_id])
        send_all(prover, [(f.stake(), 6 * ETHER), (join, 0)])  # a 0.1 ETH collateral for each of 50 tasks


def post_tasks(market: Market, n_tasks: int) -> None:
    """The funder posts `n_tasks` tasks at once, each up to 0.1 ETH with a 0.1 ETH collateral."""
    stack, funder = market.stack, market.funder
    calls = []
    for i in range(n_tasks):
        terms = task_terms(
            stack.market_id, stack.mechanism_id, salt=i + 1, max_reward=ETHER // 10, collateral=ETHER // 10
        )
        calls.append(
            (funder.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, ""), terms.escrow())
        )
    send_all(funder, calls)


def wait(frontend: LoggedProcess, kind: str, count: int, timeout: float, what: str) -> None:
    if not frontend.wait(kind, count, timeout):
        raise RuntimeError(f"{what} not seen within {timeout} s")


def measure(frontend: LoggedProcess, market: Market, prover_keys, n_tasks: int, n_clients: int) -> dict:
    """Every prover bids on every open auction over HTTP; then the auctions clear and are
    assigned. The figures, with the assignments checked on chain."""
    wait(frontend, "auction.api", 1, 60, "the API")
    url = frontend.events("auction.api")[0]["url"]
    wait(frontend, "auction.opened", n_tasks, 60, "every auction open")
    opened = {e["task"]: e for e in frontend.events("auction.opened")}
    tasks = sorted(opened)
    signing = time.perf_counter()
    bodies, prices = sign_bids(market, prover_keys, tasks)
    signing_s = time.perf_counter() - signing
    answered = send_bids(url, bodies, n_clients)
    # The auctions close WINDOW seconds after they opened; then cleared and assigned.
    wait(frontend, "auction.cleared", n_tasks, WINDOW + 60, "every auction cleared")
    wait(frontend, "auction.assigned", n_tasks, 60, "every assignment mined")
    spent = fees_paid(market.web3, 1)
    return {
        "frontend_fees": spend_of(spent, [Account.from_key(market.frontend_key).address]),
        "prover_fees": spend_of(spent, [Account.from_key(k).address for k in prover_keys]),
        "bids": len(bodies),
        **answered,
        "signing": signing_s,
        **delays(frontend, opened, tasks),
        "right_price": at_second_price(market, prices, tasks),
        "tasks": len(tasks),
        "process_alive": frontend.process.poll() is None,
    }


def sign_bids(market: Market, prover_keys: list[str], tasks: list[str]) -> tuple[list[bytes], dict]:
    """Every prover's bid on every task, signed and encoded as the API takes it; the bodies
    and each task's prices."""
    web3 = market.web3
    expiry = web3.eth.get_block("latest")["timestamp"] + 3_600
    chain_id, registry = web3.eth.chain_id, market.stack.registry.address
    bodies: list[bytes] = []
    prices: dict[str, list[int]] = {t: [] for t in tasks}
    for p, key in enumerate(prover_keys):
        prover = Account.from_key(key).address
        for t, task in enumerate(tasks):
            price = ETHER // 1000 * (1 + (p * 7 + t * 13) % 97)  # distinct enough, below the maximum
            prices[task].append(price)
            signature = sign_bid(key, chain_id, registry, bytes.fromhex(task[2:]), price, expiry, 0)
            bid = {
                "task_id": task,
                "prover": prover,
                "min_price": str(price),
                "expiry": expiry,
                "nonce": 0,
                "signature": "0x" + signature.hex(),
            }
            bodies.append(json.dumps(bid).encode())
    return bodies, prices


def send_bids(url: str, bodies: list[bytes], n_clients: int) -> dict:
    """POST every bid to the API at `url` from `n_clients` threads, a kept-alive connection
    each; how many were accepted, the answers' statuses, the time taken and the latency."""
    host, port = url.removeprefix("http://").split(":")
    local = threading.local()

    def post(body: bytes) -> tuple[int, float]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        sent = time.perf_counter()
        conn.request("POST", "/bids", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        return answer.status, time.perf_counter() - sent

    began = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        answers = list(pool.map(post, bodies))
    elapsed = time.perf_counter() - began
    statuses: dict[int, int] = {}
    for status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    latencies = sorted(latency for _, latency in answers)
    return {
        "accepted": sum(1 for status, _ in answers if status == 202),
        "statuses": statuses,
        "elapsed": elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


def delays(frontend: LoggedProcess, opened: dict, tasks: list[str]) -> dict:
    """Seconds from each auction's close (the chain's clock) to its clearing and to its
    assignment mined, and from clearing to mined, from the frontend's log."""
    closes_at = {task: opened[task]["closes_at"] for task in tasks}
    cleared = {e["task"]: e for e in frontend.events("auction.cleared")}
    mined = {e["task"]: e for e in frontend.events("auction.assigned")}
    return {
        "to_clear": [cleared[t]["ts"] - closes_at[t] for t in tasks],
        "to_mine": [mined[t]["ts"] - closes_at[t] for t in tasks],
        "clear_to_mine": [mined[t]["ts"] - cleared[t]["ts"] for t in tasks],
    }


def at_second_price(market: Market, prices: dict[str, list[int]], tasks: list[str]) -> int:
    """How many tasks were assigned on chain at their second lowest bid."""
    client = RegistryClient(market.web3, market.stack.registry.address)
    on_chain = {"0x" + bytes(e.task_id).hex(): e.price for e in client.events(["TaskAssigned"])}
    second = {t: sorted(prices[t])[1] for t in tasks}
    return sum(1 for t in tasks if on_chain.get(t) == second[t])


def print_report(r: dict, n_provers: int, n_tasks: int, n_clients: int, setup_s: float) -> None:
    rate = r["accepted"] / r["elapsed"]

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"

    print(
        f"\nAuction frontend on anvil: {n_provers} provers x {n_tasks} tasks = {r['bids']:,} signed bids "
        f"from {n_clients} HTTP clients (setup {setup_s:.1f} s, signing {r['signing']:.1f} s, not timed)\n"
    )
    rows = [
        ("bids accepted (202)", f"{r['accepted']:,} of {r['bids']:,} {r['statuses']}"),
        ("time to answer them all", f"{r['elapsed']:.2f} s"),
        ("bids accepted per second", f"{rate:,.0f}"),
        ("answer latency", f"p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms"),
        ("auction close -> cleared (keeper round)", spread(r["to_clear"])),
        ("cleared -> assignment mined (seen)", spread(r["clear_to_mine"])),
        ("auction close -> assignment mined", spread(r["to_mine"])),
        ("tasks assigned at the second price", f"{r['right_price']} of {r['tasks']}"),
        ("fees paid by the frontend (its assignments)", r["frontend_fees"].eth()),
        ("fees paid by the provers (stake and join; bids cost none)", r["prover_fees"].eth()),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(
        "\n  (close times are the chain's clock in whole seconds: close -> cleared is within a second "
        "plus a keeper round)"
    )
    verdict = "met" if rate >= TARGET else "MISSED"
    print(f"\ntarget, at least {TARGET} bids accepted per second: {rate:,.0f}/s ({verdict})")


if __name__ == "__main__":
    main()
