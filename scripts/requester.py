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

`post` defaults, each changed by its option (or by a persona, below):

- mechanism 1, the OPEN_RACE: it needs no frontend and no keeper; every prover in the
  market that covers the capabilities and has the collateral free may prove at once, and
  the first `--redundancy` valid proofs are paid the full reward. `--mechanism 2` (DUTCH)
  lets a prover lock a slot at a price rising from `--start-price` (default: the market's
  least reward) to `--reward` over `--ramp` seconds (default: the assignment window);
  `--mechanism 3..` names a registered mechanism, whose frontends assign and earn `--fee`.
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

The inputs are the circuit's input signals except the prover's address, from
`--inputs-file`, `--input NAME=VALUE` or `--secret N` (the circuit makes them). They ride
in the TaskPosted event as canonical JSON, so a prover needs nothing else.

Every command checks first what the registry would refuse and says it in one line (exit
code 1, nothing sent); `--json` prints JSON instead of text. Refunds (cancelled or expired
slots, the unspent part of a proven slot's escrow, a share of a slashed collateral) are
credited in the registry: `withdraw` sends them. `reclaim` may be sent by anyone (the
registry allows it; the refund still goes to the task's requester); `cancel` only by the
requester.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, replace
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option
from eth_utils import keccak

from provingmarket.chain.client import (
    ClientError,
    RegistryClient,
    TaskState,
    chain_time,
    parse_address,
    parse_ether,
    parse_task_id,
)
from provingmarket.cli import (
    BUILT_IN,
    client,
    deployments_folder,
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
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_NONE,
    DUTCH,
    MAX_ASSIGN_WINDOW,
    MAX_CAPABILITIES,
    MAX_COLLATERAL,
    MAX_PROVER_INPUT,
    MAX_PROVING_WINDOW,
    MAX_REDUNDANCY,
    MAX_REWARD,
    OPEN_RACE,
    ZERO_ADDRESS,
    TaskTerms,
)
from provingmarket.market import personas as persona_book
from provingmarket.market import qos, routing
from provingmarket.market.preferences import PreferenceError, Preferences, parse_weights
from provingmarket.market.router import Choice, Infeasible, Router
from provingmarket.proving.circuits import Circuit, CircuitError

DEFAULT_WINDOW = 600  # seconds, for both windows
MAX_URI = 256  # characters, as Registry.vy
UINT256 = 2**256 - 1


@click.group()
def cli():
    """Post proof tasks and follow them: status, proofs, cancel, reclaim, withdraw."""


# ------------------------------------------------------------------ parsing


def _integer(value: str, what: str, low: int = 0, high: int = UINT256) -> int:
    """A whole number as a person writes it (10, 0x0a, 0b1010), within [low, high]."""
    text = str(value).strip().replace("_", "")
    try:
        number = int(text, 0)
    except ValueError:
        fail(f"{what} {value!r} is not a whole number")
    if number < low:
        fail(f"{what} {value!r} is {'negative' if number < 0 else f'below {low}'}")
    if number > high:
        fail(f"{what} {value!r} is too large (at most {high})")
    return number


def _task_id(value: str) -> bytes:
    try:
        return parse_task_id(value)
    except ClientError as error:
        fail(str(error))


def _now(registry: RegistryClient) -> int:
    """The time the next transaction will be checked at (see client.chain_time)."""
    return chain_time(registry.web3)


def _mechanism_name(registry, mechanism_id: int) -> str:
    if mechanism_id in BUILT_IN:
        return BUILT_IN[mechanism_id]
    for e in registry.events(["MechanismRegistered"]):
        if e.mechanism_id == mechanism_id:
            return e.args["name"]  # (e.name is the event's)
    return "?"


def _circuit_of(registry, market_id: int) -> Circuit:
    record = registry.deployment.markets.get(market_id)
    if record is None:
        fail(
            f"market {market_id}'s circuit is not recorded for this network (recorded: "
            f"{', '.join(map(str, sorted(registry.deployment.markets))) or 'none'}); "
            "`ape run operator market create` records the markets it opens"
        )
    return Circuit.load(record.circuit)


def _read_inputs(circuit: Circuit, inputs_file: str | None, pairs: tuple[str, ...], secret: str | None):
    """The task's inputs from exactly one source, checked against the circuit."""
    sources = [
        name
        for name, given in (("--inputs-file", inputs_file), ("--input", pairs), ("--secret", secret))
        if given not in (None, ())
    ]
    example = json.dumps(circuit.inputs_for(7))
    if len(sources) != 1:
        fail(
            ("give the task's inputs with one of --inputs-file, --input NAME=VALUE or --secret N"
             if not sources else f"give the inputs one way, not with {' and '.join(sources)}")
            + f" (circuit {circuit.name} takes e.g. {example})"
        )  # fmt: skip
    if secret is not None:
        return circuit.inputs_for(_integer(secret, "--secret"))
    if inputs_file is not None:
        path = Path(inputs_file)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            fail(f"--inputs-file {inputs_file}: no such file")
        except (OSError, UnicodeDecodeError) as error:
            fail(f"--inputs-file {inputs_file}: cannot read it ({error})")
        except json.JSONDecodeError as error:
            fail(f"--inputs-file {inputs_file}: not valid JSON ({error})")
        if not isinstance(data, dict):
            fail(
                f"--inputs-file {inputs_file}: expected a JSON object of circuit {circuit.name}'s "
                f"inputs like {example}, got {type(data).__name__}"
            )
    else:
        data = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name.strip() or not value.strip():
                fail(f"--input {pair!r} is not NAME=VALUE (e.g. --input x=7)")
            if name.strip() in data:
                fail(f"--input {name.strip()} is given twice")
            data[name.strip()] = value.strip()
    try:
        inputs = circuit.check_inputs(data)
    except CircuitError as error:
        fail(f"{'--inputs-file ' + inputs_file + ': ' if inputs_file else ''}{error}")
    _check_satisfiable(circuit, inputs)
    return inputs


def _check_satisfiable(circuit: Circuit, inputs: dict[str, int]) -> None:
    """The sample kinds compute their public inputs from their one private input: the
    inputs must be what the circuit computes, or no prover can ever prove the task."""
    if len(circuit.private) != 1:
        return
    secret_name = circuit.private[0]
    expected = circuit.inputs_for(inputs[secret_name])
    for name, value in expected.items():
        if name in inputs and inputs[name] != value:
            fail(
                f"the inputs do not satisfy circuit {circuit.name}: with {secret_name} = "
                f"{inputs[secret_name]} it gives {name} = {value}, not {inputs[name]}; no prover could "
                f"prove this task (correct {name}, or let the circuit make the inputs with --secret)"
            )


# ------------------------------------------------------------------ personas


def _persona_plan(name: str, election: str | None, auction: str | None, mechanism_id: int | None):
    """The persona, the plan it posts with and its mechanism id; one line if it cannot."""
    roles = {
        role: None if value is None else _integer(value, f"--{role}-mechanism", low=DUTCH + 1)
        for role, value in ((persona_book.ELECTION, election), (persona_book.AUCTION, auction))
    }
    try:
        persona = persona_book.persona(name)
        plan, chosen_id = persona_book.choose(persona, roles, mechanism_id)
    except persona_book.MissingMechanism as error:
        fail(
            f"persona {error.persona} posts through the {error.role} mechanism, whose id each deployment "
            f"registers: pass --{error.role}-mechanism ID (or name any mechanism with --mechanism ID)"
        )
    except persona_book.PersonaError as error:
        fail(str(error))
    return persona, plan, chosen_id


def _duration(seconds: int) -> str:
    if seconds and seconds % 3_600 == 0:
        return f"{seconds // 3_600} h"
    if seconds and seconds % 60 == 0 and seconds >= 600:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _persona_line(persona, plan, terms: TaskTerms, mechanism_id: int, label: str, chose: dict) -> str:
    """One line: the mechanism and terms the persona chose, and why."""
    reward = eth(terms.max_reward) + (f" decaying to {eth(terms.decay_floor)}" if terms.decay else "")
    if mechanism_id == OPEN_RACE:
        windows = f"a {_duration(terms.proving_window)} race"
    else:
        windows = f"{_duration(terms.assign_window)} to assign, {_duration(terms.proving_window)} to prove"
    if mechanism_id == DUTCH:
        windows += f", price from {eth(terms.start_price)} over {_duration(terms.ramp)}"
    provers = f"{terms.redundancy} prover{'s' if terms.redundancy != 1 else ''}"
    given = f"; given: {', '.join(chose['overridden'])}" if chose["overridden"] else ""
    return (
        f"persona {persona.name}: mechanism {mechanism_id} ({label}), {provers}, reward {reward}, "
        f"collateral {eth(terms.collateral)}, {windows}; why: {plan.why}{given}"
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

LIMIT_OPTIONS = {"max_time": "--max-time", "max_price": "--max-price", "min_redundancy": "--min-redundancy"}


def _preferences(
    weights: str | None,
    persona_name: str | None,
    max_time: str | None,
    max_price: str | None,
    min_redundancy: str | None,
) -> tuple[Preferences, str]:
    """The preferences to route with and where their weights came from; one line if
    they cannot be used. Needs no chain."""
    limits = {
        "max_time": None if max_time is None else _integer(max_time, "--max-time", low=1),
        "max_price": None if max_price is None else parse_ether(max_price, "--max-price"),
        "min_redundancy": None
        if min_redundancy is None
        else _integer(min_redundancy, "--min-redundancy", low=1, high=MAX_REDUNDANCY),
    }
    if limits["max_price"] == 0:
        fail("--max-price is 0: every task costs at least the market's least reward")
    if weights is not None and persona_name is not None:
        fail("give the weights one way: --weights S,C,Sa,CR or --persona NAME, not both")
    if weights is None and persona_name is None:
        fail(
            "the router needs your preferences: give --weights S,C,Sa,CR (speed, cost, safety, "
            f"censorship resistance, e.g. 10,3,1,1) or --persona NAME ({', '.join(persona_book.PERSONAS)})"
        )
    try:
        if persona_name is not None:
            prefs = routing.persona_preferences(persona_name, **limits)
            return prefs, f"persona {persona_book.persona(persona_name).name}"
        given = {k: v for k, v in limits.items() if v is not None}
        return Preferences(*parse_weights(weights), **given), "--weights"
    except (PreferenceError, persona_book.PersonaError) as error:
        fail(str(error))


def _state_path(registry: RegistryClient, given: str | None, create: bool = True) -> Path:
    """Where the router keeps what it learnt: --router-state, else next to the deployment
    record, one file per chain."""
    path = Path(given) if given else deployments_folder() / f"router-{registry.web3.eth.chain_id}.json"
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"--router-state {path}: cannot make its folder ({error.strerror or error})")
    if path.is_dir():
        fail(f"--router-state {path} is a folder; give a file")
    return path


def _settled_events(events: list, pending: set[str]) -> list:
    """The events the router needs to measure its pending tasks: all but the assignments
    and proofs of other tasks (each of those costs a block header to time)."""
    return [
        e
        for e in events
        if e.name not in ("TaskAssigned", "TaskProven") or "0x" + bytes(e.args["task_id"]).hex() in pending
    ]


def _route(
    registry: RegistryClient,
    market,
    prefs: Preferences,
    requester: str | None,
    state: Path,
    *,
    capabilities: int,
    fee: int,
) -> tuple[Router, Choice, int]:
    """The router with what it learnt from the chain, its choice for one task, and how
    many settled tasks it learnt from now; one line if no mechanism meets the limits."""
    events = registry.events()
    try:
        view = routing.market_view(events, market.market_id, capabilities)
    except ValueError as error:
        fail(str(error))
    if not view.provers:
        covering = f" covering capabilities {capabilities:#x}" if capabilities else ""
        fail(
            f"market {market.market_id} has no prover{covering} with at least its least collateral "
            f"({eth(market.min_collateral)}) staked and capacity free to take a task: nothing posted"
        )
    candidates = [a if a.mechanism_id in BUILT_IN else replace(a, fee=fee) for a in routing.arms(events)]
    if market.binding == BINDING_NONE:  # a proof could be copied: the registry takes no race
        candidates = [a for a in candidates if a.mechanism_id != OPEN_RACE]
    router = Router(routing.routable(candidates, view))
    try:
        router.load(state)
    except ValueError as error:
        fail(str(error))
    pending = set(router.state.pending)
    learnt = 0
    if pending:
        learnt = router.learn(qos.measure(_settled_events(events, pending), qos.block_clock(registry.web3)))
    try:
        choice = router.choose(prefs, view, requester)
    except Infeasible as error:
        fail(f"{LIMIT_OPTIONS.get(error.limit, error.limit)}: {error}")
    return router, choice, learnt


def _route_data(choice: Choice, prefs: Preferences, source: str, learnt: int, state: Path) -> dict:
    return {
        "arm": choice.arm.name,
        "mechanism_id": choice.arm.mechanism_id,
        "choice": choice.describe(),
        "reason": choice.reason,
        "level": choice.level,
        "terms": choice.terms,
        "estimates": {name: {"utility": u, "tasks": n} for name, (u, n) in choice.estimates.items()},
        "preferences": {**asdict(prefs), "from": source},
        "learnt": learnt,
        "state": str(state),
    }


def _route_lines(
    choice: Choice, prefs: Preferences, source: str, learnt: int, state: Path, saved: bool = True
) -> list[str]:
    seen = ", ".join(
        f"{name} {u:.2f} over {n}"
        for name, (u, n) in sorted(choice.estimates.items(), key=lambda x: -x[1][0])
    )
    return [
        f"route: {choice.describe()}",
        f"why: {choice.reason}",
        f"preferences ({source}): {prefs.describe()}",
        f"mean utility so far for these preferences: {seen or 'none observed yet'}; "
        f"{learnt} settled task{'s' if learnt != 1 else ''} newly learnt from the chain; "
        f"state {state}{'' if saved else ' (not written: a dry run)'}",
    ]


# ------------------------------------------------------------------ post


def route_options(function):
    """The options `post --auto` and `route` share: preferences, limits, where the router
    keeps what it learnt."""
    for option in reversed(
        (
            click.option(
                "--weights",
                metavar="S,C,Sa,CR",
                help="Routing: your weights of speed, cost, safety and censorship resistance, each 0 "
                "or more (e.g. 10,3,1,1; only their ratios matter).",
            ),
            click.option(
                "--max-time", metavar="SECONDS", help="Routing: the latest a proof may come after posting."
            ),
            click.option(
                "--max-price",
                metavar="ETH",
                help="Routing: the most the task may cost in all (rewards and frontend fees), ETH.",
            ),
            click.option(
                "--min-redundancy", metavar="N", help="Routing: the fewest independent proofs you need."
            ),
            click.option(
                "--router-state",
                metavar="FILE",
                help="Routing: where the router keeps what it learnt.  [default: router-<chain id>.json "
                "next to the deployment record]",
            ),
        )
    ):
        function = option(function)
    return function


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("market_id")
@click.option(
    "--inputs-file", metavar="FILE", help="JSON object of the circuit's inputs except the prover's address."
)
@click.option(
    "--input", "input_pairs", metavar="NAME=VALUE", multiple=True, help="One input as NAME=VALUE (repeat)."
)
@click.option("--secret", metavar="N", help="Let the circuit make the inputs from this secret.")
@click.option(
    "--input-uri", metavar="URI", default="", help="Where the prover input can also be fetched (optional)."
)
@click.option(
    "--reward", metavar="ETH", help="Most each prover is paid, ETH.  [default: the market's least reward]"
)
@click.option(
    "--fee",
    metavar="ETH",
    default="0",
    show_default=True,
    help="Frontend fee per slot, ETH (registered mechanisms).",
)
@click.option(
    "--assign-window",
    metavar="SECONDS",
    help=f"Seconds slots may be assigned.  [default: {DEFAULT_WINDOW}; open race: none]",
)
@click.option(
    "--proving-window",
    metavar="SECONDS",
    help=f"Seconds a prover has.  [default: {DEFAULT_WINDOW}]",
)
@click.option(
    "--collateral",
    metavar="ETH",
    help="Stake locked per prover, ETH.  [default: the market's least collateral]",
)
@click.option("--redundancy", metavar="N", help="Provers that each prove and are paid.  [default: 1]")
@click.option(
    "--mechanism", metavar="ID", help=f"1 open race, 2 dutch, 3.. registered.  [default: {OPEN_RACE}]"
)
@click.option(
    "--capabilities",
    metavar="BITMASK",
    default="0",
    show_default=True,
    help="Hardware bitmask a prover must cover.",
)
@click.option("--decay/--no-decay", default=None, help="The reward decays to the floor.  [default: no]")
@click.option(
    "--decay-floor", metavar="ETH", help="What a decaying reward falls to at the deadline, ETH.  [default: 0]"
)
@click.option(
    "--start-price",
    metavar="ETH",
    help="Dutch: the price at posting, ETH.  [default: the market's least reward]",
)
@click.option(
    "--ramp",
    metavar="SECONDS",
    help="Dutch: seconds for the price to reach --reward.  [default: the assignment window]",
)
@click.option(
    "--salt", metavar="N", help="Any number; tells apart identical tasks.  [default: random, 64 bits]"
)
@click.option(
    "--persona",
    "persona_name",
    metavar="NAME",
    help=f"Fill the terms from a requester profile: {', '.join(persona_book.PERSONAS)} "
    "(`personas` lists them); explicit options override.",
)
@click.option(
    "--election-mechanism", metavar="ID", help="The registered election mechanism a persona may use."
)
@click.option("--auction-mechanism", metavar="ID", help="The registered auction mechanism a persona may use.")
@click.option(
    "--auto",
    is_flag=True,
    help="Let the router choose the mechanism and terms from --weights or --persona, within "
    "--max-time, --max-price and --min-redundancy.",
)
@route_options
@json_option
@handled
def post(
    account,
    market_id,
    inputs_file,
    input_pairs,
    secret,
    input_uri,
    reward,
    fee,
    assign_window,
    proving_window,
    collateral,
    redundancy,
    mechanism,
    capabilities,
    decay,
    decay_floor,
    start_price,
    ramp,
    salt,
    persona_name,
    election_mechanism,
    auction_mechanism,
    auto,
    weights,
    max_time,
    max_price,
    min_redundancy,
    router_state,
    as_json,
):
    """Post a task in MARKET_ID and escrow redundancy x (reward + fee); with --auto, on the
    mechanism and terms the router chooses for your preferences."""
    account = require(account)
    # What needs no chain first.
    market_id = _integer(market_id, "MARKET_ID")
    given = {
        option: value is not None
        for option, value in (
            ("--mechanism", mechanism), ("--redundancy", redundancy), ("--assign-window", assign_window),
            ("--proving-window", proving_window), ("--reward", reward), ("--collateral", collateral),
            ("--decay/--no-decay", decay), ("--decay-floor", decay_floor), ("--start-price", start_price),
            ("--ramp", ramp),
        )
    }  # fmt: skip
    routed = [
        option
        for option, value in (
            ("--weights", weights), ("--max-time", max_time), ("--max-price", max_price),
            ("--min-redundancy", min_redundancy), ("--router-state", router_state),
        )
        if value is not None
    ]  # fmt: skip
    persona, plan, prefs, source = None, None, None, None
    if auto:
        terms_given = [option for option, was_given in given.items() if was_given]
        if terms_given:
            fail(
                f"--auto chooses the mechanism and terms: drop {', '.join(terms_given)} (bound them with "
                "--max-time, --max-price and --min-redundancy), or drop --auto to set them yourself"
            )
        if election_mechanism is not None or auction_mechanism is not None:
            fail(
                "--election-mechanism and --auction-mechanism pick a persona's fixed mechanism; with --auto "
                "the router considers every registered mechanism: drop them"
            )
        prefs, source = _preferences(weights, persona_name, max_time, max_price, min_redundancy)
        fee_wei = parse_ether(fee, "--fee")
        if fee_wei > MAX_REWARD:
            fail(f"--fee {eth(fee_wei)} is above the registry's limit {eth(MAX_REWARD)}")
    else:
        if routed:
            fail(
                f"{' and '.join(routed)} {'is' if len(routed) == 1 else 'are'} for routing: add --auto "
                "(with --weights or --persona) to let the router choose the mechanism and terms"
            )
        mechanism_id = None if mechanism is None else _integer(mechanism, "--mechanism")
        if persona_name is not None:
            persona, plan, mechanism_id = _persona_plan(
                persona_name, election_mechanism, auction_mechanism, mechanism_id
            )
            redundancy = plan.redundancy if redundancy is None else redundancy
            proving_window = plan.proving_window if proving_window is None else proving_window
            if mechanism_id != OPEN_RACE and assign_window is None:
                assign_window = plan.assign_window or DEFAULT_WINDOW
            decay = plan.decay if decay is None else decay
        elif election_mechanism is not None or auction_mechanism is not None:
            fail(
                "--election-mechanism and --auction-mechanism say which mechanism a persona uses: "
                "add --persona NAME, or name the mechanism with --mechanism ID"
            )
        mechanism_id = OPEN_RACE if mechanism_id is None else mechanism_id
        redundancy = _integer(1 if redundancy is None else redundancy, "--redundancy")
        decay = bool(decay)
        if not 1 <= redundancy <= MAX_REDUNDANCY:
            fail(f"--redundancy {redundancy} is out of range: a task has 1 to {MAX_REDUNDANCY} provers")
        fee_wei = parse_ether(fee, "--fee")
        reward_wei = None if reward is None else parse_ether(reward, "--reward")
        collateral_wei = None if collateral is None else parse_ether(collateral, "--collateral")
        start_price_wei = None if start_price is None else parse_ether(start_price, "--start-price")
        floor_wei = 0 if decay_floor is None else parse_ether(decay_floor, "--decay-floor")
        proving_window = _integer(
            DEFAULT_WINDOW if proving_window is None else proving_window, "--proving-window"
        )
        if proving_window == 0:
            fail("--proving-window is 0: a prover needs some seconds to prove")
        if mechanism_id == OPEN_RACE:
            if assign_window is not None:
                fail("--assign-window is unused by mechanism 1 (open race): its race lasts --proving-window")
            assign_window = 0
        else:
            assign_window = _integer(assign_window or DEFAULT_WINDOW, "--assign-window")
            if assign_window == 0:
                fail(f"--assign-window is 0: mechanism {mechanism_id} could never assign the task")
        if mechanism_id in BUILT_IN and fee_wei != 0:
            fail(
                f"--fee {fee} for mechanism {mechanism_id} ({BUILT_IN[mechanism_id]}): only a registered "
                "mechanism's frontend earns a fee; leave --fee at 0"
            )
        if mechanism_id != DUTCH and (start_price is not None or ramp is not None):
            fail(f"--start-price and --ramp are for mechanism {DUTCH} (dutch), not {mechanism_id}")
        if decay_floor is not None and not decay:
            fail("--decay-floor needs --decay")
    capabilities = _integer(capabilities, "--capabilities")
    if capabilities > MAX_CAPABILITIES:
        fail(f"--capabilities {capabilities:#x} has bits above 63: no prover can declare them")
    salt = secrets.randbits(64) if salt is None else _integer(salt, "--salt")
    if len(input_uri) > MAX_URI:
        fail(f"--input-uri is {len(input_uri)} characters; the registry takes at most {MAX_URI}")

    registry = client(account)
    market = market_or_fail(registry, market_id)
    if market.paused:
        fail(f"market {market_id} is paused by its creator {market.creator}: no new tasks until it resumes")
    circuit = _circuit_of(registry, market_id)
    if market.binding == BINDING_ADDRESS_INPUT and market.address_input != circuit.address_input:
        fail(
            f"market {market_id} binds the prover through public input {market.address_input}, but "
            f"circuit {circuit.name} has it at {circuit.address_input}: no proof could match; "
            "check the deployment record"
        )
    inputs = _read_inputs(circuit, inputs_file, input_pairs, secret)
    prover_input = json.dumps(inputs, sort_keys=True).encode()
    if len(prover_input) > MAX_PROVER_INPUT:
        fail(
            f"the inputs are {len(prover_input)} bytes as JSON; the registry carries at most "
            f"{MAX_PROVER_INPUT}"
        )

    router = choice = state = None
    if prefs is not None:
        state = _state_path(registry, router_state)
        router, choice, learnt = _route(
            registry, market, prefs, account.address, state, capabilities=capabilities, fee=fee_wei
        )
        chosen = choice.terms
        mechanism_id, redundancy = chosen["mechanism_id"], chosen["redundancy"]
        assign_window, proving_window = chosen["assign_window"], chosen["proving_window"]
        reward_wei, fee_wei = chosen["max_reward"], chosen["frontend_fee"]
        collateral_wei = chosen["collateral"]
        decay, floor_wei = bool(chosen["decay"]), chosen["decay_floor"]
        start_price_wei, ramp = chosen["start_price"], chosen["ramp"]
    elif plan is not None:
        explicit = {
            "redundancy": redundancy,
            "assign_window": assign_window,
            "proving_window": proving_window,
            "decay": decay,
            "max_reward": reward_wei,
            "collateral": collateral_wei,
            "decay_floor": None if decay_floor is None else floor_wei,
            "start_price": start_price_wei,
            "ramp": None if ramp is None else _integer(ramp, "--ramp"),
        }
        filled = persona_book.plan_terms(
            plan,
            mechanism_id,
            market.min_reward,
            market.min_collateral,
            **{k: v for k, v in explicit.items() if v is not None},
        )
        reward_wei, collateral_wei = filled["max_reward"], filled["collateral"]
        floor_wei = filled["decay_floor"]
        if mechanism_id == DUTCH:
            start_price_wei = filled["start_price"]
    reward_wei = market.min_reward if reward_wei is None else reward_wei
    collateral_wei = market.min_collateral if collateral_wei is None else collateral_wei
    if reward_wei < market.min_reward:
        fail(
            f"--reward {eth(reward_wei)} is below market {market_id}'s least reward: "
            f"give at least {eth(market.min_reward)}"
        )
    if reward_wei > MAX_REWARD:
        fail(f"--reward {eth(reward_wei)} is above the registry's limit {eth(MAX_REWARD)}")
    if fee_wei > MAX_REWARD:
        fail(f"--fee {eth(fee_wei)} is above the registry's limit {eth(MAX_REWARD)}")
    if collateral_wei < market.min_collateral:
        fail(
            f"--collateral {eth(collateral_wei)} is below market {market_id}'s least collateral: "
            f"give at least {eth(market.min_collateral)}"
        )
    if collateral_wei > MAX_COLLATERAL:
        fail(f"--collateral {eth(collateral_wei)} is above the registry's limit {eth(MAX_COLLATERAL)}")
    if proving_window > MAX_PROVING_WINDOW:
        fail(
            f"--proving-window {proving_window} s is above the registry's limit of {MAX_PROVING_WINDOW} s "
            f"({MAX_PROVING_WINDOW // 86_400} days)"
        )
    if assign_window > MAX_ASSIGN_WINDOW:
        fail(
            f"--assign-window {assign_window} s is above the registry's limit of {MAX_ASSIGN_WINDOW} s "
            f"({MAX_ASSIGN_WINDOW // 86_400} days)"
        )
    if mechanism_id not in BUILT_IN and proving_window <= market.grace_period:
        fail(
            f"--proving-window {proving_window} s is not above market {market_id}'s grace period of "
            f"{market.grace_period} s: an assigned prover may decline for that long, so give it more "
            f"(at least {market.grace_period + 1} s)"
        )
    if redundancy > 1 and market.binding != BINDING_ADDRESS_INPUT:
        fail(
            f"market {market_id}'s proofs do not carry the prover's address, so a second prover could "
            "copy the first's proof: it takes --redundancy 1 only"
        )
    if (mechanism_id == OPEN_RACE or redundancy > 1) and market.binding == BINDING_NONE:
        fail(
            f"market {market_id} does not bind proofs to their prover, so a proof could be copied: "
            "it takes no open race and no redundancy above 1; use --mechanism 2 or a registered "
            "mechanism with --redundancy 1"
        )
    if mechanism_id not in BUILT_IN:
        registrant, retired = registry.mechanism(mechanism_id)
        if int(registrant, 16) == 0:
            last = registry.call("mechanism_count")
            registered = f"registered ones 3 to {last}" if last > DUTCH else "none registered yet"
            fail(f"no mechanism {mechanism_id} (1 is the open race, 2 dutch; {registered})")
        if retired:
            fail(f"mechanism {mechanism_id} is retired: no new task may name it; choose another --mechanism")
    ramp_s = 0
    if mechanism_id == DUTCH:
        if start_price_wei is None:
            start_price_wei = min(market.min_reward, reward_wei)
        if start_price_wei > reward_wei:
            fail(
                f"--start-price {eth(start_price_wei)} is above --reward {eth(reward_wei)}: "
                "the price rises from the start price to the reward"
            )
        ramp_s = assign_window if ramp is None else _integer(ramp, "--ramp")
        if ramp_s > MAX_ASSIGN_WINDOW:
            fail(f"--ramp {ramp_s} s is above the registry's limit of {MAX_ASSIGN_WINDOW} s")
    if floor_wei > reward_wei:
        fail(
            f"--decay-floor {eth(floor_wei)} is above --reward {eth(reward_wei)}: the reward would not decay"
        )

    terms = TaskTerms(
        market_id=market_id,
        requester=ZERO_ADDRESS,
        posted_at=0,
        inputs_commitment=circuit.commitment(inputs),
        prover_input_hash=keccak(prover_input),
        max_reward=reward_wei,
        frontend_fee=fee_wei,
        assign_window=assign_window,
        proving_window=proving_window,
        collateral=collateral_wei,
        capabilities=capabilities,
        redundancy=redundancy,
        mechanism_id=mechanism_id,
        start_price=start_price_wei or 0,
        ramp=ramp_s,
        decay=decay,
        decay_floor=floor_wei,
        salt=salt,
    )
    escrow = terms.escrow()
    held = registry.web3.eth.get_balance(account.address)
    if held < escrow:
        fail(
            f"{account.address} holds {eth(held)}, less than the escrow {eth(escrow)} "
            f"({redundancy} x ({eth(reward_wei)} reward + {eth(fee_wei)} fee))"
        )
    receipt, events = registry.transact(
        "post_task", terms.as_tuple(), prover_input, input_uri, value=escrow, action="post task"
    )
    posted = next(e for e in events if e.name == "TaskPosted")
    task_id = "0x" + bytes(posted.task_id).hex()
    recorded = TaskTerms.from_event(posted.terms)
    label = _mechanism_name(registry, mechanism_id)
    route = None
    if choice is not None:
        router.record(task_id, choice, prefs, account.address)
        try:
            router.save(state)
        except OSError as error:  # posted already: say so, and what is lost
            click.echo(
                f"warning: task {task_id} is posted, but the router could not write {state} "
                f"({error.strerror or error}): it will not learn from this task",
                err=True,
            )
        route = _route_data(choice, prefs, source, learnt, state)
    chose = None
    if persona is not None:
        overridden = [option for option, was_given in given.items() if was_given]
        chose = {
            "name": persona.name,
            "weights": asdict(persona.weights),
            "plan": plan.mechanism,
            "mechanism_id": mechanism_id,
            "why": plan.why,
            "overridden": overridden,
        }
    if mechanism_id == OPEN_RACE:
        window = f"race until {when(recorded.posted_at + proving_window)}"
    else:
        window = f"assignable until {when(recorded.posted_at + assign_window)}, {proving_window} s to prove"
    emit(
        as_json,
        {
            "task_id": task_id,
            "market_id": market_id,
            "circuit": circuit.name,
            "mechanism": label,
            "escrow": escrow,
            "inputs": inputs,
            "terms": asdict(recorded),
            "tx": posted.tx,
            "block": posted.block,
            **({"persona": chose} if chose else {}),
            **({"route": route} if route else {}),
        },
        lambda: (_persona_line(persona, plan, recorded, mechanism_id, label, chose) + "\n" if chose else "")
        + ("\n".join(_route_lines(choice, prefs, source, learnt, state)) + "\n" if route else "")
        + f"task {task_id}\n"
        f"posted in market {market_id} ({circuit.name}), mechanism {mechanism_id} ({label}); "
        f"escrow {eth(escrow)} = {redundancy} x ({eth(reward_wei)} reward + {eth(fee_wei)} fee)\n"
        f"{window}; inputs {prover_input.decode()}",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("market_id")
@click.option(
    "--persona",
    "persona_name",
    metavar="NAME",
    help=f"Route with a persona's weights: {', '.join(persona_book.PERSONAS)}.",
)
@route_options
@click.option(
    "--fee",
    metavar="ETH",
    default="0",
    show_default=True,
    help="Frontend fee per slot offered through a registered mechanism, ETH.",
)
@click.option(
    "--capabilities",
    metavar="BITMASK",
    default="0",
    show_default=True,
    help="Hardware bitmask a prover must cover.",
)
@json_option
@handled
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
    market_id = _integer(market_id, "MARKET_ID")
    prefs, source = _preferences(weights, persona_name, max_time, max_price, min_redundancy)
    fee_wei = parse_ether(fee, "--fee")
    capabilities = _integer(capabilities, "--capabilities", high=MAX_CAPABILITIES)
    registry = client()
    market = market_or_fail(registry, market_id)
    if market.paused:
        fail(f"market {market_id} is paused by its creator {market.creator}: no new tasks until it resumes")
    state = _state_path(registry, router_state, create=False)
    requester = account.address if account is not None else None
    _, choice, learnt = _route(
        registry, market, prefs, requester, state, capabilities=capabilities, fee=fee_wei
    )
    t = choice.terms
    escrow = t["redundancy"] * (t["max_reward"] + t["frontend_fee"])
    data = {"market_id": market_id, "requester": requester, "escrow": escrow, "posted": False}
    data.update(_route_data(choice, prefs, source, learnt, state))

    def text() -> str:
        reward = eth(t["max_reward"]) + (f" decaying to {eth(t['decay_floor'])}" if t["decay"] else "")
        if t["mechanism_id"] == OPEN_RACE:
            windows = f"a {_duration(t['proving_window'])} race"
        else:
            windows = f"{_duration(t['assign_window'])} to assign, {_duration(t['proving_window'])} to prove"
        if t["mechanism_id"] == DUTCH:
            windows += f", price from {eth(t['start_price'])} over {_duration(t['ramp'])}"
        lines = _route_lines(choice, prefs, source, learnt, state, saved=False)
        lines.insert(
            1,
            f"terms: mechanism {t['mechanism_id']} ({choice.arm.name}), {t['redundancy']} x reward up to "
            f"{reward} + fee {eth(t['frontend_fee'])}, collateral {eth(t['collateral'])}, {windows}; "
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


def _event_data(e, at: int) -> dict:
    args = {k: v for k, v in e.args.items() if k != "task_id"}
    if e.name == "TaskPosted":
        args["terms"] = asdict(TaskTerms.from_event(args["terms"]))
    if "public_inputs" in args:
        args["public_inputs"] = [str(v) for v in args["public_inputs"]]
    return {"event": e.name, "block": e.block, "time": at, "tx": e.tx, **args}


def _progress(state: TaskState) -> str:
    return (
        f"{state.proven} of {state.terms.redundancy} proof{'s' if state.terms.redundancy != 1 else ''}, "
        f"{state.assigned} assigned, {state.open} open, {state.closed} closed"
    )


def _phase(state: TaskState, now: int) -> str:
    terms = state.terms
    if state.proven == terms.redundancy:
        return "complete"
    if state.done:
        return "closed" + (" (partly proven)" if state.proven else "")
    notes = []
    if terms.mechanism_id == OPEN_RACE:
        end = terms.posted_at + terms.proving_window
        notes.append(f"race {'ends' if now <= end else 'ended'} {when(end)}")
    else:
        end = terms.posted_at + terms.assign_window
        notes.append(f"assignable {'until' if now <= end else 'no more since'} {when(end)}")
    if state.open and now > end:
        notes.append("open slots can be reclaimed")
    overdue = [p for p, (a, _) in state.live_assignments.items() if now > a.deadline]
    if overdue:
        notes.append(f"overdue, anyone may slash: {', '.join(overdue)}")
    return "; ".join(notes)


def _status_data(registry, state: TaskState) -> tuple[dict, list[tuple[str, str, str]]]:
    times = {}
    for e in state.timeline:
        if e.block not in times:
            times[e.block] = registry.web3.eth.get_block(e.block)["timestamp"]
    terms = state.terms
    now = _now(registry)
    data = {
        "task_id": "0x" + state.task_id.hex(),
        "market_id": terms.market_id,
        "mechanism_id": terms.mechanism_id,
        "mechanism": _mechanism_name(registry, terms.mechanism_id),
        "requester": terms.requester,
        "redundancy": terms.redundancy,
        "escrow": terms.escrow(),
        "counts": {
            "open": state.open,
            "assigned": state.assigned,
            "proven": state.proven,
            "closed": state.closed,
        },
        "complete": state.proven == terms.redundancy,
        "done": state.done,
        "phase": _phase(state, now),
        "inputs": state.prover_input.decode(errors="replace"),
        "input_uri": state.input_uri,
        "terms": asdict(terms),
        "timeline": [_event_data(e, times[e.block]) for e in state.timeline],
    }
    rows = [(when(times[e.block]), *_entry(e, terms)) for e in state.timeline]
    return data, rows


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until every slot is proven or closed.")
@click.option(
    "--timeout",
    metavar="SECONDS",
    default="600",
    show_default=True,
    help="Seconds --wait waits (then exit 1).",
)
@click.option(
    "--poll", metavar="SECONDS", default="2", show_default=True, help="Seconds between looks while waiting."
)
@json_option
@handled
def status(task_id, wait, timeout, poll, as_json):
    """TASK_ID's timeline and slots: open, assigned, proven, closed."""
    task_id = _task_id(task_id)
    timeout = _integer(timeout, "--timeout", 1)
    poll = _integer(poll, "--poll", 1)
    registry = client()
    state = registry.task(task_id)
    if wait:
        started = time.monotonic()
        shown = None
        while not state.done:
            elapsed = int(time.monotonic() - started)
            if elapsed >= timeout:
                fail(f"timed out after {timeout} s waiting for task 0x{task_id.hex()}: {_progress(state)}")
            line = _progress(state)
            if line != shown:
                click.echo(f"waiting for task 0x{task_id.hex()[:8]}…: {line} ({elapsed} s)", err=True)
                shown = line
            time.sleep(min(poll, max(timeout - elapsed, 0.1)))
            counts = registry.call("task_status", task_id)
            if tuple(counts) != (state.open, state.assigned, state.proven, state.closed):
                state = registry.task(task_id)
        click.echo(f"task 0x{task_id.hex()[:8]}… done: {_progress(state)}", err=True)
    data, rows = _status_data(registry, state)
    terms = state.terms

    def text() -> str:
        head = [
            f"task {data['task_id']}",
            f"  market {terms.market_id}, mechanism {terms.mechanism_id} ({data['mechanism']}), "
            f"requester {terms.requester}",
            f"  reward {eth(terms.max_reward)} x {terms.redundancy}, fee {eth(terms.frontend_fee)}, "
            f"escrow {eth(terms.escrow())}, collateral {eth(terms.collateral)}",
            f"  inputs {data['inputs']}" + (f" ({state.input_uri})" if state.input_uri else ""),
            f"  slots: {state.open} open, {state.assigned} assigned, {state.proven} proven, "
            f"{state.closed} closed; {data['phase']}",
            "",
        ]
        return "\n".join(head) + table(["time", "event", "details"], rows)

    emit(as_json, data, text)


# ------------------------------------------------------------------ proof


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@click.argument("task_id")
@click.option("--out", "out_file", metavar="FILE", help="Also write the proofs to this file as JSON.")
@json_option
@handled
def proof(task_id, out_file, as_json):
    """The proofs TASK_ID received: prover, public inputs, proof bytes."""
    task_id = _task_id(task_id)
    registry = client()
    state = registry.task(task_id)
    if not state.proofs:
        if state.done:
            fail(f"task 0x{task_id.hex()} has no proof and will get none: its slots were closed")
        fail(f"task 0x{task_id.hex()} has no proof yet: {state.assigned} assigned, {state.open} open")
    proofs = [
        {
            "prover": e.prover,
            "slot": e.slot,
            "block": e.block,
            "tx": e.tx,
            "public_inputs": [str(v) for v in e.public_inputs],
            "proof": "0x" + bytes(e.proof).hex(),
        }
        for e in state.proofs
    ]
    data = {
        "task_id": "0x" + task_id.hex(),
        "market_id": state.terms.market_id,
        "inputs_commitment": "0x" + state.terms.inputs_commitment.hex(),
        "proofs": proofs,
    }
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
                f"  public inputs {', '.join(p['public_inputs'])}",
                f"  proof {p['proof']}",
            ]
        if out_file:
            lines.append(f"written to {out_file}")
        return "\n".join(lines)

    emit(as_json, data, text)


# ------------------------------------------------------------------ cancel, reclaim, withdraw


def _closed(events) -> tuple[int, int]:
    e = next(e for e in events if e.name == "SlotsClosed")
    return e.slots, e.refund


def _no_open_slot(state: TaskState, what: str) -> None:
    if state.open == 0:
        detail = _progress(state)
        hint = "; an assigned slot is refunded by a slash after its deadline" if state.assigned else ""
        fail(f"task 0x{state.task_id.hex()} has no open slot to {what}: {detail}{hint}")


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("task_id")
@json_option
@handled
def cancel(account, task_id, as_json):
    """Close TASK_ID's open slots and credit their escrow back (its requester only)."""
    account = require(account)
    task_id = _task_id(task_id)
    registry = client(account)
    state = registry.task(task_id)
    terms = state.terms
    if terms.requester != account.address:
        fail(
            f"task 0x{task_id.hex()} is {terms.requester}'s; only its requester may cancel it, "
            f"not {account.address}"
        )
    now = _now(registry)
    race_end = terms.posted_at + terms.proving_window
    if terms.mechanism_id == OPEN_RACE and now <= race_end and state.open:
        fail(
            f"task 0x{task_id.hex()} is an open race running until {when(race_end)} ({race_end - now} s "
            "more): provers may be proving it; cancel or reclaim after that"
        )
    _no_open_slot(state, "cancel")
    _, events = registry.transact("cancel", terms.as_tuple(), action="cancel")
    slots, refund = _closed(events)
    balance = registry.balance(account.address)
    emit(
        as_json,
        {"task_id": "0x" + task_id.hex(), "slots": slots, "refund": refund, "balance": balance},
        f"cancelled {slots} open slot{'s' if slots != 1 else ''} of task 0x{task_id.hex()}: "
        f"{eth(refund)} credited to {account.address} (balance {eth(balance)}; "
        "`ape run requester withdraw` sends it)",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.argument("task_id")
@json_option
@handled
def reclaim(account, task_id, as_json):
    """Credit back the escrow of TASK_ID's slots nobody filled, once its windows are over.
    Anyone may; the refund goes to the task's requester."""
    account = require(account)
    task_id = _task_id(task_id)
    registry = client(account)
    state = registry.task(task_id)
    terms = state.terms
    if terms.mechanism_id == OPEN_RACE:
        end, window = terms.posted_at + terms.proving_window, "race"
    else:
        end, window = terms.posted_at + terms.assign_window, "assignment window"
    now = _now(registry)
    _no_open_slot(state, "reclaim")
    if now <= end:
        hint = "; its requester may cancel it now" if terms.mechanism_id != OPEN_RACE else ""
        fail(
            f"task 0x{task_id.hex()}'s {window} runs until {when(end)} ({end - now} s more): "
            f"reclaim after that{hint}"
        )
    _, events = registry.transact("reclaim", terms.as_tuple(), action="reclaim")
    slots, refund = _closed(events)
    emit(
        as_json,
        {"task_id": "0x" + task_id.hex(), "slots": slots, "refund": refund, "requester": terms.requester},
        f"reclaimed {slots} unfilled slot{'s' if slots != 1 else ''} of task 0x{task_id.hex()}: "
        f"{eth(refund)} credited to {terms.requester}",
    )


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@json_option
@handled
def withdraw(account, as_json):
    """Send the account everything the registry credited to it (refunds, slash shares)."""
    account = require(account)
    registry = client(account)
    balance = registry.balance(account.address)
    if balance == 0:
        fail(
            f"nothing to withdraw for {account.address}: refunds are credited when slots are cancelled, "
            "reclaimed or proven for less than their escrow"
        )
    receipt, events = registry.transact("withdraw", action="withdraw")
    amount = next(e.amount for e in events if e.name == "Withdrawn")
    emit(
        as_json,
        {"account": account.address, "amount": amount, "tx": "0x" + bytes(receipt["transactionHash"]).hex()},
        f"withdrew {eth(amount)} to {account.address}",
    )


# ------------------------------------------------------------------ tasks


@cli.command(cls=ConnectedProviderCommand)
@network_option()
@account_option(prompt=False)
@click.option("--requester", "requester", metavar="ADDRESS", help="Whose tasks (default: the --account's).")
@json_option
@handled
def tasks(account, requester, as_json):
    """The tasks an address posted, with their slots."""
    if requester is not None:
        requester = parse_address(requester, "--requester")
    elif account is not None:
        requester = account.address
    else:
        fail("whose tasks? pass --requester ADDRESS or --account")
    registry = client()
    found = []
    for e in registry.events(["TaskPosted"], prover=requester):  # the second indexed argument
        state = registry.task(bytes(e.task_id))
        found.append(state)
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
