"""A process's data directory as a user meets it: files outside the working directory, a
node replaced under a running keeper (a devnet restarted: same port, same chain id, new
genesis) stops it with exit code 2 before it sends anything there, and the single file of
the previous layout is moved from without losing an unsent transaction or a sealed bid."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request

from eth_account import Account
from web3 import Web3

from provingmarket.devnet import Anvil
from tests.factories import ETHER, frontend_account, spawn_frontend
from tests.processes.conftest import Relay

# ------------------------------------------------------------------ a restarted chain


def test_chain_restarted_under_a_running_keeper__exits_2_naming_the_difference__sends_nothing_there(
    make_stack, make_prover, funded, post, spawn, tmp_path, rpc, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    make_prover(stack)
    relay = Relay(rpc)  # the node's address the keeper knows: its port stays, the chain behind it changes
    cwd, home = tmp_path / "cwd", tmp_path / "xdg"
    cwd.mkdir()
    # No --data-dir: the default, under $XDG_DATA_HOME, never the working directory.
    keeper = spawn(
        "frontends.orderbook.process",
        *("--rpc", relay.url, "--deployment", str(stack.record), "--mechanism", str(stack.mechanism_id)),
        *("--poll", "0.2"),
        env={"ORDERBOOK_KEY": key, "XDG_DATA_HOME": str(home)},
        cwd=cwd,
    )
    post(stack, max_reward=ETHER // 10)
    keeper.wait_for("orderbook.assigned", timeout=60)

    fresh = Anvil(chain_id=chain.chain_id)
    try:
        web3 = Web3(Web3.HTTPProvider(fresh.uri))
        web3.provider.make_request("anvil_mine", [chain.blocks.head.number + 5])
        web3.provider.make_request("anvil_setBalance", [address, hex(100 * ETHER)])
        relay.cut()
        relay.target = ("127.0.0.1", fresh.port)
        relay.restore()
        started = time.monotonic()
        assert keeper.popen.wait(15) == 2
        seconds = time.monotonic() - started
        wrong = keeper.events("wrong_chain")
        assert len(wrong) == 1 and "genesis" in wrong[0]["error"], keeper.text[-5:]
        assert [line for line in keeper.text if "Traceback" in line] == []
        assert web3.eth.get_transaction_count(address) == 0, "a transaction reached the new chain"
        assert seconds < 10
    finally:
        fresh.stop()
        relay.close()

    [data] = keeper.events("data.dir")
    files = {p.name for p in (home / "provingmarket").rglob("*.sqlite")}
    assert data["path"].startswith(str(home)) and {"mirror.sqlite", "outbox.sqlite"} <= files
    assert [p.name for p in cwd.iterdir()] == [], "the keeper wrote into its working directory"


# ------------------------------------------------------------------ the previous layout

# The single file of the previous layout, as that code wrote it: the mirror's bookkeeping
# (its block hashes name the chain), the outbox and the auction's tables, in one file.
OLD_MIRROR = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE block_hashes (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE journal (
    block INTEGER NOT NULL, log_index INTEGER NOT NULL, block_hash TEXT NOT NULL, tx TEXT NOT NULL,
    name TEXT NOT NULL, task_id TEXT, args TEXT NOT NULL, PRIMARY KEY (block, log_index));
"""
OLD_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    tx_hash TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    fn TEXT NOT NULL,
    keys TEXT NOT NULL,          -- JSON list: the work this transaction carries
    raw BLOB NOT NULL,           -- the signed transaction, rebroadcast as it is
    state TEXT NOT NULL,
    block INTEGER,
    block_hash TEXT,
    gas_used INTEGER,
    sent_at REAL NOT NULL,
    broadcasts INTEGER NOT NULL DEFAULT 1,
    note TEXT
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state);
"""
OLD_AUCTION = """
CREATE TABLE IF NOT EXISTS auctions (
    task_id TEXT NOT NULL, round INTEGER NOT NULL,
    market_id INTEGER NOT NULL, mechanism_id INTEGER NOT NULL,
    max_reward TEXT NOT NULL, collateral TEXT NOT NULL, proving_window INTEGER NOT NULL,
    capabilities TEXT NOT NULL, redundancy INTEGER NOT NULL, open_slots INTEGER NOT NULL,
    assignable_until INTEGER NOT NULL, opened_at INTEGER NOT NULL, closes_at INTEGER NOT NULL,
    state TEXT NOT NULL,                 -- open, closed
    closed_at INTEGER, cleared_block INTEGER, price TEXT, bids INTEGER, note TEXT,
    PRIMARY KEY (task_id, round));
CREATE INDEX IF NOT EXISTS auctions_state ON auctions (state, closes_at);
CREATE TABLE IF NOT EXISTS bids (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bid_id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL, round INTEGER NOT NULL, prover TEXT NOT NULL,
    min_price TEXT NOT NULL, expiry TEXT NOT NULL, nonce TEXT NOT NULL,
    signature TEXT NOT NULL UNIQUE,      -- 0x hex; a signature is accepted once
    received_at REAL NOT NULL,
    status TEXT NOT NULL,                -- sealed, won, lost, invalid, replaced
    price TEXT, reason TEXT, assigned_block INTEGER);
CREATE INDEX IF NOT EXISTS bids_auction ON bids (task_id, round, prover);
CREATE INDEX IF NOT EXISTS bids_status ON bids (status);
"""


BID_ID = "0b" * 16


def old_combined_file(path, stack, key: str, web3: Web3) -> tuple[str, str]:
    """A file as the previous version left it: a signed transaction stored and never
    sent, and a sealed bid in an open auction. Returns (the transaction's hash, the bid's id)."""
    head = web3.eth.get_block("latest")
    signer = Account.from_key(key)
    nonce = web3.eth.get_transaction_count(signer.address)
    fee = 2 * (head.get("baseFeePerGas") or 0) + 10**9
    tx = {"to": signer.address, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": web3.eth.chain_id,
          "maxFeePerGas": fee, "maxPriorityFeePerGas": 10**9}  # fmt: skip
    signed = signer.sign_transaction(tx)
    tx_hash = Web3.to_hex(signed.hash)
    db = sqlite3.connect(path)
    db.executescript(OLD_MIRROR + OLD_OUTBOX + OLD_AUCTION)
    meta = {"schema": "3", "registry": stack.client.address, "chain_id": str(web3.eth.chain_id),
            "start_block": str(stack.client.from_block), "cursor_block": str(head["number"]),
            "cursor_hash": Web3.to_hex(head["hash"])}  # fmt: skip
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.execute("INSERT INTO block_hashes VALUES (?, ?)", (head["number"], Web3.to_hex(head["hash"])))
    db.execute(
        "INSERT INTO outbox (tx_hash, nonce, fn, keys, raw, state, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (tx_hash, tx["nonce"], "assign_batch", "[]", bytes(signed.raw_transaction), "pending", time.time()),
    )
    task = "0x" + "ab" * 32
    now = head["timestamp"]
    db.execute(
        "INSERT INTO auctions (task_id, round, market_id, mechanism_id, max_reward, collateral, "
        "proving_window, capabilities, redundancy, open_slots, assignable_until, opened_at, closes_at, "
        "state) "
        "VALUES (?, 1, ?, ?, '1000', '0', 60, '0', 1, 1, ?, ?, ?, 'open')",
        (task, stack.market_id, stack.mechanism_id, now + 3600, now, now + 600),
    )
    db.execute(
        "INSERT INTO bids (bid_id, task_id, round, prover, min_price, expiry, nonce, signature, received_at, "
        "status) VALUES (?, ?, 1, ?, '500', ?, '0', '0x1234', ?, 'sealed')",
        (BID_ID, task, signer.address, str(now + 7200), time.time()),
    )
    db.commit()
    db.close()
    return tx_hash, BID_ID


def test_upgrade__a_file_of_the_previous_layout__its_unsent_transaction_is_sent_and_its_bid_kept(
    make_stack, funded, spawn, tmp_path, chain
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    web3 = chain.provider.web3
    old = tmp_path / "auction.sqlite"
    tx_hash, bid_id = old_combined_file(old, stack, key, web3)
    data = tmp_path / "data"

    frontend = spawn_frontend(
        spawn, stack, key, data, "--db", str(old), "--port", "0", "--window", "60", mechanism="auction"
    )
    url = frontend.wait_for("auction.api", timeout=60)[0]["url"]
    [imported] = frontend.events("data.imported")
    assert imported["rows"] == {"outbox": 1, "auctions": 1, "bids": 1}
    assert sorted(p.name for p in data.glob("*.sqlite")) == ["bids.sqlite", "mirror.sqlite", "outbox.sqlite"]

    # The transaction the old file held unsent reaches the chain once, byte for byte.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and web3.eth.get_transaction_count(address) == 0:
        time.sleep(0.2)
    assert Web3.to_hex(web3.eth.get_transaction_receipt(tx_hash)["transactionHash"]) == tx_hash
    assert web3.eth.get_transaction_count(address) == 1
    # The sealed bid is served as the old process promised it.
    with urllib.request.urlopen(f"{url}/bids/{bid_id}", timeout=10) as answer:
        bid = json.load(answer)
    assert (bid["prover"], int(bid["min_price"])) == (address, 500)
    assert frontend.stop() == 0

    # A second start with the same --db moves nothing again; the old file is left as it was.
    frontend.start()
    frontend.wait_for("auction.api", 2, timeout=60)
    assert [e["rows"] for e in frontend.events("data.imported")][1] == {}
    assert frontend.stop() == 0
    with sqlite3.connect(old) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    with sqlite3.connect(data / "outbox.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
