"""A market's price and latency index (contracts/registry/words.vy, `market_index`): every
proof (prove, prove_batch, a race's) moves exponential moving averages of the price paid
and of the time from assignment to proof 1/8 of the way to its own, in the registry's
fixed-point steps; no accepted price or latency overflows it, and it never touches the
market's configuration, which shares its word."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provingmarket import OPEN_RACE, Assignment
from provingmarket.chain import index
from provingmarket.chain.client import RegistryClient
from provingmarket.formats import MAX_PROVING_WINDOW, MAX_REWARD, ZERO_ADDRESS
from tests.factories import (
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    advance,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    proof_for,
    prove,
)

RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)
INDEX_SHIFT = 209  # words.vy: the index's 47 bits above the market's configuration
PRICE_MANTISSA, LATENCY_MANTISSA = 18, 13


# ------------------------------------------------------------------ the documented rule


def rounded(value: int, mantissa: int) -> int:
    """`value` as the index keeps it: shifted right by the fewest nibbles that fit the
    mantissa, and back (so rounded down to its leading `mantissa` bits, nibble-aligned)."""
    bits = 0
    while value >> (mantissa + bits):
        bits += 4
    return value >> bits << bits


def folded(state: tuple[int, int, int], price: int, latency: int) -> tuple[int, int, int]:
    """(price in wei, latency in sixteenths of a second, proofs) after a proof: each
    average moves to (7 * itself + the sample) / 8, rounded down (the first proof sets
    it), then kept in its float; proofs count up to 255."""
    old_price, old_latency, proofs = state
    new_price, new_latency = price, latency * 16
    if proofs:
        new_price = (7 * old_price + new_price) >> 3
        new_latency = (7 * old_latency + new_latency) >> 3
    return rounded(new_price, PRICE_MANTISSA), rounded(new_latency, LATENCY_MANTISSA), min(proofs + 1, 255)


def reported(state: tuple[int, int, int]) -> tuple[int, int, int]:
    """What `market_index` reports for a state: the latency in whole seconds."""
    return state[0], state[1] >> 4, state[2]


def decoded(head: int) -> tuple[int, int, int]:
    """The index in a head word, by the layout words.vy documents."""
    word = head >> INDEX_SHIFT
    latency, price = (word >> 8) & 0xFFFF, word >> 24
    return (
        (price & (2**PRICE_MANTISSA - 1)) << (4 * (price >> PRICE_MANTISSA)),
        (latency & (2**LATENCY_MANTISSA - 1)) << (4 * (latency >> LATENCY_MANTISSA)),
        word & 255,
    )


# ------------------------------------------------------------------ on the chain


def fresh_market(create_market, registry, staked_provers, mechanism, **terms) -> int:
    """A market no proof has touched, the staked provers in it accepting `mechanism`."""
    market_id = create_market(**terms)
    for p in staked_provers:
        registry.join_market(market_id, 2, ETHER // 100, 60, 0b11, [mechanism], sender=p)
    return market_id


def post(registry, requester, market_id, mechanism_id, salt, **overrides):
    terms = make_terms(market_id, mechanism_id, salt=salt, **overrides)
    tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
    return posted_terms(registry, tx)


def assign(registry, keeper, terms, prover, price):
    tx = registry.assign(item(terms, prover, price), sender=keeper)
    [(_, assignment)] = assigned(registry, tx)
    return assignment, tx.timestamp


def test_market_index__assigned_proofs__move_an_eighth_of_the_way_to_each_price_and_latency(
    chain, registry, create_market, staked_provers, mechanism, requester, keeper
):
    market_id = fresh_market(create_market, registry, staked_provers, mechanism)
    assert tuple(registry.market_index(market_id)) == (0, 0, 0)
    state = (0, 0, 0)
    prover = staked_provers[0]
    # (price paid, seconds from assignment to proof): the first sets the averages, the
    # next pull them up and down an eighth of the way.
    for salt, (price, wait) in enumerate([(ETHER // 20, 30), (ETHER // 10, 200), (ETHER // 50, 10)], 1):
        terms = post(registry, requester, market_id, mechanism, salt)
        assignment, assigned_at = assign(registry, keeper, terms, prover, price)
        advance(chain, wait)
        tx = prove(registry, terms, assignment, prover)
        before = state
        state = folded(state, price, tx.timestamp - assigned_at)
        assert tuple(registry.market_index(market_id)) == reported(state)
        if before[2]:  # it moved towards the sample, not to it
            assert min(before[0], price) <= state[0] <= max(before[0], price)
    assert reported(state)[2] == 3


def test_market_index__race_and_batch_proofs__each_counts_once_from_its_start(
    chain, registry, create_market, staked_provers, mechanism, requester, keeper
):
    market_id = fresh_market(create_market, registry, staked_provers, mechanism)
    race = post(registry, requester, market_id, OPEN_RACE, 1)
    advance(chain, 40)
    tx = prove(registry, race, RACE, staked_provers[1])
    state = folded((0, 0, 0), race.max_reward, tx.timestamp - race.posted_at)  # a race counts from posting
    assert tuple(registry.market_index(market_id)) == reported(state)

    prover = staked_provers[2]
    tasks = [post(registry, requester, market_id, mechanism, salt) for salt in (2, 3)]
    held = [
        assign(registry, keeper, t, prover, price)
        for t, price in zip(tasks, (ETHER // 40, ETHER // 30), strict=True)
    ]
    advance(chain, 25)
    proof = proof_for(STATEMENT, prover.address)
    items = [(t.as_tuple(), a.as_tuple(), STATEMENT, proof) for t, (a, _) in zip(tasks, held, strict=True)]
    tx = registry.prove_batch(items, sender=prover)
    for assignment, assigned_at in held:
        state = folded(state, assignment.price, tx.timestamp - assigned_at)
    assert tuple(registry.market_index(market_id)) == reported(state)

    client = RegistryClient(chain.provider.web3, registry.address)
    assert index.read(client, market_id) == index.IndexReading(*reported(state))
    assert index.read(client, market_id).known and not index.read(client, 999).known


def test_market_index__the_largest_price_and_latency__fit_and_leave_the_market_as_it_was(
    chain, registry, create_market, staked_provers, mechanism, requester, keeper
):
    """A task at the registry's largest reward, proven at the end of the longest proving
    window, in a market whose every configuration field is at its largest."""
    market_id = fresh_market(
        create_market,
        registry,
        staked_provers,
        mechanism,
        grace_period=86_400,
        requester_bps=9_000,
        caller_bps=1_000,
    )
    config = registry.market(market_id)
    chain.set_balance(requester.address, 4 * MAX_REWARD)
    terms = post(
        registry, requester, market_id, mechanism, 1, max_reward=MAX_REWARD, proving_window=MAX_PROVING_WINDOW
    )
    assignment, assigned_at = assign(registry, keeper, terms, staked_provers[0], MAX_REWARD)
    advance(chain, MAX_PROVING_WINDOW - 5)
    tx = prove(registry, terms, assignment, staked_provers[0])
    latency = tx.timestamp - assigned_at
    state = folded((0, 0, 0), MAX_REWARD, latency)
    assert tuple(registry.market_index(market_id)) == reported(state)
    # Kept to 1 part in 2**14 and 2**9 at worst (18- and 13-bit mantissas, a nibble apart).
    assert MAX_REWARD - reported(state)[0] < MAX_REWARD >> 14
    assert latency - reported(state)[1] < latency >> 9
    assert registry.market(market_id) == config

    # A cheap quick proof next: the averages fall an eighth of the way, nothing wraps.
    terms = post(registry, requester, market_id, mechanism, 2, proving_window=86_401)
    assignment, assigned_at = assign(registry, keeper, terms, staked_provers[0], ETHER // 100)
    tx = prove(registry, terms, assignment, staked_provers[0])
    state = folded(state, ETHER // 100, tx.timestamp - assigned_at)
    assert tuple(registry.market_index(market_id)) == reported(state)
    assert registry.market(market_id) == config


# ------------------------------------------------------------------ the rule, at random


@st.composite
def histories(draw):
    """A market's configuration bits, proofs already folded in, and the next proof."""
    prices = st.one_of(st.integers(0, 2**80 - 1), st.sampled_from([0, 1, 2**80 - 1, 2**18, 2**18 - 1]))
    latencies = st.one_of(st.integers(0, 2**22), st.sampled_from([0, 1, 511, 512, 2**22]))
    past = draw(st.lists(st.tuples(prices, latencies), max_size=4))
    return draw(st.integers(0, 2**INDEX_SHIFT - 1)), past, draw(prices), draw(latencies)


@pytest.fixture(scope="module")
def after_proof(chain, registry_math):
    """RegistryMath's `index_after_proof` through web3 directly (ape's call is slower than
    the call itself, hundreds of times here)."""
    web3 = chain.provider.web3
    abi = [a.model_dump(mode="json", by_alias=True) for a in registry_math.contract_type.abi]
    return web3.eth.contract(address=registry_math.address, abi=abi).functions.index_after_proof


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=histories())
def test_index_after_proof__any_price_and_latency__as_documented_and_configuration_untouched(
    after_proof, case
):
    config, past, price, latency = case
    head, state = config, (0, 0, 0)
    for p, lat in past:
        head = after_proof(head, p, lat).call()
        state = folded(state, p, lat)
    after = after_proof(head, price, latency).call()
    assert after & (2**INDEX_SHIFT - 1) == config
    assert decoded(after) == folded(state, price, latency)


def test_index_after_proof__counts_up_to_255_then_stays(after_proof):
    head = 0
    rng = random.Random(18)
    for _ in range(256):
        head = after_proof(head, rng.randrange(2**80), rng.randrange(2**22)).call()
    assert decoded(head)[2] == 255
