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
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError

from provingmarket.errors import ProvingMarketError
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_COMMIT_REVEAL,
    BINDING_NONE,
    GROTH16_BLUEPRINT,
    MAX_CALLER_BPS,
    MAX_COLLATERAL,
    MAX_GRACE_PERIOD,
    MAX_REWARD,
    MIN_GRACE_PERIOD,
)
from provingmarket.proving import plonk
from provingmarket.proving.backends import ProofCheck, ProofResult, ProvingBackend
from provingmarket.proving.checks import check_circuit
from provingmarket.proving.circuits import Circuit, CircuitError, VerifyingKey
from provingmarket.proving.solidity import SolidityError

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


BINDINGS = {
    "none": BINDING_NONE,
    "address-input": BINDING_ADDRESS_INPUT,
    "commit-reveal": BINDING_COMMIT_REVEAL,
}
VERIFY_SELECTOR = keccak(text="verify(uint256[],bytes)")[:4]
# Where a verifier's code is placed for a check by eth_call (a state override): no contract
# is deployed there, and nothing is sent.
PROBE_VERIFIER = "0x00000000000000000000000000000000005EED01"
PROBE_GAS = 5_000_000


def binding_code(circuit: Circuit) -> int:
    """The registry's binding constant for the circuit's manifest binding."""
    return BINDINGS[circuit.binding]


def market_mismatch(binding: int, address_input: int, circuit: Circuit) -> str | None:
    """Why a market's binding cannot take proofs of this circuit, or None."""
    if binding != binding_code(circuit):
        names = {v: k for k, v in BINDINGS.items()}
        return (
            f"the market binds proofs by {names.get(binding, binding)}, circuit {circuit.name}'s manifest "
            f"by {circuit.binding}"
        )
    if binding == BINDING_ADDRESS_INPUT and address_input != circuit.address_input:
        return (
            f"the market binds the prover through public input {address_input}, but circuit "
            f"{circuit.name} has its address signal at {circuit.address_input}"
        )
    return None


def verify_call(verifier: str, proof: bytes, public_inputs: list[int]) -> dict:
    return {
        "to": verifier,
        "data": "0x" + (VERIFY_SELECTOR + encode(["uint256[]", "bytes"], [public_inputs, proof])).hex(),
        "gas": PROBE_GAS,
    }


def accepted(answer: bytes) -> bool:
    return len(answer) == 32 and int.from_bytes(answer, "big") == 1


def code_check(web3, initcode: bytes) -> ProofCheck:
    """Check proofs with the code a verifier would have, without deploying it: one eth_call
    runs its constructor and returns its code, the others call `verify` on that code
    placed at PROBE_VERIFIER by a state override. The same bytes the registry (or the
    account) would deploy, run by the chain's own EVM."""
    try:
        runtime = bytes(web3.eth.call({"data": "0x" + initcode.hex(), "gas": 30_000_000}))
    except Exception as error:
        raise MarketError(f"the verifier's constructor refuses this key ({_one_line(error)})") from None
    if not runtime:
        raise MarketError("the verifier's constructor returned no code")
    override = {PROBE_VERIFIER: {"code": "0x" + runtime.hex()}}

    def check(proof: bytes, public_inputs: list[int]) -> bool:
        try:
            return accepted(
                bytes(web3.eth.call(verify_call(PROBE_VERIFIER, proof, public_inputs), "latest", override))
            )
        except Exception:  # a revert: not an acceptance
            return False

    return check


def deployed_check(web3, verifier: str) -> ProofCheck:
    """Check proofs with a verifier already on chain (eth_call)."""

    def check(proof: bytes, public_inputs: list[int]) -> bool:
        return _answer(lambda: web3.eth.call(verify_call(verifier, proof, public_inputs)))

    return check


def _answer(call) -> bool:
    """The verifier's answer: True only for an acceptance; a revert is no acceptance. A
    node that cannot run the call is an error, not a rejection."""
    try:
        return accepted(bytes(call()))
    except ContractLogicError:
        return False
    except Exception as error:
        raise MarketError(f"cannot run the verifier by eth_call on this node ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def groth16_initcode(web3, registry) -> bytes:
    """The Groth16 verifier's deployment code, as the registry deploys it: its blueprint's
    code after the ERC-5202 preamble."""
    blueprint = registry.blueprint(GROTH16_BLUEPRINT)
    code = bytes(web3.eth.get_code(blueprint))
    if code[:3] != b"\xfe\x71\x00":
        raise MarketError(
            f"the registry's blueprint {GROTH16_BLUEPRINT} at {blueprint} is not an ERC-5202 blueprint"
        )
    return code[3:]


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


@dataclass(frozen=True)
class MarketPlan:
    """What `open_market` will send, every check made: the sample's proof, and the
    verifier to deploy (its deployment code) or to reuse."""

    circuit: Circuit
    sample: ProofResult
    initcode: bytes | None  # None: reuse `verifier`
    verifier: Any
    blueprint: bool  # deployed by the registry from its blueprint (a trusted market)


def plan_market(
    ape, registry, circuit: Circuit, backend: ProvingBackend, terms: MarketTerms, verifier=None
) -> MarketPlan:
    """Every check `open_market` makes, and nothing sent: the terms, the circuit
    (`check_circuit`: keys, witness generator, signal order, binding, the sample proved and
    accepted by the verifier's own code run by eth_call, and refused for another prover)."""
    terms.check()
    web3 = ape.chain.provider.web3
    if verifier is not None:
        if circuit.proving_system == "groth16":
            check_verifier(verifier, circuit)
        check = deployed_check(web3, verifier.address)
        initcode = None
    elif circuit.proving_system == "groth16":
        initcode = groth16_initcode(web3, registry) + groth16_args(circuit.verifying_key())
        check = code_check(web3, initcode)
    else:
        initcode = bytes.fromhex(_plonk_verifier(circuit).bytecode.removeprefix("0x"))
        check = code_check(web3, initcode)
    try:
        sample = check_circuit(circuit, backend, check)
    except CircuitError as error:
        raise MarketError(str(error)) from None
    return MarketPlan(
        circuit,
        sample,
        initcode,
        verifier,
        blueprint=verifier is None and circuit.proving_system == "groth16",
    )


def _plonk_verifier(circuit: Circuit) -> plonk.VerifierContract:
    """snarkjs's PLONK verifier for the circuit's key behind the IVerifier adapter, compiled."""
    try:
        return plonk.verifier_contract(
            circuit.path, circuit.manifest.files.proving_key or "", circuit.manifest.files.verifying_key
        )
    except (CircuitError, SolidityError) as error:
        raise MarketError(f"{circuit.manifest_file}: files.proving_key: {error}") from None


def deploy_plonk_verifier(ape, account, circuit: Circuit):
    """Deploy the circuit's PLONK verifier from `account` (no blueprint: a custom market)."""
    from ape.contracts import ContractContainer  # ape: only where a contract is deployed
    from ethpm_types import ContractType

    compiled = _plonk_verifier(circuit)
    contract_type = ContractType.model_validate(
        {
            "contractName": compiled.name,
            "abi": compiled.abi,
            "deploymentBytecode": {"bytecode": compiled.bytecode},
        }
    )
    return account.deploy(ContractContainer(contract_type))


def open_market(
    ape,
    registry,
    circuit: Circuit,
    account,
    backend: ProvingBackend,
    terms: MarketTerms = MarketTerms(),  # noqa: B008 (frozen)
    verifier=None,
) -> OpenedMarket:
    """Check everything (`plan_market`), then have the registry deploy the circuit's
    verifier from its blueprint (unless `verifier`, checked, is given) and create the
    market. A given verifier the registry did not deploy makes the market custom."""
    plan = plan_market(ape, registry, circuit, backend, terms, verifier)
    deployed = plan.verifier is None
    if not deployed:
        verifier = plan.verifier
    elif plan.blueprint:
        verifier = deploy_verifier(ape, registry, account, circuit)
    else:
        verifier = deploy_plonk_verifier(ape, account, circuit)
    tx = registry.create_market(
        verifier,
        plan.sample.public_inputs,
        plan.sample.proof,
        terms.min_collateral,
        terms.min_reward,
        terms.grace_period,
        terms.requester_bps,
        terms.caller_bps,
        binding_code(circuit),
        circuit.address_input or 0,
        sender=account,
    )
    event = tx.events.filter(registry.MarketCreated)[0]
    return OpenedMarket(event.market_id, verifier.address, circuit.name, deployed, bool(event.custom))
