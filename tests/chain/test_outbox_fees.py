"""The outbox's fees on an anvil that charges a base fee (1 gwei) and mines only when told:
a base fee that jumps tenfold, a transaction the node forgets, a crash between a
replacement and its block, a fee cap, a database written before fees were managed, a node
that is no longer the file's chain. Whatever happens, each piece of work is applied once,
no nonce is left as a gap, and nothing is signed above the cap."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import replace

import pytest
from eth_account import Account
from web3 import Web3

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.chain.database import store_meta
from provingmarket.chain.identity import ChainIdentity, WrongChain
from provingmarket.chain.outbox import DONE, MINED, PENDING, SCHEMA, SUPERSEDED, Outbox
from provingmarket.devnet.chain import GWEI, Anvil
from provingmarket.runtime.metrics import Metrics
from tests.factories import ETHER

QUICK = 0.2  # seconds before a transaction waiting is replaced, in these tests


@pytest.fixture(scope="module")
def node(chain, registry):
    """An anvil of this module's own (the session's charges no base fee) that mines only
    when a test says so, with the session registry's code at its address."""
    with Anvil(base_fee=GWEI) as anvil:
        web3 = Web3(Web3.HTTPProvider(anvil.uri))
        code = chain.provider.web3.eth.get_code(registry.address)
        rpc(web3, "anvil_setCode", registry.address, Web3.to_hex(code))
        rpc(web3, "evm_setAutomine", False)
        yield anvil.uri, registry.address


@pytest.fixture
def client(node) -> RegistryClient:
    """A fresh account with 100 ETH on the module's node, over a connection of its own."""
    uri, registry = node
    web3 = Web3(Web3.HTTPProvider(uri))
    key = Account.create().key
    rpc(web3, "anvil_setBalance", Account.from_key(key).address, hex(100 * ETHER))
    return RegistryClient(web3, registry, KeySigner(key))


def rpc(web3: Web3, method: str, *params):
    answer = web3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in answer, answer
    return answer.get("result")


def mine(client: RegistryClient) -> int:
    rpc(client.web3, "evm_mine")
    return client.web3.eth.block_number


def spike(client: RegistryClient, times: int = 10) -> int:
    """The next block's base fee `times` the current one; that base fee."""
    base = client.web3.eth.fee_history(1, "latest", [])["baseFeePerGas"][-1]
    rpc(client.web3, "anvil_setNextBlockBaseFeePerGas", hex(times * base))
    return times * base


def stakes(client: RegistryClient) -> list[int]:
    me = client.signer.address  # type: ignore[union-attr]
    return [e.amount for e in client.events(["Staked"]) if e.prover == me]


def settle_until(outbox: Outbox, kind: str, confirmed: int = 0, timeout: float = 10) -> list:
    """Settle rounds until one reports `kind`; every outcome seen on the way."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += outbox.settle(confirmed)
        if any(o.kind == kind for o in seen):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"no {kind} within {timeout} s: {[o.kind for o in seen]}")


def test_send__priced_from_the_fee_history__twice_the_next_base_fee_plus_the_tip(client, tmp_path):
    outbox = Outbox(str(tmp_path / "o.sqlite"), client)
    base = client.web3.eth.fee_history(1, "latest", [])["baseFeePerGas"][-1]
    sent = outbox.send("stake", value=ETHER, keys=["stake:1"])
    assert base > 0 and sent.max_fee == 2 * base + sent.tip

    head = mine(client)
    [mined] = outbox.settle(head)
    receipt = client.web3.eth.get_transaction_receipt(sent.tx_hash)
    assert mined.kind == "mined" and mined.sent.fee_paid == receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert outbox.spent().wei == mined.sent.fee_paid > 0 and outbox.spent().transactions == 1


def test_base_fee_tenfold__the_waiting_transaction_is_replaced_and_mined__its_work_applied_once(
    client, tmp_path
):
    metrics = Metrics("test")
    outbox = Outbox(str(tmp_path / "o.sqlite"), client, replace_after=QUICK, metrics=metrics)
    first = outbox.send("stake", value=ETHER, keys=["stake:1"])
    high = spike(client)
    assert first.max_fee < high
    mine(client)  # a block at ten times the base fee: the transaction cannot pay it
    assert stakes(client) == []

    seen = settle_until(outbox, "replaced")
    replaced = next(o.sent for o in seen if o.kind == "replaced")
    assert replaced.nonce == first.nonce and replaced.tx_hash != first.tx_hash
    assert replaced.max_fee > high * 0.875  # the next block's base fee after the spike
    assert outbox.in_flight_keys() == {"stake:1"}

    head = mine(client)
    seen = outbox.settle(head) + outbox.settle(head)
    assert [(o.kind, o.sent.tx_hash) for o in seen] == [("mined", replaced.tx_hash)]
    assert outbox.in_flight_keys() == set() and outbox.rows()[0].state == DONE
    assert stakes(client) == [ETHER]
    assert [(h, state) for h, state, _ in outbox.attempts(replaced)] == [
        (first.tx_hash, SUPERSEDED),
        (replaced.tx_hash, MINED),
    ]
    assert metrics.value("transactions_replaced_total") == 1


def test_transaction_dropped_from_the_pool__rebroadcast__the_later_nonce_mined_too(client, tmp_path):
    outbox = Outbox(str(tmp_path / "o.sqlite"), client)  # replace_after: the default, not reached
    first = outbox.send("stake", value=ETHER, keys=["stake:1"])
    rpc(client.web3, "anvil_dropTransaction", first.tx_hash)
    second = outbox.send("stake", value=2 * ETHER, keys=["stake:2"])
    assert second.nonce == first.nonce + 1
    mine(client)
    assert stakes(client) == []  # the second waits behind the gap

    assert [o.kind for o in outbox.settle(0)] == ["rebroadcast"]
    head = mine(client)
    outcomes = outbox.settle(head)
    assert [(o.kind, o.sent.tx_hash) for o in outcomes] == [
        ("mined", first.tx_hash),
        ("mined", second.tx_hash),
    ]
    assert stakes(client) == [ETHER, 2 * ETHER]
    assert client.web3.eth.get_transaction_count(client.signer.address) == second.nonce + 1  # type: ignore[union-attr]


@pytest.mark.parametrize("mined", ["replacement", "first attempt"])
def test_crash__between_a_replacement_and_its_block__the_restart_settles_whichever_attempt_was_mined(
    client, tmp_path, monkeypatch, mined
):
    path = str(tmp_path / "o.sqlite")
    crashed = Outbox(path, client, replace_after=QUICK)
    first = crashed.send("stake", value=ETHER, keys=["stake:1"])
    if mined == "replacement":
        spike(client)
        mine(client)  # the first attempt cannot pay the block's base fee
    else:  # killed after storing the replacement, before sending it: the first stays in the pool
        monkeypatch.setattr(crashed, "_broadcast", lambda tx_hash, raw: None)
    seen = settle_until(crashed, "replaced")
    replacement = next(o.sent for o in seen if o.kind == "replaced")
    winner = replacement.tx_hash if mined == "replacement" else first.tx_hash
    del crashed

    restarted = Outbox(path, client)
    head = mine(client)
    outcomes = restarted.settle(head) + restarted.settle(head)
    assert [(o.kind, o.sent.tx_hash) for o in outcomes] == [("mined", winner)]
    assert stakes(client) == [ETHER]
    assert restarted.in_flight_keys() == set()
    states = dict((h, state) for h, state, _ in restarted.attempts(replacement))
    assert states == {winner: MINED, ({first.tx_hash, replacement.tx_hash} - {winner}).pop(): SUPERSEDED}
    assert restarted.spent().transactions == 1


def test_fee_cap__market_above_it__nothing_signed_above__one_warning__counted__mined_when_it_falls(
    client, tmp_path, caplog
):
    metrics = Metrics("test")
    probe = Outbox(str(tmp_path / "probe.sqlite"), client)
    cap = probe.market_fees().max_fee * 21 // 20  # 5% above today's price: no room to raise
    outbox = Outbox(
        str(tmp_path / "o.sqlite"), client, replace_after=QUICK, max_fee_per_gas=cap, metrics=metrics
    )
    caplog.set_level(logging.INFO, logger="provingmarket.chain.outbox")
    first = outbox.send("stake", value=ETHER, keys=["stake:1"])
    base = spike(client)
    mine(client)
    second = outbox.send("stake", value=2 * ETHER, keys=["stake:2"])  # signed while the market is above
    assert second.max_fee == cap

    deadline = time.monotonic() + 3 * QUICK
    while time.monotonic() < deadline:  # rounds past the time to replace: none is made
        assert all(o.kind == "rebroadcast" for o in outbox.settle(0))
        time.sleep(0.05)
    attempts = [fees for sent in (first, second) for _, _, fees in outbox.attempts(sent)]
    assert len(attempts) == 2 and all(fees.max_fee <= cap for fees in attempts)
    warnings = [json.loads(r.getMessage()) for r in caplog.records if r.levelno == logging.WARNING]
    assert [(w["event"], w["cap"]) for w in warnings] == [("outbox.fee_cap", cap)]
    assert warnings[0]["price"] > cap
    assert metrics.value("fee_cap_hits_total") == 1 and metrics.value("fee_capped") == 1

    rpc(client.web3, "anvil_setNextBlockBaseFeePerGas", hex(base // 10))  # the market falls back
    mine(client)
    settle_until(outbox, "rebroadcast")
    head = mine(client)
    outcomes = outbox.settle(head)
    assert [(o.kind, o.sent.tx_hash) for o in outcomes] == [
        ("mined", first.tx_hash),
        ("mined", second.tx_hash),
    ]
    assert stakes(client) == [ETHER, 2 * ETHER]
    assert metrics.value("fee_capped") == 0


def test_upgrade__a_database_written_before_fees_were_managed__its_pending_row_settled(client, tmp_path):
    path = str(tmp_path / "o.sqlite")
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    web3, me = client.web3, client.signer.address  # type: ignore[union-attr]
    call = client.contract.functions.stake()
    base = web3.eth.fee_history(1, "latest", [])["baseFeePerGas"][-1]
    tx = {
        "to": client.address,
        "value": ETHER,
        "data": call._encode_transaction_data(),
        "gas": 200_000,
        "nonce": web3.eth.get_transaction_count(me, "pending"),
        "chainId": web3.eth.chain_id,
        "maxFeePerGas": 2 * base + GWEI,
        "maxPriorityFeePerGas": GWEI,
    }
    raw = client.signer.sign_transaction(tx)  # type: ignore[union-attr]
    tx_hash = Web3.to_hex(Web3.keccak(raw))
    old.execute(
        "INSERT INTO outbox (tx_hash, nonce, fn, keys, raw, state, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (tx_hash, tx["nonce"], "stake", json.dumps(["stake:1"]), raw, PENDING, time.time()),
    )
    old.commit()
    old.close()
    web3.eth.send_raw_transaction(raw)

    outbox = Outbox(path, client)
    assert store_meta(outbox.db)["schema_version"] == "2"
    [row] = outbox.in_flight()
    assert (row.tx_hash, row.keys, row.max_fee, row.tip) == (tx_hash, ("stake:1",), 2 * base + GWEI, GWEI)
    head = mine(client)
    [mined] = outbox.settle(head)
    assert (mined.kind, mined.sent.tx_hash) == ("mined", tx_hash)
    assert outbox.rows()[0].state == DONE and outbox.in_flight_keys() == set()
    assert stakes(client) == [ETHER]
    assert [(h, state) for h, state, _ in outbox.attempts(row)] == [(tx_hash, MINED)]


def test_chain_identity__another_chain_refused__a_node_replaced_under_it_gets_nothing(client, tmp_path):
    path = str(tmp_path / "o.sqlite")
    identity = ChainIdentity.read(client.web3)
    outbox = Outbox(path, client, identity=identity)
    sent = outbox.send("stake", value=ETHER, keys=["stake:1"])
    rpc(client.web3, "anvil_dropTransaction", sent.tx_hash)  # the node lost it: due to be rebroadcast

    other = replace(identity, genesis_hash="0x" + "11" * 32)
    with pytest.raises(WrongChain, match="genesis"):
        Outbox(path, client, identity=other)

    with Anvil(base_fee=GWEI) as replaced_node:  # a devnet restarted at the outbox's node's address
        client.web3.provider = Web3.HTTPProvider(replaced_node.uri)
        with pytest.raises(WrongChain, match="not sent"):
            outbox.settle(0)
        assert client.web3.eth.get_transaction_count(client.signer.address, "pending") == 0  # type: ignore[union-attr]
        assert outbox.in_flight_keys() == {"stake:1"}
