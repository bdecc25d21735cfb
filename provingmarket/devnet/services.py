"""Servers of one's own for development, tests and the chaos run: a PostgreSQL server (the
shared store) and a Redis server (the task queue's broker), each started on a free loopback
port with a data directory of its own and stopped by its own process id.

    with PostgresServer() as pg:               # Debian's postgresql (make system)
        url = pg.create_database("mirror")     # postgresql://postgres@127.0.0.1:PORT/mirror
    with RedisServer() as redis:               # Debian's redis-server
        redis.url                              # redis://127.0.0.1:PORT/0

`kill()` stops a server at once (SIGKILL, as a crash would) and `start()` brings it back on
the same port and data, which is how the chaos run takes the database and the broker away.

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (which
Debian's package creates), from a data directory that user owns, made under the system's
temporary directory (a test's own tmp_path may not be reachable by that user)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from provingmarket.devnet.chain import free_port

START_TIMEOUT = 30.0


def _binary(name: str, pattern: str = "") -> str:
    """`name` on PATH, else the newest match of `pattern` (Debian keeps postgres's programs
    in /usr/lib/postgresql/VERSION/bin, off PATH)."""
    found = shutil.which(name)
    if not found and pattern:
        matches = sorted(glob.glob(pattern))
        found = matches[-1] if matches else None
    if not found:
        raise RuntimeError(
            f"{name} is not installed; run `make system` (as root it installs Debian's packages)"
        )
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _Server:
    """A server process this process starts and stops by pid."""

    name = "server"
    process: subprocess.Popen | None = None

    def __init__(self) -> None:
        self.port = free_port()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        return {}

    def _ready(self) -> bool:
        return _listening(self.port)

    def start(self) -> None:
        """Start the server (again, after `kill`/`stop`: same port, same data) and wait until
        it answers."""
        if self.alive():
            return
        self.process = subprocess.Popen(  # a session of its own: what it starts stays in its group
            self._argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **self._popen_options(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, stderr = self.process.communicate()
                raise RuntimeError(f"{self.name} exited at start: {stderr.decode(errors='replace')[-800:]}")
            if self._ready():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer on 127.0.0.1:{self.port} in {START_TIMEOUT:.0f} s")

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL); `start()` brings it back."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop cleanly (SIGKILL after 10 s)."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def close(self) -> None:
        """Stop and remove the data."""
        self.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PostgresServer(_Server):
    """A PostgreSQL cluster of its own: `initdb` into a fresh directory (trust
    authentication, loopback only), `postgres` on a free port. `durable=False` (tests)
    turns off fsync: a killed server keeps every commit, a crashed machine may not, and the
    data is thrown away at the end anyway."""

    name = "postgres"

    def __init__(self, durable: bool = False) -> None:
        super().__init__()
        self.durable = durable
        self.postgres = _binary("postgres", "/usr/lib/postgresql/*/bin/postgres")
        self.initdb = os.path.join(os.path.dirname(self.postgres), "initdb")
        if not os.path.exists(self.initdb):
            self.initdb = _binary("initdb", "/usr/lib/postgresql/*/bin/initdb")
        self.user = "postgres" if os.geteuid() == 0 else None
        self.home = tempfile.mkdtemp(prefix="pm-postgres-")
        self.data = os.path.join(self.home, "data")
        if self.user is not None:
            try:
                entry = pwd.getpwnam(self.user)
            except KeyError:
                raise RuntimeError(
                    "postgres refuses to run as root and there is no `postgres` user; "
                    "run `make system` (Debian's postgresql creates it) or run as another user"
                ) from None
            os.chown(self.home, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [self.initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            capture_output=True,
            **self._popen_options(),
        )
        if result.returncode != 0:
            shutil.rmtree(self.home, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {result.stderr.decode(errors='replace')[-800:]}")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _popen_options(self) -> dict[str, Any]:
        return {"user": self.user} if self.user is not None else {}

    def _argv(self) -> list[str]:
        argv = [self.postgres, "-D", self.data, "-p", str(self.port), "-k", self.home]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        if not self.durable:
            # Commits still reach the operating system before they return (a killed server
            # keeps them), they are just not synced to disk.
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        return argv

    def _ready(self) -> bool:
        if not _listening(self.port):
            return False
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as db:
                db.execute("SELECT 1")
            return True
        except psycopg.OperationalError:  # listening, not yet accepting (starting up, recovering)
            return False

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for)."""
        super().stop(signum)

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + name

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


class RedisServer(_Server):
    """A Redis server of its own on a free loopback port. With `durable` (the default) it
    keeps an append-only file, so a queue survives the server's restart (each write synced
    within a second, Redis's own default)."""

    name = "redis-server"

    def __init__(self, durable: bool = True) -> None:
        super().__init__()
        self.binary = _binary("redis-server")
        self.durable = durable
        self.home = tempfile.mkdtemp(prefix="pm-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.home]
        argv += ["--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"]
        argv += ["--appendonly", "yes" if self.durable else "no"]
        return argv

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
