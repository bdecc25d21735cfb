"""`ape run qos --database URL`: the same tables from the shared mirror an indexer writes
into Postgres as from the node's logs; an indexer trailing the chain is said in one line
on stderr; a database no indexer wrote is refused in one line."""

from __future__ import annotations

import json

import pytest

from provingmarket.chain.client import RegistryClient
from provingmarket.chain.mirror import Mirror
from provingmarket.cli import DEPLOYMENTS_ENV
from tests.cli.test_qos_command import call, record_local, served  # noqa: F401 (a fixture)


def test_qos_from_the_shared_mirror__the_same_tables_as_from_the_logs__a_lag_said(
    registry,
    served,  # noqa: F811 (the fixture imported above)
    verifier,
    market,
    chain,
    tmp_path,
    monkeypatch,
    capsys,
    postgres_server,  # noqa: F811
):
    folder = tmp_path / "deployments"
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(folder))
    record_local(registry, verifier, chain, folder, [market])
    url = postgres_server.create_database("qos_shared")
    with Mirror(url, RegistryClient(chain.provider.web3, registry.address), 0) as indexer:
        indexer.sync()
    capsys.readouterr()

    call(as_json=True)
    from_logs = json.loads(capsys.readouterr().out)
    call(as_json=True, database=url)
    shared = capsys.readouterr()
    assert json.loads(shared.out) == from_logs and from_logs["tasks"] >= 3
    assert shared.err == ""

    for _ in range(10):  # the chain moves on, the indexer does not
        chain.provider.web3.provider.make_request("evm_mine", [])
    call(as_json=True, database=url)
    lagging = capsys.readouterr()
    assert json.loads(lagging.out) == from_logs
    [line] = lagging.err.strip().splitlines()
    assert (
        line.startswith("warning: the shared mirror at postgresql://") and "blocks behind the chain" in line
    )

    empty = postgres_server.create_database("qos_empty")
    with pytest.raises(SystemExit):
        call(database=empty)
    assert "holds no mirror yet: start the indexer on it first" in capsys.readouterr().err
