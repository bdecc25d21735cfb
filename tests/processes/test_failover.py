"""Several RPC endpoints and new heads by subscription, as processes: the orderbook
frontend and a prover agent given two endpoints (two loopback relays in front of this
session's anvil, base fee nonzero) keep proving when the first is killed mid-run, and send
nothing twice; a frontend given a WebSocket URL starts its round as soon as a block arrives,
and keeps going by polling once the WebSocket endpoint is killed."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time

import pytest

from provingmarket.chain.client import RegistryClient
from provingmarket.chain.outbox import DONE, Outbox
from tests.factories import (
    ETHER,
    decisions_by_pair,
    frontend_account,
    spawn_agent,
    start_frontend,
    wait_until,
)
from tests.processes.conftest import Relay


@pytest.fixture
def relays(rpc):
    """relays(n) -> n loopback TCP relays in front of the node; each closed after the test."""
    made: list[Relay] = []

    def make(n: int) -> list[Relay]:
        made.extend(Relay(rpc) for _ in range(n))
        return made[-n:]

    yield make
    for r in made:
        r.close()


class AnswerLost(Relay):
    """A relay that passes every call to the node but loses the answer to the ones carrying
    `marker`: the node got the call, the caller sees the connection close (the worst moment
    for an endpoint to die: a transaction received, its sender not told)."""

    def __init__(self, target: str, marker: bytes):
        super().__init__(target)
        self.marker = marker
        self.lost = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, upstream]
            marked = threading.Event()
            threading.Thread(target=self._ask, args=(client, upstream, marked), daemon=True).start()
            threading.Thread(target=self._answer, args=(upstream, client, marked), daemon=True).start()

    def _ask(self, src: socket.socket, dst: socket.socket, marked: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if self.marker in data:
                    marked.set()
                dst.sendall(data)

    def _answer(self, src: socket.socket, dst: socket.socket, marked: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if marked.is_set():
                    self.lost += 1
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()


def proven(stack) -> dict[bytes, int]:
    counted: dict[bytes, int] = {}
    for e in stack.client.events(["TaskProven"]):
        counted[bytes(e.task_id)] = counted.get(bytes(e.task_id), 0) + 1
    return counted


def prove_rows(tmp_path) -> list[tuple[str, str]]:
    """The agent's outbox rows carrying proofs: (their work, their state)."""
    db = sqlite3.connect(tmp_path / "agent" / "outbox.sqlite")
    try:
        return db.execute("SELECT keys, state FROM outbox WHERE fn = 'prove'").fetchall()
    finally:
        db.close()


def prove_states(tmp_path) -> set[str]:
    return {state for _, state in prove_rows(tmp_path)}


def sent_by(stack, account: str, since: int) -> list[dict]:
    """Every transaction `account` got mined since block `since`, with its receipt's status."""
    web3 = stack.client.web3
    found = []
    for number in range(since, web3.eth.block_number + 1):
        for tx in web3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == account:
                status = web3.eth.get_transaction_receipt(tx["hash"])["status"]
                found.append({"nonce": tx["nonce"], "input": bytes(tx["input"]), "status": status})
    return found


def test_two_endpoints__the_first_killed_mid_run__every_task_proven_once_nothing_sent_twice(
    make_stack, make_prover, funded, post_many, spawn, tmp_path, relays, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    prover_key, prover = make_prover(stack, capacity=2)
    first, second = relays(2)
    stack.rpc = f"{first.url},{second.url}"  # both processes: --rpc FIRST,SECOND
    since = chain.provider.web3.eth.block_number
    frontend = start_frontend(spawn, stack, key, tmp_path / "ob")
    agent = spawn_agent(spawn, stack, prover_key, tmp_path / "agent")
    terms = dict(max_reward=ETHER // 10, proving_window=60, assign_window=180)

    before = post_many(stack, 3, **terms)
    wait_until(lambda: len(proven(stack)) >= 1, timeout=60, what="a task proven through the first endpoint")
    first.close()  # killed: its connections cut, new ones refused
    after = post_many(stack, 3, **terms)
    ids = {stack.client.task_id(t) for t in before + after}
    wait_until(lambda: set(proven(stack)) == ids, timeout=90, what="every task proven")

    assert proven(stack) == {task_id: 1 for task_id in ids}, "a task proven twice"
    for process in (frontend, agent):
        [line] = process.wait_for("rpc.failover", timeout=10)
        assert (line["left"], line["using"]) == (first.url, second.url)
        assert not process.events("rpc.endpoint_back")
    assert all(count == 1 for count in decisions_by_pair(frontend).values()), "an assignment decided twice"
    assert len(stack.client.events(["TaskAssigned"])) == len(ids)

    # Every proof settles in the agent's outbox: final once the agent's view reaches its
    # block (the last one may still be "mined" when the tasks are seen proven).
    wait_until(lambda: prove_states(tmp_path) == {"done"}, timeout=30, what="every proof final in the outbox")
    for process in (frontend, agent):
        assert process.stop() == 0
    # Nothing sent twice: each account's mined transactions all succeeded, each nonce and
    # each call (the same item) once.
    for account in (address, prover):
        mined = sent_by(stack, account, since)
        assert all(t["status"] == 1 for t in mined), f"{account}: a transaction reverted"
        assert len({t["nonce"] for t in mined}) == len(mined)
        assert len({t["input"] for t in mined}) == len(mined), f"{account} sent the same call twice"
    rows = prove_rows(tmp_path)
    assert len(rows) == len(ids) and len({k for k, _ in rows}) == len(ids)
    assert {state for _, state in rows} == {"done"}


def test_websocket_heads__a_round_follows_each_block_at_once__polling_when_the_websocket_is_killed(
    make_stack, make_prover, funded, post, spawn, tmp_path, relays, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    make_prover(stack, capacity=4)
    [ws] = relays(1)  # the WebSocket endpoint: anvil's own port, through a relay the test can kill
    ws_url = ws.url.replace("http://", "ws://")
    # Rounds every 30 s at least: only the subscription (or, once it is gone, the head
    # polling behind it) can explain a round within seconds of a block.
    frontend = start_frontend(spawn, stack, key, tmp_path / "ob", "--poll", "30", "--ws", ws_url)
    frontend.wait_for("orderbook.heads", timeout=30)
    web3 = chain.provider.web3

    def decided_after(terms, before: int) -> float:
        task = "0x" + stack.client.task_id(terms).hex()
        [line] = frontend.wait_for("orderbook.decision", where=lambda d: d["task"] == task, timeout=25)
        # The round that decided it (its line follows the decisions') saw the posting's block,
        # the first after `before` (read before posting: the assignment may mine the next).
        round_ = frontend.wait_for("orderbook.round", where=lambda r: r["ts"] >= line["ts"], timeout=5)[0]
        assert round_["head"] > before
        return line["ts"]

    for _ in range(2):
        frontend.wait_for("orderbook.round", timeout=30)  # the start's rounds are over
        posted_at, before = time.time(), web3.eth.block_number
        terms = post(stack)
        lag = decided_after(terms, before) - posted_at
        assert lag < 5, f"the round followed the block after {lag:.1f}s"

    ws.close()  # the WebSocket endpoint killed; HTTP (anvil direct) still answers
    [lost] = frontend.wait_for("orderbook.heads_lost", timeout=30)
    assert lost["ws"] == ws_url
    posted_at, before = time.time(), web3.eth.block_number
    terms = post(stack)
    lag = decided_after(terms, before) - posted_at
    assert lag < 10, f"without the subscription the round followed the block after {lag:.1f}s"
    assert frontend.alive()
    assert frontend.stop() == 0


def test_a_transaction_received_but_its_answer_lost__sent_again_on_the_next_endpoint__mined_once(
    rpc, registry, funded, tmp_path, caplog
):
    key = funded()
    losing, other = AnswerLost(rpc, b"eth_sendRawTransaction"), Relay(rpc)
    try:
        client = RegistryClient.connect([losing.url, other.url], registry.address, key)
        me = client.signer.address
        nonce = client.web3.eth.get_transaction_count(me)
        outbox = Outbox(str(tmp_path / "outbox.sqlite"), client)
        caplog.set_level("INFO")
        sent = outbox.send("stake", value=ETHER, keys=["stake:1"])

        assert losing.lost == 1  # the node has it; the sender saw the connection drop...
        failover = [r.getMessage() for r in caplog.records if "rpc.failover" in r.getMessage()]
        assert len(failover) == 1 and other.url in failover[0]  # ...and sent it again through the other
        receipt = client.web3.eth.wait_for_transaction_receipt(sent.tx_hash, timeout=30)
        assert receipt["status"] == 1 and sent.nonce == nonce
        outbox.settle(confirmed=receipt["blockNumber"])
        outbox.settle(confirmed=receipt["blockNumber"])
        assert [(r.tx_hash, r.state) for r in outbox.rows()] == [(sent.tx_hash, DONE)]
        assert client.web3.eth.get_transaction_count(me) == nonce + 1  # one transaction, one nonce
        staked = [e.amount for e in client.events(["Staked"]) if e.prover == me]
        assert staked == [ETHER]
    finally:
        losing.close()
        other.close()
