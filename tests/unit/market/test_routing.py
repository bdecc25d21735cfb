"""What routing a requester's task reads off the chain, computed from records: the arms, the
market view replayed from events, a persona's preferences."""

from __future__ import annotations

import pytest

from provingmarket.chain.client import Event
from provingmarket.formats import DUTCH, OPEN_RACE
from provingmarket.market import routing
from provingmarket.market.preferences import Preferences
from tests.factories import MIN_COLLATERAL, MIN_REWARD

A, B, C = ("0x" + c * 40 for c in "abc")  # provers


def ev(event: str, **args) -> Event:
    return Event(event, args, 0, "0x", 0)


def test_arms__names_built_in_then_registered_by_id__a_name_taken_gets_its_id_and_retired_ones_go():
    events = [
        ev("MechanismRegistered", mechanism_id=3, name="auction"),
        ev("MechanismRegistered", mechanism_id=4, name="election"),
        ev("MechanismRegistered", mechanism_id=5, name="auction"),
        ev("MechanismRegistered", mechanism_id=6, name="dutch"),
        ev("MechanismRetired", mechanism_id=4),
    ]

    found = routing.arms(events, fees={"auction": 7, "dutch": 9}, least_times={"auction #5": 30, "dutch": 2})

    assert [(a.name, a.mechanism_id, a.fee, a.least_time) for a in found] == [
        ("open race", OPEN_RACE, 0, 0),
        ("dutch", DUTCH, 0, 2),  # built in: no frontend, no fee
        ("auction", 3, 7, 0),
        ("auction #5", 5, 7, 30),
        ("dutch #6", 6, 0, 0),
    ]


def test_arms__instances__take_their_kinds_fee__and_their_published_window_as_least_time():
    events = [
        ev("MechanismRegistered", mechanism_id=3, name="auction/window=30"),
        ev("MechanismRegistered", mechanism_id=4, name="auction/window=5"),
        ev("MechanismRegistered", mechanism_id=5, name="orderbook/interval=2"),
        ev("MechanismRegistered", mechanism_id=6, name="dutch/x=1"),
    ]

    found = routing.arms(
        events, fees={"auction": 7, "orderbook": 3, "dutch": 9}, least_times={"auction": 4, "orderbook": 1}
    )

    assert [(a.name, a.fee, a.least_time) for a in found[2:]] == [
        ("auction/window=30", 7, 30),
        ("auction/window=5", 7, 5),
        ("orderbook/interval=2", 3, 1),
        ("dutch/x=1", 0, 0),  # named like a built-in kind: never the built-in one's figures
    ]


def test_arms__an_election_instance__its_delay_in_blocks_of_the_chain_is_its_least_time():
    events = [
        ev("MechanismRegistered", mechanism_id=3, name="election/delay=4"),
        ev("MechanismRegistered", mechanism_id=4, name="election/delay=1"),
        ev("MechanismRegistered", mechanism_id=5, name="election"),
        ev("MechanismRegistered", mechanism_id=6, name="double_auction/round=30"),
    ]

    found = routing.arms(events, least_times={"election": 9, "double_auction": 2}, block_seconds=2.5)

    assert [(a.name, a.least_time) for a in found[2:]] == [
        ("election/delay=4", 10),  # 4 blocks of 2.5 s
        ("election/delay=1", 3),  # whole seconds, rounded up
        ("election", 9),  # publishes no delay: its kind's
        ("double_auction/round=30", 2),  # a round is a pace, not a wait: its kind's
    ]
    assert [a.least_time for a in routing.arms(events[:1])][-1] == 48  # 12 s blocks unless measured
    given = routing.arms(events[:1], least_times={"election/delay=4": 5}, block_seconds=2.5)
    assert given[-1].least_time == 5  # what is given for the instance's own name comes first


def test_chain_block_seconds__the_mean_over_the_last_blocks():
    times = {n: 1_000 + 2 * n for n in range(0, 1_001)}  # a block every 2 s
    assert routing.chain_block_seconds(times.__getitem__, 1_000) == 2.0
    assert routing.chain_block_seconds(times.__getitem__, 10) == 2.0  # a young chain: all its blocks
    assert routing.chain_block_seconds(times.__getitem__, 0) == routing.BLOCK_SECONDS


def test_market_view__replays_joins_leaves_acceptances_and_stake():
    least = MIN_COLLATERAL
    events = [
        ev("MarketCreated", market_id=1, min_reward=MIN_REWARD, min_collateral=least),
        ev("MarketCreated", market_id=2, min_reward=1, min_collateral=1),
        *(ev("Staked", prover=p, amount=least, stake=least) for p in (A, B, C)),
        ev("ProverJoined", prover=A, market_id=1, capacity=1, ask=0, proving_time=60, capabilities=0b11),
        ev("MechanismAccepted", prover=A, market_id=1, mechanism_id=3, accepted=True),
        ev("MechanismAccepted", prover=A, market_id=1, mechanism_id=4, accepted=True),
        ev("MechanismAccepted", prover=A, market_id=1, mechanism_id=4, accepted=False),
        ev("ProverUpdated", prover=A, market_id=1, capacity=2, ask=0, proving_time=30, capabilities=0b11),
        # B leaves and joins again: what it accepted before does not hold
        ev("ProverJoined", prover=B, market_id=1, capacity=1, ask=0, proving_time=90, capabilities=0b01),
        ev("MechanismAccepted", prover=B, market_id=1, mechanism_id=3, accepted=True),
        ev("ProverLeft", prover=B, market_id=1),
        ev("ProverJoined", prover=B, market_id=1, capacity=1, ask=0, proving_time=90, capabilities=0b01),
        # C is slashed below the least collateral; in market 2 only
        ev("ProverJoined", prover=C, market_id=1, capacity=1, ask=0, proving_time=10, capabilities=0),
        ev("Slashed", task_id=b"", prover=C, collateral=1),
        ev("ProverJoined", prover=C, market_id=2, capacity=1, ask=0, proving_time=10, capabilities=0),
    ]

    view = routing.market_view(events, 1)
    hardware = routing.market_view(events, 1, capabilities=0b10)

    assert (view.market_id, view.min_reward, view.min_collateral) == (1, MIN_REWARD, least)
    assert view.provers == ((30, frozenset({3})), (90, frozenset()))
    assert hardware.provers == ((30, frozenset({3})),)
    assert routing.market_view(events, 2).provers == ((10, frozenset()),)  # any stake is enough there
    assert routing.market_view(events[:3] + [ev("Unstaked", prover=A, amount=1)], 1).provers == ()
    with pytest.raises(ValueError, match=r"no market 9 in the registry's events \(markets: 1, 2\)"):
        routing.market_view(events, 9)


def test_persona_preferences__the_personas_weights_with_limits():
    prefs = routing.persona_preferences("Rollup", max_time=600, min_redundancy=2)

    assert prefs == Preferences(3, 2, 10, 1, max_time=600, max_price=None, min_redundancy=2)
