"""Commands the errors and the docs promised: `prover decline` within the grace period,
`operator mechanism list|show`, `-h` on every command and group, and `market show`
stating the slash split the registry really pays (the requester's cap included)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from provingmarket.formats import DUTCH, OPEN_RACE
from provingmarket.rules import slash_split
from tests.factories import ETHER, GRACE_PERIOD, advance, assign, load_script


def task_hex(registry, terms) -> str:
    return "0x" + bytes(registry.task_id(terms.as_tuple())).hex()


def test_prover_decline__within_grace_frees_collateral_and_reopens__after_it_one_line(
    run, recorded, registry, create_task, keeper, provers, chain
):
    prover = provers[0]  # TEST::2
    terms = create_task()
    assign(registry, keeper, terms, prover)
    locked = registry.standing(prover).locked

    declined = run("prover", "decline", task_hex(registry, terms), "--json", account="TEST::2")

    assert declined.code == 0, declined.err
    assert declined.json()["reopened"] is True and declined.json()["slot"] == 0
    assert registry.standing(prover).locked == locked - terms.collateral
    status = registry.task_status(registry.task_id(terms.as_tuple()))
    assert (status.open, status.assigned) == (1, 0)

    again = run("prover", "decline", task_hex(registry, terms), account="TEST::2")
    assert again.code == 1 and "you hold no live assignment of this task" in again.error

    late = create_task()
    assign(registry, keeper, late, prover)
    advance(chain, GRACE_PERIOD + 5)
    nonce = prover.nonce
    refused = run("prover", "decline", task_hex(registry, late), account="TEST::2")
    assert refused.code == 1
    assert "the grace period to decline ended" in refused.error and "Traceback" not in refused.err
    assert prover.nonce == nonce  # nothing sent


def test_mechanism_list_and_show(run, recorded, registry, mechanism, keeper, owner, market, staked_provers):
    listed = run("operator", "mechanism", "list", "--json")
    assert listed.code == 0, listed.err
    by_id = {m["mechanism_id"]: m for m in listed.json()}
    assert (by_id[OPEN_RACE]["kind"], by_id[OPEN_RACE]["name"], by_id[OPEN_RACE]["registrant"]) == (
        "built in",
        "open race",
        None,
    )
    assert by_id[DUTCH]["name"] == "dutch"
    assert sorted(by_id) == list(range(1, registry.mechanism_count() + 1))
    ours = by_id[mechanism]
    assert (ours["name"], ours["kind"], ours["registrant"], ours["retired"]) == (
        "orderbook",
        "registered",
        owner.address,
        False,
    )
    assert ours["frontends"] == [keeper.address]
    accepting = sum(registry.accepts(p, market, mechanism) for p in staked_provers)
    assert {"market_id": market, "provers": accepting} in ours["markets"] and accepting == 3
    assert ours["params"] is None

    table = run("operator", "mechanism", "list")
    assert table.code == 0 and "orderbook" in table.out and "open race" in table.out

    shown = run("operator", "mechanism", "show", str(mechanism))
    assert shown.code == 0, shown.err
    assert f"mechanism {mechanism} 'orderbook'" in shown.out
    assert keeper.address in shown.out and f"{market} (3 provers)" in shown.out
    assert run("operator", "mechanism", "show", str(mechanism), "--json").json() == ours

    missing = run("operator", "mechanism", "show", "999")
    assert missing.code == 1 and "no mechanism 999" in missing.error


def test_market_show__slash_split__is_what_a_real_slash_pays(
    run, recorded, registry, create_task, keeper, provers, stranger, chain
):
    terms = create_task()  # collateral 0.5, max reward 0.1: the requester's 50% is capped
    assignment = assign(registry, keeper, terms, provers[1])
    advance(chain, terms.proving_window + 1)
    tx = registry.slash(terms.as_tuple(), provers[1], assignment.as_tuple(), sender=stranger)
    [paid] = tx.events.filter(registry.Slashed)

    shown = run(
        "operator",
        "market",
        "show",
        str(terms.market_id),
        "--collateral",
        str(terms.collateral / ETHER),
        "--max-reward",
        str(terms.max_reward / ETHER),
        "--json",
    )

    assert shown.code == 0, shown.err
    example = shown.json()["slash"]["example"]
    assert (example["to_requester"], example["to_caller"], example["burnt"]) == (
        paid.to_requester,
        paid.to_caller,
        paid.burnt,
    )
    market = registry.market(terms.market_id)
    assert paid.to_requester == terms.max_reward < terms.collateral * market.requester_bps // 10_000  # capped
    assert (
        slash_split(
            terms.collateral, terms.max_reward, market.requester_bps, market.caller_bps, True
        ).to_caller
        == 0
    )
    text = run(
        "operator",
        "market",
        "show",
        str(terms.market_id),
        "--collateral",
        str(terms.collateral / ETHER),
        "--max-reward",
        str(terms.max_reward / ETHER),
    ).out
    assert "requester 50% but at most the task's max reward" in text
    assert "burnt if the caller is the requester or the prover" in text
    assert "requester 0.1 ETH (its cap), caller 0.05 ETH, burnt 0.35 ETH" in text


def commands(group: click.Command, path: tuple[str, ...] = ()):
    """Every command and group under `group`, as argument paths."""
    yield path
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            yield from commands(sub, (*path, name))


@pytest.mark.parametrize("script", ["operator", "prover", "requester", "qos", "rehearse"])
def test_dash_h__every_command_and_group__prints_its_help(script):
    cli = load_script(script, f"help_{script}_script").cli
    paths = list(commands(cli))
    assert len(paths) > (5 if script in ("operator", "prover", "requester") else 0)
    for path in paths:
        done = CliRunner().invoke(cli, [*path, "-h"], prog_name=script)
        assert done.exit_code == 0, (path, done.output)
        assert done.output.startswith(f"Usage: {' '.join((script, *path))}"), (path, done.output)
