"""The instance name format (provingmarket/chain/mechanisms.py): a registered name that
publishes an instance's parameters, `auction/window=30`, written and read in one place and
bounded; a frontend's `Instances` checking names against what it was given; `Intervals`
running a mechanism per instance at the instance's own pace (the frontends' shared process module)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frontends.book import OpenTask, Snapshot
from frontends.process import Instances, Intervals
from provingmarket.chain.client import ClientError
from provingmarket.chain.mechanisms import (
    INSTANCE_PARAMETERS,
    InstanceError,
    MechanismInfo,
    instance_name,
    least_time,
    parse_instance,
    parse_parameters,
)
from tests.factories import offchain_terms


def test_name__written_and_read_back__known_keys_in_their_order():
    assert instance_name("auction", {"window": 30}) == "auction/window=30"
    assert instance_name("orderbook", {}) == "orderbook"
    assert (
        instance_name("sealed-bid auction", {"rounds": 2, "least": 0})
        == "sealed-bid auction/least=0,rounds=2"
    )
    assert parse_instance("auction/window=30") == ("auction", {"window": 30})
    assert parse_instance("orderbook") == ("orderbook", {})  # no "/": the kind alone
    assert parse_instance("sealed-bid auction") == ("sealed-bid auction", {})


@given(
    st.text(
        st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="/"), min_size=1, max_size=12
    )
    .map(str.strip)
    .filter(bool),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), st.integers(0, 2**32 - 1), max_size=3
    ),
)
def test_name__any_kind_and_parameters_of_an_unknown_kind__round_trip(kind, params):
    if kind in INSTANCE_PARAMETERS:
        return  # their keys are fixed: the tests above and below
    assert parse_instance(instance_name(kind, params)) == (kind, params)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("auction/window=0", "auction window=0: give 1 to 86400"),
        ("auction/window=86401", "auction window=86401: give 1 to 86400"),
        ("auction/windw=30", "auction takes no parameter windw (it takes window)"),
        ("orderbook/interval=5,interval=6", "parameter interval given twice"),
        ("auction/window=030", "'window=030': write each parameter as key=value"),
        ("auction/window=-1", "'window=-1': write each parameter as key=value"),
        ("auction/window", "'window': write each parameter as key=value"),
        ("auction/", "'': write each parameter as key=value"),
        ("/window=3", "'/window=3': the kind comes before the '/'"),
        ("other/x=4294967296", "other x=4294967296: give 0 to 4294967295"),
        ("election/delay=0", "election delay=0: give 1 to 256"),
        ("election/delay=257", "election delay=257: give 1 to 256"),
        ("election/n=3", "election takes no parameter n (it takes delay)"),
        ("double_auction/round=86401", "double_auction round=86401: give 0 to 86400"),
        ("double_auction/interval=5", "double_auction takes no parameter interval (it takes round)"),
    ],
)
def test_name__bad__one_line_saying_what_is_wrong(name, why):
    with pytest.raises(InstanceError) as raised:
        parse_instance(name)
    assert str(raised.value).startswith(why)
    assert "\n" not in str(raised.value)


def test_name__longer_than_the_registry_takes__refused():
    with pytest.raises(InstanceError, match="the registry takes at most 64"):
        instance_name("k" * 40, {"aaaaaaaaaa": 1, "bbbbbbbbbb": 2})
    with pytest.raises(InstanceError, match="without '/'"):
        instance_name("auction/window=3", {})


def test_name__the_election_and_the_double_auction__their_delay_and_round():
    assert instance_name("election", {"delay": 4}) == "election/delay=4"
    assert parse_instance("election/delay=4") == ("election", {"delay": 4})
    assert parse_instance("election/delay=1") == ("election", {"delay": 1})  # the least: the next block
    assert instance_name("double_auction", {"round": 30}) == "double_auction/round=30"
    assert parse_instance("double_auction/round=0") == ("double_auction", {"round": 0})  # every keeper round


def test_least_time__an_auctions_window__an_elections_delay_in_seconds__none_for_a_pace():
    assert least_time("auction/window=30", 12.0) == 30
    assert least_time("election/delay=4", 12.0) == 48
    assert least_time("election/delay=4", 0.25) == 1  # whole seconds, rounded up
    assert least_time("election/delay=3", 2.5) == 8
    # an orderbook's or a double auction's interval is a pace, not a wait; a bare name publishes none
    assert [least_time(n, 12.0) for n in ("orderbook/interval=5", "double_auction/round=30", "election")] == [
        None,
        None,
        None,
    ]
    assert least_time("election/not a parameter", 12.0) is None


def test_parameters__as_given_on_a_command_line():
    assert parse_parameters("window=30", "auction") == {"window": 30}
    with pytest.raises(InstanceError, match="auction takes no parameter interval"):
        parse_parameters("interval=5", "auction")


def test_mechanism_info__shows_the_parameters_its_name_publishes():
    info = MechanismInfo(4, "auction/window=30", "registered", "0x" + "11" * 20, False)
    assert info.to_dict()["params"] == {"window": 30}
    assert MechanismInfo(3, "orderbook", "registered", None, False).to_dict()["params"] is None
    assert MechanismInfo(5, "x/not a parameter", "registered", None, False).to_dict()["params"] is None


# ------------------------------------------------------------------ a frontend's instances


def test_instances__given_over_published_over_defaults__a_disagreement_refused():
    served = Instances(
        "auction", {"window": 10}, mechanisms=[3, 4, 5], given={6: {"window": 90}, 7: {"window": 5}}
    )
    names = {
        3: "auction/window=30",
        4: "auction",
        5: "sealed bids",
        6: "auction/window=90",
        7: "auction/window=6",
    }
    with pytest.raises(ClientError) as refused:
        served.learn(names, strict=True)
    message = str(refused.value)
    assert message.startswith(
        "mechanism 7 is registered as 'auction/window=6' but --instance 7:window=5 was given"
    )
    assert "give --instance 7:window=6, or none" in message

    served.learn(names, strict=False)  # registered after the start: the id refused, the others served
    assert {i: served.get(i, "window") for i in range(3, 8)} == {3: 30, 4: 10, 5: 10, 6: 90, 7: None}
    assert served.ready() == {3, 4, 5, 6} and set(served.refused) == {7}


def test_instances__another_kinds_instance__refused():
    served = Instances("orderbook", {"interval": 0}, mechanisms=[3])
    with pytest.raises(ClientError, match="an instance of auction, not of orderbook"):
        served.learn({3: "auction/window=30"}, strict=True)
    with pytest.raises(ClientError, match="is not an instance name"):
        Instances("orderbook", {}, mechanisms=[3]).learn({3: "orderbook/interval=x"}, strict=True)


def test_instances__an_elections_delay__given_over_published_over_its_delay_option():
    served = Instances("election", {"delay": 2}, mechanisms=[3, 4], given={5: {"delay": 7}})
    served.learn({3: "election/delay=5", 4: "election", 5: "election"}, strict=True)
    assert {i: served.get(i, "delay") for i in (3, 4, 5)} == {3: 5, 4: 2, 5: 7}
    with pytest.raises(ClientError, match="registered as 'election/delay=5' but --instance 6:delay=3"):
        Instances("election", {"delay": 2}, given={6: {"delay": 3}}).learn(
            {6: "election/delay=5"}, strict=True
        )
    with pytest.raises(ClientError, match="an instance of double_auction, not of election"):
        Instances("election", {"delay": 2}, [7]).learn({7: "double_auction/round=5"}, strict=True)


def test_intervals__each_instance_decides_at_its_own_pace():
    served = Instances("orderbook", {"interval": 0}, mechanisms=[3], given={4: {"interval": 30}})
    served.learn({3: "orderbook", 4: "orderbook"}, strict=True)
    seen: list[set[int]] = []

    def mechanism(view: Snapshot):
        seen.append({t.terms.mechanism_id for t in view.tasks})
        assert view.mechanisms == frozenset(seen[-1])  # only the instances due decide
        return []

    tasks = tuple(OpenTask(bytes([m]) * 32, offchain_terms(mechanism_id=m), open_slots=1) for m in (3, 4))
    paced = Intervals(mechanism, served, "interval")
    for now in (100, 101, 129, 130, 131, 160):
        paced(Snapshot(now=now, mechanisms=frozenset({3, 4}), tasks=tasks))
    assert seen == [{3, 4}, {3}, {3}, {3, 4}, {3}, {3, 4}]
