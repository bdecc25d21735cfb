"""A prover's side of the registry, as `ape run prover` uses it: its options parsed and
checked against the registry's bounds, what the registry would refuse looked at first and
said with the values seen (a ClientError, nothing sent), the transactions, and where a
prover stands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from provingmarket.chain import trust
from provingmarket.chain.checks import existing_market, not_built_in, registered_mechanism, when
from provingmarket.chain.client import (
    ClientError,
    Market,
    Membership,
    ProverStatus,
    RegistryClient,
    Standing,
    chain_time,
    parse_ether,
    reported,
)
from provingmarket.chain.client import format_ether as eth
from provingmarket.formats import (
    MAX_ASK,
    MAX_CAPABILITIES,
    MAX_CAPACITY,
    MAX_MECHANISMS,
    MAX_PROVING_TIME,
    MAX_STAKE,
)

MEMBERSHIP_KEYS = ("capacity", "ask", "proving_time", "capabilities")

# ------------------------------------------------------------------ parsing


def whole(value: str, what: str, most: int | None = None, bits: bool = False) -> int:
    """A whole number as a person writes it (a bitmask may also be 0x… or 0b…)."""
    text = str(value).strip().replace("_", "")
    if text.startswith("-"):
        raise ClientError(f"{what} {value!r} is negative")
    try:
        number = int(text, 0) if bits and text[:2].lower() in ("0x", "0b") else int(text, 10)
    except ValueError:
        kind = "a bitmask (a whole number, 0x… or 0b…)" if bits else "a whole number"
        raise ClientError(f"{what} {value!r} is not {kind}") from None
    if most is not None and number > most:
        raise ClientError(f"{what} {value} is above the registry's limit of {most}")
    return number


def amount(value: str, what: str = "amount") -> int:
    """An amount of ETH above 0, in wei."""
    wei = parse_ether(value, what)
    if wei == 0:
        raise ClientError(f"{what} must be more than 0 ETH")
    return wei


def parse_terms(capacity, ask, proving_time, capabilities) -> dict:
    """Each given membership option parsed and checked against the registry's limits."""
    terms = {}
    if capacity is not None:
        terms["capacity"] = whole(capacity, "--capacity", MAX_CAPACITY)
    if ask is not None:
        terms["ask"] = parse_ether(ask, "--ask")
        if terms["ask"] > MAX_ASK:
            raise ClientError(f"--ask {ask} is above the registry's limit of {eth(MAX_ASK)}")
    if proving_time is not None:
        terms["proving_time"] = whole(proving_time, "--proving-time", MAX_PROVING_TIME)
    if capabilities is not None:
        terms["capabilities"] = whole(capabilities, "--capabilities", MAX_CAPABILITIES, bits=True)
    return terms


def parse_mechanisms(values: Iterable[str]) -> list[int]:
    """The mechanism ids given, each once, in the order given."""
    found: list[int] = []
    for value in values:
        number = whole(value, "--mechanism")
        if number not in found:
            found.append(number)
    return found


def join_terms(capacity, ask, proving_time, capabilities, mechanisms) -> tuple[dict, list[int]]:
    """A join's membership terms and the mechanisms it accepts, checked before any chain."""
    missing = [
        o
        for o, v in (("--capacity N", capacity), ("--ask ETH", ask), ("--proving-time SECONDS", proving_time))
        if v is None
    ]
    if missing:
        raise ClientError(f"join needs {', '.join(missing)}")
    terms = {"capabilities": 0, **parse_terms(capacity, ask, proving_time, capabilities)}
    if terms["capacity"] == 0:
        raise ClientError(
            "--capacity must be at least 1 to join (tasks at once); pause later with update --capacity 0"
        )
    accepted = parse_mechanisms(mechanisms)
    if len(accepted) > MAX_MECHANISMS:
        raise ClientError(
            f"at most {MAX_MECHANISMS} mechanisms in one join, got {len(accepted)}; accept more later"
        )
    return terms, accepted


# ------------------------------------------------------------------ words


def in_seconds(seconds: int) -> str:
    return f"in {seconds} s" if seconds > 0 else f"{-seconds} s ago" if seconds < 0 else "now"


def stake_line(s: Standing) -> str:
    return f"stake {eth(s.stake)} ({eth(s.free)} free, {eth(s.locked)} locked by live assignments)"


def membership_text(m: Membership | dict) -> str:
    terms = m if isinstance(m, dict) else {key: getattr(m, key) for key in MEMBERSHIP_KEYS}
    return (
        f"capacity {terms['capacity']}, ask {eth(terms['ask'])}, proving time {terms['proving_time']} s, "
        f"capabilities {bin(terms['capabilities'])}"
    )


def tx_hash(receipt) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def standing_data(s: Standing) -> dict:
    return {
        "stake": s.stake,
        "locked": s.locked,
        "free": s.free,
        "unbonding": s.unbonding,
        "unbonding_ready_at": s.unbonding_ready_at,
        "balance": s.balance,
    }


# ------------------------------------------------------------------ checks


def joined(registry: RegistryClient, prover: str, market_id: int, leaving: bool = False) -> Membership:
    """The prover's membership of an existing market it is in."""
    existing_market(registry, market_id)
    membership = registry.membership(prover, market_id)
    if not membership.joined:
        hint = (
            "nothing to leave"
            if leaving
            else f"join it first: ape run prover join {market_id} --capacity N --ask ETH "
            "--proving-time SECONDS"
        )
        raise ClientError(f"prover {prover} is not in market {market_id}; {hint}")
    return membership


def _registered(last: int) -> str:
    if last > 3:
        return f"registered mechanisms are 3 to {last}"
    return "the only registered mechanism is 3" if last == 3 else "none is registered yet"


def check_mechanism(registry: RegistryClient, mechanism_id: int, accepting: bool) -> None:
    """Refuse a mechanism whose acceptance would do nothing: built in, unknown, or retired."""
    not_built_in(
        mechanism_id,
        "every prover in the market takes part in it without accepting it; accept registered "
        "mechanisms (3 and up)",
    )
    _, retired = registered_mechanism(registry, mechanism_id, _registered)
    if retired and accepting:
        raise ClientError(
            f"mechanism {mechanism_id} is retired: no new task may name it, so accepting it brings no work"
        )


# ------------------------------------------------------------------ stake


def stake(registry: RegistryClient, prover: str, wei: int) -> tuple[Any, Standing]:
    """Add WEI to the prover's stake: the receipt and its standing after."""
    before = registry.standing(prover)
    if before.stake + wei > MAX_STAKE:
        raise ClientError(
            f"stake would be {eth(before.stake + wei)}, above the registry's limit of {eth(MAX_STAKE)} "
            f"(prover has {eth(before.stake)} staked)"
        )
    held = registry.web3.eth.get_balance(Web3.to_checksum_address(prover))
    if held < wei:
        raise ClientError(f"account {prover} holds {eth(held)}, less than the {eth(wei)} to stake (and gas)")
    receipt, _ = registry.transact("stake", value=wei, action=f"stake {eth(wei)}")
    return receipt, registry.standing(prover)


@dataclass(frozen=True)
class Unstaked:
    receipt: Any
    unbonding: int  # all that is unbonding now
    ready_at: int
    left: int  # seconds until it is ready, by the registry's clock
    before: Standing
    after: Standing


def unstake(registry: RegistryClient, prover: str, wei: int) -> Unstaked:
    """Move WEI of free stake to unbonding."""
    s = registry.standing(prover)
    if s.stake == 0:
        raise ClientError(f"prover {prover} has no stake to unstake")
    if wei > s.free:
        raise ClientError(
            f"prover has {eth(s.free)} free stake ({eth(s.stake)} staked, {eth(s.locked)} locked "
            f"by live assignments); unstake at most {eth(s.free)}"
        )
    receipt, events = registry.transact("unstake", wei, action=f"unstake {eth(wei)}")
    event = next(e for e in events if e.name == "Unstaked")
    # Counted from the block the unstake was mined in: the registry's own clock.
    left = event.ready_at - reported(registry.web3.eth.get_block(receipt["blockNumber"]), "timestamp")
    return Unstaked(receipt, event.unbonding, event.ready_at, left, s, registry.standing(prover))


def withdraw_stake(registry: RegistryClient, prover: str) -> tuple[Any, int]:
    """Send the unbonded stake to the prover: the receipt and the amount."""
    s = registry.standing(prover)
    if s.unbonding == 0:
        raise ClientError(
            f"nothing unbonding for {prover} ({stake_line(s)}); unstake first: ape run prover unstake AMOUNT"
        )
    left = s.unbonding_ready_at - chain_time(registry.web3)
    if left > 0:
        raise ClientError(
            f"{eth(s.unbonding)} unbonding, ready at {when(s.unbonding_ready_at)} ({in_seconds(left)})"
        )
    receipt, _ = registry.transact("withdraw_stake", action="withdraw stake")
    return receipt, s.unbonding


def withdraw(registry: RegistryClient, prover: str) -> tuple[Any, int]:
    """Send the prover its credited earnings, fees and refunds: the receipt and the amount."""
    s = registry.standing(prover)
    if s.balance == 0:
        hint = (
            f"; the {eth(s.unbonding)} of unbonding stake is withdrawn with withdraw-stake"
            if s.unbonding
            else ""
        )
        raise ClientError(f"nothing to withdraw: no earnings or refunds are credited to {prover}{hint}")
    receipt, _ = registry.transact("withdraw", action="withdraw")
    return receipt, s.balance


# ------------------------------------------------------------------ markets


def join(
    registry: RegistryClient,
    prover: str,
    market_id: int,
    terms: dict,
    accepted: list[int],
    reviewed: set[bytes],
    even_if_paused: bool,
) -> tuple[Any, Market, Standing]:
    """Join MARKET_ID on TERMS accepting the mechanisms ACCEPTED: the receipt, the market
    and the prover's standing after. A custom market needs its verifier's code hash among
    those REVIEWED."""
    found = existing_market(registry, market_id)
    refusal = trust.frozen(found) or trust.untrusted(found, reviewed)
    if refusal is not None:
        raise ClientError(refusal)
    if found.paused and not even_if_paused:
        raise ClientError(
            f"market {market_id} is paused: no new tasks or assignments until its creator resumes it; "
            "pass --even-if-paused to join anyway"
        )
    current = registry.membership(prover, market_id)
    if current.joined:
        raise ClientError(
            f"prover {prover} is already in market {market_id} ({membership_text(current)}); "
            f"change it with: ape run prover update {market_id} ..."
        )
    for mechanism_id in accepted:
        check_mechanism(registry, mechanism_id, accepting=True)
    receipt, _ = registry.transact(
        "join_market",
        market_id,
        *(terms[k] for k in MEMBERSHIP_KEYS),
        accepted,
        action=f"join market {market_id}",
    )
    return receipt, found, registry.standing(prover)


@dataclass(frozen=True)
class Updated:
    terms: dict  # the membership terms now
    changed: bool  # the terms changed
    accepted: list[int]  # mechanisms newly accepted
    before: Membership
    txs: list[str]


def update(registry: RegistryClient, prover: str, market_id: int, given: dict, more: list[int]) -> Updated:
    """Change the GIVEN membership terms in MARKET_ID and accept mechanisms MORE."""
    current = joined(registry, prover, market_id)
    terms = {k: given.get(k, getattr(current, k)) for k in MEMBERSHIP_KEYS}
    changed = any(terms[k] != getattr(current, k) for k in MEMBERSHIP_KEYS)
    for mechanism_id in more:
        check_mechanism(registry, mechanism_id, accepting=True)
    new = [m for m in more if not registry.call("accepts", prover, market_id, m)]
    if not changed and not new:
        already = f"; it already accepts mechanism{'s' if len(more) > 1 else ''} {', '.join(map(str, more))}"
        already = already if more else ""
        raise ClientError(
            f"nothing changes: market {market_id} membership is already {membership_text(current)}{already}"
        )
    sent = []
    if changed:
        receipt, _ = registry.transact(
            "update_membership",
            market_id,
            *(terms[k] for k in MEMBERSHIP_KEYS),
            action=f"update market {market_id}",
        )
        sent.append(tx_hash(receipt))
    for mechanism_id in new:
        receipt, _ = registry.transact(
            "set_mechanism_accepted", market_id, mechanism_id, True, action=f"accept mechanism {mechanism_id}"
        )
        sent.append(tx_hash(receipt))
    return Updated(terms, changed, new, current, sent)


def accept(registry: RegistryClient, prover: str, market_id: int, mechanism_id: int, remove: bool) -> Any:
    """Accept assignments from MECHANISM_ID in MARKET_ID (or, with REMOVE, no longer)."""
    joined(registry, prover, market_id)
    check_mechanism(registry, mechanism_id, accepting=not remove)
    accepts = registry.call("accepts", prover, market_id, mechanism_id)
    if accepts != remove:
        raise ClientError(
            f"prover already accepts mechanism {mechanism_id} in market {market_id}"
            if accepts
            else f"prover does not accept mechanism {mechanism_id} in market {market_id}; nothing to remove"
        )
    receipt, _ = registry.transact(
        "set_mechanism_accepted",
        market_id,
        mechanism_id,
        not remove,
        action=f"{'refuse' if remove else 'accept'} mechanism {mechanism_id}",
    )
    return receipt


def leave(registry: RegistryClient, prover: str, market_id: int) -> Any:
    """Leave MARKET_ID, once no assignment of the prover is live there."""
    current = joined(registry, prover, market_id, leaving=True)
    if current.used:
        live = [a for a in registry.prover_status(prover).live if a.market_id == market_id]
        t = chain_time(registry.web3)
        listed = "; ".join(
            f"task 0x{a.task_id.hex()} due {when(a.assignment.deadline)} "
            f"({in_seconds(a.assignment.deadline - t)})"
            for a in live
        )
        raise ClientError(
            f"prover holds {current.used} live assignment{'s' if current.used != 1 else ''} in market "
            f"{market_id}{': ' + listed if listed else ''}; leave once each is proven, declined or slashed"
        )
    receipt, _ = registry.transact("leave_market", market_id, action=f"leave market {market_id}")
    return receipt


# ------------------------------------------------------------------ status


def accepted_mechanisms(registry: RegistryClient, prover: str) -> dict[int, list[int]]:
    """market -> mechanisms the prover accepts now (its acceptances, confirmed by `accepts`)."""
    pairs = {
        (e.market_id, e.mechanism_id)
        for e in registry.events(["MechanismAccepted"])
        if e.prover == prover and e.accepted
    }
    found: dict[int, list[int]] = {}
    for market_id, mechanism_id in sorted(pairs):
        if registry.call("accepts", prover, market_id, mechanism_id):
            found.setdefault(market_id, []).append(mechanism_id)
    return found


def status(registry: RegistryClient, prover: str) -> tuple[ProverStatus, int, dict]:
    """Where PROVER stands: its status, the chain's time, and the status as data (stake,
    markets with the mechanisms it accepts, live assignments with their time left)."""
    found = registry.prover_status(prover)
    t = chain_time(registry.web3)
    s = found.standing
    mechanisms = accepted_mechanisms(registry, prover)
    paused = {m.market_id: registry.market(m.market_id).paused for m in found.memberships}
    data = {
        "prover": prover,
        "now": t,
        **standing_data(s),
        "unbonding_ready_in": s.unbonding_ready_at - t if s.unbonding else None,
        "signature_nonce": s.nonce,
        "markets": [
            {
                "market_id": m.market_id,
                "paused": paused[m.market_id],
                "capacity": m.capacity,
                "used": m.used,
                "ask": m.ask,
                "proving_time": m.proving_time,
                "capabilities": m.capabilities,
                "mechanisms": mechanisms.get(m.market_id, []),
            }
            for m in found.memberships
        ],
        "live": [
            {
                "task_id": "0x" + a.task_id.hex(),
                "market_id": a.market_id,
                "mechanism_id": a.terms.mechanism_id,
                "slot": a.assignment.slot,
                "price": a.assignment.price,
                "collateral": a.terms.collateral,
                "deadline": a.assignment.deadline,
                "seconds_left": a.assignment.deadline - t,
            }
            for a in found.live
        ],
    }
    return found, t, data
