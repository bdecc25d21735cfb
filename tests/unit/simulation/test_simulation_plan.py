"""The simulation without a chain: the chain policies split the assignment window evenly
and read as `requester post --chain` takes them; the full preset has the held-out seeds and
the second world the issue asks for; runs are started in an order that keeps the router's
runs in sequence (a training seed's router run after every single policy of the seed) and
fills the other slots with single policies; the report puts a standard error on every
figure and judges the router per persona within one standard error, as measured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from provingmarket.market.router import Pace
from simulation import report
from simulation.config import (
    CHAINS,
    DOUBLE_AUCTION,
    MECHANISMS,
    POLICIES,
    PRESETS,
    ROUTER,
    SimConfigError,
    chain_links,
    chain_text,
    chain_windows,
)
from simulation.run import Done, Run, _next
from simulation.world import Outcome


def test_chain_policies_split_the_window_evenly_and_read_as_the_cli_takes_them():
    assert chain_windows(3, 20) == (6, 6, 8) and chain_windows(2, 15) == (7, 8)
    assert chain_text("auction,orderbook,race", 21) == "auction:7,orderbook:7,race:7"
    assert chain_links("auction,orderbook,race") == ("auction", "orderbook", "open race")
    assert chain_links("orderbook") == ()
    assert set(POLICIES) == {*MECHANISMS, DOUBLE_AUCTION, *CHAINS}
    assert all(2 <= len(chain_links(c)) <= 3 for c in CHAINS)


def test_an_unknown_policy_is_refused_naming_the_known_ones():
    with pytest.raises(SimConfigError, match=r"policies must be a non-empty list of .*double auction"):
        replace(PRESETS["small"], policies=("orderbook", "auction,race")).check()


def test_the_full_preset_has_five_held_out_seeds_and_another_world():
    config = PRESETS["full"].check()
    assert len(config.held_out_seeds) >= 5 and set(config.policies) == set(POLICIES)
    after = config.switched()
    assert config.switch_seeds and after.fleets != config.fleets and after.requesters != config.requesters


def run(split: str, seed: int, policy: str) -> Run:
    return Run(split, seed, policy, PRESETS["small"], Pace(), Path("logs"))


def test_the_router_runs_in_order_after_its_seeds_single_policies_and_first_when_it_can():
    singles = [run("training", 1, "orderbook"), run("training", 1, "dutch"), run("held-out", 2, "orderbook")]
    routers = [run("training", 1, ROUTER), run("held-out", 2, ROUTER)]
    done: dict = {}
    running: dict = {}
    # the training router waits for seed 1's single policies: those go first
    first = _next(singles, routers, done, running, None)
    second = _next(singles, routers, done, running, None)
    assert [(first.seed, first.policy), (second.seed, second.policy)] == [(1, "orderbook"), (1, "dutch")]
    running = {"a": first, "b": second}
    third = _next(singles, routers, done, running, None)
    assert (third.seed, third.policy) == (2, "orderbook")  # a slot is free: another seed's single
    assert _next(singles, routers, done, {**running, "c": third}, None) is None  # nothing else may start
    o = Outcome(1, "orderbook", 0, "batch", "orderbook", "", None, 0.5)
    done = {(1, "orderbook"): Done([o], {}), (1, "dutch"): Done([], {})}
    router = _next(singles, routers, done, {"c": third}, "state")
    assert (router.seed, router.policy, router.state) == (1, ROUTER, "state")
    assert router.history == [o]  # what the single policies delivered on its seed
    # the held-out router run waits for the training one, then goes on from its state
    assert _next(singles, routers, done, {"r": router}, None) is None
    held_out = _next(singles, routers, done, {}, "learnt")
    assert (held_out.seed, held_out.state, held_out.history) == (2, "learnt", [])


def outcomes(utilities: dict[str, list[float]], persona: str, seed: int = 2) -> list[Outcome]:
    return [
        Outcome(seed, policy, i, persona, policy, "", None, u)
        for policy, values in utilities.items()
        for i, u in enumerate(values)
    ]


def test_every_figure_has_a_standard_error_and_the_verdict_is_per_persona_within_one(tmp_path):
    policies = ["orderbook", "auction", ROUTER]
    # arbitrage: the router 0.05 under the orderbook on average, noisily (within one SE);
    # batch: the router 0.3 under the auction on every task (far outside)
    found = outcomes(
        {"orderbook": [0.8, 0.6, 0.8, 0.6], "auction": [0.2] * 4, ROUTER: [0.9, 0.4, 0.9, 0.4]}, "arbitrage"
    ) + outcomes(
        {"orderbook": [0.1] * 4, "auction": [0.7, 0.8, 0.7, 0.8], ROUTER: [0.4, 0.5, 0.4, 0.5]}, "batch"
    )
    results = report.write(tmp_path, "t", {"held-out": found}, ["arbitrage", "batch"], policies, "preamble\n")
    verdict = results["splits"]["held-out"]["verdict"]
    assert verdict["personas"]["arbitrage"]["within_one_se"] is True
    assert verdict["personas"]["arbitrage"]["gap"] == pytest.approx(0.05)
    assert verdict["personas"]["batch"]["within_one_se"] is False
    assert (
        verdict["personas"]["batch"]["gap"] == pytest.approx(0.3)
        and verdict["personas"]["batch"]["se"] < 1e-9
    )
    assert verdict["within_one_se_every_persona"] is False and verdict["router_beats_every_single"] is False
    cell = results["splits"]["held-out"]["arbitrage"][ROUTER]
    assert cell["loss"] == pytest.approx(0.05) and cell["loss_se"] == pytest.approx(0.0866, abs=1e-4)
    text = (tmp_path / "report.md").read_text()
    assert "NOT within one standard error of the best single policy's for every persona" in text
    assert "| arbitrage | 0.000 ± 0.000 | 0.500 ± 0.058 | 0.050 ± 0.087 |" in text
    for line in text.splitlines():  # every figure of every table row carries its ±
        if line.startswith(("| arbitrage", "| batch", "| overall")):
            cells = [c for c in line.split("|")[2:-1] if c.strip() != "–"]
            assert all("±" in c for c in cells), line
