"""Fixtures shared by every test: named actors, the registry on anvil (its test harness:
the registry plus views only tests need), a market with the square circuit's Groth16
verifier deployed by the registry from its blueprint, staked provers, a registered
mechanism, and factories."""

from __future__ import annotations

import ape
import ape_ethereum.trace
import pytest

from provingmarket import BINDING_ADDRESS_INPUT
from provingmarket.chain import markets
from provingmarket.chain.markets import deploy_registry
from provingmarket.devnet import SQUARE
from tests.factories import (
    ADDRESS_INPUT,
    CALLER_BPS,
    ETHER,
    GRACE_PERIOD,
    MIN_COLLATERAL,
    MIN_REWARD,
    PROVER_INPUT,
    REQUESTER_BPS,
    STATEMENT,
    UNBONDING_DELAY,
    escrow,
    make_terms,
    posted_terms,
    proof_for,
)

# Files that take minutes (paths under tests/), collected first and longest first: `make test` spreads files
# over the workers (pytest-xdist, --dist loadfile), and started first they do not end the
# run alone while the other worker idles. The mirror's tests go before them all: their deep
# reorganisations (anvil_reorg of 4 blocks and more on the worker's session chain) must run
# before the stateful machine's snapshots and reverts on that chain, after which a deep
# reorganisation can take the registry's own deployment with it.
SLOW_FIRST = (
    "chain/mirror/test_mirror.py",
    "processes/test_demo.py",
    "processes/test_simulation.py",
    "processes/test_chaos.py",
    "chain/stateful/test_registry_machine.py",
    "cli/test_rehearse.py",
    "processes/test_auction.py",
    "processes/test_agent.py",
    "processes/test_agent_queue.py",
    "explorer/test_fuzz.py",
)


def pytest_configure(config):
    # xdist hands out --dist loadfile's files sorted by their number of tests, most first,
    # unless told not to: that put the slow files above (one or two tests each) last.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        return next(
            (i for i, path in enumerate(SLOW_FIRST) if item.nodeid.startswith("tests/" + path)),
            len(SLOW_FIRST),
        )

    items.sort(key=rank)  # stable: every other test keeps its order


@pytest.fixture(scope="session", autouse=True)
def quick_reverts():
    """Skip ape's revert diagnostics. For every revert ape rebuilds a Vyper source
    traceback and prints a call trace from anvil's full step trace: seconds per revert,
    most of the suite's time. `ape.reverts` checks the reason the node returns, which
    needs neither; an unexpected revert still shows its reason, without the traceback."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ape.exceptions, "_get_ape_traceback_from_tx", lambda txn: None)
        patch.setattr(ape_ethereum.trace.Trace, "show", lambda self, *args, **kwargs: None)
        yield


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of this worker's own (started on first use, stopped by its pid at
    the end); tests take a fresh database each with `postgres_server.create_database(name)`."""
    from provingmarket.devnet.services import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server of this worker's own (the task queue's broker), stopped by its pid."""
    from provingmarket.devnet.services import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def owner(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def requester(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def provers(accounts):
    return [accounts[2], accounts[3], accounts[4]]


@pytest.fixture(scope="session")
def prover(provers):
    return provers[0]


@pytest.fixture(scope="session")
def keeper(accounts):
    """A frontend's account: it assigns tasks for the registered mechanism."""
    return accounts[5]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def registry(project, owner):
    return deploy_registry(ape, owner, UNBONDING_DELAY, project.RegistryHarness)


@pytest.fixture(scope="session")
def registry_math(project, owner):
    """The registry's pure rules as views (contracts/testing/RegistryMath.vy): bounds, the
    price curves, a chain's current link, reason texts."""
    return project.RegistryMath.deploy(sender=owner)


@pytest.fixture(scope="session")
def deploy_verifier(project, owner, registry):
    """Have the registry deploy a Groth16 verifier for a sample circuit's key (the square
    circuit by default) from its blueprint: markets on it are trusted."""

    def deploy(circuit=SQUARE, sender=None):
        return markets.deploy_verifier(ape, registry, sender or owner, circuit)

    return deploy


@pytest.fixture(scope="session")
def deploy_custom_verifier(project, owner):
    """Deploy a Groth16 verifier directly, not through the registry: markets on it are custom."""

    def deploy(circuit=SQUARE, sender=None):
        return (sender or owner).deploy(project.Groth16Verifier, *circuit.verifying_key().constructor_args())

    return deploy


@pytest.fixture(scope="session")
def verifier(deploy_verifier):
    return deploy_verifier()


@pytest.fixture(scope="session")
def create_market(registry, verifier, owner):
    def create(
        binding: int = BINDING_ADDRESS_INPUT,
        address_input: int = ADDRESS_INPUT,
        min_collateral: int = MIN_COLLATERAL,
        min_reward: int = MIN_REWARD,
        grace_period: int = GRACE_PERIOD,
        requester_bps: int = REQUESTER_BPS,
        caller_bps: int = CALLER_BPS,
        sender=None,
        verifier_address=None,
    ) -> int:
        sample = list(STATEMENT)
        sample[address_input] = int(owner.address, 16)
        tx = registry.create_market(
            verifier_address or verifier,
            sample,
            proof_for(sample),
            min_collateral,
            min_reward,
            grace_period,
            requester_bps,
            caller_bps,
            binding,
            address_input,
            sender=sender or owner,
        )
        return tx.events.filter(registry.MarketCreated)[0].market_id

    return create


@pytest.fixture(scope="session")
def market(create_market):
    return create_market()


@pytest.fixture(scope="session")
def mechanism(registry, keeper, owner):
    tx = registry.register_mechanism("orderbook", [keeper], sender=owner)
    return tx.events.filter(registry.MechanismRegistered)[0].mechanism_id


@pytest.fixture(scope="session")
def staked_provers(registry, provers, market, mechanism):
    """Three provers with 5 ETH stake each, in the market, accepting the mechanism."""
    for p in provers:
        registry.stake(sender=p, value=5 * ETHER)
        registry.join_market(market, 2, ETHER // 100, 60, 0b11, [mechanism], sender=p)
    return provers


@pytest.fixture
def create_task(registry, requester, market, mechanism, staked_provers):
    """Post a task; returns its terms as recorded (requester and posted_at filled)."""

    salts = iter(range(1, 1_000_000))

    def create(sender=None, prover_input: bytes = PROVER_INPUT, input_uri: str = "", **overrides):
        # A fresh salt per task: anvil can mine two blocks in one second, and identical
        # terms posted at the same timestamp are the same task.
        overrides.setdefault("salt", next(salts))
        terms = make_terms(market, overrides.pop("mechanism_id", mechanism), **overrides)
        tx = registry.post_task(
            terms.as_tuple(), prover_input, input_uri, sender=sender or requester, value=escrow(terms)
        )
        return posted_terms(registry, tx)

    return create
