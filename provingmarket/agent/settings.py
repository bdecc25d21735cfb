"""The agent's settings, from the command line (`settings_from_options`) or built in code,
and the simulated hardware of `--simulate`. What each setting does: docs/agent.md."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from provingmarket.chain import trust
from provingmarket.chain.client import ClientError, parse_ether
from provingmarket.costs import CostModel
from provingmarket.runtime.health import READY_AGE, READY_LAG


@dataclass(frozen=True)
class SimulatedHardware:
    """For simulations only (`--simulate`): a real agent made to behave like other
    hardware. Proofs stay real; the defaults are this machine as it is.

    - `prove_seconds`: extra seconds each proof takes (counted as proving time, so the
      cost model and the deadline checks see the slower hardware);
    - `failure_rate`: the share of work (assignments and races) on which the hardware
      fails silently, like a machine that crashed: no proof, no decline, so an
      assignment is slashed after its deadline. Drawn per (seed, prover, task, slot), so
      a restarted agent makes the same draw; said once as `simulated.failure`;
    - `latency`: seconds before each transaction and bid reaches the chain or auction;
    - `seed`: seeds the failure draws.
    """

    prove_seconds: float = 0.0
    failure_rate: float = 0.0
    latency: float = 0.0
    seed: int = 0

    def fails(self, prover: str, task_id: bytes, slot: int) -> bool:
        """Whether the hardware fails on this work: a hash rather than a random stream,
        so the draw depends neither on the order work arrives in nor on restarts, and
        provers of a fleet sharing a seed fail on different work."""
        if self.failure_rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{prover.lower()}:{task_id.hex()}:{slot}".encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.failure_rate * 2**64  # exact: 1 always fails

    def wait(self) -> None:
        """The network's latency, before something is sent."""
        if self.latency > 0:
            time.sleep(self.latency)


def simulated_hardware(text: str | None) -> SimulatedHardware:
    """`--simulate`'s JSON, checked (ClientError names the key and what it must be)."""
    if text is None:
        return SimulatedHardware()
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ClientError(f'--simulate is not JSON ({error}); give e.g. {{"prove_seconds": 3}}') from None
    if not isinstance(raw, dict):
        raise ClientError("--simulate must be a JSON object: prove_seconds, failure_rate, latency, seed")
    known = {f.name for f in dataclasses.fields(SimulatedHardware)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ClientError(
            f"--simulate: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    numbers: dict[str, float] = {}
    for name in ("prove_seconds", "failure_rate", "latency"):
        value = raw.get(name, 0)
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError, OverflowError):  # a string, null, a list; 1e999 as an int
            number = math.nan
        if isinstance(value, str) or not (math.isfinite(number) and number >= 0):
            raise ClientError(f"--simulate: {name} must be a number of 0 or more, not {value!r}")
        numbers[name] = number
    if numbers["failure_rate"] > 1:
        raise ClientError(f"--simulate: failure_rate must be from 0 to 1, not {raw['failure_rate']!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ClientError(f"--simulate: seed must be a whole number, not {seed!r}")
    return SimulatedHardware(seed=seed, **numbers)


@dataclass(frozen=True)
class AgentSettings:
    backend: str = "auto"  # groth16py, snarkjs, auto, or a JSON configuration file
    poll: float = 0.5  # seconds between rounds
    confirmations: int = 0
    metrics_port: int | None = None  # 0: any free port; None: no server
    withdraw_at: int | None = None  # wei
    race: bool = True
    race_min_reward: int = 0  # wei
    retries: int = 3
    margin: float = 2.0  # seconds kept free before a deadline
    cost: CostModel = field(default_factory=CostModel)  # the least price worth proving for
    dutch: bool = True  # lock DUTCH tasks once their price passes the floor
    auctions: tuple[str, ...] = ()  # auction frontends' API base URLs to bid at
    simulate: SimulatedHardware = field(default_factory=SimulatedHardware)  # simulations only
    trusted: frozenset[bytes] = frozenset()  # code hashes of custom verifiers the operator reviewed
    ready_lag: int = READY_LAG  # /readyz: blocks behind the head (beyond confirmations) still ready
    ready_age: float = READY_AGE  # /readyz: seconds since the last round still ready
    replace_after: float = 36.0  # seconds a sent transaction waits before its replacement
    max_fee_per_gas: int | None = None  # wei; the outbox never signs above it
    queue: str | None = None  # a Redis URL: proofs made by workers through the task queue
    queue_name: str = "proving"  # the queue the workers consume


def settings_from_options(
    backend: str = "auto",
    poll: float = 0.5,
    confirmations: int = 0,
    metrics_port: int | None = None,
    withdraw_at: str | None = None,
    race: bool = True,
    race_min_reward: str = "0",
    retries: int = 3,
    margin: float = 2.0,
    cost_per_second: str = "0",
    risk_rate: str = "0",
    price_margin: str = "0",
    dutch: bool = True,
    auction: Iterable[str] = (),
    simulate: str | None = None,
    trust_verifier: Iterable[str] = (),
    ready_lag: int = READY_LAG,
    ready_age: float = READY_AGE,
    replace_after: float = 36.0,
    max_fee_gwei: float | None = None,
    queue: str | None = None,
    queue_name: str = "proving",
    **_: Any,
) -> AgentSettings:
    """Settings from the command line, each value checked (ClientError says which)."""
    if not (poll > 0 and math.isfinite(poll)):
        raise ClientError(f"--poll {poll} should be a positive number of seconds")
    if confirmations < 0:
        raise ClientError(f"--confirmations {confirmations} is negative")
    if metrics_port is not None and not 0 <= metrics_port <= 65_535:
        raise ClientError(f"--metrics-port {metrics_port} is not a port (0 to 65535; 0 picks a free one)")
    if ready_lag < 0:
        raise ClientError(f"--ready-lag {ready_lag} is negative")
    if not (ready_age > 0 and math.isfinite(ready_age)):
        raise ClientError(f"--ready-age {ready_age} should be a positive number of seconds")
    if retries < 0:
        raise ClientError(f"--retries {retries} is negative")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ClientError(f"--margin {margin} should be zero or more seconds")
    threshold = None
    if withdraw_at is not None:
        threshold = parse_ether(withdraw_at, "--withdraw-at")
        if threshold == 0:
            raise ClientError("--withdraw-at must be more than 0 ETH (SIGUSR1 withdraws any amount)")
    return AgentSettings(
        backend=backend,
        poll=poll,
        confirmations=confirmations,
        metrics_port=metrics_port,
        withdraw_at=threshold,
        race=race,
        race_min_reward=parse_ether(race_min_reward, "--race-min-reward"),
        retries=retries,
        margin=margin,
        cost=CostModel(
            cost_per_second=parse_ether(cost_per_second, "--cost-per-second"),
            risk_rate=_rate(risk_rate, "--risk-rate", most=Fraction(1)),
            margin=_rate(price_margin, "--price-margin"),
        ),
        dutch=dutch,
        auctions=tuple(_auction_url(url) for url in auction),
        simulate=simulated_hardware(simulate),
        trusted=trust.parse_codehashes(trust_verifier),
        ready_lag=ready_lag,
        ready_age=ready_age,
        replace_after=replace_after,
        max_fee_per_gas=None if max_fee_gwei is None else int(round(max_fee_gwei * 10**9)),
        queue=_queue_url(queue),
        queue_name=_queue_name(queue_name),
    )


def _rate(value: str, option: str, most: Fraction | None = None) -> Fraction:
    """A fraction from the command line (0.05 is five per cent), checked."""
    try:
        rate = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ClientError(f"{option} {value!r} is not a number; give a fraction such as 0.05") from None
    if rate < 0 or (most is not None and rate > most):
        bound = f"from 0 to {most}" if most is not None else "0 or more"
        raise ClientError(f"{option} {value} is out of range: give a fraction {bound}")
    return rate


def _auction_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ClientError(
            f"--auction {url!r} is not an HTTP URL; give the auction frontend's API base, "
            "such as http://127.0.0.1:8600"
        )
    return url


def _queue_url(url: str | None) -> str | None:
    if url is None:
        return None
    url = url.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ClientError(
            f"--queue {url!r} is not a Redis URL; give the task queue's broker, "
            "such as redis://127.0.0.1:6379/0"
        )
    return url


def _queue_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ClientError(f"--queue-name {name!r}: give letters, digits, '-', '_' or '.'")
    return name
