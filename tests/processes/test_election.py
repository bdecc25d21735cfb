"""The election frontend as a real process against anvil, and the `verify` command: N
provers drawn from a block after the task was posted (from its prevrandao) and assigned
at the task's maximum reward; too few eligible; the randomness block reorganised away
before the draw; a silent winner slashed and its slot drawn again; a hand-picked
assignment caught.

Anvil mines a block for each transaction; a `Miner` thread adds an empty block every
quarter second (a chain that moves on its own, its clock with the wall's), paused where a
test mines by hand."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from eth_account import Account
from web3 import Web3

from frontends.election.mechanism import draw
from frontends.election.process import RoundStore, Walk, task_rounds, verify_task
from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.chain.mirror import Mirror
from tests.factories import ETHER, ROOT, item, spawn_frontend, wait_until

FRONTEND = "frontends.election.process"
DELAY = 2


class Miner:
    """Mines an empty block every `every` seconds while started; `pause()` returns once no
    block is being mined, `mine(n)` mines by hand."""

    def __init__(self, rpc: str, every: float = 0.25):
        self.web3 = Web3(Web3.HTTPProvider(rpc))
        self.every = every
        self.running = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.closed.wait(self.every):
            if self.running.is_set():
                with self.lock:
                    if self.running.is_set():
                        self.web3.provider.make_request("evm_mine", [])

    def start(self) -> Miner:
        self.running.set()
        return self

    def pause(self) -> None:
        self.running.clear()
        with self.lock:
            pass

    def mine(self, blocks: int = 1) -> int:
        for _ in range(blocks):
            self.web3.provider.make_request("evm_mine", [])
        return self.web3.eth.block_number

    def close(self) -> None:
        self.pause()
        self.closed.set()
        self.thread.join(5)


@pytest.fixture
def miner(rpc):
    m = Miner(rpc)
    yield m
    m.close()


def frontend_account(funded) -> tuple[str, str]:
    key = funded()
    return key, Account.from_key(key).address


def start_frontend(spawn, stack, key, db, *extra, name="election"):
    options = ("--delay", str(DELAY), *extra)
    return spawn_frontend(spawn, stack, key, db, *options, mechanism="election", command=("run",), name=name)


def task_hex(stack, terms) -> str:
    return "0x" + stack.client.task_id(terms).hex()


def posted_block(stack, terms) -> int:
    return stack.client.posted(stack.client.task_id(terms)).block


def assigned(stack, terms) -> list:
    return stack.client.events(["TaskAssigned"], task_id=stack.client.task_id(terms))


def status(stack, terms) -> tuple[int, int, int, int]:
    """(open, assigned, proven, closed) slots, as the registry counts them."""
    return tuple(stack.client.call("task_status", stack.client.task_id(terms)))[:4]


def verify_command(stack, task: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            FRONTEND,
            "verify",
            task,
            "--rpc",
            stack.rpc,
            "--deployment",
            str(stack.record),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_election__two_provers_drawn_from_a_block_after_posting__assigned_at_max_reward__verify_matches(
    make_stack, make_prover, funded, post, spawn, tmp_path, miner
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = {make_prover(stack, capacity=2)[1] for _ in range(3)}
    make_prover(stack, ask=ETHER)  # asks more than the task's maximum: never eligible
    frontend = start_frontend(spawn, stack, key, tmp_path / "election")
    frontend.wait_for("election.start")
    miner.start()
    terms = post(stack, redundancy=2, max_reward=ETHER // 10, decay=True, decay_floor=ETHER // 100)
    task = task_hex(stack, terms)

    [drawn] = frontend.wait_for("election.draw", where=lambda e: e["task"] == task)
    assert drawn["block"] == posted_block(stack, terms) + DELAY
    header = stack.client.web3.eth.get_block(drawn["block"])
    chain_hash, mix = Web3.to_hex(header["hash"]), Web3.to_hex(header["mixHash"])
    assert drawn["block_hash"] == chain_hash
    # anvil's headers carry a prevrandao (mixHash, nonzero, new each block): the draw uses it
    assert (drawn["randomness"], drawn["randomness_value"]) == ("prevrandao", mix) and int(mix, 16)
    assert set(drawn["eligible"]) == provers and len(drawn["winners"]) == 2
    task_id = stack.client.task_id(terms)
    assert tuple(drawn["winners"]) == draw(task_id, drawn["eligible"], bytes.fromhex(mix[2:]), 2)
    # the randomness is the header's prevrandao, not its hash (which the proposer can grind);
    # the draws from the two may agree by chance (2 of 3 provers), the values never do
    assert mix != chain_hash
    found = wait_until(
        lambda: len(assigned(stack, terms)) == 2 and assigned(stack, terms), what="two assignments"
    )
    assert {e.prover for e in found} == set(drawn["winners"])
    assert {(e.price, e.frontend) for e in found} == {(terms.max_reward, address)}
    assert all(e.block > drawn["block"] for e in found)

    result = verify_command(stack, task)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "matches"
    assert f"round 0 at block {drawn['block']} ({chain_hash}, randomness: prevrandao {mix})" in result.stdout
    assert frontend.stop() == 0


def test_verify__a_task_assigned_by_hand_to_a_prover_not_drawn__does_not_match(
    make_stack, make_prover, funded, post, miner
):
    hand_key, hand = frontend_account(funded)
    stack = make_stack([hand])  # a frontend that picks provers itself
    provers = [make_prover(stack)[1] for _ in range(3)]
    signer = RegistryClient(stack.client.web3, stack.registry.address, KeySigner(hand_key))
    picked, fair = post(stack), post(stack)
    head = miner.mine(DELAY)
    rounds = {
        id(terms): task_rounds(
            stack.client, stack.client.task_id(terms), posted_block(stack, terms), hand, DELAY, head
        )
        for terms in (picked, fair)
    }
    [loser, *_] = [p for p in provers if p not in rounds[id(picked)][0].winners]
    signer.transact("assign_batch", [item(picked, loser, picked.max_reward)])
    signer.transact("assign_batch", [item(fair, rounds[id(fair)][0].winners[0], fair.max_reward)])

    result = verify_command(stack, task_hex(stack, picked))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"sent but not drawn: {loser}" in result.stdout.strip().splitlines()[-1]
    assert result.stdout.strip().splitlines()[-1].startswith("does not match")
    # The same frontend assigning the drawn prover matches: `verify` judges what, not who.
    matches, lines = verify_task(stack.client, stack.client.task_id(fair))
    assert matches, lines


def test_too_few_eligible__those_there_are_assigned__logged__the_rest_open_until_the_requester_cancels(
    make_stack, make_prover, funded, post, spawn, tmp_path, miner, requester
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = {make_prover(stack)[1] for _ in range(2)}
    make_prover(stack, proving_time=400)  # slower than the task's proving window
    frontend = start_frontend(spawn, stack, key, tmp_path / "election", "--log-level", "DEBUG")
    frontend.wait_for("election.start")
    miner.start()
    terms = post(stack, redundancy=3)
    task = task_hex(stack, terms)

    [short] = frontend.wait_for("election.short", where=lambda e: e["task"] == task)
    assert (short["open_slots"], short["eligible"], short["drawn"], short["left_open"]) == (3, 2, 2, 1)
    wait_until(lambda: len(assigned(stack, terms)) == 2, what="the two eligible provers assigned")
    assert {e.prover for e in assigned(stack, terms)} == provers
    assert status(stack, terms) == (1, 2, 0, 0)
    # Later rounds find nobody else (and say so once); the open slot waits for the window,
    # or the requester.
    frontend.wait_for("election.none", 2, where=lambda e: e["task"] == task)
    assert len(frontend.events("election.short")) == 1
    stack.registry.cancel(terms.as_tuple(), sender=requester)
    assert status(stack, terms) == (0, 2, 0, 1)

    matches, lines = verify_task(stack.client, stack.client.task_id(terms))
    assert matches, lines
    assert frontend.alive() and frontend.stop() == 0


def test_reorg__the_randomness_block_replaced_before_confirmed__drawn_from_the_new_block(
    make_stack, make_prover, funded, post, spawn, tmp_path, miner, chain, owner
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    for _ in range(4):
        make_prover(stack)
    frontend = start_frontend(spawn, stack, key, tmp_path / "election", "--confirmations", "2")
    frontend.wait_for("election.start")
    terms = post(stack)  # block P; nothing else is mined but by hand
    task = task_hex(stack, terms)
    randomness_block = posted_block(stack, terms) + DELAY
    assert miner.mine(DELAY) == randomness_block  # it exists, with no confirmation yet

    [seen] = frontend.wait_for("election.waiting", where=lambda e: e["task"] == task)
    assert (seen["block"], seen["confirmed_at_head"]) == (randomness_block, randomness_block + 2)
    web3 = chain.provider.web3
    assert seen["block_hash"] == Web3.to_hex(web3.eth.get_block(randomness_block)["hash"])
    # The randomness block is replaced by one holding a transfer (an empty one mined in
    # the same second would be the same block, with the same hash).
    transfer = {"from": owner.address, "to": owner.address, "value": "0x1"}
    web3.provider.make_request("anvil_reorg", [1, [[transfer, 0]]])
    replaced = Web3.to_hex(web3.eth.get_block(randomness_block)["hash"])
    assert replaced != seen["block_hash"]
    miner.mine(2)  # now it has its two confirmations

    [drawn] = frontend.wait_for("election.draw", where=lambda e: e["task"] == task)
    assert (drawn["block"], drawn["block_hash"]) == (randomness_block, replaced)
    wait_until(lambda: assigned(stack, terms), what="the drawn prover assigned")
    assert [e.prover for e in assigned(stack, terms)] == drawn["winners"]
    matches, lines = verify_task(stack.client, stack.client.task_id(terms))
    assert matches, lines
    assert frontend.stop() == 0


def test_silent_winner__slashed_after_its_deadline__its_slot_reopens_and_is_drawn_again(
    make_stack, make_prover, funded, post, spawn, tmp_path, miner
):
    key, address = frontend_account(funded)
    stack = make_stack([address], grace_period=2)  # the 3 s window must outlast the grace
    provers = {make_prover(stack, proving_time=1)[1] for _ in range(2)}  # neither ever proves
    frontend = start_frontend(spawn, stack, key, tmp_path / "election")
    frontend.wait_for("election.start")
    miner.start()
    terms = post(stack, proving_window=3, assign_window=120)
    task = task_hex(stack, terms)

    [first] = frontend.wait_for("election.draw", where=lambda e: e["task"] == task)
    [silent] = first["winners"]
    [slashed] = frontend.wait_for("election.slashed", where=lambda e: e["task"] == task, timeout=30)
    assert (slashed["prover"], slashed["reopened"]) == (silent, True)
    again = frontend.wait_for("election.draw", 2, where=lambda e: e["task"] == task, timeout=30)[1]
    assert again["round"] > first["round"] and again["block"] > first["block"]
    assert again["eligible"] == again["winners"] == sorted(provers - {silent})  # the slashed one is out
    wait_until(lambda: len(assigned(stack, terms)) == 2, what="the slot assigned again")
    assert [e.prover for e in assigned(stack, terms)] == [silent, again["winners"][0]]

    matches, lines = verify_task(stack.client, stack.client.task_id(terms))
    assert matches, lines
    assert frontend.stop() == 0


def test_walk__a_reorganisation_under_a_drawn_round__forgets_it_and_draws_again_from_the_new_block(
    make_stack, make_prover, funded, post, miner, chain, owner
):
    """The as-of mirror's own rollback, deeper than any confirmations: the round drawn from
    the replaced block is dropped (reported), and drawn again from its replacement."""
    _, address = frontend_account(funded)
    stack = make_stack([address])
    for _ in range(4):
        make_prover(stack)
    terms = post(stack)
    task_id = stack.client.task_id(terms)
    randomness_block = posted_block(stack, terms) + DELAY
    assert miner.mine(DELAY) == randomness_block
    dropped: list = []
    with Mirror(":memory:", stack.client, stack.client.from_block) as asof:
        store = RoundStore(asof.db)
        walk = Walk(asof, store, DELAY, address, [stack.mechanism_id], on_dropped=dropped.extend)
        [first] = walk.advance(randomness_block)
        web3 = chain.provider.web3
        assert first.block_hash == Web3.to_hex(web3.eth.get_block(randomness_block)["hash"])
        assert first.value == Web3.to_hex(web3.eth.get_block(randomness_block)["mixHash"])

        transfer = {"from": owner.address, "to": owner.address, "value": "0x1"}
        web3.provider.make_request("anvil_reorg", [1, [[transfer, 0]]])
        assert walk.advance(randomness_block) == []  # this round only rolls back
        assert dropped == [first] and store.rounds(task_id) == []
        [again] = walk.advance(randomness_block)
        header = web3.eth.get_block(randomness_block)
        replaced, mix = Web3.to_hex(header["hash"]), Web3.to_hex(header["mixHash"])
        assert (again.round, again.block, again.block_hash) == (0, randomness_block, replaced)
        assert replaced != first.block_hash and (again.source, again.value) == ("prevrandao", mix)
        assert again.winners == draw(task_id, again.eligible, bytes.fromhex(mix[2:]), 1)
