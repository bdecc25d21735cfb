"""The chaos run's short seeded form (`make chaos` runs the full one): 40 tasks over every
mechanism on an anvil with a base fee, the agents proving through two queue workers on a
Redis broker and the frontends reading the indexer's mirror on PostgreSQL; eight SIGKILLs
and restarts among the frontends, the indexer, the agents, the workers, the broker and the
database server, two processes cut off the RPC for a while, RPC calls failed by the fault
proxies, run as a user runs it (`python -m provingmarket.devnet.chaos`). It exits 0 only if every invariant
held; the test reads its summary too: every task settled, none paid twice, each kill and
cut-off recovered, every kind of RPC fault injected and recovered, and every process it
started gone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from provingmarket.devnet.chaos.supervisor import running
from tests.factories import ROOT

KILLS = 8
FRONTENDS = ("orderbook", "auction", "election", "double_auction")
KINDS = (*FRONTENDS, "indexer", "agent", "worker", "broker", "database")
MECHANISMS = {"orderbook", "auction", "election", "double_auction", "open race", "dutch", "chain"}


def test_chaos_short__every_task_settled_once__every_fault_recovered__no_process_left(tmp_path):
    folder = tmp_path / "chaos"
    argv = [
        sys.executable,
        "-m",
        "provingmarket.devnet.chaos",
        "--tasks",
        "40",
        "--kills",
        str(KILLS),
        "--cuts",
        "2",
    ]
    argv += ["--agents", "2", "--post-seconds", "24", "--rpc-fault-rate", "0.03", "--seed", "3"]
    argv += ["--workers", "2", "--database"]
    run = subprocess.run(
        [*argv, "--folder", str(folder)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode == 0, said[-4000:]
    summary = json.loads((folder / "chaos.json").read_text())
    assert all(summary["invariants"].values()), summary["invariants"]
    outcomes = summary["outcomes"]
    assert set(outcomes) == MECHANISMS
    assert sum(o["posted"] for o in outcomes.values()) == 40
    assert sum(o.get("open", 0) for o in outcomes.values()) == 0
    assert sum(o.get("proven", 0) for o in outcomes.values()) >= 30, outcomes  # refunds are the exception
    faults = summary["faults"]
    kills = {kind: f for kind, f in faults.items() if kind.startswith("kill ")}
    assert sum(f["injected"] for f in kills.values()) == KILLS
    assert set(kills) <= {f"kill {kind}" for kind in KINDS}, kills
    # this seed's schedule reaches the new parts: a worker, the indexer, the database server
    assert {"kill worker", "kill indexer", "kill database"} <= set(kills), kills
    assert sum(f["injected"] for kind, f in faults.items() if kind.startswith("cut ")) == 2
    for kind in ("reset", "http_503", "http_429", "slow", "lost"):
        assert faults[f"rpc {kind}"]["injected"] >= 1, faults
    assert all(f["recovered"] == f["injected"] for f in faults.values()), faults
    # every process it started (restarts too) and its anvil are gone
    anvil = [int(p) for p in re.findall(r"anvil at \S+ \(pid (\d+)\)", said)]
    pids = summary["pids"] + anvil
    assert len(pids) >= 11 + KILLS + 1  # 11 processes and servers, each kill a restart, anvil
    assert [pid for pid in pids if running(pid)] == []
    killed = [o for o in summary["outages"] if o["cause"] in ("kill", "cut")]  # the kill log
    assert len(killed) == KILLS + 2 and all(o["up_at"] >= o["at"] for o in killed)
    report = (folder / "chaos.txt").read_text()
    assert "Faults injected and recovered" in report and "FAILED" not in report
