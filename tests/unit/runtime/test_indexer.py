"""The indexer's command (provingmarket/runtime/indexer.py): its example settings file fits
it, `-h` prints its help, and what is wrong before it starts is one line and exit code 1."""

from __future__ import annotations

import pytest

from tests.factories import ROOT


def test_deploy_example__indexer_toml_fits_the_command():
    from provingmarket.runtime.config import read_config
    from provingmarket.runtime.indexer import command

    path = ROOT / "deploy" / "config" / "indexer.toml"
    params = command.make_context("indexer", ["--config", str(path)]).params
    assert read_config(command, path) and params["database"].startswith("postgresql://")
    assert params["metrics_port"] and params["ready_lag"] == 5 and params["confirmations"] == 2


def test_dash_h__help__and_a_missing_deployment__one_line_exit_1(tmp_path, capsys):
    from provingmarket.runtime.indexer import main

    with pytest.raises(SystemExit) as helped:
        main(["-h"])
    assert helped.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("Usage: python -m provingmarket.runtime.indexer")
    assert "--database" in shown and "PROVINGMARKET_INDEXER_DATABASE" in shown
    missing = tmp_path / "nothing.json"
    with pytest.raises(SystemExit) as exited:
        main(["--rpc", "http://127.0.0.1:1", "--deployment", str(missing), "--database", "postgresql://x/y"])
    assert exited.value.code == 1
    assert (
        capsys.readouterr().err
        == f"error: no deployment record at {missing}; deploy first: ape run operator deploy\n"
    )
