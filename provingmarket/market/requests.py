"""A requester's side of the market, as `ape run requester post` uses it: the task drafted
from the requester's options (provingmarket/market/post_options.py), its terms chosen by
the router or a persona where the options leave them open
(provingmarket/market/term_choice.py), checked against the registry's bounds
(provingmarket/formats.py) and the market's terms before anything is sent, the escrow
posted. (A posted task's progress, proofs and unspent escrow:
provingmarket/chain/requester.py.)

Everything the registry would refuse is said first in one line with the values seen (a
ClientError, nothing sent)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3

from provingmarket.chain import index
from provingmarket.chain.checks import existing_market, mechanism_name, registered_mechanism
from provingmarket.chain.client import ClientError, Market, RegistryClient, chain_time
from provingmarket.chain.client import format_ether as eth
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_NONE,
    BUILT_IN_MECHANISMS,
    CHAIN,
    DUTCH,
    MAX_ASSIGN_WINDOW,
    MAX_COLLATERAL,
    MAX_PROVER_INPUT,
    MAX_PROVING_WINDOW,
    MAX_REWARD,
    OPEN_RACE,
    ZERO_ADDRESS,
    Link,
    TaskTerms,
    chain_links,
    encode_chain,
)
from provingmarket.market import repricing
from provingmarket.market.post_options import RACE_NAMES, Draft, PostOptions, read_inputs, whole
from provingmarket.market.term_choice import Routed, fill_from_plan, remember, route, state_path, take_choice
from provingmarket.proving.circuits import Circuit


def circuit_of(registry: RegistryClient, market_id: int) -> Circuit:
    """The circuit the deployment record names for the market."""
    record = registry.deployment.markets.get(market_id)
    if record is None:
        raise ClientError(
            f"market {market_id}'s circuit is not recorded for this network (recorded: "
            f"{', '.join(map(str, sorted(registry.deployment.markets))) or 'none'}); "
            "`ape run operator market create` records the markets it opens"
        )
    return Circuit.load(record.circuit)


def open_market(registry: RegistryClient, market_id: int) -> Market:
    """The market, if it exists and takes new tasks."""
    market = existing_market(registry, market_id)
    if market.paused:
        raise ClientError(
            f"market {market_id} is paused by its creator {market.creator}: no new tasks until it resumes"
        )
    return market


@dataclass
class Posted:
    """A task posted: its id and terms as the registry recorded them, and how they were chosen."""

    task_id: str
    terms: TaskTerms
    circuit: str
    mechanism: str  # the mechanism's name
    escrow: int
    inputs: dict[str, object]
    prover_input: bytes
    tx: str
    block: int
    persona: Any = None  # the persona whose plan set the terms, and the plan
    plan: Any = None
    routed: Routed | None = None  # or the router's choice
    warning: str | None = None  # what went wrong after the post (the router's state not written)
    repricing: repricing.Entry | None = None  # the re-pricing it is watched for, and where
    repricing_record: Path | None = None


def _task_inputs(
    registry: RegistryClient, market: Any, market_id: int, options: PostOptions
) -> tuple[Circuit, dict, bytes]:
    """The market's circuit, the task's inputs and the prover input as posted (JSON), each
    checked: the circuit must bind the prover where the market does, the input must fit."""
    circuit = circuit_of(registry, market_id)
    if market.binding == BINDING_ADDRESS_INPUT and market.address_input != circuit.address_input:
        raise ClientError(
            f"market {market_id} binds the prover through public input {market.address_input}, but "
            f"circuit {circuit.name} has it at {circuit.address_input}: no proof could match; "
            "check the deployment record"
        )
    inputs = read_inputs(circuit, options.inputs_file, options.input_pairs, options.secret)
    prover_input = json.dumps(inputs, sort_keys=True).encode()
    if len(prover_input) > MAX_PROVER_INPUT:
        raise ClientError(
            f"the inputs are {len(prover_input)} bytes as JSON; the registry carries at most "
            f"{MAX_PROVER_INPUT}"
        )
    return circuit, inputs, prover_input


def post(
    registry: RegistryClient, requester: str, options: PostOptions, drafted: Draft, folder: Path
) -> Posted:
    """Post the drafted task from REQUESTER and escrow redundancy x (reward + fee): with
    the router's choice (its state in FOLDER unless --router-state), or the persona's
    plan, filled with the market's minimums; every term checked first."""
    d = drafted
    market = open_market(registry, d.market_id)
    circuit, inputs, prover_input = _task_inputs(registry, market, d.market_id, options)
    routed = None
    if d.routing is not None:
        state = state_path(registry, options.router_state, folder)
        prefs, source = d.routing
        routed = route(
            registry, market, prefs, source, requester, state, capabilities=d.capabilities, fee=d.fee
        )
        take_choice(d, routed.choice.terms)
        if d.repricing is None and routed.choice.reprice:  # within the requester's --max-price
            now = chain_time(registry.web3)
            d.repricing = routed.choice.reprice_policy(prefs, now)
    elif d.plan is not None:
        fill_from_plan(d, options, market)
    if d.chain:
        d.mechanism_id = chain_mechanisms(registry, market, d.chain)
    terms = _task_terms(registry, market, d, circuit.commitment(inputs), keccak(prover_input))
    record = None
    skipped = None
    if d.repricing is not None and d.routing is not None and terms.mechanism_id == OPEN_RACE:
        d.repricing = None  # the router chose a race: nothing to cancel while it runs
        skipped = "note: the router chose an open race, which cannot be re-priced; posted without re-pricing"
    if d.repricing is not None:
        repricing.check_repriceable(terms, d.repricing)
        path = repricing.record_path(registry, options.reprice_state, folder)
        record = repricing.load(path, registry.web3.eth.chain_id, registry.address)
    posted = _send(registry, requester, terms, prover_input, options.input_uri)
    task_id = "0x" + bytes(posted.task_id).hex()
    result = Posted(
        task_id,
        TaskTerms.from_event(posted.terms),
        circuit.name,
        mechanism_name(registry, terms.mechanism_id),
        terms.escrow(),
        inputs,
        prover_input,
        posted.tx,
        posted.block,
        d.persona,
        d.plan,
        routed,
    )
    if routed is not None:
        result.warning = remember(routed, task_id, requester)
    if skipped:
        result.warning = "\n".join(w for w in (result.warning, skipped) if w)
    if record is not None and d.repricing is not None:
        result.repricing_record = record.path
        result.repricing, warning = _watch(record, task_id, requester, d, result.terms.posted_at)
        result.warning = "\n".join(w for w in (result.warning, warning) if w) or None
    return result


def _watch(
    record: repricing.Record, task_id: str, requester: str, d: Draft, posted_at: int
) -> tuple[repricing.Entry | None, str | None]:
    """Opt the posted task in to re-pricing (with --auto and --max-time, only while a
    proof may still come in time); a warning if the record cannot be written."""
    policy = d.repricing
    assert policy is not None
    if d.routing is not None and d.routing[0].max_time is not None:
        policy = replace(policy, deadline=posted_at + d.routing[0].max_time)
    try:
        return repricing.opt_in(record, task_id, requester, policy), None
    except ClientError as error:  # posted already: say so, and how to watch it
        return None, (
            f"warning: task {task_id} is posted, but not watched for re-pricing: {error}; "
            f"`ape run requester reprice {task_id} --max-price ...` watches it"
        )


def _send(registry: RegistryClient, requester: str, terms: TaskTerms, prover_input: bytes, uri: str):
    """Post TERMS with their escrow, if the requester holds it: the TaskPosted event."""
    escrow = terms.escrow()
    held = registry.web3.eth.get_balance(Web3.to_checksum_address(requester))
    if held < escrow:
        raise ClientError(
            f"{requester} holds {eth(held)}, less than the escrow {eth(escrow)} "
            f"({terms.redundancy} x ({eth(terms.max_reward)} reward + {eth(terms.frontend_fee)} fee))"
        )
    _, events = registry.transact(
        "post_task", terms.as_tuple(), prover_input, uri, value=escrow, action="post task"
    )
    return next(e for e in events if e.name == "TaskPosted")


def _task_terms(
    registry: RegistryClient, market: Market, d: Draft, inputs_commitment: bytes, prover_input_hash: bytes
) -> TaskTerms:
    """The drafted terms as the registry takes them: the market's minimums filled where
    nothing set the amounts, then every term checked against the registry's bounds and the
    market's terms."""
    if d.mechanism_id is None or d.redundancy is None or d.assign_window is None or d.proving_window is None:
        raise ClientError(
            f"the task's terms are not all set (mechanism {d.mechanism_id}, redundancy {d.redundancy}, "
            f"assign window {d.assign_window}, proving window {d.proving_window}): give --mechanism, "
            "--redundancy, --assign-window and --proving-window, or --persona NAME or --auto"
        )
    market_id = d.market_id
    d.reward = market.min_reward if d.reward is None else d.reward
    d.collateral = market.min_collateral if d.collateral is None else d.collateral
    if d.reward < market.min_reward:
        raise ClientError(
            f"--reward {eth(d.reward)} is below market {market_id}'s least reward: "
            f"give at least {eth(market.min_reward)}"
        )
    _at_most(d.reward, MAX_REWARD, "--reward")
    _at_most(d.fee, MAX_REWARD, "--fee")
    if d.collateral < market.min_collateral:
        raise ClientError(
            f"--collateral {eth(d.collateral)} is below market {market_id}'s least collateral: "
            f"give at least {eth(market.min_collateral)}"
        )
    _at_most(d.collateral, MAX_COLLATERAL, "--collateral")
    _window_at_most(d.proving_window, MAX_PROVING_WINDOW, "--proving-window")
    _window_at_most(d.assign_window, MAX_ASSIGN_WINDOW, "--assign-window")
    _check_mechanism(registry, market, d.mechanism_id, d.redundancy, d.proving_window)
    ramp = 0
    if d.mechanism_id == DUTCH or any(link.mechanism == DUTCH for link in chain_links(d.mechanism_id)):
        if d.start_price is None:  # from the market's price index (chain/index.py)
            going = index.read(registry, market_id)
            d.start_price = index.dutch_start_price(going, market.min_reward, d.reward)
        if d.start_price > d.reward:
            raise ClientError(
                f"--start-price {eth(d.start_price)} is above --reward {eth(d.reward)}: "
                "the price rises from the start price to the reward"
            )
        ramp = d.assign_window if d.ramp is None else whole(d.ramp, "--ramp")
        if ramp > MAX_ASSIGN_WINDOW:
            raise ClientError(f"--ramp {ramp} s is above the registry's limit of {MAX_ASSIGN_WINDOW} s")
    if d.decay_floor > d.reward:
        raise ClientError(
            f"--decay-floor {eth(d.decay_floor)} is above --reward {eth(d.reward)}: "
            "the reward would not decay"
        )
    return TaskTerms(
        market_id=market_id,
        requester=ZERO_ADDRESS,
        posted_at=0,
        inputs_commitment=inputs_commitment,
        prover_input_hash=prover_input_hash,
        max_reward=d.reward,
        frontend_fee=d.fee,
        assign_window=d.assign_window,
        proving_window=d.proving_window,
        collateral=d.collateral,
        capabilities=d.capabilities,
        redundancy=d.redundancy,
        mechanism_id=d.mechanism_id,
        start_price=d.start_price or 0,
        ramp=ramp,
        decay=d.decay,
        decay_floor=d.decay_floor,
        salt=d.salt,
    )


def _at_most(wei: int, most: int, option: str) -> None:
    if wei > most:
        raise ClientError(f"{option} {eth(wei)} is above the registry's limit {eth(most)}")


def _window_at_most(seconds: int, most: int, option: str) -> None:
    if seconds > most:
        raise ClientError(
            f"{option} {seconds} s is above the registry's limit of {most} s ({most // 86_400} days)"
        )


def _check_mechanism(
    registry: RegistryClient, market: Market, mechanism_id: int, redundancy: int, proving_window: int
) -> None:
    """What the market's binding and the chosen mechanism allow."""
    market_id = market.market_id
    if mechanism_id not in BUILT_IN_MECHANISMS and proving_window <= market.grace_period:
        raise ClientError(
            f"--proving-window {proving_window} s is not above market {market_id}'s grace period of "
            f"{market.grace_period} s: an assigned prover may decline for that long, so give it more "
            f"(at least {market.grace_period + 1} s)"
        )
    if redundancy > 1 and market.binding != BINDING_ADDRESS_INPUT:
        raise ClientError(
            f"market {market_id}'s proofs do not carry the prover's address, so a second prover could "
            "copy the first's proof: it takes --redundancy 1 only"
        )
    if (mechanism_id == OPEN_RACE or redundancy > 1) and market.binding == BINDING_NONE:
        raise ClientError(
            f"market {market_id} does not bind proofs to their prover, so a proof could be copied: "
            "it takes no open race and no redundancy above 1; use --mechanism 2 or a registered "
            "mechanism with --redundancy 1"
        )
    if mechanism_id not in BUILT_IN_MECHANISMS and mechanism_id < CHAIN:  # a chain's links: chain_mechanisms
        _, retired = registered_mechanism(
            registry,
            mechanism_id,
            lambda last: "1 is the open race, 2 dutch; "
            + (f"registered ones 3 to {last}" if last > DUTCH else "none registered yet"),
        )
        if retired:
            raise ClientError(
                f"mechanism {mechanism_id} is retired: no new task may name it; choose another --mechanism"
            )


def chain_mechanisms(registry: RegistryClient, market: Market, chain: tuple[tuple[str, int], ...]) -> int:
    """The chain's mechanism_id: each link's mechanism by name (the latest registered under
    it) or id, checked as the registry will."""
    names: dict[str, int] = {}
    for e in registry.events(["MechanismRegistered"]):
        names[str(e.args["name"]).lower()] = e.mechanism_id
    links = [
        Link(_link_mechanism(registry, market, names, i, name), window)
        for i, (name, window) in enumerate(chain)
    ]
    try:
        return encode_chain(links)
    except ValueError as error:
        raise ClientError(f"--chain: {error}") from None


def _link_mechanism(
    registry: RegistryClient, market: Market, names: dict[str, int], i: int, name: str
) -> int:
    if name in RACE_NAMES:
        if market.binding != BINDING_ADDRESS_INPUT:
            raise ClientError(
                f"--chain link {i + 1} races, but market {market.market_id}'s proofs do not carry the "
                "prover's address: a race proof could be copied; drop the race link"
            )
        return OPEN_RACE
    if name == "dutch":
        return DUTCH
    mechanism_id = int(name) if name.isdigit() else names.get(name)
    if mechanism_id is None:
        known = ", ".join(sorted(names)) or "none"
        raise ClientError(
            f"--chain link {i + 1}: no mechanism named {name!r} (registered: {known}; or race, dutch, an id)"
        )
    if mechanism_id not in BUILT_IN_MECHANISMS:
        _, retired = registered_mechanism(registry, mechanism_id, lambda last: f"the last is {last}")
        if retired:
            raise ClientError(f"--chain link {i + 1}: mechanism {mechanism_id} is retired")
        registered_as = next((n for n, m in names.items() if m == mechanism_id), "")
        if registered_as.partition("/")[0] == "election":
            raise ClientError(
                f"--chain link {i + 1}: mechanism {mechanism_id} is an election, whose frontend draws only "
                "for tasks of its own mechanism, never for a chain's link: post it as a task of its own"
            )
    return mechanism_id
