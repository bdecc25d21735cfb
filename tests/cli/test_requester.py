"""`ape run requester ...`: post a task, follow it, fetch its proof, get the escrow back.

Each command's success path and each kind of bad input runs as a user runs it (`ape run`
in a subprocess, about 5 s each). The long tail of terms the registry would refuse runs
the same command function in this process (milliseconds each): one line, exit code 1,
nothing sent."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
from eth_utils import keccak

from provingmarket import deployments
from provingmarket.cli import DEPLOYMENTS_ENV
from provingmarket.deployments import Deployment, MarketRecord
from provingmarket.devnet import default_backend
from provingmarket.formats import BINDING_NONE, DUTCH, OPEN_RACE, Assignment, Link, TaskTerms, encode_chain
from provingmarket.proving.circuits import Circuit
from tests.factories import ETHER, UNBONDING_DELAY, advance, assigned, item, load_script

SQUARE = Circuit.load("square")


requester_script = load_script("requester")
# a module of its own, as requester_script: `ape run requester` (in-process in `run`) adds
# options to the commands of the module it imports
posted_commands = load_script("_requester_posted")


# ------------------------------------------------------------------ helpers


def hex_id(task: bytes) -> str:
    return "0x" + bytes(task).hex()


def task_of(registry, terms: TaskTerms) -> bytes:
    return bytes(registry.task_id(terms.as_tuple()))


def counts(registry, task) -> tuple:
    status = registry.task_status(task)
    return (status.open, status.assigned, status.proven, status.closed)


def assign(registry, keeper, terms, prover, price=None) -> Assignment:
    price = terms.max_reward if price is None else price
    [(_, assignment)] = assigned(registry, registry.assign(item(terms, prover, price), sender=keeper))
    return assignment


def prove(registry, terms, assignment, prover) -> bytes:
    """Prove the sample as `prover`; returns the proof (Groth16 proofs are randomised)."""
    made = default_backend().prove(SQUARE, SQUARE.sample, prover.address)
    registry.prove(terms.as_tuple(), assignment.as_tuple(), made.public_inputs, made.proof, sender=prover)
    return made.proof


def posted_in(registry, block: int) -> list:
    return list(registry.TaskPosted.range(block, block + 1))


def paid_for_gas(chain, tx: str) -> int:
    receipt = chain.provider.web3.eth.get_transaction_receipt(tx)
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]


def assert_refused(result, message: str, account, nonce: int) -> None:
    """One `error:` line saying `message`, exit code 1, no transaction from `account`."""
    assert result.code == 1, result
    assert result.error.count("error:") == 1, result.err
    assert message in result.error, result.error
    assert account.nonce == nonce


# ------------------------------------------------------------------ post


def test_post__secret_for_a_registered_mechanism__escrows_and_prints_the_task(
    run, recorded, registry, market, mechanism, requester, chain
):
    before, held = requester.balance, registry.balance

    result = run(
        "requester", "post", str(market), "--secret", "7", "--mechanism", str(mechanism),
        "--reward", "0.05", "--fee", "0.001", "--redundancy", "2", "--collateral", "0.2", "--json",
        account="TEST::1",
    )  # fmt: skip

    assert result.code == 0, result.err
    data = result.json()
    task = bytes.fromhex(data["task_id"][2:])
    escrow = 2 * (5 * ETHER // 100 + ETHER // 1000)
    assert data["escrow"] == escrow
    assert counts(registry, task) == (2, 0, 0, 0)
    assert registry.balance == held + escrow
    assert requester.balance == before - escrow - paid_for_gas(chain, data["tx"])
    [event] = posted_in(registry, data["block"])
    recorded_terms = TaskTerms.from_event(event.terms)
    assert recorded_terms.inputs_commitment == SQUARE.commitment({"x": 7, "y": 49})
    assert event.prover_input == b'{"x": 7, "y": 49}'
    assert recorded_terms.prover_input_hash == keccak(event.prover_input)
    assert (recorded_terms.mechanism_id, recorded_terms.redundancy) == (mechanism, 2)
    assert (recorded_terms.collateral, recorded_terms.frontend_fee) == (ETHER // 5, ETHER // 1000)
    assert recorded_terms.requester == requester.address
    assert 0 < recorded_terms.salt < 2**64
    assert task_of(registry, recorded_terms) == task
    assert data["terms"]["salt"] == recorded_terms.salt


def test_post__chain_of_named_mechanisms__posts_each_link_for_its_window_and_says_so(
    run, recorded, registry, market, mechanism, requester
):
    result = run(
        "requester", "post", str(market), "--secret", "7", "--chain", f"orderbook:30,{mechanism}:60,race",
        "--proving-window", "120", "--fee", "0.001", "--json", account="TEST::1",
    )  # fmt: skip

    assert result.code == 0, result.err
    data = result.json()
    [event] = posted_in(registry, data["block"])
    terms = TaskTerms.from_event(event.terms)
    links = [Link(mechanism, 30), Link(mechanism, 60), Link(OPEN_RACE, 120)]  # a race lasts a proving window
    assert terms.mechanism_id == encode_chain(links)
    assert terms.assign_window == 210
    assert data["mechanism"] == "orderbook 30 s, then orderbook 60 s, then open race 120 s"

    text = run(
        "requester",
        "post",
        str(market),
        "--secret",
        "7",
        "--chain",
        "orderbook:30,dutch:30",
        account="TEST::1",
    )
    assert text.code == 0, text.err
    assert "chain: orderbook 30 s, then dutch 30 s;" in text.out


@pytest.mark.parametrize(
    ("chain_option", "message"),
    [
        ("nosuch:30,race", "--chain link 1: no mechanism named 'nosuch'"),
        ("orderbook,race", "--chain link 1 (orderbook) needs a window"),
        ("orderbook:30,race:0", "--chain link 2's window '0' is below 1"),
        ("1:1,2:2,3:3,1:1", "give 1 to 3 links"),
    ],
)
def test_post__malformed_chain__one_line_and_nothing_sent(
    run, recorded, requester, market, chain_option, message
):
    nonce = requester.nonce
    result = run(
        "requester", "post", str(market), "--secret", "7", "--chain", chain_option, account="TEST::1"
    )
    assert result.code == 1, result.out
    assert message in result.error
    assert "Traceback" not in result.err
    assert requester.nonce == nonce


def test_post__chain_with_an_election_link__refused_in_one_line_nothing_sent(
    run, recorded, registry, requester, market, keeper, owner
):
    """The election's frontend draws only for tasks of its own mechanism: a chain's
    election link would never be served, so the client refuses it before sending."""
    tx = registry.register_mechanism("election", [keeper], sender=owner)
    election = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
    nonce = requester.nonce

    result = run(
        "requester", "post", str(market), "--secret", "7", "--chain", "election:30,race", account="TEST::1"
    )

    assert result.code == 1, result.out
    assert f"--chain link 1: mechanism {election} is an election" in result.error
    assert "post it as a task of its own" in result.error
    assert requester.nonce == nonce


def test_post__inputs_file_with_defaults__opens_a_race_at_the_market_minimums(
    run, recorded, registry, market, requester, tmp_path, chain
):
    inputs = tmp_path / "inputs.json"
    inputs.write_text('{"y": "49", "x": 7}')

    result = run("requester", "post", str(market), "--inputs-file", str(inputs), account="TEST::1")

    assert result.code == 0, result.err
    first = next(line for line in result.out.splitlines() if line.startswith("task 0x"))
    task = bytes.fromhex(first.split()[1][2:])
    assert "mechanism 1 (open race); escrow 0.01 ETH = 1 x (0.01 ETH reward + 0 ETH fee)" in result.out
    assert 'inputs {"x": 7, "y": 49}' in result.out
    [event] = posted_in(registry, chain.blocks.height)
    terms = TaskTerms.from_event(event.terms)
    assert task_of(registry, terms) == task
    assert event.prover_input == b'{"x": 7, "y": 49}'
    assert (terms.mechanism_id, terms.max_reward, terms.collateral) == (OPEN_RACE, ETHER // 100, ETHER // 10)
    assert (terms.assign_window, terms.proving_window, terms.redundancy) == (0, 600, 1)
    assert counts(registry, task) == (1, 0, 0, 0)


# ------------------------------------------------------------------ status, proof


@pytest.mark.ape_run
def test_status_wait__a_proof_arrives__prints_the_timeline_then_proof_gives_it(
    run, recorded, registry, create_task, keeper, prover, chain, deployments_folder, tmp_path
):
    terms = create_task()
    task = hex_id(task_of(registry, terms))
    argv = ["ape", "run", "requester", "status", task, "--wait", "--poll", "1", "--timeout", "120"]
    argv += ["--network", chain.provider.uri]
    env = dict(os.environ, **{DEPLOYMENTS_ENV: str(deployments_folder)})
    waiting = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: list[str] = []
    ready = threading.Event()

    def read_stderr():
        for line in waiting.stderr:
            seen.append(line)
            if "waiting for task" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert ready.wait(120) and waiting.poll() is None, "".join(seen)

    price = 3 * ETHER // 100
    assignment = assign(registry, keeper, terms, prover, price)
    proof_bytes = prove(registry, terms, assignment, prover)
    out = waiting.stdout.read()
    assert waiting.wait(120) == 0, "".join(seen)
    reader.join(10)

    assert "waiting for task" in "".join(seen) and "done: 1 of 1 proof" in "".join(seen)
    assert "slots: 0 open, 0 assigned, 1 proven, 0 closed; complete" in out
    lines = out.splitlines()
    assigned_line = next(line for line in lines if " assigned " in line)
    assert f"slot 0 to {prover.address} (by {keeper.address}) at 0.03 ETH, deadline" in assigned_line
    proven_line = next(line for line in lines if " proven " in line)
    assert f"slot 0 by {prover.address}: paid 0.03 ETH, fee 0.001 ETH to {keeper.address}" in proven_line
    assert "refund 0.07 ETH" in proven_line

    saved = tmp_path / "proof.json"
    result = run("requester", "proof", task, "--out", str(saved))

    assert result.code == 0, result.err
    [proof] = json.loads(saved.read_text())["proofs"]
    assert proof["prover"] == prover.address
    assert proof["public_inputs"] == [str(int(prover.address, 16)), "49"]
    assert proof["proof"] == "0x" + proof_bytes.hex()
    assert proof["proof"] in result.out


def test_status_json__after_skip_decline_proof_slash_and_cancel__lists_each_and_withdraw_pays(
    run, recorded, registry, create_task, keeper, provers, stranger, requester, chain
):
    terms = create_task(redundancy=2)
    task = task_of(registry, terms)
    first, second, third = provers
    tx = registry.assign_batch(
        [item(terms, first, terms.max_reward), item(terms, stranger, terms.max_reward)], sender=keeper
    )
    [(_, first_assignment)] = assigned(registry, tx)
    declined = assign(registry, keeper, terms, second)
    registry.decline(terms.as_tuple(), declined.as_tuple(), sender=second)
    prove(registry, terms, first_assignment, first)
    late = assign(registry, keeper, terms, third)
    advance(chain, terms.proving_window + 1)
    registry.slash(terms.as_tuple(), third, late.as_tuple(), sender=stranger)
    credited = registry.balances(requester)

    cancelled = run("requester", "cancel", hex_id(task), "--json", account="TEST::1")

    assert cancelled.code == 0, cancelled.err
    refund = terms.max_reward + terms.frontend_fee
    assert cancelled.json()["refund"] == refund
    assert registry.balances(requester) == credited + refund
    assert counts(registry, task) == (0, 0, 1, 1)

    result = run("requester", "status", hex_id(task), "--json")

    assert result.code == 0, result.err
    data = result.json()
    assert data["counts"] == {"open": 0, "assigned": 0, "proven": 1, "closed": 1}
    assert data["phase"] == "closed (partly proven)"
    timeline = data["timeline"]
    names = [e["event"] for e in timeline]
    assert names == [
        "TaskPosted", "TaskAssigned", "AssignmentSkipped", "TaskAssigned", "TaskDeclined",
        "TaskProven", "TaskAssigned", "Slashed", "SlotsClosed",
    ]  # fmt: skip
    assert timeline[0]["terms"]["salt"] == terms.salt
    assert timeline[2]["reason"] == "registry: prover not in market"
    assert timeline[4]["reopened"] is True
    slashed = timeline[7]
    assert slashed["prover"] == third.address and slashed["collateral"] == terms.collateral
    assert slashed["to_requester"] == min(terms.collateral // 2, terms.max_reward)
    assert slashed["to_caller"] == terms.collateral // 10
    assert (timeline[8]["slots"], timeline[8]["refund"], timeline[8]["cancelled"]) == (1, refund, True)

    before = requester.balance
    owed = registry.balances(requester)
    paid = run("requester", "withdraw", "--json", account="TEST::1")

    assert paid.code == 0, paid.err
    assert paid.json()["amount"] == owed
    assert registry.balances(requester) == 0
    assert requester.balance == before + owed - paid_for_gas(chain, paid.json()["tx"])


# ------------------------------------------------------------------ reclaim, tasks


def test_reclaim__an_open_race_that_ended_unproven__refunds_the_requester_whoever_sends_it(
    run, recorded, registry, create_task, requester, stranger, chain
):
    terms = create_task(mechanism_id=OPEN_RACE)
    task = task_of(registry, terms)
    advance(chain, terms.proving_window + 1)
    credited = registry.balances(requester)

    result = run("requester", "reclaim", hex_id(task), account="TEST::6")

    assert result.code == 0, result.err
    assert f"reclaimed 1 unfilled slot of task {hex_id(task)}: 0.1 ETH credited to {requester.address}" in (
        result.out
    )
    assert registry.balances(requester) == credited + terms.escrow()
    assert registry.balances(stranger) == 0
    assert counts(registry, task) == (0, 0, 0, 1)


def test_tasks__a_requester_address__lists_its_tasks_with_their_slots(
    run, recorded, registry, create_task, requester
):
    tasks = [task_of(registry, create_task()), task_of(registry, create_task(redundancy=3))]

    result = run("requester", "tasks", "--requester", requester.address.lower(), "--json")

    assert result.code == 0, result.err
    assert result.json()["requester"] == requester.address
    listed = {t["task_id"]: t["counts"] for t in result.json()["tasks"]}
    assert listed[hex_id(tasks[0])] == {"open": 1, "assigned": 0, "proven": 0, "closed": 0}
    assert listed[hex_id(tasks[1])]["open"] == 3


# ------------------------------------------------------------------ bad input, as a user meets it


def test_post__bad_amount_or_inputs_file__one_line_and_nothing_sent(
    run, recorded, market, requester, tmp_path
):
    nonce = requester.nonce
    shape = tmp_path / "shape.json"
    shape.write_text('{"x": 7}')
    cases = [
        (["--secret", "7", "--reward", "-1"], "--reward '-1' is negative"),
        (["--inputs-file", str(tmp_path / "gone.json")], f"--inputs-file {tmp_path}/gone.json: no such file"),
        (["--inputs-file", str(shape)], "circuit square: missing y (it takes x (field), y (field);"),
    ]  # fmt: skip
    for args, message in cases:
        assert_refused(
            run("requester", "post", str(market), *args, account="TEST::1"), message, requester, nonce
        )


def test_task_commands__malformed_unknown_or_someone_elses_task__one_line_and_nothing_sent(
    run, recorded, registry, create_task, requester, provers
):
    task = hex_id(task_of(registry, create_task()))
    nonce, other = requester.nonce, provers[0]
    other_nonce = other.nonce

    malformed = run("requester", "status", "0x12")
    unknown = run("requester", "cancel", "0x" + "00" * 31 + "05", account="TEST::1")
    elsewhere = run("requester", "cancel", task, account="TEST::2")

    assert_refused(malformed, "'0x12' is not a task id (32 bytes as hex, 0x and 64 digits)", requester, nonce)
    assert_refused(
        unknown, f"no task 0x{'00' * 31}05 in the registry at {registry.address}", requester, nonce
    )
    assert_refused(
        elsewhere,
        f"task {task} is {requester.address}'s; only its requester may cancel it, not {other.address}",
        other,
        other_nonce,
    )
    assert counts(registry, bytes.fromhex(task[2:])) == (1, 0, 0, 0)


def test_commands__unknown_network_account_or_malformed_address__refused_before_anything_is_sent(
    run, recorded, deployments_folder, requester
):
    nonce = requester.nonce
    env = dict(os.environ, **{DEPLOYMENTS_ENV: str(deployments_folder)})
    argv = ["ape", "run", "requester", "withdraw", "--network", "ethereum:nosuch", "--account", "TEST::1"]
    network = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    account = run("requester", "withdraw", account="nosuch")
    address = run("requester", "tasks", "--requester", "0x123")

    assert network.returncode != 0 and "No network in 'ethereum' named 'nosuch'" in network.stderr
    assert account.code != 0 and "Account with alias 'nosuch' not found" in account.err
    assert_refused(address, "--requester '0x123' is not an address (0x and 40 hex digits)", requester, nonce)


def test_status_wait__nothing_happens__times_out_with_exit_1(run, recorded, registry, create_task):
    task = hex_id(task_of(registry, create_task()))

    result = run("requester", "status", task, "--wait", "--timeout", "1", "--poll", "1")

    assert result.code == 1
    assert (
        result.error
        == f"error: timed out after 1 s waiting for task {task}: 0 of 1 proof, 0 assigned, 1 open, 0 closed"
    )
    assert "waiting for task" in result.err


# ------------------------------------------------------------------ the rest, in this process


@pytest.fixture
def local(registry, market, verifier, chain, tmp_path, monkeypatch):
    """Record the session's registry for the network this process is on (ethereum:local),
    so the command functions run here; returns a function that records more markets."""
    folder = tmp_path / "local-deployments"
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(folder))

    def record(*more: int) -> None:
        markets = {m: MarketRecord("square", verifier.address) for m in (market, *more)}
        deployments.save(
            Deployment("ethereum:local", chain.chain_id, registry.address, 0, UNBONDING_DELAY, markets),
            folder,
        )

    record()
    return record


def call(command, **options):
    """Run a command's function as click would, with its defaults."""
    values = {p.name: (() if p.multiple else p.default) for p in command.params if p.name != "network"}
    values.update(options)
    return command.callback(**values)


def refused(capsys, command, account, **options) -> str:
    nonce = account.nonce if account is not None else None
    capsys.readouterr()  # what the test itself sent before (ape's log lines) is not the command's
    with pytest.raises(SystemExit) as exit:
        call(command, account=account, **options) if account is not None else call(command, **options)
    assert exit.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    if account is not None:
        assert account.nonce == nonce
    return err.removeprefix("error: ")


MONTH = 30 * 86_400  # the registry's longest window
POST_REFUSALS = [
    ({"collateral": "0.0000000000000000001"}, "'0.0000000000000000001' has more than 18 decimals"),
    ({"fee": "abc"}, "--fee 'abc' is not a number of ETH (write it like 0.25)"),
    ({"reward": "0.001"}, "--reward 0.001 ETH is below market {market}'s least reward: give at least 0.01"),
    ({"collateral": "0.05"}, "0.05 ETH is below market {market}'s least collateral: give at least 0.1 ETH"),
    ({"reward": "20000"}, "less than the escrow 20000 ETH (1 x (20000 ETH reward + 0 ETH fee))"),
    ({"reward": "2000000"}, "--reward 2000000 ETH is above the registry's limit"),
    ({"collateral": "400000000"}, "--collateral 400000000 ETH is above the registry's limit"),
    ({"redundancy": "9"}, "--redundancy 9 is out of range: a task has 1 to 8 provers"),
    ({"redundancy": "two"}, "--redundancy 'two' is not a whole number"),
    ({"proving_window": "-5"}, "--proving-window '-5' is negative"),
    ({"market_id": "99"}, "no market 99 (this registry has"),
    ({"mechanism": "99"}, "no mechanism 99 (1 is the open race, 2 dutch; "),
    ({"fee": "0.001"}, "--fee 0.001 for mechanism 1 (open race): only a registered mechanism's frontend"),
    ({"proving_window": "0"}, "--proving-window is 0"),
    ({"proving_window": str(MONTH + 1)}, "--proving-window 2592001 s is above the registry's limit"),
    ({"mechanism": "2", "assign_window": str(MONTH + 1)}, "--assign-window 2592001 s is above the registry"),
    ({"mechanism": "2", "ramp": str(MONTH + 1)}, "--ramp 2592001 s is above the registry's limit"),
    ({"mechanism": "3", "proving_window": "60"}, "--proving-window 60 s is not above market {market}'s"),
    ({"assign_window": "60"}, "--assign-window is unused by mechanism 1 (open race)"),
    ({"mechanism": "2", "assign_window": "0"}, "--assign-window is 0: mechanism 2 could never assign"),
    ({"ramp": "60"}, "--start-price and --ramp are for mechanism 2 (dutch), not 1"),
    ({"mechanism": "2", "start_price": "0.5"}, "--start-price 0.5 ETH is above --reward 0.01 ETH"),
    ({"decay_floor": "0.001"}, "--decay-floor needs --decay"),
    ({"decay": True, "decay_floor": "1"}, "--decay-floor 1 ETH is above --reward 0.01 ETH"),
    ({"capabilities": str(2**64)}, "--capabilities 0x10000000000000000 has bits above 63"),
    ({"input_uri": "u" * 257}, "--input-uri is 257 characters; the registry takes at most 256"),
    ({"secret": None}, "give the task's inputs with one of --inputs-file, --input NAME=VALUE or --secret N"),
    ({"input_pairs": ("x=7",)}, "give the inputs one way, not with --input and --secret"),
    ({"secret": None, "input_pairs": ("x=7", "y=50")}, "(Error in template Square_0 line: 14); no prover"),
    ({"secret": None, "input_pairs": ("x7",)}, "--input 'x7' is not NAME=VALUE (e.g. --input x=7)"),
    ({"secret": None, "input_pairs": ("x=[7", "y=49")}, "--input x='[7' is not a JSON array"),
    ({"secret": None, "input_pairs": ("x=[7]", "y=49")}, "input x is [7], not a number (field)"),
    ({"secret": None, "input_pairs": ("x=7", "y=z")}, "input y is 'z', not a number"),
    ({"secret": None, "inputs_file": "{tmp}/list.json"}, "expected a JSON object of circuit square's inputs"),
    ({"secret": None, "inputs_file": "{tmp}/bad.json"}, "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize("options, message", POST_REFUSALS, ids=[m[:40] for _, m in POST_REFUSALS])
def test_post__terms_the_registry_or_circuit_would_refuse__say_what_to_change(
    local, market, requester, capsys, tmp_path, options, message
):
    (tmp_path / "list.json").write_text("[7, 49]")
    (tmp_path / "bad.json").write_text("{x: 7")
    options = {
        "market_id": str(market),
        "secret": "7",
        **{k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in options.items()},
    }

    assert message.format(market=market) in refused(capsys, requester_script.post, requester, **options)


def test_post__paused_market_retired_mechanism_or_unbound_market__refused(
    local, registry, market, owner, requester, create_market, capsys
):
    unbound = create_market(binding=BINDING_NONE)
    local(unbound)
    tx = registry.register_mechanism("old", [], sender=owner)
    retired = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
    registry.retire_mechanism(retired, sender=owner)
    registry.set_market_paused(market, True, sender=owner)
    post = requester_script.post

    paused = refused(capsys, post, requester, market_id=str(market), secret="7")
    gone = refused(capsys, post, requester, market_id=str(unbound), secret="7", mechanism=str(retired))
    race = refused(capsys, post, requester, market_id=str(unbound), secret="7")

    assert (
        paused == f"market {market} is paused by its creator {owner.address}: no new tasks until it resumes"
    )
    assert gone == f"mechanism {retired} is retired: no new task may name it; choose another --mechanism"
    assert race.startswith(f"market {unbound} does not bind proofs to their prover")
    assert "use --mechanism 2 or a registered mechanism with --redundancy 1" in race


def test_cancel_reclaim_withdraw_proof__too_early_nothing_open_owed_or_proven__refused(
    local, registry, create_task, keeper, prover, stranger, requester, capsys
):
    race = task_of(registry, create_task(mechanism_id=OPEN_RACE))
    held_terms = create_task()
    held = task_of(registry, held_terms)
    assign(registry, keeper, held_terms, prover)
    dutch = task_of(registry, create_task(mechanism_id=DUTCH))

    running = refused(capsys, posted_commands.cancel, requester, task_id=hex_id(race))
    nothing_open = refused(capsys, posted_commands.cancel, requester, task_id=hex_id(held))
    early = refused(capsys, posted_commands.reclaim, requester, task_id=hex_id(dutch))
    owed = refused(capsys, posted_commands.withdraw, stranger)
    no_proof = refused(capsys, posted_commands.proof, None, task_id=hex_id(held))

    assert running.startswith(f"task {hex_id(race)} is an open race running until ")
    assert "provers may be proving it; cancel or reclaim after that" in running
    assert nothing_open == (
        f"task {hex_id(held)} has no open slot to cancel: 0 of 1 proof, 1 assigned, 0 open, 0 closed; "
        "an assigned slot is refunded by a slash after its deadline"
    )
    assert early.startswith(f"task {hex_id(dutch)}'s assignment window runs until ")
    assert early.endswith("reclaim after that; its requester may cancel it now")
    assert owed.startswith(f"nothing to withdraw for {stranger.address}")
    assert no_proof == f"task {hex_id(held)} has no proof yet: 1 assigned, 0 open"
