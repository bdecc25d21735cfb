"""Transactions a keeper or a prover agent sends, kept on disk before they leave, so a
restart never sends the same work twice and never forgets what it sent.

    outbox = Outbox("keeper.sqlite", client)
    sent = outbox.send("assign_batch", items, keys=["assign:0xtask:0xprover", ...])
    for outcome in outbox.settle(confirmed=mirror.cursor):   # each round
        ...                                                  # mined, reorged away, dropped
    busy = outbox.in_flight_keys()                           # work not to decide again

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
  rebroadcast); unknown to the node with its nonce not yet used (rebroadcast); or unknown
  with the nonce taken by another transaction (`dropped`, its keys free again).
- **In flight.** The keys of rows `pending` or `mined` are work someone already sent and
  the caller's view does not show yet: a keeper leaves them out of its next decisions and
  applies their effect to its snapshot.

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

from eth_typing import HexStr
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
from provingmarket.chain.database import connect, marks

log = logging.getLogger("provingmarket.chain.outbox")

PENDING, MINED, DONE, REVERTED, DROPPED = "pending", "mined", "done", "reverted", "dropped"
OPEN_STATES = (PENDING, MINED)

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


@dataclass(frozen=True)
class Sent:
    tx_hash: str
    nonce: int
    fn: str
    keys: tuple[str, ...]
    state: str
    block: int | None = None
    gas_used: int | None = None
    sent_at: float = 0.0
    broadcasts: int = 1


@dataclass(frozen=True)
class Outcome:
    """Something `settle` learned about a sent transaction."""

    sent: Sent
    kind: str  # mined, reverted, reorged, dropped, rebroadcast
    events: tuple[Event, ...] = field(default=(), repr=False)
    reason: str = ""


class Outbox:
    def __init__(
        self, path: str | sqlite3.Connection, client: RegistryClient, gas_margin: float = GAS_MARGIN
    ):
        if client.signer is None or not hasattr(client.signer, "sign_transaction"):
            raise ClientError("sending needs an account whose key this process holds")
        self.client = client
        self.signer = client.signer
        self.web3: Web3 = client.web3
        self.me = client.signer.address
        self.gas_margin = gas_margin
        self.lock = threading.RLock()
        if isinstance(path, sqlite3.Connection):
            self.db = path
            self.db.row_factory = sqlite3.Row
        else:
            self.db = connect(str(path), threads=True)
        self.db.executescript(SCHEMA)
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
            nonce = self._next_nonce()
            tx = {
                "from": self.me,
                "to": self.client.address,
                "value": value,
                "data": call._encode_transaction_data(),
                "gas": gas,
                "nonce": nonce,
                "chainId": self.chain_id,
                **self._fees(),
            }
            raw = self.signer.sign_transaction(tx)
            tx_hash = Web3.to_hex(Web3.keccak(raw))
            # The same bytes again (a reorg undid the first one and the decision came out
            # the same): one transaction, back to pending.
            self.db.execute(
                "INSERT INTO outbox (tx_hash, nonce, fn, keys, raw, state, sent_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tx_hash) DO UPDATE SET state = excluded.state, "
                "block = NULL, block_hash = NULL, broadcasts = broadcasts + 1",
                (tx_hash, nonce, fn, json.dumps(keys), raw, PENDING, time.time()),
            )
            self._broadcast(tx_hash, raw)
            return self._row(tx_hash)

    def _next_nonce(self) -> int:
        node = self.web3.eth.get_transaction_count(self.me, "pending")
        row = self.db.execute(
            f"SELECT MAX(nonce) FROM outbox WHERE state IN ({marks(OPEN_STATES)})", OPEN_STATES
        ).fetchone()
        local = -1 if row[0] is None else row[0]
        return max(node, local + 1)

    def _fees(self) -> dict[str, int]:
        base = self.web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
        tip = self.web3.eth.max_priority_fee
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}

    def _broadcast(self, tx_hash: str, raw: bytes) -> None:
        try:
            self.web3.eth.send_raw_transaction(raw)
        except (ValueError, Web3RPCError) as error:
            # "already known", "nonce too low", "replacement underpriced": the node has it
            # or something took its nonce; `settle` finds out which.
            _emit(logging.INFO, "outbox.broadcast_refused", tx=tx_hash, reason=revert_reason(error))

    # -------------------------------------------------------------- settling

    def settle(self, confirmed: int) -> list[Outcome]:
        """Look up every transaction not yet final; `confirmed` is the newest block the
        caller's view of the chain includes."""
        outcomes: list[Outcome] = []
        with self.lock:
            rows = self.db.execute(
                f"SELECT * FROM outbox WHERE state IN ({marks(OPEN_STATES)}) ORDER BY nonce", OPEN_STATES
            ).fetchall()
            used: int | None = None
            for row in rows:
                tx_hash = row["tx_hash"]
                receipt = self._receipt(tx_hash)
                if receipt is not None:
                    block, block_hash = receipt["blockNumber"], Web3.to_hex(receipt["blockHash"])
                    if row["state"] == PENDING or row["block_hash"] != block_hash:
                        self._set(tx_hash, MINED, block, block_hash, receipt["gasUsed"])
                        ok = receipt["status"] == 1
                        outcomes.append(
                            Outcome(
                                self._row(tx_hash),
                                "mined" if ok else "reverted",
                                tuple(self.client.receipt_events(receipt)) if ok else (),
                                "" if ok else self._revert_reason(row, receipt),
                            )
                        )
                    if block <= confirmed:
                        self._set(tx_hash, DONE if receipt["status"] == 1 else REVERTED, block, block_hash)
                    continue
                if row["state"] == MINED:  # its block is gone
                    self._set(tx_hash, PENDING, None, None)
                    outcomes.append(Outcome(self._row(tx_hash), "reorged"))
                if self._known(tx_hash):
                    continue
                if used is None:
                    used = self.web3.eth.get_transaction_count(self.me, "latest")
                if used > row["nonce"]:
                    self._set(tx_hash, DROPPED, None, None, note="its nonce was used by another transaction")
                    outcomes.append(Outcome(self._row(tx_hash), "dropped"))
                else:
                    self.db.execute(
                        "UPDATE outbox SET broadcasts = broadcasts + 1 WHERE tx_hash = ?", (tx_hash,)
                    )
                    self._broadcast(tx_hash, bytes(row["raw"]))
                    outcomes.append(Outcome(self._row(tx_hash), "rebroadcast"))
        for outcome in outcomes:
            _emit(
                logging.INFO,
                f"outbox.{outcome.kind}",
                tx=outcome.sent.tx_hash,
                fn=outcome.sent.fn,
                nonce=outcome.sent.nonce,
                block=outcome.sent.block,
                **({"reason": outcome.reason} if outcome.reason else {}),
            )
        return outcomes

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

    def _revert_reason(self, row: sqlite3.Row, receipt: Any) -> str:
        try:
            tx = self.web3.eth.get_transaction(row["tx_hash"])
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

    def _row(self, tx_hash: str) -> Sent:
        r = self.db.execute("SELECT * FROM outbox WHERE tx_hash = ?", (tx_hash,)).fetchone()
        return Sent(
            r["tx_hash"],
            r["nonce"],
            r["fn"],
            tuple(json.loads(r["keys"])),
            r["state"],
            r["block"],
            r["gas_used"],
            r["sent_at"],
            r["broadcasts"],
        )


def _emit(level: int, kind: str, **fields: Any) -> None:
    log.log(level, json.dumps({"event": kind, **fields}, default=str))
