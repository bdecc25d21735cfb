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
With `--auto` and a price limit (`--max-price`), the router opts the task in itself when
the limit leaves room above the reward it chose (the output says so, and why).

The inputs are the circuit's input signals except the prover's address, from
`--inputs-file`, `--input NAME=VALUE` or `--secret N` (the circuit makes them). They ride
in the TaskPosted event as canonical JSON, so a prover needs nothing else.

Every command checks first what the registry would refuse and says it in one line (exit
code 1, nothing sent); `--json` prints JSON instead of text. Refunds (cancelled or expired
slots, the unspent part of a proven slot's escrow, a share of a slashed collateral) are
credited in the registry: `withdraw` sends them. `reclaim` may be sent by anyone (the
registry allows it; the refund still goes to the task's requester); `cancel` only by the
requester.

This file parses and prints (the commands on tasks once posted: scripts/_requester_posted.py);
the options are read in provingmarket/market/post_options.py, the terms chosen in
provingmarket/market/term_choice.py, checked and posted in provingmarket/market/requests.py;
following a posted task is provingmarket/chain/requester.py.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from provingmarket.chain.client import parse_ether
from provingmarket.cli import (
    CONTEXT,
    client,
    command,
    deployments_folder,
    emit,
    eth,
    handled,
    json_option,
    require,
    table,
    when,
)
from provingmarket.formats import CHAIN, DUTCH, MAX_CAPABILITIES, OPEN_RACE
from provingmarket.market import personas as persona_book
from provingmarket.market import post_options, repricing, requests, term_choice
from provingmarket.market.post_options import DEFAULT_WINDOW, whole
from provingmarket.market.term_choice import Routed
from scripts._requester_posted import REPRICE_STATE, posted


@click.group(context_settings=CONTEXT)
def cli():
    """Post proof tasks and follow them: status, proofs, cancel, reclaim, withdraw."""


# status, proof, cancel, reclaim, withdraw, reprice and tasks: scripts/_requester_posted.py
for _command in posted.commands.values():
    cli.add_command(_command)


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
    options = post_options.PostOptions(**given)
    drafted = post_options.draft(options)  # what needs no chain first
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
    prefs, source = post_options.preferences(weights, persona_name, max_time, max_price, min_redundancy)
    fee_wei = parse_ether(fee, "--fee")
    capabilities = whole(capabilities, "--capabilities", high=MAX_CAPABILITIES)
    registry = client()
    market = requests.open_market(registry, market_id)
    state = term_choice.state_path(registry, router_state, deployments_folder(), create=False)
    requester = account.address if account is not None else None
    routed = term_choice.route(
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


__all__ = ["cli"]
