"""Fallback chains: a task names up to three mechanisms, each for its own window, and
which one may take a slot at a moment is a pure function of the terms
(`mechanisms.link_at`, `rules.link_at`). Moving down the chain needs no transaction; a
slot given back goes to the link current then; a race link races until its end."""

import random

import ape
import pytest

from explorer.app import templates
from explorer.data import Explorer
from frontends.keeper import book_snapshot
from provingmarket import rules
from provingmarket.chain.client import RegistryClient
from provingmarket.chain.mirror import Mirror
from provingmarket.chain.tasks import RACE
from provingmarket.formats import (
    BINDING_COMMIT_REVEAL,
    CHAIN,
    DUTCH,
    MAX_ASSIGN_WINDOW,
    OPEN_RACE,
    Link,
    TaskTerms,
    chain_links,
    encode_chain,
)
from tests.factories import (
    ETHER,
    PROVER_INPUT,
    advance,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    prove,
)


@pytest.fixture
def two_mechanisms(registry, market, mechanism, keeper, stranger, owner, staked_provers):
    """(auction, orderbook): a second registered mechanism, assigned by `stranger`, beside
    the session's (assigned by `keeper`); the staked provers accept both."""
    tx = registry.register_mechanism("auction", [stranger], sender=owner)
    auction = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
    for p in staked_provers:
        registry.set_mechanism_accepted(market, auction, True, sender=p)
    return auction, mechanism


def post_chain(registry, requester, market, links, salt=1, **overrides) -> TaskTerms:
    window = sum(link.window for link in links)
    terms = make_terms(market, encode_chain(links), assign_window=window, salt=salt, **overrides)
    tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
    return posted_terms(registry, tx)


def test_link_at__random_chains_and_times__python_and_registry_agree(registry_math):
    rng = random.Random(18)
    for _ in range(40):
        links = [
            Link(rng.choice([1, 2, 3, 4, 2**32 - 1]), rng.randint(1, 100)) for _ in range(rng.randint(1, 3))
        ]
        value = encode_chain(links)
        assert chain_links(value) == tuple(links)
        posted_at = rng.randint(0, 10**9)
        terms = make_terms(1, value, posted_at=posted_at, assign_window=sum(link.window for link in links))
        for at in {
            posted_at,
            posted_at + 1,
            posted_at + terms.assign_window,
            posted_at + terms.assign_window + 1,
        }:
            at = max(at, posted_at)
            mechanism, start, end = rules.link_at(terms, at)
            word = registry_math.link_at(value, posted_at, at)
            assert (word & (2**32 - 1), word >> 64) == (mechanism, end), (links, at - posted_at)
            if mechanism:
                assert start == end - ((word >> 32) & (2**32 - 1))


def test_chain__moves_down_with_no_transaction__each_frontend_only_in_its_window_and_the_race_proves_it(
    registry, market, requester, keeper, stranger, provers, two_mechanisms, chain
):
    auction, orderbook = two_mechanisms
    links = [Link(auction, 30), Link(orderbook, 60), Link(OPEN_RACE, 100)]
    terms = post_chain(registry, requester, market, links)
    posted_at = terms.posted_at

    # The auction's window: the orderbook's frontend may not assign yet.
    assert rules.mechanism_at(terms, posted_at + 1) == auction
    with ape.reverts("registry: not a frontend of the mechanism"):
        registry.assign(item(terms, provers[0], terms.max_reward), sender=keeper)
    # The orderbook's window, with no transaction in between: now the auction may not.
    advance(chain, 40)
    assert rules.mechanism_at(terms, chain.pending_timestamp) == orderbook
    with ape.reverts("registry: not a frontend of the mechanism"):
        registry.assign(item(terms, provers[0], terms.max_reward), sender=stranger)
    # The race: no frontend assigns, a prover's proof with no assignment takes the slot.
    advance(chain, 60)
    assert rules.mechanism_at(terms, chain.pending_timestamp) == OPEN_RACE
    with ape.reverts("registry: task is not for frontends"):
        registry.assign(item(terms, provers[0], terms.max_reward), sender=keeper)
    with ape.reverts("registry: race in progress"):
        registry.cancel(terms.as_tuple(), sender=requester)
    before = registry.standing(provers[1]).balance
    tx = prove(registry, terms, RACE, provers[1])
    [proven] = tx.events.filter(registry.TaskProven)
    assert (proven.prover, proven.paid, proven.frontend) == (
        provers[1].address,
        terms.max_reward,
        RACE.frontend,
    )
    assert registry.standing(provers[1]).balance == before + terms.max_reward
    assert registry.task_status(proven.task_id).proven == 1


def test_chain__each_frontend_assigns_in_its_window_and_a_declined_slot_goes_to_the_current_link(
    registry, market, requester, keeper, stranger, provers, two_mechanisms, chain
):
    auction, orderbook = two_mechanisms
    terms = post_chain(registry, requester, market, [Link(auction, 30), Link(orderbook, 200)])

    tx = registry.assign(item(terms, provers[0], terms.max_reward), sender=stranger)
    [(who, assignment)] = assigned(registry, tx)
    assert (who, assignment.frontend) == (provers[0].address, stranger.address)
    advance(chain, 35)  # into the orderbook's window, within the grace period
    tx = registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=provers[0])
    assert tx.events.filter(registry.TaskDeclined)[0].reopened
    with ape.reverts("registry: not a frontend of the mechanism"):
        registry.assign(item(terms, provers[1], terms.max_reward), sender=stranger)
    tx = registry.assign(item(terms, provers[1], terms.max_reward), sender=keeper)
    [(who, again)] = assigned(registry, tx)
    assert (who, again.frontend) == (provers[1].address, keeper.address)
    tx = prove(registry, terms, again, provers[1])
    assert tx.events.filter(registry.TaskProven)[0].fee == terms.frontend_fee


def test_chain__dutch_link__locks_only_in_its_window_at_the_price_rising_from_posting(
    registry, market, requester, keeper, provers, mechanism, staked_provers, chain
):
    terms = post_chain(
        registry,
        requester,
        market,
        [Link(mechanism, 30), Link(DUTCH, 100)],
        start_price=ETHER // 100,
        ramp=130,
    )
    with ape.reverts("registry: not a dutch task"):
        registry.lock(terms.as_tuple(), sender=provers[0])
    advance(chain, 50)
    tx = registry.lock(terms.as_tuple(), sender=provers[0])
    [(who, assignment)] = assigned(registry, tx)
    at = chain.blocks[tx.block_number].timestamp
    assert assignment.price == rules.self_taken_price(terms, at)
    assert terms.start_price < assignment.price < terms.max_reward
    with ape.reverts("registry: task is not for frontends"):
        registry.assign(item(terms, provers[1], terms.max_reward), sender=keeper)


def test_chain__past_its_last_link__nobody_takes_a_slot_and_the_escrow_is_reclaimed(
    registry, market, requester, keeper, provers, mechanism, chain
):
    terms = post_chain(registry, requester, market, [Link(mechanism, 20), Link(OPEN_RACE, 20)])
    advance(chain, 45)
    with ape.reverts("registry: task expired"):
        registry.assign(item(terms, provers[0], terms.max_reward), sender=keeper)
    with ape.reverts("registry: not assigned"):
        prove(registry, terms, RACE, provers[0])
    tx = registry.reclaim(terms.as_tuple(), sender=requester)
    assert tx.events.filter(registry.SlotsClosed)[0].refund == escrow(terms)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda v: v | 1, "registry: malformed chain"),  # a bit below the links
        (lambda v: v + (1 << 96), "registry: malformed chain"),  # windows not the assignment window
        (lambda v: (v & ~(2**32 - 1 << 64)) | (999 << 64), "registry: unknown mechanism"),
    ],
)
def test_post_task__bad_chain__reverts_naming_why(
    registry, market, requester, mechanism, staked_provers, change, reason
):
    value = encode_chain([Link(mechanism, 30), Link(OPEN_RACE, 30)])
    terms = make_terms(market, change(value), assign_window=60)
    with ape.reverts(reason):
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))


def test_post_task__race_link_in_a_market_without_an_address_input__reverts(
    registry, create_market, requester, mechanism
):
    market_id = create_market(binding=BINDING_COMMIT_REVEAL)
    terms = make_terms(market_id, encode_chain([Link(mechanism, 30), Link(OPEN_RACE, 30)]), assign_window=60)
    with ape.reverts("registry: market cannot bind proofs"):
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))


def test_encode_chain__bad_links__raise_naming_the_link():
    with pytest.raises(ValueError, match="1 to 3 links"):
        encode_chain([])
    with pytest.raises(ValueError, match="link 2: window 0 s"):
        encode_chain([Link(3, 10), Link(1, 0)])
    with pytest.raises(ValueError, match="link 1: mechanism 0"):
        encode_chain([Link(0, 10)])
    with pytest.raises(ValueError, match="link 1: window"):
        encode_chain([Link(3, MAX_ASSIGN_WINDOW + 1)])
    assert encode_chain([Link(3, 1)]) >= CHAIN


def test_gas__a_chained_task_costs_at_most_3000_more_to_post_and_little_more_to_assign_or_prove(
    registry, market, requester, keeper, provers, two_mechanisms
):
    """The single task and the chain's first link are the same mechanism, with the same
    terms otherwise; each is assigned by that mechanism's frontend and proven, after a
    first task has warmed every account's records (so no write is a first one)."""
    auction, orderbook = two_mechanisms
    chained = encode_chain([Link(orderbook, 300), Link(auction, 200), Link(OPEN_RACE, 100)])
    gas = {}
    for kind, mechanism_id, salt in (
        ("warm-up", orderbook, 1),
        ("single", orderbook, 2),
        ("chain", chained, 2),
    ):
        terms = make_terms(market, mechanism_id, assign_window=600, salt=salt)
        tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
        terms = posted_terms(registry, tx)
        post = tx.gas_used
        tx = registry.assign(item(terms, provers[2], terms.max_reward), sender=keeper)
        [(_, assignment)] = assigned(registry, tx)
        assign = tx.gas_used
        tx = prove(registry, terms, assignment, provers[2])
        gas[kind] = (post, assign, tx.gas_used)
    print(f"\ngas (post, assign, prove): single {gas['single']}, chain {gas['chain']}")
    assert gas["chain"][0] - gas["single"][0] <= 3_000
    # Finding the current link costs a chained assignment some 300 gas and its longer terms
    # some 70 of calldata; a proof pays only the calldata (docs/registry.md, "Fallback chains").
    assert gas["chain"][1] - gas["single"][1] <= 400
    assert gas["chain"][2] - gas["single"][2] <= 100


def test_chain__keepers_see_it_only_in_their_links_windows_and_the_race_takes_it_at_the_end(
    chain, registry, market, requester, provers, two_mechanisms, tmp_path
):
    """What the auction's and the orderbook's keepers (frontends/keeper.py) and a racing
    prover's agent read from the mirror, as the chain moves on with no transaction."""
    auction, orderbook = two_mechanisms
    terms = post_chain(
        registry, requester, market, [Link(auction, 30), Link(orderbook, 60), Link(OPEN_RACE, 100)]
    )
    task = bytes(registry.task_id(terms.as_tuple()))

    path = tmp_path / "mirror.sqlite"
    with Mirror(str(path), RegistryClient(chain.provider.web3, registry.address), start_block=0) as mirror:

        def seen(now: int) -> dict[str, bool]:
            mirror.sync()
            snap = mirror.snapshot(now)
            return {
                "auction": task in {t.task_id for t in book_snapshot(snap, now, {auction}).tasks},
                "orderbook": task in {t.task_id for t in book_snapshot(snap, now, {orderbook}).tasks},
                "race": task in {t.task_id for t in mirror.open_tasks(now=now, mechanism_id=OPEN_RACE)},
            }

        assert seen(terms.posted_at + 1) == {"auction": True, "orderbook": False, "race": False}
        advance(chain, 40)
        assert seen(chain.pending_timestamp) == {"auction": False, "orderbook": True, "race": False}
        advance(chain, 60)
        assert seen(chain.pending_timestamp) == {"auction": False, "orderbook": False, "race": True}
        # The explorer's task page lists the links and marks the current one.
        explorer = Explorer(path, head=lambda: (chain.blocks.head.number, chain.pending_timestamp))
        page = explorer.task("0x" + task.hex())
        assert page["mechanism"] == "chain: auction, then orderbook, then open race"
        assert [(x["name"], x["window"], x["current"]) for x in page["chain"]] == [
            ("auction", 30, False), ("orderbook", 60, False), ("open race", 100, True),
        ]  # fmt: skip
        assert explorer.tasks()["tasks"][0]["mechanism_id"] == page["mechanism"]
        html = templates().get_template("task.html").render(path=f"/tasks/0x{task.hex()}", **page)
        assert '<li data-figure="link" data-value="1" aria-current="true">open race: 100 s' in html

        prove(registry, terms, RACE, provers[0])
        mirror.sync()
        [slot] = mirror.task(task).slots
        assert (slot.state, slot.prover, slot.price) == ("proven", provers[0].address, terms.max_reward)
        assert not seen(chain.pending_timestamp)["race"]
