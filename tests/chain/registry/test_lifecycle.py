"""A task's whole life through a frontend: post, assign, prove, and who is paid what."""

from tests.factories import STATEMENT, assigned, escrow, item, proof_for


def test_post_assign_prove__pays_prover_frontend_and_refunds_requester(
    registry, create_task, prover, keeper, requester
):
    terms = create_task()
    task = registry.task_id(terms.as_tuple())
    price = terms.max_reward // 2

    tx = registry.assign(item(terms, prover, price), sender=keeper)
    [(who, assignment)] = assigned(registry, tx)
    assert who == prover.address
    assert registry.standing(prover).locked == terms.collateral
    assert registry.membership(prover, terms.market_id).used == 1

    registry.prove(
        terms.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )

    assert registry.task_status(task).proven == 1
    assert registry.balances(prover) == price
    assert registry.balances(keeper) == terms.frontend_fee
    assert registry.balances(requester) == escrow(terms) - price - terms.frontend_fee
    assert registry.standing(prover).locked == 0
    assert registry.membership(prover, terms.market_id).used == 0
