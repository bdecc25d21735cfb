"""The client library on anvil: from a plain RPC URL with a key and inside ape, typed
reads, every event decoded, a task's whole state and a prover's standing in one call,
refusals before anything is sent; and the parsers the commands share."""

from __future__ import annotations

import pytest

from provingmarket import OPEN_RACE, deployments
from provingmarket.chain.client import (
    ApeSigner,
    ClientError,
    KeySigner,
    Refused,
    RegistryClient,
    registry_abi,
)
from provingmarket.deployments import Deployment, DeploymentError
from provingmarket.devnet import STATEMENT, proof_for
from tests.factories import ETHER, assigned, item

# anvil's default key for accounts[7] (mnemonic "test ... junk")
KEY_7 = "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"


@pytest.fixture
def rpc_client(registry, chain, accounts):
    client = RegistryClient.connect(chain.provider.uri, registry.address, KEY_7)
    assert client.signer.address == accounts[7].address
    return client


def test_connect__plain_rpc_and_key__stakes_and_reads_back(rpc_client, registry, accounts):
    receipt, events = rpc_client.transact("stake", value=ETHER)

    assert receipt["status"] == 1
    assert [(e.name, e.prover, e.amount) for e in events] == [("Staked", accounts[7].address, ETHER)]
    standing = rpc_client.standing(accounts[7].address)
    assert (standing.stake, standing.free, standing.locked) == (ETHER, ETHER, 0)
    assert registry.standing(accounts[7]).stake == ETHER


def test_transact__registry_would_refuse__refused_with_its_reason_and_nothing_sent(rpc_client, accounts):
    nonce = accounts[7].nonce
    with pytest.raises(Refused) as refused:
        rpc_client.transact("unstake", ETHER, action="unstake")
    assert refused.value.reason == "registry: not enough free stake"
    assert str(refused.value) == "unstake: registry: not enough free stake"
    assert accounts[7].nonce == nonce


def test_connect__nothing_there__clear_errors(chain, registry):
    with pytest.raises(ClientError, match="no node answers at http://127.0.0.1:1"):
        RegistryClient.connect("http://127.0.0.1:1", registry.address)
    with pytest.raises(ClientError, match="no registry at 0x1111111111111111111111111111111111111111"):
        RegistryClient.connect(chain.provider.uri, "0x" + "11" * 20)
    with pytest.raises(ClientError, match="not a private key"):
        KeySigner("0x1234")
    reader = RegistryClient.connect(chain.provider.uri, registry.address)
    with pytest.raises(ClientError, match="give an account"):
        reader.transact("stake", value=1)


def test_from_ape__recorded_deployment__reads_and_refuses_other_chains(
    registry, market, chain, tmp_path, accounts
):
    with pytest.raises(DeploymentError, match="no deployment recorded for ethereum:local"):
        RegistryClient.from_ape("ethereum:local:foundry", folder=tmp_path)
    deployments.save(Deployment("ethereum:local", chain.chain_id, registry.address, 0, 3_600), tmp_path)
    client = RegistryClient.from_ape("ethereum:local:foundry", accounts[8], folder=tmp_path)
    assert client.market(market).verifier == registry.market(market).verifier
    assert [m.market_id for m in client.markets()] == list(range(1, registry.market_count() + 1))
    client.transact("stake", value=ETHER)
    assert registry.standing(accounts[8]).stake == ETHER

    deployments.save(Deployment("ethereum:local", chain.chain_id + 1, registry.address, 0, 3_600), tmp_path)
    with pytest.raises(ClientError, match=f"is on chain {chain.chain_id + 1}, but the node is on chain"):
        RegistryClient.from_ape("ethereum:local", folder=tmp_path)


def test_task__whole_state_and_timeline__and_prover_status(
    registry, create_task, provers, keeper, requester, chain, rpc_client
):
    terms = create_task(redundancy=2)
    task = registry.task_id(terms.as_tuple())
    first, second = provers[0], provers[1]
    [(_, a1)] = assigned(registry, registry.assign(item(terms, first, terms.max_reward), sender=keeper))
    [(_, a2)] = assigned(registry, registry.assign(item(terms, second, terms.max_reward), sender=keeper))
    registry.prove(
        terms.as_tuple(), a1.as_tuple(), STATEMENT, proof_for(STATEMENT, first.address), sender=first
    )

    state = rpc_client.task(bytes(task))
    assert state.terms == terms
    assert (state.open, state.assigned, state.proven, state.closed) == (0, 1, 1, 0)
    assert [e.name for e in state.timeline] == ["TaskPosted", "TaskAssigned", "TaskAssigned", "TaskProven"]
    assert state.timeline[0].requester == requester.address
    assert [e.prover for e in state.proofs] == [first.address]
    assert list(state.live_assignments) == [second.address]
    assert state.live_assignments[second.address][0] == a2

    status = rpc_client.prover_status(second.address)
    assert [(bytes(live.task_id), live.assignment) for live in status.live] == [(bytes(task), a2)]
    assert status.standing.locked == terms.collateral
    assert [m.market_id for m in status.memberships] == [terms.market_id]
    assert [m.used for m in status.memberships] == [1]
    assert rpc_client.prover_status(first.address).live == []

    with pytest.raises(ClientError, match="no task 0x" + "00" * 32):
        rpc_client.task(b"\x00" * 32)


def test_events__every_registry_event_has_a_decoder(rpc_client):
    names = {item["name"] for item in registry_abi() if item["type"] == "event"}
    assert set(rpc_client._events.values()) == names and len(names) >= 20


def test_events__filtered_by_name_and_prover(registry, create_task, prover, keeper, rpc_client):
    terms = create_task(mechanism_id=OPEN_RACE)
    registry.prove(
        terms.as_tuple(),
        (0, 0, 0, "0x" + "00" * 20),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )
    proven = rpc_client.events(["TaskProven"], prover=prover.address)
    assert proven and all(e.prover == prover.address for e in proven)
    assert proven[-1].paid == terms.max_reward
    assert list(proven[-1].public_inputs) == [int(prover.address, 16), *STATEMENT[1:]]


def test_sign_bid__key_and_ape_signers__registry_pays_the_signed_price(
    registry, create_task, provers, keeper, chain, tmp_path
):
    """The client's Bid, signed by a key or by an ape account, is consent the registry
    accepts: the frontend may pay any price from the minimum up, above the prover's ask."""
    deployments.save(Deployment("ethereum:local", chain.chain_id, registry.address, 0, 3_600), tmp_path)
    for prover in provers[:2]:
        terms = create_task()
        task = bytes(registry.task_id(terms.as_tuple()))
        expiry = chain.pending_timestamp + 600
        if prover is provers[0]:
            client = RegistryClient(chain.provider.web3, registry.address, KeySigner(prover.private_key))
        else:
            client = RegistryClient.from_ape("ethereum:local", ApeSigner(prover).ape_account, folder=tmp_path)
            client.signer = ApeSigner(prover)  # sign through ape, not with the key
        signature = client.sign_bid(task, ETHER // 20, expiry)
        price = ETHER // 20 + 1
        tx = registry.assign(item(terms, prover, price, signature, ETHER // 20, expiry, 0), sender=keeper)
        [(who, assignment)] = assigned(registry, tx)
        assert (who, assignment.price) == (prover.address, price)


def test_ape_signer__transaction_signed_and_sent_by_ape(registry, chain, accounts):
    """The path for keyfile and hardware accounts: ape signs and sends, the client reads
    the receipt and its events."""
    client = RegistryClient(chain.provider.web3, registry.address, ApeSigner(accounts[9]))
    receipt, events = client.transact("stake", value=2 * ETHER)
    assert receipt["status"] == 1
    assert [(e.name, e.prover, e.stake) for e in events] == [("Staked", accounts[9].address, 2 * ETHER)]
    with pytest.raises(Refused, match="registry: not enough free stake"):
        client.transact("unstake", 3 * ETHER)
