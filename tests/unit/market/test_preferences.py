"""A requester's preferences (provingmarket/market/preferences.py) on hand-made outcomes (TaskQoS
built directly, no chain): each score's documented values (speed 1 at 0 s and 0.5 at 30 s,
cost 0.5 at the market's least reward, safety 0.5 / 0.875 for 1 / 3 proofs, censorship
resistance 0.33 for a single prover), the utility as their weighted mean, 0 when no proof
came or a hard limit broke (too late, too expensive, too few proofs), only the weights'
ratios mattering, QoS loss; and bad input refused with a PreferenceError naming the value."""

from __future__ import annotations

import math

import pytest

from provingmarket.market.preferences import (
    QUALITIES,
    PreferenceError,
    Preferences,
    breaks_limit,
    parse_weights,
    qos_loss,
    scores,
    utility,
)
from provingmarket.market.qos import TaskQoS
from tests.factories import task_qos

LEAST = 100  # the market's least reward


def outcome(
    proof_times: tuple[int, ...] = (0,),
    spent: int = 0,
    could: int = 2,
    redundancy: int | None = None,
    min_reward: int = LEAST,
    fees: int = 0,
) -> TaskQoS:
    """A task's QoS: proofs at `proof_times` seconds after posting, `spent` in all."""
    return task_qos(
        proof_times, spent, least=LEAST, could=could, redundancy=redundancy, min_reward=min_reward, fees=fees
    )


def only(quality: str, **limits) -> Preferences:
    """Preferences weighing a single quality."""
    return Preferences(**{q: (1 if q == quality else 0) for q in QUALITIES}, **limits)


# ------------------------------------------------------------------ scores


@pytest.mark.parametrize(
    "first, expected", [(0, 1.0), (30, 0.5), (90, 0.25), (300, 30 / 330)], ids=["0s", "30s", "90s", "5min"]
)
def test_speed(first, expected):
    assert scores(outcome((first,)))["speed"] == pytest.approx(expected)
    assert utility(outcome((first,)), only("speed")) == pytest.approx(expected)


def test_speed_counts_the_first_proof():
    assert scores(outcome((30, 600)))["speed"] == pytest.approx(0.5)


@pytest.mark.parametrize("spent, expected", [(0, 1.0), (LEAST, 0.5), (5 * LEAST, 1 / 6), (3 * LEAST, 0.25)])
def test_cost(spent, expected):
    assert scores(outcome(spent=spent))["cost"] == pytest.approx(expected)
    assert utility(outcome(spent=spent), only("cost")) == pytest.approx(expected)


def test_cost_counts_frontend_fees_and_a_zero_least_reward():
    assert scores(outcome(spent=LEAST, fees=40))["cost"] == pytest.approx(0.5)  # 60 paid + 40 fees
    # A market with no least reward measures in wei (unit 1), never divides by 0.
    assert scores(outcome(spent=1, min_reward=0))["cost"] == pytest.approx(0.5)
    assert scores(outcome(spent=0, min_reward=0))["cost"] == 1.0


@pytest.mark.parametrize("proofs, expected", [(0, 0.0), (1, 0.5), (2, 0.75), (3, 0.875)])
def test_safety(proofs, expected):
    assert scores(outcome(tuple(range(proofs)), redundancy=3))["safety"] == pytest.approx(expected)


@pytest.mark.parametrize("could, expected", [(0, 0.0), (1, 1 / 3), (2, 0.5), (6, 0.75)])
def test_censorship_resistance(could, expected):
    assert scores(outcome(could=could))["censorship_resistance"] == pytest.approx(expected)


def test_no_proof_scores_zero_speed():
    assert scores(outcome((), redundancy=1))["speed"] == 0.0


def test_utility_is_the_weighted_mean():
    q = outcome((30, 60, 90), spent=LEAST, could=1)  # speed 0.5, cost 0.5, safety 0.875, 1/3
    prefs = Preferences(speed=4, cost=3, safety=2, censorship_resistance=1)
    expected = (4 * 0.5 + 3 * 0.5 + 2 * 0.875 + 1 / 3) / 10
    assert utility(q, prefs) == pytest.approx(expected)
    s = scores(q)
    assert set(s) == set(QUALITIES)
    assert all(0 <= v <= 1 for v in s.values())
    # A zero weight leaves its quality out.
    assert utility(q, Preferences(1, 0, 1, 0)) == pytest.approx((0.5 + 0.875) / 2)


def test_only_the_ratios_of_the_weights_matter():
    q = outcome((12, 40), spent=2 * LEAST, could=3)
    small = Preferences(1, 2, 3, 4)
    for scale in (0.001, 10, 1e6):
        big = Preferences(*(w * scale for w in small.weights))
        assert utility(q, big) == pytest.approx(utility(q, small))
        assert big.profile == small.profile
    assert Preferences(1, 1, 1, 1).profile == "0.25,0.25,0.25,0.25"
    assert Preferences(10, 0, 0, 0).profile == "1.00,0.00,0.00,0.00"
    assert Preferences(1, 2, 3, 4).profile != Preferences(4, 3, 2, 1).profile


# ------------------------------------------------------------------ hard limits


BALANCED = Preferences(1, 1, 1, 1)


def test_no_proof_has_no_utility_whatever_it_saved():
    q = outcome((), spent=0, could=6, redundancy=1)
    assert breaks_limit(q, BALANCED) == "no proof was delivered"
    assert utility(q, BALANCED) == 0.0
    assert utility(q, only("cost")) == 0.0  # free, but it served nothing


def test_too_late():
    prefs = Preferences(1, 1, 1, 1, max_time=60)
    assert breaks_limit(outcome((60,)), prefs) is None
    assert utility(outcome((60,)), prefs) > 0
    late = outcome((61,))
    assert breaks_limit(late, prefs) == "proof after 61 s, the limit is 60 s"
    assert utility(late, prefs) == 0.0


def test_too_late_counts_the_last_of_the_proofs_needed():
    prefs = Preferences(1, 1, 1, 1, max_time=60, min_redundancy=2)
    assert utility(outcome((10, 50, 500)), prefs) > 0  # the third proof is a bonus
    assert breaks_limit(outcome((10, 70, 80)), prefs) == "proof after 70 s, the limit is 60 s"
    assert utility(outcome((10, 70, 80)), prefs) == 0.0


def test_too_expensive():
    prefs = Preferences(1, 1, 1, 1, max_price=3 * LEAST)
    assert utility(outcome(spent=3 * LEAST), prefs) > 0
    dear = outcome(spent=3 * LEAST + 1, fees=1)  # fees count
    assert breaks_limit(dear, prefs) == f"it cost {3 * LEAST + 1} wei, the limit is {3 * LEAST}"
    assert utility(dear, prefs) == 0.0


def test_too_few_proofs():
    prefs = Preferences(1, 1, 1, 1, min_redundancy=3)
    assert breaks_limit(outcome((1, 2), redundancy=3), prefs) == "2 proofs delivered, at least 3 needed"
    assert breaks_limit(outcome((1,), redundancy=3), prefs) == "1 proof delivered, at least 3 needed"
    assert utility(outcome((1, 2), redundancy=3), prefs) == 0.0
    assert utility(outcome((1, 2, 3)), prefs) > 0


def test_limits_are_described():
    prefs = Preferences(1, 2, 0, 0.5, max_time=60, max_price=2 * 10**18, min_redundancy=2)
    assert prefs.limits() == "proof within 60 s, at most 2 ETH, at least 2 proofs"
    assert prefs.describe() == (
        "speed 1, cost 2, safety 0, censorship resistance 0.5; "
        "limits: proof within 60 s, at most 2 ETH, at least 2 proofs"
    )
    assert BALANCED.limits() == "" and "limits" not in BALANCED.describe()


# ------------------------------------------------------------------ QoS loss


def test_qos_loss():
    loss = qos_loss({"router": [0.8, 0.6], "auction": [0.5, 0.5], "race": [0.9, 0.1], "idle": []})
    assert loss == pytest.approx({"router": 0.0, "auction": 0.2, "race": 0.2})
    assert "idle" not in loss  # a policy with no task is left out
    assert qos_loss({"a": [0.3]}) == {"a": 0.0}
    assert qos_loss({}) == {}
    assert qos_loss({"a": [], "b": []}) == {}
    assert min(qos_loss({"a": [0.1, 0.2], "b": [0.0]}).values()) == 0.0


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "value, says",
    [
        (-1, "weight cost is -1: weights must be 0 or more"),
        (-0.5, "weight cost is -0.5"),
        (math.nan, "weight cost must be a finite number, not nan"),
        (math.inf, "weight cost must be a finite number, not inf"),
        (-math.inf, "weight cost must be a finite number"),
        ("3", "weight cost must be a finite number, not '3'"),
        (None, "weight cost must be a finite number, not None"),
        (True, "weight cost must be a finite number, not True"),
        (False, "weight cost must be a finite number, not False"),
    ],
)
def test_bad_weights(value, says):
    with pytest.raises(PreferenceError) as raised:
        Preferences(speed=1, cost=value, safety=1, censorship_resistance=1)
    assert says in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("quality", QUALITIES)
def test_each_weight_is_named(quality):
    weights = {q: 1 for q in QUALITIES} | {quality: -2}
    with pytest.raises(PreferenceError, match=f"weight {quality} is -2"):
        Preferences(**weights)


def test_all_zero_weights():
    with pytest.raises(PreferenceError, match="every weight is 0"):
        Preferences(0, 0, 0, 0)
    with pytest.raises(PreferenceError, match="every weight is 0"):
        Preferences(0.0, 0, 0.0, 0)


@pytest.mark.parametrize(
    "limits, says",
    [
        ({"max_time": 0}, "max_time must be a whole number above 0, not 0"),
        ({"max_time": -5}, "max_time must be a whole number above 0, not -5"),
        ({"max_time": 1.5}, "max_time must be a whole number above 0, not 1.5"),
        ({"max_time": True}, "max_time must be a whole number above 0, not True"),
        ({"max_price": 0}, "max_price must be a whole number above 0, not 0"),
        ({"max_price": -(10**18)}, "max_price must be a whole number above 0"),
        ({"max_price": "1"}, "max_price must be a whole number above 0, not '1'"),
        ({"min_redundancy": 0}, "min_redundancy must be a whole number of 1 or more, not 0"),
        ({"min_redundancy": -1}, "min_redundancy must be a whole number of 1 or more, not -1"),
        ({"min_redundancy": 2.0}, "min_redundancy must be a whole number of 1 or more, not 2.0"),
        ({"min_redundancy": True}, "min_redundancy must be a whole number of 1 or more, not True"),
    ],
)
def test_bad_limits(limits, says):
    with pytest.raises(PreferenceError) as raised:
        Preferences(1, 1, 1, 1, **limits)
    assert says in str(raised.value)


def test_good_limits():
    prefs = Preferences(0, 0, 0, 0.1, max_time=1, max_price=1, min_redundancy=1)
    assert (prefs.max_time, prefs.max_price, prefs.min_redundancy) == (1, 1, 1)


def test_parse_weights():
    assert parse_weights("10,3,1,1") == (10.0, 3.0, 1.0, 1.0)
    assert parse_weights(" 0.5 , 0,2 ,1e1") == (0.5, 0.0, 2.0, 10.0)
    assert Preferences(*parse_weights("10,3,1,1")).weights == (10, 3, 1, 1)


@pytest.mark.parametrize("text", ["1,2,3", "1,2,3,4,5", "", "1;2;3;4"])
def test_parse_weights_needs_four(text):
    with pytest.raises(PreferenceError, match="give four numbers, speed,cost,safety,censorship_resistance"):
        parse_weights(text)


@pytest.mark.parametrize(
    "text, says",
    [
        ("a,b,c,d", "weight speed 'a' is not a number"),
        ("1,b,3,4", "weight cost 'b' is not a number"),
        ("1,2,,4", "weight safety '' is not a number"),
        ("1,2,3,many", "weight censorship_resistance 'many' is not a number"),
    ],
)
def test_parse_weights_names_the_bad_weight(text, says):
    with pytest.raises(PreferenceError) as raised:
        parse_weights(text)
    assert str(raised.value) == says


def test_parsed_weights_that_are_numbers_but_unusable_are_refused_by_preferences():
    for text, says in [("nan,1,1,1", "weight speed must be a finite"), ("1,-1,1,1", "weight cost is -1")]:
        with pytest.raises(PreferenceError, match=says):
            Preferences(*parse_weights(text))
