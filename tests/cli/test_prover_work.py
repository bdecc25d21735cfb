"""`ape run prover lock` and `prove`: a prover proves from the inputs the requester posted
(an open race, an assignment, a locked Dutch slot) and is paid; and the refusals."""

from __future__ import annotations

from provingmarket import DUTCH, OPEN_RACE
from tests.factories import ETHER, advance, assigned, item


def task_hex(registry, terms) -> str:
    return "0x" + bytes(registry.task_id(terms.as_tuple())).hex()


def test_prove__open_race__first_prover_paid_then_the_race_is_won(
    run, recorded, registry, create_task, provers
):
    terms = create_task(mechanism_id=OPEN_RACE)
    task = task_hex(registry, terms)

    won = run("prover", "prove", task, "--json", account="TEST::2")
    assert won.code == 0, won.err
    assert won.json()["paid"] == terms.max_reward
    assert won.json()["public_inputs"][0] == str(int(provers[0].address, 16))
    assert registry.balances(provers[0]) == terms.max_reward
    assert registry.task_status(task).proven == 1

    late = run("prover", "prove", task, account="TEST::3")
    assert late.code == 1
    assert "the race is won: 1 of 1 proofs are in" in late.error
    assert registry.balances(provers[1]) == 0


def test_prove__assigned_task__only_the_assigned_prover(
    run, recorded, registry, create_task, provers, keeper
):
    terms = create_task()
    task = task_hex(registry, terms)
    assigned(registry, registry.assign(item(terms, provers[1], ETHER // 20), sender=keeper))

    stranger = run("prover", "prove", task, account="TEST::4")
    assert stranger.code == 1
    assert f"you hold no live assignment of this task (assigned: {provers[1].address})" in stranger.error

    proved = run("prover", "prove", task, account="TEST::3")
    assert proved.code == 0, proved.err
    assert "paid 0.05 ETH" in proved.out
    assert registry.balances(provers[1]) == ETHER // 20
    assert registry.standing(provers[1]).locked == 0


def test_lock_then_prove__dutch_task__paid_the_locked_price(
    run, recorded, registry, create_task, provers, chain
):
    terms = create_task(mechanism_id=DUTCH, start_price=ETHER // 100, ramp=600)
    task = task_hex(registry, terms)
    advance(chain, 60)

    locked = run("prover", "lock", task, "--json", account="TEST::2")
    assert locked.code == 0, locked.err
    price = locked.json()["price"]
    assert ETHER // 100 < price < terms.max_reward

    again = run("prover", "lock", task, account="TEST::2")
    assert again.code == 1 and "you already hold a slot of this task; prove it" in again.error

    proved = run("prover", "prove", task, account="TEST::2")
    assert proved.code == 0, proved.err
    assert registry.balances(provers[0]) == price


def test_lock_and_prove__bad_input__one_line_nothing_sent(run, recorded, registry, create_task, accounts):
    terms = create_task()
    task = task_hex(registry, terms)
    nonce = accounts[2].nonce
    cases = [
        (["lock", task], "task is not a Dutch auction (mechanism"),
        (["prove", "0x" + "00" * 32], "no task 0x" + "00" * 32),
        (["prove", "0x1234"], "'0x1234' is not a task id"),
        (["prove", task], "you hold no live assignment of this task (assigned: nobody)"),
    ]
    for args, message in cases:
        result = run("prover", *args, account="TEST::2")
        assert result.code == 1, (args, result.out, result.err)
        assert message in result.error, (args, result.error)
    assert accounts[2].nonce == nonce
