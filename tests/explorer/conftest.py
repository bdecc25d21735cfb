"""The explorer in a real browser against a live market: one stack per test module on this
session's anvil (the registry and the square market deployed by the devnet helpers, the
orderbook keeper and two prover agents as processes, the explorer over the keeper's mirror)
and Debian's chromium, headless, driven through its chromedriver.

Every process is started as a user starts it (`python -m ...`), with its own data folder
under the module's temporary folder, and stopped by its own pid when the module ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import ape
import pytest
from ape.api.networks import ProviderContextManager
from eth_account import Account
from eth_utils import keccak
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from web3 import Web3

from provingmarket.chain.client import RegistryClient
from provingmarket.devnet import (
    BASE_FEE,
    Anvil,
    Marketplace,
    Processes,
    Requester,
    deploy_marketplace,
    task_terms,
)
from provingmarket.devnet.processes import AGENT, ORDERBOOK
from tests.factories import ETHER, ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "reports" / "explorer"
# Each prover's ask (alice is the cheaper); a task offering less than both waits, open,
# until one of them lowers its ask.
ALICE_ASK, BOB_ASK = 2 * ETHER // 100, 3 * ETHER // 100
WARM_UP = 3  # tasks proven before the first page is opened


@pytest.fixture(autouse=True)
def _function_isolation():
    """No snapshot is taken or reverted around these tests: their market runs on an anvil
    of the module's own (`live`), never on the session's chain, and the keeper, the agents
    and the explorer follow it as it goes (a revert under them would be a reorganisation
    none of the tests is about). Every test reads what the module's stack did, and the one
    that posts a task leaves it proven, as a market would."""
    yield


@dataclass
class Live:
    """A market running for the module: `url` is the explorer's."""

    url: str
    market: Marketplace
    client: RegistryClient  # the registry's own views, read-only
    requester: Requester
    keys: dict[str, str]  # alice, bob → their private keys
    provers: dict[str, str]  # alice, bob → their addresses
    tasks: list[bytes] = field(default_factory=list)  # posted so far, oldest first
    salt: int = 0

    @property
    def market_id(self) -> int:
        return self.market.stack.market_id

    def post(self, **overrides) -> bytes:
        """Post a task through the orderbook's mechanism; its id, once mined."""
        self.salt += 1
        values = dict(max_reward=ETHER // 20, collateral=ETHER // 10, proving_window=60, assign_window=600)
        values.update(overrides)
        terms = task_terms(self.market_id, self.market.mechanisms["orderbook"], salt=self.salt, **values)
        sent = self.requester.post(terms, gas=600_000)
        receipt = self.market.web3.eth.wait_for_transaction_receipt(sent, timeout=60)
        assert receipt["status"] == 1, "posting a task failed"
        [posted] = [e for e in self.client.receipt_events(receipt) if e.name == "TaskPosted"]
        self.tasks.append(bytes(posted.task_id))
        return bytes(posted.task_id)

    def status(self, task_id: bytes) -> tuple[int, int, int, int]:
        """The registry's (open, assigned, proven, closed) slot counts of a task."""
        return tuple(self.client.call("task_status", task_id))[:4]

    def api(self, path: str) -> dict:
        """The explorer's JSON at `path` (/api/...); {} for what it has not seen (404)."""
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {}
            raise


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def fresh_key(owner, label: str, ether: int = 100) -> str:
    """A new private key whose account `owner` funds with `ether`."""
    key = "0x" + keccak(f"explorer-test-{os.getpid()}-{time.time_ns()}-{label}".encode()).hex()
    receipt = owner.transfer(Account.from_key(key).address, ether * ETHER)  # on the chain ape is connected to
    ape.chain.provider.web3.eth.wait_for_transaction_receipt(receipt.txn_hash, timeout=60)
    return key


def listening_url(process: subprocess.Popen, timeout: float) -> str:
    """The URL in the explorer's one JSON line on stdout ({"event": "explorer.listening", ...})."""
    lines: list[str] = []
    stdout = process.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines and lines[0], f"the explorer printed no line within {timeout} s (exit code {process.poll()})"
    line = json.loads(lines[0])
    assert line["event"] == "explorer.listening", line
    return line["url"]


def start_explorer(processes: Processes, mirror: Path) -> str:
    """`python -m explorer` over the keeper's mirror, stopped with the other processes; its URL."""
    argv = [
        sys.executable, "-m", "explorer", "--mirror", str(mirror), "--rpc", processes.rpc,
        "--deployment", str(processes.record), "--port", "0",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    with open(processes.logs / "explorer.log", "a") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
    processes.started["explorer"] = process
    return listening_url(process, timeout=60)


@contextmanager
def own_chain() -> Iterator[Anvil]:
    """An anvil of the module's own (a base fee, as real chains charge), ape connected to it
    while the market is deployed; the session's chain and its snapshots stay untouched."""
    anvil = Anvil(base_fee=BASE_FEE)
    disconnects = dict(ProviderContextManager.disconnect_map)
    try:
        yield anvil
    finally:
        ProviderContextManager.disconnect_map.update(disconnects)
        anvil.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explorer")
    with own_chain() as anvil:
        with ape.networks.parse_network_choice(f"ethereum:local:{anvil.uri}"):
            owner = ape.accounts.test_accounts[0]
            keys = {name: fresh_key(owner, name) for name in ("orderbook", "alice", "bob", "requester")}
            frontends = {
                name: Account.from_key(keccak(text=name)).address for name in ("auction", "election")
            }
            frontends["orderbook"] = Account.from_key(keys["orderbook"]).address
            deployed = deploy_marketplace(ape, owner, frontends, folder, grace_period=5)
        market = replace(deployed, web3=Web3(Web3.HTTPProvider(anvil.uri)))
        market.join(keys["alice"], capacity=2, ask=ALICE_ASK, proving_time=10)
        market.join(keys["bob"], capacity=2, ask=BOB_ASK, proving_time=10)
        yield from run_market(market, keys, folder, anvil.uri)


def run_market(market: Marketplace, keys: dict[str, str], folder: Path, rpc: str) -> Iterator[Live]:
    """The orderbook keeper, alice's and bob's agents and the explorer as processes on
    `market`, until the module ends; each stopped by its pid."""
    processes = Processes(rpc, market.record, folder)
    try:
        processes.start(
            "orderbook", ORDERBOOK, keys["orderbook"], "--mechanism", str(market.mechanisms["orderbook"])
        )
        for name in ("alice", "bob"):
            processes.start(name, AGENT, keys[name])
        mirror = folder / "orderbook" / "mirror.sqlite"
        wait_until(lambda: mirror.exists() and not processes.exited(), 60, "the keeper's mirror")
        url = start_explorer(processes, mirror)
        stack = Live(
            url,
            market,
            market.client(),
            market.requester(keys["requester"]),
            {n: keys[n] for n in ("alice", "bob")},
            {n: Account.from_key(keys[n]).address for n in ("alice", "bob")},
        )
        warm_up = [stack.post() for _ in range(WARM_UP)]
        wait_until(
            lambda: all(stack.status(t)[2] == 1 for t in warm_up) or processes.exited(),
            90,
            "the first tasks proven",
        )
        assert not processes.exited(), processes.exited()
        # … and the explorer shows them proven: the keeper's mirror has caught up
        wait_until(
            lambda: all(stack.api(f"/api/tasks/0x{t.hex()}").get("state") == "proven" for t in warm_up),
            30,
            "the explorer showing the first tasks proven",
        )
        yield stack
    finally:
        stopped = processes.stop(print)
    assert stopped, f"a process did not stop cleanly; logs in {folder}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium (Debian's), its profile in a temporary folder."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()  # chromedriver and its chromium, by the pid selenium started
