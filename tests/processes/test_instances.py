"""Instances of a mechanism with their own parameters, as real processes against anvil: one
auction process serving two registered mechanism ids keeps a bidding window per id (one
from its registered name, one from `--instance`); one election process draws each id's
tasks at its own delay, and `verify` recomputes them with it; one double auction process
clears each id's tasks at its own round; and a frontend refuses, in one line, an id whose
registered name disagrees with what it was given."""

from __future__ import annotations

import pytest

from frontends.election.process import verify_task
from frontends.election.walk import RoundStore
from provingmarket.chain.client import ClientError, KeySigner, RegistryClient
from provingmarket.chain.database import connect
from tests.factories import ETHER, frontend_account, wait_until
from tests.processes.test_auction import HOUR, assigned, call, chain_now, closed, opened, signed, task_hex
from tests.processes.test_election import Miner, posted_block, verify_command


def register(stack, owner, name: str, frontends: list[str]) -> int:
    tx = stack.registry.register_mechanism(name, frontends, sender=owner)
    [event] = [e for e in tx.events if e.event_name == "MechanismRegistered"]
    return event.mechanism_id


def prover_accepting(stack, funded, chain, mechanisms: list[int]) -> str:
    key = funded()
    client = RegistryClient(chain.provider.web3, stack.registry.address, KeySigner(key))
    client.transact("stake", value=5 * ETHER)
    client.transact("join_market", stack.market_id, 2, ETHER // 100, 10, 0, mechanisms)
    return key


def frontend(spawn, stack, module: str, key: str, data_dir, *args: str, command: tuple[str, ...] = ()):
    return spawn(
        f"frontends.{module}.process",
        *command,
        "--rpc",
        stack.rpc,
        "--deployment",
        str(stack.record),
        "--data-dir",
        str(data_dir),
        "--poll",
        "0.2",
        *args,
        env={f"{module.upper()}_KEY": key},
        name=module,
    )


def test_one_auction_process__two_instances__each_auction_closes_after_its_own_window(
    make_stack, funded, owner, post, spawn, tmp_path, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    short = register(stack, owner, "auction/window=3", [address])  # parameters from its name
    long = register(stack, owner, "auction", [address])  # parameters from --instance
    provers = [prover_accepting(stack, funded, chain, [short, long]) for _ in range(2)]
    served = ("--mechanism", str(short), "--instance", f"{long}:window=900", "--port", "0")
    auction = frontend(spawn, stack, "auction", key, tmp_path / "auction", *served)
    url = auction.wait_for("auction.api")[-1]["url"]
    published = {e["mechanism"]: e["params"] for e in auction.wait_for("auction.instance", 2)}
    assert published == {short: {"window": 3}, long: {"window": 900}}

    tasks = {
        mechanism: task_hex(stack, post(stack, mechanism_id=mechanism, assign_window=HOUR))
        for mechanism in (short, long)
    }
    auctions = {mechanism: opened(url, task) for mechanism, task in tasks.items()}
    windows = {m: a["closes_at"] - a["opened_at"] for m, a in auctions.items()}
    assert windows == {short: 3, long: 900}

    expiry = chain_now(stack) + 2 * HOUR
    for prover_key, mechanism in zip(provers, (short, long), strict=True):
        bid = signed(stack, prover_key, tasks[mechanism], ETHER // 50, expiry)
        assert call("POST", f"{url}/bids", bid)[0] == 202

    # the short instance's auction closes after its 3 s and its winner is assigned on chain;
    # the long one's, taking bids in the same process, is still open
    assert closed(url, tasks[short])["state"] == "closed"
    wait_until(lambda: assigned(stack, tasks[short]), what="the short instance's winner assigned")
    status, still = call("GET", f"{url}/auctions/{tasks[long]}")
    assert status == 200 and still["state"] == "open" and still["bids"] == 1
    assert not assigned(stack, tasks[long])
    assert auction.stop() == 0


@pytest.fixture
def miner(rpc):
    m = Miner(rpc)
    yield m
    m.close()


def test_one_election_process__two_instances__each_task_drawn_at_its_own_delay__verify_agrees(
    make_stack, funded, owner, post, spawn, tmp_path, chain, miner
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    named = register(stack, owner, "election/delay=5", [address])  # its delay from its name
    given = register(stack, owner, "election", [address])  # its delay from --instance
    delays = {named: 5, given: 3}
    for _ in range(2):
        prover_accepting(stack, funded, chain, [named, given])
    data = tmp_path / "election"
    served = ("--mechanism", str(named), "--instance", f"{given}:delay=3", "--delay", "2")
    election = frontend(spawn, stack, "election", key, data, *served, command=("run",))
    published = {e["mechanism"]: e["params"] for e in election.wait_for("election.instance", 2)}
    assert published == {named: {"delay": 5}, given: {"delay": 3}}
    election.wait_for("election.start")
    miner.start()

    tasks = {m: post(stack, mechanism_id=m) for m in (given, named)}  # the longer delay's posted last
    draws = {}
    for mechanism, terms in tasks.items():
        task = task_hex(stack, terms)
        [drawn] = election.wait_for("election.draw", where=lambda e, t=task: e["task"] == t)
        assert drawn["block"] == posted_block(stack, terms) + delays[mechanism]  # the randomness block
        assert (drawn["mechanism"], drawn["delay"]) == (mechanism, delays[mechanism])
        found = wait_until(lambda t=task: assigned(stack, t), what=f"mechanism {mechanism}'s task assigned")
        assert [e.prover for e in found] == drawn["winners"]
        draws[mechanism] = drawn

    # `verify` reads the delay from the name that publishes it, and must be given the other's
    result = verify_command(stack, task_hex(stack, tasks[named]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delay 5 block(s) (published in its name 'election/delay=5')" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "matches"
    matches, lines = verify_task(stack.client, stack.client.task_id(tasks[given]), delay=3)
    assert matches and "delay 3 block(s) (--delay)" in lines[0], lines
    assert any(line.strip().startswith(f"round 0 at block {draws[given]['block']} (") for line in lines)
    with pytest.raises(ClientError) as refused:
        verify_task(stack.client, stack.client.task_id(tasks[named]), delay=3)
    assert str(refused.value) == (
        f"mechanism {named} is registered as 'election/delay=5': its tasks are drawn 5 block(s) "
        "after their trigger, not --delay 3; give --delay 5, or none"
    )
    assert election.stop() == 0
    rounds = RoundStore(connect(str(data / "rounds.sqlite")))  # its records, per instance
    for mechanism, drawn in draws.items():
        first = rounds.of_mechanism(mechanism)[0]
        assert (first.block, first.delay, first.winners) == (
            drawn["block"],
            delays[mechanism],
            tuple(drawn["winners"]),
        )


def test_one_double_auction_process__two_instances__each_cleared_at_its_own_round(
    make_stack, funded, owner, post, spawn, tmp_path, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    short = register(stack, owner, "double_auction/round=1", [address])  # its round from its name
    long = register(stack, owner, "double_auction", [address])  # its round from --instance
    for _ in range(3):  # a task trades with two asks at least (one alone: trade reduction)
        prover_accepting(stack, funded, chain, [short, long])
    served = ("--mechanism", str(short), "--instance", f"{long}:round=600")
    process = frontend(spawn, stack, "double_auction", key, tmp_path / "da", *served)
    published = {e["mechanism"]: e["params"] for e in process.wait_for("double_auction.instance", 2)}
    assert published == {short: {"round": 1}, long: {"round": 600}}
    windows = {"assign_window": HOUR, "proving_window": HOUR}

    terms = post(stack, mechanism_id=short, **windows)
    first = task_hex(stack, terms)
    wait_until(lambda: assigned(stack, first), what="the first task cleared")  # every instance's clock starts
    web3 = chain.provider.web3
    started = web3.eth.get_block(posted_block(stack, terms))["timestamp"]  # at most that clearing's time
    waiting = task_hex(stack, post(stack, mechanism_id=long, **windows))
    later = task_hex(stack, post(stack, mechanism_id=short, **windows))
    # the short instance clears its later task at its next round; the long one's, posted
    # before it, waits for its own (cleared together, both would be in one assign_batch)
    wait_until(lambda: assigned(stack, later), what="the short instance's next round")
    assert not assigned(stack, waiting)

    web3.provider.make_request("evm_increaseTime", [600])
    web3.provider.make_request("evm_mine", [])
    [cleared] = wait_until(lambda: assigned(stack, waiting), what="the long instance's round")
    assert web3.eth.get_block(cleared.block)["timestamp"] >= started + 600
    assert {e.price for e in assigned(stack, waiting) + assigned(stack, later)} == {ETHER // 100}
    assert process.stop() == 0


def test_a_registered_name_disagreeing_with_the_parameters_given__refused_in_one_line(
    make_stack, funded, owner, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    five = register(stack, owner, "orderbook/interval=5", [address])
    auction = register(stack, owner, "auction/window=30", [address])
    cases = [
        (
            ("--mechanism", str(five), "--instance", f"{five}:interval=9"),
            f"error: mechanism {five} is registered as 'orderbook/interval=5' but --instance "
            f"{five}:interval=9 was given: give --instance {five}:interval=5, or none",
        ),
        (
            ("--mechanism", str(auction)),
            f"error: mechanism {auction} is registered as 'auction/window=30', an instance of auction, "
            "not of orderbook: serve it with the auction frontend",
        ),
    ]
    for i, (args, message) in enumerate(cases):
        process = frontend(spawn, stack, "orderbook", key, tmp_path / f"orderbook-{i}", *args)
        assert process.popen.wait(60) == 1
        wait_until(lambda p=process: any(line.startswith("error:") for line in p.text), what="the error line")
        errors = [line for line in process.text if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(message), process.text[-5:]
        assert not any("Traceback" in line for line in process.text)
