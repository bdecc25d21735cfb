"""The stores on both engines (provingmarket/chain/database.py, postgres.py): the same
migrations, refusals, writes, upserts, rows and transactions give the same results on a
SQLite file and on a Postgres schema; stores sharing one Postgres database stay apart;
the auction's bid store keeps its rules (replaced, capped, replayed, closed) on both, and
on Postgres across connections: no bid is stored after the keeper closed its auction."""

from __future__ import annotations

import itertools
import threading

import pytest

from provingmarket.chain.database import (
    StoreError,
    bind_chain,
    chain_of,
    fetch,
    is_database_error,
    is_integrity_error,
    migrate,
    open_database,
    transaction,
)
from provingmarket.chain.identity import ChainIdentity, WrongChain
from provingmarket.chain.mirror.schema import SCHEMA, read_meta, write_meta
from provingmarket.chain.mirror.tables import Tables

BACKENDS = ["sqlite", "postgres"]
_names = itertools.count()

V1 = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, weight REAL, raw BLOB);"


def add_price(db) -> None:
    db.execute("ALTER TABLE items ADD COLUMN price TEXT NOT NULL DEFAULT '0'")


@pytest.fixture(params=BACKENDS)
def store_target(request, tmp_path) -> str:
    """Where a store lives: a SQLite file, or a fresh Postgres database (of the session's server)."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"store_{next(_names)}")


def test_migrations__the_same_list_on_both__rows_kept_and_versions_refused(store_target):
    db = open_database(store_target, "items")
    assert migrate(db, "items", [V1], store_target) == 0
    db.execute(
        "INSERT INTO items (id, name, weight, raw) VALUES (?, ?, ?, ?)", (1, "kept", 0.1 + 0.2, b"\x00\xff")
    )
    assert migrate(db, "items", [V1, add_price], store_target) == 1
    row = db.execute("SELECT * FROM items").fetchone()
    assert dict(row) == {"id": 1, "name": "kept", "weight": 0.1 + 0.2, "raw": b"\x00\xff", "price": "0"}
    assert (row[0], row["name"]) == (1, "kept")  # by position and by name, as sqlite3.Row
    with pytest.raises(StoreError, match="newer version .*schema 2; this one reads up to 1"):
        migrate(db, "items", [V1], store_target)
    with pytest.raises(StoreError, match="is a items file, not a outbox file"):
        migrate(db, "outbox", [V1], store_target)
    db.close()


def test_a_failed_migration_leaves_the_previous_version_whole(store_target):
    db = open_database(store_target, "items")
    migrate(db, "items", [V1], store_target)

    def broken(db):
        add_price(db)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        migrate(db, "items", [V1, broken], store_target)
    assert [c[0] for c in db.execute("SELECT * FROM items").description] == ["id", "name", "weight", "raw"]
    assert migrate(db, "items", [V1, add_price], store_target) == 1
    db.execute("INSERT INTO items (id, name) VALUES (?, ?)", (2, "after"))
    assert [tuple(r) for r in db.execute("SELECT name, price FROM items")] == [("after", "0")]


def test_bound_chain__another_refused_on_both(store_target):
    db = open_database(store_target, "outbox")
    first = ChainIdentity(1337, "0xaa" * 16, "0xRegistry", 5, "0xbb" * 16)
    bind_chain(db, ChainIdentity(1337, first.genesis_hash), "outbox")
    bind_chain(db, first, "outbox")
    assert chain_of(db) == first
    with pytest.raises(WrongChain, match="chain id 1337 != 11155111"):
        bind_chain(db, ChainIdentity(11155111, first.genesis_hash), "outbox")


def test_mirror_tables__writes_upserts_and_undo_give_the_same_rows(store_target):
    """The mirror's derived tables: a whole row replaced (INSERT OR REPLACE), a column
    changed, a row deleted, then every write after a block undone."""
    db = open_database(store_target, "mirror")
    db.executescript(SCHEMA)
    tables = Tables(db)
    big = 2**255 + 1  # a uint256 amount: decimal TEXT
    with transaction(db):
        tables.block = 10
        tables.put("provers", {"prover": "0xB0b"}, {"stake": str(big), "locked": "0", "nonce": "0"})
        tables.put("tasks", {"task_id": "0x01"}, {"market_id": 1, "prover_input": b"\x01\x02", "terms": "{}"})
        tables.put("accepts", {"prover": "0xB0b", "market_id": 1, "mechanism_id": 3}, {})
    before = {t: [dict(r) for r in db.execute(f"SELECT * FROM {t}")] for t in ("provers", "tasks", "accepts")}
    with transaction(db):
        tables.block = 11
        tables.put("provers", {"prover": "0xB0b"}, {"stake": "5", "locked": "1", "nonce": "2"})
        tables.update("tasks", {"task_id": "0x01"}, market_id=2)
        tables.delete("accepts", {"prover": "0xB0b", "market_id": 1, "mechanism_id": 3})
        tables.put("accepts", {"prover": "0xB0b", "market_id": 1, "mechanism_id": 4}, {})
    assert fetch(db, "provers", {"prover": "0xB0b"})["stake"] == "5"
    assert fetch(db, "tasks", {"task_id": "0x01"}) == {
        **before["tasks"][0],
        "market_id": 2,
        "block": 11,
    }
    with transaction(db):
        assert tables.undo_after(10) == 4
    after = {t: [dict(r) for r in db.execute(f"SELECT * FROM {t}")] for t in ("provers", "tasks", "accepts")}
    assert after == before and int(after["provers"][0]["stake"]) == big
    assert after["tasks"][0]["prover_input"] == b"\x01\x02"
    write_meta(db, {"cursor_block": "10", "cursor_hash": None})
    write_meta(db, {"cursor_block": "11"})
    assert read_meta(db) == {"cursor_block": "11", "cursor_hash": None}
    # A row replaced whole: a column not given is not kept from the old row (SQLite's REPLACE).
    db.execute("INSERT OR REPLACE INTO provers (prover, stake, nonce) VALUES (?, ?, ?)", ("0xB0b", "1", "3"))
    db.execute("INSERT OR REPLACE INTO provers (prover, stake) VALUES (?, ?)", ("0xB0b", "2"))
    assert (fetch(db, "provers", {"prover": "0xB0b"}) or {})["nonce"] is None


def test_text_sorts_by_bytes_and_quoted_marks_stay_text(store_target):
    db = open_database(store_target, "mirror")
    db.executescript(SCHEMA)
    for account in ("0xb0", "0xB1", "0xa2", "0xA3", "0x_%?"):
        db.execute("INSERT INTO balances (account, amount, block) VALUES (?, ?, ?)", (account, "1", 1))
    assert [r["account"] for r in db.execute("SELECT account FROM balances ORDER BY account")] == [
        "0xA3",
        "0xB1",
        "0x_%?",
        "0xa2",
        "0xb0",
    ]
    found = db.execute(
        "SELECT COUNT(*) FROM balances WHERE account LIKE '0x%' AND account != '?' AND block = ?", (1,)
    )
    assert found.fetchone()[0] == 5


def test_a_duplicate_key_is_an_integrity_error_on_both(store_target):
    db = open_database(store_target, "mirror")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO balances (account, amount, block) VALUES (?, ?, ?)", ("0xa", "1", 1))
    with pytest.raises(Exception) as raised:
        db.execute("INSERT INTO balances (account, amount, block) VALUES (?, ?, ?)", ("0xa", "2", 2))
    assert is_integrity_error(raised.value)


def test_postgres__stores_sharing_a_database_stay_apart__a_bad_url_is_one_line(postgres_server):
    url = postgres_server.create_database(f"shared_{next(_names)}")
    mirror, second, bids = (
        open_database(url, "mirror"),
        open_database(url + "#mirror_b", "mirror"),
        open_database(url, "auction_bids"),
    )
    migrate(mirror, "mirror", [V1], url)
    migrate(bids, "auction_bids", ["CREATE TABLE IF NOT EXISTS items (bid TEXT PRIMARY KEY)"], url)
    migrate(second, "mirror", [V1], url)
    mirror.execute("INSERT INTO items (id, name) VALUES (?, ?)", (1, "in mirror"))
    assert second.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    assert [c.name for c in bids.execute("SELECT * FROM items").description] == ["bid"]
    dead = url.rsplit(":", 1)[0] + ":1/nothing"
    with pytest.raises(
        StoreError, match=r"^cannot open postgresql://postgres@127.0.0.1:1/nothing: "
    ) as refused:
        open_database(dead, "mirror")
    assert "\n" not in str(refused.value).strip()
    with pytest.raises(StoreError, match="not a Postgres schema name"):
        open_database(url + "#Bad-Name", "mirror")


def test_postgres__writers_of_one_store_exclude_each_other__readers_do_not_wait(postgres_server):
    """BEGIN IMMEDIATE on Postgres: a second writer waits for the first to commit and then
    reads what it wrote; a reader is not blocked meanwhile."""
    url = postgres_server.create_database(f"lock_{next(_names)}")
    first, second, reader = (open_database(url, "mirror") for _ in range(3))
    first.executescript(SCHEMA)
    write_meta(first, {"counter": "0"})
    seen: list[str] = []

    def bump(db) -> None:
        with transaction(db):
            value = int(read_meta(db)["counter"] or 0)
            seen.append(str(value))
            write_meta(db, {"counter": str(value + 1)})

    with transaction(first):
        value = int(read_meta(first)["counter"] or 0)
        other = threading.Thread(target=bump, args=(second,))
        other.start()
        other.join(0.5)
        assert other.is_alive()  # waiting for the store's lock
        assert read_meta(reader)["counter"] == "0"  # a reader does not wait
        write_meta(first, {"counter": str(value + 1)})
    other.join(10)
    assert not other.is_alive() and seen == ["1"] and read_meta(reader)["counter"] == "2"


# ------------------------------------------------------------------ the auction's bids


def test_auction_store__replaced__capped__replayed__closed__on_both(store_target):
    from frontends.auction.store import AuctionStore, StoreRefusal
    from frontends.book import OpenTask
    from tests.factories import offchain_terms

    t = OpenTask(b"\x07" * 32, offchain_terms(max_reward=100, redundancy=1), 1)
    store = AuctionStore(store_target)
    row = store.open_auction(t, 1, 1_000, 1_010)
    first = store.add_bid(row.task_id, 1, "0x" + "a" * 40, 10, 5_000, 0, b"\x01" * 65, cap=2)
    second = store.add_bid(row.task_id, 1, "0x" + "a" * 40, 20, 5_000, 0, b"\x02" * 65, cap=2)
    assert store.bid(first.bid_id).status == "replaced" and second.status == "sealed"
    assert second.seq > first.seq and store.auction(row.task_id).bids == 1
    with pytest.raises(StoreRefusal) as refused:
        store.add_bid(row.task_id, 1, "0x" + "a" * 40, 30, 5_000, 0, b"\x03" * 65, cap=2)
    assert refused.value.code == "too_many"
    with pytest.raises(StoreRefusal) as refused:
        store.add_bid(row.task_id, 1, "0x" + "b" * 40, 30, 5_000, 0, b"\x02" * 65, cap=2)
    assert refused.value.code == "replayed"
    assert store.last_rounds([row.task_id]) == {row.task_id: 1}
    other = AuctionStore(store_target)  # another process's connection
    with store.transaction():
        assert [a.task_id for a in store.due(1_010)] == [row.task_id]
        store.close_auction(row.task_id, 1, 1_010, "left the book")
    with pytest.raises(StoreRefusal) as refused:
        other.add_bid(row.task_id, 1, "0x" + "b" * 40, 30, 5_000, 0, b"\x04" * 65, cap=2)
    assert refused.value.code == "closed"
    assert other.auction(row.task_id).state == "closed" and other.auction(row.task_id).bids == 1
    assert [b.status for b in other.bids(row.task_id)] == ["replaced", "invalid"]
    store.close()
    other.close()


def test_auction_store__postgres__no_bid_lands_after_the_keeper_read_the_bids(postgres_server):
    """The keeper closes an auction and reads its bids in one transaction while another
    process's connection bids: the bid waits for the keeper and is then refused."""
    from frontends.auction.store import AuctionStore, StoreRefusal
    from frontends.book import OpenTask
    from tests.factories import offchain_terms

    url = postgres_server.create_database(f"bids_{next(_names)}")
    keeper_side, api_side = AuctionStore(url), AuctionStore(url)
    row = keeper_side.open_auction(OpenTask(b"\x08" * 32, offchain_terms(), 1), 1, 1_000, 1_010)
    outcome: list[str] = []

    def bid() -> None:
        try:
            api_side.add_bid(row.task_id, 1, "0x" + "c" * 40, 10, 5_000, 0, b"\x05" * 65, cap=2)
            outcome.append("stored")
        except StoreRefusal as refusal:
            outcome.append(refusal.code)

    with keeper_side.transaction():
        sealed = keeper_side.sealed_bids(row.task_id, 1)
        bidder = threading.Thread(target=bid)
        bidder.start()
        bidder.join(0.5)
        assert bidder.is_alive()  # the bid waits for the keeper's transaction
        keeper_side.close_auction(row.task_id, 1, 1_010, "cleared")
    bidder.join(10)
    assert sealed == [] and outcome == ["closed"] and keeper_side.bids(row.task_id) == []


def test_postgres__server_killed_and_back__the_store_reconnects_with_what_was_committed():
    """A restarted server (crash, failover): the statement under way fails, its transaction
    is gone whole, and the next statement reconnects, with the schema and the store's
    session lock as they were."""
    from provingmarket.devnet.services import PostgresServer

    with PostgresServer() as server:
        url = server.create_database("restarts")
        db = open_database(url, "mirror")
        db.executescript(SCHEMA)
        assert db.hold_exclusive("indexer")  # type: ignore[union-attr]
        write_meta(db, {"cursor_block": "7"})
        db.execute("BEGIN IMMEDIATE")
        write_meta(db, {"cursor_block": "8"})  # never committed
        server.kill()
        server.start()
        with pytest.raises(Exception) as lost:
            write_meta(db, {"cursor_block": "9"})
        assert is_database_error(lost.value) and not db.in_transaction
        assert read_meta(db)["cursor_block"] == "7"
        assert not open_database(url, "mirror").hold_exclusive("indexer")  # type: ignore[union-attr]
        db.close()
