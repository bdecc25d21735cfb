"""The auction frontend under load (`make bench`), on an anvil of its own, with its API in
1, 2 and 4 processes:

    .venv/bin/python -m benches.auction_bench [--provers 100] [--tasks 50] [--processes 1,2,4]
        [--clients 16] [--client-processes 2] [--poll 0.1]

A registry with the square circuit's market on a fresh anvil (mining each transaction at
once, its base fee 1 gwei at the start); `--provers` provers (fresh keys, staked, in the
market, accepting the mechanism, capacity for every task of every run). Then one run per
count of API processes (`--api-processes`): `--tasks` fresh tasks posted at once, the
frontend started as its own process (`python -m frontends.auction.process`, a fresh data
directory, its rate limits off: they are policy, not capacity), and once every auction is
open, every prover bids on every task (provers x tasks bids, each a distinct EIP-712
signature made before the timed phase), sent over HTTP from `--clients` kept-alive
connections spread over `--client-processes` processes (asyncio, requests prepared
beforehand, so the client is not what is measured): the API checks each signature, the
prover's standing and the auction's terms, and stores it sealed in SQLite before it
answers 202. Then the chain's clock is moved to the auctions' close (`evm_mine` with a
timestamp), so a run does not wait out a bidding window sized for slow machines.

Reported per run: bids accepted per second (first request sent to last answer received),
answer latency, the time from the auctions' close to their clearing (the keeper's next
round) and to the assignments mined (the keeper seeing the receipts), with the
assignments checked on chain: every task assigned at its second price; and the fees the
frontend and the provers paid (from the receipts). Judged against 1,000 bids per second
with two or more API processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

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

TARGET = 1_000  # bids per second, with two or more API processes
WINDOW = 120  # seconds of bidding by the chain's clock; each run ends it early (`close_auctions`)
COLLATERAL = ETHER // 10  # each task's, and its maximum reward
PROVING_WINDOW = 3_600  # seconds: no assignment of a run runs out (and is slashed) in a later one


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
    parser.add_argument("--processes", default="1,2,4", help="API process counts, one run each")
    parser.add_argument("--clients", type=int, default=16, help="kept-alive HTTP connections")
    parser.add_argument("--client-processes", type=int, default=2, help="processes the connections share")
    parser.add_argument("--poll", type=float, default=0.1, help="the frontend's seconds between rounds")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    logger.set_level("WARNING")  # no line per setup transaction
    with Anvil(base_fee=BASE_FEE) as anvil, ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
        run(anvil.uri, args.provers, args.tasks, counts, args.clients, args.client_processes, args.poll)


def run(
    rpc: str, n_provers: int, n_tasks: int, counts: list[int], n_clients: int, client_procs: int, poll: float
) -> None:
    """Set up the market, then per count of API processes post the tasks, run the frontend
    as its own process, measure; print the table."""
    market = set_up(n_provers, n_tasks * len(counts))
    started_setup = time.perf_counter()
    prover_keys = fund_provers(market, n_provers, n_tasks * len(counts))
    join_provers(market, prover_keys, n_tasks * len(counts))
    setup_s = time.perf_counter() - started_setup
    options = ("--window", str(WINDOW), "--port", "0", "--prover-rate", "0", "--client-rate", "0")
    reports = []
    for i, count in enumerate(counts):
        first_block = market.web3.eth.block_number + 1
        post_tasks(market, n_tasks, salt=i * n_tasks)
        with logged_frontend(
            AUCTION,
            rpc,
            chain.chain_id,
            market.stack,
            market.frontend_key,
            *options,
            "--api-processes",
            str(count),
            unbonding_delay=3_600,
            poll=poll,
        ) as frontend:
            reports.append(measure(frontend, market, prover_keys, n_tasks, n_clients, client_procs))
        spent = fees_paid(market.web3, first_block)
        reports[-1]["frontend_fees"] = spend_of(spent, [Account.from_key(market.frontend_key).address])
        reports[-1]["processes"] = count
    prover_fees = spend_of(fees_paid(market.web3, 1), [Account.from_key(k).address for k in prover_keys])
    print_report(reports, n_provers, n_tasks, n_clients, client_procs, setup_s, prover_fees)


def set_up(n_provers: int, capacity: int) -> Market:
    """A fresh stack whose mechanism the frontend (a fresh account with 10 ETH) serves, and
    a funder with enough for every prover and task."""
    web3 = chain.provider.web3
    owner = accounts.test_accounts[0]
    frontend_key = fresh_key("frontend")
    frontend = Account.from_key(frontend_key).address
    owner.transfer(frontend, 10 * ETHER)
    stack = deploy_stack(ape, owner, [frontend])
    funder = RegistryClient(web3, stack.registry.address, KeySigner(fresh_key("funder")))
    owner.transfer(funder.signer.address, n_provers * (prover_funds(capacity) + ETHER) + 1_000 * ETHER)
    return Market(web3, stack, frontend_key, funder)


def prover_funds(capacity: int) -> int:
    """A prover's stake: the collateral of `capacity` tasks, plus one ether for fees."""
    return capacity * COLLATERAL + ETHER


def fund_provers(market: Market, n_provers: int, capacity: int) -> list[str]:
    """`n_provers` fresh keys, each sent its stake and an ether for fees, at once; the keys."""
    web3, signer = market.web3, market.funder.signer
    prover_keys = [fresh_key(f"prover-{i}") for i in range(n_provers)]
    nonce = web3.eth.get_transaction_count(signer.address)
    max_fee, tip = fees_from_node(web3)
    hashes = [
        web3.eth.send_raw_transaction(
            signer.sign_transaction(
                {
                    "to": Account.from_key(k).address,
                    "value": prover_funds(capacity) + ETHER,
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


def join_provers(market: Market, prover_keys: list[str], capacity: int) -> None:
    """Each prover stakes the collateral of `capacity` tasks and joins with that capacity,
    asking 0.01 ETH."""
    stack = market.stack
    for key in prover_keys:
        prover = RegistryClient(market.web3, stack.registry.address, KeySigner(key))
        f = prover.contract.functions
        join = f.join_market(stack.market_id, capacity, ETHER // 100, 60, 0, [stack.mechanism_id])
        send_all(prover, [(f.stake(), prover_funds(capacity)), (join, 0)])


def post_tasks(market: Market, n_tasks: int, salt: int) -> None:
    """The funder posts `n_tasks` tasks at once, each up to 0.1 ETH with a 0.1 ETH collateral
    (an hour to prove: the bench proves none)."""
    stack, funder = market.stack, market.funder
    calls = []
    for i in range(n_tasks):
        terms = task_terms(
            stack.market_id,
            stack.mechanism_id,
            salt=salt + i + 1,
            max_reward=COLLATERAL,
            collateral=COLLATERAL,
            proving_window=PROVING_WINDOW,
        )
        calls.append(
            (funder.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, ""), terms.escrow())
        )
    send_all(funder, calls)


def wait(frontend: LoggedProcess, kind: str, count: int, timeout: float, what: str) -> None:
    if not frontend.wait(kind, count, timeout):
        raise RuntimeError(f"{what} not seen within {timeout} s")


def measure(
    frontend: LoggedProcess, market: Market, prover_keys, n_tasks: int, n_clients: int, client_procs: int
) -> dict:
    """Every prover bids on every open auction over HTTP; then the auctions close and are
    cleared and assigned. The figures, with the assignments checked on chain."""
    wait(frontend, "auction.api", 1, 120, "the API")
    url = frontend.events("auction.api")[0]["url"]
    wait(frontend, "auction.opened", n_tasks, 60, "every auction open")
    opened = {e["task"]: e for e in frontend.events("auction.opened")}
    tasks = sorted(opened)
    signing = time.perf_counter()
    bodies, prices = sign_bids(market, prover_keys, tasks)
    signing_s = time.perf_counter() - signing
    servers = [frontend.process.pid, *frontend.events("auction.api")[0].get("pids", [])]
    answered = send_bids(url, bodies, n_clients, client_procs, servers)
    closed_at = close_auctions(market.web3, max(e["closes_at"] for e in opened.values()))
    wait(frontend, "auction.cleared", n_tasks, 60, "every auction cleared")
    wait(frontend, "auction.assigned", n_tasks, 60, "every assignment mined")
    return {
        "bids": len(bodies),
        **answered,
        "signing": signing_s,
        **delays(frontend, closed_at, tasks),
        "right_price": at_second_price(market, prices, tasks),
        "tasks": len(tasks),
        "process_alive": frontend.process.poll() is None,
    }


def sign_bids(market: Market, prover_keys: list[str], tasks: list[str]) -> tuple[list[bytes], dict]:
    """Every prover's bid on every task, signed and encoded as the API takes it; the bodies
    and each task's prices."""
    web3 = market.web3
    expiry = web3.eth.get_block("latest")["timestamp"] + WINDOW + 3_600
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


def close_auctions(web3: Web3, closes_at: int) -> float:
    """Mine a block at the auctions' close (the chain's clock jumps there); the wall time
    it was mined, from which the keeper's clearing is timed."""
    now = web3.eth.get_block("latest")["timestamp"]
    web3.provider.make_request("evm_mine", [max(closes_at, now + 1)])  # type: ignore[arg-type]
    return time.time()


def cpu_seconds(pids: list[int]) -> float:
    """The CPU time (user and system) the processes `pids` have used so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def send_bids(url: str, bodies: list[bytes], n_clients: int, client_procs: int, servers: list[int]) -> dict:
    """POST every bid to the API at `url` over `n_clients` kept-alive connections shared by
    `client_procs` processes; how many were accepted, the answers' statuses, the time from
    the first request to the last answer, the latency, and the CPU time the frontend's
    processes (`servers`) and the clients used meanwhile. The client processes start and
    connect first and are released together."""
    host, port = url.removeprefix("http://").split(":")
    requests = [
        b"POST /bids HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), len(body), body)
        for body in bodies
    ]
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for k in range(client_procs):
        share = requests[k::client_procs]
        connections = n_clients // client_procs + (1 if k < n_clients % client_procs else 0)
        ours, theirs = context.Pipe()
        worker = context.Process(target=client_process, args=(host, int(port), share, connections, theirs))
        worker.start()
        theirs.close()
        pipes.append(ours)
        workers.append(worker)
    for pipe in pipes:
        if pipe.recv() != "connected":
            raise RuntimeError("a client process could not connect")
    cpu = cpu_seconds(servers)
    began = time.perf_counter()
    for pipe in pipes:
        pipe.send("go")
    answers: list[tuple[int, float]] = []
    client_cpu = 0.0
    for pipe in pipes:
        theirs, used = pipe.recv()
        answers.extend(theirs)
        client_cpu += used
    elapsed = time.perf_counter() - began
    server_cpu = cpu_seconds(servers) - cpu
    for worker in workers:
        worker.join(10)
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
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def client_process(host: str, port: int, requests: list[bytes], connections: int, pipe: Connection) -> None:
    """A client process: `connections` kept-alive connections, opened before the start, each
    sending its share of `requests` one after another once the parent says go; sends back
    (status, seconds) per request and the CPU time it used from go to the last answer."""
    answers, used = asyncio.run(_client(host, port, requests, connections, pipe))
    pipe.send((answers, used))


async def _client(
    host: str, port: int, requests: list[bytes], connections: int, pipe: Connection
) -> tuple[list[tuple[int, float]], float]:
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    pipe.send("connected")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "go"
    cpu = time.process_time()

    async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, share: list[bytes]):
        out = []
        for request in share:
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.append((int(head[9:12]), time.perf_counter() - sent))
        writer.close()
        return out

    shares = await asyncio.gather(
        *(post(reader, writer, requests[i::connections]) for i, (reader, writer) in enumerate(streams))
    )
    return [answer for share in shares for answer in share], time.process_time() - cpu


def delays(frontend: LoggedProcess, closed_at: float, tasks: list[str]) -> dict:
    """Seconds from the auctions' close (the block that moved the chain's clock there) to
    each one's clearing and to its assignment mined, and from clearing to mined, from the
    frontend's log."""
    cleared = {e["task"]: e for e in frontend.events("auction.cleared")}
    mined = {e["task"]: e for e in frontend.events("auction.assigned")}
    return {
        "to_clear": [cleared[t]["ts"] - closed_at for t in tasks],
        "to_mine": [mined[t]["ts"] - closed_at for t in tasks],
        "clear_to_mine": [mined[t]["ts"] - cleared[t]["ts"] for t in tasks],
    }


def at_second_price(market: Market, prices: dict[str, list[int]], tasks: list[str]) -> int:
    """How many tasks were assigned on chain at their second lowest bid."""
    client = RegistryClient(market.web3, market.stack.registry.address)
    on_chain = {"0x" + bytes(e.task_id).hex(): e.price for e in client.events(["TaskAssigned"])}
    second = {t: sorted(prices[t])[1] for t in tasks}
    return sum(1 for t in tasks if on_chain.get(t) == second[t])


def print_report(
    reports: list[dict],
    n_provers: int,
    n_tasks: int,
    n_clients: int,
    client_procs: int,
    setup_s: float,
    prover_fees,
) -> None:
    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s"

    signing = sum(r["signing"] for r in reports)
    print(
        f"\nAuction frontend on anvil: {n_provers} provers x {n_tasks} tasks = {reports[0]['bids']:,} signed "
        f"bids per run, from {n_clients} kept-alive HTTP connections in {client_procs} client processes "
        f"(setup {setup_s:.1f} s, signing {signing:.1f} s, not timed)\n"
    )
    header = (
        "API processes",
        "accepted (202)",
        "time",
        "bids/s",
        "latency p50 / p99",
        "CPU per bid: frontend / client",
        "close -> cleared",
        "cleared -> mined",
        "second price",
        "frontend fees",
    )
    rows = [
        (
            str(r["processes"]),
            f"{r['accepted']:,} of {r['bids']:,}"
            + ("" if set(r["statuses"]) == {202} else f" {r['statuses']}"),
            f"{r['elapsed']:.2f} s",
            f"{r['accepted'] / r['elapsed']:,.0f}",
            f"{r['p50'] * 1000:.1f} / {r['p99'] * 1000:.1f} ms",
            f"{r['server_cpu'] / r['bids'] * 1e6:,.0f} / {r['client_cpu'] / r['bids'] * 1e6:,.0f} us",
            median(r["to_clear"]),
            median(r["clear_to_mine"]),
            f"{r['right_price']} of {r['tasks']}",
            r["frontend_fees"].eth(),
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\n  fees paid by the provers (stake and join; bids cost none): {prover_fees.eth()}")
    print(
        "  (medians over the tasks; each run moves the chain's clock to the auctions' close once every bid "
        "is answered, and times the clearing from that block)"
    )
    several = [r for r in reports if r["processes"] >= 2] or reports
    best = max(several, key=lambda r: r["accepted"] / r["elapsed"])
    rate = best["accepted"] / best["elapsed"]
    verdict = "met" if rate >= TARGET and all(r["right_price"] == r["tasks"] for r in reports) else "MISSED"
    print(
        f"\ntarget, at least {TARGET:,} bids accepted per second with two or more API processes: "
        f"{rate:,.0f}/s with {best['processes']} ({verdict})"
    )


if __name__ == "__main__":
    main()
