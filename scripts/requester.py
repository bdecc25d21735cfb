"""The requester's commands: post a task, follow it, fetch its proofs, get unspent escrow back.

    ape run requester post 1 --secret 7 --reward 0.05 --network ethereum:sepolia --account me
    ape run requester post 1 --inputs-file inputs.json --mechanism 3 --fee 0.001 --network ...
    ape run requester status 0x<task id> --wait --timeout 600 --network ...
    ape run requester proof 0x<task id> --out proof.json --network ...
    ape run requester cancel 0x<task id> --network ... --account me
    ape run requester reclaim 0x<task id> --network ... --account me
    ape run requester withdraw --network ... --account me
    ape run requester tasks --requester 0x... --network ...
    ape run requester post 1 --secret 7 --persona rollup --election-mechanism 4 --network ...
    ape run requester personas
    ape run requester post 1 --secret 7 --auto --weights 10,3,1,1 --max-time 900 --network ... --account me
    ape run requester post 1 --secret 7 --auto --persona batch --max-price 0.05 --network ... --account me
    ape run requester route 1 --weights 3,2,10,1 --min-redundancy 2 --network ... [--account me]
    ape run requester post 1 --secret 7 --mechanism 3 --reward 0.01 --reprice-after 0.5 --max-price 0.05 ...
    ape run requester reprice [0x<task id> --max-price 0.05] [--watch] --network ... --account me

`post` defaults, each changed by its option (or by a persona, below):

- mechanism 1, the OPEN_RACE: it needs no frontend and no keeper; every prover in the
  market that covers the capabilities and has the collateral free may prove at once, and
  the first `--redundancy` valid proofs are paid the full reward. `--mechanism 2` (DUTCH)
  lets a prover lock a slot at a price rising from `--start-price` (default: half the
  market's price index, at least its least reward) to `--reward` over `--ramp` seconds
  (default: the assignment window);
  `--mechanism 3..` names a registered mechanism, whose frontends assign and earn `--fee`.
  `--chain auction:30,orderbook:60,race` names a fallback chain instead: each mechanism (a
  registered one by name or id, `dutch`, `race`) may take the task's slots for its window in
  turn, with no transaction between; the last link may leave its window out (a race then
  lasts `--proving-window`). docs/mechanisms.md, "Fallback chains".
- reward and collateral: the market's minimums; no frontend fee; redundancy 1;
  proving window 600 s (for an open race, the race's length); assignment window 600 s
  (none for an open race); no capabilities; no decay; a random 64-bit salt (anvil can give
  two blocks one timestamp, and identical terms posted then would be one task).

`--persona NAME` fills the terms from a ready-made requester profile
(provingmarket/market/personas.py; `ape run requester personas` lists them): `arbitrage` posts an
open race of 30 s with a decaying reward, `rollup` an election of 3 provers with long
windows and 5x collateral, `batch` a sealed-bid auction or, without
`--auction-mechanism`, the built-in Dutch auction. A registered mechanism's id is per
deployment, so a persona that needs one takes it from `--election-mechanism ID` or
`--auction-mechanism ID`. Options given explicitly still override the persona's terms;
the command says which mechanism and terms the persona chose, and why.

`--auto` lets the router (provingmarket/market/router.py) choose the mechanism and every term
from the requester's preferences: `--weights S,C,Sa,CR` (speed, cost, safety, censorship
resistance, each 0 or more) or a persona's weights (`--persona NAME`), and hard limits
`--max-time SECONDS` (to the proof), `--max-price ETH` (everything the task may cost) and
`--min-redundancy N`. Before choosing it learns from the chain how the tasks it posted
before were served (those settled since), then says what it chose and why. What it learnt
is kept in `--router-state FILE` (default: `router-<chain id>.json` next to the
deployment record). A registered mechanism's frontend is offered `--fee` per slot. Without
`--auto`, `--persona` posts the persona's fixed terms (below). `route` takes the same
options and says what `post --auto` would choose, posting nothing.

`--reprice-after SHARE` (with `--reprice-step`, default 25%, and `--max-price`, the
ceiling) opts the task in to re-pricing: `reprice` cancels it once that share of its
assignment window has passed with no assignment, withdraws the refund and posts it again
higher (provingmarket/market/repricing.py); `--watch` keeps doing so.

The inputs are the circuit's input signals except the prover's address, from
`--inputs-file`, `--input NAME=VALUE` or `--secret N` (the circuit makes them). They ride
in the TaskPosted event as canonical JSON, so a prover needs nothing else.

Every command checks first what the registry would refuse and says it in one line (exit
code 1, nothing sent); `--json` prints JSON instead of text. Refunds (cancelled or expired
slots, the unspent part of a proven slot's escrow, a share of a slashed collateral) are
credited in the registry: `withdraw` sends them. `reclaim` may be sent by anyone (the
registry allows it; the refund still goes to the task's requester); `cancel` only by the
requester.

This file parses and prints; the terms, their checks and the post are
provingmarket/market/requests.py, following a posted task provingmarket/chain/requester.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from provingmarket.chain import requester as following
from provingmarket.chain.client import ClientError, parse_address, parse_ether, parse_task_id
from provingmarket.chain.tasks import circuit_of
from provingmarket.cli import (
    CONTEXT,
    client,
    command,
    deployments_folder,
    emit,
    eth,
    fail,
    handled,
    json_option,
    require,
    table,
    when,
)
from provingmarket.formats import CHAIN, DUTCH, MAX_CAPABILITIES, OPEN_RACE, ZERO_ADDRESS, TaskTerms
from provingmarket.market import personas as persona_book
from provingmarket.market import repricing, requests
from provingmarket.market.requests import DEFAULT_WINDOW, Routed, whole
from provingmarket.proving.circuits import CircuitError


@click.group(context_settings=CONTEXT)
def cli():
    """Post proof tasks and follow them: status, proofs, cancel, reclaim, withdraw."""


# ------------------------------------------------------------------ personas


def _duration(seconds: int) -> str:
    if seconds and seconds % 3_600 == 0:
        return f"{seconds // 3_600} h"
    if seconds and seconds % 60 == 0 and seconds >= 600:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _reward_and_windows(t: dict) -> tuple[str, str]:
    """A task's reward and windows in words, from its terms by name."""
    reward = eth(t["max_reward"]) + (f" decaying to {eth(t['decay_floor'])}" if t["decay"] else "")
    if t["mechanism_id"] == OPEN_RACE:
        windows = f"a {_duration(t['proving_window'])} race"
    else:
        windows = f"{_duration(t['assign_window'])} to assign, {_duration(t['proving_window'])} to prove"
    if t["mechanism_id"] == DUTCH:
        windows += f", price from {eth(t['start_price'])} over {_duration(t['ramp'])}"
    return reward, windows


def _persona_line(posted: requests.Posted, chose: dict) -> str:
    """One line: the mechanism and terms the persona chose, and why."""
    terms = posted.terms
    reward, windows = _reward_and_windows(asdict(terms))
    provers = f"{terms.redundancy} prover{'s' if terms.redundancy != 1 else ''}"
    given = f"; given: {', '.join(chose['overridden'])}" if chose["overridden"] else ""
    return (
        f"persona {posted.persona.name}: mechanism {terms.mechanism_id} ({posted.mechanism}), {provers}, "
        f"reward {reward}, collateral {eth(terms.collateral)}, {windows}; why: {posted.plan.why}{given}"
    )


def _plan_data(plan) -> dict:
    return {
        "mechanism": plan.mechanism,
        "needs": None if plan.mechanism in persona_book.BUILT_IN_ROLES else f"--{plan.mechanism}-mechanism",
        "redundancy": plan.redundancy,
        "assign_window": plan.assign_window,
        "proving_window": plan.proving_window,
        "reward_x": plan.reward_x,
        "collateral_x": plan.collateral_x,
        "decay": plan.decay,
        "floor_x": plan.floor_x,
        "start_price_x": plan.start_price_x,
        "why": plan.why,
    }


@cli.command("personas")
@json_option
@handled
def list_personas(as_json):
    """The requester profiles `post --persona` takes: weights, mechanism and terms, why.

    Amounts are multiples of the market's least reward and collateral. Needs no network."""
    book = persona_book.PERSONAS.values()
    data = {
        "personas": [
            {
                "name": p.name,
                "description": p.description,
                "weights": asdict(p.weights),
                "plans": [_plan_data(plan) for plan in p.plans],
            }
            for p in book
        ]
    }

    def text() -> str:
        rows = []
        for p in book:
            w = p.weights
            for i, plan in enumerate(p.plans):
                mechanism = plan.mechanism
                if plan.mechanism not in persona_book.BUILT_IN_ROLES:
                    mechanism += f" (--{plan.mechanism}-mechanism)"
                elif i > 0:
                    mechanism += " (else)"
                reward = f"{plan.reward_x}x" + (f" -> {plan.floor_x}x" if plan.decay else "")
                windows = (
                    f"race {_duration(plan.proving_window)}"
                    if plan.mechanism == "open race"
                    else f"{_duration(plan.assign_window)} / {_duration(plan.proving_window)}"
                )
                head = (
                    (p.name, f"{w.speed}/{w.cost}/{w.safety}/{w.censorship_resistance}")
                    if i == 0
                    else ("", "")
                )
                rows.append((*head, mechanism, plan.redundancy, windows, reward, f"{plan.collateral_x}x"))
        headers = [
            "persona",
            "speed/cost/safety/cr",
            "mechanism",
            "N",
            "assign / prove",
            "reward",
            "collateral",
        ]
        notes = []
        for p in book:
            notes.append(f"{p.name}, {p.description}")
            notes += [f"  {plan.mechanism}: {plan.why}" for plan in p.plans]
        footer = (
            "reward and collateral: multiples of the market's least; -> the floor a decaying reward falls to"
        )
        return "\n".join([table(headers, rows), "", footer, "", *notes])

    emit(as_json, data, text)


# ------------------------------------------------------------------ routing


def _route_lines(routed: Routed, saved: bool = True) -> list[str]:
    choice = routed.choice
    seen = ", ".join(
        f"{name} {u:.2f} over {n}"
        for name, (u, n) in sorted(choice.estimates.items(), key=lambda x: -x[1][0])
    )
    return [
        f"route: {choice.describe()}",
        f"why: {choice.reason}",
        f"preferences ({routed.source}): {routed.prefs.describe()}",
        f"mean utility so far for these preferences: {seen or 'none observed yet'}; "
        f"{routed.learnt} settled task{'s' if routed.learnt != 1 else ''} newly learnt from the chain; "
        f"state {routed.state}{'' if saved else ' (not written: a dry run)'}",
    ]


capabilities_option = click.option(
    "--capabilities",
    metavar="BITMASK",
    default="0",
    show_default=True,
    help="Hardware bitmask a prover must cover.",
)
# The options `post --auto` and `route` share: preferences, limits, where the router keeps
# what it learnt.
ROUTE_OPTIONS = (
    click.option(
        "--weights",
        metavar="S,C,Sa,CR",
        help="Routing: your weights of speed, cost, safety and censorship resistance, each 0 "
        "or more (e.g. 10,3,1,1; only their ratios matter).",
    ),
    click.option("--max-time", metavar="SECONDS", help="Routing: the latest a proof may come after posting."),
    click.option(
        "--max-price",
        metavar="ETH",
        help="Routing, and the ceiling of --reprice-after: the most the task may cost in all "
        "(rewards and frontend fees), ETH.",
    ),
    click.option("--min-redundancy", metavar="N", help="Routing: the fewest independent proofs you need."),
    click.option(
        "--router-state",
        metavar="FILE",
        help="Routing: where the router keeps what it learnt.  [default: router-<chain id>.json "
        "next to the deployment record]",
    ),
)


# ------------------------------------------------------------------ post

POST_OPTIONS = (
    click.argument("market_id"),
    click.option(
        "--inputs-file",
        metavar="FILE",
        help="JSON object of the circuit's inputs except the prover's address.",
    ),
    click.option(
        "--input",
        "input_pairs",
        metavar="NAME=VALUE",
        multiple=True,
        help="One input as NAME=VALUE (repeat).",
    ),
    click.option("--secret", metavar="N", help="Let the circuit make the inputs from this secret."),
    click.option(
        "--input-uri",
        metavar="URI",
        default="",
        help="Where the prover input can also be fetched (optional).",
    ),
    click.option(
        "--reward", metavar="ETH", help="Most each prover is paid, ETH.  [default: the market's least reward]"
    ),
    click.option(
        "--fee",
        metavar="ETH",
        default="0",
        show_default=True,
        help="Frontend fee per slot, ETH (registered mechanisms).",
    ),
    click.option(
        "--assign-window",
        metavar="SECONDS",
        help=f"Seconds slots may be assigned.  [default: {DEFAULT_WINDOW}; open race: none]",
    ),
    click.option(
        "--proving-window",
        metavar="SECONDS",
        help=f"Seconds a prover has.  [default: {DEFAULT_WINDOW}]",
    ),
    click.option(
        "--collateral",
        metavar="ETH",
        help="Stake locked per prover, ETH.  [default: the market's least collateral]",
    ),
    click.option("--redundancy", metavar="N", help="Provers that each prove and are paid.  [default: 1]"),
    click.option(
        "--mechanism", metavar="ID", help=f"1 open race, 2 dutch, 3.. registered.  [default: {OPEN_RACE}]"
    ),
    click.option(
        "--chain",
        metavar="LINKS",
        help="A fallback chain instead of --mechanism: up to 3 mechanisms, each with its window in "
        "seconds, tried in turn (auction:30,orderbook:60,race); the last may leave its window out.",
    ),
    capabilities_option,
    click.option("--decay/--no-decay", default=None, help="The reward decays to the floor.  [default: no]"),
    click.option(
        "--decay-floor",
        metavar="ETH",
        help="What a decaying reward falls to at the deadline, ETH.  [default: 0]",
    ),
    click.option(
        "--start-price",
        metavar="ETH",
        help=(
            "Dutch: the price at posting, ETH.  "
            "[default: half the market's price index, at least its least reward]"
        ),
    ),
    click.option(
        "--ramp",
        metavar="SECONDS",
        help="Dutch: seconds for the price to reach --reward.  [default: the assignment window]",
    ),
    click.option(
        "--salt", metavar="N", help="Any number; tells apart identical tasks.  [default: random, 64 bits]"
    ),
    click.option(
        "--persona",
        "persona_name",
        metavar="NAME",
        help=f"Fill the terms from a requester profile: {', '.join(persona_book.PERSONAS)} "
        "(`personas` lists them); explicit options override.",
    ),
    click.option(
        "--election-mechanism", metavar="ID", help="The registered election mechanism a persona may use."
    ),
    click.option(
        "--auction-mechanism", metavar="ID", help="The registered auction mechanism a persona may use."
    ),
    click.option(
        "--auto",
        is_flag=True,
        help="Let the router choose the mechanism and terms from --weights or --persona, within "
        "--max-time, --max-price and --min-redundancy.",
    ),
)


REPRICE_STATE = click.option(
    "--reprice-state",
    metavar="FILE",
    help="Re-pricing: the record of tasks watched and re-posted.  [default: repricing-<chain id>.json "
    "next to the deployment record]",
)
# The options that opt a task in to re-pricing at `post`.
REPRICE_OPTIONS = (
    click.option(
        "--reprice-after",
        metavar="SHARE",
        help="Re-price the task if nobody took it after this share of its assignment window (e.g. 0.5): "
        "cancel it and post it again at a higher reward, up to --max-price (`reprice` does it).",
    ),
    click.option(
        "--reprice-step",
        metavar="STEP",
        help=f"Re-pricing: how much each re-post adds, a share of the reward (25%) or ETH (0.001).  "
        f"[default: {repricing.DEFAULT_STEP}]",
    ),
    REPRICE_STATE,
)


def _post_text(posted: requests.Posted, chose: dict | None) -> str:
    """What `post` says: the persona's or the router's choice, then the task."""
    terms = posted.terms
    if terms.mechanism_id == OPEN_RACE:
        window = f"race until {when(terms.posted_at + terms.proving_window)}"
    else:
        window = (
            f"assignable until {when(terms.posted_at + terms.assign_window)}, "
            f"{terms.proving_window} s to prove"
        )
    mechanism = f"mechanism {terms.mechanism_id} ({posted.mechanism})"
    if terms.mechanism_id >= CHAIN:
        mechanism = f"chain: {posted.mechanism}"
    return (
        (_persona_line(posted, chose) + "\n" if chose else "")
        + ("\n".join(_route_lines(posted.routed)) + "\n" if posted.routed else "")
        + f"task {posted.task_id}\n"
        f"posted in market {terms.market_id} ({posted.circuit}), {mechanism}; "
        f"escrow {eth(posted.escrow)} = {terms.redundancy} x "
        f"({eth(terms.max_reward)} reward + {eth(terms.frontend_fee)} fee)\n"
        f"{window}; inputs {posted.prover_input.decode()}"
        + (
            f"\nre-pricing: {posted.repricing.policy.describe()}; `ape run requester reprice --watch` "
            f"does it (record {posted.repricing_record})"
            if posted.repricing
            else ""
        )
    )


@command(cli, *POST_OPTIONS, *ROUTE_OPTIONS, *REPRICE_OPTIONS, account=True)
def post(account, as_json, **given):
    """Post a task in MARKET_ID and escrow redundancy x (reward + fee); with --auto, on the
    mechanism and terms the router chooses for your preferences."""
    account = require(account)
    options = requests.PostOptions(**given)
    drafted = requests.draft(options)  # what needs no chain first
    posted = requests.post(client(account), account.address, options, drafted, deployments_folder())
    if posted.warning:
        click.echo(posted.warning, err=True)
    chose = None
    if posted.persona is not None:
        chose = {
            "name": posted.persona.name,
            "weights": asdict(posted.persona.weights),
            "plan": posted.plan.mechanism,
            "mechanism_id": posted.terms.mechanism_id,
            "why": posted.plan.why,
            "overridden": options.given_terms(),
        }
    data = {
        "task_id": posted.task_id,
        "market_id": posted.terms.market_id,
        "circuit": posted.circuit,
        "mechanism": posted.mechanism,
        "escrow": posted.escrow,
        "inputs": posted.inputs,
        "terms": asdict(posted.terms),
        "tx": posted.tx,
        "block": posted.block,
        **({"persona": chose} if chose else {}),
        **({"route": posted.routed.data()} if posted.routed else {}),
        **(
            {"repricing": {**posted.repricing.policy.data(), "record": str(posted.repricing_record)}}
            if posted.repricing
            else {}
        ),
    }
    emit(as_json, data, lambda: _post_text(posted, chose))


@command(
    cli,
    click.argument("market_id"),
    click.option(
        "--persona",
        "persona_name",
        metavar="NAME",
        help=f"Route with a persona's weights: {', '.join(persona_book.PERSONAS)}.",
    ),
    *ROUTE_OPTIONS,
    click.option(
        "--fee",
        metavar="ETH",
        default="0",
        show_default=True,
        help="Frontend fee per slot offered through a registered mechanism, ETH.",
    ),
    capabilities_option,
    account=True,
)
def route(
    account,
    market_id,
    persona_name,
    weights,
    max_time,
    max_price,
    min_redundancy,
    router_state,
    fee,
    capabilities,
    as_json,
):
    """What `post --auto` would choose in MARKET_ID for your preferences, and why. Posts
    nothing and writes nothing; with --account, your own tasks' history counts too."""
    market_id = whole(market_id, "MARKET_ID")
    prefs, source = requests.preferences(weights, persona_name, max_time, max_price, min_redundancy)
    fee_wei = parse_ether(fee, "--fee")
    capabilities = whole(capabilities, "--capabilities", high=MAX_CAPABILITIES)
    registry = client()
    market = requests.open_market(registry, market_id)
    state = requests.state_path(registry, router_state, deployments_folder(), create=False)
    requester = account.address if account is not None else None
    routed = requests.route(
        registry, market, prefs, source, requester, state, capabilities=capabilities, fee=fee_wei
    )
    t = routed.choice.terms
    escrow = t["redundancy"] * (t["max_reward"] + t["frontend_fee"])
    data = {"market_id": market_id, "requester": requester, "escrow": escrow, "posted": False}
    data.update(routed.data())

    def text() -> str:
        reward, windows = _reward_and_windows(t)
        lines = _route_lines(routed, saved=False)
        lines.insert(
            1,
            f"terms: mechanism {t['mechanism_id']} ({routed.choice.arm.name}), {t['redundancy']} x reward up "
            f"to {reward} + fee {eth(t['frontend_fee'])}, collateral {eth(t['collateral'])}, {windows}; "
            f"escrow {eth(escrow)}",
        )
        return "\n".join([*lines, "dry run: nothing posted (`post --auto` with the same options posts it)"])

    emit(as_json, data, text)


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
    cli,
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
    cli,
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


@command(cli, task_argument, account=True)
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


@command(cli, task_argument, account=True)
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


@command(cli, account=True)
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
    cli,
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
    cli,
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


__all__ = ["cli"]
