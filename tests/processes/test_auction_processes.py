"""The auction frontend with its API in two processes (`--api-processes 2`) on one port and
one bid store, against anvil: bids taken by either process cleared once and assigned
through the registry, a signature one process took refused by the other, an API process
killed by SIGKILL losing none of the bids it acknowledged while the other keeps serving
and the frontend starts a new one, and every API process gone once the frontend stops.

The frontend hands connections to its API processes in turn; which one took a bid (or
refused one) is read from its DEBUG log line (`pid`)."""

from __future__ import annotations

import os
import signal

from provingmarket.devnet.chaos.supervisor import running
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


def gone(pid: int) -> bool:
    """Whether `pid` (an API process of the frontend this test started) has exited and was
    reaped by its parent."""
    return not running(pid)


def test_two_api_processes__bids_through_either_cleared_once__a_killed_one_loses_no_acknowledged_bid(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = [make_prover(stack, capacity=1) for _ in range(4)]
    options = ("--api-processes", "2", "--log-level", "DEBUG")
    frontend = start(spawn, stack, key, tmp_path / "auction", *options, window=8)
    url = api_url(frontend)
    pids = frontend.events("auction.api")[0]["pids"]
    assert len(set(pids)) == 2
    task_id = task_hex(stack, post(stack, max_reward=ETHER // 10))
    opened(url, task_id)
    expiry = chain_now(stack) + HOUR
    prices = [4 * ETHER // 100, ETHER // 100, 3 * ETHER // 100, 2 * ETHER // 100]
    bids = [signed(stack, k, task_id, price, expiry) for (k, _), price in zip(provers, prices, strict=True)]

    def bid(body: dict) -> tuple[int, dict]:
        return call("POST", f"{url}/bids", body)  # a connection of its own, each

    def taken_by(bid_id: str) -> int:
        [line] = frontend.wait_for("auction.bid", where=lambda e: e["bid"] == bid_id)
        return line["pid"]

    taken = [bid(b) for b in bids[:3]]
    assert [status for status, _ in taken] == [202, 202, 202], taken
    takers = [taken_by(body["bid_id"]) for _, body in taken]
    assert set(takers) == set(pids)  # both took bids
    replays = [bid(bids[0]), bid(bids[0])]  # the signature taken first, sent to each process
    assert [status for status, _ in replays] == [409, 409]
    assert all("submitted before" in body["detail"] for _, body in replays)
    refusers = {
        e["pid"] for e in frontend.wait_for("auction.bid_refused", 2, where=lambda e: e["rule"] == "replayed")
    }
    assert refusers == set(pids)  # the process that did not take it refused it too

    killed = takers[0]
    os.kill(killed, signal.SIGKILL)  # it acknowledged at least one bid; the other keeps serving
    # Connections handed to it while it dies are reset (its threads close its files last):
    # bid again once the frontend has seen it exit and started another in its place.
    [exited] = frontend.wait_for("auction.api_process_exited")
    assert exited["pid"] == killed and exited["exit"] == "killed by signal 9"
    status, body = bid(bids[3])
    assert status == 202, body
    ids = [b["bid_id"] for _, b in taken] + [body["bid_id"]]

    result = closed(url, task_id, timeout=40)["result"]
    assert result["bids"] == 4  # the killed process's among them
    assert result["winners"] == [{"prover": provers[1][1], "price": str(prices[3])}]
    statuses = [call("GET", f"{url}/bids/{i}")[1]["status"] for i in ids]
    assert statuses == ["lost", "won", "lost", "lost"]
    [event] = wait_until(lambda: assigned(stack, task_id), what="the assignment")
    assert (event.prover, event.price, event.frontend) == (provers[1][1], prices[3], address)
    cleared = frontend.events("auction.cleared")
    assert [e["task"] for e in cleared] == [task_id]  # cleared once, by the one keeper

    # the process started in the killed one's place is handed connections too
    new = exited["replaced_by"]
    assert [bid(bids[2])[0], bid(bids[2])[0]] == [409, 409]  # the auction is closed
    frontend.wait_for("auction.bid_refused", where=lambda e: e["pid"] == new and e["rule"] == "closed")

    assert frontend.stop() == 0
    every = {*pids, new}
    assert [pid for pid in every if not gone(pid)] == [], "API processes left behind"
