"""The simulation's world switch with no chain: the `switch` preset is a valid configuration
whose world after the switch differs from the one before; a switch configuration with a
clash of seeds is refused naming the field; the report (simulation/report.py) says per
persona whether the router is back within one standard error of the new best single policy
after RECOVERY tasks, pairing tasks on the same arrivals, and draws the loss around the switch."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from simulation import report
from simulation.config import POLICIES, PRESETS, ROUTER, SimConfigError, from_dict
from simulation.world import Outcome

PERSONAS = ["arbitrage", "rollup"]
POLICIES_ALL = [*POLICIES, ROUTER]


def test_the_switch_preset_changes_fleets_and_demand():
    config = PRESETS["switch"].check()
    after = config.switched()
    assert config.switch_seeds and not set(config.switch_seeds) & set(config.train_seeds)
    assert after.fleets != config.fleets and after.requesters != config.requesters
    assert max(f.failure_rate for f in after.fleets) > max(f.failure_rate for f in config.fleets)
    shares = {r.persona: r.share for r in after.requesters}
    assert shares["rollup"] > max(s for p, s in shares.items() if p != "rollup")  # rollup-heavy
    # every persona posts more than RECOVERY tasks after the switch, so recovery can be judged
    total = sum(shares.values())
    assert all(after.tasks * s / total > report.RECOVERY + 5 for s in shares.values())


def test_a_switch_seed_used_before_is_refused():
    raw = json.loads(json.dumps({
        "tasks": 3, "train_seeds": [1], "switch_seeds": [1], "arrival_every": 1,
        "fleets": [{"name": "x", "provers": 1, "prove_seconds": 1, "failure_rate": 0, "latency": 0,
                    "ask_x": 1, "capacity": 1, "cost_per_second": "0"}],
        "requesters": [{"persona": "arbitrage", "share": 1}],
        "switch_fleets": [{"name": "y", "provers": 1, "prove_seconds": 1, "failure_rate": 2, "latency": 0,
                           "ask_x": 1, "capacity": 1, "cost_per_second": "0"}],
    }))  # fmt: skip
    with pytest.raises(SimConfigError, match="switch_seeds must be seeds not also used before the switch"):
        from_dict(raw).check()
    raw["switch_seeds"] = [2]
    with pytest.raises(SimConfigError, match=r"\(after the switch\): fleet y: failure_rate must be"):
        from_dict(raw).check()
    raw["switch_fleets"][0]["failure_rate"] = 0.5
    config = from_dict(raw).check()
    assert config.switched().fleets[0].name == "y" and config.switched().requesters == config.requesters


def outcomes(seed: int, utilities: dict[str, list[float]], persona: str) -> list[Outcome]:
    return [
        Outcome(seed, policy, i, persona, policy, "", None, u)
        for policy, values in utilities.items()
        for i, u in enumerate(values)
    ]


def switch_outcomes(router_late: float) -> list[Outcome]:
    """30 tasks a persona after a switch: the orderbook the best (0.8, alternating 0.7 and
    0.9); the router poor for its first RECOVERY (0.2), then `router_late` ± 0.1."""
    found = []
    for k, persona in enumerate(PERSONAS):
        n = 30
        u = {p: [0.3] * n for p in POLICIES}
        u["orderbook"] = [0.7 if i % 2 else 0.9 for i in range(n)]
        u[ROUTER] = [0.2] * report.RECOVERY + [
            router_late + (0.1 if i % 2 else -0.1) for i in range(n - report.RECOVERY)
        ]
        found += [replace(o, index=o.index + 100 * k) for o in outcomes(2, u, persona)]
    return found


def test_recovery_pairs_tasks_and_judges_within_one_standard_error():
    back = report.recovery(switch_outcomes(0.8), PERSONAS, POLICIES_ALL)
    for persona in PERSONAS:
        f = back[persona]
        assert f["best"] == "orderbook" and f["after"]["tasks"] == 10
        assert f["after"]["gap"] == pytest.approx(0.0, abs=1e-9) and f["within_one_se"] is True
        assert f["first"]["gap"] == pytest.approx(-0.6) and f["first"]["tasks"] == report.RECOVERY
    behind = report.recovery(switch_outcomes(0.6), PERSONAS, POLICIES_ALL)
    assert {p: f["within_one_se"] for p, f in behind.items()} == {p: False for p in PERSONAS}
    assert behind["rollup"]["after"]["gap"] == pytest.approx(-0.2)


def test_the_loss_by_task_is_against_each_personas_best_single_policy():
    router, best = report.loss_by_task(switch_outcomes(0.8), PERSONAS, POLICIES_ALL)
    assert len(router) == len(best) == 60
    assert router[: report.RECOVERY] == pytest.approx([0.6] * report.RECOVERY)
    assert sum(best) / len(best) == pytest.approx(0.0)


def test_the_report_has_a_switch_section_and_plot(tmp_path):
    before = outcomes(1, {p: [0.5] * 6 for p in POLICIES_ALL}, "arbitrage")
    splits = {"training": before, "held-out": [], report.SWITCHED: switch_outcomes(0.6)}
    results = report.write(tmp_path, "switch", splits, PERSONAS, POLICIES_ALL, "preamble\n")
    assert set(results["switch"]) == set(PERSONAS)
    text = (tmp_path / "report.md").read_text()
    assert "## after the switch seeds (2)" in text
    assert f"once each persona has posted {report.RECOVERY} tasks in the new world" in text
    assert "| rollup | orderbook | 10 | -0.200 ± 0.067 | **no** | -0.600 ± 0.023 |" in text
    assert ET.parse(tmp_path / "switch.svg").getroot().tag.endswith("svg")
    assert "switch.svg" in text
