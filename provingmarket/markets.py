"""Open a market for a circuit: deploy (or reuse) its Groth16 verifier and create the
market in the registry, with the circuit's sample proof for the registry's check.

Everything a registry would refuse is checked first and said in words a person can act
on (`MarketError`), so no transaction is sent that is bound to fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from provingmarket.backends import ProvingBackend
from provingmarket.circuits import Circuit
from provingmarket.formats import BINDING_ADDRESS_INPUT

ETHER = 10**18
MAX_CALLER_BPS = 1_000
BPS = 10_000


class MarketError(ValueError):
    """A market cannot be opened as asked; the message says why and what to change."""


@dataclass(frozen=True)
class MarketTerms:
    """A market's economic terms (see Registry.create_market)."""

    min_collateral: int = ETHER // 10
    min_reward: int = ETHER // 100
    grace_period: int = 60
    requester_bps: int = 5_000  # of a slashed collateral, to the requester
    caller_bps: int = 1_000  # to whoever slashes; the rest is burnt

    def check(self) -> None:
        if self.caller_bps > MAX_CALLER_BPS:
            raise MarketError(f"caller share {self.caller_bps} bps is above the cap of {MAX_CALLER_BPS} bps")
        if self.requester_bps + self.caller_bps > BPS:
            raise MarketError(
                f"requester {self.requester_bps} + caller {self.caller_bps} bps "
                "is more than 100% (10,000 bps)"
            )
        if self.grace_period >= 2**32:
            raise MarketError("grace period too long (at most 2^32 - 1 seconds)")
        if self.min_collateral >= 2**128 or self.min_reward >= 2**128:
            raise MarketError("minimum collateral and reward must be below 2^128 wei")


@dataclass(frozen=True)
class OpenedMarket:
    market_id: int
    verifier: str
    circuit: str
    deployed_verifier: bool


def deploy_verifier(ape, account, circuit: Circuit):
    """Deploy contracts/verifiers/Groth16Verifier.vy with `circuit`'s verifying key."""
    return account.deploy(ape.project.Groth16Verifier, *circuit.verifying_key().constructor_args())


def check_verifier(verifier, circuit: Circuit) -> None:
    """An existing verifier must hold exactly the circuit's verifying key."""
    vk = circuit.verifying_key()
    try:
        alpha, beta, gamma, delta, ic = verifier.verifying_key()
    except Exception as error:
        raise MarketError(f"{verifier.address} is not a Groth16Verifier of this project ({error})") from None
    held = [[int(v) for v in p] for p in (alpha, beta, gamma, delta, *ic)]
    wanted = [list(vk.alpha), list(vk.beta), list(vk.gamma), list(vk.delta), *map(list, vk.ic)]
    if held != wanted:
        raise MarketError(
            f"verifier {verifier.address} holds a different verifying key from "
            f"{circuit.verification_key_file}; deploy a new one (omit --verifier)"
        )


def open_market(
    ape,
    registry,
    circuit: Circuit,
    account,
    backend: ProvingBackend,
    terms: MarketTerms = MarketTerms(),  # noqa: B008 (frozen)
    verifier=None,
) -> OpenedMarket:
    """Deploy the circuit's verifier (unless `verifier`, checked, is given), prove the
    circuit's sample as `account`, check the verifier accepts it, create the market."""
    terms.check()
    deployed = verifier is None
    if deployed:
        verifier = deploy_verifier(ape, account, circuit)
    else:
        check_verifier(verifier, circuit)
    sample = backend.prove(circuit, circuit.sample, account.address)
    if not verifier.verify(sample.public_inputs, sample.proof):
        raise MarketError(
            f"the verifier at {verifier.address} rejects {circuit.name}'s sample proof: the circuit's "
            f"proving key ({circuit.zkey}) and verifying key do not match; regenerate with circuits/build.py"
        )
    tx = registry.create_market(
        verifier,
        sample.public_inputs,
        sample.proof,
        terms.min_collateral,
        terms.min_reward,
        terms.grace_period,
        terms.requester_bps,
        terms.caller_bps,
        BINDING_ADDRESS_INPUT,
        circuit.address_input,
        sender=account,
    )
    market_id = tx.events.filter(registry.MarketCreated)[0].market_id
    return OpenedMarket(market_id, verifier.address, circuit.name, deployed)
