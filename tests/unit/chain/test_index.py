"""The Dutch auction's start price a requester's client takes from a market's index when
the requester names none (provingmarket/chain/index.py), and the reading's shape."""

from provingmarket.chain.index import IndexReading, dutch_start_price
from provingmarket.market.index import MarketIndex

LEAST, REWARD = 10, 1_000  # a market's least reward, a task's reward


def test_dutch_start_price__no_proof_yet__the_least_reward_as_before():
    assert dutch_start_price(IndexReading(0, 0, 0), LEAST, REWARD) == LEAST
    assert dutch_start_price(IndexReading(0, 0, 0), LEAST, 5) == 5


def test_dutch_start_price__a_known_index__half_its_price_within_the_least_and_the_reward():
    assert dutch_start_price(IndexReading(600, 30, 4), LEAST, REWARD) == 300
    assert dutch_start_price(IndexReading(6, 30, 1), LEAST, REWARD) == LEAST
    assert dutch_start_price(IndexReading(5_000, 30, 255), LEAST, REWARD) == REWARD


def test_index_reading__builds_the_market_layers_index_field_for_field():
    reading = IndexReading(price=600, latency=30, proofs=4)
    assert MarketIndex(*reading) == MarketIndex(price=600, latency=30, proofs=4)
    assert MarketIndex(*reading).known and not IndexReading(0, 0, 0).known
