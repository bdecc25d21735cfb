"""`ape run qos`: quality of service per mechanism (with its parameters), market and
requester from the registry's events; SVG plots and a CSV with `--plots`; "no tasks" on a
registry nobody used.

The tasks: an open race proven, an orderbook task assigned and proven, a Dutch task left
open. The tables' numbers are provingmarket/market/qos.py's (tested there); here the command
shows them, writes them and reads the chain it is pointed at."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import ape
import pytest

from provingmarket import deployments
from provingmarket.chain.markets import deploy_registry
from provingmarket.cli import DEPLOYMENTS_ENV
from provingmarket.deployments import Deployment, MarketRecord
from provingmarket.devnet import default_backend
from provingmarket.formats import DUTCH, OPEN_RACE, ZERO_ADDRESS, Assignment
from provingmarket.proving.circuits import Circuit
from tests.factories import UNBONDING_DELAY, assigned, item, load_script

SQUARE = Circuit.load("square")
RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)  # ignored by an open race proof
SVG = "{http://www.w3.org/2000/svg}"
PLOTS = ("first-proof.svg", "price.svg", "delivery.svg", "provers.svg")


qos_script = load_script("qos")


def prove(registry, terms, assignment, prover) -> None:
    made = default_backend().prove(SQUARE, SQUARE.sample, prover.address)
    registry.prove(terms.as_tuple(), assignment.as_tuple(), made.public_inputs, made.proof, sender=prover)


@pytest.fixture
def served(registry, create_task, keeper, provers):
    """Three tasks: an open race proven, an orderbook task assigned and proven, a Dutch
    task nobody took. Returns their terms."""
    race = create_task(mechanism_id=OPEN_RACE)
    prove(registry, race, RACE, provers[0])
    book = create_task()
    [(_, assignment)] = assigned(
        registry, registry.assign(item(book, provers[1], book.max_reward // 2), sender=keeper)
    )
    prove(registry, book, assignment, provers[1])
    dutch = create_task(mechanism_id=DUTCH)
    return [race, book, dutch]


def record_local(registry, verifier, chain, folder: Path, markets=()) -> None:
    deployments.save(
        Deployment(
            "ethereum:local",
            chain.chain_id,
            registry.address,
            0,
            UNBONDING_DELAY,
            {m: MarketRecord("square", verifier.address) for m in markets},
        ),
        folder,
    )


def call(**options) -> None:
    """Run the command's function as click would, with its defaults."""
    command = qos_script.cli
    values = {p.name: (() if p.multiple else p.default) for p in command.params if p.name != "network"}
    values.update(options)
    command.callback(**values)


def task_count(registry, chain) -> int:
    return len(list(registry.TaskPosted.range(0, chain.blocks.height + 1)))


def test_ape_run_qos__served_tasks__a_table_row_per_mechanism_market_and_requester(
    run, recorded, registry, served, market, requester, chain
):
    result = run("qos")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("mechanism "))
    head = lines[at].split()
    assert head[:3] == ["mechanism", "tasks", "proven"]
    rows = {line.split("  ")[0]: line for line in lines[at + 1 :] if line.strip()}
    # a row per mechanism with its parameters: ours among them
    for arm in ("open race ×1", "orderbook ×1", "dutch ×1"):
        assert arm in rows, result.out
        assert int(rows[arm][len(arm) :].split()[0]) >= 1  # tasks
    assert any(line.startswith("market ") and line.split()[1] == "tasks" for line in lines), result.out
    assert any(line.startswith(f"market {market} ") for line in lines), result.out
    assert any(line.startswith("requester ") for line in lines), result.out
    assert any(line.startswith(requester.address) for line in lines), result.out
    assert f"{task_count(registry, chain)} tasks" in result.out


def test_qos_plots__served_tasks__well_formed_svgs_and_a_csv_row_per_task(
    registry, served, verifier, market, chain, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "deployments"
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(folder))
    record_local(registry, verifier, chain, folder, [market])
    plots = tmp_path / "plots"

    call(plots=str(plots), keys=("mechanism",))

    out = capsys.readouterr().out
    assert "\nmechanism " in out and "\nmarket " not in out and "\nrequester " not in out, out
    assert f"written: {plots / 'first-proof.svg'}, " in out
    for name in PLOTS:
        root = ET.parse(plots / name).getroot()
        assert root.tag == f"{SVG}svg", name
        assert root.find(f"{SVG}text").text, name  # the title
    bars = ET.parse(plots / "first-proof.svg").getroot().findall(f"{SVG}rect[@class='bar']")
    assert len(bars) >= 2  # the race's and the orderbook's median (the Dutch task has no proof)
    labels = [t.text for t in ET.parse(plots / "delivery.svg").getroot().iter(f"{SVG}text")]
    assert {"open race ×1", "orderbook ×1", "dutch ×1"} <= set(labels)
    with (plots / "qos.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == task_count(registry, chain)
    by_id = {row["task_id"]: row for row in rows}
    ids = ["0x" + bytes(registry.task_id(t.as_tuple())).hex() for t in served]
    race, book, dutch = (by_id[i] for i in ids)
    assert (race["arm"], race["proofs"], race["paid"]) == ("open race ×1", "1", str(served[0].max_reward))
    assert (book["mechanism"], book["proofs"], book["price_ratio"]) == ("orderbook", "1", "0.500000")
    assert book["assigned_after"] != "" and race["assigned_after"] == ""
    assert (dutch["proofs"], dutch["first_proof"], dutch["settled"]) == ("0", "", "False")


def test_qos_market_and_from_block__only_those_tasks(
    registry, served, verifier, market, create_market, chain, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "deployments"
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(folder))
    other = create_market()
    record_local(registry, verifier, chain, folder, [market, other])
    posted = [e.block_number for e in registry.TaskPosted.range(0, chain.blocks.height + 1)]
    capsys.readouterr()  # the set-up's own lines (ape logs its transactions to stdout in a worker)

    call(market_id=other)
    none_there = capsys.readouterr().out
    call(from_block=posted[-1], keys=("requester",))
    last = capsys.readouterr().out

    assert none_there.strip() == f"no tasks in market {other} in the registry at {registry.address}"
    assert last.startswith(f"1 task since block {posted[-1]}\n"), last


def test_qos__a_registry_nobody_used__says_no_tasks_and_exits_0(
    project, owner, verifier, chain, tmp_path, monkeypatch, capsys
):
    fresh = deploy_registry(ape, owner, UNBONDING_DELAY)
    folder = tmp_path / "deployments"
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(folder))
    record_local(fresh, verifier, chain, folder)
    plots = tmp_path / "plots"
    capsys.readouterr()  # the set-up's own lines (ape logs its transactions to stdout in a worker)

    call(plots=str(plots))  # returns: exit code 0

    assert capsys.readouterr().out.strip() == f"no tasks in the registry at {fresh.address}"
    assert not plots.exists()
