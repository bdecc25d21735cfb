"""Settings of a long-running process: the --config file, environment variables and flags,
in that order of strength, on the real commands; -h on every process's command."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from frontends.orderbook.process import main as orderbook
from tests.factories import ROOT


def settings(args: list[str], env: dict[str, str], monkeypatch) -> dict:
    """What the orderbook command would run with (parsed, not run)."""
    for option in ("POLL", "DB", "MECHANISM"):
        name = f"PROVINGMARKET_ORDERBOOK_{option}"
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return orderbook.make_context("orderbook", list(args)).params  # click consumes the list


def test_config__flag_beats_environment_beats_file_beats_default(tmp_path, monkeypatch):
    config = tmp_path / "orderbook.toml"
    config.write_text(
        'deployment = "d.json"\ndata-dir = "file-data"\nmechanism = 3\npoll = 2.5\nmetrics-port = 9464\n'
    )
    base = ["--config", str(config)]

    from_file = settings(base, {}, monkeypatch)
    assert (from_file["poll"], from_file["data_dir"], from_file["mechanisms"]) == (2.5, "file-data", (3,))
    assert from_file["metrics_port"] == 9464 and from_file["confirmations"] == 0  # the default

    env = {"PROVINGMARKET_ORDERBOOK_POLL": "4", "PROVINGMARKET_ORDERBOOK_MECHANISM": "5 6"}
    from_env = settings(base, env, monkeypatch)
    assert (from_env["poll"], from_env["mechanisms"], from_env["data_dir"]) == (4.0, (5, 6), "file-data")

    from_flag = settings([*base, "--poll", "0.5"], {"PROVINGMARKET_ORDERBOOK_POLL": "4"}, monkeypatch)
    assert from_flag["poll"] == 0.5


def test_config__unknown_key__one_line_naming_the_key_and_the_file(tmp_path):
    config = tmp_path / "orderbook.toml"
    config.write_text('deployment = "d.json"\nmetrics_prot = 9464\n')
    with pytest.raises(click.ClickException) as raised:
        orderbook.make_context("orderbook", ["--config", str(config)])
    message = raised.value.format_message()
    assert "'metrics_prot'" in message and str(config) in message and "metrics-port" in message
    assert "\n" not in message


def test_config__command_line__unknown_key_is_one_line_and_exit_code_1(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text("pol = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "provingmarket.agent", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: unknown key 'pol' in {config}; the keys are the options without '--': "
        + done.stderr.split("without '--': ", 1)[1].strip()
    ]
    assert "poll" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["frontends.orderbook"],
        ["frontends.auction"],
        ["frontends.election"],
        ["frontends.election", "run"],
        ["provingmarket.agent"],
        ["frontends.orderbook.process"],
    ],
)
def test_dash_h__prints_the_help(command):
    done = subprocess.run(
        [sys.executable, "-m", *command, "-h"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: python -m {command[0]}")
    assert "-h, --help" in done.stdout


def test_deploy_examples__each_config_file_fits_its_command():
    from frontends.auction.process import main as auction
    from frontends.election.process import run as election
    from provingmarket.agent.main import command as agent
    from provingmarket.runtime.config import read_config

    for name, command in (
        ("orderbook", orderbook),
        ("auction", auction),
        ("election", election),
        ("agent", agent),
    ):
        path = ROOT / "deploy" / "config" / f"{name}.toml"
        params = command.make_context(name, ["--config", str(path)]).params
        assert read_config(command, path) and params["metrics_port"] and params["ready_lag"] == 5
    from provingmarket.proving.worker import command as worker

    path = ROOT / "deploy" / "config" / "worker.toml"
    params = worker.make_context("worker", ["--config", str(path)]).params
    assert params["url"].startswith("redis://") and params["processes"] == 2
    from explorer.__main__ import main as explorer

    path = ROOT / "deploy" / "config" / "explorer.toml"
    params = explorer.make_context("explorer", ["--config", str(path)]).params
    assert params["data_dir"] and params["port"] == 8080 and params["deployment"]


def test_deploy_dashboard__plots_metrics_the_processes_serve():
    import json
    import re

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "proving-market.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    # a metric's name after its process's prefix, without the series' suffix
    names = {n for e in exprs for n in re.findall(r"_([a-z_]+?)(?:_bucket|_total)?(?=[\"\\[{])", e)}
    source = "".join(
        p.read_text() for folder in ("frontends", "provingmarket") for p in (ROOT / folder).rglob("*.py")
    )
    missing = {n for n in names if f'"{n}' not in source and f'_{n}"' not in source}
    assert len(names) >= 15 and not missing
