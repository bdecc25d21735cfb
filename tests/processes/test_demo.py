"""`ape run demo` (what `make demo` runs) end to end: its own anvil, the orderbook, auction
and election frontends and three prover agents as processes, a stream of tasks with real
proofs, an agent killed and restarted, auctions and Dutch auctions, then the personas
through four mechanisms, on a chain with a base fee. It must finish with every task proven
or refunded, say the fees each role paid, exit 0, and leave no process of its own behind."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import requests

from tests.factories import ROOT

STARTED = re.compile(r"\(pid (\d+)\)")  # the demo names each process it starts, with its pid
PROGRESS = re.compile(r"---- posted (\d+)/\d+ \| proven (\d+) ")  # the demo's count after each act
EXPLORER = re.compile(r"explorer started \(pid \d+\): open (http://127\.0\.0\.1:\d+/)")


def proven_shown(url: str, posted: int, proven: int, wait: float = 20.0) -> tuple[int, int, str]:
    """The explorer's front page's tasks and proven tasks, once they equal `posted` and
    `proven` (or after `wait` seconds), with the page."""
    deadline = time.monotonic() + wait
    while True:
        page = requests.get(url, timeout=10)
        assert page.status_code == 200
        figures = {
            name: int(value)
            for name, value in re.findall(r'data-figure="(tasks_\w+)" data-value="(\d+)"', page.text)
        }
        shown = (figures.get("tasks_total", -1), figures.get("tasks_proven", -1))
        if shown == (posted, proven) or time.monotonic() > deadline:
            return (*shown, page.text)
        time.sleep(0.5)


def test_demo__every_task_proven_or_refunded__summary_shown__exit_0__no_process_left():
    """Only the demo's own processes are looked at, by the pids it printed: a chain or an
    agent someone else runs beside the tests is none of its business."""
    demo = subprocess.Popen(
        ["ape", "run", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),  # each line as it is printed
    )
    timer = threading.Timer(420, demo.kill)  # a hung demo fails the test instead of the run
    timer.start()
    lines, pages, url, act_one = [], {}, None, None
    assert demo.stdout is not None
    for line in demo.stdout:
        lines.append(line)
        # while the demo runs, its explorer serves the market: the front page once it
        # starts, and once act two begins it comes to show as many tasks proven as the
        # demo counted in act one (the keeper's mirror follows the chain a few blocks behind)
        found = EXPLORER.search(line)
        progress = PROGRESS.search(line)
        if found:
            url = found.group(1)
            pages["start"] = requests.get(url, timeout=10)
        elif progress:
            act_one = progress
        elif "Act two" in line and url and act_one:
            counted = (int(act_one.group(1)), int(act_one.group(2)))
            pages["act two"] = (counted, proven_shown(url, *counted))
    demo.wait()
    timer.cancel()
    out = "".join(lines)
    assert demo.returncode == 0, out[-3000:]
    assert pages["start"].status_code == 200 and "The demo is" in pages["start"].text
    counted, (posted, proven, page) = pages["act two"]
    assert (posted, proven) == counted, page[:3000]
    assert "act two" in page
    summary = out[out.index("Summary") :]
    posted = int(re.search(r"tasks posted\s+(\d+)", summary).group(1))
    proven = int(re.search(r"tasks proven[^\n]*?(\d+)\n", summary).group(1))
    refunded = int(re.search(r"tasks refunded[^\n]*?(\d+)\n", summary).group(1))
    assert posted == 64 and proven + refunded == posted
    assert re.search(r"tasks lost\s+0\n", summary)
    assert "carol's agent killed (SIGKILL)" in out and "carol's agent restarted" in out
    for name in ("alice", "bob", "carol"):
        assert re.search(rf"\n  {name}\s+0\.\d+\s+\d+\s+\d+\s+\d+", summary), f"no row for {name}"
    # act two: the agents bid in the auction frontend's sealed-bid auctions and lock Dutch
    # tasks; each mechanism's row counts its tasks, all proven
    for mechanism, tasks in (("orderbook", 24 + 6), ("auction", 8 + 6), ("dutch", 8)):
        row = re.search(rf"\n  {mechanism}\s+(\d+)\s+(\d+)\s", summary)
        assert row and int(row.group(1)) == tasks and int(row.group(2)) >= 1, mechanism
    # act three: each persona through election, open race, orderbook and auction; the open
    # race and the election served every persona (a cell: first-proof time, paid/max, provers)
    for persona in ("arbitrage", "rollup", "batch"):
        cells = re.search(rf"\n  {persona}\s+(.+)\n", summary).group(1).split()
        assert cells[0].endswith("s") and cells[3].endswith("s"), (persona, cells)
    # it runs with a base fee and says what every role paid for gas, from the receipts
    assert "base fee 1 gwei at the start" in out
    fees = re.search(r"fees paid, every role: (\d+\.\d+) ETH, ([\d,]+) gas \((\d+) transactions\)", summary)
    assert fees and float(fees.group(1)) > 0 and int(fees.group(2).replace(",", "")) > 0, summary[-1500:]
    for role in ("operator", "requesters", "provers", "frontends"):
        row = re.search(rf"\n  {role}\s+(\d+)\s+([\d,]+)\s+(\d+\.\d+)\n", summary)
        assert row and int(row.group(1)) > 0 and float(row.group(3)) > 0, role
    assert "every process stopped" in out and "anvil stopped" in out
    started = {int(pid) for pid in STARTED.findall(out)}
    assert len(started) >= 8  # its anvil, three frontends, the explorer, three agents (and a restart)
    # each was stopped and reaped by the demo itself (by its pid); none exited badly
    assert not re.search(r"\(pid \d+\) exited with", out), out[-3000:]
