"""The auction API in processes of its own (`--api-processes N`, N of 2 or more): N uvicorn
servers accepting on the one listening socket the frontend bound (the same port), each
with a store connection of its own, so bids are checked and stored on every core while
the keeper's process runs its rounds.

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
  it. A bid is committed before its 202, so killing a process loses no acknowledged bid;
  the others keep accepting, and `supervise` starts a new one.
- **Counters.** Each process counts what it accepted and refused and sends the counts to
  the keeper's process twice a second, whose /metrics shows the sums.
- **Their end.** A process whose pipe closes (the frontend's process died, even by
  SIGKILL) stops serving: none is left behind.
- **Fair shares.** Each process accepts one connection per wake-up of its event loop, so
  a burst of new connections spreads over the processes instead of going to whichever
  wakes first (kept-alive connections stay where they were accepted).

Rate limits (`--client-rate`, `--prover-rate`) are kept by each process for the requests it
serves; the bids a prover may make in one auction (`--bids-per-prover`) are counted in
the store, for all of them.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import configure_logging, emit

log = logging.getLogger("frontends.auction.workers")

FLUSH = 0.5  # seconds between a process's counts sent to the keeper's process
STARTUP = 60.0  # seconds a process may take to serve (imports, on a loaded machine)


class ApiProcesses:
    """`count` API processes on `sock` (bound, not yet listening), over the store at `db`;
    the keeper's process publishes each round's board to them and sums their counters into
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
        return self

    def _spawn(self, index: int) -> Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=serve_api,
            args=(self.sock, theirs, self.db, self.settings, self.log_level),
            name=f"auction-api-{index}",
            daemon=True,
        )
        process.start()
        theirs.close()
        worker = Worker(index, process, ours, self.metrics)
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
        """SIGTERM each process by its pid (in-flight requests are answered), SIGKILL any
        still running after 10 s."""
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
    board, a thread adding the counts it sends to `metrics`."""

    def __init__(self, index: int, process: Any, conn: Connection, metrics: Metrics):
        self.index = index
        self.process = process
        self.conn = conn
        self.metrics = metrics
        self.pending: bytes | None = None
        self.wake = threading.Condition()
        self.ready = threading.Event()
        self.closed = False
        threading.Thread(target=self._send, name=f"auction-api-{index}-send", daemon=True).start()
        threading.Thread(target=self._receive, name=f"auction-api-{index}-receive", daemon=True).start()

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


class OneAcceptPerWake(socket.socket):
    """A listening socket whose `accept` takes one connection, then says none is waiting:
    asyncio calls it in a loop each time the socket is readable, up to its backlog at once,
    which would give a burst of connections to whichever process woke first. Taking one
    per wake-up lets the other processes (woken too) take theirs."""

    spent = False

    def accept(self):  # type: ignore[override]
        if self.spent:
            self.spent = False
            raise BlockingIOError
        accepted = super().accept()
        self.spent = True
        return accepted


def serve_api(sock: socket.socket, conn: Connection, db: str, settings: ApiSettings, log_level: str) -> None:
    """An API process: uvicorn on `sock` over the store at `db`, the board from `conn`,
    until SIGTERM or until the keeper's process closes `conn`."""
    configure_logging(log_level)
    listening = OneAcceptPerWake(sock.family, sock.type, sock.proto, fileno=sock.detach())
    store = AuctionStore(db, timeout=5.0)  # a locked database answers 503, not a stalled API
    metrics = RelayedMetrics(conn)
    board: list[Board | None] = [None]
    config = uvicorn.Config(
        make_app(lambda: board[0], store, settings, metrics, WriteLock(f"{db}.lock")),
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        backlog=1024,
    )
    server = uvicorn.Server(config)

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
        server.run(sockets=[listening])
    finally:
        with contextlib.suppress(OSError, ValueError):  # the keeper's process may be gone
            metrics.flush()
        store.close()
