"""The options of `ape run requester post` (and the preferences `route` shares), read and
checked where that needs no chain: whole numbers as a person writes them, the task's
inputs against its circuit, a persona's plan, the router's preferences and limits,
`--chain` parsed, and the task drafted from them (provingmarket/market/requests.py
finishes and posts it).

Everything wrong is said in one line with the values seen (a ClientError, nothing sent)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provingmarket.chain.client import ClientError, parse_ether
from provingmarket.chain.client import format_ether as eth
from provingmarket.formats import (
    BUILT_IN_MECHANISMS,
    CHAIN,
    DUTCH,
    MAX_ASSIGN_WINDOW,
    MAX_CAPABILITIES,
    MAX_LINKS,
    MAX_REDUNDANCY,
    MAX_REWARD,
    MAX_URI,
    OPEN_RACE,
)
from provingmarket.market import personas as persona_book
from provingmarket.market import repricing, routing
from provingmarket.market.preferences import PreferenceError, Preferences, parse_weights
from provingmarket.proving.circuits import Circuit, CircuitError, UnsatisfiedInputs, sample_inputs

DEFAULT_WINDOW = 600  # seconds, for both windows
UINT256 = 2**256 - 1


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
        --max-price; None without it (with --auto the router may still opt the task in, so
        --reprice-state is kept for it). Needs no chain."""
        if self.reprice_after is None:
            if self.reprice_step is not None or (self.reprice_state is not None and not self.auto):
                raise ClientError(
                    "--reprice-step and --reprice-state go with --reprice-after SHARE (e.g. 0.5)"
                    + ("" if self.auto else ", or --reprice-state with --auto")
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
