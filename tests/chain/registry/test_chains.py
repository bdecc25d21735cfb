"""Fallback chains: a task names up to three mechanisms, each for its own window, and
which one may take a slot at a moment is a pure function of the terms
(`mechanisms.link_at`, `rules.link_at`). Moving down the chain needs no transaction; a
slot given back goes to the link current then; a race link races until its end."""

import random

import ape
import pytest
from web3.exceptions import ContractLogicError

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


def test_assign__random_chains_at_each_links_edges__the_registry_refuses_what_rules_task_refusal_does(
    chain, registry, market, requester, keeper, stranger, provers, two_mechanisms
):
    """The registry's unrolled search for a chain's current link (assignments.vy, `_assign`)
    against `rules.task_refusal`: random chains of one to three links (the two registered
    mechanisms, DUTCH, the race), asked at each link's last second and the next whether
    each frontend may assign a slot and a prover may lock one (eth_call: nothing changes)."""
    auction, orderbook = two_mechanisms
    web3 = chain.provider.web3
    rng = random.Random(18)
    posted = []
    first = chain.pending_timestamp
    for salt in range(6):
        links = [
            Link(rng.choice([auction, orderbook, DUTCH, OPEN_RACE]), rng.randint(8, 30))
            for _ in range(rng.randint(1, 3))
        ]
        chain.pending_timestamp = first + salt  # a post a second, so every edge comes after the last
        posted.append(post_chain(registry, requester, market, links, salt=salt))
    # Each link's last second and the next.
    edges: dict[int, list[TaskTerms]] = {}
    for terms in posted:
        end = terms.posted_at
        for link in chain_links(terms.mechanism_id):
            end += link.window
            for at in (end, end + 1):
                edges.setdefault(at, []).append(terms)

    def refusal(sender, data: str) -> str:
        try:
            web3.eth.call({"from": sender.address, "to": registry.address, "data": data})
        except ContractLogicError as error:
            return str(error.message).split("registry: ", 1)[1]
        return ""

    answers = set()
    for at in sorted(edges):
        chain.mine(1, timestamp=at)
        for terms in edges[at]:
            mechanism = rules.mechanism_at(terms, at)
            calls = [
                (
                    frontend,
                    registry.assign.encode_input(item(terms, provers[0], terms.max_reward)),
                    mechanism == serves,
                )
                for frontend, serves in ((keeper, orderbook), (stranger, auction))
            ]
            calls.append((provers[0], registry.lock.encode_input(terms.as_tuple()), None))
            for sender, data, serves in calls:
                expected = rules.task_refusal(terms, rules.Slots(open=1), at, frontend_serves=serves)
                where = (chain_links(terms.mechanism_id), at - terms.posted_at, sender)
                assert refusal(sender, data) == expected, where
                answers.add(expected)
    # The sample reaches every answer, and chains of three links.
    assert answers == {"", rules.NOT_A_FRONTEND, rules.NOT_FOR_FRONTENDS, rules.NOT_DUTCH, rules.TASK_EXPIRED}
    assert max(len(chain_links(terms.mechanism_id)) for terms in posted) == 3


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


def calldata_gas(tx) -> int:
    """What a transaction's calldata costs (EIP-2028: 4 gas a zero byte, 16 any other)."""
    return sum(4 if byte == 0 else 16 for byte in bytes(tx.transaction.data))


def execution_gas(tx) -> int:
    """A receipt's gas less the transaction's intrinsic cost (21,000 and the calldata)."""
    return tx.gas_used - 21_000 - calldata_gas(tx)


def test_gas__a_chain_costs_at_most_3000_more_to_post_and_only_its_calldata_more_to_assign_or_prove(
    registry, market, requester, keeper, provers, two_mechanisms
):
    """The single task and the chain's first link are the same mechanism, with the same
    terms otherwise; each is assigned by that mechanism's frontend and proven, after a
    first task has warmed every account's records (so no write is a first one). A chain's
    longer mechanism_id costs some 70 gas of calldata; its execution costs no more."""
    auction, orderbook = two_mechanisms
    chained = encode_chain([Link(orderbook, 300), Link(auction, 200), Link(OPEN_RACE, 100)])
    receipts = {}
    for kind, mechanism_id, salt in (
        ("warm-up", orderbook, 1),
        ("single", orderbook, 2),
        ("chain", chained, 2),
    ):
        terms = make_terms(market, mechanism_id, assign_window=600, salt=salt)
        post = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
        terms = posted_terms(registry, post)
        assign = registry.assign(item(terms, provers[2], terms.max_reward), sender=keeper)
        [(_, assignment)] = assigned(registry, assign)
        receipts[kind] = (post, assign, prove(registry, terms, assignment, provers[2]))
    single, chain = receipts["single"], receipts["chain"]
    print(
        "\ngas (post, assign, prove): single",
        [tx.gas_used for tx in single],
        "chain",
        [tx.gas_used for tx in chain],
        "; less intrinsic: single",
        [execution_gas(tx) for tx in single],
        "chain",
        [execution_gas(tx) for tx in chain],
    )
    assert chain[0].gas_used - single[0].gas_used <= 3_000
    for chained_tx, single_tx in zip(chain[1:], single[1:], strict=True):  # assign, prove
        assert calldata_gas(chained_tx) > calldata_gas(single_tx)
        assert execution_gas(chained_tx) <= execution_gas(single_tx)


def test_gas__a_chains_later_link_costs_a_comparison_more_and_a_dutch_link_no_more_than_a_dutch_task(
    chain, registry, market, requester, keeper, stranger, provers, two_mechanisms
):
    """Past its first link, a chain's assignment pays one comparison of the time against
    the next link's end, some 70 gas a link passed (68 and 101 measured at the second and
    third link), and nothing more; a lock in a chain's first, Dutch link pays no more than a
    Dutch task's. Gas less the intrinsic cost, against the same single task's."""
    auction, orderbook = two_mechanisms

    def post(mechanism_id, salt, **overrides) -> TaskTerms:
        terms = make_terms(market, mechanism_id, salt=salt, **overrides)
        tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
        return posted_terms(registry, tx)

    def assign(terms, frontend, prover):
        return registry.assign(item(terms, prover, terms.max_reward), sender=frontend)

    single_auction, single_orderbook = post(auction, 1), post(orderbook, 1)
    second = post(encode_chain([Link(orderbook, 300), Link(auction, 300)]), 2)
    third = post(encode_chain([Link(orderbook, 100), Link(auction, 200), Link(orderbook, 300)]), 3)
    dutch = post(DUTCH, 4)
    dutch_link = post(encode_chain([Link(DUTCH, 300), Link(orderbook, 300)]), 4, frontend_fee=0)
    alone = {
        "auction": assign(single_auction, stranger, provers[0]),
        "orderbook": assign(single_orderbook, keeper, provers[1]),
        "dutch": registry.lock(dutch.as_tuple(), sender=provers[2]),
    }
    in_chain = {"dutch": registry.lock(dutch_link.as_tuple(), sender=provers[2])}  # its first link
    advance(chain, 350)
    in_chain["auction"] = assign(second, stranger, provers[0])  # its second link
    in_chain["orderbook"] = assign(third, keeper, provers[1])  # its third link
    extra = {kind: execution_gas(in_chain[kind]) - execution_gas(alone[kind]) for kind in alone}
    print(f"\nexecution gas over the single task's: {extra}")
    assert extra["auction"] <= 75  # one link passed
    assert extra["orderbook"] <= 2 * 75  # two
    assert extra["dutch"] <= 0


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
