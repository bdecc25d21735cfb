"""A requester's side of the market, as `ape run requester` uses it: a task's terms built
from the requester's options (given one by one, from a persona, or chosen by the router
with `--auto`), checked against the registry's bounds (provingmarket/formats.py) and the
market's terms before anything is sent, the escrow posted. (A posted task's progress,
proofs and unspent escrow: provingmarket/chain/requester.py.)

Everything the registry would refuse is said first in one line with the values seen (a
ClientError, nothing sent)."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3

from provingmarket.chain import index
from provingmarket.chain.checks import existing_market, mechanism_name, registered_mechanism
from provingmarket.chain.client import (
    ClientError,
    Market,
    RegistryClient,
    parse_ether,
)
from provingmarket.chain.client import format_ether as eth
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_NONE,
    BUILT_IN_MECHANISMS,
    CHAIN,
    DUTCH,
    MAX_ASSIGN_WINDOW,
    MAX_CAPABILITIES,
    MAX_COLLATERAL,
    MAX_LINKS,
    MAX_PROVER_INPUT,
    MAX_PROVING_WINDOW,
    MAX_REDUNDANCY,
    MAX_REWARD,
    MAX_URI,
    OPEN_RACE,
    ZERO_ADDRESS,
    Link,
    TaskTerms,
    chain_links,
    encode_chain,
)
from provingmarket.market import personas as persona_book
from provingmarket.market import qos, repricing, routing
from provingmarket.market.files import per_chain_file
from provingmarket.market.preferences import PreferenceError, Preferences, parse_weights
from provingmarket.market.router import Choice, Infeasible, Router
from provingmarket.proving.circuits import Circuit, CircuitError, UnsatisfiedInputs, sample_inputs

DEFAULT_WINDOW = 600  # seconds, for both windows
UINT256 = 2**256 - 1
LIMIT_OPTIONS = {"max_time": "--max-time", "max_price": "--max-price", "min_redundancy": "--min-redundancy"}

# ------------------------------------------------------------------ parsing


def whole(value: Any, what: str, low: int = 0, high: int = UINT256) -> int:
    """A whole number as a person writes it (10, 0x0a, 0b1010), within [low, high]."""
    text = str(value).strip().replace("_", "")
    try:
        number = int(text, 0)
    except ValueError:
        raise ClientError(f"{what} {value!r} is not a whole number") from None
    if number < low:
        raise ClientError(f"{what} {value!r} is {'negative' if number < 0 else f'below {low}'}")
    if number > high:
        raise ClientError(f"{what} {value!r} is too large (at most {high})")
    return number


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


def _inputs_file(circuit: Circuit, inputs_file: str, example: str) -> dict:
    path = Path(inputs_file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClientError(f"--inputs-file {inputs_file}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ClientError(f"--inputs-file {inputs_file}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise ClientError(f"--inputs-file {inputs_file}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ClientError(
            f"--inputs-file {inputs_file}: expected a JSON object of circuit {circuit.name}'s "
            f"inputs like {example}, got {type(data).__name__}"
        )
    return data


def _input_pairs(pairs: tuple[str, ...]) -> dict:
    data = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ClientError(f"--input {pair!r} is not NAME=VALUE (e.g. --input x=7)")
        if name.strip() in data:
            raise ClientError(f"--input {name.strip()} is given twice")
        data[name.strip()] = _input_value(name.strip(), value.strip())
    return data


def _input_value(name: str, value: str) -> object:
    """A value as given: a number, or an array as JSON (`--input path=[1,2,3]`)."""
    if not value.startswith("["):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ClientError(
            f"--input {name}={value!r:.40} is not a JSON array (e.g. --input {name}=[1,2,3])"
        ) from None


def read_inputs(
    circuit: Circuit, inputs_file: str | None, pairs: tuple[str, ...], secret: str | None
) -> dict[str, object]:
    """The task's inputs from exactly one source, checked against the circuit's manifest
    (names and types) and, with its witness generator, for satisfiability: inputs no
    prover could prove are refused before anything is sent."""
    sources = [
        name
        for name, given in (("--inputs-file", inputs_file), ("--input", pairs), ("--secret", secret))
        if given not in (None, ())
    ]
    example = json.dumps(circuit.sample)
    if len(sources) != 1:
        raise ClientError(
            ("give the task's inputs with one of --inputs-file, --input NAME=VALUE or --secret N"
             if not sources else f"give the inputs one way, not with {' and '.join(sources)}")
            + f" (circuit {circuit.name} takes e.g. {example})"
        )  # fmt: skip
    if secret is not None:
        try:
            return dict(sample_inputs(circuit, whole(secret, "--secret")))
        except CircuitError as error:
            raise ClientError(str(error)) from None
    data = _inputs_file(circuit, inputs_file, example) if inputs_file is not None else _input_pairs(pairs)
    where = f"--inputs-file {inputs_file}: " if inputs_file else ""
    try:
        inputs = circuit.check_inputs(data)
        circuit.statement(inputs)
    except UnsatisfiedInputs as error:
        raise ClientError(f"{where}{error}; no prover could prove this task") from None
    except CircuitError as error:
        raise ClientError(f"{where}{error}") from None
    return inputs


def persona_plan(name: str, election: str | None, auction: str | None, mechanism_id: int | None):
    """The persona, the plan it posts with and its mechanism id."""
    roles = {
        role: whole(value, f"--{role}-mechanism", low=DUTCH + 1)
        for role, value in ((persona_book.ELECTION, election), (persona_book.AUCTION, auction))
        if value is not None
    }
    try:
        persona = persona_book.persona(name)
        plan, chosen_id = persona_book.choose(persona, roles, mechanism_id)
    except persona_book.MissingMechanism as error:
        raise ClientError(
            f"persona {error.persona} posts through the {error.role} mechanism, whose id each deployment "
            f"registers: pass --{error.role}-mechanism ID (or name any mechanism with --mechanism ID)"
        ) from None
    except persona_book.PersonaError as error:
        raise ClientError(str(error)) from None
    return persona, plan, chosen_id


# ------------------------------------------------------------------ routing


def preferences(
    weights: str | None,
    persona_name: str | None,
    max_time: str | None,
    max_price: str | None,
    min_redundancy: str | None,
) -> tuple[Preferences, str]:
    """The preferences to route with and where their weights came from. Needs no chain."""
    limits = {
        "max_time": None if max_time is None else whole(max_time, "--max-time", low=1),
        "max_price": None if max_price is None else parse_ether(max_price, "--max-price"),
        "min_redundancy": None
        if min_redundancy is None
        else whole(min_redundancy, "--min-redundancy", low=1, high=MAX_REDUNDANCY),
    }
    if limits["max_price"] == 0:
        raise ClientError("--max-price is 0: every task costs at least the market's least reward")
    if weights is not None and persona_name is not None:
        raise ClientError("give the weights one way: --weights S,C,Sa,CR or --persona NAME, not both")
    try:
        if persona_name is not None:
            prefs = routing.persona_preferences(persona_name, **limits)
            return prefs, f"persona {persona_book.persona(persona_name).name}"
        if weights is not None:
            given = {k: v for k, v in limits.items() if v is not None}
            return Preferences(*parse_weights(weights), **given), "--weights"
    except (PreferenceError, persona_book.PersonaError) as error:
        raise ClientError(str(error)) from None
    raise ClientError(
        "the router needs your preferences: give --weights S,C,Sa,CR (speed, cost, safety, "
        f"censorship resistance, e.g. 10,3,1,1) or --persona NAME ({', '.join(persona_book.PERSONAS)})"
    )


def state_path(registry: RegistryClient, given: str | None, folder: Path, create: bool = True) -> Path:
    """Where the router keeps what it learnt: --router-state, else in FOLDER (next to the
    deployment record), one file per chain."""
    return per_chain_file(registry, given, folder, "router", "--router-state", create)


def _settled_events(events: list, pending: set[str]) -> list:
    """The events the router needs to measure its pending tasks: all but the assignments
    and proofs of other tasks (each of those costs a block header to time)."""
    return [
        e
        for e in events
        if e.name not in ("TaskAssigned", "TaskProven") or "0x" + bytes(e.args["task_id"]).hex() in pending
    ]


@dataclass
class Routed:
    """The router's choice for one task, with what it chose from and learnt."""

    router: Router
    choice: Choice
    prefs: Preferences
    source: str  # where the preferences' weights came from
    learnt: int  # settled tasks newly learnt from the chain
    state: Path

    def data(self) -> dict:
        choice = self.choice
        return {
            "arm": choice.arm.name,
            "mechanism_id": choice.arm.mechanism_id,
            "choice": choice.describe(),
            "reason": choice.reason,
            "level": choice.level,
            "terms": choice.terms,
            "estimates": {name: {"utility": u, "tasks": n} for name, (u, n) in choice.estimates.items()},
            "preferences": {**asdict(self.prefs), "from": self.source},
            "learnt": self.learnt,
            "state": str(self.state),
        }


def route(
    registry: RegistryClient,
    market: Market,
    prefs: Preferences,
    source: str,
    requester: str | None,
    state: Path,
    *,
    capabilities: int,
    fee: int,
) -> Routed:
    """The router with what it learnt from the chain and its choice for one task in MARKET;
    a ClientError if no prover could take it or no mechanism meets the limits."""
    events = registry.events()
    try:
        view = routing.market_view(events, market.market_id, capabilities)
    except ValueError as error:
        raise ClientError(str(error)) from None
    if not view.provers:
        covering = f" covering capabilities {capabilities:#x}" if capabilities else ""
        raise ClientError(
            f"market {market.market_id} has no prover{covering} with at least its least collateral "
            f"({eth(market.min_collateral)}) staked and capacity free to take a task: nothing posted"
        )
    candidates = [
        a if a.mechanism_id in BUILT_IN_MECHANISMS else replace(a, fee=fee) for a in routing.arms(events)
    ]
    if market.binding == BINDING_NONE:  # a proof could be copied: the registry takes no race
        candidates = [a for a in candidates if a.mechanism_id != OPEN_RACE]
    router = Router(routing.routable(candidates, view))
    try:
        router.load(state)
    except ValueError as error:
        raise ClientError(str(error)) from None
    pending = set(router.state.pending)
    learnt = 0
    if pending:
        learnt = router.learn(qos.measure(_settled_events(events, pending), qos.block_clock(registry.web3)))
    try:
        choice = router.choose(prefs, view, requester)
    except Infeasible as error:
        raise ClientError(f"{LIMIT_OPTIONS.get(error.limit, error.limit)}: {error}") from None
    return Routed(router, choice, prefs, source, learnt, state)


def open_market(registry: RegistryClient, market_id: int) -> Market:
    """The market, if it exists and takes new tasks."""
    market = existing_market(registry, market_id)
    if market.paused:
        raise ClientError(
            f"market {market_id} is paused by its creator {market.creator}: no new tasks until it resumes"
        )
    return market


# ------------------------------------------------------------------ post


@dataclass(frozen=True)
class PostOptions:
    """The options of `ape run requester post` as the requester gave them (None: not given)."""

    market_id: str
    inputs_file: str | None = None
    input_pairs: tuple[str, ...] = ()
    secret: str | None = None
    input_uri: str = ""
    reward: str | None = None
    fee: str = "0"
    assign_window: str | None = None
    proving_window: str | None = None
    collateral: str | None = None
    redundancy: str | None = None
    mechanism: str | None = None
    chain: str | None = None
    capabilities: str = "0"
    decay: bool | None = None
    decay_floor: str | None = None
    start_price: str | None = None
    ramp: str | None = None
    salt: str | None = None
    persona_name: str | None = None
    election_mechanism: str | None = None
    auction_mechanism: str | None = None
    auto: bool = False
    weights: str | None = None
    max_time: str | None = None
    max_price: str | None = None
    min_redundancy: str | None = None
    router_state: str | None = None
    reprice_after: str | None = None
    reprice_step: str | None = None
    reprice_state: str | None = None

    def given_terms(self) -> list[str]:
        """The term options given explicitly."""
        return [
            option
            for option, value in (
                ("--mechanism", self.mechanism), ("--chain", self.chain), ("--redundancy", self.redundancy),
                ("--assign-window", self.assign_window), ("--proving-window", self.proving_window),
                ("--reward", self.reward), ("--collateral", self.collateral),
                ("--decay/--no-decay", self.decay), ("--decay-floor", self.decay_floor),
                ("--start-price", self.start_price), ("--ramp", self.ramp),
            )
            if value is not None
        ]  # fmt: skip

    def routing_given(self) -> list[str]:
        """The routing options given."""
        return [
            option
            for option, value in (
                ("--weights", self.weights), ("--max-time", self.max_time),
                ("--max-price", None if self.reprice_after is not None else self.max_price),
                ("--min-redundancy", self.min_redundancy), ("--router-state", self.router_state),
            )
            if value is not None
        ]  # fmt: skip

    def repricing(self, max_price: int | None) -> repricing.Policy | None:
        """The re-pricing the requester opted in to (--reprice-after), its ceiling
        --max-price; None without it. Needs no chain."""
        if self.reprice_after is None:
            if self.reprice_step is not None or self.reprice_state is not None:
                raise ClientError(
                    "--reprice-step and --reprice-state go with --reprice-after SHARE (e.g. 0.5)"
                )
            return None
        return repricing.make_policy(self.reprice_after, self.reprice_step, max_price)


@dataclass
class Draft:
    """A task's terms as far as the options set them, before the chain is read: what the
    router or the persona's plan and the market's minimums leave open is None."""

    market_id: int
    mechanism_id: int | None = None
    redundancy: int | None = None
    assign_window: int | None = None
    proving_window: int | None = None
    reward: int | None = None
    fee: int = 0
    collateral: int | None = None
    decay: bool = False
    decay_floor: int = 0
    start_price: int | None = None
    ramp: str | int | None = None  # as given, or as the router chose it
    capabilities: int = 0
    salt: int = 0
    persona: Any = None
    plan: Any = None
    routing: tuple[Preferences, str] | None = None  # with --auto: the preferences and their source
    repricing: repricing.Policy | None = None  # with --reprice-after: when and how far to re-price
    chain: tuple[tuple[str, int], ...] = ()  # with --chain: (mechanism as given, window) per link


def draft(options: PostOptions) -> Draft:
    """What the options say of the task, checked where that needs no chain."""
    market_id = whole(options.market_id, "MARKET_ID")
    drafted = _auto_draft(options, market_id) if options.auto else _fixed_draft(options, market_id)
    capabilities = whole(options.capabilities, "--capabilities")
    if capabilities > MAX_CAPABILITIES:
        raise ClientError(f"--capabilities {capabilities:#x} has bits above 63: no prover can declare them")
    drafted.capabilities = capabilities
    if drafted.routing is not None:
        drafted.repricing = options.repricing(drafted.routing[0].max_price)
    else:
        ceiling = None if options.max_price is None else parse_ether(options.max_price, "--max-price")
        drafted.repricing = options.repricing(ceiling)
    if drafted.repricing is not None and drafted.mechanism_id == OPEN_RACE:
        raise ClientError(
            "--reprice-after: an open race (mechanism 1) has no assignment window and cannot be cancelled "
            "while it runs; re-price a task of another --mechanism"
        )
    drafted.salt = secrets.randbits(64) if options.salt is None else whole(options.salt, "--salt")
    if len(options.input_uri) > MAX_URI:
        raise ClientError(
            f"--input-uri is {len(options.input_uri)} characters; the registry takes at most {MAX_URI}"
        )
    return drafted


def _auto_draft(o: PostOptions, market_id: int) -> Draft:
    terms_given = o.given_terms()
    if terms_given:
        raise ClientError(
            f"--auto chooses the mechanism and terms: drop {', '.join(terms_given)} (bound them with "
            "--max-time, --max-price and --min-redundancy), or drop --auto to set them yourself"
        )
    if o.election_mechanism is not None or o.auction_mechanism is not None:
        raise ClientError(
            "--election-mechanism and --auction-mechanism pick a persona's fixed mechanism; with --auto "
            "the router considers every registered mechanism: drop them"
        )
    prefs, source = preferences(o.weights, o.persona_name, o.max_time, o.max_price, o.min_redundancy)
    fee = parse_ether(o.fee, "--fee")
    if fee > MAX_REWARD:
        raise ClientError(f"--fee {eth(fee)} is above the registry's limit {eth(MAX_REWARD)}")
    return Draft(market_id, fee=fee, routing=(prefs, source))


def _fixed_draft(o: PostOptions, market_id: int) -> Draft:
    routed = o.routing_given()
    if routed:
        raise ClientError(
            f"{' and '.join(routed)} {'is' if len(routed) == 1 else 'are'} for routing: add --auto "
            "(with --weights or --persona) to let the router choose the mechanism and terms"
        )
    mechanism_id = None if o.mechanism is None else whole(o.mechanism, "--mechanism")
    redundancy, proving_window, assign_window, decay = (
        o.redundancy,
        o.proving_window,
        o.assign_window,
        o.decay,
    )
    persona = plan = None
    if o.persona_name is not None:
        persona, plan, mechanism_id = persona_plan(
            o.persona_name, o.election_mechanism, o.auction_mechanism, mechanism_id
        )
        redundancy = plan.redundancy if redundancy is None else redundancy
        proving_window = plan.proving_window if proving_window is None else proving_window
        if mechanism_id != OPEN_RACE and assign_window is None:
            assign_window = plan.assign_window or DEFAULT_WINDOW
        decay = plan.decay if decay is None else decay
    elif o.election_mechanism is not None or o.auction_mechanism is not None:
        raise ClientError(
            "--election-mechanism and --auction-mechanism say which mechanism a persona uses: "
            "add --persona NAME, or name the mechanism with --mechanism ID"
        )
    d = Draft(market_id, OPEN_RACE if mechanism_id is None else mechanism_id, persona=persona, plan=plan)
    d.redundancy = whole(1 if redundancy is None else redundancy, "--redundancy")
    d.decay = bool(decay)
    if not 1 <= d.redundancy <= MAX_REDUNDANCY:
        raise ClientError(
            f"--redundancy {d.redundancy} is out of range: a task has 1 to {MAX_REDUNDANCY} provers"
        )
    d.fee = parse_ether(o.fee, "--fee")
    d.reward = None if o.reward is None else parse_ether(o.reward, "--reward")
    d.collateral = None if o.collateral is None else parse_ether(o.collateral, "--collateral")
    d.start_price = None if o.start_price is None else parse_ether(o.start_price, "--start-price")
    d.decay_floor = 0 if o.decay_floor is None else parse_ether(o.decay_floor, "--decay-floor")
    d.ramp = o.ramp
    if o.chain is not None:
        if mechanism_id is not None:
            raise ClientError("--chain names the task's mechanisms: drop --mechanism (and --persona)")
        d.mechanism_id = CHAIN  # its links are resolved against the registry when posting
    _fixed_windows(d, o, proving_window, assign_window)
    if o.chain is not None:
        d.chain = parse_chain(o.chain, d.proving_window, assign_window)
        d.assign_window = sum(window for _, window in d.chain)
    return d


RACE_NAMES = ("race", "open race", "open-race")


def parse_chain(text: str, proving_window: int | None, assign_window: Any) -> tuple[tuple[str, int], ...]:
    """`--chain MECHANISM:SECONDS,...`: one to three links, each a mechanism (a registered
    one's name or id, `dutch`, or `race`) with its window; the last may leave its window
    out: it lasts what --assign-window leaves, else a race --proving-window and any other
    the default window."""
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= MAX_LINKS or not all(parts):
        raise ClientError(
            f"--chain {text!r}: give 1 to {MAX_LINKS} links, comma-separated, "
            "such as auction:30,orderbook:60,race"
        )
    links: list[tuple[str, int | None]] = []
    for i, part in enumerate(parts):
        name, _, window = part.partition(":")
        name = name.strip().lower()
        if not window:
            if i < len(parts) - 1:
                raise ClientError(f"--chain link {i + 1} ({name}) needs a window: {name}:SECONDS")
            links.append((name, None))
        else:
            links.append((name, whole(window, f"--chain link {i + 1}'s window", low=1)))
    named = sum(w or 0 for _, w in links)
    total = None if assign_window is None else whole(assign_window, "--assign-window")
    name, last = links[-1]
    if last is None:
        if total is not None:
            last = total - named
            if last < 1:
                raise ClientError(
                    f"--assign-window {total} s leaves nothing for the chain's last link after {named} s"
                )
        else:
            last = (proving_window or DEFAULT_WINDOW) if name in RACE_NAMES else DEFAULT_WINDOW
        links[-1] = (name, last)
    elif total is not None and total != named:
        raise ClientError(
            f"--assign-window {total} s is not the chain's {named} s: "
            "drop it or leave the last link's window out"
        )
    resolved = tuple((n, w) for n, w in links if w is not None)
    if sum(w for _, w in resolved) > MAX_ASSIGN_WINDOW:
        raise ClientError(f"--chain lasts more than the registry's limit of {MAX_ASSIGN_WINDOW} s")
    return resolved


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
    return mechanism_id


def _fixed_windows(d: Draft, o: PostOptions, proving_window, assign_window) -> None:
    """The windows, and what goes with a mechanism only: a fee, a Dutch ramp, a decay floor."""
    d.proving_window = whole(DEFAULT_WINDOW if proving_window is None else proving_window, "--proving-window")
    if d.proving_window == 0:
        raise ClientError("--proving-window is 0: a prover needs some seconds to prove")
    if d.mechanism_id == OPEN_RACE and o.chain is None:
        if assign_window is not None:
            raise ClientError(
                "--assign-window is unused by mechanism 1 (open race): its race lasts --proving-window"
            )
        d.assign_window = 0
    else:
        d.assign_window = whole(assign_window or DEFAULT_WINDOW, "--assign-window")
        if d.assign_window == 0:
            raise ClientError(f"--assign-window is 0: mechanism {d.mechanism_id} could never assign the task")
    if d.mechanism_id in BUILT_IN_MECHANISMS and d.fee != 0:
        raise ClientError(
            f"--fee {o.fee} for mechanism {d.mechanism_id} ({BUILT_IN_MECHANISMS[d.mechanism_id]}): only a "
            "registered mechanism's frontend earns a fee; leave --fee at 0"
        )
    dutch_link = o.chain is not None and "dutch" in o.chain.lower()
    if d.mechanism_id != DUTCH and not dutch_link and (o.start_price is not None or o.ramp is not None):
        raise ClientError(f"--start-price and --ramp are for mechanism {DUTCH} (dutch), not {d.mechanism_id}")
    if o.decay_floor is not None and not d.decay:
        raise ClientError("--decay-floor needs --decay")


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
        _take_choice(d, routed.choice.terms)
    elif d.plan is not None:
        _fill_from_plan(d, options, market)
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
        result.warning = _remember(routed, task_id, requester)
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


def _remember(routed: Routed, task_id: str, requester: str) -> str | None:
    """Record the routed task for the router to learn from once settled; a warning if its
    state cannot be written."""
    routed.router.record(task_id, routed.choice, routed.prefs, requester)
    try:
        routed.router.save(routed.state)
    except OSError as error:  # posted already: say so, and what is lost
        return (
            f"warning: task {task_id} is posted, but the router could not write {routed.state} "
            f"({error.strerror or error}): it will not learn from this task"
        )
    return None


def _take_choice(d: Draft, chosen: dict) -> None:
    """The terms the router chose."""
    d.mechanism_id, d.redundancy = chosen["mechanism_id"], chosen["redundancy"]
    d.assign_window, d.proving_window = chosen["assign_window"], chosen["proving_window"]
    d.reward, d.fee = chosen["max_reward"], chosen["frontend_fee"]
    d.collateral = chosen["collateral"]
    d.decay, d.decay_floor = bool(chosen["decay"]), chosen["decay_floor"]
    d.start_price, d.ramp = chosen["start_price"], chosen["ramp"]


def _fill_from_plan(d: Draft, o: PostOptions, market: Market) -> None:
    """The amounts the persona's plan sets in multiples of the market's minimums, where
    no option set them."""
    if d.mechanism_id is None:
        raise ClientError(f"persona {d.persona.name}'s plan needs the task's mechanism: give --mechanism ID")
    explicit = {
        "redundancy": d.redundancy,
        "assign_window": d.assign_window,
        "proving_window": d.proving_window,
        "decay": d.decay,
        "max_reward": d.reward,
        "collateral": d.collateral,
        "decay_floor": None if o.decay_floor is None else d.decay_floor,
        "start_price": d.start_price,
        "ramp": None if o.ramp is None else whole(o.ramp, "--ramp"),
    }
    filled = persona_book.plan_terms(
        d.plan,
        d.mechanism_id,
        market.min_reward,
        market.min_collateral,
        **{k: v for k, v in explicit.items() if v is not None},
    )
    d.reward, d.collateral = filled["max_reward"], filled["collateral"]
    d.decay_floor = filled["decay_floor"]
    if d.mechanism_id == DUTCH:
        d.start_price = filled["start_price"]


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
