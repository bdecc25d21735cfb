"""The prover agent with `--simulate` (for simulations: a real agent behaving like slower
or less reliable hardware, its proofs still real), run as a simulation runs it: a process
against this session's anvil, tasks assigned by the mechanism's frontend (the test, as
`keeper`). Each test checks what the chain says: TaskProven and its block's time,
TaskDeclined, a slash that succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provingmarket.formats import OPEN_RACE
from tests.factories import ETHER, ROOT, assigned, item, wait_until

PRICE = ETHER // 20
MARGIN = 2  # the agent's --margin (its default): seconds kept before a deadline


@pytest.fixture
def start_agent(spawn, tmp_path):
    """start_agent(stack, key, hardware) -> the agent's Process, once it logged agent.start."""

    def start(stack, key: str, hardware: dict):
        process = spawn(
            "provingmarket.agent",
            *("--rpc", stack.rpc, "--deployment", str(stack.record), "--key-env", "PROVER_KEY"),
            *("--data-dir", str(tmp_path / "agent"), "--poll", "0.2", "--no-dutch"),
            *("--simulate", json.dumps(hardware)),
            env={"PROVER_KEY": key},
            name="agent",
        )
        process.wait_for("agent.start", timeout=60)
        return process

    return start


def assign(stack, keeper, terms, prover: str):
    """The assignment, and the assigning transaction's block time."""
    tx = stack.registry.assign(item(terms, prover, PRICE), sender=keeper)
    [(_, assignment)] = assigned(stack.registry, tx)
    return assignment, stack.client.web3.eth.get_block(tx.block_number)["timestamp"]


def events(stack, names: list[str], terms) -> list:
    return stack.client.events(names, task_id=stack.client.task_id(terms))


def for_task(stack, terms):
    tid = "0x" + stack.client.task_id(terms).hex()
    return lambda line: line.get("task") == tid


def test_simulated__failure_rate_one__never_proves_nor_declines__slashed_after_the_deadline(
    make_stack, keeper, post, make_prover, start_agent, chain
):
    # A decline within the 3 s grace would cost nothing; a frontend's window outlasts it.
    stack = make_stack([keeper.address], grace_period=3)
    key, me = make_prover(stack, capacity=1, proving_time=1)
    agent = start_agent(stack, key, {"failure_rate": 1, "seed": 3})
    assert agent.events("agent.start")[0]["simulate"] == {
        "prove_seconds": 0.0,
        "failure_rate": 1.0,
        "latency": 0.0,
        "seed": 3,
    }
    terms = post(stack, proving_window=4)
    assignment, _ = assign(stack, keeper, terms, me)
    race = post(stack, mechanism_id=OPEN_RACE)

    [failed] = agent.wait_for("simulated.failure", where=for_task(stack, terms))
    assert failed["slot"] == assignment.slot and failed["seed"] == 3 and failed["market"] == stack.market_id
    [failed_race] = agent.wait_for("simulated.failure", where=for_task(stack, race))
    assert failed_race["race"] is True

    # Restarted, it draws the same: no second failure said, still nothing proven.
    assert agent.stop() == 0
    agent.start()
    agent.wait_for("agent.start", count=2)
    time.sleep(1.5)  # a few rounds of the restarted agent
    assert len(agent.events("simulated.failure")) == 2

    def past_deadline() -> bool:
        chain.mine()  # anvil mines only for transactions: a block to carry the time
        return chain.provider.web3.eth.get_block("latest")["timestamp"] > assignment.deadline

    wait_until(past_deadline, timeout=30, every=0.5, what="the assignment's deadline passing")
    tx = stack.registry.slash(terms.as_tuple(), me, assignment.as_tuple(), sender=keeper)
    assert [(e.prover, e.slot) for e in tx.events.filter(stack.registry.Slashed)] == [(me, assignment.slot)]
    for task in (terms, race):
        assert not events(stack, ["TaskProven", "TaskDeclined"], task)
    assert not agent.events("agent.proving") and not agent.events("agent.declined")
    assert not agent.events("agent.give_up") and not agent.events("agent.error")
    assert agent.alive()


def test_simulated__slow_hardware__proof_lands_seconds_later_and_the_agent_plans_with_it(
    make_stack, keeper, post, make_prover, start_agent, chain
):
    stack = make_stack([keeper.address], grace_period=3)  # the 4 s window below must outlast it
    # It declares a second a proof: the simulated seconds are what it learns instead.
    key, me = make_prover(stack, capacity=1, proving_time=1)
    agent = start_agent(stack, key, {"prove_seconds": 3, "latency": 0.3})
    terms = post(stack)
    _, assigned_at = assign(stack, keeper, terms, me)

    [proved] = agent.wait_for("agent.proved", where=for_task(stack, terms))
    assert proved["ms"] >= 3000 and proved["expected_s"] >= 3  # its measure of proving time
    agent.wait_for("agent.paid", where=for_task(stack, terms))
    [proof] = events(stack, ["TaskProven"], terms)
    assert proof.prover == me
    landed = chain.provider.web3.eth.get_block(proof.block)["timestamp"]
    assert landed - assigned_at >= 3, (assigned_at, landed)

    # A 4 s window: a second a proof plus the margin would fit, 3 s and more do not, so
    # it declines within the grace period instead of proving.
    short = post(stack, proving_window=4)
    assign(stack, keeper, short, me)
    [declined] = agent.wait_for("agent.declined", where=for_task(stack, short))
    assert declined["needs_s"] >= 3 + MARGIN
    wait_until(lambda: events(stack, ["TaskDeclined"], short), timeout=20, what="TaskDeclined")
    assert not events(stack, ["TaskProven"], short)
    assert len(agent.events("agent.proving")) == 1


def run_agent_cli(tmp_path: Path, rpc: str, simulate: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "provingmarket.agent",
            *("--rpc", rpc, "--deployment", str(tmp_path / "none.json"), "--key-env", "PROVER_KEY"),
            *("--data-dir", str(tmp_path / "a"), "--simulate", simulate),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PROVER_KEY="0x" + "11" * 32),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("simulate", "expected"),
    [
        ('{"prove_seconds": 1', "--simulate is not JSON"),
        ("[1, 2]", "--simulate must be a JSON object"),
        ('{"prove_seconds": 1, "speed": 2}', "--simulate: unknown key(s) speed"),
        ('{"failure_rate": 2}', "--simulate: failure_rate must be from 0 to 1, not 2"),
        ('{"latency": -1}', "--simulate: latency must be a number of 0 or more, not -1"),
        ('{"prove_seconds": "3"}', "--simulate: prove_seconds must be a number of 0 or more, not '3'"),
        ('{"seed": 1.5}', "--simulate: seed must be a whole number, not 1.5"),
    ],
)
def test_simulated__bad_simulate__one_line_error_and_exit_code_1(tmp_path, rpc, simulate, expected):
    done = run_agent_cli(tmp_path, rpc, simulate)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], done.stderr
