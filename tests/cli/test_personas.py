"""Requester personas: the mapping as data, `ape run requester personas`, and
`ape run requester post --persona NAME` posting the terms the persona states (read back
from the TaskPosted event), with explicit options overriding and bad input refused in
one line. Each `ape run` costs a few seconds, so there are few of them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from provingmarket.formats import DUTCH, OPEN_RACE, TaskTerms
from provingmarket.market import personas
from tests.utils.market import ETHER

MIN_REWARD, MIN_COLLATERAL = ETHER // 100, ETHER // 10  # the session market's (tests/conftest.py)
HOUR = 3_600
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "requester.py"


def stated(**terms) -> dict:
    """The persona fields of a task's terms, with what no persona sets left at 0."""
    return {"assign_window": 0, "decay": False, "decay_floor": 0, "start_price": 0, "ramp": 0, **terms}


ARBITRAGE = stated(
    mechanism_id=OPEN_RACE,
    redundancy=1,
    proving_window=30,
    max_reward=5 * MIN_REWARD,
    collateral=MIN_COLLATERAL,
    decay=True,
    decay_floor=MIN_REWARD,
)


def rollup(election: int) -> dict:
    return stated(
        mechanism_id=election,
        redundancy=3,
        assign_window=4 * HOUR,
        proving_window=2 * HOUR,
        max_reward=2 * MIN_REWARD,
        collateral=5 * MIN_COLLATERAL,
        decay=True,
        decay_floor=MIN_REWARD,
    )


BATCH_DUTCH = stated(
    mechanism_id=DUTCH,
    redundancy=1,
    assign_window=6 * HOUR,
    proving_window=6 * HOUR,
    max_reward=MIN_REWARD,
    collateral=MIN_COLLATERAL,
    start_price=0,
    ramp=6 * HOUR,
)


def persona_fields(terms: TaskTerms) -> dict:
    return {name: getattr(terms, name) for name in personas.PERSONA_FIELDS}


def posted_terms(registry, block: int) -> TaskTerms:
    [event] = registry.TaskPosted.range(block, block + 1)
    return TaskTerms.from_event(event.terms)


def register(registry, owner, keeper, name: str) -> int:
    tx = registry.register_mechanism(name, [keeper], sender=owner)
    return tx.events.filter(registry.MechanismRegistered)[0].mechanism_id


# ------------------------------------------------------------------ the mapping, as data


def test_personas__the_seeds_three__have_the_issues_weights():
    weights = {name: p.weights for name, p in personas.PERSONAS.items()}

    assert weights == {
        "arbitrage": personas.Weights(speed=10, cost=3, safety=1, censorship_resistance=1),
        "rollup": personas.Weights(speed=3, cost=2, safety=10, censorship_resistance=1),
        "batch": personas.Weights(speed=2, cost=10, safety=3, censorship_resistance=1),
    }
    assert all(plan.why for p in personas.PERSONAS.values() for plan in p.plans)


def test_persona_terms__each_persona__maps_to_its_mechanism_and_terms_and_overrides_win():
    terms = personas.persona_terms

    assert terms("arbitrage", MIN_REWARD, MIN_COLLATERAL) == ARBITRAGE
    assert terms("rollup", MIN_REWARD, MIN_COLLATERAL, {personas.ELECTION: 4}) == rollup(4)
    assert terms("batch", MIN_REWARD, MIN_COLLATERAL) == BATCH_DUTCH
    assert terms("batch", MIN_REWARD, MIN_COLLATERAL, {personas.AUCTION: 5}) == {
        **BATCH_DUTCH,
        "mechanism_id": 5,
        "ramp": 0,  # a start price and ramp are the Dutch auction's only
    }
    # Explicit terms win, and what depends on them follows: no floor without decay, and
    # a mechanism given outright needs no id for the persona's own.
    assert terms("arbitrage", MIN_REWARD, MIN_COLLATERAL, decay=False, redundancy=2) == {
        **ARBITRAGE,
        "decay": False,
        "decay_floor": 0,
        "redundancy": 2,
    }
    assert terms("rollup", MIN_REWARD, MIN_COLLATERAL, mechanism_id=DUTCH)["ramp"] == 4 * HOUR
    with pytest.raises(
        personas.MissingMechanism, match="persona rollup posts through the election mechanism"
    ):
        terms("rollup", MIN_REWARD, MIN_COLLATERAL)
    with pytest.raises(
        personas.UnknownPersona, match="no persona 'miner'; the personas are arbitrage, rollup, batch"
    ):
        terms("miner", MIN_REWARD, MIN_COLLATERAL)


# ------------------------------------------------------------------ the commands


def test_requester_personas__json_and_table__list_the_three_without_a_network():
    def personas_command(*args: str):
        done = subprocess.run(
            ["ape", "run", "requester", "personas", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = personas_command("--json")
    table = personas_command()

    data = json.loads(listed[listed.index("{") :])
    rows = {p["name"]: p for p in data["personas"]}
    assert list(rows) == ["arbitrage", "rollup", "batch"]
    assert rows["rollup"]["weights"] == {"speed": 3, "cost": 2, "safety": 10, "censorship_resistance": 1}
    assert [(p["mechanism"], p["needs"]) for p in rows["batch"]["plans"]] == [
        ("auction", "--auction-mechanism"),
        ("dutch", None),
    ]
    assert rows["arbitrage"]["plans"][0]["proving_window"] == 30
    lines = table.splitlines()
    assert any(line.split()[:3] == ["arbitrage", "10/3/1/1", "open"] for line in lines), table
    assert any("election (--election-mechanism)  3" in line for line in lines), table
    assert "  dutch: cost above all, and no auction mechanism given" in table


def test_post_persona__each_persona__posts_the_terms_it_states_and_says_why(
    run, recorded, registry, market, owner, keeper, chain
):
    election = register(registry, owner, keeper, "election")
    auction = register(registry, owner, keeper, "auction")
    common = (str(market), "--secret", "7")
    start = chain.blocks.height

    arbitrage = run("requester", "post", *common, "--persona", "arbitrage", account="TEST::1")
    daily = run(
        "requester", "post", *common, "--persona", "rollup", "--election-mechanism", str(election), "--json",
        account="TEST::1",
    )  # fmt: skip
    batch = run("requester", "post", *common, "--persona", "batch", "--json", account="TEST::1")
    auctioned = run(
        "requester", "post", *common, "--persona", "batch", "--auction-mechanism", str(auction),
        "--reward", "0.03", "--json", account="TEST::1",
    )  # fmt: skip

    for result in (arbitrage, daily, batch, auctioned):
        assert result.code == 0, result.err
    # arbitrage, as text: the persona's line first, then the task.
    lines = arbitrage.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("persona "))  # after ape's warnings
    first, task_line = lines[at : at + 2]
    assert first.startswith(
        "persona arbitrage: mechanism 1 (open race), 1 prover, reward 0.05 ETH decaying to 0.01 ETH, "
        "collateral 0.1 ETH, a 30 s race; why: speed above all: every staked prover may prove"
    ), arbitrage.out
    task = bytes.fromhex(task_line.removeprefix("task 0x"))
    [race] = [e for e in registry.TaskPosted.range(start, chain.blocks.height + 1) if e.task_id == task]
    assert persona_fields(TaskTerms.from_event(race.terms)) == ARBITRAGE
    # the others, as JSON: the chain's terms are the persona's.
    by_auction = {**BATCH_DUTCH, "mechanism_id": auction, "ramp": 0, "max_reward": 3 * MIN_REWARD}
    for result, expected, plan in (
        (daily, rollup(election), "election"),
        (batch, BATCH_DUTCH, "dutch"),
        (auctioned, by_auction, "auction"),
    ):
        data = result.json()
        assert persona_fields(posted_terms(registry, data["block"])) == expected
        assert data["persona"]["plan"] == plan
        assert data["persona"]["mechanism_id"] == expected["mechanism_id"]
    assert daily.json()["escrow"] == 3 * 2 * MIN_REWARD
    assert daily.json()["persona"]["why"].startswith("safety above all: 3 provers drawn at random")
    assert batch.json()["persona"]["overridden"] == []
    assert auctioned.json()["persona"]["overridden"] == ["--reward"]


def test_post_persona__unknown_or_missing_mechanism_id__one_line_naming_what_to_pass(
    run, recorded, market, requester
):
    nonce = requester.nonce

    unknown = run("requester", "post", str(market), "--secret", "7", "--persona", "miner", account="TEST::1")
    missing = run("requester", "post", str(market), "--secret", "7", "--persona", "rollup", account="TEST::1")

    for result in (unknown, missing):
        assert result.code == 1, result
        assert result.error.count("error:") == 1, result.err
    assert unknown.error == "error: no persona 'miner'; the personas are arbitrage, rollup, batch"
    assert missing.error == (
        "error: persona rollup posts through the election mechanism, whose id each deployment registers: "
        "pass --election-mechanism ID (or name any mechanism with --mechanism ID)"
    )
    assert requester.nonce == nonce


def _post_command():
    spec = importlib.util.spec_from_file_location("requester_script_personas", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.post


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"election_mechanism": "3"},
            "--election-mechanism and --auction-mechanism say which mechanism a persona uses: "
            "add --persona NAME, or name the mechanism with --mechanism ID",
        ),
        ({"persona_name": "rollup", "election_mechanism": "2"}, "--election-mechanism '2' is below 3"),
        (
            {"persona_name": "arbitrage", "assign_window": "60"},
            "--assign-window is unused by mechanism 1 (open race): its race lasts --proving-window",
        ),
    ],
    ids=["mechanism-without-persona", "built-in-as-election", "window-the-race-has-not"],
)
def test_post_persona__options_that_do_not_fit__refused_in_one_line_before_the_chain(
    requester, capsys, options, message
):
    """Run in this process (milliseconds): each is refused before any network call."""
    post = _post_command()
    values = {p.name: (() if p.multiple else p.default) for p in post.params if p.name != "network"}
    values.update(account=requester, market_id="1", secret="7", **options)
    nonce = requester.nonce

    with pytest.raises(SystemExit) as exit:
        post.callback(**values)

    assert exit.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert requester.nonce == nonce
