"""`ape run explorer`: the explorer's pages for the network's registry, over a keeper's
mirror, served until SIGTERM (exit 0); without a mirror to read, one line saying what to
give."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import requests

from provingmarket.chain.client import RegistryClient
from provingmarket.chain.mirror import Mirror
from provingmarket.cli import DEPLOYMENTS_ENV


@pytest.mark.ape_run
def test_explorer__a_keepers_mirror__pages_served__sigterm_exit_0(
    chain, registry, market, recorded, deployments_folder, tmp_path
):
    client = RegistryClient.connect(chain.provider.uri, registry.address)
    keeper = tmp_path / "orderbook-keeper"
    keeper.mkdir()
    with Mirror(str(keeper / "mirror.sqlite"), client, start_block=0) as mirror:
        mirror.sync()  # what a keeper's round does
    env = dict(os.environ, **{DEPLOYMENTS_ENV: str(deployments_folder)})
    argv = [
        "ape",
        "run",
        "explorer",
        "--data-dir",
        str(keeper),
        "--port",
        "0",
        "--network",
        chain.provider.uri,
    ]
    explorer = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert explorer.stdout is not None
        line = explorer.stdout.readline()
        assert line, explorer.stderr.read() if explorer.stderr else ""
        url = json.loads(line)["url"]
        assert url.startswith("http://127.0.0.1:")
        overview = requests.get(url, timeout=10)
        assert overview.status_code == 200
        assert f'<tr data-market="{market}">' in overview.text
        assert "square" in overview.text  # the record names the market's circuit
        head = requests.get(url + "healthz", timeout=10).json()
        assert head["ok"] and head["cursor"] >= 0
    finally:
        explorer.send_signal(signal.SIGTERM)
        code = explorer.wait(30)
    assert code == 0


def test_explorer__no_keeper_mirror_of_this_chain__one_line_exit_1(run, recorded, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    refused = run("explorer", "--port", "0")
    assert refused.code == 1
    assert refused.error.startswith("error: no keeper mirror of chain ") and "--data-dir" in refused.error
