"""A marketplace on a development chain: the registry, the square circuit's Groth16 market
(opened through the registry's blueprint), the frontends' mechanisms, the deployment record
processes read, provers that stake and join, and requesters that post without waiting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_utils.crypto import keccak
from web3 import Web3

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.chain.markets import MarketTerms, deploy_registry, open_market
from provingmarket.deployments import Deployment, MarketRecord, save
from provingmarket.devnet.chain import ETHER, send_signed
from provingmarket.devnet.proofs import ADDRESS_INPUT, PROVER_INPUT, SQUARE, STATEMENT, default_backend
from provingmarket.formats import DUTCH, OPEN_RACE, TaskTerms, inputs_commitment

if TYPE_CHECKING:
    from ape.contracts import ContractInstance

FRONTENDS = ("orderbook", "auction", "election")  # a marketplace's mechanisms, each served by its frontend
STAKE = 5 * ETHER  # what each prover stakes before it joins


@dataclass
class Stack:
    registry: ContractInstance
    verifier: ContractInstance
    market_id: int
    mechanism_id: int


def register_mechanism(registry, name: str, frontends: list, owner) -> int:
    """Register a mechanism called `name` served by `frontends`; its id."""
    tx = registry.register_mechanism(name, frontends, sender=owner)
    return tx.events.filter(registry.MechanismRegistered)[0].mechanism_id


def deploy_stack(ape, owner, frontends: list, unbonding_delay: int = 3_600, grace_period: int = 60) -> Stack:
    """Deploy the registry and the square circuit's verifier, create its market
    (half a slashed collateral to the requester, a tenth to whoever slashes, the rest
    burnt), register a mechanism for `frontends`."""
    registry = deploy_registry(ape, owner, unbonding_delay)
    terms = MarketTerms(grace_period=grace_period)
    opened = open_market(ape, registry, SQUARE, owner, default_backend(), terms)
    verifier = ape.project.Groth16Verifier.at(opened.verifier)
    mechanism_id = register_mechanism(registry, "orderbook", frontends, owner)
    return Stack(registry, verifier, opened.market_id, mechanism_id)


def task_terms(market_id: int, mechanism_id: int, **overrides) -> TaskTerms:
    """Terms of a task proving STATEMENT, with the registry's fields left for it to fill.
    Built-in mechanisms pay no frontend fee, and an open race has no assignment window."""
    builtin = mechanism_id in (OPEN_RACE, DUTCH)
    values: dict[str, Any] = dict(
        market_id=market_id,
        requester="0x" + "00" * 20,
        posted_at=0,
        inputs_commitment=inputs_commitment(STATEMENT, ADDRESS_INPUT),
        prover_input_hash=keccak(PROVER_INPUT),
        max_reward=ETHER // 10,
        frontend_fee=0 if builtin else ETHER // 1000,
        assign_window=0 if mechanism_id == OPEN_RACE else 600,
        proving_window=300,
        collateral=ETHER // 2,
        capabilities=0,
        redundancy=1,
        mechanism_id=mechanism_id,
        start_price=0,
        ramp=0,
        decay=False,
        decay_floor=0,
    )
    values.update(overrides)
    return TaskTerms(**values)


class Requester:
    """A requester that posts and cancels tasks one after another without waiting for each
    transaction: it counts its own nonces."""

    def __init__(self, client: RegistryClient):
        self.client = client
        self.address = client.require_signer("a requester needs an account").address
        self.nonce = client.web3.eth.get_transaction_count(self.address, "pending")

    def post(self, terms: TaskTerms, gas: int) -> bytes:
        """Post a task on `terms` for the sample statement, its escrow attached."""
        call = self.client.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, "")
        return self._send(call, terms.escrow(), gas)

    def cancel(self, terms: TaskTerms, gas: int = 300_000) -> bytes:
        return self._send(self.client.contract.functions.cancel(terms.as_tuple()), 0, gas)

    def _send(self, call, value: int, gas: int) -> bytes:
        sent = send_signed(self.client, call, value, self.nonce, gas)
        self.nonce += 1
        return sent


@dataclass
class Marketplace:
    """A stack with a mechanism for each of FRONTENDS, recorded in `record` (a deployment
    record the frontends and agents read with --deployment)."""

    web3: Web3
    stack: Stack
    mechanisms: dict[str, int]  # frontend → its mechanism's id, in FRONTENDS' order
    record: Path

    def client(self, key: str | None = None) -> RegistryClient:
        """The registry's client, signing with `key` if given."""
        return RegistryClient(self.web3, self.stack.registry.address, KeySigner(key) if key else None)

    def join(self, key: str, capacity: int, ask: int, proving_time: int) -> RegistryClient:
        """The prover holding `key` stakes STAKE and joins the market through every
        frontend's mechanism; its client."""
        client = self.client(key)
        client.transact("stake", value=STAKE)
        mechanisms = list(self.mechanisms.values())
        client.transact("join_market", self.stack.market_id, capacity, ask, proving_time, 0, mechanisms)
        return client

    def requester(self, key: str) -> Requester:
        return Requester(self.client(key))


def deploy_marketplace(
    ape, owner, frontends: dict[str, str], folder: Path, grace_period: int, unbonding_delay: int = 600
) -> Marketplace:
    """Deploy a stack, register a mechanism for each of FRONTENDS (served by the address
    `frontends` gives it) and write the deployment record into `folder`."""
    stack = deploy_stack(ape, owner, [frontends["orderbook"]], unbonding_delay, grace_period)
    mechanisms = {"orderbook": stack.mechanism_id}
    for name in FRONTENDS[1:]:
        mechanisms[name] = register_mechanism(stack.registry, name, [frontends[name]], owner)
    web3 = ape.chain.provider.web3
    markets = {stack.market_id: MarketRecord("square", stack.verifier.address)}
    record = Deployment(
        "ethereum:local", web3.eth.chain_id, stack.registry.address, 0, unbonding_delay, markets
    )
    return Marketplace(web3, stack, mechanisms, save(record, folder))
