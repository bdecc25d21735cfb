"""The development servers the shared-store, queue and chaos tests start: each answers on
its loopback port, comes back after a crash (SIGKILL) with what it had committed, and leaves
no data directory behind."""

from __future__ import annotations

import os

import psycopg
import redis

from provingmarket.devnet.services import PostgresServer, RedisServer


def test_postgres__killed_and_started_again__keeps_what_was_committed():
    server = PostgresServer()
    try:
        server.start()
        url = server.create_database("kept")
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE t (x INTEGER)")
            db.execute("INSERT INTO t VALUES (7)")
        pid = server.pid
        server.kill()
        assert not server.alive()
        server.start()
        assert server.pid != pid
        with psycopg.connect(url) as db:
            assert db.execute("SELECT x FROM t").fetchall() == [(7,)]
        assert url.startswith("postgresql://postgres@127.0.0.1:")
    finally:
        server.close()
    assert not server.alive() and not os.path.exists(server.home)


def test_redis__killed_and_started_again__keeps_its_queue():
    server = RedisServer()
    try:
        server.start()
        redis.Redis.from_url(server.url).rpush("jobs", "a", "b")
        redis.Redis.from_url(server.url).execute_command("BGREWRITEAOF")
        server.stop()  # a clean stop writes the append-only file out
        server.start()
        assert redis.Redis.from_url(server.url).lrange("jobs", 0, -1) == [b"a", b"b"]
    finally:
        server.close()
    assert not server.alive() and not os.path.exists(server.home)
