"""The requester personas off the chain: their weights, and the mechanism and terms each maps to."""

from __future__ import annotations

import pytest

from provingmarket.formats import DUTCH
from provingmarket.market import personas
from tests.factories import ARBITRAGE, BATCH_DUTCH, HOUR, MIN_COLLATERAL, MIN_REWARD, rollup


def test_personas__the_seeds_three__have_the_issues_weights():
    weights = {name: p.weights for name, p in personas.PERSONAS.items()}

    assert weights == {
        "arbitrage": personas.Weights(speed=10, cost=3, safety=1, censorship_resistance=1),
        "rollup": personas.Weights(speed=3, cost=2, safety=10, censorship_resistance=1),
        "batch": personas.Weights(speed=2, cost=10, safety=3, censorship_resistance=1),
    }
    assert all(plan.why for p in personas.PERSONAS.values() for plan in p.plans)


def test_persona_terms__each_persona__maps_to_its_mechanism_and_terms_and_overrides_win():
    terms = personas.persona_terms

    assert terms("arbitrage", MIN_REWARD, MIN_COLLATERAL) == ARBITRAGE
    assert terms("rollup", MIN_REWARD, MIN_COLLATERAL, {personas.ELECTION: 4}) == rollup(4)
    assert terms("batch", MIN_REWARD, MIN_COLLATERAL) == BATCH_DUTCH
    assert terms("batch", MIN_REWARD, MIN_COLLATERAL, {personas.AUCTION: 5}) == {
        **BATCH_DUTCH,
        "mechanism_id": 5,
        "ramp": 0,  # a start price and ramp are the Dutch auction's only
    }
    # Explicit terms win, and what depends on them follows: no floor without decay, and
    # a mechanism given outright needs no id for the persona's own.
    assert terms("arbitrage", MIN_REWARD, MIN_COLLATERAL, decay=False, redundancy=2) == {
        **ARBITRAGE,
        "decay": False,
        "decay_floor": 0,
        "redundancy": 2,
    }
    assert terms("rollup", MIN_REWARD, MIN_COLLATERAL, mechanism_id=DUTCH)["ramp"] == 4 * HOUR
    with pytest.raises(
        personas.MissingMechanism, match="persona rollup posts through the election mechanism"
    ):
        terms("rollup", MIN_REWARD, MIN_COLLATERAL)
    with pytest.raises(
        personas.UnknownPersona, match="no persona 'miner'; the personas are arbitrage, rollup, batch"
    ):
        terms("miner", MIN_REWARD, MIN_COLLATERAL)
