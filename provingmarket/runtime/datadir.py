"""Where a long-running process keeps its files, the chain they belong to, and the upgrade
from the single file earlier versions kept everything in.

    data = open_data_dir(client, "orderbook", data_dir)   # checks the node, binds the files
    mirror = data.mirror(client)                           # rebuildable: mirror.sqlite
    outbox = data.outbox(client)                           # signed transactions: outbox.sqlite
    data.check(client.web3)                                # every round: WrongChain if replaced

One directory per process (`--data-dir`), one file per concern, so a file that can be
rebuilt from the chain is never kept beside one that cannot:

| file | holds | if deleted |
| --- | --- | --- |
| `mirror.sqlite` | the registry's state, rebuilt by syncing | rebuilt from the deployment block |
| `outbox.sqlite` | transactions signed, sent or not yet mined | lost: work may be sent again |
| `bids.sqlite` | the auction frontend's auctions and sealed bids | lost: promises made over HTTP |
| `agent.sqlite` | the prover agent's work, timings and bids | lost: proofs made again |
| `asof.sqlite`, `rounds.sqlite` | the election's as-of mirror (rebuilt) and rounds drawn | rounds: redrawn |

Without `--data-dir` a process uses `$XDG_DATA_HOME/provingmarket/chain-<id>/<name>-<account>`
(`~/.local/share/...` when the variable is unset): never the working directory (a service
manager starts processes in `/`, a person in the repository), and never shared by two
accounts or two chains, whose outboxes must not mix.

Every file is bound to the chain it was made on (`database.bind_chain`: chain id, genesis
hash, the registry's deployment block hash); a process started on another chain, or whose
node is replaced under it (`check`, every round), raises `WrongChain` and stops with exit
code 2, so nothing signed for one chain is ever sent to another.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from web3 import Web3
from web3.exceptions import BlockNotFound

from provingmarket.chain.client import ClientError, RegistryClient, reported
from provingmarket.chain.database import Connection, bind_chain, store_meta
from provingmarket.chain.identity import ChainIdentity, WrongChain
from provingmarket.chain.mirror import Mirror
from provingmarket.chain.outbox import Outbox
from provingmarket.runtime.process import emit

log = logging.getLogger("provingmarket.runtime.datadir")

MIRROR, OUTBOX, BIDS, AGENT = "mirror.sqlite", "outbox.sqlite", "bids.sqlite", "agent.sqlite"
ASOF, ROUNDS = "asof.sqlite", "rounds.sqlite"

# The previous layout (`--db FILE`): which of its tables move to which file. The mirror's
# are not moved (it is rebuilt); the election's rounds were in `<file>.asof.sqlite`.
LEGACY_TABLES: dict[str, tuple[str, ...]] = {
    OUTBOX: ("outbox",),
    BIDS: ("auctions", "bids"),
    AGENT: ("agent", "agent_timing", "agent_bids"),
    ROUNDS: ("election_rounds", "election_done"),
}


def default_data_dir(name: str, chain_id: int, account: str) -> Path:
    """`$XDG_DATA_HOME/provingmarket/chain-<chain id>/<name>-<account>`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "provingmarket" / f"chain-{chain_id}" / f"{name}-{account}"


def chain_identity(client: RegistryClient) -> ChainIdentity:
    """The chain the node says it is, checked against the client's deployment record:
    the record's own identity if it has one (chain id, genesis, deployment block hash),
    else its chain id, a deployment block the node has and a registry with code. Raises
    `WrongChain` (one line: what differs, what to do) if the node is another chain."""
    record = client.deployment
    actual = ChainIdentity.read(client.web3, client.address, record.block)
    what = f"the deployment record of {record.network} (registry {record.registry})"
    hint = (
        "point --rpc at the node the registry was deployed on, or deploy again on this one "
        "(ape run operator deploy) and start with another data directory"
    )
    recorded: Any = getattr(record, "identity", None)  # records that carry their chain's identity
    if callable(recorded):
        expected = cast(ChainIdentity, recorded())
        expected.verify(client.web3, what, hint)
    elif actual.chain_id != record.chain_id:
        raise WrongChain(
            f"{what} is on chain {record.chain_id}, but the node is chain {actual.chain_id}; {hint}"
        )
    if not actual.deploy_block_hash:
        raise WrongChain(
            f"{what} was deployed in block {record.block}, but the node ({actual.describe()}) has no such "
            f"block; {hint}"
        )
    if not client.web3.eth.get_code(client.address):
        raise WrongChain(
            f"{what}: the node ({actual.describe()}) has no contract at {client.address}; {hint}"
        )
    return actual


class DataDir:
    """A process's data directory, bound to `identity` (the chain its files belong to)."""

    def __init__(self, path: str | Path, identity: ChainIdentity, web3: Web3 | None = None):
        self.path = Path(path).expanduser().absolute()
        self.identity = identity
        self.web3 = web3  # the node, to check a file of the previous layout against
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as error:
            raise ClientError(
                f"--data-dir {self.path}: cannot create it ({error.strerror}); give a directory you can write"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise ClientError(f"--data-dir {self.path} is not writable; give a directory you can write")

    def file(self, name: str) -> str:
        return str(self.path / name)

    def bind(self, db: Connection, name: str) -> None:
        """Record the chain in the file `name`, or refuse it if it belongs to another."""
        bind_chain(db, self.identity, self.file(name), self._hint())

    def _hint(self) -> str:
        return (
            f"its files belong to that chain: point --rpc at its node, or give another --data-dir "
            f"(or move {self.path} away) to start afresh on this one"
        )

    def mirror(
        self,
        client: RegistryClient,
        start_block: int | None = None,
        confirmations: int = 0,
        name: str = MIRROR,
    ) -> Mirror:
        mirror = Mirror(self.file(name), client, start_block, confirmations)
        self.bind(mirror.db, name)
        return mirror

    def outbox(self, client: RegistryClient, metrics: Any = None, **fees: Any) -> Outbox:
        """The outbox in `outbox.sqlite`, bound to this chain (it refuses another, and checks
        the node before it sends or rebroadcasts); `fees`: `replace_after`,
        `max_fee_per_gas` (Outbox)."""
        return Outbox(self.file(OUTBOX), client, identity=self.identity, metrics=metrics, **fees)

    def check(self, web3: Web3) -> None:
        """Raise `WrongChain` if the node is no longer the chain these files belong to (one
        call a round; more only when it differs, to say how)."""
        if self.identity.still_here(web3):
            return
        identity = self.identity
        now = ChainIdentity.read(web3, identity.registry, identity.deploy_block)
        differs = identity.differences(now) or [f"block {identity.deploy_block} is gone"]
        raise WrongChain(
            f"the node is no longer {identity.describe()} ({'; '.join(differs)}): stopped so that "
            f"nothing in {self.path} is sent to another chain; {self._hint()}"
        )

    # -------------------------------------------------------------- the previous layout

    def import_legacy(self, legacy: str | Path) -> dict[str, int]:
        """Move what cannot be rebuilt out of a file of the previous layout (`--db`: the
        mirror, the outbox, the bids or the agent's rows in one file; the election's rounds
        in `<file>.asof.sqlite`): each table into its own file here, as it was (its
        migrations then bring it up to date). A file that exists here already is left
        alone, so this runs once; the old file is only read. Refuses (`WrongChain`) a file
        whose mirror kept blocks of another chain. Returns rows moved per table."""
        path = Path(legacy).expanduser()
        if not path.is_file():
            raise ClientError(f"--db {path}: no such file (the previous layout's database to move from)")
        sources = [path, path.with_name(f"{path.stem}.asof{path.suffix or '.sqlite'}")]
        moved: dict[str, int] = {}
        for source in (s for s in sources if s.is_file()):
            old = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                tables = {
                    r[0]: r[1]
                    for r in old.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                }
                if "meta" in tables:
                    self._same_chain(old, source)
                for target, names in LEGACY_TABLES.items():
                    present = [n for n in names if n in tables]
                    if present and not Path(self.file(target)).exists():
                        moved |= self._copy(old, source, target, present)
            finally:
                old.close()
        emit(
            log,
            "data.imported",
            source=str(path),
            data_dir=str(self.path),
            rows=moved,
            note=f"{path} is no longer used and was left as it was; delete it once this process ran",
        )
        return moved

    def _same_chain(self, old: sqlite3.Connection, source: Path) -> None:
        """The old file's mirror names the chain its transactions were made on: its chain
        id and registry, and the hashes of the last blocks it applied, one of which the
        node must have (a devnet restarted since has the same id and registry address)."""
        meta = dict(old.execute("SELECT key, value FROM meta").fetchall())
        identity = self.identity
        found = []
        if meta.get("chain_id") not in (None, str(identity.chain_id)):
            found.append(f"chain id {meta['chain_id']} != {identity.chain_id}")
        if meta.get("registry") and meta["registry"].lower() != identity.registry.lower():
            found.append(f"registry {meta['registry']} != {identity.registry}")
        kept = old.execute("SELECT number, hash FROM block_hashes ORDER BY number DESC").fetchall()
        web3 = self.web3
        if not found and kept and web3 is not None and not any(_hash_at(web3, n) == h for n, h in kept):
            found.append(f"none of its {len(kept)} last blocks (up to {kept[0][0]}) is on the node's chain")
        if found:
            raise WrongChain(
                f"--db {source} was written on another chain than the node ({identity.describe()}: "
                f"{'; '.join(found)}); its signed transactions must not be sent here: point --rpc at "
                "the node it was made on, or leave --db out to start afresh"
            )

    def _copy(
        self, old: sqlite3.Connection, source: Path, target: str, tables: Sequence[str]
    ) -> dict[str, int]:
        """`tables` (with their indexes) from `old` into a new file `target`, written beside
        it and renamed into place once whole (a crash leaves no half file)."""
        final = Path(self.file(target))
        partial = final.with_name(final.name + ".partial")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(partial, isolation_level=None)
        counts: dict[str, int] = {}
        try:
            db.execute("ATTACH DATABASE ? AS old", (f"file:{source}?mode=ro",))
            db.execute("BEGIN")
            for table in tables:
                for (sql,) in old.execute(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                    "ORDER BY type = 'index'",
                    (table,),
                ):
                    db.execute(sql)
                counts[table] = db.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}").rowcount
            store_meta(db)
            db.execute(
                "INSERT INTO store_meta (key, value) VALUES ('imported_from', ?)", (str(source.absolute()),)
            )
            db.execute("COMMIT")
            db.execute("DETACH DATABASE old")
        finally:
            db.close()
        os.replace(partial, final)
        return counts


def _hash_at(web3: Web3, number: int) -> str | None:
    try:
        block = web3.eth.get_block(number)
    except BlockNotFound:
        return None
    return Web3.to_hex(reported(block, "hash")).lower() if block else None


def open_data_dir(
    client: RegistryClient, name: str, data_dir: str | Path | None = None, legacy_db: str | Path | None = None
) -> DataDir:
    """The process's data directory (`data_dir`, else the default for `name`, the chain
    and the client's account), after checking the node against the deployment record;
    with `legacy_db`, what cannot be rebuilt is moved out of that file first. One line,
    `data.dir`, says where it is."""
    identity = chain_identity(client)
    if data_dir is None:
        account = client.signer.address if client.signer is not None else "readonly"
        data_dir = default_data_dir(name, identity.chain_id, account)
    data = DataDir(data_dir, identity, client.web3)
    if legacy_db is not None:
        emit(
            log,
            "data.deprecated",
            logging.WARNING,
            note="--db is deprecated: give --data-dir (a directory of files, one per concern)",
        )
        data.import_legacy(legacy_db)
    emit(log, "data.dir", path=str(data.path), chain=identity.describe(), registry=identity.registry)
    return data
