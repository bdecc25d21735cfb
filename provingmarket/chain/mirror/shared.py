"""A mirror another process writes: read it, never sync it.

With Postgres as the shared store one indexer process (`python -m
provingmarket.runtime.indexer`) follows the chain into the database; frontends, the
explorer and `ape run qos` read the same tables through `SharedMirror`, which has the
`Mirror`'s queries (`Reader`) and a `sync()` that writes nothing: it reads where the
indexer's cursor is and how far that is behind the chain's head.

    shared = SharedMirror("postgresql://host/market", client, confirmations=2, max_lag=5)
    report = shared.sync()      # the indexer's cursor now; report.stale says if it lags
    if not report.stale:
        snap = shared.snapshot(now=ts)

A reader must not act on a stale view silently: `report.stale` is one line saying how far
behind the indexer is (its cursor vs the chain's head, beyond `confirmations` and
`max_lag` blocks) and what to do; the caller logs it and waits. A cursor that went back,
or a kept block whose hash changed, is the indexer having rolled back a reorg: reported
in `report.reorgs` as a `Mirror`'s own sync does, so an outbox re-checks what it sent.
"""

from __future__ import annotations

from provingmarket.chain.client import RegistryClient
from provingmarket.chain.database import describe, open_database
from provingmarket.chain.mirror.schema import COMPONENT, MirrorError, meta_block, read_meta
from provingmarket.chain.mirror.sync import SyncReport
from provingmarket.chain.mirror.views import Reader

INDEXER = "python -m provingmarket.runtime.indexer"


class SharedMirror(Reader):
    """The mirror an indexer keeps in the database at `url` (its `mirror` schema, or the
    URL's `#schema`), read-only."""

    def __init__(self, url: str, client: RegistryClient, confirmations: int = 0, max_lag: int = 5):
        if confirmations < 0 or max_lag < 0:
            raise ValueError("confirmations >= 0 and max_lag >= 0")
        self.path = url
        self.where = describe(url)
        self.client = client
        self.web3 = client.web3
        self.confirmations = confirmations
        self.max_lag = max_lag
        self.db = open_database(url, COMPONENT, readonly=True)
        registry, chain_id = client.address, str(self.web3.eth.chain_id)
        try:
            meta = read_meta(self.db)
        except Exception:  # no table yet: no indexer has written here
            meta = {}
        if not meta:
            raise MirrorError(
                f"{self.where} holds no mirror yet: start the indexer on it first "
                f"({INDEXER} --rpc URL --deployment FILE --database {self.where})"
            )
        if meta.get("registry") != registry or meta.get("chain_id") != chain_id:
            raise MirrorError(
                f"{self.where} mirrors registry {meta.get('registry')} on chain {meta.get('chain_id')}, "
                f"not {registry} on chain {chain_id}: give the database the indexer of this chain writes"
            )
        self.start_block = meta_block(meta, "start_block")
        self.cursor = meta_block(meta, "cursor_block")
        self.cursor_hash = meta.get("cursor_hash")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SharedMirror:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sync(self, max_blocks: int | None = None, attempts: int = 1) -> SyncReport:
        """Where the indexer is now (nothing is written): the cursor, the events it applied
        since the last call, a rollback it made, and `stale` if it trails the chain."""
        old, old_hash = self.cursor, self.cursor_hash
        meta = read_meta(self.db)
        cursor, cursor_hash = meta_block(meta, "cursor_block"), meta.get("cursor_hash")
        report = SyncReport(old, cursor)
        if (
            cursor < old
            or (cursor == old and cursor_hash != old_hash)
            or self._dropped(old, old_hash, cursor)
        ):
            kept = self.db.execute("SELECT MIN(number) FROM block_hashes").fetchone()[0]
            fork = min(cursor, old, (kept if kept is not None else self.start_block) - 1)
            report.reorgs.append((old, fork))
            old = fork
        report.applied = self.db.execute(
            "SELECT COUNT(*) FROM journal WHERE block > ? AND block <= ?", (old, cursor)
        ).fetchone()[0]
        self.cursor, self.cursor_hash = cursor, cursor_hash
        head = self.web3.eth.block_number
        report.lag = max(0, head - self.confirmations - cursor)
        if report.lag > self.max_lag:
            report.stale = (
                f"the shared mirror at {self.where} is {report.lag} blocks behind the chain "
                f"(indexer at block {cursor}, head {head}, confirmations {self.confirmations}, "
                f"at most {self.max_lag} allowed): waiting for it; check that its indexer runs"
            )
        return report

    def _dropped(self, old: int, old_hash: str | None, cursor: int) -> bool:
        """The block the reader last saw is no longer the one the indexer keeps at its height."""
        if old_hash is None or cursor <= old:
            return False
        row = self.db.execute("SELECT hash FROM block_hashes WHERE number = ?", (old,)).fetchone()
        return row is not None and row["hash"] != old_hash
