"""`ape run requester post --auto` and `requester route`: the router chooses the mechanism
and terms from the requester's preferences, says why, posts them (or, for `route`,
nothing), refuses limits no mechanism meets and weights it cannot use in one line, and
learns from the chain what its tasks got.

Most run the command's function in this process (milliseconds each, as
tests/cli/test_requester.py does) in a market of this module's own: three provers proving
in 60 s that accept the session's registered mechanism ("orderbook"), so the router's arms
are the open race, the Dutch auction and the orderbook. One runs `ape run` as a user does."""

from __future__ import annotations

import json

import pytest

from provingmarket import deployments
from provingmarket.cli import DEPLOYMENTS_ENV
from provingmarket.deployments import Deployment, MarketRecord
from provingmarket.devnet import default_backend
from provingmarket.formats import BINDING_NONE, DUTCH, OPEN_RACE, ZERO_ADDRESS, Assignment, TaskTerms
from provingmarket.market.preferences import Preferences
from provingmarket.market.router import Pace
from provingmarket.proving.circuits import Circuit
from tests.factories import (
    ETHER,
    MIN_COLLATERAL,
    MIN_REWARD,
    PROVER_INPUT,
    UNBONDING_DELAY,
    escrow,
    load_script,
    make_terms,
    posted_terms,
    prove,
)

SQUARE = Circuit.load("square")
RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)  # ignored by an open race proof
PROVING_TIME = 60
TERM_FIELDS = (
    "mechanism_id",
    "redundancy",
    "assign_window",
    "proving_window",
    "max_reward",
    "frontend_fee",
    "collateral",
    "decay",
    "decay_floor",
    "start_price",
    "ramp",
)


requester_script = load_script("requester", "requester_script_auto")


@pytest.fixture(scope="module")
def routed_market(create_market, registry, provers, mechanism, staked_provers):
    """A market of this module's own, with the three staked provers in it."""
    market_id = create_market()
    for p in provers:
        registry.join_market(market_id, 2, ETHER // 100, PROVING_TIME, 0, [mechanism], sender=p)
    return market_id


@pytest.fixture
def local(registry, market, routed_market, verifier, chain, tmp_path, monkeypatch):
    """The session's registry recorded for this process's network (ethereum:local), with
    this module's market; returns the deployments folder."""
    folder = tmp_path / "local-deployments"
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(folder))
    markets = {m: MarketRecord("square", verifier.address) for m in (market, routed_market)}
    deployments.save(
        Deployment("ethereum:local", chain.chain_id, registry.address, 0, UNBONDING_DELAY, markets), folder
    )
    return folder


def call(command, **options):
    """Run a command's function as click would, with its defaults."""
    values = {p.name: (() if p.multiple else p.default) for p in command.params if p.name != "network"}
    values.update(options)
    return command.callback(**values)


def post(capsys, account, market_id, **options) -> dict:
    capsys.readouterr()
    call(
        requester_script.post, account=account, market_id=str(market_id), secret="7", as_json=True, **options
    )
    return json.loads(capsys.readouterr().out)  # all of stdout: --json prints nothing else


def refused(capsys, command, account, **options) -> str:
    """The one `error:` line of a command that exits 1; nothing sent from `account`."""
    nonce = account.nonce
    capsys.readouterr()  # what the test itself sent before (ape's log lines) is not the command's
    with pytest.raises(SystemExit) as exit:
        call(command, account=account, **options)
    assert exit.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert account.nonce == nonce
    return err.removeprefix("error: ")


def posted_since(registry, chain, block: int) -> list:
    return list(registry.TaskPosted.range(block, chain.blocks.height + 1))


def fields(terms: TaskTerms) -> dict:
    return {name: getattr(terms, name) for name in TERM_FIELDS}


# ------------------------------------------------------------------ post --auto


def test_post_auto__weights__posts_the_routers_choice_and_says_why(
    local, registry, routed_market, requester, chain, capsys, tmp_path
):
    state = tmp_path / "router.json"
    start = chain.blocks.height + 1

    data = post(capsys, requester, routed_market, auto=True, weights="1,1,1,1", router_state=str(state))

    route = data["route"]
    [event] = posted_since(registry, chain, start)
    on_chain = TaskTerms.from_event(event.terms)
    assert fields(on_chain) == route["terms"]
    # Nothing observed yet: the router explores its first arm, with the terms its rules
    # give equal weights: one proof (safety is 25 % of the weight, under 40 %), the
    # reward at 1 + round(4 x 1/2) = 3x the least, no decay (speed does not outweigh
    # cost), collateral 1 + round(4 x 0.25) = 2x the least, its whole 10-minute race.
    assert route["arm"] == "open race"
    assert fields(on_chain) == {
        "mechanism_id": OPEN_RACE,
        "redundancy": 1,
        "assign_window": 0,
        "proving_window": Pace().race_window,
        "max_reward": 3 * MIN_REWARD,
        "frontend_fee": 0,
        "collateral": 2 * MIN_COLLATERAL,
        "decay": False,
        "decay_floor": 0,
        "start_price": 0,
        "ramp": 0,
    }
    assert route["reason"] == "exploring: no task through open race observed yet for these preferences"
    assert route["choice"] == "open race: 1 proof, up to 3x the least reward, a 600 s race"
    assert route["preferences"]["from"] == "--weights"
    assert data["task_id"] == "0x" + bytes(event.task_id).hex()
    assert data["escrow"] == 3 * MIN_REWARD
    saved = json.loads(state.read_text())
    assert saved["pending"] == {
        data["task_id"]: {
            "arm": "open race",
            "requester": requester.address.lower(),
            "preferences": {
                "speed": 1.0,
                "cost": 1.0,
                "safety": 1.0,
                "censorship_resistance": 1.0,
                "max_time": None,
                "max_price": None,
                "min_redundancy": 1,
            },
        }
    }


def test_post_auto__safety_weight_and_a_time_limit__three_proofs_within_the_limit(
    local, registry, routed_market, requester, chain, capsys, tmp_path
):
    """The limits shape the terms: every window ends by --max-time, the price is cut to fit
    --max-price, and a heavy safety weight asks three proofs."""
    start = chain.blocks.height + 1

    data = post(
        capsys, requester, routed_market, auto=True, weights="3,2,10,1", max_time="300", max_price="0.09",
        router_state=str(tmp_path / "router.json"),
    )  # fmt: skip

    [event] = posted_since(registry, chain, start)
    terms = TaskTerms.from_event(event.terms)
    assert fields(terms) == data["route"]["terms"]
    assert terms.redundancy == 3
    assert terms.assign_window + terms.proving_window <= 300
    assert terms.proving_window >= PROVING_TIME
    assert terms.escrow() <= 9 * ETHER // 100
    assert terms.max_reward >= MIN_REWARD


def test_post_auto__price_limit_with_room__the_router_opts_the_task_in_to_repricing(
    local,
    registry,
    create_market,
    provers,
    staked_provers,
    mechanism,
    verifier,
    requester,
    chain,
    capsys,
    tmp_path,
):
    """No race in a market whose proofs carry no address: the router's first choice can be
    cancelled, and a price limit far above its reward leaves room to re-post higher, so the
    task is opted in to re-pricing up to that limit, and the reason says why."""
    unbound = create_market(binding=BINDING_NONE)
    for p in provers:
        registry.join_market(unbound, 2, ETHER // 100, PROVING_TIME, 0, [mechanism], sender=p)
    record = deployments.load("ethereum:local", local)
    record.markets[unbound] = MarketRecord("square", verifier.address)
    deployments.save(record, local)

    data = post(
        capsys, requester, unbound, auto=True, weights="1,1,1,1", max_price="0.5",
        router_state=str(tmp_path / "router.json"), reprice_state=str(tmp_path / "repricing.json"),
    )  # fmt: skip

    assert data["route"]["mechanism_id"] != OPEN_RACE
    assert "re-pricing advised: your price limit leaves room above" in data["route"]["reason"]
    assert data["repricing"]["ceiling"] == ETHER // 2
    saved = json.loads((tmp_path / "repricing.json").read_text())
    assert data["task_id"] in json.dumps(saved)


def test_post_auto__a_market_whose_index_says_provers_were_paid_more__the_untried_arm_offers_that(
    local, registry, routed_market, requester, staked_provers, chain, capsys, tmp_path
):
    """The router reads the market's on-chain index: a race proven at 5x the least reward
    sets it, and the router's first task through the race (no outcome of its own yet)
    offers 5x (its most), not its rule's 3x, and says why."""
    race = make_terms(routed_market, OPEN_RACE, salt=99, max_reward=5 * MIN_REWARD)
    tx = registry.post_task(race.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(race))
    prove(registry, posted_terms(registry, tx), RACE, staked_provers[0])
    paid = registry.market_index(routed_market)[0]  # kept to 18 significant bits
    assert 5 * MIN_REWARD * (1 - 2**-14) <= paid <= 5 * MIN_REWARD

    data = post(
        capsys,
        requester,
        routed_market,
        auto=True,
        weights="1,1,1,1",
        router_state=str(tmp_path / "router.json"),
    )

    assert data["route"]["arm"] == "open race"
    assert data["route"]["terms"]["max_reward"] == 5 * MIN_REWARD
    assert f"the market's index says provers were paid {paid} wei" in data["route"]["reason"]


def test_post_auto__persona__routes_on_its_weights_and_prints_the_choice_and_why(
    local, registry, routed_market, requester, chain, capsys, tmp_path
):
    start = chain.blocks.height + 1

    call(
        requester_script.post, account=requester, market_id=str(routed_market), secret="7", auto=True,
        persona_name="arbitrage", router_state=str(tmp_path / "router.json"),
    )  # fmt: skip

    lines = capsys.readouterr().out.splitlines()
    # speed 10, cost 3: 1 + round(4 x 10/13) = 4x the least, decaying since speed outweighs cost
    assert lines[:3] == [
        "route: open race: 1 proof, up to 4x the least reward decaying, a 600 s race",
        "why: exploring: no task through open race observed yet for these preferences",
        "preferences (persona arbitrage): speed 10, cost 3, safety 1, censorship resistance 1",
    ]
    assert lines[4].startswith("task 0x")
    [event] = posted_since(registry, chain, start)
    terms = TaskTerms.from_event(event.terms)
    assert (terms.mechanism_id, terms.max_reward, terms.decay, terms.decay_floor) == (
        OPEN_RACE,
        4 * MIN_REWARD,
        True,
        MIN_REWARD,
    )
    assert lines[4] == "task 0x" + bytes(event.task_id).hex()


def test_post_auto__after_its_first_task_settles__learns_it_and_explores_the_next(
    local, registry, routed_market, requester, provers, chain, capsys, tmp_path
):
    state = tmp_path / "router.json"
    options = dict(auto=True, weights="1,1,1,1", router_state=str(state))
    first = post(capsys, requester, routed_market, **options)
    [event] = registry.TaskPosted.range(first["block"], first["block"] + 1)
    terms = TaskTerms.from_event(event.terms)
    made = default_backend().prove(SQUARE, SQUARE.sample, provers[0].address)
    registry.prove(terms.as_tuple(), RACE.as_tuple(), made.public_inputs, made.proof, sender=provers[0])

    second = post(capsys, requester, routed_market, **options)

    assert first["route"]["learnt"] == 0
    assert second["route"]["learnt"] == 1
    assert second["route"]["arm"] == "dutch"
    assert second["route"]["reason"] == "exploring: no task through dutch observed yet for these preferences"
    assert second["terms"]["mechanism_id"] == DUTCH
    assert second["terms"]["ramp"] == second["terms"]["assign_window"] > 0
    saved = json.loads(state.read_text())
    profile = Preferences(1, 1, 1, 1).profile
    [utility] = saved["seen"][profile]["open race"]
    assert 0 < utility < 1
    [[mine, delivered]] = saved["mine"][requester.address.lower()]["open race"]
    assert (mine, delivered) == (utility, True)
    assert list(saved["pending"]) == [second["task_id"]]
    assert second["route"]["estimates"] == {"open race": {"utility": utility, "tasks": 1}}


# ------------------------------------------------------------------ route: a dry run


def test_route__persona__says_what_it_would_choose_and_posts_and_writes_nothing(
    local, registry, routed_market, requester, chain, capsys, tmp_path
):
    state = tmp_path / "router.json"
    start, nonce = chain.blocks.height, requester.nonce

    call(
        requester_script.route, account=requester, market_id=str(routed_market), persona_name="batch",
        router_state=str(state),
    )  # fmt: skip

    out = capsys.readouterr().out
    # speed 2, cost 10: 1 + round(4 x 2/12) = 2x the least, no decay; safety 3 of 16:
    # 1 + round(4 x 3/16) = 2x the least collateral
    assert out.startswith("route: open race: 1 proof, up to 2x the least reward, a 600 s race\n"), out
    assert (
        "\nterms: mechanism 1 (open race), 1 x reward up to 0.02 ETH + fee 0 ETH, collateral 0.2 ETH, "
        "a 10 min race; escrow 0.02 ETH\n"
    ) in out
    assert "\nwhy: exploring: no task through open race observed yet for these preferences\n" in out
    assert out.rstrip().endswith("dry run: nothing posted (`post --auto` with the same options posts it)")
    assert chain.blocks.height == start and requester.nonce == nonce
    assert not state.exists()


# ------------------------------------------------------------------ refused


@pytest.mark.parametrize(
    "limits, message",
    [
        (
            {"max_price": "0.005"},
            "--max-price: no mechanism can meet max_price = 0.005 ETH; nothing posted: ",
        ),
        (
            {"min_redundancy": "4"},
            "--min-redundancy: no mechanism can meet min_redundancy = 4; nothing posted: ",
        ),
        ({"max_time": "1"}, "--max-time: no mechanism can meet max_time = 1 s; nothing posted: "),
    ],
    ids=["price-below-least-reward", "more-proofs-than-provers", "one-second"],
)
def test_post_auto__limits_no_mechanism_meets__name_the_limit_and_post_nothing(
    local, registry, routed_market, requester, chain, capsys, tmp_path, limits, message
):
    state = tmp_path / "router.json"
    start = chain.blocks.height + 1

    error = refused(
        capsys, requester_script.post, requester, market_id=str(routed_market), secret="7", auto=True,
        weights="1,1,1,1", router_state=str(state), **limits,
    )  # fmt: skip

    assert error.startswith(message), error
    # then why, for each mechanism (the router's words)
    assert all(arm in error.removeprefix(message) for arm in ("open race", "dutch", "orderbook")), error
    assert posted_since(registry, chain, start) == []
    assert not state.exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"weights": "1,2,3"}, "weights '1,2,3': give four numbers, speed,cost,safety,censorship_resistance"),
        ({"weights": "1,-2,3,4"}, "weight cost is -2.0: weights must be 0 or more"),
        ({"weights": "0,0,0,0"}, "every weight is 0: give at least one of speed, cost, safety"),
        ({"weights": "fast,1,1,1"}, "weight speed 'fast' is not a number"),
        ({"weights": "nan,1,1,1"}, "weight speed must be a finite number, not nan"),
        ({}, "the router needs your preferences: give --weights S,C,Sa,CR (speed, cost, safety, "),
        ({"weights": "1,1,1,1", "persona_name": "batch"}, "give the weights one way: --weights S,C,Sa,CR or"),
        ({"persona_name": "miner"}, "no persona 'miner'; the personas are arbitrage, rollup, batch"),
        ({"weights": "1,1,1,1", "max_time": "0"}, "--max-time '0' is below 1"),
        ({"weights": "1,1,1,1", "max_price": "0"}, "--max-price is 0: every task costs at least"),
        ({"weights": "1,1,1,1", "min_redundancy": "9"}, "--min-redundancy '9' is too large (at most 8)"),
        (
            {"weights": "1,1,1,1", "mechanism": "2"},
            "--auto chooses the mechanism and terms: drop --mechanism",
        ),
        (
            {"weights": "1,1,1,1", "reward": "1"},
            "--auto chooses the mechanism and terms: drop --reward (bound",
        ),
        ({"auto": False, "weights": "1,1,1,1"}, "--weights is for routing: add --auto (with --weights or"),
        ({"auto": False, "max_time": "60", "max_price": "1"}, "--max-time and --max-price are for routing"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_post_auto__weights_or_options_it_cannot_use__one_line_before_the_chain(
    requester, capsys, options, message
):
    """Refused before any network call: no deployment is even recorded for this network."""
    options = {"auto": True, **options}

    error = refused(capsys, requester_script.post, requester, market_id="1", secret="7", **options)

    assert error.startswith(message), error


def test_post_auto__market_with_no_prover__says_so_and_posts_nothing(
    local, registry, create_market, requester, verifier, chain, capsys
):
    empty = create_market()
    record = deployments.load("ethereum:local", local)
    record.markets[empty] = MarketRecord("square", verifier.address)
    deployments.save(record, local)
    start = chain.blocks.height + 1

    error = refused(
        capsys, requester_script.post, requester, market_id=str(empty), secret="7", auto=True,
        persona_name="rollup",
    )  # fmt: skip

    assert error.startswith(f"market {empty} has no prover with at least its least collateral (0.1 ETH)")
    assert posted_since(registry, chain, start) == []


# ------------------------------------------------------------------ as a user runs it


@pytest.mark.ape_run
def test_ape_run_post_auto__persona__prints_the_route_and_keeps_state_next_to_the_deployment(
    run, recorded, registry, routed_market, verifier, chain, deployments_folder
):
    record = deployments.load("ethereum:custom", deployments_folder)
    record.markets[routed_market] = MarketRecord("square", verifier.address)
    deployments.save(record, deployments_folder)

    result = run(
        "requester", "post", str(routed_market), "--secret", "7", "--auto", "--persona", "rollup",
        "--max-price", "0.5", account="TEST::1",
    )  # fmt: skip

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("route: "))
    # safety 10 of 16: three proofs, collateral 1 + round(4 x 10/16) = 1 + round(2.5) = 3x the
    # least (Python rounds half to even); speed 3, cost 2: 1 + round(4 x 3/5) = 3x, decaying
    assert lines[at] == "route: open race: 3 proofs, up to 3x the least reward decaying, a 600 s race"
    assert lines[at + 1] == "why: exploring: no task through open race observed yet for these preferences"
    assert lines[at + 2] == (
        "preferences (persona rollup): speed 3, cost 2, safety 10, censorship resistance 1; "
        "limits: at most 0.5 ETH"
    )
    task = next(line for line in lines if line.startswith("task 0x")).removeprefix("task ")
    state = deployments_folder / f"router-{chain.chain_id}.json"
    assert list(json.loads(state.read_text())["pending"]) == [task]
    [event] = [
        e
        for e in registry.TaskPosted.range(0, chain.blocks.height + 1)
        if "0x" + bytes(e.task_id).hex() == task
    ]
    terms = TaskTerms.from_event(event.terms)
    assert (terms.redundancy, terms.collateral, terms.max_reward) == (3, 3 * MIN_COLLATERAL, 3 * MIN_REWARD)
