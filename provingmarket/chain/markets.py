"""Deploy the registry and open markets on it.

The trust model (docs/security.md): the registry deploys verifiers itself from the
blueprints fixed when it was deployed, and a market on such a verifier is trusted: its
answers cannot change. `deploy_registry` declares the Groth16 verifier's blueprint and
deploys the registry with it; `open_market` has the registry deploy the circuit's
verifier from that blueprint and creates the market. A market on any other verifier is
`custom`, which provers refuse unless they reviewed its code hash.

Everything a registry would refuse is checked first and said in words a person can act
on (`MarketError`), so no transaction is sent that is bound to fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import encode

from provingmarket.errors import ProvingMarketError
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    GROTH16_BLUEPRINT,
    MAX_CALLER_BPS,
    MAX_COLLATERAL,
    MAX_GRACE_PERIOD,
    MAX_REWARD,
    MIN_GRACE_PERIOD,
)
from provingmarket.proving.backends import ProvingBackend
from provingmarket.proving.circuits import Circuit, VerifyingKey

ETHER = 10**18
BPS = 10_000
GROTH16_ARGS_ABI = ["uint256[2]", "uint256[4]", "uint256[4]", "uint256[4]", "uint256[2][]"]


class MarketError(ProvingMarketError, ValueError):
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
        if self.grace_period < MIN_GRACE_PERIOD:
            raise MarketError(
                f"grace period {self.grace_period} s is too short: provers need at least "
                f"{MIN_GRACE_PERIOD} s to decline a task whose inputs they cannot prove"
            )
        if self.grace_period > MAX_GRACE_PERIOD:
            raise MarketError(
                f"grace period {self.grace_period} s is too long (at most {MAX_GRACE_PERIOD} s)"
            )
        if self.min_collateral > MAX_COLLATERAL or self.min_reward > MAX_REWARD:
            raise MarketError(
                f"minimum collateral must be at most {MAX_COLLATERAL} wei and minimum reward at most "
                f"{MAX_REWARD} wei"
            )


@dataclass(frozen=True)
class OpenedMarket:
    market_id: int
    verifier: str
    circuit: str
    deployed_verifier: bool
    custom: bool  # the verifier is not one the registry deployed from its blueprint


def deploy_registry(ape, account, unbonding_delay: int, contract=None):
    """Declare the Groth16 verifier's ERC-5202 blueprint and deploy the registry with it
    (`contract`: the Registry container, or a test harness of it). The blueprint's code is
    contracts/verifiers/Groth16Verifier.vy's deployment code behind the ERC-5202
    preamble, which anyone can compare with a compilation of that file."""
    receipt = ape.project.Groth16Verifier.declare(sender=account)
    blueprint = receipt.contract_address
    if not blueprint:
        raise MarketError(
            f"declaring the Groth16 verifier's blueprint created no contract ({receipt.txn_hash})"
        )
    return account.deploy(contract or ape.project.Registry, unbonding_delay, [blueprint])


def groth16_args(vk: VerifyingKey) -> bytes:
    """The Groth16 verifier's ABI-encoded constructor arguments: its verifying key."""
    return encode(GROTH16_ARGS_ABI, list(vk.constructor_args()))


def deploy_verifier(ape, registry, account, circuit: Circuit):
    """Have the registry deploy `circuit`'s Groth16 verifier from its blueprint."""
    tx = registry.deploy_verifier(GROTH16_BLUEPRINT, groth16_args(circuit.verifying_key()), sender=account)
    address = tx.events.filter(registry.VerifierDeployed)[0].verifier
    return ape.project.Groth16Verifier.at(address)


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
    """Have the registry deploy the circuit's verifier from its blueprint (unless
    `verifier`, checked, is given), prove the circuit's sample as `account`, check the
    verifier accepts it, create the market. A given verifier the registry did not deploy
    makes the market custom."""
    terms.check()
    sample = backend.prove(circuit, circuit.sample, account.address)
    deployed = verifier is None
    if deployed:
        verifier = deploy_verifier(ape, registry, account, circuit)
    else:
        check_verifier(verifier, circuit)
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
    event = tx.events.filter(registry.MarketCreated)[0]
    return OpenedMarket(event.market_id, verifier.address, circuit.name, deployed, bool(event.custom))
