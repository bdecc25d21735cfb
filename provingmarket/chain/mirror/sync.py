"""Following the chain: `Mirror.sync()` reads the registry's logs from the cursor to the
head less `confirmations`, has the projection apply them, and undoes what a reorg dropped.

- **Cursor.** The last applied block's number and hash are kept in `meta`, written in the
  same SQLite transaction as the events of the block range read: a crash leaves either
  the whole range applied or none of it, and a new `Mirror` on the same file resumes
  from the cursor, backfilling what happened while it was down. Ranges are bounded
  (`batch_blocks`, 2,000 by default); their logs are read by the client's `LogReader`
  (provingmarket/chain/logs.py), in pages the node accepts, retrying transient failures.
  An error it gives up on, or a database error, ends the sync with nothing of the range
  written.
- **Reorgs: an undo log.** Each derived-table write records what it replaced
  (`tables.py`). The hashes of the last `keep_blocks` (64) applied blocks are kept in
  `block_hashes`. Each `sync()` first checks the stored hash of the cursor block against
  the chain; if it differs (or the block is gone), it finds the newest stored block whose
  hash still matches, undoes every write of later blocks in reverse order, drops their
  journal entries and hashes, moves the cursor there and syncs again. Undo entries at or
  below the oldest kept hash are pruned. A reorg deeper than the kept hashes (no stored
  hash matches) clears the mirror and syncs again from `start_block`.
  Each range is read consistently: the headers of its last blocks (up to `keep_blocks`,
  chained by parent hash onto the cursor) are read before the logs and the last one again
  after, and logs must carry those blocks' hashes; if the chain moved meanwhile, nothing
  is written and the sync starts over from the reorg check. (Logs of blocks older than
  that window, in a long catch-up range, are deeper than `keep_blocks + confirmations`
  and are trusted as read.)
- **Bad logs never stop it.** A log with an unknown topic, one that does not decode, or an
  event the projection cannot apply is skipped with a log line; the rest of the range
  applies. An event's writes are undone (SQLite savepoint) if applying it fails half-way.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3
from web3.exceptions import BlockNotFound

from provingmarket.chain.client import Event, RegistryClient, reported
from provingmarket.chain.database import (
    describe,
    is_database_error,
    is_integrity_error,
    is_refused_value,
    transaction,
)
from provingmarket.chain.mirror.projection import Projection
from provingmarket.chain.mirror.schema import (
    KEYS,
    dumps,
    hex_id,
    meta_block,
    open_file,
    open_meta,
    read_meta,
    write_meta,
)
from provingmarket.chain.mirror.tables import Inapplicable, Tables
from provingmarket.chain.mirror.views import Reader

# Every line the mirror logs is on the package's logger.
log = logging.getLogger("provingmarket.chain.mirror")

KEEP_BLOCKS = 64  # block hashes kept to find where a reorg forked
BATCH_BLOCKS = 2_000  # blocks applied per transaction (read in pages the node accepts)


class _ChainMoved(Exception):
    """The chain changed while a range was read: nothing written, read again."""


@dataclass
class SyncReport:
    from_block: int  # the cursor before
    to_block: int  # the cursor after
    applied: int = 0
    skipped: int = 0
    batches: int = 0
    reorgs: list[tuple[int, int]] = field(default_factory=list)  # (old cursor, fork block)
    lag: int = 0  # a shared mirror's reader: blocks its indexer trails the head (beyond confirmations)
    stale: str = ""  # ... and, when that is too far to act on, why in one line (shared.py)


class Mirror(Reader):
    """The registry's state in a SQLite file at `path`, brought up to the chain by
    `sync()`, read with the queries it inherits from `Reader`."""

    def __init__(
        self,
        path: str,
        client: RegistryClient,
        start_block: int | None = None,
        confirmations: int = 0,
        batch_blocks: int = BATCH_BLOCKS,
        keep_blocks: int = KEEP_BLOCKS,
    ):
        if confirmations < 0 or batch_blocks < 1 or keep_blocks < 1:
            raise ValueError("confirmations >= 0, batch_blocks >= 1 and keep_blocks >= 1")
        self.path = str(path)
        self.client = client
        self.web3 = client.web3
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.keep_blocks = keep_blocks
        self.db = open_file(self.path)
        self.tables = Tables(self.db)
        self.projection = Projection(self.tables)
        meta = open_meta(
            self.db,
            describe(self.path),
            client.address,
            str(self.web3.eth.chain_id),
            start_block if start_block is not None else client.from_block,
        )
        self.start_block = meta_block(meta, "start_block")
        self.cursor = meta_block(meta, "cursor_block")
        self.cursor_hash = meta.get("cursor_hash")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sync(self, max_blocks: int | None = None, attempts: int = 5) -> SyncReport:
        """Apply the registry's events up to the head less `confirmations` (at most
        `max_blocks` blocks past the cursor), after undoing any block a reorg dropped."""
        if getattr(self.db, "dialect", "sqlite") == "postgresql":
            # A shared database: what was committed is the truth (a commit whose answer was
            # lost with the server, or a restore), not what this process last wrote.
            meta = read_meta(self.db)
            self.cursor, self.cursor_hash = meta_block(meta, "cursor_block"), meta.get("cursor_hash")
        report = SyncReport(self.cursor, self.cursor)
        for _ in range(attempts):
            try:
                self._check_reorg(report)
                target = self.web3.eth.block_number - self.confirmations
                if max_blocks is not None:
                    target = min(target, self.cursor + max_blocks)
                while self.cursor < target:
                    frm = self.cursor + 1
                    self._apply_range(frm, min(target, frm + self.batch_blocks - 1), target, report)
                break
            except _ChainMoved as moved:
                _emit(logging.INFO, "mirror.moved", cursor=self.cursor, reason=str(moved))
        else:
            _emit(
                logging.WARNING, "mirror.moved", cursor=self.cursor, reason=f"gave up after {attempts} reads"
            )
        report.to_block = self.cursor
        return report

    # -------------------------------------------------------------- reorgs

    def _header(self, number: int) -> tuple[str, str, int] | None:
        """(hash, parent hash, timestamp) of a block, or None if the chain has no such block."""
        try:
            block = self.web3.eth.get_block(number)
        except BlockNotFound:
            return None
        if block is None:
            return None
        return (
            Web3.to_hex(reported(block, "hash")),
            Web3.to_hex(reported(block, "parentHash")),
            int(reported(block, "timestamp")),
        )

    def _check_reorg(self, report: SyncReport) -> None:
        if self.cursor_hash is None:
            return
        header = self._header(self.cursor)
        if header is not None and header[0] == self.cursor_hash:
            return
        stored = self.db.execute("SELECT number, hash FROM block_hashes ORDER BY number DESC").fetchall()
        for row in stored:
            found = self._header(row["number"])
            if found is not None and found[0] == row["hash"]:
                self._rollback(row["number"], row["hash"], report)
                return
        self._reset(report)

    def _rollback(self, fork: int, fork_hash: str, report: SyncReport) -> None:
        """Undo every block after `fork`, the newest kept block whose hash still matches."""
        started = time.monotonic()
        old = self.cursor
        with transaction(self.db):
            undone = self.tables.undo_after(fork)
            dropped = self.db.execute("DELETE FROM journal WHERE block > ?", (fork,)).rowcount
            self.db.execute("DELETE FROM block_hashes WHERE number > ?", (fork,))
            self._store_cursor(fork, fork_hash)
        self.cursor, self.cursor_hash = fork, fork_hash
        report.reorgs.append((old, fork))
        _emit(
            logging.WARNING,
            "mirror.reorg",
            cursor=old,
            fork=fork,
            depth=old - fork,
            undone_writes=undone,
            dropped_events=dropped,
            ms=_ms(started),
        )

    def _reset(self, report: SyncReport) -> None:
        """No kept block matches the chain: clear everything and start over."""
        old = self.cursor
        with transaction(self.db):
            for table in (*KEYS, "journal", "undo", "block_hashes"):
                self.db.execute(f"DELETE FROM {table}")
            self._store_cursor(self.start_block - 1, None)
        self.cursor, self.cursor_hash = self.start_block - 1, None
        report.reorgs.append((old, self.cursor))
        _emit(
            logging.ERROR,
            "mirror.reset",
            cursor=old,
            start_block=self.start_block,
            reason=f"no block among the last {self.keep_blocks} kept matches the chain: resyncing",
        )

    def _store_cursor(self, block: int, block_hash: str | None) -> None:
        write_meta(self.db, {"cursor_block": str(block), "cursor_hash": block_hash})

    # -------------------------------------------------------------- ranges

    def _apply_range(self, frm: int, to: int, target: int, report: SyncReport) -> None:
        """Read the blocks [frm, to] and apply their events, the cursor moving to `to`, in
        one transaction."""
        started = time.monotonic()
        headers, logs = self._read_range(frm, to, target)
        decoded = self._decode(logs)
        times = self._block_times(decoded, headers)
        applied = skipped = 0
        with transaction(self.db):
            for i, (entry, event) in enumerate(decoded):
                following = decoded[i + 1][1] if i + 1 < len(decoded) else None
                if self._apply(entry, event, following, times[event.block]):
                    applied += 1
                else:
                    skipped += 1
            self._keep_hashes(headers)
            self._store_cursor(to, headers[to][0])
            self.db.execute("DELETE FROM undo WHERE block <= (SELECT MIN(number) FROM block_hashes)")
        self.cursor, self.cursor_hash = to, headers[to][0]
        skipped += len(logs) - len(decoded)
        report.applied += applied
        report.skipped += skipped
        report.batches += 1
        _emit(
            logging.INFO if logs else logging.DEBUG,  # a range with no event is no news
            "mirror.batch",
            from_block=frm,
            to_block=to,
            logs=len(logs),
            applied=applied,
            skipped=skipped,
            cursor=to,
            target=target,
            ms=_ms(started),
        )

    def _read_range(self, frm: int, to: int, target: int) -> tuple[dict[int, tuple[str, str, int]], list]:
        """The headers of the range's last blocks (those within `keep_blocks` of the
        target, chained onto each other and, when the range starts there, onto the cursor)
        and the range's logs, oldest first. Raises `_ChainMoved` if the chain changed
        while they were read."""
        window = max(frm, min(to, target - self.keep_blocks + 1))
        headers: dict[int, tuple[str, str, int]] = {}
        for n in range(window, to + 1):
            header = self._header(n)
            if header is None:
                raise _ChainMoved(f"block {n} is gone")
            if n > window and header[1] != headers[n - 1][0]:
                raise _ChainMoved(f"block {n} does not extend block {n - 1}")
            headers[n] = header
        if window == frm and self.cursor_hash is not None and headers[frm][1] != self.cursor_hash:
            raise _ChainMoved(f"block {frm} does not extend the cursor {self.cursor}")
        logs = self._get_logs(frm, to)
        if self._header(to) != headers[to]:
            raise _ChainMoved(f"block {to} changed while its logs were read")
        for entry in logs:
            n = entry["blockNumber"]
            if n in headers and Web3.to_hex(entry["blockHash"]) != headers[n][0]:
                raise _ChainMoved(f"a log of block {n} is from another fork")
        return headers, sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))

    def _get_logs(self, frm: int, to: int) -> list:
        """The registry's logs in [frm, to], in the pages the node accepts (the client's
        `LogReader`, provingmarket/chain/logs.py); an error it gives up on ends the sync."""
        return self.client.logs.logs(self.client.address, frm, to)

    def _block_times(
        self, decoded: list[tuple[Any, Event]], headers: dict[int, tuple[str, str, int]]
    ) -> dict[int, int]:
        """The timestamp of each block with an event: from the log when the node gives it
        (`blockTimestamp`), else the header already read, else the block's header."""
        times: dict[int, int] = {}
        for entry, event in decoded:
            if event.block in times:
                continue
            given = entry.get("blockTimestamp")
            if given is not None:
                times[event.block] = int(given, 16) if isinstance(given, str) else int(given)
            elif event.block in headers:
                times[event.block] = headers[event.block][2]
            else:
                header = self._header(event.block)
                if header is None:
                    raise _ChainMoved(f"block {event.block} is gone")
                times[event.block] = header[2]
        return times

    def _keep_hashes(self, headers: dict[int, tuple[str, str, int]]) -> None:
        """Store the range's block hashes, keeping the newest `keep_blocks`."""
        self.db.executemany(
            "INSERT OR REPLACE INTO block_hashes (number, hash) VALUES (?, ?)",
            [(n, h) for n, (h, _, _) in headers.items()],
        )
        self.db.execute(
            "DELETE FROM block_hashes WHERE number NOT IN "
            "(SELECT number FROM block_hashes ORDER BY number DESC LIMIT ?)",
            (self.keep_blocks,),
        )

    # -------------------------------------------------------------- events

    def _decode(self, logs: list) -> list[tuple[Any, Event]]:
        """The logs the client decodes to registry events; the others are skipped."""
        decoded: list[tuple[Any, Event]] = []
        for entry in logs:
            if entry.get("removed"):
                self._skip(entry, "removed log")
                continue
            try:
                event = self.client.decode(entry)
            except Exception as error:  # data that does not decode against the ABI
                self._skip(entry, f"malformed: {type(error).__name__}: {error}")
                continue
            if event is None:
                self._skip(entry, "unknown event")
                continue
            decoded.append((entry, event))
        return decoded

    def _apply(self, entry: Any, event: Event, following: Event | None, time: int) -> bool:
        """Apply one event (of a block with timestamp `time`) inside a savepoint; journal
        it. False if skipped."""
        self.db.execute("SAVEPOINT event")
        try:
            self.projection.apply(event, following)
            task_id = event.args.get("task_id")
            self.db.execute(
                "INSERT INTO journal (block, log_index, block_hash, tx, name, task_id, args, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.block,
                    event.log_index,
                    Web3.to_hex(entry["blockHash"]),
                    event.tx,
                    event.name,
                    hex_id(task_id) if task_id is not None else None,
                    dumps(event.args),
                    time,
                ),
            )
        except Exception as error:
            if is_database_error(error) and not is_integrity_error(error) and not is_refused_value(error):
                raise  # the database itself failed (full, locked): the whole range is rolled back
            self._skip_event(entry, event, error)
            return False
        self.db.execute("RELEASE event")
        return True

    def _skip_event(self, entry: Any, event: Event, error: Exception) -> None:
        """Undo what the event wrote so far and log why it was skipped."""
        self.db.execute("ROLLBACK TO event")
        self.db.execute("RELEASE event")
        why = str(error) if isinstance(error, Inapplicable) else f"{type(error).__name__}: {error}"
        self._skip(entry, f"{event.name} not applied: {why}")

    def _skip(self, entry: Any, reason: str) -> None:
        _emit(
            logging.WARNING,
            "mirror.skip",
            block=entry.get("blockNumber"),
            log_index=entry.get("logIndex"),
            tx=Web3.to_hex(entry["transactionHash"]) if entry.get("transactionHash") else None,
            reason=reason[:300],
        )


def _emit(level: int, kind: str, **fields: Any) -> None:
    log.log(level, json.dumps({"event": kind, **fields}, default=str))


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
