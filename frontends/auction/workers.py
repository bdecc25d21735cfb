"""The auction API in processes of its own (`--api-processes N`, N of 2 or more): N uvicorn
servers behind the one port the frontend bound, each with a store connection of its own,
so bids are checked and stored on every core while the keeper's process runs its rounds.

    apis = ApiProcesses(2, listen(8000), "data/bids.sqlite", ApiSettings(), metrics)
    apis.start()            # spawned; returns once each serves
    apis.publish(board)     # each keeper round: the view bids are checked against
    apis.supervise()        # each round: a process that died is started again
    apis.stop()             # SIGTERM to each by its pid, SIGKILL after 10 s

- **The view.** Each keeper round's `Board` reaches every process through a pipe of its
  own (pickled once; a thread per process sends the latest, so a slow or stopped one
  never holds the keeper up). Until the first arrives a process answers 503, as the
  in-process API does.
- **The store.** Every process writes bids into the same SQLite file (WAL, a busy timeout,
  `BEGIN IMMEDIATE` per bid): a bid is stored only while its auction is open, and the
  keeper closes an auction and reads its bids in one transaction, whichever process took
  it. A bid is committed before its 202, so killing a process loses no acknowledged bid
  (the connections it held, or was handed while its threads were still exiting, are
  reset: their clients send again); the others keep accepting, and `supervise` starts a
  new one.
- **Counters.** Each process counts what it accepted and refused and sends the counts to
  the keeper's process twice a second, whose /metrics shows the sums.
- **Their end.** A process whose pipe closes (the frontend's process died, even by
  SIGKILL) stops serving: none is left behind.
- **Fair shares.** The keeper's process accepts each connection and hands it to the next
  API process in turn (its file descriptor over a Unix socket, SCM_RIGHTS); one that is
  gone or not taking them is skipped. Processes accepting on a shared socket themselves
  share very unevenly: whichever the scheduler wakes first takes a burst of new
  connections, and kept-alive connections stay where they were accepted (measured here:
  one of two processes served 92% of the bench's bids).

Rate limits (`--client-rate`, `--prover-rate`) are kept by each process for the requests it
serves; the bids a prover may make in one auction (`--bids-per-prover`) are counted in
the store, for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import multiprocessing
import os
import pickle
import socket
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import uvicorn

from frontends.auction.api import ApiSettings, Board, make_app
from frontends.auction.store import AuctionStore
from provingmarket.chain.client import ClientError
from provingmarket.chain.database import is_url
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import configure_logging, emit

log = logging.getLogger("frontends.auction.workers")

FLUSH = 0.5  # seconds between a process's counts sent to the keeper's process
STARTUP = 60.0  # seconds a process may take to serve (imports, on a loaded machine)


class ApiProcesses:
    """`count` API processes behind `sock` (bound, not yet listening), over the store at
    `db`: a thread here accepts and hands each connection to the next process in turn; the
    keeper's process publishes each round's board to them and sums their counters into
    `metrics`."""

    def __init__(
        self,
        count: int,
        sock: socket.socket,
        db: str,
        settings: ApiSettings,
        metrics: Metrics,
        log_level: str = "INFO",
    ):
        self.count = count
        self.sock = sock
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self.latest: bytes | None = None
        self.workers: list[Worker] = []
        self.restarts = 0
        self.turn = 0
        self.closing = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, name="auction-api-accept", daemon=True)

    def start(self) -> ApiProcesses:
        """Start every process and wait until each serves (ClientError if one cannot)."""
        self.sock.listen(1024)  # connections queue while the processes start
        self.workers = [self._spawn(i) for i in range(self.count)]
        deadline = time.monotonic() + STARTUP
        for worker in self.workers:
            if not worker.wait_ready(deadline):
                self.stop()
                why = worker.exit_line()
                raise ClientError(
                    f"API process {worker.index} did not start ({why}); see the log lines above"
                )
        self.acceptor.start()
        return self

    def _accept(self) -> None:
        """Accept connections and hand each to the next API process that takes it."""
        self.sock.settimeout(0.2)  # to see `closing`
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.closing.is_set():
                    return
                time.sleep(0.01)  # out of file descriptors, say: the connection waits in the backlog
                continue
            with conn:  # handed (the process holds its own copy), or with no process taking it, closed
                if not self._hand(conn):
                    emit(
                        log,
                        "auction.api_connection_dropped",
                        logging.WARNING,
                        reason="no API process took it",
                    )

    def _hand(self, conn: socket.socket) -> bool:
        """Hand `conn` to the next process that takes it, trying for up to a second (while
        one that exited is started again)."""
        deadline = time.monotonic() + 1.0
        while True:
            workers = list(self.workers)
            for _ in range(len(workers)):
                self.turn = (self.turn + 1) % len(workers)
                if workers[self.turn].hand(conn):
                    return True
            if time.monotonic() > deadline or self.closing.is_set():
                return False
            time.sleep(0.01)

    def _spawn(self, index: int) -> Worker:
        ours, theirs = self.context.Pipe()
        handing, taking = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = self.context.Process(
            target=serve_api,
            args=(taking, theirs, self.db, self.settings, self.log_level),
            name=f"auction-api-{index}",
            daemon=True,
        )
        process.start()
        theirs.close()
        taking.close()
        handing.setblocking(False)  # a process not taking connections is skipped, never waited for
        worker = Worker(index, process, ours, handing, self.metrics)
        if self.latest is not None:
            worker.offer(self.latest)
        return worker

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.pid is not None]

    def publish(self, board: Board) -> None:
        """Send `board` to every process (the latest replaces one not yet sent)."""
        self.latest = pickle.dumps(board, protocol=pickle.HIGHEST_PROTOCOL)
        for worker in self.workers:
            worker.offer(self.latest)

    def supervise(self) -> None:
        """Start again each process that has exited (a log line says which and how)."""
        for i, worker in enumerate(self.workers):
            if worker.process.is_alive():
                continue
            worker.close()
            self.workers[i] = self._spawn(i)
            emit(
                log,
                "auction.api_process_exited",
                logging.WARNING,
                index=i,
                pid=worker.process.pid,
                exit=worker.exit_line(),
                replaced_by=self.workers[i].process.pid,
            )
            self.restarts += 1
            self.metrics.counter(
                "api_process_restarts_total", "API processes started again after they exited"
            )

    def stop(self) -> None:
        """Stop accepting, then SIGTERM each process by its pid (in-flight requests are
        answered), SIGKILL any still running after 10 s."""
        self.closing.set()
        if self.acceptor.is_alive():
            self.acceptor.join(5)
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + 10
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.close()
        self.workers = []


class Worker:
    """The keeper's side of one API process: its pipe, a thread sending it the latest
    board, a thread adding the counts it sends to `metrics`, and the socket connections are
    handed to it on."""

    def __init__(self, index: int, process: Any, conn: Connection, handing: socket.socket, metrics: Metrics):
        self.index = index
        self.process = process
        self.conn = conn
        self.handing = handing
        self.metrics = metrics
        self.pending: bytes | None = None
        self.wake = threading.Condition()
        self.ready = threading.Event()
        self.closed = False
        threading.Thread(target=self._send, name=f"auction-api-{index}-send", daemon=True).start()
        threading.Thread(target=self._receive, name=f"auction-api-{index}-receive", daemon=True).start()

    def hand(self, connection: socket.socket) -> bool:
        """Pass `connection` to the process (a copy of its descriptor); False if it is gone
        or has a full queue of connections not yet taken."""
        if not self.process.is_alive():  # exited, `supervise` not yet round to it
            return False
        try:
            return socket.send_fds(self.handing, [b"c"], [connection.fileno()]) == 1
        except OSError:  # BlockingIOError (not taking them), BrokenPipeError (gone), closed
            return False

    def offer(self, data: bytes) -> None:
        with self.wake:
            self.pending = data
            self.wake.notify()

    def _send(self) -> None:
        while True:
            with self.wake:
                while self.pending is None and not self.closed:
                    self.wake.wait()
                if self.closed:
                    return
                data, self.pending = self.pending, None
            try:
                self.conn.send_bytes(data)
            except (OSError, EOFError, ValueError):  # the process is gone (`supervise` sees it)
                return

    def _receive(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (OSError, EOFError, ValueError):
                return
            if message == "ready":
                self.ready.set()
                continue
            for (name, help_text, labels), amount in message.items():
                self.metrics.counter(name, help_text, amount, **dict(labels))

    def wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline and self.process.is_alive():
            if self.ready.wait(0.05):
                return True
        return self.ready.is_set()

    def exit_line(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify()
        self.conn.close()
        self.handing.close()


# ------------------------------------------------------------------ in the API process


class RelayedMetrics(Metrics):
    """An API process's counters, summed here and sent to the keeper's process by `flush`."""

    def __init__(self, conn: Connection):
        super().__init__("auction")
        self.conn = conn
        self.counts: Counter[tuple[str, str, tuple[tuple[str, str], ...]]] = Counter()
        self.lock = threading.Lock()

    def counter(self, name: str, help_text: str, amount: float = 1, **labels: object) -> None:
        key = (name, help_text, tuple(sorted((k, str(v)) for k, v in labels.items())))
        with self.lock:
            self.counts[key] += amount

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, Counter()
        if counts:
            self.conn.send(dict(counts))


class WriteLock:
    """The API processes' turns at writing the bid store: an exclusive `flock` on a file
    beside it, held around each bid's transaction. SQLite's own wait for a locked file
    sleeps 1, 2, 5, 10 ms and more between tries, with the process's event loop (and every
    request it holds) stopped meanwhile; a flock waiter wakes the moment it is released.
    The keeper's transactions still meet SQLite's wait, rarely (a few per round)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class HandedServer(uvicorn.Server):
    """uvicorn serving the connections the keeper's process hands it on `taking` (accepted
    there) instead of a listening socket of its own; it stops when `taking` closes (the
    keeper's process is gone)."""

    def __init__(self, config: uvicorn.Config, taking: socket.socket):
        super().__init__(config)
        self.taking = taking

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app and its lifespan; no socket to listen on
        config = self.config
        # What uvicorn's own `startup` builds for a listening socket (uvicorn/server.py).
        protocol = functools.partial(
            config.http_protocol_class,
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        loop = asyncio.get_running_loop()
        self.taking.setblocking(False)
        loop.add_reader(self.taking.fileno(), self._take, loop, protocol)

    def _take(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.taking, 16, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:  # the keeper's process is gone: stop serving
                loop.remove_reader(self.taking.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)  # its family and protocol read from it (TCP: no delay)
                loop.create_task(loop.connect_accepted_socket(protocol, connection))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.taking.fileno())
        await super().shutdown(sockets=sockets)


def serve_api(
    taking: socket.socket, conn: Connection, db: str, settings: ApiSettings, log_level: str
) -> None:
    """An API process: uvicorn on the connections handed on `taking`, over the store at
    `db`, the board from `conn`, until SIGTERM or until the keeper's process is gone."""
    configure_logging(log_level)
    store = AuctionStore(db, timeout=5.0)  # a locked database answers 503, not a stalled API
    metrics = RelayedMetrics(conn)
    board: list[Board | None] = [None]
    config = uvicorn.Config(
        # On Postgres the store's own transaction lock orders writers (no file to lock beside it).
        make_app(lambda: board[0], store, settings, metrics, None if is_url(db) else WriteLock(f"{db}.lock")),
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        backlog=1024,
    )
    server = HandedServer(config, taking)

    def receive() -> None:
        while True:
            try:
                board[0] = pickle.loads(conn.recv_bytes())
            except (OSError, EOFError):
                server.should_exit = True  # the keeper's process is gone
                return

    def relay() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.01)
        try:
            conn.send("ready")
            while not server.should_exit:
                time.sleep(FLUSH)
                metrics.flush()
        except (OSError, ValueError):
            server.should_exit = True

    threading.Thread(target=receive, daemon=True).start()
    threading.Thread(target=relay, daemon=True).start()
    try:
        server.run()
    finally:
        with contextlib.suppress(OSError, ValueError):  # the keeper's process may be gone
            metrics.flush()
        store.close()
