"""The prover agent (`python -m provingmarket.agent`) as a prover runs it: against this
session's anvil, with a staked and joined account whose key only the agent holds, tasks
assigned to it by the mechanism's frontend (the test, as `keeper`), real Groth16 proofs.
Each test checks what a prover would look up on the chain: TaskProven, TaskDeclined,
Withdrawn, its balance, the transactions its account sent."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.formats import OPEN_RACE
from tests.factories import (
    ETHER,
    PRICE,
    SLOW_BACKEND,
    address,
    advance,
    assign_in,
    backend_file,
    for_task,
    proofs,
    run_agent_cli,
    scrape,
    spawn_agent,
    task_id,
    wait_until,
)

ASK = ETHER // 100


@pytest.fixture
def prover_key(funded, make_stack, keeper, chain):
    """A funded key, and join(stack, ...) -> stakes and joins the stack's market with it."""
    key = funded()

    def join(stack, capacity: int = 1, ask: int = ASK, proving_time: int = 1, stake: int = 5 * ETHER):
        client = RegistryClient(
            chain.provider.web3, stack.registry.address, KeySigner(key), stack.client.from_block
        )
        client.transact("stake", value=stake)
        client.transact("join_market", stack.market_id, capacity, ask, proving_time, 0, [stack.mechanism_id])
        return client

    return key, join


@pytest.fixture
def start_agent(spawn, tmp_path):
    """start_agent(stack, key, *options, rpc=None) -> the agent's Process, once it logged agent.start."""

    def start(stack, key: str, *options: str, rpc: str | None = None, db: Path | None = None):
        return spawn_agent(spawn, stack, key, db or tmp_path / "agent", *options, rpc=rpc)

    return start


# ------------------------------------------------------------------ proving


def test_agent__assigned_task__is_proven_once_and_paid(
    make_stack, keeper, post, prover_key, start_agent, chain
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack)
    me = address(key)
    agent = start_agent(stack, key, "--metrics-port", "0")
    start = agent.events("agent.start")[0]
    assert start["prover"] == me
    assert start["memberships"][0]["market"] == stack.market_id
    assert start["metrics_port"] > 0

    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    paid = agent.wait_for("agent.paid", where=for_task(stack, terms))[0]
    found = proofs(stack, terms)
    assert [(e.prover, e.paid) for e in found] == [(me, PRICE)]
    assert paid["paid"] == PRICE and paid["tx"] == found[0].tx
    assert stack.client.balance(me) == PRICE
    assert len(agent.events("agent.assigned")) == 1
    metrics = scrape(f"http://127.0.0.1:{start['metrics_port']}/metrics")
    assert metrics["agent_proofs_paid_total"] == 1 and metrics["agent_paid_wei_total"] == PRICE
    assert metrics[f'agent_proof_seconds_count{{market="{stack.market_id}"}}'] == 1


@pytest.mark.parametrize("kill_at", ["agent.proved", "agent.submitted"])
def test_agent__killed_after_proving__restarts_and_proves_nothing_twice(
    make_stack, keeper, post, prover_key, start_agent, chain, kill_at
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack)
    me = address(key)
    agent = start_agent(stack, key)
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    agent.wait_for(kill_at, where=for_task(stack, terms))
    agent.kill()
    agent.popen.wait(10)
    time.sleep(0.3)  # the reader thread takes the killed process's last lines
    seen = len(agent.lines)
    agent.start()
    agent.wait_for("agent.start", count=2)

    wait_until(lambda: proofs(stack, terms), timeout=30, what="a TaskProven")
    time.sleep(1.5)  # a few rounds of the restarted agent
    assert [e.prover for e in proofs(stack, terms)] == [me]
    after = [line for line in agent.lines[seen:] if for_task(stack, terms)(line)]
    assert not [line for line in after if line["event"] == "agent.proving"]
    # stake, join, one proof: nothing else left the account
    assert chain.provider.web3.eth.get_transaction_count(me) == 3
    assert len(agent.events("agent.paid")) == 1


def test_agent__killed_at_random_moments__every_task_proven_once(
    make_stack, keeper, post, prover_key, start_agent, chain
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack, capacity=3)
    me = address(key)
    agent = start_agent(stack, key)
    tasks = [post(stack) for _ in range(3)]
    delays = random.Random(7).choices([0.0, 0.05, 0.1, 0.2, 0.4], k=4)
    for terms, delay in zip([*tasks, None], delays, strict=True):
        if terms is not None:
            assign_in(stack, keeper, terms, me)
        time.sleep(delay)
        agent.kill()
        agent.popen.wait(10)
        agent.start()
        agent.wait_for("agent.start", count=agent.starts)

    for terms in tasks:
        wait_until(lambda terms=terms: proofs(stack, terms), timeout=30, what="a TaskProven")
    time.sleep(1)
    for terms in tasks:
        assert [e.prover for e in proofs(stack, terms)] == [me]
    # stake, join, and one proof per task: no proof left the account twice
    assert chain.provider.web3.eth.get_transaction_count(me) == 2 + len(tasks)


def test_agent__node_gone_after_proving__submits_the_kept_proof_after_restart(
    make_stack, keeper, post, prover_key, start_agent, relay, tmp_path
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack)
    me = address(key)
    agent = start_agent(stack, key, "--backend", backend_file(tmp_path, SLOW_BACKEND), rpc=relay.url)
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    agent.wait_for("agent.proving", where=for_task(stack, terms))
    relay.cut()
    agent.wait_for("agent.proved", where=for_task(stack, terms))
    agent.wait_for("agent.rpc_error", where=for_task(stack, terms))
    agent.kill()
    agent.popen.wait(10)
    time.sleep(0.3)
    seen = len(agent.lines)
    relay.restore()
    agent.start()

    agent.wait_for("agent.paid", where=for_task(stack, terms))
    after = [line["event"] for line in agent.lines[seen:] if for_task(stack, terms)(line)]
    assert "agent.proving" not in after and "agent.submitted" in after
    assert [e.prover for e in proofs(stack, terms)] == [me]


def test_agent__capacity_two__proves_two_at_a_time_and_races(
    make_stack, keeper, post, prover_key, start_agent, tmp_path
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack, capacity=2)
    me = address(key)
    agent = start_agent(stack, key, "--backend", backend_file(tmp_path, SLOW_BACKEND))
    tasks = [post(stack) for _ in range(2)]
    for terms in tasks:
        assign_in(stack, keeper, terms, me)
    race = post(stack, mechanism_id=OPEN_RACE)

    for terms in [*tasks, race]:
        agent.wait_for("agent.paid", where=for_task(stack, terms), timeout=90)
    for terms in [*tasks, race]:
        assert [e.prover for e in proofs(stack, terms)] == [me]
    assert proofs(stack, race)[0].paid == race.max_reward
    # never more than the capacity proving at once
    running = most = 0
    for line in agent.lines:
        if line.get("event") == "agent.proving":
            running += 1
        elif line.get("event") in ("agent.proved", "agent.proving_failed"):
            running -= 1
        most = max(most, running)
    assert most == 2


# ------------------------------------------------------------------ deadlines


def test_agent__deadline_out_of_reach__declines_within_the_grace_period(
    make_stack, keeper, post, prover_key, start_agent
):
    key, join = prover_key
    stack = make_stack([keeper.address], grace_period=30)
    join(stack)
    me = address(key)
    agent = start_agent(stack, key, "--margin", "1000")  # more than the 300 s proving window
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    declined = agent.wait_for("agent.declined", where=for_task(stack, terms))[0]
    assert declined["left_s"] < declined["needs_s"]
    wait_until(
        lambda: stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms)),
        timeout=20,
        what="TaskDeclined",
    )
    assert [e.prover for e in stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms))] == [me]
    assert not proofs(stack, terms) and not agent.events("agent.proving")


def test_agent__deadline_out_of_reach_after_grace__gives_up_and_says_so(
    make_stack, keeper, post, prover_key, start_agent, chain
):
    key, join = prover_key
    stack = make_stack([keeper.address], grace_period=2)  # the least the registry allows
    join(stack)
    me = address(key)
    terms = post(stack)
    assign_in(stack, keeper, terms, me)
    advance(chain, 3)  # the chain's clock passes the grace period: no decline any more
    agent = start_agent(stack, key, "--margin", "1000")

    gave_up = agent.wait_for("agent.give_up", where=for_task(stack, terms))[0]
    assert gave_up["needs_s"] >= 1000 and 0 < gave_up["left_s"] < terms.proving_window
    assert not stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms))
    assert not proofs(stack, terms) and not agent.events("agent.proving")


def failing_backend(tmp_path: Path, times: int) -> dict:
    """snarkjs, after failing the first `times` attempts (exit code 3)."""
    count = tmp_path / "attempts"
    script = (
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}; "
        f'if [ "$n" -lt {times} ]; then echo "GPU fell off the bus" >&2; exit 3; fi; exec bash "$0" "$@"'
    )
    return {**SLOW_BACKEND, "command": ["bash", "-c", script, *SLOW_BACKEND["command"][3:]]}


def test_agent__backend_fails_once__retries_and_is_paid(
    make_stack, keeper, post, prover_key, start_agent, tmp_path
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack)
    me = address(key)
    agent = start_agent(stack, key, "--backend", backend_file(tmp_path, failing_backend(tmp_path, 1)))
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    agent.wait_for("agent.paid", where=for_task(stack, terms))
    failed = agent.events("agent.proving_failed")
    assert len(failed) == 1 and failed[0]["retry_in"] == 1.0 and "GPU fell off the bus" in failed[0]["error"]
    assert [line["attempt"] for line in agent.events("agent.proving")] == [1, 2]
    assert [e.prover for e in proofs(stack, terms)] == [me]


def test_agent__backend_keeps_failing__gives_up_after_retries_and_declines(
    make_stack, keeper, post, prover_key, start_agent, tmp_path
):
    key, join = prover_key
    stack = make_stack([keeper.address], grace_period=60)
    join(stack)
    me = address(key)
    failing = backend_file(tmp_path, failing_backend(tmp_path, 100))
    agent = start_agent(stack, key, "--backend", failing, "--retries", "1")
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    declined = agent.wait_for("agent.declined", where=for_task(stack, terms))[0]
    assert "the backend failed 2 times" in declined["reason"]
    assert [line["retry_in"] for line in agent.events("agent.proving_failed")] == [1.0, None]
    wait_until(
        lambda: stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms)),
        timeout=20,
        what="TaskDeclined",
    )
    assert not proofs(stack, terms)


# ------------------------------------------------------------------ withdrawing, stopping


def test_agent__withdraws_past_the_threshold_and_when_asked(
    make_stack, keeper, post, prover_key, start_agent
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack)
    me = address(key)
    agent = start_agent(stack, key, "--withdraw-at", "0.04")

    def withdrawn():
        return [e.amount for e in stack.client.events(["Withdrawn"]) if e.account == me]

    terms = post(stack)
    assign_in(stack, keeper, terms, me, PRICE)  # 0.05 ETH: past the threshold
    wait_until(withdrawn, timeout=30, what="a Withdrawn event")
    assert withdrawn() == [PRICE]

    small = post(stack)
    assign_in(stack, keeper, small, me, ASK)  # 0.01 ETH: below it, kept
    agent.wait_for("agent.paid", where=for_task(stack, small))
    time.sleep(1)
    assert withdrawn() == [PRICE]
    os.kill(agent.pid, signal.SIGUSR1)
    wait_until(lambda: len(withdrawn()) == 2, timeout=30, what="a second Withdrawn event")
    assert withdrawn() == [PRICE, ASK]
    assert stack.client.balance(me) == 0


def test_agent__sigterm_while_proving__submits_then_exits_zero(
    make_stack, keeper, post, prover_key, start_agent, tmp_path
):
    key, join = prover_key
    stack = make_stack([keeper.address])
    join(stack)
    me = address(key)
    agent = start_agent(stack, key, "--backend", backend_file(tmp_path, SLOW_BACKEND))
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    agent.wait_for("agent.proving", where=for_task(stack, terms))
    assert agent.stop() == 0
    time.sleep(0.3)  # the reader thread takes the last lines
    stop = agent.events("agent.stop")
    assert len(stop) == 1 and stop[0]["signal"] == "SIGTERM" and stop[0]["unfinished"] == 0
    assert [e.prover for e in proofs(stack, terms)] == [me]
    events = [line.get("event") for line in agent.lines]
    assert events.index("agent.paid") < events.index("agent.stop")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no deployment", "no deployment record at"),
        ("no key", "set PROVER_KEY"),
        ("bad amount", "--withdraw-at"),
        ("bad code hash", "--trust-verifier '0x1234' is not a code hash (0x and 64 hex digits)"),
        ("missing option", "--key-env"),
    ],
)
def test_agent__bad_input__one_line_error_and_exit_code_1(tmp_path, rpc, case, expected):
    record = tmp_path / "missing.json"
    args = [
        "--rpc",
        rpc,
        "--deployment",
        str(record),
        "--data-dir",
        str(tmp_path / "a"),
        "--key-env",
        "PROVER_KEY",
    ]
    env = {"PROVER_KEY": "0x" + "11" * 32}
    if case == "no key":
        env = {}
    elif case == "bad amount":
        args += ["--withdraw-at", "lots"]
    elif case == "bad code hash":
        args += ["--trust-verifier", "0x" + "ab" * 32, "--trust-verifier", "0x1234"]
    elif case == "missing option":
        args = args[:-2]
    done = run_agent_cli(*args, env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr


def test_agent__prover_in_no_market__says_to_join_and_exits_1(make_stack, keeper, funded, tmp_path, rpc):
    stack = make_stack([keeper.address])
    key = funded()
    args = ["--rpc", rpc, "--deployment", str(stack.record), "--key-env", "PROVER_KEY"]
    done = run_agent_cli(*args, "--data-dir", str(tmp_path / "a"), env={"PROVER_KEY": key})
    assert done.returncode == 1
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "has joined no market" in lines[0], (
        done.stderr
    )
