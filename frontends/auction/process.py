"""The auction frontend: sealed-bid second-price auctions (frontends/auction/mechanism.py) for the
tasks of a mechanism, on the keeper runtime (frontends/keeper.py), with the HTTP API
(frontends/auction/api.py) in a thread of the same process, or with `--api-processes N` in N
processes of its own on the same port (frontends/auction/workers.py).

    AUCTION_KEY=0x… python -m frontends.auction.process \\
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json \\
        --mechanism 3 --data-dir /var/lib/provingmarket/auction --window 10 --port 8000

or through ape: `ape run auction --network … --account … --mechanism 3 --data-dir …`.

An auction's life
-----------------
- **Open.** Each keeper round, every open task of the mechanism (slots open, inside its
  assignment window) that has no open auction gets one: round 1 when the frontend first
  sees it, opened at the chain's time and closing its instance's window (`--window`)
  seconds later, but no later
  than `close_margin` seconds before the task's assignment window ends (a task with less
  time left gets no auction). The API takes bids for it until it closes.
- **Close.** The first round at or after the close time clears it: in one SQLite
  transaction (no bid can be stored for it after) its sealed bids are read, cleared with
  the round's registry state (`clear_auctions`: the N lowest eligible bids win the N open
  slots at the (N+1)th lowest price, or at the task's maximum with at most N bids), and
  the result and every bid's status (won, lost, invalid with the reason) written. The
  keeper then sends the winners' assignments with their signatures in `assign_batch`, so
  the registry checks each prover's consent itself.
- **After.** Each round, a winner whose assignment the mirror shows is confirmed (its
  block recorded); one the registry skipped becomes invalid with the registry's reason;
  one whose transaction is neither in flight nor mined (refused or dropped) becomes
  invalid too. Its slot is open again.
- **Again.** A task that still has open slots after an auction (no bids, fewer bids than
  slots, a winner skipped) gets a new round at the next keeper round, as long as its
  assignment window leaves time for one: round 2, 3, … with fresh bids (a signature is
  accepted once). Nothing is ever assigned without a bid, so a task nobody bids on stays
  open until its requester cancels it or the window ends and the keeper reclaims its
  escrow. An open auction whose task leaves the book (cancelled, filled by another
  frontend, window over, mechanism no longer served) closes with a note and no result.

Everything (auctions, bids, results) is in `bids.sqlite` in the `--data-dir`, beside the
keeper's `mirror.sqlite` and `outbox.sqlite` (a versioned file of its own, which a mirror
rebuild never touches): killed and restarted, the process serves the same answers, and clears the sealed
bids of an auction that closed while it was down at its first round back.

Instances: one process serves every `--mechanism` id, each with its own bidding window:
`--instance 4:window=60`, else what the id's registered name publishes
(`auction/window=60`), else `--window`. A name that disagrees with `--instance` stops it
with one line (frontends/process.py, `Instances`); the API takes bids for all of them.

The account must be one of the mechanism's frontends. The key is read from an
environment variable (`--key-env`, AUCTION_KEY by default). SIGTERM stops it after the
round in progress. Log lines are JSON on stderr: `auction.api` (the URL), `auction.opened`,
`auction.cleared`, `auction.closed`, `auction.confirmed`, `auction.invalid`, and the
keeper's own (`auction.decision`, `auction.assigned`, `auction.skipped`, …).
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from typing import Any

import click
import uvicorn

from frontends import book
from frontends.auction.api import ApiSettings, Board, OpenAuction, make_app
from frontends.auction.mechanism import Eligibility, clear_auctions
from frontends.auction.store import AuctionStore
from frontends.auction.workers import ApiProcesses
from frontends.book import task_hex
from frontends.keeper import Keeper, assign_key, keeper_options
from frontends.process import FATAL, Instances, instance_option, run_frontend, serve, shown, with_options
from provingmarket import rules
from provingmarket.chain.client import ClientError, RegistryClient
from provingmarket.chain.mirror import Snapshot
from provingmarket.runtime.config import as_service
from provingmarket.runtime.datadir import BIDS
from provingmarket.runtime.health import READY_AGE, READY_LAG
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.metrics import listen as bind_socket
from provingmarket.runtime.process import Stopper, connection_options, emit, log

CLOSE_MARGIN = 8  # seconds between an auction's close and the end of its task's assignment window
MINING_MARGIN = 4  # seconds from a clearing to its assignment mined, for expiry and window checks


class Auctioneer:
    """The keeper's `observe` hook and mechanism for sealed-bid auctions."""

    def __init__(
        self,
        client: RegistryClient,
        data_dir: str | None,
        mechanisms: tuple[int, ...],
        window: int,
        settings: ApiSettings,
        metrics: Metrics,
        port: int | socket.socket = 8000,  # a port number, or a socket bound by `listen`
        close_margin: int = CLOSE_MARGIN,
        mining_margin: int = MINING_MARGIN,
        instances: dict[int, dict[str, int]] | None = None,
        api_processes: int = 1,
        **keeper: Any,
    ):
        self.window = window
        self.api_processes = api_processes
        self.apis: ApiProcesses | None = None
        self.stopping = Stopper(install=False)
        self.instances = Instances("auction", {"window": window}, mechanisms, instances)
        self.instances.start(client)
        self.port = port
        self.settings = settings
        self.metrics = metrics
        self.close_margin = close_margin
        self.mining_margin = mining_margin
        self.keeper = Keeper(
            client,
            data_dir,
            self.decide,
            self.instances.ids,
            name="auction",
            metrics=metrics,
            observe=self.observe,
            **keeper,
        )
        self.db = self.keeper.database or self.keeper.data.file(BIDS)  # --database: bids beside the mirror
        self.store = AuctionStore(self.db)
        self.keeper.data.bind(self.store.db, BIDS)
        self.me = self.keeper.me
        self.chain_id = client.web3.eth.chain_id
        self.registry = client.address
        self.board: Board | None = None
        self.snap: Snapshot | None = None
        self.nonces: dict[str, int] = {}

    def run(self, stop: Stopper) -> None:
        """Serve the API (a store connection of its own, or `api_processes` processes with
        one each) and run the keeper until `stop`."""
        if self.api_processes > 1:
            self.run_processes(stop)
            return
        api_store = AuctionStore(self.db, timeout=5.0)  # a locked database answers 503, not a stalled API
        server = ApiServer(make_app(lambda: self.board, api_store, self.settings, self.metrics), self.port)
        server.start()
        self._say("api", url=server.url, openapi=f"{server.url}/openapi.json", docs=f"{server.url}/docs")
        try:
            self.keeper.run(stop)
        finally:
            server.stop()
            api_store.close()
            self.close()

    def run_processes(self, stop: Stopper) -> None:
        """The API in `api_processes` processes on the one port (frontends/auction/workers.py),
        each round's board published to them and any that died started again; all stopped
        (by pid) when the keeper stops."""
        sock = self.port if isinstance(self.port, socket.socket) else listen(self.port)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        apis = ApiProcesses(self.api_processes, sock, str(self.db), self.settings, self.metrics, level)
        self.stopping = stop
        try:
            self.apis = apis.start()
            host, port = sock.getsockname()[:2]
            url = f"http://{host}:{port}"
            self._say("api", url=url, openapi=f"{url}/openapi.json", docs=f"{url}/docs", pids=apis.pids)
            self.keeper.run(stop)
        finally:
            self.apis = None
            apis.stop()
            sock.close()
            self.close()

    # -------------------------------------------------------------- each round

    def observe(self, snap: Snapshot, view: book.Snapshot) -> None:
        now = view.now
        self.snap = snap
        self.instances.observe(snap)
        self.nonces = {p.prover: p.nonce for p in snap.provers.values()}
        self._reconcile(snap)
        tasks = {task_hex(t.task_id): t for t in view.tasks}
        open_rows = {row.task_id: row for row in self.store.open_auctions()}
        for task_id, row in list(open_rows.items()):
            if task_id not in tasks:
                note = self._gone(task_id, now)
                self.store.close_auction(task_id, row.round, now, note)
                del open_rows[task_id]
                self._say("closed", task=task_id, round=row.round, note=note, bids=row.bids)
        for task_id, row in open_rows.items():
            if row.open_slots != tasks[task_id].open_slots:  # another frontend filled one
                self.store.set_open_slots(task_id, row.round, tasks[task_id].open_slots)
        fresh = [task_id for task_id in tasks if task_id not in open_rows]
        rounds = self.store.last_rounds(fresh)
        for task_id in fresh:
            task = tasks[task_id]
            mechanism, _, ends = rules.link_at(task.terms, now)  # a chain's: its link current now
            window = self.instances.get(mechanism, "window")
            if window is None:
                continue  # an instance whose name was refused (or not checked yet): no auction
            closes = min(now + window, ends - self.close_margin)
            if closes <= now:
                continue  # too late for an auction: the keeper reclaims it when the window ends
            row = self.store.open_auction(task, rounds.get(task_id, 0) + 1, now, closes)
            open_rows[task_id] = row
            self.metrics.counter("auctions_opened_total", "Auctions opened")
            self._say(
                "opened",
                task=task_id,
                round=row.round,
                opened_at=now,
                closes_at=closes,
                open_slots=task.open_slots,
                max_reward=task.terms.max_reward,
            )
        self.metrics.gauge("auctions_open", "Auctions taking bids", len(open_rows))
        self.board = Board(
            now=now,
            wall=time.monotonic(),
            block=snap.block,
            chain_id=self.chain_id,
            registry=self.registry,
            frontend=self.me,
            mechanisms=tuple(sorted(view.mechanisms)),
            rules=Eligibility(view, self.nonces),
            auctions={task_id: OpenAuction(tasks[task_id], row) for task_id, row in open_rows.items()},
        )
        if self.apis is not None:
            if not self.stopping.stopped:  # stopping: a process that exits on the same signal stays down
                self.apis.supervise()
            self.apis.publish(self.board)

    def decide(self, view: book.Snapshot) -> list[book.Decision]:
        """Clear the auctions whose close time has come (the keeper sends the decisions)."""
        if not self.store.due(view.now):
            return []
        tasks = {task_hex(t.task_id): t for t in view.tasks}
        block = self.snap.block if self.snap is not None else 0
        with self.store.transaction():
            batch = []
            for row in self.store.due(view.now):
                task = tasks.get(row.task_id)
                if task is None:  # not in the book since `observe` looked: next round closes it
                    continue
                bids = [b.sealed() for b in self.store.sealed_bids(row.task_id, row.round)]
                batch.append((row, task, bids))
            cleared = clear_auctions(
                view, [(task, bids) for _, task, bids in batch], self.nonces, view.now + self.mining_margin
            )
            for (row, _, _), result in zip(batch, cleared, strict=True):
                self.store.record(row, result, view.now, block)
        decisions = []
        for (row, _, bids), result in zip(batch, cleared, strict=True):
            decisions.extend(result.decisions)
            self.metrics.counter("auctions_cleared_total", "Auctions cleared")
            self.metrics.counter("bids_cleared_total", "Bids cleared", len(bids))
            self._say(
                "cleared",
                task=row.task_id,
                round=row.round,
                closes_at=row.closes_at,
                bids=len(bids),
                winners=[d.prover for d in result.decisions],
                price=result.price,
                dropped={bid_id: why.code for bid_id, why in result.dropped.items()},
                note=result.note,
            )
        return decisions

    # -------------------------------------------------------------- helpers

    def _reconcile(self, snap: Snapshot) -> None:
        """What became of the winners sent: assigned, skipped, or lost on the way."""
        pending = self.store.unconfirmed_winners()
        if not pending:
            return
        mirror = self.keeper.mirror
        in_flight = self.keeper.outbox.in_flight_keys()
        for bid, auction in pending:
            task_id = bytes.fromhex(bid.task_id[2:])
            after = auction.cleared_block or 0
            assigned = [
                a
                for a in mirror.assignments(prover=bid.prover, task_id=task_id)
                if a.frontend == self.me and a.assigned_block > after
            ]
            if assigned:
                self.store.confirm(bid.bid_id, assigned[0].assigned_block)
                self._say(
                    "confirmed",
                    task=bid.task_id,
                    prover=bid.prover,
                    price=bid.price,
                    block=assigned[0].assigned_block,
                )
                continue
            skipped = [
                s
                for s in mirror.skipped_assignments(task_id)
                if s["prover"] == bid.prover and s["frontend"] == self.me and s["block"] > after
            ]
            if skipped:
                reason = skipped[-1]["reason"]
            elif assign_key(task_id, bid.prover) in in_flight:
                continue
            else:
                reason = "its assignment was not mined: the transaction was refused or dropped"
            self.store.invalidate(bid.bid_id, reason)
            self.metrics.counter("winners_invalid_total", "Winners the registry did not assign")
            self._say("invalid", logging.WARNING, task=bid.task_id, prover=bid.prover, reason=reason)

    def _gone(self, task_id: str, now: int) -> str:
        """Why a task with an open auction is no longer in the book."""
        task = self.keeper.mirror.task(task_id)
        if task is None:
            return "the task is no longer known (a reorg dropped it)"
        if task.open == 0:
            if task.closed and not task.assigned and not task.proven:
                return "the task was cancelled or its escrow reclaimed"
            return "no open slot left"
        if now > task.assignable_until:
            return "the task's assignment window is over"
        return "the task's mechanism is no longer served by this frontend"

    def _say(self, kind: str, level: int = logging.INFO, **fields: Any) -> None:
        emit(log, f"auction.{kind}", level, **fields)

    def close(self) -> None:
        self.store.close()


def listen(port: int, host: str = "127.0.0.1") -> socket.socket:
    """The API's socket, bound (a port in use is one line naming it: PortInUse)."""
    return bind_socket(port, host, "--port", "the auction API")


class ApiServer:
    """uvicorn serving the app in a thread, on a socket bound before it starts (a port
    number, or a socket `listen` bound earlier)."""

    def __init__(self, app, port: int | socket.socket, host: str = "127.0.0.1"):
        self.sock = port if isinstance(port, socket.socket) else listen(port, host)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, timeout_keep_alive=30, backlog=1024)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            self.stop()
            raise ClientError(f"the API did not start on {self.url}; see the log lines above")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def run_auction(
    client: RegistryClient,
    metrics_port: int | None = None,
    stop: Stopper | None = None,
    ready_lag: int = READY_LAG,
    ready_age: float = READY_AGE,
    **options,
):
    """Run the auctions and their API until `stop` (SIGTERM); `options` are the auction's
    (`auction_options`: window, port, settings) and the Keeper's (`keeper_options`). The
    API's port is bound first: in use, the process stops before it opens its files."""
    if isinstance(options.get("port"), int):
        options["port"] = listen(options["port"])
    run_frontend(
        "auction",
        lambda metrics: Auctioneer(client, metrics=metrics, **options),
        metrics_port,
        stop,
        ready_lag,
        ready_age,
    )


def auction_options(command):
    """The auction's own options, shared by this process and `ape run auction`; the
    command receives `window`, `instances`, `port` and `settings` (ApiSettings)."""
    defaults = ApiSettings()
    options = [
        shown("--window", 10, click.IntRange(1, 86_400), "Bidding window, seconds."),
        instance_option("auction"),
        shown("--port", 8000, click.IntRange(0, 65535), "API port (0: any)."),
        shown(
            "--api-processes",
            1,
            click.IntRange(1, 64),
            "API server processes sharing the port and the bid store (1: a thread of this process).",
        ),
        shown(
            "--expiry-margin",
            defaults.expiry_margin,
            click.IntRange(0, 3_600),
            "Seconds a bid must outlive its auction's close.",
        ),
        shown(
            "--bids-per-prover",
            defaults.bids_per_prover,
            click.IntRange(1, 1_000),
            "Bids a prover may make in one auction.",
        ),
        *_rate_options("prover", "prover", defaults.prover_rate, defaults.prover_burst),
        *_rate_options("client", "client IP", defaults.client_rate, defaults.client_burst),
    ]
    names = ("expiry_margin", "bids_per_prover", "prover_rate", "prover_burst", "client_rate", "client_burst")

    @functools.wraps(command)
    def settled(**kwargs):
        kwargs["settings"] = ApiSettings(**{name: kwargs.pop(name) for name in names})
        return command(**kwargs)

    return with_options(settled, options)


def _rate_options(who: str, per: str, rate: float, burst: int) -> list:
    """--<who>-rate and --<who>-burst: a token bucket of bids per `per`."""
    return [
        shown(f"--{who}-rate", rate, click.FloatRange(0), f"Bids per second per {per} (0: no limit)."),
        shown(f"--{who}-burst", burst, click.IntRange(1)),
    ]


@click.command()
@connection_options("AUCTION_KEY")
@auction_options
@keeper_options
def main(**options):
    """Run sealed-bid second-price auctions for open tasks, and assign the winners."""
    serve(run_auction, errors=(*FATAL, OSError), **options)


as_service(main, "PROVINGMARKET_AUCTION")


if __name__ == "__main__":
    main()
