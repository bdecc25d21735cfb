"""Frontends run as services: /healthz and /readyz on a real keeper, quiet logs while
nothing changes, and a port in use said in one line."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from tests.factories import frontend_account, scrape, spawn_frontend, start_frontend, wait_until


def probe(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def info(process) -> list[str]:
    return [line["event"] for line in process.lines if line.get("level") == "info"]


def test_keeper__ready_while_its_rounds_run__not_ready_when_they_stop__quiet_when_idle(
    make_stack, funded, spawn, tmp_path, relay, interval_mining
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    stack.rpc = relay.url
    interval_mining(1)  # blocks keep coming, nothing happens in them
    args = ("--metrics-port", "0", "--ready-age", "2", "--log-level", "INFO")
    frontend = start_frontend(spawn, stack, key, tmp_path / "ob.sqlite", *args)
    [served] = frontend.wait_for("orderbook.metrics")
    base = served["url"].removesuffix("/metrics")

    ready = wait_until(lambda: (answer := probe(base, "/readyz"))[0] == 200 and answer, what="ready")
    # a block a second: the mirror may be a block behind when asked, within --ready-lag (5)
    assert ready[1]["failing"] == [] and 0 <= ready[1]["lag_blocks"] <= 5
    assert probe(base, "/healthz")[0] == 200
    rounds = scrape(served["url"])["orderbook_round_seconds_count"]
    said = len(info(frontend))  # starting, and the first sync (the stack's own events)
    head = ready[1]["head"]
    wait_until(lambda: probe(base, "/readyz")[1]["head"] >= head + 3, what="three blocks more")
    assert scrape(served["url"])["orderbook_round_seconds_count"] >= rounds + 5
    assert info(frontend)[said:] == []  # idle rounds over new blocks say nothing at INFO

    relay.cut()  # the node stops answering: rounds fail, the loop lives on
    status, body = wait_until(lambda: (answer := probe(base, "/readyz"))[0] == 503 and answer, what="503")
    assert body["failing"][0].startswith("round: last completed") and body["ready"] is False
    assert probe(base, "/healthz")[0] == 200
    relay.restore()
    wait_until(lambda: probe(base, "/readyz")[0] == 200, what="ready again")
    assert frontend.stop() == 0


def test_ports_in_use__one_line_naming_the_port_and_exit_code_1(make_stack, funded, spawn, tmp_path):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        keeper = start_frontend(spawn, stack, key, tmp_path / "ob.sqlite", "--metrics-port", port)
        auction = spawn_frontend(
            spawn, stack, key, tmp_path / "au.sqlite", "--port", port, mechanism="auction"
        )
        assert keeper.popen.wait(60) == 1 and auction.popen.wait(60) == 1
    wait_until(lambda: keeper.text and auction.text, what="their error lines")
    assert keeper.text == [
        f"error: port {port} (metrics and health) is already in use: stop what holds it, "
        "or give another port with --metrics-port (0 picks a free one)\n"
    ]
    assert auction.text == [
        f"error: port {port} (the auction API) is already in use: stop what holds it, "
        "or give another port with --port (0 picks a free one)\n"
    ]
