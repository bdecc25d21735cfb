"""The market over a shared store: the indexer (`python -m provingmarket.runtime.indexer`)
follows the chain into Postgres, the orderbook frontend reads that mirror (`--database`)
instead of syncing one, a prover agent proves. Every task is proven once; a second indexer
on the same mirror is refused in one line; with the indexer stopped the frontend says once
that the mirror is stale and decides nothing, and goes on when the indexer is back."""

from __future__ import annotations

import time

from provingmarket.chain.database import open_database
from provingmarket.chain.mirror.schema import read_meta
from tests.factories import (
    ETHER,
    decisions_by_pair,
    frontend_account,
    spawn_agent,
    start_frontend,
    wait_until,
)


def start_indexer(spawn, stack, url: str, name: str = "indexer"):
    return spawn(
        "provingmarket.runtime.indexer",
        "--rpc",
        stack.rpc,
        "--deployment",
        str(stack.record),
        "--database",
        url,
        "--poll",
        "0.2",
        name=name,
    )


def test_indexer_on_postgres__frontend_reads_it__tasks_proven_once__a_stale_mirror_waits(
    make_stack, make_prover, funded, post_many, spawn, tmp_path, chain, postgres_server
):
    url = postgres_server.create_database("market_e2e")
    key, address = frontend_account(funded)
    stack = make_stack([address])
    prover_key, _ = make_prover(stack, capacity=2)
    indexer = start_indexer(spawn, stack, url)
    indexer.wait_for("indexer.start", timeout=60)
    second = start_indexer(spawn, stack, url, name="indexer-2")
    frontend = start_frontend(spawn, stack, key, tmp_path / "frontend", "--database", url, "--ready-lag", "3")
    agent = spawn_agent(spawn, stack, prover_key, tmp_path / "agent", wait=False)
    assert second.popen.wait(60) == 1
    assert "".join(second.text).strip().splitlines()[-1].startswith("error: another indexer is writing")
    frontend.wait_for("orderbook.start", timeout=60)
    agent.wait_for("agent.start", timeout=60)
    tasks = post_many(stack, 3, max_reward=ETHER // 10, proving_window=60, assign_window=600)

    def proven() -> dict[bytes, int]:
        counted: dict[bytes, int] = {}
        for e in stack.client.events(["TaskProven"]):
            counted[bytes(e.task_id)] = counted.get(bytes(e.task_id), 0) + 1
        return counted

    ids = {stack.client.task_id(t) for t in tasks}
    wait_until(lambda: set(proven()) >= ids, timeout=120, what="the first tasks proven")
    assert indexer.events("indexer.round")
    assert not (tmp_path / "frontend" / "mirror.sqlite").exists()  # it read the shared one

    # The indexer stops: the frontend sees its mirror fall behind and decides nothing. (It
    # may have trailed for a moment before, while blocks came faster than its rounds.)
    shared = open_database(url, "mirror", readonly=True)
    head = chain.provider.web3.eth.block_number
    wait_until(lambda: int(read_meta(shared)["cursor_block"] or 0) >= head, what="the indexer at the head")
    shared.close()
    assert indexer.stop() == 0
    wait_until(
        lambda: len(frontend.events("orderbook.mirror_stale"))
        == len(frontend.events("orderbook.mirror_caught_up")),
        timeout=30,
        what="the frontend caught up with the stopped indexer",
    )
    before = len(frontend.events("orderbook.mirror_stale"))
    [late] = post_many(stack, 1, max_reward=ETHER // 10, proving_window=60, assign_window=600)
    for _ in range(5):
        chain.provider.web3.provider.make_request("evm_mine", [])
    stale = frontend.wait_for("orderbook.mirror_stale", before + 1, timeout=30)[-1]
    assert "blocks behind the chain" in stale["reason"] and "check that its indexer runs" in stale["reason"]
    time.sleep(1)  # rounds go on meanwhile: still one line, and no decision on the late task
    assert len(frontend.events("orderbook.mirror_stale")) == before + 1
    late_id = "0x" + stack.client.task_id(late).hex()
    assert not [d for d in frontend.events("orderbook.decision") if d.get("task") == late_id]

    indexer.start()
    frontend.wait_for("orderbook.mirror_caught_up", before + 1, timeout=60)
    ids.add(stack.client.task_id(late))
    wait_until(lambda: set(proven()) >= ids, timeout=120, what="the late task proven")
    assert proven() == {task_id: 1 for task_id in ids}, "a task proven twice"
    assert all(count == 1 for count in decisions_by_pair(frontend).values()), "an assignment decided twice"
    for process in (frontend, agent, indexer):
        assert process.stop() == 0
