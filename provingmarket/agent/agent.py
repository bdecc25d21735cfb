"""The prover agent: one long-running process per prover account that proves what the
registry gives it, submits each proof before its deadline and survives being killed.
`Agent` wires the services together and runs a round; what each round does, the cost
model, why nothing is proven or sent twice, the threads and the log lines: docs/agent.md.

The services, in the order a round uses them: monitor.py (following the market),
picker.py (what to take, at what price; auction.py: the auction frontends' API),
workers.py (proving), submitter.py (sending, settling), each on the shared Context
(context.py); beneath them store.py (the agent's rows), backends.py, settings.py. The
command line: main.py (`python -m provingmarket.agent`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from web3 import Web3

from provingmarket.agent.auction import AuctionClient
from provingmarket.agent.backends import Backends, verifier_check
from provingmarket.agent.context import NEEDS_KEY, Context
from provingmarket.agent.monitor import Monitor
from provingmarket.agent.picker import Picker
from provingmarket.agent.settings import AgentSettings, SimulatedHardware
from provingmarket.agent.store import AgentStore
from provingmarket.agent.submitter import Submitter
from provingmarket.agent.workers import Workers
from provingmarket.chain import trust
from provingmarket.chain.client import ClientError, RegistryClient, chain_time
from provingmarket.chain.heads import follow_heads
from provingmarket.chain.identity import WrongChain
from provingmarket.chain.mirror import MirrorError
from provingmarket.deployments import DeploymentError
from provingmarket.proving.backends import BackendError
from provingmarket.proving.circuits import CircuitError
from provingmarket.runtime import process as runtime
from provingmarket.runtime.datadir import AGENT, DataDir, open_data_dir
from provingmarket.runtime.health import Health
from provingmarket.runtime.metrics import Metrics

log = logging.getLogger("provingmarket.agent.agent")

SETTLE_GRACE = 10.0  # seconds, after the last proofs are sent, to see them mined before exiting
# Errors that mean "the command line or the setup is wrong": said in one line, exit code 1.
SETUP_ERRORS = (ClientError, DeploymentError, CircuitError, BackendError, MirrorError)


class Agent:
    """One prover's agent: its data directory (mirror.sqlite, outbox.sqlite, agent.sqlite,
    provingmarket/runtime/datadir.py) and services, run round after round until stopped."""

    def __init__(
        self,
        client: RegistryClient,
        data: DataDir,
        settings: AgentSettings,
        stop: runtime.Stopper,
        metrics: Metrics | None = None,
    ):
        self.client = client
        self.web3: Web3 = client.web3
        self.me = client.require_signer(NEEDS_KEY).address
        self.settings = settings
        self.backends = Backends(settings.backend, lambda market_id: verifier_check(client, market_id))
        self.stop = stop
        self.metrics = metrics or Metrics("agent", Health(settings.ready_lag, settings.ready_age))
        self.metrics_port: int | None = None
        self.data = data
        self.outbox = data.outbox(
            client,
            self.metrics,
            replace_after=settings.replace_after,
            max_fee_per_gas=settings.max_fee_per_gas,
        )
        self.mirror = data.mirror(client, confirmations=settings.confirmations)
        self.store = AgentStore(data.file(AGENT))
        data.bind(self.store.db, AGENT)
        context = Context(client, self.mirror, self.outbox, self.store, self.metrics, settings, stop)
        self.submitter = Submitter(context)
        self.monitor = Monitor(context, self.submitter)
        self.workers = Workers(context, self.backends, self.monitor, self.submitter)
        self.auctions = AuctionClient(self.store, self.metrics)
        self.picker = Picker(context, self.monitor, self.submitter, self.auctions)

    # -------------------------------------------------------------- running

    def run(self) -> int:
        """Run rounds until SIGTERM/SIGINT, then shut down; returns the exit code."""
        memberships = self._memberships_now()
        if not memberships:
            raise ClientError(
                f"prover {self.me} has joined no market of the registry at {self.client.address}; "
                "stake and join one first: "
                "ape run prover join <market> --capacity N --ask ETH --proving-time SECONDS"
            )
        if self.settings.metrics_port is not None:  # before the workers: a port in use stops nothing running
            self.metrics_port = self.metrics.serve(self.settings.metrics_port)
        self.workers.start(sum(m["capacity"] for m in memberships))
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._on_usr1)
        cost = self.settings.cost
        runtime.emit(
            log,
            "agent.start",
            prover=self.me,
            registry=self.client.address,
            memberships=[{**m, "backend": self.backends.describe(m["market"])} for m in memberships],
            race=self.settings.race,
            dutch=self.settings.dutch,
            auctions=list(self.settings.auctions),
            cost_per_second=cost.cost_per_second,
            risk_rate=str(cost.risk_rate),
            price_margin=str(cost.margin),
            withdraw_at=self.settings.withdraw_at,
            trusted_verifiers=sorted(trust.hex32(h) for h in self.settings.trusted),
            metrics_port=self.metrics_port,
            queue=self.settings.queue_name if self.settings.queue else None,  # the URL may hold a password
            **self._simulated(),
        )
        self.metrics.health.running(True)
        heads = follow_heads(self.client, "agent")  # None: no --ws, rounds every `poll` seconds
        try:
            runtime.run_forever(
                self.round_, self.stop, self.settings.poll, "agent", on_error=self._on_error, heads=heads
            )
        except WrongChain as error:
            # A proof still running must not be submitted to another chain: leave now (its
            # row says `proving`, so a start on the right chain proves it again).
            runtime.emit(log, "wrong_chain", logging.ERROR, error=str(error))
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(error.exit_code)
        finally:
            if heads is not None:
                heads.close()
            self.metrics.health.running(False)
        return self.shutdown()

    def _simulated(self) -> dict[str, Any]:
        """agent.start's word on `--simulate`: nothing on real hardware."""
        hardware = self.settings.simulate
        return {} if hardware == SimulatedHardware() else {"simulate": dataclasses.asdict(hardware)}

    def _memberships_now(self) -> list[dict]:
        found = []
        for market_id in range(1, self.client.call("market_count") + 1):
            m = self.client.membership(self.me, market_id)
            if m.joined:
                found.append(
                    {
                        "market": market_id,
                        "capacity": m.capacity,
                        "ask": m.ask,
                        "proving_time": m.proving_time,
                    }
                )
        return found

    def _on_usr1(self, _signum, _frame) -> None:
        self.submitter.withdraw_asked = True

    def _on_error(self, kind: str) -> None:
        if kind == "rpc":
            self.workers.count_rpc_error()

    def shutdown(self) -> int:
        """Let running proofs finish and be submitted (bounded), then close everything."""
        pending, unfinished = self.workers.finish()
        if pending and not unfinished:
            self._last_settle()
        runtime.emit(log, "agent.stop", signal=self.stop.signal, unfinished=unfinished)
        if unfinished:
            # A proof still running after the grace: its row says `proving`, so the next
            # start proves it again. Python would wait for the thread at exit; do not.
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(0)
        self.metrics.close()
        self.auctions.close()
        with self.outbox.lock:
            self.outbox.db.close()
        self.mirror.close()
        self.store.close()
        return 0

    def _last_settle(self) -> None:
        """What became of the proofs sent while stopping (paid, refused), said before
        exiting: waits up to SETTLE_GRACE seconds for them to be mined; what the node
        cannot tell by then, the next start reconciles."""
        until = time.monotonic() + SETTLE_GRACE
        try:
            while True:  # a proof sent a moment ago is mined within a block or two
                self.mirror.sync()
                self.submitter.settle()
                if not self.outbox.in_flight_keys() or time.monotonic() > until:
                    break
                time.sleep(0.25)
        except Exception as error:
            runtime.emit(log, "agent.error", logging.WARNING, error=f"{type(error).__name__}: {error}"[:300])

    # -------------------------------------------------------------- a round

    def round_(self) -> None:
        """Follow the market, take up its assignments, pick races, locks and bids worth
        taking, and withdraw when due (docs/agent.md, "What it does"). First, that the
        node is still the chain of its files (WrongChain ends the agent, exit code 2)."""
        self.data.check(self.web3)
        started = time.monotonic()
        self.monitor.sync()
        now = chain_time(self.web3)
        in_flight = self.outbox.in_flight_keys()
        memberships = {m.market_id: m for m in self.mirror.memberships(prover=self.me)}
        live = self.monitor.live(now, memberships, self.workers.busy_keys())
        self.monitor.void_frozen(live, in_flight)
        for work in self.monitor.work(live):
            self.workers.take(work, now, in_flight, memberships)
        gas_price = self.picker.gas_price()
        self.picker.log_costs(memberships, gas_price)
        if self.settings.race:
            for work in self.picker.races(now, memberships, gas_price):
                self.workers.take(work, now, in_flight, memberships)
        if self.settings.dutch or self.settings.auctions:
            committed = self.picker.committed(now, in_flight)
            if self.settings.dutch:
                self.picker.lock_dutch(now, memberships, in_flight, committed, gas_price)
            for url in self.settings.auctions:
                self.picker.bid_at(url, now, memberships, committed, gas_price)
        self.submitter.withdraw(in_flight)
        self.workers.gauge()
        self.metrics.observe("round_seconds", "Time an agent round takes", time.monotonic() - started)
        head = self.web3.eth.block_number
        self.metrics.health.round_done(head, self.mirror.cursor, self.mirror.confirmations)


def run_agent(
    rpc: str | Sequence[str],
    deployment_file: str | Path,
    key: str,
    data_dir: str | Path | None,
    settings: AgentSettings | None = None,
    stop: runtime.Stopper | None = None,
    legacy_db: str | Path | None = None,
    ws: str | Sequence[str] = (),
) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the exit code. `data_dir`: where its
    files are (None: the default for the chain and the prover); `legacy_db`: a file of the
    previous layout to move its work and outbox out of. Raises SETUP_ERRORS (and
    sqlite3.Error) for what is wrong before it starts, WrongChain for another chain."""
    settings = settings or AgentSettings()

    def start() -> Agent:
        client = runtime.connect(rpc, deployment_file, key, ws)
        data = open_data_dir(client, "agent", data_dir, legacy_db)
        return Agent(client, data, settings, stop or runtime.Stopper())

    return runtime.starting(start, "agent").run()
