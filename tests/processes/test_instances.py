"""Instances of a mechanism with their own parameters, as real processes against anvil: one
auction process serving two registered mechanism ids keeps a bidding window per id (one
from its registered name, one from `--instance`), and a frontend refuses, in one line, an
id whose registered name disagrees with what it was given."""

from __future__ import annotations

from provingmarket.chain.client import KeySigner, RegistryClient
from tests.factories import ETHER, frontend_account, wait_until
from tests.processes.test_auction import HOUR, assigned, call, chain_now, closed, opened, signed, task_hex


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


def frontend(spawn, stack, module: str, key: str, data_dir, *args: str):
    return spawn(
        f"frontends.{module}.process",
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
