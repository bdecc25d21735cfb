"""The router's arms beyond single mechanisms, the market's index and re-pricing, with no
chain: it offers the fallback chains it is given whose links it can post through (the
choice carries the `--chain` text and the chain's mechanism_id), and says why it leaves the
others out; the double auction, once registered, is an ordinary arm and a chain link; the
market's index price is the prior for the reward of terms with no outcome yet; and the
choice says when the requester should opt in to re-pricing, with the policy to use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from frontends.double_auction.process import NAME as DOUBLE_AUCTION
from provingmarket.chain.client import Event
from provingmarket.formats import DUTCH, OPEN_RACE, Link, chain_links
from provingmarket.market import repricing, routing
from provingmarket.market.index import MarketIndex
from provingmarket.market.preferences import Preferences
from provingmarket.market.router import Infeasible, Pace, Router
from tests.unit.market.test_router import ARMS, BALANCED, LEAST, MARKET, SPEEDY, qos

CHAIN = "auction:60,orderbook:60,race"


def test_a_chain_is_offered_when_every_link_is_an_arm_and_its_choice_carries_the_chain():
    router = Router(ARMS, chains=[CHAIN, "auction:60,nowhere:30", "dutch:10,election"])
    names = [a.name for a in router.arms]
    assert names == [*(a.name for a in ARMS), CHAIN, "dutch:10,election"]
    assert router.left_out == {
        "auction:60,nowhere:30": "chain 'auction:60,nowhere:30': link 2 (nowhere) is not a mechanism "
        "the router can post through"
    }
    chained = router.arms[len(ARMS)]
    # the last link lasts the pace's race window; the fee is the highest of the links'
    assert chain_links(chained.mechanism_id) == (
        Link(3, 60),
        Link(4, 60),
        Link(OPEN_RACE, Pace().race_window),
    )
    assert chained.fee == 5 and chained.chain == CHAIN
    for _ in range(len(ARMS)):  # the single mechanisms are tried first, in order
        router.observe(router.choose(BALANCED, MARKET).arm.name, qos(), BALANCED)
    choice = router.choose(BALANCED, MARKET)
    assert choice.chain == CHAIN and choice.arm is chained
    assert choice.reason == f"exploring: no task through {CHAIN} observed yet for these preferences"
    t = choice.terms
    assert t["mechanism_id"] == chained.mechanism_id  # posted as it is: the chain is in the terms
    assert t["assign_window"] == 60 + 60 + Pace().race_window and t["ramp"] == 0
    assert choice.describe().startswith(f"{CHAIN}: 1 proof, up to ")
    router.observe(CHAIN, qos(), BALANCED)
    dutch = router.choose(BALANCED, MARKET)  # a chain with a Dutch link ramps its price over the windows
    assert dutch.chain == "dutch:10,election" and dutch.terms["ramp"] == dutch.terms["assign_window"]
    assert Router(ARMS).choose(BALANCED, MARKET).chain == ""


@pytest.mark.parametrize(
    "text, why",
    [
        ("auction:60,orderbook", None),
        ("auction,orderbook:60", "link 1 (auction) needs a window: auction:SECONDS"),
        ("auction:sixty", "link 1's window 'sixty' is not whole seconds"),
        ("auction:1,orderbook:1,dutch:1,race", "give 1 to 3 links"),
        ("auction:0,race", "link 1: window 0 s is not 1 to"),
        ("3:30,4", None),  # by id
    ],
)
def test_a_chain_text_is_read_as_the_requester_post_chain_option(text, why):
    router = Router(ARMS, chains=[text])
    if why is None:
        assert router.arms[-1].name == text and not router.left_out
    else:
        assert why in router.left_out[text] and len(router.arms) == len(ARMS)


def test_a_chain_keeps_its_windows_so_a_time_limit_they_leave_no_proof_in_bars_it():
    router = Router(ARMS, chains=["auction:60,orderbook:60"])
    chained = router.arms[-1]
    tight = replace(SPEEDY, max_time=100)  # the single mechanisms shrink their windows, the chain cannot
    terms, limit, why = router.tune(chained, tight, MARKET, 1)
    assert terms is None and limit == "max_time"
    assert why == (
        "auction:60,orderbook:60 needs a time limit of at least 125 s "
        "(its links' 120 s and the fastest prover's 5 s)"
    )
    assert router.choose(tight, MARKET).chain == ""
    only = Router([ARMS[2], ARMS[3]], chains=["auction:60,orderbook:60"])
    only.arms = only.arms[2:]
    with pytest.raises(Infeasible, match="no mechanism can meet max_time = 100 s"):
        only.choose(tight, MARKET)
    terms, _, _ = router.tune(chained, replace(SPEEDY, max_time=400), MARKET, 1)
    assert terms is not None and (terms["assign_window"], terms["proving_window"]) == (120, 280)


def test_the_double_auction_once_registered_is_an_arm_and_a_link():
    def ev(event: str, **args) -> Event:
        return Event(event, args, 0, "0x", 0)

    arms = routing.arms(
        [ev("MechanismRegistered", mechanism_id=3, name="auction"),
         ev("MechanismRegistered", mechanism_id=7, name=DOUBLE_AUCTION)],
        fees={DOUBLE_AUCTION: 2},
    )  # fmt: skip
    assert [(a.name, a.mechanism_id, a.fee) for a in arms][-1] == (DOUBLE_AUCTION, 7, 2)
    router = Router(arms, chains=[f"{DOUBLE_AUCTION}:30,race"])
    assert chain_links(router.arms[-1].mechanism_id) == (Link(7, 30), Link(OPEN_RACE, Pace().race_window))
    market = replace(MARKET, provers=((5, frozenset({7})),))
    assert market.could(router.arms[-1], 60) == 1 and market.could(arms[2], 60) == 0


def test_the_index_price_is_the_prior_for_the_reward_of_terms_with_no_outcome():
    cheap = Preferences(speed=1, cost=3, safety=0, censorship_resistance=0)  # the rule: 2x the least
    going = MarketIndex(price=int(3.5 * LEAST), latency=20, proofs=12)
    router = Router(ARMS[:1])
    assert router.choose(cheap, MARKET).terms["max_reward"] == 2 * LEAST
    first = router.choose(cheap, MARKET, index=going)
    assert first.terms["max_reward"] == 4 * LEAST  # the index price, rounded up to a step
    assert first.reason.endswith(
        "; terms 4x the least reward, 1 proof, not the rule's 2x: the market's index says provers "
        "were paid 350 wei a slot lately (no outcome of these terms yet)"
    )
    assert router.choose(cheap, MARKET, index=MarketIndex(5 * LEAST, 20, 0)).terms["max_reward"] == 2 * LEAST
    assert router.choose(cheap, MARKET, index=MarketIndex(LEAST, 20, 9)).terms["max_reward"] == 2 * LEAST
    router.observe("open race", qos((10,)), cheap, terms=first.variant)  # outcomes now: they decide
    assert "index" not in router.choose(cheap, MARKET, index=going).reason


def test_the_choice_says_when_to_opt_in_to_re_pricing_and_with_what():
    roomy = replace(BALANCED, max_price=20 * LEAST, max_time=9_000)
    router = Router(ARMS[1:2])  # dutch
    choice = router.choose(roomy, MARKET)
    assert (
        choice.reprice == "your price limit leaves room above 3x the least reward: re-post higher if untaken"
    )
    assert choice.reason.endswith("; re-pricing advised: " + choice.reprice)
    policy = choice.reprice_policy(roomy, now=1_000)
    assert policy == repricing.policy_for(roomy, choice.terms, 1_000)
    assert policy is not None and policy.ceiling == 20 * LEAST and policy.deadline == 10_000
    assert router.choose(BALANCED, MARKET).reprice == ""  # no price limit: nothing to re-price up to
    full = replace(BALANCED, max_price=3 * LEAST)  # the reward takes all the limit
    assert (
        router.choose(full, MARKET).reprice == ""
        and router.choose(full, MARKET).reprice_policy(full, 0) is None
    )
    race = Router(ARMS[:1]).choose(roomy, MARKET)  # an open race cannot be cancelled while it runs
    assert race.reprice == "" and "re-pricing" not in race.reason
    chained = Router(ARMS, chains=["auction:60,race"])
    chained.arms = chained.arms[-1:]
    assert chained.choose(roomy, MARKET).reprice == ""  # nor a chain with a race link
    assert ARMS[1].mechanism_id == DUTCH
