"""Real processes against this session's anvil: a fresh registry per test (with the square
market and a mechanism whose frontends the test names), accounts with keys the processes
hold, and processes started as a user starts them (`python -m ...`), each stopped by the
test by its own process id.

Every process here talks to 127.0.0.1 only: the anvil ape started, or a `Relay` in front
of it that a test can cut to play a node that stops answering.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

from provingmarket import deployments
from provingmarket.chain.client import RegistryClient
from provingmarket.deployments import Deployment, MarketRecord
from provingmarket.devnet import deploy_stack
from tests.factories import ETHER, PROVER_INPUT, ROOT, escrow, make_terms, posted_terms

_keys = itertools.count(1)


@dataclass
class Stack:
    registry: object
    market_id: int
    mechanism_id: int
    record: Path  # the deployment record processes read (--deployment)
    rpc: str
    client: RegistryClient


@pytest.fixture
def rpc(chain) -> str:
    return chain.provider.uri


@pytest.fixture
def funded(owner, chain):
    """funded() -> a fresh private key whose account holds 100 ETH (a process's own)."""

    def make(ether: int = 100) -> str:
        key = "0x" + keccak(f"process-test-key-{os.getpid()}-{next(_keys)}".encode()).hex()
        address = Account.from_key(key).address
        receipt = owner.transfer(address, ether * ETHER)
        # ape does not wait for the block when anvil mines on an interval
        chain.provider.web3.eth.wait_for_transaction_receipt(receipt.txn_hash, timeout=60)
        return key

    return make


@pytest.fixture
def make_stack(owner, rpc, tmp_path, chain):
    """make_stack([frontend addresses]) -> a fresh registry, market and mechanism, recorded."""

    def make(frontends: list[str], grace_period: int = 5) -> Stack:
        built = deploy_stack(ape, owner, frontends, unbonding_delay=60, grace_period=grace_period)
        record = Deployment(
            network="ethereum:custom",
            chain_id=chain.chain_id,
            registry=built.registry.address,
            block=max(0, chain.blocks.head.number - 5),
            unbonding_delay=60,
            markets={built.market_id: MarketRecord("square", built.verifier.address)},
        )
        folder = tmp_path / f"deployments-{built.registry.address[:10]}"
        path = deployments.save(record, folder)
        client = RegistryClient(chain.provider.web3, built.registry.address, None, record.block)
        client.deployment = record
        return Stack(built.registry, built.market_id, built.mechanism_id, path, rpc, client)

    return make


@pytest.fixture
def post(requester):
    """post(stack, **terms) -> the terms as recorded, posted by the requester."""
    salts = itertools.count(1)

    def make(stack: Stack, **overrides):
        overrides.setdefault("salt", next(salts))
        mechanism = overrides.pop("mechanism_id", stack.mechanism_id)
        terms = make_terms(stack.market_id, mechanism, **overrides)
        tx = stack.registry.post_task(
            terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms), gas_limit=1_000_000
        )
        return posted_terms(stack.registry, tx)

    return make


# ------------------------------------------------------------------ processes


@dataclass
class Process:
    """A child process with its JSON log lines (stderr) collected by a thread."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    cwd: Path = ROOT
    lines: list[dict] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    starts: int = 0

    def start(self) -> Process:
        self.starts += 1
        handle = open(self.log_path, "a")  # noqa: SIM115 (closed by the reader thread)
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, args=(self.popen, handle), daemon=True).start()
        return self

    def _read(self, popen: subprocess.Popen, handle) -> None:
        for line in popen.stderr:
            handle.write(line)
            handle.flush()
            self.text.append(line)
            with contextlib.suppress(ValueError):  # not a JSON line
                self.lines.append(json.loads(line))
        handle.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; its exit code."""
        if self.popen is None:
            return 0
        if self.alive():
            os.kill(self.popen.pid, signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            return self.popen.wait(10)

    def events(self, kind: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 60, where=None) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(kind) if where is None or where(e)]
            if len(found) >= count:
                return found
            if not self.alive():
                break
            time.sleep(0.1)
        raise AssertionError(
            f"{kind} x{count} not seen within {timeout}s (alive: {self.alive()}); log tail:\n"
            + "".join(self.text[-30:])
        )


@pytest.fixture
def spawn(tmp_path):
    """spawn("frontends.orderbook.process", *args, env={...}, cwd=ROOT) -> a started Process;
    every process is stopped at the end of the test, by its pid."""
    started: list[Process] = []

    def start(
        module: str, *args: str, env: dict[str, str] | None = None, name: str | None = None, cwd: Path = ROOT
    ) -> Process:
        name = name or f"{module.rsplit('.', 1)[-1]}-{len(started)}"
        process = Process(
            [sys.executable, "-m", module, *args],
            dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {})),
            tmp_path / f"{name}.log",
            cwd=cwd,
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop(timeout=10)


class Relay:
    """A TCP relay on 127.0.0.1 in front of the node: `cut()` closes every connection and
    refuses new ones (a node that stops answering), `restore()` lets them through again."""

    def __init__(self, target: str):
        host, port = target.replace("http://", "").split("/")[0].split(":")
        self.target = (host, int(port))
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.open = True
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self.open = False
        with self.lock:
            for s in self.connections:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.connections.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.fixture
def relay(rpc):
    r = Relay(rpc)
    yield r
    r.close()


@pytest.fixture
def make_prover(funded, chain):
    """make_prover(stack, capacity=2, ask=0.01 ETH, proving_time=10) -> (key, address):
    a fresh account, staked (5 ETH) and in the stack's market, accepting its mechanism."""
    from provingmarket.chain.client import KeySigner

    def make(
        stack: Stack, capacity: int = 2, ask: int = ETHER // 100, proving_time: int = 10, stake: int = 5
    ):
        key = funded()
        client = RegistryClient(chain.provider.web3, stack.registry.address, KeySigner(key))
        client.transact("stake", value=stake * ETHER)
        client.transact("join_market", stack.market_id, capacity, ask, proving_time, 0, [stack.mechanism_id])
        return key, client.signer.address

    return make


@pytest.fixture
def interval_mining(chain):
    """interval_mining(seconds): anvil mines a block every `seconds` (transactions wait in
    the mempool meanwhile, as on a real chain); automine again after the test."""
    web3 = chain.provider.web3

    def set_interval(seconds: int) -> None:
        web3.provider.make_request("evm_setIntervalMining", [seconds])

    yield set_interval
    web3.provider.make_request("evm_setIntervalMining", [0])
    web3.provider.make_request("evm_setAutomine", [True])


@pytest.fixture
def post_many(funded, chain):
    """post_many(stack, n, **terms) -> [terms as recorded]: n tasks sent at once by a fresh
    requester (consecutive nonces, no waiting between them), then their receipts."""
    from provingmarket.chain.client import KeySigner
    from provingmarket.devnet import send_signed
    from provingmarket.formats import TaskTerms

    web3 = chain.provider.web3
    salts = itertools.count(1_000)

    def make(stack: Stack, n: int, **overrides) -> list:
        signer = KeySigner(funded(1_000))
        client = RegistryClient(web3, stack.registry.address, signer)
        mechanism = overrides.pop("mechanism_id", stack.mechanism_id)
        nonce = web3.eth.get_transaction_count(signer.address, "pending")
        hashes = []
        for i in range(n):
            terms = make_terms(stack.market_id, mechanism, salt=next(salts), **overrides)
            call = client.contract.functions.post_task(terms.as_tuple(), PROVER_INPUT, "")
            hashes.append(send_signed(client, call, escrow(terms), nonce + i))
        posted = []
        for tx_hash in hashes:
            receipt = web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
            assert receipt["status"] == 1
            [event] = [e for e in client.receipt_events(receipt) if e.name == "TaskPosted"]
            posted.append(TaskTerms.from_event(event.terms))
        return posted

    return make
