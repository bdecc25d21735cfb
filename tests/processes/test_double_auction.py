"""The double auction frontend as a real process against anvil: tasks and provers' asks
cleared together at one price, assigned through the registry, and proven."""

from __future__ import annotations

from provingmarket import Assignment
from provingmarket.chain.client import KeySigner, RegistryClient
from tests.factories import ETHER, STATEMENT, frontend_account, proof_for, spawn_frontend, wait_until


def test_double_auction__clears_tasks_and_asks_at_one_price__assigned_and_proven(
    make_stack, make_prover, funded, post, spawn, tmp_path, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = {ask: make_prover(stack, capacity=1, ask=ask * ETHER // 100) for ask in (1, 2, 3, 4)}
    frontend = spawn_frontend(spawn, stack, key, tmp_path / "da", mechanism="double_auction")
    # Two tasks of two slots bidding 9 and 8 (per slot): four asks 1..4 (one slot each) serve
    # both, no ask is left out, so trade reduction: the 8 task sets the price and waits.
    tasks = [post(stack, max_reward=reward * ETHER // 100, redundancy=2) for reward in (9, 8)]

    def assigned():
        found = stack.client.events(["TaskAssigned"])
        return found if len(found) >= 2 else None

    found = wait_until(assigned, what="two assignments")
    prices = {e.price for e in found}
    assert len(prices) == 1  # one price for every slot of the round
    [price] = prices
    winners = {bytes(e.task_id) for e in found}
    assert winners == {stack.client.task_id(tasks[0])}  # trade reduction: the 8 task set the price
    assert price == 8 * ETHER // 100
    assert {e.prover for e in found} <= {address for _, address in provers.values()}
    assert frontend.wait_for("double_auction.assigned", 2)

    web3 = chain.provider.web3
    keys = {address: key for key, address in provers.values()}
    for e in found:  # the chosen provers prove, and are paid the round's price
        client = RegistryClient(web3, stack.registry.address, KeySigner(keys[e.prover]))
        client.transact(
            "prove",
            tasks[0].as_tuple(),
            Assignment.from_event(e).as_tuple(),
            STATEMENT,
            proof_for(STATEMENT, e.prover),
        )
    proven = stack.client.events(["TaskProven"])
    assert {(e.prover, e.paid) for e in proven} == {(e.prover, price) for e in found}
    assert frontend.stop() == 0
