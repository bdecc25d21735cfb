"""A fallback chain's rules in Python (provingmarket/rules.py; the registry's are checked
against them on anvil in tests/chain/registry/test_chains.py), and the `--chain` option."""

import pytest

from provingmarket import rules
from provingmarket.chain.client import ClientError
from provingmarket.costs import dutch_price
from provingmarket.formats import DUTCH, OPEN_RACE, Link, encode_chain, mechanism_text
from provingmarket.market.requests import parse_chain
from tests.factories import offchain_terms

AUCTION, ORDERBOOK = 4, 3
CHAINED = offchain_terms(
    mechanism_id=encode_chain([Link(AUCTION, 30), Link(DUTCH, 60), Link(OPEN_RACE, 100)]),
    assign_window=190,
    start_price=10,
    ramp=190,
)
OPEN = rules.Slots(open=1)


def test_mechanism_at__each_link_for_its_window_then_none():
    t = CHAINED.posted_at
    assert [rules.mechanism_at(CHAINED, t + s) for s in (0, 30, 31, 90, 91, 190, 191)] == [
        AUCTION, AUCTION, DUTCH, DUTCH, OPEN_RACE, OPEN_RACE, 0,
    ]  # fmt: skip
    assert rules.link_at(CHAINED, t + 31) == (DUTCH, t + 30, t + 90)
    single = offchain_terms(mechanism_id=ORDERBOOK)
    assert rules.mechanism_at(single, single.posted_at + 10_000) == ORDERBOOK  # its window is taking_ends'


def test_task_refusal__a_chain__judged_by_its_current_link():
    t = CHAINED.posted_at
    assert rules.task_refusal(CHAINED, OPEN, t + 10, frontend_serves=True) == ""
    assert rules.task_refusal(CHAINED, OPEN, t + 10, frontend_serves=None) == rules.NOT_DUTCH
    assert rules.task_refusal(CHAINED, OPEN, t + 40, frontend_serves=True) == rules.NOT_FOR_FRONTENDS
    assert rules.task_refusal(CHAINED, OPEN, t + 40, frontend_serves=None) == ""
    assert rules.task_refusal(CHAINED, OPEN, t + 100, frontend_serves=None) == rules.NOT_DUTCH
    assert rules.task_refusal(CHAINED, OPEN, t + 191, frontend_serves=True) == rules.TASK_EXPIRED
    # A Dutch link's price rises from posting.
    assert rules.self_taken_price(CHAINED, t + 40) == dutch_price(CHAINED, t + 40)


def test_mechanism_text__a_chain_lists_its_links():
    assert mechanism_text(CHAINED.mechanism_id) == "4:30s, dutch:60s, open race:100s"
    assert mechanism_text(OPEN_RACE) == "open race"


def test_parse_chain__windows_defaults_and_errors():
    assert parse_chain("auction:30, Orderbook:60,race", 120, None) == (
        ("auction", 30), ("orderbook", 60), ("race", 120),
    )  # fmt: skip
    assert parse_chain("auction:30,orderbook", 120, "100") == (("auction", 30), ("orderbook", 70))
    assert parse_chain("dutch:5", 120, None) == (("dutch", 5),)
    for text, assign_window, message in (
        ("auction:30,orderbook:60,race:10,dutch:5", None, "give 1 to 3 links"),
        ("auction,race", None, "link 1 (auction) needs a window"),
        ("auction:x,race", None, "--chain link 1's window 'x' is not a whole number"),
        ("auction:30,race", "20", "leaves nothing for the chain's last link"),
        ("auction:30,race:10", "50", "is not the chain's 40 s"),
    ):
        with pytest.raises(ClientError) as refused:
            parse_chain(text, 120, assign_window)
        assert message in str(refused.value)
