"""The requester's commands on tasks once posted (`ape run requester` adds them to its
group, scripts/requester.py): status (a task's timeline, waiting for it if asked), proof,
cancel, reclaim, withdraw, tasks, and reprice (cancel a task nobody took and post it again
higher, provingmarket/market/repricing.py; with --watch, until none is left).

This file parses and prints; following a posted task is provingmarket/chain/requester.py."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from provingmarket.chain import requester as following
from provingmarket.chain.client import ClientError, parse_address, parse_ether, parse_task_id
from provingmarket.chain.tasks import circuit_of
from provingmarket.cli import client, command, deployments_folder, emit, eth, fail, require, table, when
from provingmarket.formats import ZERO_ADDRESS, TaskTerms
from provingmarket.market import repricing
from provingmarket.market.post_options import whole
from provingmarket.proving.circuits import CircuitError

# The group these commands are made in; scripts/requester.py adds each to its own.
posted = click.Group("posted")

REPRICE_STATE = click.option(
    "--reprice-state",
    metavar="FILE",
    help="Re-pricing: the record of tasks watched and re-posted.  [default: repricing-<chain id>.json "
    "next to the deployment record]",
)


# ------------------------------------------------------------------ status


def _slot(reopened: bool) -> str:
    return "slot reopened" if reopened else "slot's escrow refunded"


def _entry(e, terms: TaskTerms) -> tuple[str, str]:
    """What one event of a task's timeline says."""
    if e.name == "TaskPosted":
        return "posted", f"by {terms.requester}, escrow {eth(terms.escrow())} held"
    if e.name == "TaskAssigned":
        by = "locked by the prover" if e.frontend == ZERO_ADDRESS else f"by {e.frontend}"
        return "assigned", (
            f"slot {e.slot} to {e.prover} ({by}) at {eth(e.price)}, deadline {when(e.deadline)}"
        )
    if e.name == "AssignmentSkipped":
        return "skipped", f"{e.prover} (by {e.frontend}): {e.reason}"
    if e.name == "TaskDeclined":
        return "declined", f"slot {e.slot} by {e.prover}; {_slot(e.reopened)}"
    if e.name == "TaskProven":
        fee = f", fee {eth(e.fee)} to {e.frontend}" if e.frontend != ZERO_ADDRESS else ""
        return "proven", f"slot {e.slot} by {e.prover}: paid {eth(e.paid)}{fee}, refund {eth(e.refund)}"
    if e.name == "Slashed":
        return "slashed", (
            f"slot {e.slot}, {e.prover} by {e.caller}: collateral {eth(e.collateral)} -> "
            f"requester {eth(e.to_requester)}, caller {eth(e.to_caller)}, burnt {eth(e.burnt)}; "
            f"{_slot(e.reopened)}"
        )
    if e.name == "AssignmentVoided":
        return "voided", (
            f"slot {e.slot} of {e.prover}: the market's verifier changed; collateral freed, "
            "slot's escrow refunded"
        )
    if e.name == "SlotsClosed":
        why = "cancelled by the requester" if e.cancelled else "windows passed"
        return "closed", f"{e.slots} slot{'s' if e.slots != 1 else ''} ({why}), refund {eth(e.refund)}"
    return e.name, ""


def _status_text(state, data: dict) -> str:
    terms = state.terms
    rows = [
        (when(entry["time"]), *_entry(e, terms))
        for e, entry in zip(state.timeline, data["timeline"], strict=True)
    ]
    head = [
        f"task {data['task_id']}",
        f"  market {terms.market_id}, mechanism {terms.mechanism_id} ({data['mechanism']}), "
        f"requester {terms.requester}",
        f"  reward {eth(terms.max_reward)} x {terms.redundancy}, fee {eth(terms.frontend_fee)}, "
        f"escrow {eth(terms.escrow())}, collateral {eth(terms.collateral)}",
        f"  inputs {data['inputs']}" + (f" ({state.input_uri})" if state.input_uri else ""),
        *(
            [f"  public signals {', '.join(f'{k} = {v}' for k, v in data['public_signals'].items())}"]
            if data["public_signals"]
            else []
        ),
        f"  slots: {state.open} open, {state.assigned} assigned, {state.proven} proven, "
        f"{state.closed} closed; {data['phase']}",
        "",
    ]
    return "\n".join(head) + table(["time", "event", "details"], rows)


task_argument = click.argument("task_id")


@command(
    posted,
    task_argument,
    click.option("--wait", is_flag=True, help="Wait until every slot is proven or closed."),
    click.option(
        "--timeout",
        metavar="SECONDS",
        default="600",
        show_default=True,
        help="Seconds --wait waits (then exit 1).",
    ),
    click.option(
        "--poll",
        metavar="SECONDS",
        default="2",
        show_default=True,
        help="Seconds between looks while waiting.",
    ),
)
def status(task_id, wait, timeout, poll, as_json):
    """TASK_ID's timeline and slots: open, assigned, proven, closed."""
    task_id = parse_task_id(task_id)
    timeout = whole(timeout, "--timeout", 1)
    poll = whole(poll, "--poll", 1)
    registry = client()
    state = registry.task(task_id)
    if wait:
        state = following.wait(registry, state, timeout, poll, lambda line: click.echo(line, err=True))
    data = following.status_data(registry, state, _circuit(registry, state.terms.market_id))
    emit(as_json, data, lambda: _status_text(state, data))


def _circuit(registry, market_id: int):
    """The market's circuit if the deployment record names it (to show signals by name)."""
    try:
        return circuit_of(registry, market_id)
    except (ClientError, CircuitError):
        return None


# ------------------------------------------------------------------ proof


def _signals(p: dict) -> str:
    named = p.get("public_signals") or {}
    return ", ".join(f"{k} = {v}" for k, v in named.items()) if named else ", ".join(p["public_inputs"])


@command(
    posted,
    task_argument,
    click.option("--out", "out_file", metavar="FILE", help="Also write the proofs to this file as JSON."),
)
def proof(task_id, out_file, as_json):
    """The proofs TASK_ID received: prover, public inputs, proof bytes."""
    registry = client()
    state = registry.task(parse_task_id(task_id))
    data = following.proofs_data(state, _circuit(registry, state.terms.market_id))
    proofs = data["proofs"]
    if out_file:
        try:
            Path(out_file).write_text(json.dumps(data, indent=2) + "\n")
        except OSError as error:
            fail(f"--out {out_file}: cannot write it ({error.strerror or error})")

    def text() -> str:
        lines = [f"task {data['task_id']}: {len(proofs)} of {state.terms.redundancy} proofs"]
        for p in proofs:
            lines += [
                f"slot {p['slot']} by {p['prover']} (block {p['block']}, tx {p['tx']})",
                f"  public signals {_signals(p)}",
                f"  proof {p['proof']}",
            ]
        if out_file:
            lines.append(f"written to {out_file}")
        return "\n".join(lines)

    emit(as_json, data, text)


# ------------------------------------------------------------------ cancel, reclaim, withdraw


@command(posted, task_argument, account=True)
def cancel(account, task_id, as_json):
    """Close TASK_ID's open slots and credit their escrow back (its requester only)."""
    account = require(account)
    task_id = parse_task_id(task_id)
    registry = client(account)
    closed = following.cancel(registry, account.address, task_id)
    balance = registry.balance(account.address)
    emit(
        as_json,
        {"task_id": "0x" + task_id.hex(), "slots": closed.slots, "refund": closed.refund, "balance": balance},
        f"cancelled {closed.slots} open slot{'s' if closed.slots != 1 else ''} of task 0x{task_id.hex()}: "
        f"{eth(closed.refund)} credited to {account.address} (balance {eth(balance)}; "
        "`ape run requester withdraw` sends it)",
    )


@command(posted, task_argument, account=True)
def reclaim(account, task_id, as_json):
    """Credit back the escrow of TASK_ID's slots nobody filled, once its windows are over.
    Anyone may; the refund goes to the task's requester."""
    account = require(account)
    task_id = parse_task_id(task_id)
    closed, terms = following.reclaim(client(account), task_id)
    slots = f"{closed.slots} unfilled slot{'s' if closed.slots != 1 else ''}"
    emit(
        as_json,
        {
            "task_id": "0x" + task_id.hex(),
            "slots": closed.slots,
            "refund": closed.refund,
            "requester": terms.requester,
        },
        f"reclaimed {slots} of task 0x{task_id.hex()}: {eth(closed.refund)} credited to {terms.requester}",
    )


@command(posted, account=True)
def withdraw(account, as_json):
    """Send the account everything the registry credited to it (refunds, slash shares)."""
    account = require(account)
    receipt, amount = following.withdraw(client(account), account.address)
    emit(
        as_json,
        {"account": account.address, "amount": amount, "tx": "0x" + bytes(receipt["transactionHash"]).hex()},
        f"withdrew {eth(amount)} to {account.address}",
    )


# ------------------------------------------------------------------ re-pricing


@command(
    posted,
    click.argument("task_ids", nargs=-1, metavar="[TASK_ID]..."),
    click.option(
        "--after",
        metavar="SHARE",
        help="Watch TASK_ID: re-price it after this share of its assignment window.  [default: 0.5]",
    ),
    click.option(
        "--step",
        metavar="STEP",
        help=f"Watch TASK_ID: each re-post adds a share of the reward (25%) or ETH (0.001).  "
        f"[default: {repricing.DEFAULT_STEP}]",
    ),
    click.option(
        "--max-price",
        metavar="ETH",
        help="Watch TASK_ID: the most a re-post may cost in all (rewards and fees), ETH; opts it in.",
    ),
    click.option("--watch", is_flag=True, help="Go on until no task is left to re-price."),
    click.option("--poll", metavar="SECONDS", default="2", show_default=True, help="Seconds between looks."),
    click.option(
        "--timeout",
        metavar="SECONDS",
        default="3600",
        show_default=True,
        help="Seconds --watch goes on at most (then exit 1; run again to go on).",
    ),
    REPRICE_STATE,
    account=True,
)
def reprice(account, task_ids, after, step, max_price, watch, poll, timeout, reprice_state, as_json):
    """Re-price the account's watched tasks nobody took: cancel, withdraw the refund, post
    again higher (resuming one cut short). With --max-price, TASK_ID is watched from now."""
    account = require(account)
    ids = ["0x" + parse_task_id(t).hex() for t in task_ids]
    poll_s, timeout_s = whole(poll, "--poll", 1), whole(timeout, "--timeout", 1)
    policy = None
    if max_price is not None:
        if not ids:
            fail("--max-price opts a task in: name it (reprice 0x<task id> --max-price ETH)")
        policy = repricing.make_policy(after, step, parse_ether(max_price, "--max-price"))
    elif after is not None or step is not None:
        fail("--after and --step go with --max-price ETH, the ceiling of a task's re-pricing")
    registry = client(account)
    path = repricing.record_path(registry, reprice_state, deployments_folder())
    record = repricing.load(path, registry.web3.eth.chain_id, registry.address)
    for task_id in ids:
        if policy is not None:
            state = registry.task(task_id)
            if state.terms.requester != account.address:
                fail(f"task {task_id} is {state.terms.requester}'s; only its requester may re-price it")
            repricing.check_repriceable(state.terms, policy)
            repricing.opt_in(record, task_id, account.address, policy)
        elif task_id not in record.entries:
            fail(
                f"task {task_id} is not watched for re-pricing in {path}: give --max-price ETH "
                "(and --after, --step) to watch it"
            )
    report = (lambda o: None) if as_json else (lambda o: click.echo(o.line()))
    outcomes = repricing.run(
        registry,
        record,
        account.address,
        ids or None,
        watch=watch,
        poll=poll_s,
        timeout=timeout_s,
        report=report,
    )
    data = {
        "record": str(path),
        "outcomes": [asdict(o) for o in outcomes],
        "chains": [repricing.summary(record, t) for t in (ids or [o.task_id for o in outcomes])],
    }
    if as_json:
        emit(True, data, "")
    elif not outcomes:
        click.echo(f"no task of {account.address} is watched for re-pricing in {path}")


# ------------------------------------------------------------------ tasks


@command(
    posted,
    click.option(
        "--requester", "requester", metavar="ADDRESS", help="Whose tasks (default: the --account's)."
    ),
    account=True,
)
def tasks(account, requester, as_json):
    """The tasks an address posted, with their slots."""
    if requester is not None:
        requester = parse_address(requester, "--requester")
    elif account is not None:
        requester = account.address
    else:
        fail("whose tasks? pass --requester ADDRESS or --account")
    found = following.posted_tasks(client(), requester)
    listed = [
        {
            "task_id": "0x" + s.task_id.hex(),
            "market_id": s.terms.market_id,
            "mechanism_id": s.terms.mechanism_id,
            "posted_at": s.terms.posted_at,
            "counts": {"open": s.open, "assigned": s.assigned, "proven": s.proven, "closed": s.closed},
        }
        for s in found
    ]
    data = {"requester": requester, "tasks": listed}

    def text() -> str:
        if not found:
            return f"no tasks posted by {requester}"
        rows = [
            (
                "0x" + s.task_id.hex(),
                s.terms.market_id,
                s.terms.mechanism_id,
                when(s.terms.posted_at),
                f"{s.proven}/{s.terms.redundancy}",
                s.open,
                s.assigned,
                s.closed,
            )
            for s in found
        ]
        return table(["task", "market", "mechanism", "posted", "proven", "open", "assigned", "closed"], rows)

    emit(as_json, data, text)
