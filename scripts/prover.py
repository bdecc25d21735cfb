"""The prover's commands: stake and unstake, withdraw, join, update and leave markets,
accept mechanisms, and see where a prover stands.

    ape run prover stake 5 --network ethereum:local:foundry --account TEST::2
    ape run prover join 1 --capacity 2 --ask 0.01 --proving-time 60 --mechanism 3 --network ... --account ...
    ape run prover update 1 --ask 0.02 --network ... --account ...
    ape run prover accept 1 3 --remove --network ... --account ...
    ape run prover status 0x... --network ...
    ape run prover lock 0x<task id> --network ... --account ...     (a Dutch task)
    ape run prover prove 0x<task id> --network ... --account ...    (assigned, locked or an open race)
    ape run prover decline 0x<task id> --network ... --account ...  (within the grace period)

Every command checks first what the registry would refuse and says it in one line with
the values it saw (exit code 1, nothing sent); `--json` prints JSON instead of text.
`join` refuses a custom market (its verifier not deployed by the registry) unless
`--trust-verifier` names the code hash of the verifier the prover reviewed; `lock` and
`prove` refuse a task whose posted inputs nobody can prove (they do not match its
commitment, or do not satisfy the circuit).

This file parses and prints; the checks and transactions are provingmarket/chain/provers.py
(stake, markets, status) and provingmarket/chain/tasks.py (lock, prove).
"""

from __future__ import annotations

import click
from eth_utils import to_checksum_address

from provingmarket.chain import provers, trust
from provingmarket.chain import tasks as proving
from provingmarket.chain.client import parse_address, parse_task_id
from provingmarket.chain.provers import in_seconds, membership_text, stake_line, standing_data, tx_hash, whole
from provingmarket.cli import CONTEXT, client, command, emit, eth, fail, require, table, when
from provingmarket.proving.backends import backend_from_config


@click.group(context_settings=CONTEXT)
def cli():
    """Stake, join markets, prove tasks and see where a prover stands."""


membership_options = (
    click.option("--capacity", help="Tasks at once in this market."),
    click.option("--ask", help="Least price, ETH, assigned without a signed Bid."),
    click.option("--proving-time", help="Seconds needed to prove a task of this market."),
    click.option("--capabilities", help="Hardware bitmask (a number, 0x… or 0b…)."),
    click.option(
        "--mechanism", "mechanisms", multiple=True, help="A registered mechanism to accept (repeat for more)."
    ),
)
amount_argument = click.argument("value", metavar="AMOUNT")
market_argument = click.argument("market_id")


def sender(account):
    """The --account (required) and a client that sends as it."""
    account = require(account)
    return account, client(account)


# ------------------------------------------------------------------ stake


@command(cli, amount_argument, account=True)
def stake(account, value, as_json):
    """Add AMOUNT ETH to the stake."""
    wei = provers.amount(value)
    account, registry = sender(account)
    receipt, after = provers.stake(registry, account.address, wei)
    emit(
        as_json,
        {"prover": account.address, "staked": wei, **standing_data(after), "tx": tx_hash(receipt)},
        f"staked {eth(wei)}: {stake_line(after)}",
    )


@command(cli, amount_argument, account=True)
def unstake(account, value, as_json):
    """Move AMOUNT ETH of free stake to unbonding (withdraw it after the unbonding delay)."""
    wei = provers.amount(value)
    account, registry = sender(account)
    done = provers.unstake(registry, account.address, wei)
    lines = [
        f"unstaked {eth(wei)}: {eth(done.unbonding)} unbonding, ready at {when(done.ready_at)} "
        f"({in_seconds(done.left)}); then: ape run prover withdraw-stake",
        stake_line(done.after),
    ]
    if done.before.unbonding:
        lines.append(f"note: the {eth(done.before.unbonding)} already unbonding now waits until then too")
    emit(
        as_json,
        {
            "prover": account.address,
            "unstaked": wei,
            **standing_data(done.after),
            "unbonding_ready_in": done.left,
            "tx": tx_hash(done.receipt),
        },
        "\n".join(lines),
    )


@command(cli, name="withdraw-stake", account=True)
def withdraw_stake(account, as_json):
    """Send the unbonded stake to the account once the unbonding delay has passed."""
    account, registry = sender(account)
    _withdrew(
        as_json, account.address, *provers.withdraw_stake(registry, account.address), "of unbonded stake"
    )


@command(cli, account=True)
def withdraw(account, as_json):
    """Send the account everything credited to it: earnings, fees and refunds."""
    account, registry = sender(account)
    _withdrew(
        as_json, account.address, *provers.withdraw(registry, account.address), "(earnings and refunds)"
    )


def _withdrew(as_json: bool, prover: str, receipt, withdrawn: int, what: str) -> None:
    emit(
        as_json,
        {"prover": prover, "withdrawn": withdrawn, "tx": tx_hash(receipt)},
        f"withdrew {eth(withdrawn)} {what} to {prover}",
    )


# ------------------------------------------------------------------ markets


@command(
    cli,
    market_argument,
    *membership_options,
    click.option("--even-if-paused", is_flag=True, help="Join a paused market (no work until it resumes)."),
    click.option(
        "--trust-verifier",
        "trusted",
        metavar="HASH",
        help="A custom market's verifier code hash (0x and 64 hex digits) you reviewed: needed to join one.",
    ),
    account=True,
)
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
    terms, accepted = provers.join_terms(capacity, ask, proving_time, capabilities, mechanisms)
    account, registry = sender(account)
    receipt, found, s = provers.join(
        registry, account.address, market_id, terms, accepted, reviewed, even_if_paused
    )
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


@command(cli, market_argument, *membership_options, account=True)
def update(account, market_id, capacity, ask, proving_time, capabilities, mechanisms, as_json):
    """Change what the prover offers in MARKET_ID; options not given keep their values.
    --mechanism accepts more mechanisms (`accept --remove` refuses one)."""
    market_id = whole(market_id, "market id")
    given = provers.parse_terms(capacity, ask, proving_time, capabilities)
    more = provers.parse_mechanisms(mechanisms)
    if not given and not more:
        fail("nothing to update: give --capacity, --ask, --proving-time, --capabilities or --mechanism")
    account, registry = sender(account)
    done = provers.update(registry, account.address, market_id, given, more)
    terms = done.terms
    lines = [
        f"market {market_id}: {membership_text(terms)}" if done.changed else f"market {market_id}: unchanged"
    ]
    if done.accepted:
        lines.append(f"mechanisms now accepted: {', '.join(map(str, done.accepted))}")
    if terms["capacity"] == 0:
        lines.append("note: capacity 0: no new assignments in this market until you raise it")
    elif terms["capacity"] < done.before.used:
        lines.append(
            f"note: capacity {terms['capacity']} is below the {done.before.used} assignments live now: "
            "no new ones until they end"
        )
    emit(
        as_json,
        {
            "prover": account.address,
            "market_id": market_id,
            **terms,
            "used": done.before.used,
            "accepted": done.accepted,
            "txs": done.txs,
        },
        "\n".join(lines),
    )


@command(
    cli,
    market_argument,
    click.argument("mechanism_id"),
    click.option("--remove", is_flag=True, help="No longer accept the mechanism."),
    account=True,
)
def accept(account, market_id, mechanism_id, remove, as_json):
    """Accept assignments from MECHANISM_ID in MARKET_ID (or, with --remove, no longer)."""
    market_id = whole(market_id, "market id")
    mechanism_id = whole(mechanism_id, "mechanism id")
    account, registry = sender(account)
    receipt = provers.accept(registry, account.address, market_id, mechanism_id, remove)
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


@command(cli, market_argument, account=True)
def leave(account, market_id, as_json):
    """Leave MARKET_ID (only once no assignment of the prover is live there)."""
    market_id = whole(market_id, "market id")
    account, registry = sender(account)
    receipt = provers.leave(registry, account.address, market_id)
    emit(
        as_json,
        {"prover": account.address, "market_id": market_id, "joined": False, "tx": tx_hash(receipt)},
        f"left market {market_id}; its mechanism acceptances lapse (accept again after joining again)",
    )


# ------------------------------------------------------------------ work


@command(cli, click.argument("task"), account=True)
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


@command(
    cli,
    click.argument("task"),
    click.option(
        "--backend",
        type=click.Choice(["auto", "groth16py", "snarkjs"]),
        default="auto",
        show_default=True,
        help="How to prove: auto is groth16py (the optional GPL extra) where it can, else snarkjs.",
    ),
    account=True,
)
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


@command(cli, click.argument("task"), account=True)
def decline(account, task, as_json):
    """Give back TASK, assigned to the prover by a frontend, within the market's grace
    period: no penalty, the collateral is freed, the slot reopens (or its escrow goes back
    to the requester) and the prover is not assigned this task again."""
    registry = client(require(account))
    declined = proving.decline(registry, parse_task_id(task))
    emit(
        as_json,
        {"task": task, "slot": declined.slot, "reopened": declined.reopened, "tx": declined.tx},
        f"declined slot {declined.slot} of task {task}; "
        + ("the slot is open again" if declined.reopened else "its escrow went back to the requester"),
    )


# ------------------------------------------------------------------ status


def _status_text(prover: str, t: int, found, data: dict) -> str:
    """Where a prover stands, as text: stake, earnings, markets, live assignments."""
    s = found.standing
    if s.unbonding:
        left = s.unbonding_ready_at - t
        ready = "ready now" if left <= 0 else f"ready at {when(s.unbonding_ready_at)} ({in_seconds(left)})"
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
                bin(m["capabilities"]),
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
    if not found.live:
        return "\n".join([*lines, "no live assignments"])
    rows = [
        (
            a["task_id"],
            a["market_id"],
            a["slot"],
            eth(a["price"]),
            eth(a["collateral"]),
            when(a["deadline"]),
            f"{a['seconds_left']} s" if a["seconds_left"] >= 0 else f"OVERDUE by {-a['seconds_left']} s",
        )
        for a in data["live"]
    ]
    return "\n".join(
        [*lines, table(["task", "market", "slot", "price", "collateral", "deadline", "time left"], rows)]
    )


@command(cli, click.argument("address", required=False), account=True)
def status(account, address, as_json):
    """Where ADDRESS (default: the --account) stands: stake, earnings, markets, live assignments."""
    if address is not None:
        prover = parse_address(address, "address")
    elif account is not None:
        prover = to_checksum_address(account.address)
    else:
        fail("give the prover's ADDRESS, or --account to see your own")
    found, t, data = provers.status(client(), prover)
    emit(as_json, data, lambda: _status_text(prover, t, found, data))


__all__ = ["cli"]
