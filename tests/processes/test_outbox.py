"""The outbox on anvil: what it stores before sending is what reaches the chain, once,
whatever happens between (a crash before the broadcast, a nonce taken by another
transaction, a reorg that drops the block it was mined in)."""

from __future__ import annotations

import pytest

from provingmarket.chain.client import KeySigner, Refused, RegistryClient
from provingmarket.chain.outbox import DONE, DROPPED, MINED, PENDING, Outbox
from tests.factories import ETHER


@pytest.fixture
def client(chain, registry, funded):
    return RegistryClient(chain.provider.web3, registry.address, KeySigner(funded()))


def stakes(client) -> list:
    return [e for e in client.events(["Staked"]) if e.prover == client.signer.address]


def test_send__stored_then_mined_reported_once_then_final(client, tmp_path):
    outbox = Outbox(str(tmp_path / "o.sqlite"), client)
    sent = outbox.send("stake", value=ETHER, keys=["stake:1"])
    assert outbox.in_flight_keys() == {"stake:1"}

    head = client.web3.eth.wait_for_transaction_receipt(sent.tx_hash)["blockNumber"]
    [mined] = outbox.settle(confirmed=head - 1)  # mined, not yet in the caller's view
    assert (mined.kind, mined.sent.state) == ("mined", MINED)
    assert [e.name for e in mined.events] == ["Staked"]
    assert outbox.in_flight_keys() == {"stake:1"}
    assert outbox.settle(confirmed=head) == []  # reported once; now final
    assert outbox.rows()[0].state == DONE and outbox.in_flight_keys() == set()
    assert [s.amount for s in stakes(client)] == [ETHER]
    assert sent.tx_hash == mined.sent.tx_hash


def test_send__a_call_that_would_revert__refused_with_the_reason_and_nothing_stored(client, tmp_path):
    outbox = Outbox(str(tmp_path / "o.sqlite"), client)
    with pytest.raises(Refused, match="registry: nothing unbonding"):
        outbox.send("withdraw_stake", keys=["x"])
    assert outbox.rows() == []


def test_crash__between_storing_and_broadcasting__the_restart_sends_the_same_transaction_once(
    client, tmp_path, monkeypatch
):
    path = str(tmp_path / "o.sqlite")
    crashed = Outbox(path, client)
    monkeypatch.setattr(crashed, "_broadcast", lambda tx_hash, raw: None)  # killed right after the commit
    sent = crashed.send("stake", value=ETHER, keys=["stake:1"])
    assert stakes(client) == []

    restarted = Outbox(path, client)
    assert [o.kind for o in restarted.settle(confirmed=0)] == ["rebroadcast"]
    client.web3.eth.wait_for_transaction_receipt(sent.tx_hash)
    outcomes = restarted.settle(confirmed=client.web3.eth.block_number)
    assert [(o.kind, o.sent.tx_hash) for o in outcomes] == [("mined", sent.tx_hash)]
    restarted.settle(confirmed=client.web3.eth.block_number)
    assert [s.amount for s in stakes(client)] == [ETHER]
    assert restarted.rows()[0].broadcasts == 2


def test_nonce_taken_by_another_transaction__dropped_and_its_work_free_again(client, tmp_path, monkeypatch):
    outbox = Outbox(str(tmp_path / "o.sqlite"), client)
    monkeypatch.setattr(outbox, "_broadcast", lambda tx_hash, raw: None)
    outbox.send("stake", value=ETHER, keys=["stake:1"])
    client.transact("stake", value=2 * ETHER)  # the same nonce, sent by someone else with the key

    [dropped] = outbox.settle(confirmed=client.web3.eth.block_number)
    assert (dropped.kind, dropped.sent.state) == ("dropped", DROPPED)
    assert outbox.in_flight_keys() == set()
    assert [s.amount for s in stakes(client)] == [2 * ETHER]


def test_reorg__the_block_it_was_mined_in_dropped__sent_again_byte_for_byte(client, tmp_path, chain):
    outbox = Outbox(str(tmp_path / "o.sqlite"), client)
    sent = outbox.send("stake", value=ETHER, keys=["stake:1"])
    block = client.web3.eth.wait_for_transaction_receipt(sent.tx_hash)["blockNumber"]
    outbox.settle(confirmed=block)
    assert outbox.rows()[0].state == DONE

    chain.provider.web3.provider.make_request("anvil_reorg", [1, []])
    assert stakes(client) == []
    assert outbox.rollback(block - 1) == 1
    kinds = [o.kind for o in outbox.settle(confirmed=block - 1)]
    assert kinds == ["reorged", "rebroadcast"]
    assert outbox.rows()[0].state == PENDING
    client.web3.eth.wait_for_transaction_receipt(sent.tx_hash)
    [again] = outbox.settle(confirmed=client.web3.eth.block_number)
    assert (again.kind, again.sent.tx_hash) == ("mined", sent.tx_hash)
    assert [s.amount for s in stakes(client)] == [ETHER]
