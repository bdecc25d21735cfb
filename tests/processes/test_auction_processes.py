"""The auction frontend with its API in two processes (`--api-processes 2`) on one port and
one bid store, against anvil: bids taken by either process cleared once and assigned
through the registry, a signature one process took refused by the other, an API process
killed by SIGKILL losing none of the bids it acknowledged while the other keeps serving
and the frontend starts a new one, and every API process gone once the frontend stops.

Which process answers a connection is the kernel's choice; the test makes it by stopping
the other one (SIGSTOP: it cannot accept) for the requests that must go to a given one."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

from tests.factories import ETHER, wait_until
from tests.processes.test_auction import (
    HOUR,
    api_url,
    assigned,
    call,
    chain_now,
    closed,
    frontend_account,
    opened,
    signed,
    start,
    task_hex,
)


@contextmanager
def only(serving: int, paused: int):
    """Requests inside go to the API process `serving`: `paused` is stopped meanwhile."""
    os.kill(paused, signal.SIGSTOP)
    try:
        yield serving
    finally:
        os.kill(paused, signal.SIGCONT)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_api_processes__bids_through_either_cleared_once__a_killed_one_loses_no_acknowledged_bid(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = [make_prover(stack, capacity=1) for _ in range(4)]
    frontend = start(spawn, stack, key, tmp_path / "auction", "--api-processes", "2", window=8)
    url = api_url(frontend)
    first, second = frontend.events("auction.api")[0]["pids"]
    task_id = task_hex(stack, post(stack, max_reward=ETHER // 10))
    opened(url, task_id)
    expiry = chain_now(stack) + HOUR
    prices = [4 * ETHER // 100, ETHER // 100, 3 * ETHER // 100, 2 * ETHER // 100]
    bids = [signed(stack, k, task_id, price, expiry) for (k, _), price in zip(provers, prices, strict=True)]

    def bid(body: dict) -> tuple[int, dict]:
        return call("POST", f"{url}/bids", body)

    with only(first, paused=second):
        taken = [bid(bids[0]), bid(bids[1])]
    with only(second, paused=first):
        taken.append(bid(bids[2]))
        replayed = bid(bids[0])  # the signature the first process took
    assert [status for status, _ in taken] == [202, 202, 202], taken
    assert replayed[0] == 409 and "submitted before" in replayed[1]["detail"]

    os.kill(first, signal.SIGKILL)  # it acknowledged two bids; the other keeps serving
    status, body = bid(bids[3])
    assert status == 202, body
    ids = [b["bid_id"] for _, b in taken] + [body["bid_id"]]

    result = closed(url, task_id, timeout=40)["result"]
    assert result["bids"] == 4  # the killed process's two among them
    assert result["winners"] == [{"prover": provers[1][1], "price": str(prices[3])}]
    statuses = [call("GET", f"{url}/bids/{i}")[1]["status"] for i in ids]
    assert statuses == ["lost", "won", "lost", "lost"]
    [event] = wait_until(lambda: assigned(stack, task_id), what="the assignment")
    assert (event.prover, event.price, event.frontend) == (provers[1][1], prices[3], address)
    cleared = frontend.events("auction.cleared")
    assert [e["task"] for e in cleared] == [task_id]  # cleared once, by the one keeper

    # the frontend started a process in the killed one's place, and it serves
    [exited] = frontend.wait_for("auction.api_process_exited")
    assert exited["pid"] == first and exited["exit"] == "killed by signal 9"
    third = exited["replaced_by"]
    with only(third, paused=second):
        assert wait_until(lambda: call("GET", f"{url}/health")[1]["status"] == "ok", what="the new process")

    assert frontend.stop() == 0
    assert [pid for pid in (first, second, third) if not gone(pid)] == [], "API processes left behind"
