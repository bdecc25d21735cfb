"""Registered mechanisms: ids, frontends managed by the registrant, retirement, and who
may assign for which mechanism."""

import ape

from tests.factories import PROVER_INPUT, STATEMENT, assigned, escrow, item, make_terms, proof_for, skipped


def register(registry, sender, frontends, name="auction") -> int:
    tx = registry.register_mechanism(name, frontends, sender=sender)
    return tx.events.filter(registry.MechanismRegistered)[0].mechanism_id


def test_register_mechanism__by_anyone__numbers_from_3_and_emits_events(
    registry, mechanism, owner, keeper, stranger, accounts
):
    # The fixture mechanism was the first registered: 1 and 2 are the built-in ones.
    assert mechanism == 3
    assert registry.mechanism(mechanism) == (owner.address, False)

    tx = registry.register_mechanism("sealed-bid auction", [keeper, accounts[7]], sender=stranger)

    [registered] = tx.events.filter(registry.MechanismRegistered)
    assert (registered.mechanism_id, registered.registrant, registered.name) == (
        4,
        stranger.address,
        "sealed-bid auction",
    )
    assert registry.mechanism_count() == 4
    assert [(e.mechanism_id, e.frontend, e.allowed) for e in tx.events.filter(registry.FrontendSet)] == [
        (4, keeper.address, True),
        (4, accounts[7].address, True),
    ]
    assert registry.mechanism(4) == (stranger.address, False)
    assert registry.is_frontend(4, keeper) and registry.is_frontend(4, accounts[7])
    assert not registry.is_frontend(4, stranger)
    assert not registry.is_frontend(mechanism, accounts[7])


def test_set_frontend__by_registrant__allows_and_forbids_assigning(
    registry, mechanism, owner, keeper, stranger, create_task, prover
):
    terms = create_task()

    tx = registry.set_frontend(mechanism, stranger, True, sender=owner)
    assert [(e.mechanism_id, e.frontend, e.allowed) for e in tx.events.filter(registry.FrontendSet)] == [
        (mechanism, stranger.address, True)
    ]
    assert registry.is_frontend(mechanism, stranger)
    tx = registry.set_frontend(mechanism, keeper, False, sender=owner)
    assert not tx.events.filter(registry.FrontendSet)[0].allowed
    assert not registry.is_frontend(mechanism, keeper)

    with ape.reverts("registry: not a frontend of the mechanism"):
        registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    tx = registry.assign(item(terms, prover, terms.max_reward), sender=stranger)
    [(who, assignment)] = assigned(registry, tx)
    assert (who, assignment.frontend) == (prover.address, stranger.address)


def test_set_frontend_and_retire__not_the_registrant__revert(registry, mechanism, keeper, stranger):
    with ape.reverts("registry: not the registrant"):
        registry.set_frontend(mechanism, stranger, True, sender=stranger)
    with ape.reverts("registry: not the registrant"):
        registry.retire_mechanism(mechanism, sender=keeper)
    assert registry.mechanism(mechanism)[1] is False
    assert not registry.is_frontend(mechanism, stranger)


def test_set_frontend__unknown_mechanism__reverts(registry, mechanism, owner, stranger):
    with ape.reverts("registry: unknown mechanism"):
        registry.set_frontend(mechanism + 1, stranger, True, sender=owner)
    with ape.reverts("registry: unknown mechanism"):
        registry.retire_mechanism(1, sender=owner)  # built-in mechanisms have no registrant


def test_post_task__unregistered_mechanism__reverts(registry, market, staked_provers, requester, mechanism):
    terms = make_terms(market, mechanism + 1)
    with ape.reverts("registry: unknown mechanism"):
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))


def test_retire_mechanism__by_registrant__refuses_new_tasks_but_serves_posted_ones(
    registry, mechanism, owner, keeper, create_task, market, requester, provers
):
    served = create_task()
    dropped = create_task(max_reward=served.max_reward // 2)

    tx = registry.retire_mechanism(mechanism, sender=owner)

    assert [e.mechanism_id for e in tx.events.filter(registry.MechanismRetired)] == [mechanism]
    assert registry.mechanism(mechanism) == (owner.address, True)
    fresh = make_terms(market, mechanism)
    with ape.reverts("registry: mechanism retired"):
        registry.post_task(fresh.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(fresh))
    # A task posted before retirement is still assigned by the frontends the mechanism keeps...
    assert registry.is_frontend(mechanism, keeper)
    [(_, assignment)] = assigned(
        registry, registry.assign(item(served, provers[0], served.max_reward), sender=keeper)
    )
    # ...until the registrant removes them.
    registry.set_frontend(mechanism, keeper, False, sender=owner)
    tx = registry.assign_batch([item(dropped, provers[1], dropped.max_reward)], sender=keeper)
    assert skipped(registry, tx) == ["registry: not a frontend of the mechanism"]
    # The live assignment runs to its end: proven and paid, the frontend's fee included.
    registry.prove(
        served.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, provers[0].address),
        sender=provers[0],
    )
    assert registry.balances(provers[0]) == served.max_reward
    assert registry.balances(keeper) == served.frontend_fee


def test_assign__frontend_of_another_mechanism__reverts(registry, create_task, stranger, prover, market):
    other = register(registry, stranger, [stranger])
    registry.set_mechanism_accepted(market, other, True, sender=prover)
    terms = create_task()  # names the fixture mechanism, whose frontend is `keeper`

    with ape.reverts("registry: not a frontend of the mechanism"):
        registry.assign(item(terms, prover, terms.max_reward), sender=stranger)
    assert registry.standing(prover).locked == 0
    assert registry.task_status(registry.task_id(terms.as_tuple())).open == 1
