"""Commands run as a user runs them, against this test session's anvil, with deployment
records in a folder of the test's own: in this process by default (the script's click
command invoked with ape already connected, its `--network` resolving to the session's
provider, `--account` as given; about 4 s faster a command than a subprocess), or as
`ape run <script> ... --network <the node's URI>` in a subprocess for tests marked
`ape_run` (the end-to-end checks; ape calls that network ethereum:custom)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import threading
import traceback
from dataclasses import dataclass

import pytest
from ape.api.networks import ProviderContextManager
from ape.managers.networks import NetworkManager
from click.testing import CliRunner

from provingmarket import deployments
from provingmarket.cli import DEPLOYMENTS_ENV, network_name
from provingmarket.deployments import Deployment, MarketRecord
from tests.factories import UNBONDING_DELAY, load_script


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
        """stdout as JSON, all of it: `--json` prints nothing else there."""
        return json.loads(self.out)


@pytest.fixture
def deployments_folder(tmp_path):
    return tmp_path / "deployments"


@pytest.fixture
def as_subprocess(request) -> bool:
    """Whether this test runs its commands as `ape run` subprocesses (marked ape_run)."""
    return request.node.get_closest_marker("ape_run") is not None


@pytest.fixture
def recorded(registry, market, verifier, chain, deployments_folder, as_subprocess):
    """The session's registry and its square market, recorded as `ape run operator
    deploy` and `market create` would record them for the network the commands see."""
    record = Deployment(
        network="ethereum:custom" if as_subprocess else network_name(),
        chain_id=chain.chain_id,
        registry=registry.address,
        block=0,
        unbonding_delay=UNBONDING_DELAY,
        markets={market: MarketRecord("square", verifier.address)},
    )
    deployments.save(record, deployments_folder)
    return record


@pytest.fixture
def run(chain, deployments_folder, as_subprocess):
    """run("prover", "stake", "1", account="TEST::2") -> Result."""

    def invoke(script: str, *args: str, account: str | None = None, timeout: int = 300) -> Result:
        options = [*args] + (["--account", account] if account is not None else [])
        if as_subprocess:
            return ape_run(script, options, chain.provider.uri, deployments_folder, timeout)
        return in_process(script, options, chain.provider, deployments_folder)

    return invoke


def ape_run(script: str, options: list[str], uri: str, folder, timeout: int) -> Result:
    """`ape run <script> <options> --network <uri>` in a subprocess."""
    argv = ["ape", "run", script, *options, "--network", uri]
    env = dict(os.environ, **{DEPLOYMENTS_ENV: str(folder)})
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    return Result(done.returncode, done.stdout, done.stderr)


# In-process commands swap sys.stdout and sys.stderr: one at a time, even when a test runs
# several from threads (as it may with subprocesses).
ONE_AT_A_TIME = threading.Lock()


@functools.cache
def script_command(script: str):
    """The click command of scripts/<script>.py, loaded once a session."""
    return load_script(script, f"cli_{script}_script").cli


def in_process(script: str, options: list[str], provider, folder) -> Result:
    """The script's command invoked here, its --network resolving to `provider` (the test
    session's, already connected, left connected after the command)."""
    with ONE_AT_A_TIME, pytest.MonkeyPatch.context() as patch:
        disconnects = dict(ProviderContextManager.disconnect_map)
        patch.setenv(DEPLOYMENTS_ENV, str(folder))
        patch.setattr(NetworkManager, "get_provider_from_choice", lambda self, *_, **__: provider)
        try:
            done = CliRunner(mix_stderr=False).invoke(
                script_command(script), [*options, "--network", "ethereum:local"], prog_name=script
            )
        finally:
            ProviderContextManager.disconnect_map.update(disconnects)
    err = done.stderr
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        err += "".join(traceback.format_exception(done.exception))
    return Result(done.exit_code, done.stdout, err)
