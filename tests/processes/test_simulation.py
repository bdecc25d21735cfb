"""The simulation's small configuration end to end (`make sim` runs the full one): real
anvil chains, the real frontends and prover agents as processes, every policy alone (the
mechanisms, the double auction, the fallback chains) and then the router over the same
seeded workload, independent runs at once each on a chain of its own; the report has every
persona and policy, its plots are drawn, and no process is left behind. A configuration
with impossible values is refused before anything starts."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import xml.etree.ElementTree as ET

from simulation.config import POLICIES, PRESETS, ROUTER
from tests.factories import ROOT

STARTED = re.compile(r"\(pid (\d+)\)")  # the simulation names each process it starts, with its pid


def test_small_simulation__report_has_every_persona_and_policy__plots__no_process_left(tmp_path):
    folder = tmp_path / "report"
    run = subprocess.run(
        ["ape", "run", "sim", "--config", "small", "--report", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    started = {int(pid) for pid in STARTED.findall(run.stdout + run.stderr)}
    assert len(started) >= 4, (run.stdout + run.stderr)[-2000:]  # an anvil and processes per seed
    # each was stopped and reaped by the simulation itself (by its pid); none exited badly
    assert not re.search(r"\(pid \d+\) exited with", run.stdout + run.stderr), run.stderr[-3000:]
    # runs went at once: a second run was serving before the first had finished
    said = run.stdout.splitlines()
    first_done = next(i for i, line in enumerate(said) if ": done in " in line)
    assert sum(1 for line in said[:first_done] if ": ready after " in line) >= 2, run.stdout[-3000:]
    config = PRESETS["small"]
    personas = [r.persona for r in config.requesters]
    policies = [*POLICIES, ROUTER]
    results = json.loads((folder / "results.json").read_text())
    table = results["splits"]["training"]
    for persona in [*personas, "overall"]:
        assert set(table[persona]) == set(policies), persona
        losses = [table[persona][p]["loss"] for p in policies]
        assert min(losses) >= -1e-9 and all(0 <= table[persona][p]["utility"] <= 1 for p in policies)
    for persona in personas:  # the best policy for each persona has no loss
        assert min(table[persona][p]["loss"] for p in policies) == 0
    assert isinstance(table["verdict"]["router_beats_every_single"], bool)
    # a chain with a base fee: every policy's requesters paid fees, and the provers of every
    # policy that served a task (its proofs are their transactions), from the receipts. (Three
    # tasks a policy: a policy may serve none, as the double auction did once when its one
    # assignment went to the world's failing prover and no round pooled asks for the others.)
    for policy in policies:
        spent = table["fees"][policy]
        assert spent["requesters"]["wei"] > 0 and spent["requesters"]["transactions"] > 0, (policy, spent)
        if table["overall"][policy]["served"] > 0:
            assert spent["provers"]["wei"] > 0 and spent["provers"]["gas"] > 0, (policy, spent)
            assert spent["provers"]["transactions"] > 0, (policy, spent)
    serving = [p for p in policies if table["overall"][p]["served"] > 0]
    assert len(serving) >= len(policies) - 1, table["overall"]  # all but one at worst
    report = (folder / "report.md").read_text()
    for name in [*personas, *policies]:
        assert name in report
    assert "Transaction fees paid while each policy ran" in report
    for plot in ("loss", "utility", "time", "price", "router"):
        svg = ET.parse(folder / f"{plot}-training.svg").getroot()
        assert svg.tag.endswith("svg")
    rows = (folder / "outcomes.csv").read_text().splitlines()
    assert len(rows) == 1 + config.tasks * len(policies)
    # a task without a proof scores 0, whatever it saved (provingmarket/market/preferences.py)
    for row in csv.DictReader(rows):
        if row["proofs"] in ("", "0"):
            assert float(row["utility"]) == 0, row


def test_simulation__impossible_configuration__clear_message__exit_nonzero(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "tasks": 3, "train_seeds": [1], "arrival_every": 1,
        "fleets": [{"name": "x", "provers": 1, "prove_seconds": 1, "failure_rate": 1.5, "latency": 0,
                    "ask_x": 1, "capacity": 1, "cost_per_second": "0"}],
        "requesters": [{"persona": "arbitrage", "share": 1}],
    }))  # fmt: skip
    run = subprocess.run(
        ["ape", "run", "sim", "--config", str(bad), "--report", str(tmp_path / "r")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert "failure_rate must be a number from 0 to 1, not 1.5" in run.stderr
    assert not (tmp_path / "r").exists()
