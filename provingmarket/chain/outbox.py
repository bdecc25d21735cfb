"""Transactions a keeper or a prover agent sends, kept on disk before they leave, so a
restart never sends the same work twice and never forgets what it sent; priced as a real
chain prices them (EIP-1559), and replaced when the chain moves past them.

    outbox = Outbox("outbox.sqlite", client, identity=identity, max_fee_per_gas=50 * GWEI)
    sent = outbox.send("assign_batch", items, keys=["assign:0xtask:0xprover", ...])
    for outcome in outbox.settle(confirmed=mirror.cursor):   # each round
        ...                                                  # mined, reorged away, dropped
    busy = outbox.in_flight_keys()                           # work not to decide again
    outbox.spent()                                           # fees paid so far

How it keeps its promises
-------------------------
- **Written before sent.** `send` simulates the call (a refusal raises `Refused` with the
  registry's reason, nothing signed), signs it with the next nonce, stores the signed bytes
  with the keys of the work it carries (state `pending`) in the same SQLite file as the
  mirror, commits, and only then hands it to the node. Killed at any moment, the process
  finds on restart either no row (nothing was sent) or the exact transaction, which it
  rebroadcasts as it is: the same bytes, the same hash, the same nonce, so it can be mined
  once at most.
- **Nonces.** The next nonce is the larger of the node's pending count and one past the
  newest row still pending: the node may have lost the process's queued transactions
  (restarted, or a reorg dropped their block); `settle` puts them back.
- **Settling.** Each round, `settle(confirmed)` asks the node about every row not yet final:
  mined (`mined`, reported once with its receipt and decoded events; `done` or `reverted`
  once its block is at or below `confirmed`, the block the caller's view of the chain has
  reached); gone from a block that a reorg dropped (back to `pending`, reported, and
  rebroadcast); unknown to the node with its nonce not yet used (rebroadcast); not mined
  after `replace_after` seconds (`replaced`, below); or unknown with the nonce taken by
  another transaction (`dropped`, its keys free again).
- **In flight.** The keys of rows `pending` or `mined` are work someone already sent and
  the caller's view does not show yet: a keeper leaves them out of its next decisions and
  applies their effect to its snapshot.

Fees
----
- **Price.** From the node's fee history (`eth_feeHistory`, the last FEE_BLOCKS blocks):
  the tip is the median, over the blocks that carried transactions, of each block's
  TIP_PERCENTILE-th percentile tip (the node's `eth_maxPriorityFeePerGas` when no block
  did); the maximum fee is twice the next block's base fee plus the tip, which stays above
  the base fee through six full blocks in a row (+12.5% each). A transaction pays the base
  fee plus the tip, never its maximum.
- **Replacement.** A row not mined `replace_after` seconds after its newest attempt (default
  REPLACE_AFTER, three 12-second blocks) is signed again: the same nonce, the same call,
  both fees raised by BUMP (+12.5%; nodes take a replacement at +10%) or to the market's
  price if that is higher. Every attempt is kept (table `attempts`); the row keeps the keys
  of its work, in flight until one attempt is final. `settle` looks up every attempt's
  receipt, reports the one mined once (`Sent.tx_hash` is then its hash) and marks the
  others superseded: at most one can be mined, since they share the nonce.
- **Cap.** With `max_fee_per_gas`, nothing is signed above it: a price above the cap is
  signed at the cap, and a replacement the cap leaves no room for (less than the nodes'
  +10%) is not made; the row waits for the market to come back. The first time the market
  is above the cap one warning line (`outbox.fee_cap`, with the cap and the price) and the
  counter `fee_cap_hits_total`; the gauge `fee_capped` is 1 until a price is back under it.
- **Spending.** `spent()` sums what mined transactions paid (gas used x effective gas
  price, from their receipts), reverted ones included.

With an optional `metrics` (provingmarket.runtime.metrics.Metrics): counters
`transactions_replaced_total`, `fee_cap_hits_total`, the gauge `fee_capped`, and, where the
metrics can `observe`, `time_to_mined_seconds` (from the first attempt to the receipt).

Storage and chain
-----------------
Its tables carry schema version (`migrate(db, "outbox", MIGRATIONS)`): version 1 is the
table written before fees were managed, version 2 adds the attempts. With `identity`, the
file records the chain it belongs to and refuses another (`WrongChain`), and before
broadcasting anything the outbox checks that the node is still that chain (a devnet
restarted under it is not): a signed transaction is never sent to another chain.

Thread-safe (one lock around the database and the nonce): the prover agent submits from
its proving threads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from provingmarket.chain.client import (
    GAS_MARGIN,
    ClientError,
    Event,
    Refused,
    RegistryClient,
    reported,
    revert_reason,
)
from provingmarket.chain.database import bind_chain, connect, marks, migrate, transaction
from provingmarket.chain.identity import ChainIdentity, WrongChain

log = logging.getLogger("provingmarket.chain.outbox")

PENDING, MINED, DONE, REVERTED, DROPPED = "pending", "mined", "done", "reverted", "dropped"
OPEN_STATES = (PENDING, MINED)
# An attempt (one signed transaction carrying a row's work): sent (to the node, as far as
# the outbox knows), mined, or superseded (another attempt with its nonce was mined).
SENT, SUPERSEDED = "sent", "superseded"

FEE_BLOCKS = 10  # blocks of fee history a price is read from
TIP_PERCENTILE = 50  # each block's tip: the median paid in it
REPLACE_AFTER = 36.0  # seconds a transaction may wait before it is replaced: three 12 s blocks
BUMP = (1125, 1000)  # a replacement's fees: +12.5%
NODE_BUMP = (110, 100)  # the least raise a node takes as a replacement (geth, anvil): +10%

# Version 1: the table as it was before fees were managed (a file written then is read as
# it is). Kept byte for byte: migration 1 of every existing file.
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    tx_hash TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    fn TEXT NOT NULL,
    keys TEXT NOT NULL,          -- JSON list: the work this transaction carries
    raw BLOB NOT NULL,           -- the signed transaction, rebroadcast as it is
    state TEXT NOT NULL,
    block INTEGER,
    block_hash TEXT,
    gas_used INTEGER,
    sent_at REAL NOT NULL,
    broadcasts INTEGER NOT NULL DEFAULT 1,
    note TEXT
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state);
"""

# Version 2: every signed attempt of a row (its first included: the row's tx_hash), which
# one was mined, and what it paid.
ATTEMPTS = """
ALTER TABLE outbox ADD COLUMN attempt TEXT;      -- the attempt mined (NULL until one is)
ALTER TABLE outbox ADD COLUMN fee_paid INTEGER;  -- wei: gas used x effective gas price
CREATE TABLE IF NOT EXISTS attempts (
    tx_hash TEXT PRIMARY KEY,
    work TEXT NOT NULL,          -- the outbox row (its tx_hash: the first attempt's)
    nonce INTEGER NOT NULL,
    raw BLOB NOT NULL,
    max_fee INTEGER NOT NULL,    -- wei per gas
    tip INTEGER NOT NULL,        -- wei per gas
    sent_at REAL NOT NULL,
    state TEXT NOT NULL          -- sent, mined, superseded
);
CREATE INDEX IF NOT EXISTS attempts_work ON attempts (work);
"""


def _add_attempts(db: sqlite3.Connection) -> None:
    """Migration 2: the attempts table, each existing row its own first attempt."""
    for statement in ATTEMPTS.split(";"):
        if statement.strip():
            db.execute(statement)
    for row in db.execute("SELECT tx_hash, nonce, raw, state, sent_at FROM outbox").fetchall():
        fees = fees_of(bytes(row["raw"]))
        state = SENT if row["state"] in (PENDING, DROPPED) else MINED
        db.execute(
            "INSERT INTO attempts (tx_hash, work, nonce, raw, max_fee, tip, sent_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["tx_hash"],
                row["tx_hash"],
                row["nonce"],
                row["raw"],
                fees.max_fee,
                fees.tip,
                row["sent_at"],
                state,
            ),
        )
        if state == MINED:
            db.execute("UPDATE outbox SET attempt = tx_hash WHERE tx_hash = ?", (row["tx_hash"],))


MIGRATIONS = (SCHEMA, _add_attempts)


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees, wei per gas."""

    max_fee: int
    tip: int

    def fields(self) -> dict[str, int]:
        return {"maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.tip}


@dataclass(frozen=True)
class Spent:
    """What mined transactions paid in fees."""

    wei: int
    transactions: int


@dataclass(frozen=True)
class Sent:
    tx_hash: str  # the attempt mined; until one is, the newest
    nonce: int
    fn: str
    keys: tuple[str, ...]
    state: str
    block: int | None = None
    gas_used: int | None = None
    sent_at: float = 0.0
    broadcasts: int = 1
    work: str = ""  # the row: its first attempt's hash
    attempts: int = 1
    max_fee: int = 0  # of the attempt named by tx_hash
    tip: int = 0
    fee_paid: int | None = None  # wei, once mined


@dataclass(frozen=True)
class Outcome:
    """Something `settle` learned about a sent transaction."""

    sent: Sent
    kind: str  # mined, reverted, reorged, dropped, rebroadcast, replaced
    events: tuple[Event, ...] = field(default=(), repr=False)
    reason: str = ""


@dataclass
class _Round:
    """What one `settle` round learned once for all its rows."""

    used: int | None = None  # the node's count of the account's mined transactions
    checked: bool = False  # the node is still the file's chain


class Outbox:
    def __init__(
        self,
        path: str | sqlite3.Connection,
        client: RegistryClient,
        gas_margin: float = GAS_MARGIN,
        *,
        identity: ChainIdentity | None = None,
        replace_after: float = REPLACE_AFTER,
        max_fee_per_gas: int | None = None,
        metrics: Any = None,
    ):
        if client.signer is None or not hasattr(client.signer, "sign_transaction"):
            raise ClientError("sending needs an account whose key this process holds")
        if replace_after <= 0:
            raise ClientError(f"replace_after must be a positive number of seconds, not {replace_after}")
        if max_fee_per_gas is not None and max_fee_per_gas <= 0:
            raise ClientError(f"the fee cap must be a positive number of wei per gas, not {max_fee_per_gas}")
        self.client = client
        self.signer = client.signer
        self.web3: Web3 = client.web3
        self.me = client.signer.address
        self.gas_margin = gas_margin
        self.replace_after = replace_after
        self.max_fee_per_gas = max_fee_per_gas
        self.metrics = metrics
        self.identity = identity
        self.capped = False  # the market's price is above the cap (warned once)
        self.lock = threading.RLock()
        if isinstance(path, sqlite3.Connection):
            self.db = path
            self.db.row_factory = sqlite3.Row
            self.where = "the outbox's database"
        else:
            self.db = connect(str(path), threads=True)
            self.where = str(path)
        migrate(self.db, "outbox", MIGRATIONS, self.where)
        if identity is not None:
            bind_chain(self.db, identity, self.where)
        self.chain_id = self.web3.eth.chain_id

    # -------------------------------------------------------------- sending

    def send(
        self, fn: str, *args: Any, keys: Iterable[str] = (), value: int = 0, gas: int | None = None
    ) -> Sent:
        """Simulate, sign, store, send. Raises `Refused` with the registry's reason if the
        call would revert (nothing stored or sent)."""
        call = getattr(self.client.contract.functions, fn)(*args)
        if gas is None:
            try:
                # Against the pending block: the one the transaction will be mined in (its
                # timestamp decides deadlines and windows).
                gas = int(call.estimate_gas({"from": self.me, "value": value}, "pending") * self.gas_margin)
            except (ContractLogicError, ValueError, Web3RPCError) as error:
                raise Refused(revert_reason(error), fn) from None
        keys = tuple(keys)
        with self.lock:
            self._check_chain()
            nonce = self._next_nonce()
            fees = self._within_cap(self.market_fees())
            tx = {
                "from": self.me,
                "to": self.client.address,
                "value": value,
                "data": call._encode_transaction_data(),
                "gas": gas,
                "nonce": nonce,
                "chainId": self.chain_id,
                **fees.fields(),
            }
            raw = self.signer.sign_transaction(tx)
            tx_hash = Web3.to_hex(Web3.keccak(raw))
            now = time.time()
            # The same bytes again (a reorg undid the first one and the decision came out
            # the same): one transaction, back to pending.
            with transaction(self.db):
                self.db.execute(
                    "INSERT INTO outbox (tx_hash, nonce, fn, keys, raw, state, sent_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tx_hash) DO UPDATE SET "
                    "state = excluded.state, block = NULL, block_hash = NULL, attempt = NULL, "
                    "fee_paid = NULL, broadcasts = broadcasts + 1",
                    (tx_hash, nonce, fn, json.dumps(keys), raw, PENDING, now),
                )
                self._add_attempt(tx_hash, tx_hash, nonce, raw, fees, now)
            self._broadcast(tx_hash, raw)
            return self._row(tx_hash)

    def _add_attempt(self, tx_hash: str, work: str, nonce: int, raw: bytes, fees: Fees, now: float) -> None:
        self.db.execute(
            "INSERT INTO attempts (tx_hash, work, nonce, raw, max_fee, tip, sent_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tx_hash) DO UPDATE SET "
            "work = excluded.work, sent_at = excluded.sent_at, state = excluded.state",
            (tx_hash, work, nonce, raw, fees.max_fee, fees.tip, now, SENT),
        )

    def _next_nonce(self) -> int:
        node = self.web3.eth.get_transaction_count(self.me, "pending")
        row = self.db.execute(
            f"SELECT MAX(nonce) FROM outbox WHERE state IN ({marks(OPEN_STATES)})", OPEN_STATES
        ).fetchone()
        local = -1 if row[0] is None else row[0]
        return max(node, local + 1)

    def _broadcast(self, tx_hash: str, raw: bytes) -> None:
        try:
            self.web3.eth.send_raw_transaction(raw)
        except (ValueError, Web3RPCError) as error:
            # "already known", "nonce too low", "replacement underpriced", "max fee per gas
            # less than block base fee": the node has it, something took its nonce, or the
            # chain costs more now; `settle` finds out which, and replaces it if it waits.
            _emit(logging.INFO, "outbox.broadcast_refused", tx=tx_hash, reason=revert_reason(error))

    def _check_chain(self) -> None:
        """Before anything signed leaves: the node is still the chain the file belongs to."""
        if self.identity is not None and not self.identity.still_here(self.web3):
            raise WrongChain(
                f"{self.where} belongs to {self.identity.describe()}, and the node is no longer that chain "
                f"(block {self.identity.deploy_block} differs); its signed transactions are not sent: "
                "point the process at the node they were made for, or start afresh for this chain"
            )

    # -------------------------------------------------------------- fees

    def market_fees(self) -> Fees:
        """What a transaction sent now offers: the tip from the last FEE_BLOCKS blocks'
        fee history and twice the next block's base fee plus that tip."""
        try:
            history = self.web3.eth.fee_history(FEE_BLOCKS, "latest", [TIP_PERCENTILE])
        except (ValueError, Web3RPCError):  # a node without eth_feeHistory
            base = int(self.web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            tip = int(self.web3.eth.max_priority_fee)
            return Fees(2 * base + tip, tip)
        base = int((history.get("baseFeePerGas") or [0])[-1])  # the next block's
        rewards = history.get("reward") or []
        tips = sorted(
            int(reward[0])
            for reward, used in zip(rewards, history.get("gasUsedRatio") or [], strict=False)
            if reward and used
        )
        tip = tips[len(tips) // 2] if tips else int(self.web3.eth.max_priority_fee)
        return Fees(2 * base + tip, tip)

    def _within_cap(self, fees: Fees, market: Fees | None = None) -> Fees:
        """`fees` held to the cap. Whether the market (`market`, else `fees`) is above the
        cap is said once when it goes above, counted, and said again when it comes back."""
        cap = self.max_fee_per_gas
        if cap is None:
            return fees
        price = (market or fees).max_fee
        if price > cap:
            self._cap_hit(price)
        else:
            self._uncapped()
        return Fees(min(fees.max_fee, cap), min(fees.tip, cap))

    def _cap_hit(self, price: int) -> None:
        if self.capped:
            return
        self.capped = True
        _emit(
            logging.WARNING,
            "outbox.fee_cap",
            cap=self.max_fee_per_gas,
            price=price,
            note="the market's fee is above the cap: nothing is signed above it, waiting transactions "
            "are not raised further; raise max_fee_per_gas to pay more",
        )
        if self.metrics is not None:
            self.metrics.counter("fee_cap_hits_total", "Times the market's fee rose above the fee cap")
            self.metrics.gauge("fee_capped", "1 while the market's fee is above the fee cap", 1)

    def _uncapped(self) -> None:
        if not self.capped:
            return
        self.capped = False
        _emit(logging.INFO, "outbox.fee_cap_cleared", cap=self.max_fee_per_gas)
        if self.metrics is not None:
            self.metrics.gauge("fee_capped", "1 while the market's fee is above the fee cap", 0)

    def _raised(self, old: Fees) -> Fees | None:
        """A replacement's fees: both raised by BUMP, or the market's if higher, within the
        cap; None if the cap leaves less than the nodes' minimum raise."""
        market = self.market_fees()
        tip = max(_times(old.tip, BUMP), market.tip)
        wanted = Fees(max(_times(old.max_fee, BUMP), market.max_fee, tip), tip)
        fees = self._within_cap(wanted, market)
        if fees.max_fee >= _times(old.max_fee, NODE_BUMP) and fees.tip >= _times(old.tip, NODE_BUMP):
            return fees
        return None

    def _replace(self, row: sqlite3.Row, newest: sqlite3.Row, now: float) -> Outcome | None:
        """Sign the row's call again at its nonce with raised fees, store it, send it."""
        fees = self._raised(Fees(newest["max_fee"], newest["tip"]))
        if fees is None:
            return None
        tx = unsigned(bytes(newest["raw"]))
        tx.update(fees.fields())
        raw = self.signer.sign_transaction(tx)
        tx_hash = Web3.to_hex(Web3.keccak(raw))
        self._add_attempt(tx_hash, row["tx_hash"], row["nonce"], raw, fees, now)
        self.db.execute("UPDATE outbox SET broadcasts = broadcasts + 1 WHERE tx_hash = ?", (row["tx_hash"],))
        self._broadcast(tx_hash, raw)
        if self.metrics is not None:
            self.metrics.counter("transactions_replaced_total", "Transactions sent again with higher fees")
        return Outcome(self._row(row["tx_hash"]), "replaced", reason=f"replaces {newest['tx_hash']}")

    # -------------------------------------------------------------- settling

    def settle(self, confirmed: int) -> list[Outcome]:
        """Look up every transaction not yet final; `confirmed` is the newest block the
        caller's view of the chain includes."""
        outcomes: list[Outcome] = []
        with self.lock:
            rows = self.db.execute(
                f"SELECT * FROM outbox WHERE state IN ({marks(OPEN_STATES)}) ORDER BY nonce", OPEN_STATES
            ).fetchall()
            round_ = _Round()
            for row in rows:
                attempts = self._attempts(row["tx_hash"])
                found = self._mined_attempt(row, attempts)
                if found is not None:
                    outcomes += self._settle_mined(row, *found, confirmed)
                    continue
                if row["state"] == MINED:  # its block is gone
                    self._set(row["tx_hash"], PENDING, None, None)
                    outcomes.append(Outcome(self._row(row["tx_hash"]), "reorged"))
                outcomes += self._settle_waiting(row, attempts, round_)
        for outcome in outcomes:
            fees = {"max_fee": outcome.sent.max_fee, "tip": outcome.sent.tip}
            _emit(
                logging.INFO,
                f"outbox.{outcome.kind}",
                tx=outcome.sent.tx_hash,
                fn=outcome.sent.fn,
                nonce=outcome.sent.nonce,
                block=outcome.sent.block,
                **(fees if outcome.kind == "replaced" else {}),
                **({"reason": outcome.reason} if outcome.reason else {}),
            )
        return outcomes

    def _settle_mined(self, row: sqlite3.Row, attempt: str, receipt: Any, confirmed: int) -> list[Outcome]:
        """One of the row's attempts is in a block: reported once (again if the block or
        the attempt changed), final once the caller's view reaches its block."""
        work, outcomes = row["tx_hash"], []
        block, block_hash = receipt["blockNumber"], Web3.to_hex(receipt["blockHash"])
        ok = receipt["status"] == 1
        if row["state"] == PENDING or row["block_hash"] != block_hash or row["attempt"] != attempt:
            self._mined(row, attempt, receipt)
            events = tuple(self.client.receipt_events(receipt)) if ok else ()
            reason = "" if ok else self._revert_reason(attempt, receipt)
            outcomes.append(Outcome(self._row(work), "mined" if ok else "reverted", events, reason))
        if block <= confirmed:
            self._set(work, DONE if ok else REVERTED, block, block_hash)
        return outcomes

    def _settle_waiting(self, row: sqlite3.Row, attempts: list[sqlite3.Row], round_: _Round) -> list[Outcome]:
        """No attempt of the row is in a block: it waits in the node's pool, or is replaced
        (waited `replace_after`), rebroadcast (the node does not have it) or dropped (its
        nonce was used by another transaction)."""
        work, newest, now = row["tx_hash"], attempts[0], time.time()
        due = now - newest["sent_at"] >= self.replace_after
        known = any(self._known(a["tx_hash"]) for a in attempts)
        if known and not due:
            return []
        if not known:
            if round_.used is None:
                round_.used = self.web3.eth.get_transaction_count(self.me, "latest")
            if round_.used > row["nonce"]:
                if self._mined_attempt(row, attempts) is not None:
                    return []  # mined since it was looked up: the next round reports it
                self._set(work, DROPPED, None, None, note="its nonce was used by another transaction")
                return [Outcome(self._row(work), "dropped")]
        if not round_.checked:
            self._check_chain()
            round_.checked = True
        if due:
            replaced = self._replace(row, newest, now)
            if replaced is not None:
                return [replaced]
        if known:
            return []
        self.db.execute("UPDATE outbox SET broadcasts = broadcasts + 1 WHERE tx_hash = ?", (work,))
        self._broadcast(newest["tx_hash"], bytes(newest["raw"]))
        return [Outcome(self._row(work), "rebroadcast")]

    def _attempts(self, work: str) -> list[sqlite3.Row]:
        """A row's attempts, the newest first."""
        return self.db.execute(
            "SELECT * FROM attempts WHERE work = ? ORDER BY rowid DESC", (work,)
        ).fetchall()

    def _mined_attempt(self, row: sqlite3.Row, attempts: list[sqlite3.Row]) -> tuple[str, Any] | None:
        """The attempt the node has a receipt for (the one mined before first), with it."""
        hashes = [a["tx_hash"] for a in attempts]
        if row["attempt"] in hashes:
            hashes.remove(row["attempt"])
            hashes.insert(0, row["attempt"])
        for tx_hash in hashes:
            receipt = self._receipt(tx_hash)
            if receipt is not None:
                return tx_hash, receipt
        return None

    def _mined(self, row: sqlite3.Row, attempt: str, receipt: Any) -> None:
        """`attempt` is in a block: the row mined with what it paid; its other attempts superseded."""
        fee = int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice", 0) or 0)
        self._set(
            row["tx_hash"],
            MINED,
            receipt["blockNumber"],
            Web3.to_hex(receipt["blockHash"]),
            receipt["gasUsed"],
        )
        self.db.execute(
            "UPDATE outbox SET attempt = ?, fee_paid = ? WHERE tx_hash = ?", (attempt, fee, row["tx_hash"])
        )
        self.db.execute(
            "UPDATE attempts SET state = CASE WHEN tx_hash = ? THEN ? ELSE ? END WHERE work = ?",
            (attempt, MINED, SUPERSEDED, row["tx_hash"]),
        )
        if row["state"] == PENDING and self.metrics is not None and hasattr(self.metrics, "observe"):
            self.metrics.observe(
                "time_to_mined_seconds",
                "Seconds from a transaction's first attempt to its receipt",
                max(0.0, time.time() - row["sent_at"]),
            )

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.web3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound:
            return None

    def _known(self, tx_hash: str) -> bool:
        try:
            self.web3.eth.get_transaction(HexStr(tx_hash))
            return True
        except TransactionNotFound:
            return False

    def _revert_reason(self, tx_hash: str, receipt: Any) -> str:
        try:
            tx = self.web3.eth.get_transaction(HexStr(tx_hash))
            self.web3.eth.call(
                {
                    "from": self.me,
                    "to": reported(tx, "to"),
                    "data": reported(tx, "input"),
                    "value": reported(tx, "value"),
                },
                receipt["blockNumber"] - 1,
            )
        except Exception as error:
            return revert_reason(error)
        return "reverted"

    def _set(
        self,
        tx_hash: str,
        state: str,
        block: int | None,
        block_hash: str | None,
        gas_used: int | None = None,
        note: str | None = None,
    ) -> None:
        if state in (PENDING, DROPPED):  # no attempt of it is in a block (any more)
            self.db.execute("UPDATE outbox SET attempt = NULL, fee_paid = NULL WHERE tx_hash = ?", (tx_hash,))
            self.db.execute(
                "UPDATE attempts SET state = ? WHERE work = ?",
                (SENT if state == PENDING else SUPERSEDED, tx_hash),
            )
        self.db.execute(
            "UPDATE outbox SET state = ?, block = ?, block_hash = ?, gas_used = COALESCE(?, gas_used), "
            "note = COALESCE(?, note) WHERE tx_hash = ?",
            (state, block, block_hash, gas_used, note, tx_hash),
        )

    def rollback(self, fork: int) -> int:
        """A reorg replaced the blocks after `fork`: transactions final in them are open
        again, for `settle` to find mined anew, or to send again. Returns how many."""
        with self.lock:
            changed = self.db.execute(
                "UPDATE outbox SET state = ? WHERE state IN (?, ?) AND block > ?",
                (MINED, DONE, REVERTED, fork),
            ).rowcount
        if changed:
            _emit(logging.INFO, "outbox.rollback", fork=fork, reopened=changed)
        return changed

    # -------------------------------------------------------------- reading

    def in_flight(self) -> list[Sent]:
        """Sent and not final: the caller's view of the chain does not show them yet."""
        return self.rows(OPEN_STATES)

    def in_flight_keys(self) -> set[str]:
        return {key for sent in self.in_flight() for key in sent.keys}

    def rows(self, states: Sequence[str] = ()) -> list[Sent]:
        with self.lock:
            if states:
                found = self.db.execute(
                    f"SELECT tx_hash FROM outbox WHERE state IN ({marks(states)}) ORDER BY nonce",
                    tuple(states),
                ).fetchall()
            else:
                found = self.db.execute("SELECT tx_hash FROM outbox ORDER BY nonce").fetchall()
            return [self._row(r[0]) for r in found]

    def attempts(self, sent: Sent) -> list[tuple[str, str, Fees]]:
        """Every attempt of a row, the first first: (hash, state, fees)."""
        with self.lock:
            return [
                (a["tx_hash"], a["state"], Fees(a["max_fee"], a["tip"]))
                for a in reversed(self._attempts(sent.work or sent.tx_hash))
            ]

    def spent(self) -> Spent:
        """Fees paid by the transactions mined (reverted ones included), as their receipts
        say; rows mined before the outbox counted fees (schema 1) are not in it."""
        with self.lock:
            paid = [
                int(r[0])
                for r in self.db.execute(
                    "SELECT fee_paid FROM outbox WHERE fee_paid IS NOT NULL AND state IN (?, ?, ?)",
                    (MINED, DONE, REVERTED),
                )
            ]
        return Spent(sum(paid), len(paid))

    def _row(self, work: str) -> Sent:
        r = self.db.execute("SELECT * FROM outbox WHERE tx_hash = ?", (work,)).fetchone()
        attempts = self._attempts(work)
        shown = next((a for a in attempts if a["tx_hash"] == r["attempt"]), attempts[0] if attempts else None)
        return Sent(
            shown["tx_hash"] if shown is not None else r["tx_hash"],
            r["nonce"],
            r["fn"],
            tuple(json.loads(r["keys"])),
            r["state"],
            r["block"],
            r["gas_used"],
            r["sent_at"],
            r["broadcasts"],
            r["tx_hash"],
            max(1, len(attempts)),
            shown["max_fee"] if shown is not None else 0,
            shown["tip"] if shown is not None else 0,
            r["fee_paid"],
        )


def fees_of(raw: bytes) -> Fees:
    """The fees a signed transaction offers (a type 1 one's gas price as both)."""
    tx = unsigned(raw)
    if "maxFeePerGas" in tx:
        return Fees(int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"]))
    price = int(tx.get("gasPrice", 0))
    return Fees(price, price)


def unsigned(raw: bytes) -> dict[str, Any]:
    """A signed transaction's fields without its signature: what signing it again needs."""
    # The outbox signs typed transactions only (EIP-1559, type 2).
    fields = dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict())
    for name in ("v", "r", "s", "yParity", "type"):
        fields.pop(name, None)
    if isinstance(fields.get("to"), bytes):
        fields["to"] = Web3.to_checksum_address(fields["to"])
    return fields


def _times(value: int, ratio: tuple[int, int]) -> int:
    """`value` x numerator / denominator, rounded up (wei per gas)."""
    return -(-value * ratio[0] // ratio[1])


def _emit(level: int, kind: str, **fields: Any) -> None:
    log.log(level, json.dumps({"event": kind, **fields}, default=str))
