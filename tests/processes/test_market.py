"""The whole market as processes: the orderbook frontend and three prover agents, killed
with SIGKILL at several moments and started again, while anvil mines a block a second.
No task is lost, none is assigned twice, no proof is submitted twice."""

from __future__ import annotations

import signal
import sqlite3
import time

from tests.factories import ETHER, decisions_by_pair, frontend_account, spawn_agent, start_frontend


def start_agent(spawn, stack, key, db, name):
    return spawn_agent(spawn, stack, key, db, name=name, wait=False)


def restart(process, kind: str) -> None:
    process.kill(signal.SIGKILL)
    process.popen.wait(10)
    process.start()
    process.wait_for(kind, process.starts, timeout=60)


def test_market__frontend_and_agent_killed_and_restarted__every_task_proven_once(
    make_stack, make_prover, funded, post_many, spawn, tmp_path, interval_mining, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = [make_prover(stack, capacity=2, ask=ask * ETHER // 100) for ask in (1, 2, 3)]
    interval_mining(1)
    frontend = start_frontend(spawn, stack, key, tmp_path / "frontend")
    agents = [
        start_agent(spawn, stack, prover_key, tmp_path / f"agent-{i}", f"agent-{i}")
        for i, (prover_key, _) in enumerate(provers)
    ]
    for agent in agents:
        agent.wait_for("agent.start", timeout=60)
    tasks = post_many(stack, 12, max_reward=ETHER // 10, proving_window=30, assign_window=180)
    ids = {stack.client.task_id(t) for t in tasks}

    frontend.wait_for("orderbook.decision", 1, timeout=60)
    restart(frontend, "orderbook.start")  # a batch in flight, most likely
    agents[0].wait_for("agent.proving", 1, timeout=60)
    restart(agents[0], "agent.start")  # a proof being made or sent
    time.sleep(2)
    restart(frontend, "orderbook.start")
    agents[1].wait_for("agent.proving", 1, timeout=60)
    restart(agents[1], "agent.start")

    def proven() -> dict[bytes, int]:
        counted: dict[bytes, int] = {}
        for e in stack.client.events(["TaskProven"]):
            counted[bytes(e.task_id)] = counted.get(bytes(e.task_id), 0) + 1
        return counted

    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and set(proven()) != ids:
        time.sleep(0.5)
    assert proven() == {task_id: 1 for task_id in ids}, "a task lost or proven twice"
    for task_id in ids:
        assert tuple(stack.client.call("task_status", task_id))[:4] == (0, 0, 1, 0)
    assert all(count == 1 for count in decisions_by_pair(frontend).values()), "an assignment decided twice"

    for process in [frontend, *agents]:
        assert process.stop() == 0
    for i in range(3):
        db = sqlite3.connect(tmp_path / f"agent-{i}" / "outbox.sqlite")
        sent = db.execute("SELECT keys, state FROM outbox WHERE fn = 'prove'").fetchall()
        db.close()
        keys = [k for k, _ in sent]
        assert len(keys) == len(set(keys)), f"agent {i} sent a proof twice"
        assert all(state == "done" for _, state in sent), f"agent {i}: {sent}"
