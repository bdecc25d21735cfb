"""The orderbook frontend as a real process against anvil: it assigns by price, serves
its metrics, and loses nothing when killed, raced, cut off from its node or reorganised
under."""

from __future__ import annotations

import signal

from provingmarket.chain.mirror import Mirror
from tests.factories import ETHER, decisions_by_pair, frontend_account, scrape, start_frontend, wait_until


def assignments(stack) -> list:
    return stack.client.events(["TaskAssigned"])


def test_frontend__assigns_open_tasks_to_the_cheapest_asks_at_their_price(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = {
        ask: make_prover(stack, capacity=1, ask=ask)[1]
        for ask in (3 * ETHER // 100, ETHER // 100, 2 * ETHER // 100)
    }
    frontend = start_frontend(spawn, stack, key, tmp_path / "ob", "--metrics-port", "0")
    tasks = [post(stack, max_reward=ETHER // 10) for _ in range(2)]

    found = wait_until(lambda: len(assignments(stack)) >= 2 and assignments(stack), what="two assignments")
    paid = sorted((e.prover, e.price) for e in found)
    assert paid == sorted(
        [(provers[ETHER // 100], ETHER // 100), (provers[2 * ETHER // 100], 2 * ETHER // 100)]
    )
    assert {bytes(e.task_id) for e in found} == {stack.client.task_id(t) for t in tasks}

    decisions = frontend.wait_for("orderbook.assigned", 2)
    assert {d["prover"] for d in decisions} == {provers[ETHER // 100], provers[2 * ETHER // 100]}
    [served] = frontend.wait_for("orderbook.metrics")
    metrics = scrape(served["url"])
    assert metrics["orderbook_assignments_applied_total"] == 2
    assert metrics["orderbook_round_seconds_count"] >= 1
    assert frontend.stop() == 0
    assert frontend.events("orderbook.stop")


def assigned_once(stack, tasks) -> bool:
    """Every task holds exactly one assignment (redundancy 1) and none was skipped."""
    per_task: dict[bytes, int] = {}
    for e in assignments(stack):
        per_task[bytes(e.task_id)] = per_task.get(bytes(e.task_id), 0) + 1
    return all(per_task.get(stack.client.task_id(t)) == 1 for t in tasks)


def test_sigkill__at_any_moment__restart_resumes_and_sends_no_assignment_twice(
    make_stack, make_prover, funded, post_many, spawn, tmp_path, interval_mining
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    for ask in (1, 2, 3):
        make_prover(stack, capacity=6, ask=ask * ETHER // 100)
    interval_mining(1)  # sent transactions wait up to a second: kills land mid-flight
    db = tmp_path / "ob"
    frontend = start_frontend(spawn, stack, key, db, "--batch-size", "3")
    tasks = post_many(stack, 12, max_reward=ETHER // 10)

    frontend.wait_for("orderbook.decision", 1, timeout=60)
    frontend.kill(signal.SIGKILL)  # a batch sent, most likely not yet mined
    frontend.popen.wait(10)
    frontend.start()
    frontend.wait_for("orderbook.start", 2, timeout=60)
    frontend.kill(signal.SIGKILL)  # during the backfill
    frontend.popen.wait(10)
    frontend.start()
    frontend.wait_for("orderbook.start", 3, timeout=60)

    wait_until(lambda: assigned_once(stack, tasks), timeout=90, what="every task assigned once")
    assert not stack.client.events(["AssignmentSkipped"])
    assert all(count == 1 for count in decisions_by_pair(frontend).values())
    # its mirror, read by another process after it stopped, says what the chain says
    assert frontend.stop() == 0
    with Mirror(str(db / "mirror.sqlite"), stack.client) as mirror:
        mirror.sync()
        for t in tasks:
            view = mirror.task(stack.client.task_id(t))
            assert (view.open, view.assigned) == tuple(stack.client.call("task_status", view.task_id))[:2]


def test_rival_frontends__each_item_won_once__the_loser_skipped_with_a_reason_and_keeps_going(
    make_stack, make_prover, funded, post_many, spawn, tmp_path, interval_mining
):
    (key_a, a), (key_b, b) = frontend_account(funded), frontend_account(funded)
    stack = make_stack([a, b])
    for ask in (1, 2, 3):
        make_prover(stack, capacity=8, ask=ask * ETHER // 100)
    interval_mining(2)  # both see each block's tasks and send before the next one
    first = start_frontend(spawn, stack, key_a, tmp_path / "a", name="a")
    second = start_frontend(spawn, stack, key_b, tmp_path / "b", name="b")
    first.wait_for("orderbook.start")
    second.wait_for("orderbook.start")
    tasks = post_many(stack, 8, max_reward=ETHER // 10)
    more = post_many(stack, 8, max_reward=ETHER // 10)

    wait_until(lambda: assigned_once(stack, tasks + more), timeout=90, what="every task assigned once")
    skipped = first.events("orderbook.skipped") + second.events("orderbook.skipped")
    assert skipped, "the two frontends never raced for an item"
    assert {s["reason"] for s in skipped} <= {"registry: no free slot", "registry: prover already on task"}
    won = {e.frontend for e in assignments(stack)}
    assert won <= {a, b}
    assert first.alive() and second.alive()
    assert first.stop() == 0 and second.stop() == 0


def test_rpc_outage__the_keeper_waits_and_resumes(
    make_stack, make_prover, funded, post, spawn, tmp_path, relay
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    make_prover(stack, capacity=4)
    stack.rpc = relay.url  # the frontend reaches the node through the relay
    frontend = start_frontend(spawn, stack, key, tmp_path / "ob")
    first = post(stack)
    wait_until(lambda: assigned_once(stack, [first]), what="the first task assigned")

    relay.cut()
    during = [post(stack) for _ in range(2)]  # posted while the frontend cannot see the chain
    frontend.wait_for("orderbook.rpc_error", 2, timeout=30)
    assert not any(assigned_once(stack, [t]) for t in during)
    relay.restore()

    wait_until(lambda: assigned_once(stack, during), timeout=60, what="the tasks posted during the outage")
    frontend.wait_for("orderbook.rpc_back")
    assert frontend.alive()
    assert frontend.stop() == 0


def test_reorg__a_block_the_keeper_saw_is_dropped__its_mirror_matches_the_chain_again(
    make_stack, make_prover, funded, post, spawn, tmp_path, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    make_prover(stack, capacity=4)
    db = tmp_path / "ob"
    frontend = start_frontend(spawn, stack, key, db)
    task = post(stack)
    wait_until(lambda: assigned_once(stack, [task]), what="the task assigned")
    frontend.wait_for("orderbook.assigned")

    # The assignment's block (the head) is replaced by an empty one: the assignment is gone.
    chain.provider.web3.provider.make_request("anvil_reorg", [1, []])
    frontend.wait_for("mirror.reorg", timeout=30)
    # The keeper's transaction was in the dropped block: it is sent again, byte for byte.
    frontend.wait_for("outbox.reorged", timeout=30)
    wait_until(lambda: assigned_once(stack, [task]), timeout=30, what="the task assigned again")
    frontend.wait_for("orderbook.assigned", 2, timeout=30)
    assert frontend.stop() == 0

    with Mirror(str(db / "mirror.sqlite"), stack.client) as mirror:
        mirror.sync()
        view = mirror.task(stack.client.task_id(task))
        assert (view.open, view.assigned, view.proven) == tuple(
            stack.client.call("task_status", view.task_id)
        )[:3]
        [live] = mirror.live_assignments()
        [event] = assignments(stack)
        assert (live.prover, live.deadline) == (event.prover, event.deadline)
