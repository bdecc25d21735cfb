"""Requester personas: the mapping as data, `ape run requester personas`, and
`ape run requester post --persona NAME` posting the terms the persona states (read back
from the TaskPosted event), with explicit options overriding and bad input refused in
one line. Each `ape run` costs a few seconds, so there are few of them."""

from __future__ import annotations

import json
import subprocess

import pytest

from provingmarket.formats import TaskTerms
from provingmarket.market import personas
from tests.factories import ARBITRAGE, BATCH_DUTCH, MIN_REWARD, load_script, rollup


def persona_fields(terms: TaskTerms) -> dict:
    return {name: getattr(terms, name) for name in personas.PERSONA_FIELDS}


def posted_terms(registry, block: int) -> TaskTerms:
    [event] = registry.TaskPosted.range(block, block + 1)
    return TaskTerms.from_event(event.terms)


def register(registry, owner, keeper, name: str) -> int:
    tx = registry.register_mechanism(name, [keeper], sender=owner)
    return tx.events.filter(registry.MechanismRegistered)[0].mechanism_id


# ------------------------------------------------------------------ the mapping, as data


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

    data = json.loads(listed)  # all of stdout: --json prints nothing else
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
    return load_script("requester", "requester_script_personas").post


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
    capsys.readouterr()  # the test's own transactions' log lines are not the command's

    with pytest.raises(SystemExit) as exit:
        post.callback(**values)

    assert exit.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert requester.nonce == nonce
