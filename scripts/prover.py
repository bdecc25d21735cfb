"""The prover's commands: stake and unstake, withdraw, join, update and leave markets,
accept mechanisms, and see where a prover stands.

    ape run prover stake 5 --network ethereum:local:foundry --account TEST::2
    ape run prover join 1 --capacity 2 --ask 0.01 --proving-time 60 --mechanism 3 --network ... --account ...
    ape run prover update 1 --ask 0.02 --network ... --account ...
    ape run prover accept 1 3 --remove --network ... --account ...
    ape run prover status 0x... --network ...
    ape run prover lock 0x<task id> --network ... --account ...     (a Dutch task)
    ape run prover prove 0x<task id> --network ... --account ...    (assigned, locked or an open race)

Every command checks first what the registry would refuse and says it in one line with
the values it saw (exit code 1, nothing sent); `--json` prints JSON instead of text.
`join` refuses a custom market (its verifier not deployed by the registry) unless
`--trust-verifier` names the code hash of the verifier the prover reviewed; `lock` and
`prove` refuse a task whose posted inputs nobody can prove (they do not match its
commitment, or do not satisfy the circuit).
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option
from eth_utils import to_checksum_address

from provingmarket.chain import tasks as proving
from provingmarket.chain import trust
from provingmarket.chain.client import (
    Membership,
    RegistryClient,
    Standing,
    chain_time,
    parse_address,
    parse_ether,
    parse_task_id,
)
from provingmarket.cli import (
    BUILT_IN,
    client,
    emit,
    eth,
    fail,
    handled,
    json_option,
    market_or_fail,
    require,
    table,
    when,
)
from provingmarket.proving.backends import backend_from_config

# The registry's limits on a membership (the widths of its packed word).
MAX_CAPACITY = 2**16 - 1
MAX_ASK = 2**96 - 1  # wei
MAX_PROVING_TIME = 2**32 - 1  # seconds
MAX_CAPABILITIES = 2**64 - 1
MAX_STAKE = 2**88 - 1  # wei
MAX_MECHANISMS = 16  # accepted in one join


@click.group()
def cli():
    """Stake, join markets, prove tasks and see where a prover stands."""


# ------------------------------------------------------------------ parsing


def whole(value: str, what: str, most: int | None = None, bits: bool = False) -> int:
    """A whole number as a person writes it (a bitmask may also be 0x… or 0b…)."""
    text = str(value).strip().replace("_", "")
    if text.startswith("-"):
        fail(f"{what} {value!r} is negative")
    try:
        number = int(text, 0) if bits and text[:2].lower() in ("0x", "0b") else int(text, 10)
    except ValueError:
        kind = "a bitmask (a whole number, 0x… or 0b…)" if bits else "a whole number"
        fail(f"{what} {value!r} is not {kind}")
    if most is not None and number > most:
        fail(f"{what} {value} is above the registry's limit of {most}")
    return number


def amount(value: str, what: str = "amount") -> int:
    wei = parse_ether(value, what)
    if wei == 0:
        fail(f"{what} must be more than 0 ETH")
    return wei


def bitmask(value: int) -> str:
    return bin(value)


def now(registry: RegistryClient) -> int:
    """The time the next transaction will be checked at (see client.chain_time)."""
    return chain_time(registry.web3)


def in_seconds(seconds: int) -> str:
    return f"in {seconds} s" if seconds > 0 else f"{-seconds} s ago" if seconds < 0 else "now"


def stake_line(s: Standing) -> str:
    return f"stake {eth(s.stake)} ({eth(s.free)} free, {eth(s.locked)} locked by live assignments)"


def tx_hash(receipt) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def joined_or_fail(
    registry: RegistryClient, prover: str, market_id: int, leaving: bool = False
) -> Membership:
    market_or_fail(registry, market_id)
    membership = registry.membership(prover, market_id)
    if not membership.joined:
        hint = (
            "nothing to leave"
            if leaving
            else f"join it first: ape run prover join {market_id} --capacity N --ask ETH "
            "--proving-time SECONDS"
        )
        fail(f"prover {prover} is not in market {market_id}; {hint}")
    return membership


def check_mechanism(registry: RegistryClient, mechanism_id: int, accepting: bool) -> None:
    """Refuse a mechanism whose acceptance would do nothing: built in, unknown, or retired."""
    if mechanism_id in BUILT_IN:
        fail(
            f"mechanism {mechanism_id} ({BUILT_IN[mechanism_id]}) is built in: every prover in the "
            "market takes part in it without accepting it; accept registered mechanisms (3 and up)"
        )
    registrant, retired = registry.mechanism(mechanism_id)
    if int(registrant, 16) == 0:
        last = registry.call("mechanism_count")
        known = (
            f"registered mechanisms are 3 to {last}"
            if last > 3
            else "the only registered mechanism is 3"
            if last == 3
            else "none is registered yet"
        )
        fail(f"no mechanism {mechanism_id} ({known})")
    if retired and accepting:
        fail(f"mechanism {mechanism_id} is retired: no new task may name it, so accepting it brings no work")


def parse_terms(capacity, ask, proving_time, capabilities) -> dict:
    """Each given membership option parsed and checked against the registry's limits."""
    terms = {}
    if capacity is not None:
        terms["capacity"] = whole(capacity, "--capacity", MAX_CAPACITY)
    if ask is not None:
        terms["ask"] = parse_ether(ask, "--ask")
        if terms["ask"] > MAX_ASK:
            fail(f"--ask {ask} is above the registry's limit of {eth(MAX_ASK)}")
    if proving_time is not None:
        terms["proving_time"] = whole(proving_time, "--proving-time", MAX_PROVING_TIME)
    if capabilities is not None:
        terms["capabilities"] = whole(capabilities, "--capabilities", MAX_CAPABILITIES, bits=True)
    return terms


def parse_mechanisms(values) -> list[int]:
    found: list[int] = []
    for value in values:
        number = whole(value, "--mechanism")
        if number not in found:
            found.append(number)
    return found


def membership_text(m: Membership | dict) -> str:
    get = m.get if isinstance(m, dict) else lambda k: getattr(m, k)
    return (
        f"capacity {get('capacity')}, ask {eth(get('ask'))}, proving time {get('proving_time')} s, "
        f"capabilities {bitmask(get('capabilities'))}"
    )


membership_options = [
    click.option("--capacity", help="Tasks at once in this market."),
    click.option("--ask", help="Least price, ETH, assigned without a signed Bid."),
    click.option("--proving-time", help="Seconds needed to prove a task of this market."),
    click.option("--capabilities", help="Hardware bitmask (a number, 0x… or 0b…)."),
    click.option(
        "--mechanism", "mechanisms", multiple=True, help="A registered mechanism to accept (repeat for more)."
    ),
]


def with_membership_options(function):
    for option in reversed(membership_options):
        function = option(function)
    return function


# ------------------------------------------------------------------ stake


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("value", metavar="AMOUNT")
@json_option
@handled
def stake(account, value, as_json):
    """Add AMOUNT ETH to the stake."""
    wei = amount(value)
    account = require(account)
    registry = client(account)
    before = registry.standing(account.address)
    if before.stake + wei > MAX_STAKE:
        fail(
            f"stake would be {eth(before.stake + wei)}, above the registry's limit of {eth(MAX_STAKE)} "
            f"(prover has {eth(before.stake)} staked)"
        )
    held = registry.web3.eth.get_balance(account.address)
    if held < wei:
        fail(f"account {account.address} holds {eth(held)}, less than the {eth(wei)} to stake (and gas)")
    receipt, _ = registry.transact("stake", value=wei, action=f"stake {eth(wei)}")
    after = registry.standing(account.address)
    emit(
        as_json,
        {"prover": account.address, "staked": wei, **_standing(after), "tx": tx_hash(receipt)},
        f"staked {eth(wei)}: {stake_line(after)}",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("value", metavar="AMOUNT")
@json_option
@handled
def unstake(account, value, as_json):
    """Move AMOUNT ETH of free stake to unbonding (withdraw it after the unbonding delay)."""
    wei = amount(value)
    account = require(account)
    registry = client(account)
    s = registry.standing(account.address)
    if s.stake == 0:
        fail(f"prover {account.address} has no stake to unstake")
    if wei > s.free:
        fail(
            f"prover has {eth(s.free)} free stake ({eth(s.stake)} staked, {eth(s.locked)} locked "
            f"by live assignments); unstake at most {eth(s.free)}"
        )
    receipt, events = registry.transact("unstake", wei, action=f"unstake {eth(wei)}")
    event = next(e for e in events if e.name == "Unstaked")
    # Counted from the block the unstake was mined in: the registry's own clock.
    left = event.ready_at - registry.web3.eth.get_block(receipt["blockNumber"])["timestamp"]
    after = registry.standing(account.address)
    lines = [
        f"unstaked {eth(wei)}: {eth(event.unbonding)} unbonding, ready at {when(event.ready_at)} "
        f"({in_seconds(left)}); then: ape run prover withdraw-stake",
        stake_line(after),
    ]
    if s.unbonding:
        lines.append(f"note: the {eth(s.unbonding)} already unbonding now waits until then too")
    emit(
        as_json,
        {
            "prover": account.address,
            "unstaked": wei,
            **_standing(after),
            "unbonding_ready_in": left,
            "tx": tx_hash(receipt),
        },
        "\n".join(lines),
    )


@cli.command("withdraw-stake", cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@json_option
@handled
def withdraw_stake(account, as_json):
    """Send the unbonded stake to the account once the unbonding delay has passed."""
    account = require(account)
    registry = client(account)
    s = registry.standing(account.address)
    if s.unbonding == 0:
        fail(
            f"nothing unbonding for {account.address} ({stake_line(s)}); "
            "unstake first: ape run prover unstake AMOUNT"
        )
    left = s.unbonding_ready_at - now(registry)
    if left > 0:
        fail(f"{eth(s.unbonding)} unbonding, ready at {when(s.unbonding_ready_at)} ({in_seconds(left)})")
    receipt, _ = registry.transact("withdraw_stake", action="withdraw stake")
    emit(
        as_json,
        {"prover": account.address, "withdrawn": s.unbonding, "tx": tx_hash(receipt)},
        f"withdrew {eth(s.unbonding)} of unbonded stake to {account.address}",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@json_option
@handled
def withdraw(account, as_json):
    """Send the account everything credited to it: earnings, fees and refunds."""
    account = require(account)
    registry = client(account)
    s = registry.standing(account.address)
    if s.balance == 0:
        hint = (
            f"; the {eth(s.unbonding)} of unbonding stake is withdrawn with withdraw-stake"
            if s.unbonding
            else ""
        )
        fail(f"nothing to withdraw: no earnings or refunds are credited to {account.address}{hint}")
    receipt, _ = registry.transact("withdraw", action="withdraw")
    emit(
        as_json,
        {"prover": account.address, "withdrawn": s.balance, "tx": tx_hash(receipt)},
        f"withdrew {eth(s.balance)} (earnings and refunds) to {account.address}",
    )


# ------------------------------------------------------------------ markets


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("market_id")
@with_membership_options
@click.option("--even-if-paused", is_flag=True, help="Join a paused market (no work until it resumes).")
@click.option(
    "--trust-verifier",
    "trusted",
    metavar="HASH",
    help="A custom market's verifier code hash (0x and 64 hex digits) you reviewed: needed to join one.",
)
@json_option
@handled
def join(
    account,
    market_id,
    capacity,
    ask,
    proving_time,
    capabilities,
    mechanisms,
    even_if_paused,
    trusted,
    as_json,
):
    """Join MARKET_ID with a capacity, an ask, a proving time and the mechanisms accepted.
    A custom market (its verifier not deployed by the registry) needs --trust-verifier
    with the code hash of the verifier you reviewed."""
    market_id = whole(market_id, "market id")
    reviewed = {trust.parse_codehash(trusted)} if trusted is not None else set()
    missing = [
        o
        for o, v in (("--capacity N", capacity), ("--ask ETH", ask), ("--proving-time SECONDS", proving_time))
        if v is None
    ]
    if missing:
        fail(f"join needs {', '.join(missing)}")
    terms = {"capabilities": 0, **parse_terms(capacity, ask, proving_time, capabilities)}
    if terms["capacity"] == 0:
        fail("--capacity must be at least 1 to join (tasks at once); pause later with update --capacity 0")
    accepted = parse_mechanisms(mechanisms)
    if len(accepted) > MAX_MECHANISMS:
        fail(f"at most {MAX_MECHANISMS} mechanisms in one join, got {len(accepted)}; accept more later")
    account = require(account)
    registry = client(account)
    found = market_or_fail(registry, market_id)
    refusal = trust.frozen(found) or trust.untrusted(found, reviewed)
    if refusal is not None:
        fail(refusal)
    if found.paused and not even_if_paused:
        fail(
            f"market {market_id} is paused: no new tasks or assignments until its creator resumes it; "
            "pass --even-if-paused to join anyway"
        )
    current = registry.membership(account.address, market_id)
    if current.joined:
        fail(
            f"prover {account.address} is already in market {market_id} ({membership_text(current)}); "
            f"change it with: ape run prover update {market_id} ..."
        )
    for mechanism_id in accepted:
        check_mechanism(registry, mechanism_id, accepting=True)
    receipt, _ = registry.transact(
        "join_market",
        market_id,
        terms["capacity"],
        terms["ask"],
        terms["proving_time"],
        terms["capabilities"],
        accepted,
        action=f"join market {market_id}",
    )
    s = registry.standing(account.address)
    lines = [
        f"joined market {market_id}: {membership_text(terms)}; "
        f"mechanisms accepted: {', '.join(map(str, accepted)) or 'none'}"
    ]
    if found.custom:
        codehash = trust.hex32(found.codehash)
        lines.append(
            f"note: market {market_id} is custom: you trust its verifier {found.verifier} at code hash "
            f"{codehash}; run the agent with --trust-verifier {codehash}"
        )
    if found.paused:
        lines.append(f"note: market {market_id} is paused; no assignments until it resumes")
    if s.free < found.min_collateral:
        lines.append(
            f"note: {eth(s.free)} free stake, below the market's least collateral "
            f"{eth(found.min_collateral)}: stake more with `ape run prover stake AMOUNT` to be assigned"
        )
    emit(
        as_json,
        {
            "prover": account.address,
            "market_id": market_id,
            **terms,
            "mechanisms": accepted,
            "custom": found.custom,
            "codehash": trust.hex32(found.codehash),
            "tx": tx_hash(receipt),
        },
        "\n".join(lines),
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("market_id")
@with_membership_options
@json_option
@handled
def update(account, market_id, capacity, ask, proving_time, capabilities, mechanisms, as_json):
    """Change what the prover offers in MARKET_ID; options not given keep their values.
    --mechanism accepts more mechanisms (`accept --remove` refuses one)."""
    market_id = whole(market_id, "market id")
    given = parse_terms(capacity, ask, proving_time, capabilities)
    more = parse_mechanisms(mechanisms)
    if not given and not more:
        fail("nothing to update: give --capacity, --ask, --proving-time, --capabilities or --mechanism")
    account = require(account)
    registry = client(account)
    current = joined_or_fail(registry, account.address, market_id)
    keys = ("capacity", "ask", "proving_time", "capabilities")
    terms = {k: given.get(k, getattr(current, k)) for k in keys}
    changed = any(terms[k] != getattr(current, k) for k in keys)
    for mechanism_id in more:
        check_mechanism(registry, mechanism_id, accepting=True)
    new = [m for m in more if not registry.call("accepts", account.address, market_id, m)]
    if not changed and not new:
        already = f"; it already accepts mechanism{'s' if len(more) > 1 else ''} {', '.join(map(str, more))}"
        already = already if more else ""
        fail(f"nothing changes: market {market_id} membership is already {membership_text(current)}{already}")
    sent = []
    if changed:
        receipt, _ = registry.transact(
            "update_membership", market_id, *(terms[k] for k in keys), action=f"update market {market_id}"
        )
        sent.append(tx_hash(receipt))
    for mechanism_id in new:
        receipt, _ = registry.transact(
            "set_mechanism_accepted", market_id, mechanism_id, True, action=f"accept mechanism {mechanism_id}"
        )
        sent.append(tx_hash(receipt))
    lines = [f"market {market_id}: {membership_text(terms)}" if changed else f"market {market_id}: unchanged"]
    if new:
        lines.append(f"mechanisms now accepted: {', '.join(map(str, new))}")
    if terms["capacity"] == 0:
        lines.append("note: capacity 0: no new assignments in this market until you raise it")
    elif terms["capacity"] < current.used:
        lines.append(
            f"note: capacity {terms['capacity']} is below the {current.used} assignments live now: "
            "no new ones until they end"
        )
    emit(
        as_json,
        {
            "prover": account.address,
            "market_id": market_id,
            **terms,
            "used": current.used,
            "accepted": new,
            "txs": sent,
        },
        "\n".join(lines),
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("market_id")
@click.argument("mechanism_id")
@click.option("--remove", is_flag=True, help="No longer accept the mechanism.")
@json_option
@handled
def accept(account, market_id, mechanism_id, remove, as_json):
    """Accept assignments from MECHANISM_ID in MARKET_ID (or, with --remove, no longer)."""
    market_id = whole(market_id, "market id")
    mechanism_id = whole(mechanism_id, "mechanism id")
    account = require(account)
    registry = client(account)
    joined_or_fail(registry, account.address, market_id)
    check_mechanism(registry, mechanism_id, accepting=not remove)
    accepts = registry.call("accepts", account.address, market_id, mechanism_id)
    if accepts != remove:
        fail(
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
    emit(
        as_json,
        {
            "prover": account.address,
            "market_id": market_id,
            "mechanism_id": mechanism_id,
            "accepted": not remove,
            "tx": tx_hash(receipt),
        },
        f"mechanism {mechanism_id} {'no longer accepted' if remove else 'accepted'} in market {market_id}",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("market_id")
@json_option
@handled
def leave(account, market_id, as_json):
    """Leave MARKET_ID (only once no assignment of the prover is live there)."""
    market_id = whole(market_id, "market id")
    account = require(account)
    registry = client(account)
    current = joined_or_fail(registry, account.address, market_id, leaving=True)
    if current.used:
        live = [a for a in registry.prover_status(account.address).live if a.market_id == market_id]
        t = now(registry)
        listed = "; ".join(
            f"task 0x{a.task_id.hex()} due {when(a.assignment.deadline)} "
            f"({in_seconds(a.assignment.deadline - t)})"
            for a in live
        )
        fail(
            f"prover holds {current.used} live assignment{'s' if current.used != 1 else ''} in market "
            f"{market_id}{': ' + listed if listed else ''}; leave once each is proven, declined or slashed"
        )
    receipt, _ = registry.transact("leave_market", market_id, action=f"leave market {market_id}")
    emit(
        as_json,
        {"prover": account.address, "market_id": market_id, "joined": False, "tx": tx_hash(receipt)},
        f"left market {market_id}; its mechanism acceptances lapse (accept again after joining again)",
    )


# ------------------------------------------------------------------ work


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("task")
@json_option
@handled
def lock(account, task, as_json):
    """Take a slot of Dutch task TASK at its current (rising) price, once its posted inputs
    are known to be provable (a locked slot cannot be declined)."""
    registry = client(require(account))
    price, assignment = proving.lock(registry, parse_task_id(task))
    emit(
        as_json,
        {"task": task, "price": price, "slot": assignment.slot, "deadline": assignment.deadline},
        f"locked slot {assignment.slot} of task {task} at {eth(price)}; prove by {when(assignment.deadline)}",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("task")
@click.option(
    "--backend",
    type=click.Choice(["groth16py", "snarkjs"]),
    default="groth16py",
    show_default=True,
    help="How to prove (groth16py is the optional GPL extra).",
)
@json_option
@handled
def prove(account, task, backend, as_json):
    """Prove TASK from the inputs its requester posted and submit the proof: a task
    assigned to the prover, or an open race it may enter. Inputs nobody can prove (not
    matching the task's commitment, or not satisfying the circuit) are refused first."""
    registry = client(require(account))
    delivered = proving.prove(registry, parse_task_id(task), backend_from_config({"backend": backend}))
    emit(
        as_json,
        {
            "task": task,
            "paid": delivered.paid,
            "seconds": delivered.result.seconds,
            "backend": delivered.result.backend,
            "public_inputs": [str(v) for v in delivered.result.public_inputs],
            "tx": delivered.tx,
        },
        f"proved task {task} in {delivered.result.seconds * 1000:,.0f} ms with {delivered.result.backend}; "
        f"paid {eth(delivered.paid)} (credited: withdraw with `ape run prover withdraw`)",
    )


# ------------------------------------------------------------------ status


def _standing(s: Standing) -> dict:
    return {
        "stake": s.stake,
        "locked": s.locked,
        "free": s.free,
        "unbonding": s.unbonding,
        "unbonding_ready_at": s.unbonding_ready_at,
        "balance": s.balance,
    }


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


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("address", required=False)
@json_option
@handled
def status(account, address, as_json):
    """Where ADDRESS (default: the --account) stands: stake, earnings, markets, live assignments."""
    if address is not None:
        prover = parse_address(address, "address")
    elif account is not None:
        prover = to_checksum_address(account.address)
    else:
        fail("give the prover's ADDRESS, or --account to see your own")
    registry = client()
    found = registry.prover_status(prover)
    t = now(registry)
    s = found.standing
    mechanisms = accepted_mechanisms(registry, prover)
    paused = {m.market_id: registry.market(m.market_id).paused for m in found.memberships}
    data = {
        "prover": prover,
        "now": t,
        **_standing(s),
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

    def text() -> str:
        if s.unbonding:
            left = s.unbonding_ready_at - t
            ready = (
                "ready now" if left <= 0 else f"ready at {when(s.unbonding_ready_at)} ({in_seconds(left)})"
            )
            unbonding = f"{eth(s.unbonding)}, {ready}"
        else:
            unbonding = "none"
        lines = [
            f"prover {prover} at {when(t)}",
            f"  stake      {eth(s.stake)} ({eth(s.free)} free, {eth(s.locked)} locked by live assignments)",
            f"  unbonding  {unbonding}",
            f"  earnings   {eth(s.balance)} credited" + (" (ape run prover withdraw)" if s.balance else ""),
            "",
        ]
        if found.memberships:
            rows = [
                (
                    f"{m['market_id']}{' (paused)' if m['paused'] else ''}",
                    f"{m['used']}/{m['capacity']}",
                    eth(m["ask"]),
                    f"{m['proving_time']} s",
                    bitmask(m["capabilities"]),
                    ", ".join(map(str, m["mechanisms"])) or "-",
                )
                for m in data["markets"]
            ]
            lines += [
                table(["market", "used/capacity", "ask", "proving time", "capabilities", "mechanisms"], rows),
                "",
            ]
        else:
            lines += ["in no market", ""]
        if found.live:
            rows = [
                (
                    a["task_id"],
                    a["market_id"],
                    a["slot"],
                    eth(a["price"]),
                    eth(a["collateral"]),
                    when(a["deadline"]),
                    f"{a['seconds_left']} s"
                    if a["seconds_left"] >= 0
                    else f"OVERDUE by {-a['seconds_left']} s",
                )
                for a in data["live"]
            ]
            lines.append(
                table(["task", "market", "slot", "price", "collateral", "deadline", "time left"], rows)
            )
        else:
            lines.append("no live assignments")
        return "\n".join(lines)

    emit(as_json, data, text)


__all__ = ["cli"]
