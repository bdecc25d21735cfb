"""`ape run indexer`: its help, and a database it cannot reach refused in one line (exit 1)
before anything runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from provingmarket.cli import DEPLOYMENTS_ENV
from tests.factories import load_script

indexer_script = load_script("indexer")


def test_dash_h__prints_its_help():
    done = CliRunner().invoke(indexer_script.cli, ["-h"], prog_name="indexer")
    assert done.exit_code == 0 and done.output.startswith("Usage: indexer")
    assert "--database URL" in done.output


def test_a_database_that_does_not_answer__one_line__exit_1(recorded, deployments_folder, monkeypatch, capsys):
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(deployments_folder))
    command = indexer_script.cli
    values = {p.name: p.default for p in command.params if p.name not in ("network", "provider_settings")}
    with pytest.raises(SystemExit) as exited:
        command.callback(**(values | {"database": "postgresql://nobody@127.0.0.1:1/market"}))
    assert exited.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot open postgresql://nobody@127.0.0.1:1/market: ")
    assert line.endswith("check the URL and that the server is up")
