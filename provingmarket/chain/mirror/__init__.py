"""A local mirror of the registry in SQLite (or Postgres), kept up to date from the registry's events.

Keepers and mechanisms read the registry's state from here (`Mirror.snapshot()` and the
queries beside it) instead of calling the chain for every task and prover; `sync()`
brings it up to the chain's head less `confirmations` blocks.

    mirror = Mirror("mirror.sqlite", RegistryClient.connect(url, registry), start_block, confirmations=2)
    mirror.sync()                     # read and apply what happened since the last sync
    snap = mirror.snapshot(now=ts)    # open tasks, memberships, provers, live assignments

One concern a module, each importing only those above it in this list:

- `schema.py`: the file's tables (journal, derived tables, undo log, meta), the schema
  version, the slot and assignment states, and how values are stored.
- `tables.py`: writes to the derived tables that record what they replaced, and undoing
  them after a block (how a reorg is rolled back).
- `views.py`: the read model (`TaskView`, `MembershipView`, `ProverView`, `Snapshot`, ...)
  and `Reader`, the queries.
- `projection.py`: one handler per registry event, writing its effect into the tables.
- `sync.py`: `Mirror`, which follows the chain: the cursor, reading logs in ranges,
  applying them through the projection, finding reorgs and rewinding them.
- `shared.py`: `SharedMirror`, the reader of a mirror another process (the indexer,
  provingmarket/runtime/indexer.py) writes into Postgres: it never syncs, and says when
  the indexer lags.

The database is a SQLite file by default, or a `postgresql://` URL (the `mirror` schema of
that database; provingmarket/chain/postgres.py): one indexer writes it, many processes read.

Logging: one JSON object per line on the `provingmarket.chain.mirror` logger: `mirror.batch`
per applied range, `mirror.reorg` per rollback, `mirror.reset` for a reorg beyond the
kept hashes, `mirror.skip` per skipped log, `mirror.moved` when a range is re-read. How
the logs were paged is on `provingmarket.chain.logs` (`logs.narrowed`, `logs.retry`).
"""

from provingmarket.chain.mirror.schema import (
    ASSIGNED,
    CLOSED,
    DECLINED,
    LIVE,
    OPEN,
    PROVEN,
    SCHEMA_VERSION,
    SLASHED,
    VOIDED,
    MirrorError,
)
from provingmarket.chain.mirror.shared import SharedMirror
from provingmarket.chain.mirror.sync import BATCH_BLOCKS, KEEP_BLOCKS, Mirror, SyncReport
from provingmarket.chain.mirror.tables import Inapplicable
from provingmarket.chain.mirror.views import (
    AssignmentView,
    MechanismView,
    MembershipView,
    ProverView,
    Reader,
    SlotView,
    Snapshot,
    TaskView,
)

__all__ = [
    "ASSIGNED",
    "BATCH_BLOCKS",
    "CLOSED",
    "DECLINED",
    "KEEP_BLOCKS",
    "LIVE",
    "OPEN",
    "PROVEN",
    "SCHEMA_VERSION",
    "SLASHED",
    "VOIDED",
    "AssignmentView",
    "Inapplicable",
    "MechanismView",
    "MembershipView",
    "Mirror",
    "MirrorError",
    "ProverView",
    "Reader",
    "SharedMirror",
    "SlotView",
    "Snapshot",
    "SyncReport",
    "TaskView",
]
