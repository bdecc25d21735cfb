"""The prover agent's cost model and what it does with it: the least price worth proving
for (provingmarket/costs.py, with the registry's price formulas checked against the
registry's own views), then the agent as a prover runs it against this session's anvil,
with real Groth16 proofs: it races only the OPEN_RACE tasks that pay its floor, locks a
DUTCH task once the rising price passes its floor, and bids its floor in auctions.

The auction frontend is being written alongside; `AuctionStub` below stands in for its
HTTP API (GET /auctions, POST /bids) as a test double of that protocol: a small
http.server on 127.0.0.1 that lists auctions of tasks really posted on the chain, checks
that each bid's signature recovers to the prover over `bid_typed_data`, and records what
it was sent. Winning is then the registry's own check: the test, as the mechanism's
frontend, assigns a task with the bid the stub received, and the agent proves it. The
real frontend and agent are tested together end to end where the frontend is.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.costs import (
    CostModel,
    dutch_price,
    dutch_time_for,
    price_for_reward,
    reward_at,
)
from provingmarket.formats import DUTCH, OPEN_RACE, bid_typed_data
from tests.factories import (
    ETHER,
    SLOW_BACKEND,
    address,
    backend_file,
    for_task,
    free_port,
    item,
    make_terms,
    proofs,
    run_agent_cli,
    spawn_agent,
    task_id,
    wait_until,
)

ASK = ETHER // 100
# The strategy the process tests run: 0.04 ETH a proving second, 2% of the collateral
# expected lost to slashes, 10% margin. With the declared proving time (1 s) and anvil's
# 1 gwei, an assigned task with 0.5 ETH collateral is worth about 0.055 ETH.
STRATEGY = ("--cost-per-second", "0.04", "--risk-rate", "0.02", "--price-margin", "0.1")
MODEL = CostModel(cost_per_second=ETHER * 4 // 100, risk_rate="0.02", margin="0.1")


# ------------------------------------------------------------------ the cost model


# ------------------------------------------------------------------ the registry's formulas


def terms_with(**overrides):
    return make_terms(1, DUTCH, posted_at=1_000, **overrides)


def test_dutch_price__matches_the_registry_view_and_dutch_time_for_inverts_it(registry_math, registry):
    cases = [
        terms_with(max_reward=ETHER // 10, start_price=ETHER // 100, ramp=8),
        terms_with(max_reward=10**18 + 7, start_price=3, ramp=7_919),
        terms_with(max_reward=ETHER, start_price=ETHER, ramp=50),
        terms_with(max_reward=ETHER, start_price=0, ramp=0),
    ]
    for terms in cases:
        span = max(terms.ramp, 1)
        for at in sorted({0, 999, 1_000, 1_001, 1_000 + span // 3, 1_000 + span - 1, 1_000 + span, 5_000}):
            assert dutch_price(terms, at) == registry_math.dutch_price(terms.as_tuple(), at), (terms, at)
        for price in (0, terms.start_price, (terms.start_price + terms.max_reward) // 2, terms.max_reward):
            at = dutch_time_for(terms, price)
            assert registry_math.dutch_price(terms.as_tuple(), at) >= price
            if at > terms.posted_at:
                assert registry_math.dutch_price(terms.as_tuple(), at - 1) < price
        assert dutch_time_for(terms, terms.max_reward + 1) is None


def test_reward_at__matches_the_registry_view_and_price_for_reward_inverts_it(registry_math, registry):
    decaying = terms_with(proving_window=300, decay=True, decay_floor=ETHER // 100)
    flat = terms_with(proving_window=300)
    deadline = 2_000
    for terms in (decaying, flat):
        for price in (0, ETHER // 200, ETHER // 10):
            for at in (1_000, 1_700, 1_999, 2_000, 2_500):
                assert reward_at(terms, price, deadline, at) == registry_math.reward_at(
                    terms.as_tuple(), price, deadline, at
                ), (terms.decay, price, at)
        for wanted in (ETHER // 200, ETHER // 100, ETHER // 20 + 1):
            for remaining in (300, 200.5, 7, 1):
                price = price_for_reward(terms, wanted, remaining)
                at = deadline - math.floor(remaining)

                def pays(p, terms=terms, at=at):
                    return registry_math.reward_at(terms.as_tuple(), p, deadline, at)

                assert pays(price) >= wanted > pays(price - 1), (terms.decay, wanted, remaining)
    # Past the deadline a decaying reward is its floor, whatever the price.
    assert price_for_reward(decaying, ETHER // 20, 0) is None
    assert price_for_reward(flat, ETHER // 20, 0) == ETHER // 20


# ------------------------------------------------------------------ the agent


@pytest.fixture
def joined(funded, chain):
    """joined(stack, capacity=1) -> (key, address): a fresh prover, staked 5 ETH, in the
    stack's market (ask 0.01 ETH, declared proving time 1 s), accepting its mechanism."""

    def join(stack, capacity: int = 1):
        key = funded()
        client = RegistryClient(chain.provider.web3, stack.registry.address, KeySigner(key))
        client.transact("stake", value=5 * ETHER)
        client.transact("join_market", stack.market_id, capacity, ASK, 1, 0, [stack.mechanism_id])
        return key, address(key)

    return join


@pytest.fixture
def start_agent(spawn, tmp_path):
    """start_agent(stack, key, *options) -> the agent's Process, once it logged agent.start."""

    def start(stack, key: str, *options: str):
        return spawn_agent(spawn, stack, key, tmp_path / "agent", *options)

    return start


def node_gas_price(chain) -> int:
    web3 = chain.provider.web3
    return (web3.eth.get_block("pending").get("baseFeePerGas") or 0) + web3.eth.max_priority_fee


def started_cost(agent, stack, chain) -> dict:
    """The agent's first agent.cost line for the stack's market, its gas price checked."""
    cost = agent.wait_for("agent.cost", where=lambda line: line["market"] == stack.market_id)[0]
    assert cost["reason"] == "start" and cost["expected_s"] == 1.0
    assert cost["gas_price"] == node_gas_price(chain) > 0
    return cost


def test_agent__open_races__races_only_those_paying_the_floor(
    make_stack, keeper, post, joined, start_agent, tmp_path, chain
):
    stack = make_stack([keeper.address])
    key, me = joined(stack)
    agent = start_agent(stack, key, "--backend", backend_file(tmp_path, SLOW_BACKEND), *STRATEGY)
    cost = started_cost(agent, stack, chain)
    # A race risks no collateral: proving time and gas, plus the margin.
    floor = MODEL.least_price(1.0, cost["gas_price"], 0)
    assert cost["race_floor"] == floor and 0.044 * ETHER < floor < 0.045 * ETHER

    cheap = post(stack, mechanism_id=OPEN_RACE, max_reward=3 * ETHER // 100)
    rich = post(stack, mechanism_id=OPEN_RACE, max_reward=ETHER // 10)

    paid = agent.wait_for("agent.paid", where=for_task(stack, rich), timeout=60)[0]
    assert [(e.prover, e.paid) for e in proofs(stack, rich)] == [(me, ETHER // 10)] and paid[
        "paid"
    ] == ETHER // 10
    raced = agent.events("agent.race")
    assert [line["task"] for line in raced] == ["0x" + task_id(stack, rich).hex()]
    assert raced[0]["reward"] == ETHER // 10 and raced[0]["floor"] == floor
    passed = agent.wait_for("agent.pass", where=for_task(stack, cheap))[0]
    assert passed["reward"] == 3 * ETHER // 100 < passed["floor"] == floor and passed["race"] is True
    time.sleep(1)  # rounds after the rich race's proof (and its longer measured time)
    assert not proofs(stack, cheap)
    assert not [line for line in agent.events("agent.proving") if for_task(stack, cheap)(line)]


def test_agent__dutch_task__locked_once_its_price_passes_the_floor_then_proven_and_paid(
    make_stack, keeper, post, joined, start_agent, chain
):
    stack = make_stack([keeper.address])
    key, me = joined(stack)
    agent = start_agent(stack, key, *STRATEGY)
    cost = started_cost(agent, stack, chain)
    collateral = ETHER // 2
    # Proving, gas of the lock and the proof, 2% of the collateral, then 10%: ~0.0554 ETH.
    floor = MODEL.least_price(1.0, cost["gas_price"], collateral, needs_lock=True)
    assert 0.055 * ETHER < floor < 0.056 * ETHER
    # agent.cost says the floor of a lock at the market's least collateral
    assert cost["lock_floor"] == MODEL.least_price(
        1.0, cost["gas_price"], cost["collateral"], needs_lock=True
    )

    # From 0.01 to 0.1 ETH over 8 s: the floor is passed about 4 s after posting.
    terms = post(
        stack,
        mechanism_id=DUTCH,
        max_reward=ETHER // 10,
        start_price=ETHER // 100,
        ramp=8,
        collateral=collateral,
    )
    passes_at = dutch_time_for(terms, floor)
    assert terms.posted_at + 3 <= passes_at <= terms.posted_at + 5

    wait = agent.wait_for("agent.dutch_wait", where=for_task(stack, terms))[0]
    assert wait["price"] < floor == wait["floor"] == wait["target"] and wait["at"] == passes_at
    lock = agent.wait_for("agent.lock", where=for_task(stack, terms), timeout=30)[0]
    assert lock["price"] >= floor == lock["floor"]
    paid = agent.wait_for("agent.paid", where=for_task(stack, terms), timeout=60)[0]

    [assigned] = stack.client.events(["TaskAssigned"], task_id=task_id(stack, terms))
    locked_at = chain.provider.web3.eth.get_block(assigned.block)["timestamp"]
    assert assigned.prover == me and assigned.frontend == "0x" + "00" * 20
    assert assigned.price == dutch_price(terms, locked_at) >= floor
    assert passes_at <= locked_at <= passes_at + 5  # not before the floor, and soon after it
    assert [(e.prover, e.paid) for e in proofs(stack, terms)] == [(me, assigned.price)]
    assert paid["paid"] == assigned.price
    # stake, join, one lock, one proof
    assert chain.provider.web3.eth.get_transaction_count(me) == 4
    assert len(agent.events("agent.lock")) == 1


class AuctionStub:
    """Stands in for the auction frontend's HTTP API (a test double of the protocol, see
    the module docstring): GET /auctions lists `auctions`; POST /bids checks the bid's
    signature against `bid_typed_data`, records it, and answers 202 {bid_id, status,
    closes_at}, or 409 {"detail"} for the tasks in `refuse`; the first bid on a task in
    `throttle` gets 429 with Retry-After (and is not recorded)."""

    REFUSAL = "bid refused: the auction takes one bid per prover and round"

    def __init__(self, chain_id: int, registry: str):
        self.chain_id, self.registry = chain_id, registry
        self.auctions: list[dict] = []
        self.refuse: set[str] = set()
        self.throttle: set[str] = set()
        self.bids: list[dict] = []
        self.gets = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def answer(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != "/auctions":
                    return self.answer(404, {"detail": "Not Found"})
                with stub.lock:
                    stub.gets += 1
                    return self.answer(200, list(stub.auctions))

            def do_POST(self) -> None:
                if self.path != "/bids":
                    return self.answer(404, {"detail": "Not Found"})
                bid = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                typed = bid_typed_data(
                    stub.chain_id,
                    stub.registry,
                    bytes.fromhex(bid["task_id"][2:]),
                    int(bid["min_price"]),
                    bid["expiry"],
                    bid["nonce"],
                )
                signer = Account.recover_message(
                    encode_typed_data(full_message=typed), signature=bytes.fromhex(bid["signature"][2:])
                )
                with stub.lock:
                    if bid["task_id"] in stub.throttle:
                        stub.throttle.discard(bid["task_id"])
                        self.send_response(429)
                        self.send_header("Retry-After", "1")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    bid["signer"] = signer
                    bid["bid_id"] = f"bid-{len(stub.bids) + 1}"
                    stub.bids.append(bid)
                    closes_at = next(a["closes_at"] for a in stub.auctions if a["task_id"] == bid["task_id"])
                if signer != bid["prover"]:
                    return self.answer(422, {"detail": f"signature recovers to {signer}"})
                if bid["task_id"] in stub.refuse:
                    return self.answer(409, {"detail": stub.REFUSAL})
                return self.answer(202, {"bid_id": bid["bid_id"], "status": "open", "closes_at": closes_at})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def open(self, stack, terms, closes_at: int, round_: int = 1) -> str:
        tid = "0x" + task_id(stack, terms).hex()
        self.auctions.append(
            {
                "task_id": tid,
                "market_id": terms.market_id,
                "mechanism_id": terms.mechanism_id,
                "max_reward": str(terms.max_reward),
                "collateral": str(terms.collateral),
                "proving_window": terms.proving_window,
                "capabilities": terms.capabilities,
                "redundancy": terms.redundancy,
                "open_slots": terms.redundancy,
                "opened_at": terms.posted_at,
                "closes_at": closes_at,
                "round": round_,
                "bids": 0,
            }
        )
        return tid

    def bids_on(self, tid: str) -> list[dict]:
        with self.lock:
            return [b for b in self.bids if b["task_id"] == tid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auction_stub(chain):
    stubs: list[AuctionStub] = []

    def make(stack) -> AuctionStub:
        stubs.append(AuctionStub(chain.chain_id, stack.registry.address))
        return stubs[-1]

    yield make
    for stub in stubs:
        stub.close()


def test_agent__auctions__bids_its_floor_once_a_round_within_capacity_and_survives_refusals(
    make_stack, keeper, post, joined, start_agent, auction_stub, chain
):
    stack = make_stack([keeper.address])
    key, me = joined(stack, capacity=2)
    stub = auction_stub(stack)
    now = chain.provider.web3.eth.get_block("latest")["timestamp"]
    closes_at = now + 60
    tasks = {name: post(stack) for name in "ABDE"}
    tasks["C"] = post(stack, max_reward=3 * ETHER // 100)  # pays less than the floor
    ids = {name: stub.open(stack, tasks[name], closes_at) for name in "ABCDE"}
    stub.refuse.add(ids["B"])
    stub.throttle.add(ids["D"])
    stub.auctions.insert(0, {"task_id": "0x1234", "round": 1})  # an entry nobody can read
    nobody = f"http://127.0.0.1:{free_port()}"  # an auction frontend that is down

    agent = start_agent(stack, key, "--auction", stub.url, "--auction", nobody, *STRATEGY)
    cost = started_cost(agent, stack, chain)
    # An assigned task: proving, the proof's gas, 2% of its 0.5 ETH collateral, then 10%.
    floor = MODEL.least_price(1.0, cost["gas_price"], tasks["A"].collateral)

    # A and D are bid on (D again after a 429); B is refused; C pays too little for a
    # proof expected to take the declared second; E waits: A and D may both win and the
    # prover has room for two.
    bids = agent.wait_for("agent.bid", count=2, timeout=30)
    assert [line["task"] for line in bids] == [ids["A"], ids["D"]]
    refused = agent.events("agent.bid_refused")
    assert [(line["task"], line["status"]) for line in refused] == [(ids["B"], 409), (ids["D"], 429)]
    assert refused[0]["detail"] == AuctionStub.REFUSAL and refused[1]["retry_in"] == 1.0
    down = agent.wait_for("agent.auction_error", where=lambda line: line["url"] == nobody)[0]
    assert down["retry_in"] > 0
    unread = [line for line in agent.events("agent.auction_error") if line["url"] == stub.url]
    assert len(unread) == 1 and unread[0]["task"] == "0x1234" and "cannot read" in unread[0]["reason"]
    passed = agent.wait_for("agent.pass", where=lambda line: line["task"] == ids["C"])[0]
    assert "below the floor" in passed["reason"]
    waits = agent.wait_for("agent.pass", where=lambda line: line["task"] == ids["E"])[0]
    assert (waits["reason"], waits["in_use_or_promised"], waits["capacity"]) == ("no free capacity", 2, 2)
    for name in "ABD":
        [bid] = stub.bids_on(ids[name])
        assert bid["signer"] == bid["prover"] == me
        assert int(bid["min_price"]) == floor and bid["expiry"] == closes_at + 120 and bid["nonce"] == 0
    assert not stub.bids_on(ids["C"]) and not stub.bids_on(ids["E"])

    # Restarted, it bids on none of them again: the bids of this round are on disk.
    assert agent.stop() == 0
    agent.start()
    agent.wait_for("agent.start", count=2)
    gets = stub.gets
    wait_until(lambda: stub.gets >= gets + 5, timeout=20, what="five more reads of /auctions")
    assert [len(stub.bids_on(ids[name])) for name in "ABCDE"] == [1, 1, 0, 1, 0]
    assert agent.alive()

    # The mechanism's frontend (the test) assigns A with the bid it received, at its
    # minimum: the registry checks the signature, and the agent proves A.
    [bid] = stub.bids_on(ids["A"])
    signature = bytes.fromhex(bid["signature"][2:])
    stack.registry.assign(
        item(tasks["A"], me, floor, signature, floor, bid["expiry"], bid["nonce"]), sender=keeper
    )
    agent.wait_for("agent.paid", where=for_task(stack, tasks["A"]), timeout=60)
    assert [(e.prover, e.paid) for e in proofs(stack, tasks["A"])] == [(me, floor)]
    # A proof measured in a fraction of the declared second lowers the floor: C's 0.03 ETH
    # now pays it, and C, first in the list, takes the unit of capacity A freed; E waits.
    changed = agent.wait_for("agent.cost", where=lambda line: line["reason"] == "changed")[0]
    assert changed["expected_s"] < 1.0 and changed["floor"] < cost["floor"]
    later = agent.wait_for("agent.bid", where=lambda line: line["task"] == ids["C"], timeout=30)[0]
    [bid_c] = stub.bids_on(ids["C"])
    assert bid_c["signer"] == me and int(bid_c["min_price"]) == later["floor"] < tasks["C"].max_reward
    time.sleep(1)
    assert [len(stub.bids_on(ids[name])) for name in "ABCDE"] == [1, 1, 1, 1, 0]


def test_agent__bad_strategy_options__one_line_error(tmp_path, rpc):
    base = ["--rpc", rpc, "--deployment", str(Path(tmp_path) / "none.json"), "--key-env", "PROVER_KEY"]
    for option, value, expected in [
        ("--risk-rate", "2", "--risk-rate 2 is out of range"),
        ("--price-margin", "ten", "--price-margin 'ten' is not a number"),
        ("--auction", "ftp://x", "--auction 'ftp://x' is not an HTTP URL"),
        ("--cost-per-second", "-1", "--cost-per-second '-1' is negative"),
    ]:
        done = run_agent_cli(
            *base, "--data-dir", str(tmp_path / "a"), option, value, env={"PROVER_KEY": "0x" + "11" * 32}
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and expected in lines[0], done.stderr
