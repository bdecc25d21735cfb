"""Versioned stores (provingmarket/chain/database.py): migrations in order, refusals of a
newer, foreign or other-chain file, and the chain identity they record."""

import sqlite3

import pytest

from provingmarket.chain.database import StoreError, bind_chain, chain_of, connect, migrate
from provingmarket.chain.identity import ChainIdentity, WrongChain

V1 = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT);"


def add_price(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE items ADD COLUMN price TEXT NOT NULL DEFAULT '0'")


def test_a_file_from_before_versions_is_migrated_with_its_rows(tmp_path):
    path = str(tmp_path / "s.sqlite")
    old = connect(path)
    old.executescript(V1)
    old.execute("INSERT INTO items (name) VALUES ('kept')")
    old.close()

    db = connect(path)
    assert migrate(db, "items", [V1, add_price], path) == 0
    assert [tuple(r) for r in db.execute("SELECT name, price FROM items")] == [("kept", "0")]
    assert migrate(db, "items", [V1, add_price], path) == 2  # already there: nothing runs


def test_a_failed_migration_leaves_the_previous_version_whole(tmp_path):
    path = str(tmp_path / "s.sqlite")
    db = connect(path)
    migrate(db, "items", [V1], path)

    def broken(db):
        add_price(db)
        raise sqlite3.OperationalError("disk on fire")

    with pytest.raises(sqlite3.OperationalError):
        migrate(db, "items", [V1, broken], path)
    assert [r[1] for r in db.execute("PRAGMA table_info(items)")] == ["id", "name"]
    assert migrate(db, "items", [V1, add_price], path) == 1


def test_newer_or_foreign_files_are_refused_in_one_line(tmp_path):
    path = str(tmp_path / "s.sqlite")
    db = connect(path)
    migrate(db, "items", [V1, add_price], path)
    with pytest.raises(StoreError, match="newer version .*schema 2; this one reads up to 1"):
        migrate(db, "items", [V1], path)
    with pytest.raises(StoreError, match="is a items file, not a outbox file"):
        migrate(db, "outbox", [V1], path)


def test_a_file_bound_to_one_chain_refuses_another():
    db = connect(":memory:")
    first = ChainIdentity(1337, "0xaa" * 16, "0xRegistry", 5, "0xbb" * 16)
    bind_chain(db, ChainIdentity(1337, first.genesis_hash), "outbox.sqlite")
    bind_chain(db, first, "outbox.sqlite")  # fills in what was not known yet
    assert chain_of(db) == first
    with pytest.raises(WrongChain, match=r"outbox.sqlite belongs to chain 1337 .*genesis"):
        bind_chain(db, ChainIdentity(1337, "0xcc" * 16), "outbox.sqlite")
    with pytest.raises(WrongChain, match="chain id 1337 != 11155111"):
        bind_chain(db, ChainIdentity(11155111, first.genesis_hash), "outbox.sqlite")
    with pytest.raises(WrongChain, match="block 5 hash"):
        bind_chain(db, ChainIdentity(1337, first.genesis_hash, "0xRegistry", 5, "0xdd" * 16), "outbox.sqlite")
