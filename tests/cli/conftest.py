"""Commands run as a user runs them: `ape run <script> ...` in a subprocess, against this
test session's anvil (`--network <its URI>`), with deployment records in a folder of the
test's own."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

import pytest

from provingmarket import deployments
from provingmarket.cli import DEPLOYMENTS_ENV
from provingmarket.deployments import Deployment, MarketRecord
from tests.factories import UNBONDING_DELAY


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The command's own error lines (ape's warnings and log lines left out)."""
        return "\n".join(line for line in self.err.splitlines() if line.startswith("error:"))

    def json(self):
        return json.loads(self.out[self.out.index("{") if "{" in self.out else self.out.index("[") :])


@pytest.fixture
def deployments_folder(tmp_path):
    return tmp_path / "deployments"


@pytest.fixture
def recorded(registry, market, verifier, chain, deployments_folder):
    """The session's registry and its square market, recorded as `ape run operator
    deploy` and `market create` would record them for the network the commands see."""
    record = Deployment(
        network="ethereum:custom",  # what ape calls a network given by URI
        chain_id=chain.chain_id,
        registry=registry.address,
        block=0,
        unbonding_delay=UNBONDING_DELAY,
        markets={market: MarketRecord("square", verifier.address)},
    )
    deployments.save(record, deployments_folder)
    return record


@pytest.fixture
def run(chain, deployments_folder):
    """run("prover", "stake", "1", account="TEST::2") -> Result."""

    def invoke(script: str, *args: str, account: str | None = None, timeout: int = 300) -> Result:
        argv = ["ape", "run", script, *args, "--network", chain.provider.uri]
        if account is not None:
            argv += ["--account", account]
        env = dict(os.environ, **{DEPLOYMENTS_ENV: str(deployments_folder)})
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        return Result(done.returncode, done.stdout, done.stderr)

    return invoke
