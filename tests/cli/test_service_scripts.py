"""The `ape run` wrappers of the long-running processes: `-h` prints their help, which
names --config and each option's PROVINGMARKET_<PROCESS>_<OPTION> variable."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.factories import load_script


@pytest.mark.parametrize(
    "script, args, variables",
    [
        ("orderbook", [], "PROVINGMARKET_ORDERBOOK_"),
        ("auction", [], "PROVINGMARKET_AUCTION_"),
        ("election", [], None),
        ("election", ["run"], "PROVINGMARKET_ELECTION_"),
        ("election", ["verify"], None),
        ("agent", [], "PROVINGMARKET_AGENT_"),
    ],
)
def test_ape_run_script__dash_h__prints_its_help(script, args, variables):
    result = CliRunner().invoke(load_script(script).cli, [*args, "-h"], prog_name=f"ape run {script}")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ape run") and "-h, --help" in result.output
    if variables is not None:
        assert "--config FILE" in result.output
        assert f"{variables}CONFIG" in result.output and f"{variables}METRICS_PORT" in result.output
