"""The agent's prices off the chain: the cost model and the least price it takes for a task."""

from __future__ import annotations

from fractions import Fraction

import pytest

from provingmarket.costs import (
    GAS_PER_LOCK,
    GAS_PER_PROOF,
    CostModel,
)
from tests.factories import (
    ETHER,
)

GWEI = 10**9


def test_least_price__proving_gas_and_risk__plus_the_margin():
    model = CostModel(cost_per_second=ETHER // 1000, risk_rate="0.02", margin="0.1")
    # 4 s * 0.001 ETH + 275,000 gas * 2 gwei + 0.5 ETH * 2%, then 10% more
    expected = (4 * ETHER // 1000 + GAS_PER_PROOF * 2 * GWEI + ETHER // 100) * 11 // 10
    assert model.least_price(4.0, 2 * GWEI, ETHER // 2) == expected == 16_005_000_000_000_000


def test_least_price__dutch_lock__adds_the_lock_gas():
    model = CostModel(cost_per_second=ETHER // 1000, risk_rate="0.02", margin="0.1")
    locked = model.least_price(4.0, 2 * GWEI, ETHER // 2, needs_lock=True)
    assert locked - model.least_price(4.0, 2 * GWEI, ETHER // 2) == GAS_PER_LOCK * 2 * GWEI * 11 // 10


def test_least_price__defaults__ask_for_the_gas_alone():
    assert CostModel().least_price(30.0, 3 * GWEI, 10 * ETHER) == GAS_PER_PROOF * 3 * GWEI
    assert CostModel(gas_per_proof=0).least_price(30.0, 3 * GWEI, 10 * ETHER) == 0


def test_least_price__fractions_of_a_wei__round_up():
    model = CostModel(cost_per_second=3, margin=Fraction(1, 3), gas_per_proof=0)
    # 0.5 s * 3 wei = 1.5 wei, * 4/3 = 2 wei exactly; 0.6 s: 1.8 * 4/3 = 2.4 -> 3
    assert model.least_price(0.5, 0, 0) == 2
    assert model.least_price(0.6, 0, 0) == 3


def test_cost_model__rates_are_exact_fractions_whatever_their_spelling():
    assert CostModel(risk_rate=0.1, margin="0.05") == CostModel(risk_rate="0.1", margin=Fraction(1, 20))
    # a float 0.1 is taken as written: 10 wei of collateral at risk cost exactly 1 wei
    assert CostModel(risk_rate=0.1, gas_per_proof=0).least_price(0, 0, 10) == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cost_per_second": -1}, "negative"),
        ({"risk_rate": "1.5"}, "0 to 1"),
        ({"margin": "-0.1"}, "negative"),
        ({"risk_rate": "lots"}, "not a number"),
    ],
)
def test_cost_model__bad_values__are_refused_saying_which(values, message):
    with pytest.raises(ValueError, match=message):
        CostModel(**values)
