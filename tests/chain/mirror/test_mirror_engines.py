"""The mirror on SQLite and on Postgres, fed the same events by anvil: every derived table,
the snapshot a mechanism reads, the journal and the skipped assignments are equal after a
task's whole lifecycle; undoing the writes after a block through the undo log gives both
the same earlier state; a new mirror on the Postgres database resumes at its cursor."""

from __future__ import annotations

import pytest

from provingmarket.chain.client import RegistryClient
from provingmarket.chain.database import transaction
from provingmarket.chain.mirror import Mirror
from tests.chain.mirror.test_mirror import lifecycle
from tests.factories import ETHER, advance


@pytest.fixture
def registry_client(chain, registry):
    return RegistryClient(chain.provider.web3, registry.address)


def test_sync__sqlite_and_postgres__same_rows_snapshot_journal_and_undo(
    registry_client,
    registry,
    create_task,
    provers,
    keeper,
    requester,
    stranger,
    chain,
    market,
    postgres_server,
):
    url = postgres_server.create_database("mirror_engines")
    p0, p1, p2 = provers
    _, reopens, refunds, late_a, late_b, *_ = lifecycle(registry, create_task, provers, keeper, requester)
    with Mirror(":memory:", registry_client, 0) as lite, Mirror(url, registry_client, 0) as shared:
        lite.sync()
        shared.sync()
        middle, before = lite.cursor, lite.dump()
        assert shared.cursor == middle and shared.dump() == before
        # Slashes, unstaking, a revoked nonce, a new offer, leaving, a withdrawal.
        advance(chain, 400)
        registry.slash(reopens.as_tuple(), p2, late_a.as_tuple(), sender=stranger)
        registry.slash(refunds.as_tuple(), p1, late_b.as_tuple(), sender=stranger)
        registry.unstake(ETHER, sender=p2)
        registry.revoke_signatures(sender=p1)
        registry.update_membership(market, 3, ETHER // 50, 90, 0b111, sender=p0)
        registry.leave_market(market, sender=p2)
        registry.withdraw(sender=keeper)
        lite.sync()
        shared.sync()

        assert shared.cursor == lite.cursor > middle
        assert shared.dump() == lite.dump() != before
        now = chain.provider.web3.eth.get_block("latest")["timestamp"]
        assert shared.snapshot(now=now) == lite.snapshot(now=now)
        assert shared.timeline() == lite.timeline()
        assert shared.skipped_assignments() == lite.skipped_assignments()
        assert [t.task_id for t in shared.open_tasks()] == [t.task_id for t in lite.open_tasks()]

        with Mirror(url, registry_client, 0) as again:  # another process on the same database
            assert (again.cursor, again.cursor_hash) == (lite.cursor, lite.cursor_hash)
            assert again.sync().applied == 0

        for mirror in (lite, shared):
            with transaction(mirror.db):
                assert mirror.tables.undo_after(middle) > 0
        assert shared.dump() == lite.dump() == before
