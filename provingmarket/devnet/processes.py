"""The frontends and prover agents of a marketplace on a development chain, each a process
of its own started by its command line as a user starts it (`python -m ...`), logging into
a folder, watched, and stopped by its own pid.

This library starts them by module name only: it imports none of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import requests

from provingmarket.deployments import Deployment, MarketRecord, save
from provingmarket.devnet.chain import free_port

ROOT = Path(__file__).resolve().parents[2]  # where `python -m` finds frontends/ and provingmarket/
AGENT = "provingmarket.agent"  # the prover agent (python -m provingmarket.agent)
ORDERBOOK = "frontends.orderbook.process"
AUCTION = "frontends.auction.process"
ELECTION = "frontends.election.process"  # a group: its long-running command is `run`
EXPLORER = "explorer"  # the explorer's web server (python -m explorer)
KEY_ENV = "DEVNET_KEY"  # the environment variable a process reads its private key from


def command(
    module: str,
    rpc: str,
    record: Path,
    data_dir: Path,
    *args: str,
    sub: tuple[str, ...] = (),
    poll: float = 0.5,
) -> list[str]:
    """`python -m module [sub...] --rpc … --deployment … --key-env KEY_ENV --data-dir … --poll POLL
    args`: how a frontend or an agent is started against the deployment `record` (`poll`:
    its seconds between rounds)."""
    return [
        sys.executable, "-m", module, *sub, "--rpc", rpc, "--deployment", str(record),
        "--key-env", KEY_ENV, "--data-dir", str(data_dir), "--poll", str(poll), *args,
    ]  # fmt: skip


def stop_processes(processes: dict, logs, say) -> bool:
    """Stop each process started (name → subprocess.Popen) by its pid: SIGTERM, then
    SIGKILL after 30 s. True if every one exited 0 (one that had already exited counts
    with its own code); `say` names each that did not, with its log in `logs`."""
    clean = True
    for name, process in processes.items():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.returncode != 0:
            clean = False
            say(f"  {exit_line(name, process)}; see {logs / (name + '.log')}")
    return clean


def exit_line(name: str, process: subprocess.Popen) -> str:
    return f"{name} (pid {process.pid}) exited with {process.returncode}"


class Processes:
    """Processes started against the deployment `record` on the node at `rpc`, each with
    its log (`<name>.log`) and data directory (`<name>/`) in `logs`; `started` maps each
    name to its latest process."""

    def __init__(self, rpc: str, record: Path, logs: Path):
        self.rpc, self.record, self.logs = rpc, record, logs
        self.started: dict[str, subprocess.Popen] = {}

    def start(
        self, name: str, module: str, key: str, *args: str, sub: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """Start `module` as `name`, holding `key`, in a session of its own."""
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **{KEY_ENV: key})
        argv = command(module, self.rpc, self.record, self.logs / name, *args, sub=sub)
        with open(self.logs / f"{name}.log", "a") as log:  # the child holds its own copy
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self.started[name] = process
        return process

    def start_frontends(self, keys: dict[str, str], mechanisms: dict[str, int], auction_window: int) -> str:
        """Start the orderbook, auction and election frontends, each named after its
        mechanism and holding its key in `keys`; the auction's API address."""
        port = free_port()
        mechanism = {name: ("--mechanism", str(i)) for name, i in mechanisms.items()}
        self.start("orderbook", ORDERBOOK, keys["orderbook"], *mechanism["orderbook"])
        auction = ("--port", str(port), "--window", str(auction_window))
        self.start("auction", AUCTION, keys["auction"], *mechanism["auction"], *auction)
        self.start("election", ELECTION, keys["election"], *mechanism["election"], sub=("run",))
        return f"http://127.0.0.1:{port}"

    def start_explorer(self, keeper: str = "orderbook", port: int = 0, *args: str, wait: float = 30.0) -> str:
        """Start the explorer over `keeper`'s mirror (read-only), on `port` (0: a free one),
        and wait until it reads the mirror; its URL. RuntimeError if it exits or cannot."""
        port = port or free_port()
        argv = [
            sys.executable, "-m", EXPLORER, "--mirror", str(self.logs / keeper / "mirror.sqlite"),
            "--rpc", self.rpc, "--deployment", str(self.record), "--port", str(port), *args,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(self.logs / "explorer.log", "a") as log:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self.started["explorer"] = process
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{exit_line('explorer', process)}; see {self.logs / 'explorer.log'}")
            try:  # 200 once the keeper's mirror can be read
                if requests.get(url + "healthz", timeout=1).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the explorer could not read {keeper}'s mirror at {url} within {wait:.0f} s")

    def start_agent(self, name: str, key: str, auction: str, *options: str) -> subprocess.Popen:
        """Start a prover agent holding `key` that bids in the auction frontend at `auction`."""
        return self.start(name, AGENT, key, "--auction", auction, *options)

    def exited(self) -> list[str]:
        """Each process that has exited, as `name (pid N) exited with CODE`."""
        return [exit_line(n, p) for n, p in self.started.items() if p.poll() is not None]

    def stop(self, say) -> bool:
        """Stop every process started, by its pid; True if each exited cleanly."""
        return stop_processes(self.started, self.logs, say)


class LoggedProcess:
    """A process started by `argv`, holding `key` in KEY_ENV, whose JSON log (its stderr) a
    thread reads as it comes into `lines`: (seconds since the start, entry), lines that are
    not JSON skipped. Leaving it as a context manager stops it by SIGTERM."""

    def __init__(self, argv: list[str], key: str):
        self.lines: list[tuple[float, dict]] = []
        env = dict(os.environ, PYTHONPATH=str(ROOT), **{KEY_ENV: key})
        self.started = time.perf_counter()
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        log = self.process.stderr
        if log is None:
            raise RuntimeError(f"{argv[0]}: its stderr was not piped, so its log cannot be read")
        self.reader = threading.Thread(target=self._read, args=(log,), daemon=True)
        self.reader.start()

    def _read(self, log: IO[str]) -> None:
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.lines.append((time.perf_counter() - self.started, entry))

    def events(self, kind: str) -> list[dict]:
        """The log's entries whose event is `kind`, in order."""
        return [entry for _, entry in self.lines if entry.get("event") == kind]

    def seconds(self, kind: str) -> list[float]:
        """When each entry whose event is `kind` was read, in seconds since the start."""
        return [at for at, entry in self.lines if entry.get("event") == kind]

    def wait(self, kind: str, count: int, timeout: float) -> bool:
        """Wait until the log holds `count` entries whose event is `kind`; False if `timeout`
        seconds pass or the process exits first."""
        deadline = time.monotonic() + timeout
        while len(self.events(kind)) < count:
            if time.monotonic() >= deadline or self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return True

    def __enter__(self) -> LoggedProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.reader.join(5)


@contextmanager
def logged_frontend(
    module: str, rpc: str, chain_id: int, stack, key: str, *args: str, unbonding_delay: int, poll: float
) -> Iterator[LoggedProcess]:
    """The frontend `module` serving `stack`'s mechanism as its own process, holding `key`,
    its deployment record (saying `unbonding_delay`) and database in a temporary folder; its
    log read as it comes. For the benchmarks, which time a frontend by its own log."""
    markets = {stack.market_id: MarketRecord("square", stack.verifier.address)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        record = Deployment("ethereum:local", chain_id, stack.registry.address, 0, unbonding_delay, markets)
        data_dir = folder / module.split(".")[1]
        mechanism = ("--mechanism", str(stack.mechanism_id))
        argv = command(module, rpc, save(record, folder), data_dir, *mechanism, *args, poll=poll)
        with LoggedProcess(argv, key) as process:
            yield process
