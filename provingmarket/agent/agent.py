"""The prover agent: one long-running process per prover account that proves what the
registry gives it, submits each proof before its deadline and survives being killed.

    PROVER_KEY=0x... python -m provingmarket.agent.agent --rpc http://127.0.0.1:8545 \\
        --deployment deployments/ethereum-local.json --key-env PROVER_KEY --db agent.sqlite \\
        --cost-per-second 0.0001 --risk-rate 0.02 --price-margin 0.1 \\
        --auction http://127.0.0.1:8600

`ape run agent --network ... --account ... --db ...` (scripts/agent.py) runs the same agent
for an ape account that holds its key. `--backend` names the proving backend of every
market (groth16py, snarkjs) or a JSON file for `backends.backend_from_config`: one
configuration, or one per market id with an optional "default".

What it does
------------
Each round (every `--poll` seconds, through `runtime.run_forever`, so a node that stops
answering is waited for with backoff) the agent syncs its mirror of the registry, settles
the transactions it sent, reads the chain's time, and then:

- takes up every live assignment to its prover (`agent.assigned` when first seen): one a
  frontend made (an orderbook match, an auction won) or a DUTCH lock of its own. Nothing
  on chain ties a task's posted inputs to its inputs_commitment, so the moment a
  frontend's assignment is first seen it checks them (`proving.posted_inputs`: they
  commit to the task's inputs_commitment, and the circuit's witness generation gives the
  posted public values from the private ones; milliseconds, not a proof); inputs nobody
  can prove are declined at once, within the market's grace period (`agent.declined`
  with the reason; nothing is proven);
- with `--race`, enters every OPEN_RACE task of a market it joined that still has an open
  slot and whose reward pays its floor (below), whose capabilities it has, whose
  collateral its free stake covers, whose posted inputs can be proven and whose race
  leaves time for the expected proving time and `--margin` (`agent.race` when it decides
  to, `agent.pass` with the reason when not, once a task);
- with `--dutch` (the default), locks a slot of a DUTCH task of a market it joined once the
  task's rising price reaches its floor, if it has a unit of capacity and the collateral
  free, the capabilities, a proving time that fits the window and posted inputs that can
  be proven (a slot it took itself cannot be declined; `agent.dutch_wait` says when the
  price will get there, `agent.lock` when it sends the lock); the lock makes a
  TaskAssigned to it, proven like any assignment;
- for each `--auction URL` (an auction frontend's API), reads the open auctions
  (`GET {url}/auctions`) and bids on each one it can serve (its posted inputs checked
  first), once an auction round: a
  signed EIP-712 Bid with its floor as the minimum price, sent with `POST {url}/bids`
  (`agent.bid`; `agent.bid_refused` with the server's status and detail on a 4xx, not
  sent again that round, except a 429, waited out (Retry-After) and sent again;
  `agent.auction_error` for a server that fails or does not answer, asked again later
  with backoff). A bid won comes back as a TaskAssigned;
- proves its work in worker threads, at most the membership's declared capacity at once
  per market (races count against it), earliest deadline first; a worker submits its
  proof as soon as it has it;
- gives up early and says so: when the chain's time plus the expected proving time plus
  the margin passes a deadline (before proving, while waiting for capacity, or after a
  failed attempt) it declines the assignment if a frontend made it and the market's
  grace period after the assignment still runs (`agent.declined`, nothing lost), else
  logs `agent.give_up` with the numbers and leaves the slot to be slashed (a slot it
  took itself, a DUTCH lock or a race commit, cannot be declined);
- takes no work in a custom market (its verifier not deployed by the registry from its
  blueprint, so what it accepts may change) unless `--trust-verifier 0x<code hash>`
  names the code hash the market recorded for its verifier, one the operator reviewed
  (repeatable): it logs `agent.untrusted_market` once a market with the verifier, its
  code hash and the option to pass, declines the market's assignments within the grace
  period, and neither races, locks nor bids there;
- in a frozen market (custom, and its verifier's code hash changed since creation: the
  registry refuses proofs there) proves nothing and voids each live assignment by
  sending `slash` for itself, which there frees the collateral without a penalty
  (`agent.voided`). Whether a market is frozen is read once a round for each custom
  market it holds live work in;
- retries a backend that failed after 1 s, 2 s, 4 s... up to `--retries` times, while the
  deadline allows;
- withdraws its earnings once they reach `--withdraw-at`, or at the next round after
  SIGUSR1 whatever the amount.

For simulations only, `--simulate '{"prove_seconds": 3, "failure_rate": 0.05, "latency":
0.5, "seed": 1}'` makes this real agent behave like slower, less reliable hardware (the
proofs stay real; `SimulatedHardware`): each proof takes that many seconds more, counted
as proving time; on the given share of its work (drawn per seed, prover, task and slot,
the same after a restart) it fails silently like a crashed machine, neither proving nor
declining (`simulated.failure`, the row `gave_up`), so the slot is slashed after its
deadline; and it waits `latency` seconds before each transaction and bid it sends.

The expected proving time of a market starts at the membership's declared proving_time
and becomes an exponential moving average of the backend's measured times (kept on disk).

What it proves for: the cost model
----------------------------------
`provingmarket.costs.CostModel` gives the least price worth proving a task for:

    floor = ceil((expected proving time * --cost-per-second
                  + gas of prove (+ lock, for DUTCH) * the gas price now
                  + collateral at risk * --risk-rate) * (1 + --price-margin))

with the gas price the node's base fee plus its priority fee (what the outbox pays; read
every few seconds) and the collateral at risk the task's, except in a race, which locks
none and is not slashed. The defaults (0 ETH a second, no risk, no margin) ask for the gas
alone. `agent.cost` logs each market's floor (for a task at the market's least
collateral; for a race; for a DUTCH lock) at start and whenever it moves by a tenth.

- A race is entered when what it pays a proof made now (its max_reward, decayed if the
  task decays, at the chain's time plus the expected time and margin) reaches
  max(ask, `--race-min-reward`, floor).
- A DUTCH slot is locked when the current price reaches max(ask, the price whose reward,
  decayed over the expected proving time, pays the floor): the registry refuses a lock
  below the ask, and the price only rises, so the lock's price is at least that.
- A bid's minimum price is the price whose (decayed) reward pays the floor, rounded up to
  the wei, and the agent bids only if the task's max_reward reaches it. Bids count
  against capacity and free stake (each may win and lock its collateral) until they
  expire (`expiry` = the auction's close + `BID_EXPIRY_AFTER_CLOSE`, or the auction's
  `min_expiry` if later), are won, or the task has no open slot left.

Assignments a frontend made are proven whatever their price: the prover agreed to it (its
ask, or its signed bid).

Never proving twice, never submitting twice
-------------------------------------------
One SQLite file (`--db`) holds the mirror, the outbox (provingmarket/chain/outbox.py) and the
agent's own table: one row per piece of work, keyed `prove:<task>:<slot>` or
`race:<task>`, with its state (queued, proving, proved, submitted, done, gave_up, lost,
failed), the proof and public inputs once made, the attempts and the last error.
Beside it, `agent_bids` holds one row per bid, keyed by auction URL, task and round,
written before the bid is sent: a restart never bids twice in a round (a bid the server
never answered counts as sent; one it could not be sent is dropped and tried again).
A DUTCH lock is sent through the outbox keyed `lock:<task>`: while it is in flight the
task is not locked again, and once mined the task is the prover's.

- A proof is written to the row (state `proved`) before `agent.proved` is logged and
  before it is sent; a row found `proved` after a restart is submitted as it is, not
  proved again. Only a row found `proving` (killed mid-proof: no proof was kept) is
  proved again.
- The outbox writes the signed transaction, with the work's key, before broadcasting it.
  A key of a transaction in flight (`Outbox.in_flight_keys`) is never worked on, and a
  row whose transaction the outbox knows is reconciled from the outbox's record (mined,
  reverted, or dropped), so whatever instant the process is killed at, a kept proof is
  sent again only if its earlier transaction can no longer be mined (dropped).
- A submission the registry refuses (`Refused`: the deadline passed, the race is won,
  not assigned) is logged with the registry's reason and never sent again.

Threads
-------
The mirror is read and written by the main loop only; workers get everything they need
(terms, inputs, deadline) from it up front. The agent's table has one connection and a
lock; the outbox is thread-safe. SIGTERM or SIGINT stops taking new work, lets running
proofs finish and be submitted (at most `SHUTDOWN_GRACE` seconds), closes the databases
and exits 0 (`agent.stop`).

Log lines are JSON on stderr, one per thing that happened, on the `provingmarket.agent.agent`
logger: agent.start, agent.cost, agent.untrusted_market, agent.assigned, agent.race,
agent.pass, agent.dutch_wait, agent.lock, agent.locked, agent.bid, agent.bid_refused,
agent.auction_error, agent.auction_back, agent.proving, agent.proved, agent.submitted,
agent.paid, agent.give_up, agent.declined, agent.voided, agent.refused, agent.race_lost,
agent.lost, agent.proving_failed, agent.rpc_error (the node failed mid-way; the main
loop takes the work up again), agent.withdraw, agent.stop; and simulated.failure
(`--simulate`). Decisions about a task (agent.race, agent.pass, agent.dutch_wait) are
said once a task and reason, not every round; agent.untrusted_market once a market.
Prometheus metrics (`--metrics-port`) count proofs submitted and paid, wei earned,
failures by reason, give-ups, declines, voided assignments, locks, bids sent and refused,
auction frontends' failures and RPC errors, and show the live assignments, the proofs
running, the last proving time and the floor per market.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import math
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import click
import requests
from web3 import Web3

from provingmarket.chain import trust
from provingmarket.chain.client import (
    ClientError,
    Market,
    Refused,
    RegistryClient,
    TaskState,
    chain_time,
    format_ether,
    parse_ether,
    parse_task_id,
)
from provingmarket.chain.mirror import PROVEN, Mirror, MirrorError, TaskView
from provingmarket.chain.outbox import DONE, DROPPED, REVERTED, Outbox, Outcome
from provingmarket.chain.tasks import RACE, circuit_of, posted_inputs, task_inputs
from provingmarket.cli import fail
from provingmarket.costs import CostModel, dutch_price, dutch_time_for, price_for_reward, reward_at
from provingmarket.deployments import DeploymentError
from provingmarket.formats import DUTCH, OPEN_RACE, Assignment, TaskTerms, bid_typed_data
from provingmarket.proving.backends import (
    BackendError,
    Groth16pyBackend,
    ProofCheck,
    ProvingBackend,
    backend_from_config,
)
from provingmarket.proving.circuits import Circuit, CircuitError
from provingmarket.runtime import process as runtime
from provingmarket.runtime.metrics import Metrics

log = logging.getLogger("provingmarket.agent.agent")

# Work states: waiting for capacity, proving, proof kept, proof sent, paid; or ended
# without pay: given up (declined or left to be slashed), lost (refused, slashed, race
# won by others), failed (the registry refused the proof itself, or it reverted).
QUEUED, PROVING, PROVED, SUBMITTED = "queued", "proving", "proved", "submitted"
DONE_, GAVE_UP, LOST, FAILED = "done", "gave_up", "lost", "failed"
OPEN_WORK = (QUEUED, PROVING, PROVED, SUBMITTED)

ALPHA = 0.3  # weight of a new measurement in the expected proving time
SHUTDOWN_GRACE = 30.0  # seconds running proofs get to finish after SIGTERM
SETTLE_GRACE = 10.0  # seconds, after those proofs are sent, to see them mined before exiting
MIN_WORKERS = 8
GAS_PRICE_EVERY = 5.0  # seconds between reads of the node's gas price
COST_LOG_CHANGE = Fraction(1, 10)  # agent.cost again once a floor moved by this much
LOCK_RETRY = 10.0  # seconds before a DUTCH lock the registry refused is tried again
BID_EXPIRY_AFTER_CLOSE = 120  # seconds a bid stays good after its auction closes
AUCTION_TIMEOUT = (2.0, 5.0)  # seconds to connect to an auction frontend, to read its answer
MAX_AUCTION_BACKOFF = 30.0  # seconds between attempts while an auction frontend is down
MAX_SAID = 100_000  # decisions remembered as logged (agent.pass, agent.race...)
# Refusals that mean the work is gone (someone else's now, or too late), not that the
# proof was wrong.
LOST_REASONS = (
    "deadline passed",
    "race over",
    "no free slot",
    "not assigned",
    "already on task",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent (
    key TEXT PRIMARY KEY,        -- prove:<task>:<slot> or race:<task>
    kind TEXT NOT NULL,          -- prove or race
    task_id TEXT NOT NULL,
    slot INTEGER,                -- the assigned slot (races: the one paid, once known)
    market_id INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    state TEXT NOT NULL,
    proof BLOB,
    public_inputs TEXT,          -- JSON list of decimal strings
    seconds REAL,                -- measured proving time
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    tx TEXT,
    paid TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_state ON agent (state);
CREATE TABLE IF NOT EXISTS agent_timing (
    market_id INTEGER PRIMARY KEY, seconds REAL NOT NULL, samples INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agent_bids (
    url TEXT NOT NULL,           -- the auction frontend's API base URL
    task_id TEXT NOT NULL,
    round INTEGER NOT NULL,      -- the auction's round
    market_id INTEGER NOT NULL,
    collateral TEXT NOT NULL,    -- wei, locked if the bid wins
    min_price TEXT NOT NULL,     -- wei
    expiry INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    state TEXT NOT NULL,         -- sending (written before the POST), accepted, refused
    bid_id TEXT,
    detail TEXT,                 -- the server's answer to a refused bid
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (url, task_id, round)
);
"""

# Bid states: written before sending (a restart counts it as sent), taken, refused.
BID_SENDING, BID_ACCEPTED, BID_REFUSED = "sending", "accepted", "refused"

VERIFY_ABI = [
    {
        "type": "function",
        "name": "verify",
        "stateMutability": "view",
        "inputs": [{"name": "public_inputs", "type": "uint256[]"}, {"name": "proof", "type": "bytes"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class SimulatedHardware:
    """For simulations only (`--simulate`): a real agent made to behave like other
    hardware. Proofs stay real; the defaults are this machine as it is.

    - `prove_seconds`: extra seconds each proof takes (counted as proving time, so the
      cost model and the deadline checks see the slower hardware);
    - `failure_rate`: the share of work (assignments and races) on which the hardware
      fails silently, like a machine that crashed: no proof, no decline, so an
      assignment is slashed after its deadline. Drawn per (seed, prover, task, slot), so
      a restarted agent makes the same draw; said once as `simulated.failure`;
    - `latency`: seconds before each transaction and bid reaches the chain or auction;
    - `seed`: seeds the failure draws.
    """

    prove_seconds: float = 0.0
    failure_rate: float = 0.0
    latency: float = 0.0
    seed: int = 0

    def fails(self, prover: str, task_id: bytes, slot: int) -> bool:
        """Whether the hardware fails on this work: a hash rather than a random stream,
        so the draw depends neither on the order work arrives in nor on restarts, and
        provers of a fleet sharing a seed fail on different work."""
        if self.failure_rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{prover.lower()}:{task_id.hex()}:{slot}".encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.failure_rate * 2**64  # exact: 1 always fails

    def wait(self) -> None:
        """The network's latency, before something is sent."""
        if self.latency > 0:
            time.sleep(self.latency)


def simulated_hardware(text: str | None) -> SimulatedHardware:
    """`--simulate`'s JSON, checked (ClientError names the key and what it must be)."""
    if text is None:
        return SimulatedHardware()
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ClientError(f'--simulate is not JSON ({error}); give e.g. {{"prove_seconds": 3}}') from None
    if not isinstance(raw, dict):
        raise ClientError("--simulate must be a JSON object: prove_seconds, failure_rate, latency, seed")
    known = {f.name for f in dataclasses.fields(SimulatedHardware)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ClientError(
            f"--simulate: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    numbers: dict[str, float] = {}
    for name in ("prove_seconds", "failure_rate", "latency"):
        value = raw.get(name, 0)
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError, OverflowError):  # a string, null, a list; 1e999 as an int
            number = math.nan
        if isinstance(value, str) or not (math.isfinite(number) and number >= 0):
            raise ClientError(f"--simulate: {name} must be a number of 0 or more, not {value!r}")
        numbers[name] = number
    if numbers["failure_rate"] > 1:
        raise ClientError(f"--simulate: failure_rate must be from 0 to 1, not {raw['failure_rate']!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ClientError(f"--simulate: seed must be a whole number, not {seed!r}")
    return SimulatedHardware(seed=seed, **numbers)


@dataclass(frozen=True)
class AgentSettings:
    backend: str = "auto"  # groth16py, snarkjs, auto, or a JSON configuration file
    poll: float = 0.5  # seconds between rounds
    confirmations: int = 0
    metrics_port: int | None = None  # 0: any free port; None: no server
    withdraw_at: int | None = None  # wei
    race: bool = True
    race_min_reward: int = 0  # wei
    retries: int = 3
    margin: float = 2.0  # seconds kept free before a deadline
    cost: CostModel = field(default_factory=CostModel)  # the least price worth proving for
    dutch: bool = True  # lock DUTCH tasks once their price passes the floor
    auctions: tuple[str, ...] = ()  # auction frontends' API base URLs to bid at
    simulate: SimulatedHardware = field(default_factory=SimulatedHardware)  # simulations only
    trusted: frozenset[bytes] = frozenset()  # code hashes of custom verifiers the operator reviewed


def settings_from_options(
    backend: str = "auto",
    poll: float = 0.5,
    confirmations: int = 0,
    metrics_port: int | None = None,
    withdraw_at: str | None = None,
    race: bool = True,
    race_min_reward: str = "0",
    retries: int = 3,
    margin: float = 2.0,
    cost_per_second: str = "0",
    risk_rate: str = "0",
    price_margin: str = "0",
    dutch: bool = True,
    auction: Iterable[str] = (),
    simulate: str | None = None,
    trust_verifier: Iterable[str] = (),
    **_: Any,
) -> AgentSettings:
    """Settings from the command line, each value checked (ClientError says which)."""
    if not (poll > 0 and math.isfinite(poll)):
        raise ClientError(f"--poll {poll} should be a positive number of seconds")
    if confirmations < 0:
        raise ClientError(f"--confirmations {confirmations} is negative")
    if metrics_port is not None and not 0 <= metrics_port <= 65_535:
        raise ClientError(f"--metrics-port {metrics_port} is not a port (0 to 65535; 0 picks a free one)")
    if retries < 0:
        raise ClientError(f"--retries {retries} is negative")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ClientError(f"--margin {margin} should be zero or more seconds")
    threshold = None
    if withdraw_at is not None:
        threshold = parse_ether(withdraw_at, "--withdraw-at")
        if threshold == 0:
            raise ClientError("--withdraw-at must be more than 0 ETH (SIGUSR1 withdraws any amount)")
    return AgentSettings(
        backend=backend,
        poll=poll,
        confirmations=confirmations,
        metrics_port=metrics_port,
        withdraw_at=threshold,
        race=race,
        race_min_reward=parse_ether(race_min_reward, "--race-min-reward"),
        retries=retries,
        margin=margin,
        cost=CostModel(
            cost_per_second=parse_ether(cost_per_second, "--cost-per-second"),
            risk_rate=_rate(risk_rate, "--risk-rate", most=Fraction(1)),
            margin=_rate(price_margin, "--price-margin"),
        ),
        dutch=dutch,
        auctions=tuple(_auction_url(url) for url in auction),
        simulate=simulated_hardware(simulate),
        trusted=trust.parse_codehashes(trust_verifier),
    )


def _rate(value: str, option: str, most: Fraction | None = None) -> Fraction:
    """A fraction from the command line (0.05 is five per cent), checked."""
    try:
        rate = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ClientError(f"{option} {value!r} is not a number; give a fraction such as 0.05") from None
    if rate < 0 or (most is not None and rate > most):
        bound = f"from 0 to {most}" if most is not None else "0 or more"
        raise ClientError(f"{option} {value} is out of range: give a fraction {bound}")
    return rate


def _auction_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ClientError(
            f"--auction {url!r} is not an HTTP URL; give the auction frontend's API base, "
            "such as http://127.0.0.1:8600"
        )
    return url


# ------------------------------------------------------------------ backends


class Backends:
    """The backend of each market, from `--backend`: a name for every market, or a JSON
    file holding one configuration for every market ({"backend": "snarkjs", ...}) or one
    per market id, with an optional "default" ({"1": {...}, "default": {...}})."""

    def __init__(self, spec: str, check_for: Callable[[int], ProofCheck]):
        self.spec = spec
        self.check_for = check_for
        self.default: Mapping[str, object] | None = None
        self.per_market: dict[int, Mapping[str, object]] = {}
        if spec == "auto":
            try:
                Groth16pyBackend()
                self.default = {"backend": "groth16py"}
            except BackendError:
                self.default = {"backend": "snarkjs"}
        elif spec in ("groth16py", "snarkjs"):
            self.default = {"backend": spec}
        else:
            self._load(Path(spec))
        self._built: dict[int, ProvingBackend] = {}
        self._lock = threading.Lock()
        for market_id in self.per_market:  # a bad configuration fails at start, not mid-task
            self.for_market(market_id)
        if self.default is not None:
            backend_from_config(self.default)

    def _load(self, path: Path) -> None:
        if not path.exists():
            raise BackendError(
                f"--backend {path}: no such file; give groth16py, snarkjs or a JSON backend configuration"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError(f"--backend {path}: not JSON") from None
        if not isinstance(data, dict):
            raise BackendError(f"--backend {path}: expected a JSON object")
        if "backend" in data:
            self.default = data
            return
        for name, config in data.items():
            if not isinstance(config, dict):
                raise BackendError(f"--backend {path}: the configuration of {name!r} is not an object")
            if name == "default":
                self.default = config
            elif name.isdigit():
                self.per_market[int(name)] = config
            else:
                raise BackendError(f"--backend {path}: {name!r} is neither a market id nor default")

    def config(self, market_id: int) -> Mapping[str, object] | None:
        return self.per_market.get(market_id, self.default)

    def for_market(self, market_id: int) -> ProvingBackend:
        with self._lock:
            if market_id not in self._built:
                config = self.config(market_id)
                if config is None:
                    raise BackendError(f"no backend configured for market {market_id} (and no default)")
                self._built[market_id] = backend_from_config(config, self.check_for(market_id))
            return self._built[market_id]

    def describe(self, market_id: int) -> str:
        config = self.config(market_id)
        return str(config.get("backend")) if config else "none"


# ------------------------------------------------------------------ the agent's table


class AgentStore:
    """The agent's rows in the shared SQLite file: one connection, used under a lock by the
    main loop and the workers."""

    def __init__(self, path: str):
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        if path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def get(self, key: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM agent WHERE key = ?", (key,)).fetchone()
            return dict(row) if row else None

    def insert(self, work: Work, state: str) -> bool:
        """A new row; False if the key has one already."""
        now = time.time()
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO agent (key, kind, task_id, slot, market_id, deadline, state, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    work.key,
                    "race" if work.race else "prove",
                    _hex(work.task_id),
                    None if work.race else work.assignment.slot,
                    work.market_id,
                    work.deadline,
                    state,
                    now,
                    now,
                ),
            )
            return cursor.rowcount == 1

    def update(self, key: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        with self.lock:
            self.db.execute(
                f"UPDATE agent SET {', '.join(f'{k} = ?' for k in fields)} WHERE key = ?",
                (*fields.values(), key),
            )

    def rows(self, states: Iterable[str]) -> list[dict]:
        states = tuple(states)
        with self.lock:
            return [
                dict(r)
                for r in self.db.execute(
                    f"SELECT * FROM agent WHERE state IN ({', '.join('?' for _ in states)}) "
                    "ORDER BY deadline",
                    states,
                )
            ]

    def expected(self, market_id: int) -> float | None:
        with self.lock:
            row = self.db.execute(
                "SELECT seconds FROM agent_timing WHERE market_id = ?", (market_id,)
            ).fetchone()
            return None if row is None else float(row["seconds"])

    def measured(self, market_id: int, seconds: float) -> float:
        """Fold a measured proving time into the market's average; returns the new one."""
        with self.lock:
            row = self.db.execute("SELECT * FROM agent_timing WHERE market_id = ?", (market_id,)).fetchone()
            average = seconds if row is None else (1 - ALPHA) * row["seconds"] + ALPHA * seconds
            samples = 1 if row is None else row["samples"] + 1
            self.db.execute(
                "INSERT OR REPLACE INTO agent_timing (market_id, seconds, samples) VALUES (?, ?, ?)",
                (market_id, average, samples),
            )
            return average

    # -------------------------------------------------------------- bids

    def bid_sent(self, url: str, task: str, round_: int) -> bool:
        """A bid on this auction round was sent (or is being sent) already."""
        with self.lock:
            return (
                self.db.execute(
                    "SELECT 1 FROM agent_bids WHERE url = ? AND task_id = ? AND round = ?",
                    (url, task, round_),
                ).fetchone()
                is not None
            )

    def bid_sending(self, bid: Bid) -> None:
        """The bid's row, written before it is sent."""
        now = time.time()
        with self.lock:
            self.db.execute(
                "INSERT INTO agent_bids (url, task_id, round, market_id, collateral, min_price, expiry, "
                "nonce, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bid.url,
                    bid.task,
                    bid.round,
                    bid.market_id,
                    str(bid.collateral),
                    str(bid.min_price),
                    bid.expiry,
                    bid.nonce,
                    BID_SENDING,
                    now,
                    now,
                ),
            )

    def bid_answered(
        self, bid: Bid, state: str, bid_id: str | None = None, detail: str | None = None
    ) -> None:
        with self.lock:
            self.db.execute(
                "UPDATE agent_bids SET state = ?, bid_id = ?, detail = ?, updated_at = ? "
                "WHERE url = ? AND task_id = ? AND round = ?",
                (state, bid_id, detail, time.time(), bid.url, bid.task, bid.round),
            )

    def bid_unsent(self, bid: Bid) -> None:
        """The bid never reached the server: forget it, to be sent again."""
        with self.lock:
            self.db.execute(
                "DELETE FROM agent_bids WHERE url = ? AND task_id = ? AND round = ?",
                (bid.url, bid.task, bid.round),
            )

    def bids_standing(self, now: int) -> list[dict]:
        """Bids sent or being sent that have not expired (each may still win)."""
        with self.lock:
            return [
                dict(r)
                for r in self.db.execute(
                    "SELECT * FROM agent_bids WHERE state IN (?, ?) AND expiry >= ?",
                    (BID_SENDING, BID_ACCEPTED, now),
                )
            ]

    def close(self) -> None:
        with self.lock:
            self.db.close()


# ------------------------------------------------------------------ work


@dataclass(frozen=True)
class Work:
    """One task to prove: an assignment (its slot, price, deadline) or an open race."""

    key: str
    task_id: bytes
    market_id: int
    terms: TaskTerms
    assignment: Assignment  # RACE for an open race
    deadline: int  # the assignment's, or the race's end
    prover_input: bytes
    input_uri: str
    decline_until: int | None  # the last timestamp the registry takes a decline; None: a race

    @property
    def race(self) -> bool:
        return self.terms.mechanism_id == OPEN_RACE

    def fields(self) -> dict[str, Any]:
        """What a log line says about the work."""
        where: dict[str, Any] = {"task": _hex(self.task_id), "market": self.market_id}
        if self.race:
            where["race"] = True
        else:
            where["slot"] = self.assignment.slot
        return where


@dataclass(frozen=True)
class Bid:
    """A bid on one round of an auction: what is signed, and where it goes."""

    url: str
    task: str  # 0x task id
    round: int
    market_id: int
    collateral: int
    min_price: int
    expiry: int
    nonce: int


@dataclass
class Committed:
    """Capacity and stake promised this round beyond what the mirror shows as used:
    DUTCH locks in flight, bids that may still win, races being proven."""

    slots: dict[int, int] = field(default_factory=dict)  # market -> units of capacity
    collateral: int = 0  # wei of free stake

    def add(self, market_id: int, collateral: int) -> None:
        self.slots[market_id] = self.slots.get(market_id, 0) + 1
        self.collateral += collateral


def prove_key(task_id: bytes, slot: int) -> str:
    return f"prove:{_hex(task_id)}:{slot}"


def race_key(task_id: bytes) -> str:
    return f"race:{_hex(task_id)}"


def decline_key(task_id: bytes, slot: int) -> str:
    return f"decline:{_hex(task_id)}:{slot}"


def lock_key(task_id: bytes) -> str:
    return f"lock:{_hex(task_id)}"


def void_key(task_id: bytes, slot: int) -> str:
    return f"void:{_hex(task_id)}:{slot}"


WITHDRAW_KEY = "withdraw"


class Agent:
    def __init__(
        self,
        client: RegistryClient,
        db: str | Path,
        settings: AgentSettings,
        stop: runtime.Stopper,
        metrics: Metrics | None = None,
    ):
        if client.signer is None:
            raise ClientError("the agent needs the prover's key")
        self.client = client
        self.web3: Web3 = client.web3
        self.me = client.signer.address
        self.settings = settings
        self.backends = Backends(settings.backend, self._check)
        self.stop = stop
        self.metrics = metrics or Metrics("agent")
        path = str(db)
        self.mirror = Mirror(path, client, confirmations=settings.confirmations)
        self.outbox = Outbox(path, client)
        self.store = AgentStore(path)
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.futures: set[concurrent.futures.Future] = set()
        self.lock = threading.Lock()  # busy, running
        self.busy: set[str] = set()  # keys a worker holds
        self.running: dict[int, int] = {}  # market -> proofs being made or sent
        self.circuits: dict[int, Circuit] = {}
        self.warm: set[tuple[int, int]] = set()  # (market, backend) whose first proof ran
        self.warm_lock = threading.Lock()
        self.withdraw_asked = False
        self.metrics_port: int | None = None
        self.cost = settings.cost
        self.gas_price_read: tuple[float, int] | None = None  # (monotonic time, wei)
        self.floors_logged: dict[int, int] = {}  # market -> the floor agent.cost last said
        self.said: set[tuple[str, str]] = set()  # (task, event) logged once
        self.lock_refused: dict[str, float] = {}  # lock key -> monotonic time of the refusal
        self.void_refused: dict[str, float] = {}  # void key -> monotonic time of the refusal
        # What a market's creation fixed (verifier, custom, code hash); `frozen` is read
        # afresh, once a round, for custom markets with live work (frozen_now).
        self.market_facts: dict[int, Market] = {}
        self.untrusted_said: set[int] = set()  # markets agent.untrusted_market named
        self.frozen_now: dict[int, Market] = {}
        # task -> why its posted inputs cannot be proven (None: they can), checked once
        self.inputs_checked: dict[bytes, str | None] = {}
        self.auction_down: dict[str, tuple[int, float]] = {}  # url -> (failures, retry at)
        self.http = requests.Session()

    # -------------------------------------------------------------- running

    def run(self) -> int:
        memberships = self._memberships_now()
        if not memberships:
            raise ClientError(
                f"prover {self.me} has joined no market of the registry at {self.client.address}; "
                "stake and join one first: "
                "ape run prover join <market> --capacity N --ask ETH --proving-time SECONDS"
            )
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(MIN_WORKERS, sum(m["capacity"] for m in memberships)), thread_name_prefix="prove"
        )
        if self.settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.settings.metrics_port)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._on_usr1)
        runtime.emit(
            log,
            "agent.start",
            prover=self.me,
            registry=self.client.address,
            memberships=[{**m, "backend": self.backends.describe(m["market"])} for m in memberships],
            race=self.settings.race,
            dutch=self.settings.dutch,
            auctions=list(self.settings.auctions),
            cost_per_second=self.cost.cost_per_second,
            risk_rate=str(self.cost.risk_rate),
            price_margin=str(self.cost.margin),
            withdraw_at=self.settings.withdraw_at,
            trusted_verifiers=sorted(trust.hex32(h) for h in self.settings.trusted),
            metrics_port=self.metrics_port,
            **self._simulated(),
        )
        runtime.run_forever(self.round_, self.stop, self.settings.poll, "agent", on_error=self._on_error)
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
        self.withdraw_asked = True

    def _on_error(self, kind: str) -> None:
        if kind == "rpc":
            self.metrics.counter("rpc_errors_total", "Calls to the node that failed (rounds and workers)")

    def shutdown(self) -> int:
        """Let running proofs finish and be submitted (bounded), then close everything."""
        with self.lock:
            pending = [f for f in self.futures if not f.done()]
        if pending:
            concurrent.futures.wait(pending, timeout=SHUTDOWN_GRACE)
        unfinished = sum(1 for f in pending if not f.done())
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
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
        self.http.close()
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
                for outcome in self.outbox.settle(self.mirror.cursor):
                    self._outcome(outcome)
                if not self.outbox.in_flight_keys() or time.monotonic() > until:
                    break
                time.sleep(0.25)
        except Exception as error:
            runtime.emit(log, "agent.error", logging.WARNING, error=f"{type(error).__name__}: {error}"[:300])

    # -------------------------------------------------------------- a round

    def round_(self) -> None:
        report = self.mirror.sync()
        if report.reorgs:  # proofs mined in the dropped blocks are in flight again
            self.outbox.rollback(min(fork for _, fork in report.reorgs))
        for outcome in self.outbox.settle(self.mirror.cursor):
            self._outcome(outcome)
        now = chain_time(self.web3)
        in_flight = self.outbox.in_flight_keys()
        memberships = {m.market_id: m for m in self.mirror.memberships(prover=self.me)}
        grace = {m.market_id: m.grace_period for m in self.mirror.markets()}

        for market_id in memberships:
            self._untrusted(market_id)  # agent.untrusted_market, once a market

        live = self.mirror.live_assignments(self.me)
        self.metrics.gauge("assignments_live", "Assignments awaiting this prover's proof", len(live))
        live_keys = {prove_key(a.task_id, a.slot) for a in live}
        self._reconcile(now, live_keys)
        self.frozen_now = self._frozen({a.market_id for a in live})
        self._void(live, in_flight)

        work: list[Work] = []
        for a in sorted(live, key=lambda a: a.deadline):
            task = self.mirror.task(a.task_id)
            work.append(
                Work(
                    prove_key(a.task_id, a.slot),
                    a.task_id,
                    a.market_id,
                    a.terms,
                    Assignment(a.slot, a.price, a.deadline, a.frontend),
                    a.deadline,
                    task.prover_input,
                    task.input_uri,
                    a.deadline - a.terms.proving_window + grace.get(a.market_id, 0),
                )
            )
        for item in work:
            self._take(item, now, in_flight, memberships)
        gas_price = self._gas_price()
        self._log_costs(memberships, gas_price)
        if self.settings.race:
            for item in self._races(now, memberships, gas_price):
                self._take(item, now, in_flight, memberships)
        if self.settings.dutch or self.settings.auctions:
            committed = self._committed(now, in_flight)
            if self.settings.dutch:
                self._lock_dutch(now, memberships, in_flight, committed, gas_price)
            for url in self.settings.auctions:
                self._bid_at(url, now, memberships, committed, gas_price)
        self._maybe_withdraw(in_flight)
        with self.lock:
            self.metrics.gauge("proving_now", "Proofs being made or sent", sum(self.running.values()))

    def _take(self, work: Work, now: int, in_flight: set[str], memberships: Mapping[int, Any]) -> None:
        """Decide what to do with one piece of work this round."""
        with self.lock:
            if work.key in self.busy:
                return
        if work.key in in_flight:
            return
        if not work.race and decline_key(work.task_id, work.assignment.slot) in in_flight:
            return  # declined (the row may not say so if the process died right after)
        row = self.store.get(work.key)
        first = row is None and not work.race
        if first:
            self.store.insert(work, QUEUED)
            row = self.store.get(work.key)
            runtime.emit(
                log,
                "agent.assigned",
                **work.fields(),
                price=work.assignment.price,
                deadline=work.deadline,
                left_s=work.deadline - now,
            )
        if work.market_id in self.frozen_now:
            return  # nothing can be proven there: voided instead (agent.voided)
        state = row["state"] if row else QUEUED  # no row: a race not entered yet
        if state == PROVED:
            self._submit_stored(work, row)
            return
        if state not in (QUEUED, PROVING):
            return
        needs = self.expected(work.market_id, memberships) + self.settings.margin
        if not work.race:
            # A market whose verifier it does not trust, or (the moment a frontend's
            # assignment is first seen) inputs nobody can prove: decline while the grace
            # period runs.
            why = self._untrusted(work.market_id)
            if why is None and first and _from_frontend(work.assignment):
                why = self._unprovable(work.task_id, work.terms, work.prover_input, work.input_uri)
            if why is not None:
                self._give_up(work, now, needs, why)
                return
        hardware = self.settings.simulate
        if hardware.fails(self.me, work.task_id, 0 if work.race else work.assignment.slot):
            # Simulated hardware that crashed on this work: nothing is sent, not even a
            # decline, so an assignment is slashed after its deadline.
            if row is None:
                self.store.insert(work, GAVE_UP)
            self.store.update(work.key, state=GAVE_UP, error="simulated hardware failure")
            self.metrics.counter("simulated_failures_total", "Work the simulated hardware failed on")
            runtime.emit(log, "simulated.failure", logging.WARNING, **work.fields(), seed=hardware.seed)
            return
        if row is not None and row["attempts"] > self.settings.retries:
            self._give_up(work, now, needs, f"the backend failed {row['attempts']} times: {row['error']}")
            return
        if now + needs > work.deadline:
            if row is not None:  # a race not entered yet is simply not entered
                self._give_up(work, now, needs, "not enough time left to prove")
            return
        if self.stop.stopped:  # stopping: no new work
            return
        membership = memberships.get(work.market_id)
        capacity = membership.capacity if membership is not None else 1
        with self.lock:
            if self.running.get(work.market_id, 0) >= capacity:
                return
            self.running[work.market_id] = self.running.get(work.market_id, 0) + 1
            self.busy.add(work.key)
        if row is None:
            self.store.insert(work, PROVING)
        else:
            self.store.update(work.key, state=PROVING)
        future = self.pool.submit(self._work, work, needs)
        with self.lock:
            self.futures = {f for f in self.futures if not f.done()} | {future}

    def _races(self, now: int, memberships: Mapping[int, Any], gas_price: int) -> list[Work]:
        """OPEN_RACE tasks worth entering now, and races it had started (a restart)."""
        standing = self.mirror.prover(self.me)
        found: list[Work] = []
        for market_id, membership in memberships.items():
            if self._untrusted(market_id) is not None:
                continue
            expected = self.expected(market_id, memberships)
            needs = expected + self.settings.margin
            # A race locks no collateral and a beaten racer is not slashed: none at risk.
            least = self.cost.least_price(expected, gas_price, 0)
            floor = max(membership.ask, self.settings.race_min_reward, least)
            for task in self.mirror.open_tasks(now=now, market_id=market_id, mechanism_id=OPEN_RACE):
                terms = task.terms
                end = terms.posted_at + terms.proving_window
                started = self.store.get(race_key(task.task_id))
                if started is not None:
                    if started["state"] in (QUEUED, PROVING, PROVED):
                        found.append(self._race_work(task, end))
                    continue
                if not (
                    task.eligible(self.me)
                    and membership.capabilities & terms.capabilities == terms.capabilities
                    and standing.free >= terms.collateral
                    and now + needs <= end
                ):
                    continue
                why = self._unprovable(task.task_id, terms, task.prover_input, task.input_uri)
                if why is not None:
                    self._once(task.task_id, "agent.pass", market=market_id, race=True, reason=why)
                    continue
                # What a proof made now pays: the reward, decayed to when it would land.
                reward = reward_at(terms, terms.max_reward, end, math.ceil(now + needs))
                if reward < floor:
                    self._once(
                        task.task_id,
                        "agent.pass",
                        market=market_id,
                        race=True,
                        reward=reward,
                        floor=floor,
                        reason="the race pays less than the floor",
                    )
                    continue
                self._once(task.task_id, "agent.race", market=market_id, reward=reward, floor=floor)
                found.append(self._race_work(task, end))
        return sorted(found, key=lambda w: w.deadline)

    @staticmethod
    def _race_work(task: TaskView, end: int) -> Work:
        return Work(
            race_key(task.task_id),
            task.task_id,
            task.terms.market_id,
            task.terms,
            RACE,
            end,
            task.prover_input,
            task.input_uri,
            None,
        )

    def expected(self, market_id: int, memberships: Mapping[int, Any] | None = None) -> float:
        """Seconds a proof of this market is expected to take: the measured average, or
        the membership's declared proving time until there is one."""
        measured = self.store.expected(market_id)
        if measured is not None:
            return measured
        membership = (memberships or {}).get(market_id)
        return float(membership.proving_time) if membership is not None else 0.0

    # -------------------------------------------------------------- pricing

    def _gas_price(self) -> int:
        """Wei per gas a transaction sent now pays: the pending block's base fee plus the
        node's priority fee (what the outbox offers), read every GAS_PRICE_EVERY seconds."""
        clock = time.monotonic()
        if self.gas_price_read is not None and clock - self.gas_price_read[0] < GAS_PRICE_EVERY:
            return self.gas_price_read[1]
        try:
            block = self.web3.eth.get_block("pending")
        except Exception:  # a node without a pending block (one that is down fails again below)
            block = self.web3.eth.get_block("latest")
        price = (block.get("baseFeePerGas", 0) or 0) + self.web3.eth.max_priority_fee
        self.gas_price_read = (clock, price)
        return price

    def _log_costs(self, memberships: Mapping[int, Any], gas_price: int) -> None:
        """agent.cost for each market at start and when its floor moved by COST_LOG_CHANGE."""
        least_collateral = {m.market_id: m.min_collateral for m in self.mirror.markets()}
        for market_id in memberships:
            expected = self.expected(market_id, memberships)
            collateral = least_collateral.get(market_id, 0)
            floor = self.cost.least_price(expected, gas_price, collateral)
            self.metrics.gauge(
                "floor_wei",
                "Least price worth proving for (at the market's least collateral)",
                floor,
                market=market_id,
            )
            before = self.floors_logged.get(market_id)
            if before is not None and abs(floor - before) <= before * COST_LOG_CHANGE:
                continue
            self.floors_logged[market_id] = floor
            runtime.emit(
                log,
                "agent.cost",
                market=market_id,
                reason="start" if before is None else "changed",
                expected_s=round(expected, 3),
                gas_price=gas_price,
                floor=floor,
                floor_eth=format_ether(floor),
                collateral=collateral,
                race_floor=self.cost.least_price(expected, gas_price, 0),
                lock_floor=self.cost.least_price(expected, gas_price, collateral, needs_lock=True),
                cost_per_second=self.cost.cost_per_second,
                risk_rate=str(self.cost.risk_rate),
                price_margin=str(self.cost.margin),
            )

    def _once(self, task: bytes | str, event: str, **fields: Any) -> None:
        """Log a decision about a task once (per event and reason), not every round."""
        task = _hex(task) if isinstance(task, (bytes, bytearray)) else task
        mark = (task, f"{event}:{fields.get('reason', '')}")
        if mark not in self.said:
            if len(self.said) >= MAX_SAID:  # a long run: forget, at worst say some again
                self.said.clear()
            self.said.add(mark)
            runtime.emit(log, event, task=task, **fields)

    def _committed(self, now: int, in_flight: set[str]) -> Committed:
        """Capacity and collateral promised beyond the mirror's `used` and `locked`: locks
        in flight, bids that may still win (one per task), races being proven."""
        committed = Committed()
        for key in in_flight:
            if key.startswith("lock:"):
                task = self.mirror.task(key.split(":", 1)[1])
                if task is not None:
                    committed.add(task.terms.market_id, task.terms.collateral)
        counted: set[str] = set()
        for row in self.store.bids_standing(now):
            if row["task_id"] in counted:
                continue
            task = self.mirror.task(row["task_id"])
            if task is not None and (self.me in task.engaged or task.open == 0):
                continue  # won (then the mirror counts it) or lost
            counted.add(row["task_id"])
            committed.add(row["market_id"], int(row["collateral"]))
        for row in self.store.rows((QUEUED, PROVING)):
            if row["kind"] == "race":
                committed.slots[row["market_id"]] = committed.slots.get(row["market_id"], 0) + 1
        return committed

    def _room(
        self, membership: Any, committed: Committed, standing: Any, collateral: int
    ) -> dict[str, Any] | None:
        """Why one more task of this market cannot be taken on now (a reason and its
        numbers, for agent.pass), or None if it can."""
        used = membership.used + committed.slots.get(membership.market_id, 0)
        if used >= membership.capacity:
            return {"reason": "no free capacity", "in_use_or_promised": used, "capacity": membership.capacity}
        free = standing.free - committed.collateral
        if free < collateral:
            return {"reason": "not enough free stake", "free_stake": free, "collateral": collateral}
        return None

    def _fits(self, membership: Any, terms: TaskTerms, needs: float) -> str | None:
        """Why this prover cannot serve a task of the market at all, or None."""
        if membership.capabilities & terms.capabilities != terms.capabilities:
            return "lacks the task's capabilities"
        if membership.proving_time > terms.proving_window or needs > terms.proving_window:
            return (
                f"proving time does not fit the {terms.proving_window} s window "
                f"(declared {membership.proving_time} s, expected with margin {round(needs, 3)} s)"
            )
        return None

    # -------------------------------------------------------------- markets and inputs

    def _market(self, market_id: int) -> Market:
        """What the market's creation fixed (verifier, custom, code hash), read once."""
        if market_id not in self.market_facts:
            self.market_facts[market_id] = self.client.market(market_id)
        return self.market_facts[market_id]

    def _untrusted(self, market_id: int) -> str | None:
        """Why it takes no work in this market (a custom one whose verifier's code hash is
        not among --trust-verifier), or None; agent.untrusted_market the first time."""
        market = self._market(market_id)
        why = trust.untrusted(market, self.settings.trusted)
        if why is not None and market_id not in self.untrusted_said:
            self.untrusted_said.add(market_id)
            runtime.emit(
                log,
                "agent.untrusted_market",
                logging.WARNING,
                market=market_id,
                verifier=market.verifier,
                codehash=trust.hex32(market.codehash),
                reason=why,
            )
        return why

    def _frozen(self, market_ids: Iterable[int]) -> dict[int, Market]:
        """Which of these markets (those with live work) are frozen now, as read now: only
        a custom market can be, so only those are asked, once each."""
        found = {}
        for market_id in set(market_ids):
            if self._market(market_id).custom:
                market = self.client.market(market_id)
                if market.frozen:
                    found[market_id] = market
        return found

    def _void(self, live: Iterable[Any], in_flight: set[str]) -> None:
        """Void each live assignment of a frozen market (`slash` voids them there: the
        collateral comes back, no penalty); the registry would refuse its proof."""
        for a in live:
            if a.market_id not in self.frozen_now:
                continue
            key = void_key(a.task_id, a.slot)
            refused = self.void_refused.get(key)
            if key in in_flight or (refused is not None and time.monotonic() - refused < LOCK_RETRY):
                continue
            fields = {"task": _hex(a.task_id), "market": a.market_id, "slot": a.slot}
            assignment = Assignment(a.slot, a.price, a.deadline, a.frontend)
            self.settings.simulate.wait()  # latency to the chain (simulations)
            try:
                sent = self.outbox.send(
                    "slash", a.terms.as_tuple(), self.me, assignment.as_tuple(), keys=[key]
                )
            except Refused as error:
                self.void_refused[key] = time.monotonic()
                runtime.emit(log, "agent.refused", **fields, fn="slash", reason=error.reason)
                continue
            self.metrics.counter("voided_total", "Assignments voided in frozen markets")
            runtime.emit(
                log,
                "agent.voided",
                logging.WARNING,
                **fields,
                tx=sent.tx_hash,
                reason=trust.frozen(self.frozen_now[a.market_id]),
            )

    def _unprovable(
        self, task_id: bytes, terms: TaskTerms, prover_input: bytes, input_uri: str
    ) -> str | None:
        """Why nobody can prove the task from its posted inputs (not its commitment's, or
        not satisfying the circuit), or None; checked once a task (witness generation,
        far cheaper than proving)."""
        task = bytes(task_id)
        if task not in self.inputs_checked:
            try:
                posted_inputs(terms, prover_input, input_uri, self._circuit(terms.market_id))
                why = None
            except (ClientError, CircuitError) as error:
                why = str(error)
            if len(self.inputs_checked) >= MAX_SAID:  # a long run: check some again
                self.inputs_checked.clear()
            self.inputs_checked[task] = why
        return self.inputs_checked[task]

    # -------------------------------------------------------------- DUTCH locks

    def _lock_dutch(
        self,
        now: int,
        memberships: Mapping[int, Any],
        in_flight: set[str],
        committed: Committed,
        gas_price: int,
    ) -> None:
        """Lock a slot of each DUTCH task whose price reached the floor, while there is room."""
        standing = self.mirror.prover(self.me)
        paused = {m.market_id for m in self.mirror.markets() if m.paused}
        for market_id, membership in memberships.items():
            if market_id in paused or self.stop.stopped or self._untrusted(market_id) is not None:
                continue
            expected = self.expected(market_id, memberships)
            needs = expected + self.settings.margin
            for task in self.mirror.open_tasks(now=now, market_id=market_id, mechanism_id=DUTCH):
                terms, key = task.terms, lock_key(task.task_id)
                if key in in_flight or not task.eligible(self.me):
                    continue  # locking, or locked (then it is an assignment)
                refused = self.lock_refused.get(key)
                if refused is not None and time.monotonic() - refused < LOCK_RETRY:
                    continue
                why = self._fits(membership, terms, needs) or self._unprovable(
                    task.task_id, terms, task.prover_input, task.input_uri
                )
                if why is not None:  # a locked slot cannot be declined: check the inputs first
                    self._once(task.task_id, "agent.pass", market=market_id, dutch=True, reason=why)
                    continue
                least = self.cost.least_price(expected, gas_price, terms.collateral, needs_lock=True)
                # The lock's price must pay the floor once decayed over the proving time,
                # and reach the ask (the registry refuses a lock below it).
                wanted = price_for_reward(terms, least, terms.proving_window - needs)
                target = None if wanted is None else max(membership.ask, wanted)
                if target is None or target > terms.max_reward:
                    self._once(
                        task.task_id,
                        "agent.pass",
                        market=market_id,
                        dutch=True,
                        max_reward=terms.max_reward,
                        floor=least,
                        ask=membership.ask,
                        reason="the most the task pays is below the floor",
                    )
                    continue
                price = dutch_price(terms, now)
                if price < target:
                    self._once(
                        task.task_id,
                        "agent.dutch_wait",
                        market=market_id,
                        price=price,
                        floor=least,
                        target=target,
                        at=dutch_time_for(terms, target),
                    )
                    continue
                room = self._room(membership, committed, standing, terms.collateral)
                if room is not None:
                    self._once(task.task_id, "agent.pass", market=market_id, dutch=True, **room)
                    continue
                self.settings.simulate.wait()  # latency to the chain (simulations)
                try:
                    sent = self.outbox.send("lock", terms.as_tuple(), keys=[key])
                except Refused as refused:
                    self.lock_refused[key] = time.monotonic()
                    runtime.emit(
                        log, "agent.refused", task=_hex(task.task_id), fn="lock", reason=refused.reason
                    )
                    continue
                committed.add(market_id, terms.collateral)
                self.metrics.counter("locks_total", "DUTCH locks sent")
                runtime.emit(
                    log,
                    "agent.lock",
                    task=_hex(task.task_id),
                    market=market_id,
                    price=price,
                    target=target,
                    floor=least,
                    tx=sent.tx_hash,
                )

    # -------------------------------------------------------------- auctions

    def _bid_at(
        self, url: str, now: int, memberships: Mapping[int, Any], committed: Committed, gas_price: int
    ) -> None:
        """Bid on the open auctions of one auction frontend it can serve, once a round each."""
        down = self.auction_down.get(url)
        if down is not None and time.monotonic() < down[1]:
            return
        try:
            response = self.http.get(f"{url}/auctions", timeout=AUCTION_TIMEOUT)
            if response.status_code != 200:
                raise AuctionError(f"GET /auctions answered {response.status_code}: {_detail(response)}")
            auctions = response.json()
            if not isinstance(auctions, list):
                raise AuctionError("GET /auctions did not answer a JSON list")
        except (requests.RequestException, ValueError, AuctionError) as error:
            self._auction_failed(url, error)
            return
        if down is not None:
            del self.auction_down[url]
            if down[0]:  # not after a 429's wait
                runtime.emit(log, "agent.auction_back", url=url, after_failures=down[0])
        standing = self.mirror.prover(self.me)
        for entry in auctions:
            if self.stop.stopped:
                return
            try:
                auction = Auction.from_json(entry)
            except (KeyError, TypeError, ValueError, ClientError) as error:
                name = entry.get("task_id") if isinstance(entry, dict) else None
                self._once(
                    str(name or json.dumps(entry, default=str)[:80]),
                    "agent.auction_error",
                    url=url,
                    reason=f"an auction the agent cannot read: {type(error).__name__}: {error}"[:300],
                )
                continue
            if not self._bid(url, auction, now, memberships, committed, gas_price, standing):
                return

    def _bid(
        self,
        url: str,
        auction: Auction,
        now: int,
        memberships: Mapping[int, Any],
        committed: Committed,
        gas_price: int,
        standing: Any,
    ) -> bool:
        """Bid on one auction if it is worth it; False when the server failed (stop asking it)."""
        tid = _hex(auction.task_id)
        if auction.closes_at < now or self.store.bid_sent(url, tid, auction.round):
            return True
        task = self.mirror.task(auction.task_id)
        if task is None or task.open == 0 or not task.eligible(self.me):
            return True  # not mirrored yet, or taken
        terms = task.terms
        said = (auction.market_id, auction.mechanism_id, auction.max_reward, auction.collateral)
        if said != (terms.market_id, terms.mechanism_id, terms.max_reward, terms.collateral):
            self._once(tid, "agent.pass", url=url, reason="the auction's terms are not the task's on chain")
            return True
        membership = memberships.get(terms.market_id)
        if membership is None or self._untrusted(terms.market_id) is not None:
            return True  # a market it did not join, or whose verifier it does not trust
        if not membership.accepts(terms.mechanism_id):
            self._once(tid, "agent.pass", url=url, reason=f"does not accept mechanism {terms.mechanism_id}")
            return True
        expected = self.expected(terms.market_id, memberships)
        needs = expected + self.settings.margin
        why = self._fits(membership, terms, needs) or self._unprovable(
            task.task_id, terms, task.prover_input, task.input_uri
        )
        if why is not None:
            self._once(tid, "agent.pass", url=url, reason=why)
            return True
        least = self.cost.least_price(expected, gas_price, terms.collateral)
        min_price = price_for_reward(terms, least, terms.proving_window - needs)
        if min_price is None or min_price > terms.max_reward:
            self._once(
                tid,
                "agent.pass",
                url=url,
                max_reward=terms.max_reward,
                floor=least,
                reason="the most the task pays is below the floor",
            )
            return True
        room = self._room(membership, committed, standing, terms.collateral)
        if room is not None:
            self._once(tid, "agent.pass", url=url, round=auction.round, **room)
            return True
        bid = Bid(
            url,
            tid,
            auction.round,
            terms.market_id,
            terms.collateral,
            min_price,
            max(auction.closes_at + BID_EXPIRY_AFTER_CLOSE, auction.min_expiry),
            standing.nonce,
        )
        signature = self.client.signer.sign_typed(
            bid_typed_data(
                self.outbox.chain_id, self.client.address, auction.task_id, min_price, bid.expiry, bid.nonce
            )
        )
        self.store.bid_sending(bid)  # before sending: a restart never sends it twice
        try:
            self.settings.simulate.wait()  # latency to the auction (simulations)
            response = self.http.post(
                f"{url}/bids",
                json={
                    "task_id": tid,
                    "prover": self.me,
                    "min_price": str(min_price),
                    "expiry": bid.expiry,
                    "nonce": bid.nonce,
                    "signature": "0x" + bytes(signature).hex(),
                },
                timeout=AUCTION_TIMEOUT,
            )
        except requests.RequestException as error:
            if not isinstance(error, requests.ReadTimeout):
                self.store.bid_unsent(bid)  # it never got there: send it again later
            else:  # it may have got there: count it as sent
                committed.add(terms.market_id, terms.collateral)
            self._auction_failed(url, error)
            return False
        fields = {"url": url, "task": tid, "round": auction.round, "market": terms.market_id}
        if 200 <= response.status_code < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            answer = answer if isinstance(answer, dict) else {}
            bid_id = answer.get("bid_id")
            self.store.bid_answered(bid, BID_ACCEPTED, bid_id=None if bid_id is None else str(bid_id))
            committed.add(terms.market_id, terms.collateral)
            self.metrics.counter("bids_total", "Bids sent to auction frontends and taken")
            runtime.emit(
                log,
                "agent.bid",
                **fields,
                min_price=min_price,
                min_price_eth=format_ether(min_price),
                floor=least,
                max_reward=terms.max_reward,
                expiry=bid.expiry,
                nonce=bid.nonce,
                bid_id=bid_id,
                status=answer.get("status"),
                closes_at=answer.get("closes_at", auction.closes_at),
            )
            return True
        if response.status_code == 429:  # too many bids too fast: not a refusal, wait
            self.store.bid_unsent(bid)
            wait = _retry_after(response)
            self.auction_down[url] = (self.auction_down.get(url, (0, 0.0))[0], time.monotonic() + wait)
            runtime.emit(
                log,
                "agent.bid_refused",
                logging.WARNING,
                **fields,
                status=429,
                detail=_detail(response),
                min_price=min_price,
                retry_in=wait,
            )
            return False
        if 400 <= response.status_code < 500:
            detail = _detail(response)
            self.store.bid_answered(bid, BID_REFUSED, detail=detail)
            self.metrics.counter("bids_refused_total", "Bids auction frontends refused")
            runtime.emit(
                log,
                "agent.bid_refused",
                logging.WARNING,
                **fields,
                status=response.status_code,
                detail=detail,
                min_price=min_price,
            )
            return True
        self.store.bid_unsent(bid)
        self._auction_failed(
            url, AuctionError(f"POST /bids answered {response.status_code}: {_detail(response)}")
        )
        return False

    def _auction_failed(self, url: str, error: BaseException) -> None:
        failures = self.auction_down.get(url, (0, 0.0))[0] + 1
        delay = min(0.5 * 2 ** (failures - 1), MAX_AUCTION_BACKOFF)
        self.auction_down[url] = (failures, time.monotonic() + delay)
        self.metrics.counter("auction_errors_total", "Auction frontends that failed or did not answer")
        runtime.emit(
            log,
            "agent.auction_error",
            logging.WARNING,
            url=url,
            error=f"{type(error).__name__}: {error}"[:300],
            attempt=failures,
            retry_in=delay,
        )

    # -------------------------------------------------------------- reconciling

    def _reconcile(self, now: int, live_keys: set[str]) -> None:
        """Bring rows up to date with the outbox and the mirror: after a restart, or when
        a settle outcome was not seen (killed in between), or the work ended on chain."""
        # Busy keys first, then what is in flight, then the rows: a worker that finishes
        # meanwhile has its row and its transaction read as they are now.
        with self.lock:
            busy = set(self.busy)
        in_flight = self.outbox.in_flight_keys()
        rows = [r for r in self.store.rows(OPEN_WORK) if r["key"] not in in_flight and r["key"] not in busy]
        if not rows:
            return
        sent: dict[str, Any] = {}
        if any(r["state"] in (PROVED, SUBMITTED) for r in rows):
            for s in self.outbox.rows():
                for key in s.keys:
                    sent[key] = s  # ordered by nonce: the newest wins
        for row in rows:
            key, task_id = row["key"], bytes.fromhex(row["task_id"][2:])
            tx = sent.get(key)
            if row["state"] in (PROVED, SUBMITTED) and tx is not None:
                if tx.state == DONE:
                    self._paid_from_mirror(row, task_id, tx.tx_hash)
                    continue
                if tx.state == REVERTED:
                    self.store.update(key, state=FAILED, error="the proof's transaction reverted")
                    runtime.emit(
                        log,
                        "agent.refused",
                        task=row["task_id"],
                        slot=row["slot"],
                        fn="prove",
                        tx=tx.tx_hash,
                        reason="the proof's transaction reverted",
                    )
                    continue
            if row["state"] == SUBMITTED and (tx is None or tx.state == DROPPED):
                self.store.update(key, state=PROVED)  # never mined: the kept proof goes again
                row["state"] = PROVED
            if row["kind"] == "prove" and key not in live_keys:
                self._ended(row, task_id)
            elif row["kind"] == "race" and row["state"] in (QUEUED, PROVING, PROVED):
                task = self.mirror.task(task_id)
                end = row["deadline"]
                if task is None or task.open == 0 or now > end:
                    mine = self.mirror.assignments(prover=self.me, task_id=task_id, states=(PROVEN,))
                    if mine:
                        self._paid_from_mirror(row, task_id, None)
                    else:
                        self._race_lost(row["key"], row["task_id"], task)

    def _ended(self, row: dict, task_id: bytes) -> None:
        """A row's assignment is no longer live in the mirror: proven by it, or lost."""
        mine = self.mirror.assignments(prover=self.me, task_id=task_id)
        if not mine:
            return  # a reorg took the assignment away; it may come back
        state = mine[-1].state
        if state == PROVEN:
            self._paid_from_mirror(row, task_id, None)
            return
        self.store.update(row["key"], state=LOST, error=f"the assignment was {state}")
        runtime.emit(log, "agent.lost", task=row["task_id"], slot=row["slot"], state=state)

    def _paid_from_mirror(self, row: dict, task_id: bytes, tx: str | None) -> None:
        proven = [e for e in self.mirror.timeline(task_id) if e.name == "TaskProven" and e.prover == self.me]
        if tx is not None:
            proven = [e for e in proven if e.tx == tx] or proven
        if not proven:
            return  # the mirror does not show it yet
        event = proven[-1]
        self._paid(row["key"], row["task_id"], event.slot, event.paid, event.tx)

    def _paid(self, key: str, task: str, slot: int, paid: int, tx: str) -> None:
        self.store.update(key, state=DONE_, slot=slot, paid=str(paid), tx=tx)
        self.metrics.counter("proofs_paid_total", "Proofs the registry accepted and paid")
        self.metrics.counter("paid_wei_total", "Wei credited for proofs", paid)
        runtime.emit(log, "agent.paid", task=task, slot=slot, paid=paid, paid_eth=format_ether(paid), tx=tx)

    def _race_lost(self, key: str, task: str, view: TaskView | None) -> None:
        self.store.update(key, state=LOST, error="the race was won by others or ended")
        runtime.emit(
            log,
            "agent.race_lost",
            task=task,
            proven=view.proven if view else None,
            redundancy=view.terms.redundancy if view else None,
        )

    def _outcome(self, outcome: Outcome) -> None:
        """What a settled transaction means for the work it carries."""
        for key in outcome.sent.keys:
            if key.startswith("lock:"):
                if outcome.kind == "reverted":
                    self.lock_refused[key] = time.monotonic()
                for e in outcome.events:
                    if e.name == "TaskAssigned" and e.prover == self.me:
                        runtime.emit(
                            log,
                            "agent.locked",
                            task=key.split(":", 1)[1],
                            slot=e.slot,
                            price=e.price,
                            deadline=e.deadline,
                            tx=outcome.sent.tx_hash,
                        )
            if not key.startswith(("prove:", "race:")):
                if outcome.kind == "reverted":
                    runtime.emit(
                        log,
                        "agent.refused",
                        fn=outcome.sent.fn,
                        key=key,
                        tx=outcome.sent.tx_hash,
                        reason=outcome.reason,
                    )
                continue
            row = self.store.get(key)
            if row is None:
                continue
            if outcome.kind == "mined":
                proven = [e for e in outcome.events if e.name == "TaskProven" and e.prover == self.me]
                if proven:
                    e = proven[0]
                    self._paid(key, row["task_id"], e.slot, e.paid, outcome.sent.tx_hash)
            elif outcome.kind == "reverted":
                state = LOST if _is_lost(outcome.reason) else FAILED
                self.store.update(key, state=state, error=outcome.reason)
                runtime.emit(
                    log,
                    "agent.refused",
                    task=row["task_id"],
                    slot=row["slot"],
                    fn=outcome.sent.fn,
                    tx=outcome.sent.tx_hash,
                    reason=outcome.reason,
                )
            elif outcome.kind == "reorged" and row["state"] == DONE_:
                self.store.update(key, state=SUBMITTED)
            elif outcome.kind == "dropped":
                self.store.update(key, state=PROVED)

    # -------------------------------------------------------------- proving (workers)

    def _work(self, work: Work, needs: float) -> None:
        try:
            result = self._prove_with_retries(work, needs)
            if result is not None:
                self._submit(work, result[0], result[1])
        except runtime.RPC_ERRORS as error:
            # The node failed mid-way; the row says where it got to (proving or
            # proved) and the main loop takes it up again.
            self._on_error("rpc")
            runtime.emit(
                log,
                "agent.rpc_error",
                logging.WARNING,
                **work.fields(),
                error=f"{type(error).__name__}: {error}",
            )
        except Exception as error:  # a bug: log it, leave the row for the main loop
            runtime.emit(
                log,
                "agent.error",
                logging.ERROR,
                **work.fields(),
                error=f"{type(error).__name__}: {error}"[:300],
                trace=traceback.format_exc(limit=8),
            )
        finally:
            with self.lock:
                self.busy.discard(work.key)
                self.running[work.market_id] -= 1

    def _prove_with_retries(self, work: Work, needs: float) -> tuple[bytes, list[int]] | None:
        """Prove, retrying a failed backend with backoff while the deadline allows;
        None when it gave up (said so) or is stopping."""
        try:
            circuit = self._circuit(work.market_id)
            backend = self.backends.for_market(work.market_id)
            state = TaskState(work.task_id, work.terms, work.prover_input, work.input_uri, 0, 0, 0, 0)
            inputs = task_inputs(state, circuit)
        except (ClientError, CircuitError, BackendError) as error:
            self.metrics.counter("proving_failures_total", "Failed proving attempts", reason="inputs")
            self._give_up(work, chain_time(self.web3), needs, str(error))
            return None
        attempt = (self.store.get(work.key) or {}).get("attempts", 0)
        while True:
            attempt += 1
            self.store.update(work.key, attempts=attempt)
            runtime.emit(
                log,
                "agent.proving",
                **work.fields(),
                attempt=attempt,
                expected_s=round(needs - self.settings.margin, 3),
            )
            started = time.monotonic()
            try:
                result = self._run_backend(backend, circuit, inputs, work.market_id)
                time.sleep(self.settings.simulate.prove_seconds)  # slower hardware (simulations)
            except (ClientError, CircuitError) as error:  # inputs the circuit refuses: no retry helps
                self.metrics.counter("proving_failures_total", "Failed proving attempts", reason="inputs")
                self.store.update(work.key, error=str(error))
                self._give_up(work, chain_time(self.web3), needs, str(error))
                return None
            except Exception as error:
                reason = "backend" if isinstance(error, BackendError) else type(error).__name__
                message = (
                    f"{error}" if isinstance(error, BackendError) else f"{type(error).__name__}: {error}"
                )
                self.metrics.counter("proving_failures_total", "Failed proving attempts", reason=reason)
                self.store.update(work.key, error=message[:1000])
                delay = float(2 ** (attempt - 1))
                now = chain_time(self.web3)
                retry = attempt <= self.settings.retries and now + delay + needs <= work.deadline
                runtime.emit(
                    log,
                    "agent.proving_failed",
                    logging.WARNING,
                    **work.fields(),
                    attempt=attempt,
                    error=message[:500],
                    retry_in=delay if retry else None,
                )
                if not retry:
                    why = (
                        f"the backend failed {attempt} times"
                        if attempt > self.settings.retries
                        else "no time left for another attempt"
                    )
                    self._give_up(work, now, needs, f"{why}: {message[:300]}")
                    return None
                if self.stop.wait(delay):  # stopping: leave it for the next start
                    self.store.update(work.key, state=QUEUED)
                    return None
                continue
            seconds = time.monotonic() - started
            average = self.store.measured(work.market_id, seconds)
            self.store.update(
                work.key,
                state=PROVED,
                proof=result.proof,
                public_inputs=json.dumps([str(v) for v in result.public_inputs]),
                seconds=seconds,
                error=None,
            )
            self.metrics.gauge(
                "last_proving_seconds",
                "Wall time of the last proof",
                round(seconds, 6),
                market=work.market_id,
            )
            runtime.emit(
                log,
                "agent.proved",
                **work.fields(),
                ms=round(seconds * 1000),
                backend=result.backend,
                expected_s=round(average, 3),
            )
            return result.proof, result.public_inputs

    def _run_backend(
        self, backend: ProvingBackend, circuit: Circuit, inputs: Mapping[str, int], market_id: int
    ):
        """A backend's first proof of a circuit loads its keys: one thread at a time."""
        mark = (market_id, id(backend))
        if mark in self.warm:
            return backend.prove(circuit, inputs, self.me)
        with self.warm_lock:
            result = backend.prove(circuit, inputs, self.me)
            self.warm.add(mark)
            return result

    def _circuit(self, market_id: int) -> Circuit:
        if market_id not in self.circuits:
            self.circuits[market_id] = circuit_of(self.client, market_id)
        return self.circuits[market_id]

    def _check(self, market_id: int) -> ProofCheck:
        """For command backends: the market's verifier, asked by eth_call, must accept
        the proof before it is kept (a rejected one counts as a failed attempt)."""

        def check(proof: bytes, public_inputs: list[int]) -> bool:
            try:
                verifier = self.client.market(market_id).verifier
                contract = self.web3.eth.contract(address=Web3.to_checksum_address(verifier), abi=VERIFY_ABI)
                return bool(contract.functions.verify(public_inputs, proof).call())
            except runtime.RPC_ERRORS:
                # The node is not answering: keep the proof. Submitting simulates the
                # registry's call first, which checks it again before anything is sent.
                return True

        return check

    # -------------------------------------------------------------- submitting

    def _submit_stored(self, work: Work, row: dict) -> None:
        """A proof kept from before (a restart, or a node that failed at submit)."""
        if row["proof"] is None:
            self.store.update(work.key, state=QUEUED)
            return
        public = [int(v) for v in json.loads(row["public_inputs"])]
        with self.lock:
            if work.key in self.busy:
                return
            self.busy.add(work.key)
        try:
            self._submit(work, bytes(row["proof"]), public)
        finally:
            with self.lock:
                self.busy.discard(work.key)

    def _submit(self, work: Work, proof: bytes, public_inputs: list[int]) -> None:
        if work.race:
            status = self.client.call("task_status", work.task_id)
            if status[0] == 0:  # open
                self.store.update(work.key, state=LOST, error="no open slot left")
                runtime.emit(
                    log,
                    "agent.race_lost",
                    task=_hex(work.task_id),
                    proven=status[2],
                    redundancy=work.terms.redundancy,
                )
                return
        self.settings.simulate.wait()  # latency to the chain (simulations)
        try:
            sent = self.outbox.send(
                "prove",
                work.terms.as_tuple(),
                work.assignment.as_tuple(),
                public_inputs,
                proof,
                keys=[work.key],
            )
        except Refused as refused:
            lost = _is_lost(refused.reason)
            self.store.update(work.key, state=LOST if lost else FAILED, error=refused.reason)
            if work.race and lost:
                runtime.emit(log, "agent.race_lost", task=_hex(work.task_id), reason=refused.reason)
            else:
                runtime.emit(log, "agent.refused", **work.fields(), fn="prove", reason=refused.reason)
            return
        self.store.update(work.key, state=SUBMITTED, tx=sent.tx_hash)
        self.metrics.counter("proofs_submitted_total", "Proofs sent to the registry")
        runtime.emit(log, "agent.submitted", **work.fields(), tx=sent.tx_hash, nonce=sent.nonce)

    # -------------------------------------------------------------- giving up

    def _give_up(self, work: Work, now: int, needs: float, reason: str) -> None:
        """Decline a frontend's assignment while the grace period runs (no penalty), else
        say why it will not be proven and leave the slot (to be slashed). A slot the
        prover took itself (a DUTCH lock, a race commit) cannot be declined."""
        left = work.deadline - now
        numbers = {"needs_s": round(needs, 3), "left_s": left, "reason": reason}
        declinable = work.decline_until is not None and _from_frontend(work.assignment)
        if declinable and now <= work.decline_until:
            self.settings.simulate.wait()  # latency to the chain (simulations)
            try:
                sent = self.outbox.send(
                    "decline",
                    work.terms.as_tuple(),
                    work.assignment.as_tuple(),
                    keys=[decline_key(work.task_id, work.assignment.slot)],
                )
            except Refused as refused:
                reason = f"{reason}; the registry refused the decline: {refused.reason}"
                numbers["reason"] = reason
            else:
                self.store.update(work.key, state=GAVE_UP, error=reason, tx=sent.tx_hash)
                self.metrics.counter("declined_total", "Assignments declined within the grace period")
                runtime.emit(log, "agent.declined", **work.fields(), tx=sent.tx_hash, **numbers)
                return
        if self.store.get(work.key) is not None:
            self.store.update(work.key, state=GAVE_UP, error=reason)
        self.metrics.counter("gave_up_total", "Work given up: deadline cannot be met")
        runtime.emit(
            log, "agent.give_up", logging.WARNING, **work.fields(), deadline=work.deadline, **numbers
        )

    # -------------------------------------------------------------- withdrawing

    def _maybe_withdraw(self, in_flight: set[str]) -> None:
        if WITHDRAW_KEY in in_flight:
            return
        asked, threshold = self.withdraw_asked, self.settings.withdraw_at
        balance = self.mirror.balance(self.me)
        if not asked and (threshold is None or balance < threshold):
            return
        self.withdraw_asked = False
        if balance == 0:
            runtime.emit(log, "agent.withdraw", amount=0, tx=None, reason="nothing to withdraw")
            return
        self.settings.simulate.wait()  # latency to the chain (simulations)
        try:
            sent = self.outbox.send("withdraw", keys=[WITHDRAW_KEY])
        except Refused as refused:
            runtime.emit(log, "agent.refused", fn="withdraw", reason=refused.reason)
            return
        runtime.emit(
            log,
            "agent.withdraw",
            amount=balance,
            amount_eth=format_ether(balance),
            tx=sent.tx_hash,
            reason="asked (SIGUSR1)" if asked else "threshold",
        )


class AuctionError(RuntimeError):
    """An auction frontend's answer the agent cannot use."""


@dataclass(frozen=True)
class Auction:
    """One open auction as an auction frontend's `GET /auctions` lists it (the fields the
    agent uses; the task's terms themselves are read from the mirror)."""

    task_id: bytes
    round: int
    market_id: int
    mechanism_id: int
    max_reward: int
    collateral: int
    closes_at: int
    min_expiry: int = 0  # the least expiry the frontend takes, if it says

    @classmethod
    def from_json(cls, entry: Any) -> Auction:
        if not isinstance(entry, dict):
            raise TypeError("not a JSON object")
        return cls(
            parse_task_id(str(entry["task_id"])),
            _integer(entry.get("round", 0)),
            _integer(entry["market_id"]),
            _integer(entry["mechanism_id"]),
            _integer(entry["max_reward"]),
            _integer(entry["collateral"]),
            _integer(entry["closes_at"]),
            _integer(entry.get("min_expiry", 0)),
        )


def _integer(value: Any) -> int:
    """An integer from JSON: a number or a decimal string (wei amounts come as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not an integer")
    number = int(value)
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number


def _retry_after(response: requests.Response) -> float:
    """Seconds a server asked to wait (Retry-After in seconds), within reason."""
    try:
        seconds = float(response.headers.get("Retry-After", 1))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.5), MAX_AUCTION_BACKOFF) if math.isfinite(seconds) else 1.0


def _detail(response: requests.Response) -> str:
    """What a server said about a refusal: its JSON "detail", else its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return (detail if isinstance(detail, str) else json.dumps(detail, default=str))[:300]
    return json.dumps(body, default=str)[:300]


def _is_lost(reason: str) -> bool:
    return any(part in reason for part in LOST_REASONS)


def _hex(task_id: bytes) -> str:
    return "0x" + bytes(task_id).hex()


def _from_frontend(assignment: Assignment) -> bool:
    """A frontend made it (it may be declined), not the prover itself (a DUTCH lock, a
    race commit: its frontend is the zero address)."""
    return int(assignment.frontend, 16) != 0


# ------------------------------------------------------------------ entry points


def run_agent(
    rpc: str,
    deployment_file: str | Path,
    key: str,
    db: str | Path,
    settings: AgentSettings | None = None,
    stop: runtime.Stopper | None = None,
) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the exit code. Raises ClientError (and
    the other errors a person can act on) for what is wrong before it starts."""
    settings = settings or AgentSettings()
    client = runtime.connect(rpc, deployment_file, key)
    return Agent(client, db, settings, stop or runtime.Stopper()).run()


# Errors that mean "the command line or the setup is wrong": one line, exit code 1.
SETUP_ERRORS = (ClientError, DeploymentError, CircuitError, BackendError, MirrorError)


def agent_options(function: Callable) -> Callable:
    """The agent's options, shared by `python -m provingmarket.agent.agent` and `ape run agent`."""
    options = [
        click.option(
            "--db", required=True, help="SQLite file for the mirror, the outbox and the agent's work."
        ),
        click.option(
            "--backend",
            default="auto",
            show_default=True,
            help="groth16py, snarkjs, or a JSON backend configuration (for every market, or per market id).",
        ),
        click.option("--poll", type=float, default=0.5, show_default=True, help="Seconds between rounds."),
        click.option(
            "--confirmations", type=int, default=0, show_default=True, help="Blocks the mirror trails."
        ),
        click.option(
            "--metrics-port", type=int, default=None, help="Serve /metrics here (0: any free port)."
        ),
        click.option(
            "--withdraw-at", default=None, metavar="ETH", help="Withdraw earnings once they reach this."
        ),
        click.option(
            "--race/--no-race",
            default=True,
            show_default=True,
            help="Enter OPEN_RACE tasks whose reward pays the floor.",
        ),
        click.option(
            "--race-min-reward",
            default="0",
            metavar="ETH",
            help="Least reward of a race worth entering (the floor still applies).",
        ),
        click.option(
            "--dutch/--no-dutch",
            default=True,
            show_default=True,
            help="Lock DUTCH tasks once their rising price reaches the floor.",
        ),
        click.option(
            "--auction",
            multiple=True,
            metavar="URL",
            help="An auction frontend's API base URL to bid at (repeatable).",
        ),
        click.option(
            "--cost-per-second",
            default="0",
            metavar="ETH",
            show_default=True,
            help="What a second of proving costs (times the expected proving time).",
        ),
        click.option(
            "--risk-rate",
            default="0",
            metavar="FRACTION",
            show_default=True,
            help="Expected loss to a slash, as a fraction of the collateral at risk.",
        ),
        click.option(
            "--price-margin",
            default="0",
            metavar="FRACTION",
            show_default=True,
            help="Profit asked on top of the cost (0.1: ten per cent).",
        ),
        click.option(
            "--retries", type=int, default=3, show_default=True, help="Retries of a failed backend."
        ),
        click.option(
            "--trust-verifier",
            "trust_verifier",
            multiple=True,
            metavar="0xHASH",
            help=(
                "The code hash (0x and 64 hex digits) of a custom market's verifier you reviewed "
                "(repeatable). A custom market's verifier was not deployed by the registry, so "
                "what it accepts may change: without its hash here the agent takes no work there."
            ),
        ),
        click.option(
            "--simulate",
            default=None,
            metavar="JSON",
            help=(
                "For simulations only: makes this real agent behave like slower, less reliable "
                "hardware; the proofs stay real. A JSON object: "
                '{"prove_seconds": extra seconds per proof, "failure_rate": share of work (0 to 1) '
                "silently never proven nor declined, "
                '"latency": seconds before each transaction, "seed": of the failure draws}'
            ),
        ),
        click.option(
            "--margin",
            type=float,
            default=2.0,
            show_default=True,
            help="Seconds kept before a deadline (the price's margin is --price-margin).",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            default="INFO",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rpc", required=True, help="The node's RPC URL.")
@click.option(
    "--deployment", required=True, help="The deployment record (as `ape run operator deploy` writes it)."
)
@click.option("--key-env", required=True, help="Environment variable holding the prover's private key.")
@agent_options
def command(rpc: str, deployment: str, key_env: str, db: str, log_level: str, **options: Any) -> int:
    """Prove what the registry assigns to one prover, race open races, lock DUTCH tasks
    and bid in auctions that pay its cost model's floor; decline tasks whose posted
    inputs nobody can prove and work in custom markets not trusted (--trust-verifier);
    submit before the deadlines, withdraw earnings; resumes where it stopped."""
    runtime.configure_logging(log_level)
    try:
        settings = settings_from_options(**options)
        key = runtime.key_from_env(key_env)
        return run_agent(rpc, deployment, key, db, settings)
    except SETUP_ERRORS as error:
        fail(str(error))
    except sqlite3.Error as error:
        fail(f"--db {db}: {error}")


def main(argv: list[str] | None = None) -> None:
    try:
        code = command.main(args=argv, prog_name="python -m provingmarket.agent.agent", standalone_mode=False)
    except click.ClickException as error:
        fail(error.format_message())
    except click.exceptions.Abort:
        fail("aborted")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()


__all__ = [
    "Agent",
    "AgentSettings",
    "AgentStore",
    "Backends",
    "Work",
    "agent_options",
    "run_agent",
    "settings_from_options",
]
