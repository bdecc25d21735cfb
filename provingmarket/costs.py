"""A prover's cost model: the least price worth proving a task for, and the registry's
price formulas a prover prices against (the DUTCH price curve, a decaying reward).

    model = CostModel(cost_per_second=parse_ether("0.001"), risk_rate="0.02", margin="0.1")
    floor = model.least_price(expected_seconds=4.2, gas_price=gas_price, collateral=terms.collateral)

The least price of one proof, in wei, rounded up:

    (expected_seconds * cost_per_second            what the machine costs while it proves
     + (gas_per_proof [+ gas_per_lock]) * gas_price  the prove transaction (and a DUTCH lock)
     + collateral * risk_rate)                       the expected loss to a slash
    * (1 + margin)

`risk_rate` is the expected loss from a slash, as a fraction of the collateral at risk:
the chance of missing a deadline (a slash takes the whole collateral). It is not a cost of
capital: collateral is locked for one proving window, which at any interest rate costs
little next to a slash. A race locks no collateral and a late or beaten racer is not
slashed, so a race risks none (collateral 0). `margin` is the profit asked on top, a
fraction of the cost.

Amounts are wei (int); rates are exact fractions (`Fraction`, or a decimal string or
number given to the constructor), so "0.1" is a tenth, not a binary float near one.

The registry pays a proof `reward_at(terms, price, deadline, at)`: the agreed price, or with
`decay` a price falling linearly over the proving window to `decay_floor`. The functions
below mirror the registry's `_dutch_price` and `_reward_at` to the wei and invert them: the
least price whose decayed reward still pays a cost (`price_for_reward`) and the time a
rising DUTCH price reaches one (`dutch_time_for`). Everything here is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from provingmarket.formats import TaskTerms

# Gas of one proof: the registry's `prove` (about 74,300, scripts/bench.py) plus the market's
# Groth16 verifier (about 190,000 to 200,000 with one or two public inputs).
GAS_PER_PROOF = 275_000
# Gas of a DUTCH `lock`: an assignment (about 55,000).
GAS_PER_LOCK = 60_000


def fraction(value: Fraction | str | float | int, what: str = "rate") -> Fraction:
    """A rate as an exact fraction: "0.02", 0.02 and Fraction(1, 50) are the same."""
    if isinstance(value, Fraction):
        return value
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{what} {value!r} is not a number (give a fraction such as 0.05)") from None


@dataclass(frozen=True)
class CostModel:
    """What a proof costs a prover, and the least price worth proving for (module docstring)."""

    cost_per_second: int = 0  # wei per second of proving (hardware, power)
    risk_rate: Fraction = Fraction(0)  # expected loss to a slash, per wei of collateral at risk
    margin: Fraction = Fraction(0)  # profit asked on top of the cost, a fraction of it
    gas_per_proof: int = GAS_PER_PROOF
    gas_per_lock: int = GAS_PER_LOCK

    def __post_init__(self) -> None:
        object.__setattr__(self, "risk_rate", fraction(self.risk_rate, "risk rate"))
        object.__setattr__(self, "margin", fraction(self.margin, "margin"))
        if self.cost_per_second < 0:
            raise ValueError(f"cost per second {self.cost_per_second} wei is negative")
        if not 0 <= self.risk_rate <= 1:
            raise ValueError(f"risk rate {self.risk_rate} is not a fraction of the collateral (0 to 1)")
        if self.margin < 0:
            raise ValueError(f"margin {self.margin} is negative")
        if self.gas_per_proof < 0 or self.gas_per_lock < 0:
            raise ValueError("gas per proof and per lock must be zero or more")

    def costs(
        self, expected_seconds: float, gas_price: int, collateral: int, needs_lock: bool = False
    ) -> dict[str, Fraction]:
        """The parts of the least price before the margin: proving, gas, risk (wei, exact)."""
        if not (expected_seconds >= 0 and math.isfinite(expected_seconds)):
            raise ValueError(f"expected proving time {expected_seconds} s is not a duration")
        gas = self.gas_per_proof + (self.gas_per_lock if needs_lock else 0)
        return {
            "proving": Fraction(expected_seconds) * self.cost_per_second,
            "gas": Fraction(gas * gas_price),
            "risk": collateral * self.risk_rate,
        }

    def least_price(
        self, expected_seconds: float, gas_price: int, collateral: int, needs_lock: bool = False
    ) -> int:
        """The least price, in wei rounded up, worth proving a task for: proving time times
        the cost per second, plus the gas of `prove` (and of `lock` for a DUTCH task) at
        `gas_price`, plus the collateral at risk times the risk rate; then the margin."""
        total = sum(self.costs(expected_seconds, gas_price, collateral, needs_lock).values(), Fraction(0))
        return math.ceil(total * (1 + self.margin))


# ------------------------------------------------------------------ the registry's formulas


def dutch_price(terms: TaskTerms, at: int) -> int:
    """The price a DUTCH task pays a prover that locks it at `at` (the registry's
    `dutch_price`): start_price rising linearly to max_reward over `ramp` seconds."""
    if terms.ramp == 0 or at >= terms.posted_at + terms.ramp:
        return terms.max_reward
    elapsed = max(at - terms.posted_at, 0)
    return terms.start_price + (terms.max_reward - terms.start_price) * elapsed // terms.ramp


def dutch_time_for(terms: TaskTerms, price: int) -> int | None:
    """The first timestamp at which the DUTCH price is at least `price`; None if it never is."""
    if price > terms.max_reward:
        return None
    if terms.ramp == 0 or price <= terms.start_price:
        return terms.posted_at
    # start + (max - start) * elapsed // ramp >= price  <=>  (max - start) * elapsed >= (price - start) * ramp
    rise = terms.max_reward - terms.start_price
    return terms.posted_at + min(-(-(price - terms.start_price) * terms.ramp // rise), terms.ramp)


def reward_at(terms: TaskTerms, price: int, deadline: int, at: int) -> int:
    """What a proof at `at` pays for an agreed price and deadline (the registry's
    `reward_at`): the price, or with decay a linear fall over the proving window from the
    price to min(decay_floor, price) at the deadline."""
    if not terms.decay:
        return price
    least = min(terms.decay_floor, price)
    if at >= deadline:
        return least
    remaining = min(deadline - at, terms.proving_window)
    return least + (price - least) * remaining // terms.proving_window


def price_for_reward(terms: TaskTerms, wanted: int, remaining: float) -> int | None:
    """The least agreed price whose reward, for a proof `remaining` seconds before the
    deadline, is at least `wanted`; None if no price pays that (a decaying reward at or
    past the deadline). Without decay, `wanted` itself."""
    if not terms.decay or wanted <= terms.decay_floor:
        # Below its floor a decaying price does not decay: min(decay_floor, price) is the price.
        return max(wanted, 0)
    seconds = min(math.floor(remaining), terms.proving_window)
    if seconds <= 0:
        return None
    floor = terms.decay_floor
    # floor + (price - floor) * seconds // window >= wanted
    #   <=>  (price - floor) * seconds >= (wanted - floor) * window
    return floor - (-(wanted - floor) * terms.proving_window // seconds)


__all__ = [
    "GAS_PER_LOCK",
    "GAS_PER_PROOF",
    "CostModel",
    "dutch_price",
    "dutch_time_for",
    "fraction",
    "price_for_reward",
    "reward_at",
]
