"""The project as an installed package: built and installed from its own files (no other
file of the checkout), run from a directory outside the checkout with only the installed
package on PYTHONPATH (its dependencies from the running virtualenv). Every long-running
process starts from its entry point, and the package data (the registry's ABI, the sample
circuits, the snarkjs script) is found where it was installed."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from provingmarket.chain.client import REGISTRY_ABI

ROOT = Path(__file__).resolve().parents[1]
# What a build reads; copied, so that a build never leaves files in the checkout.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "provingmarket", "frontends", "explorer")
# Each entry point and the start of its --help.
PROCESSES = {
    "proving-market-agent": "Prove what the registry assigns to one prover",
    "proving-market-orderbook": "Match open tasks with provers' asks",
    "proving-market-auction": "Run sealed-bid second-price auctions",
    "proving-market-election": "Elect provers at random",
    "proving-market-explorer": "Serve the explorer's pages over a keeper's mirror",
    "proving-market-double-auction": "Clear open tasks and provers' asks together at one price per market",
}
# Run once by Python with only the installed package on its path: each entry point's --help
# (in this one process, so that the dependencies are imported once), and where the package
# found itself and its data.
PROBE = """
import contextlib, io, json
from importlib.metadata import distribution

import provingmarket
from provingmarket import deployments
from provingmarket.chain.client import registry_abi
from provingmarket.proving.backends import SNARKJS_PROVE
from provingmarket.proving.circuits import Circuit, sample_circuits
from explorer.app import HERE as EXPLORER

helps = {}
for entry in distribution("proving-market").entry_points.select(group="console_scripts"):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        entry.load()(["--help"])
    helps[entry.name] = " ".join(out.getvalue().split())
square = Circuit.load("square")
print(json.dumps({
    "helps": helps,
    "package": provingmarket.__file__,
    "events": sorted(item["name"] for item in registry_abi() if item["type"] == "event"),
    "circuits": sample_circuits(),
    "square": [str(square.path), square.verifying_key().public_inputs],
    "sources": [square.source.is_file(), (square.path.parent / "lib" / "square.circom").is_file()],
    "snarkjs_prove": [str(SNARKJS_PROVE), SNARKJS_PROVE.is_file()],
    "deployments": str(deployments.default_folder()),
    "explorer": [
        str(EXPLORER),
        (EXPLORER / "templates" / "base.html").is_file(),
        (EXPLORER / "static" / "style.css").is_file(),
    ],
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the prefix it is installed in, an environment that sees only it, a working directory)."""
    tmp = tmp_path_factory.mktemp("package")
    (tmp / "source").mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tmp / "source" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, tmp / "source" / name)
    prefix = tmp / "prefix"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        + ["--no-build-isolation", "--no-compile", "--prefix", str(prefix), str(tmp / "source")],
        check=True,
        capture_output=True,
    )
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PROVINGMARKET_"))}
    (tmp / "elsewhere").mkdir()
    return prefix, dict(env, PYTHONPATH=site), tmp / "elsewhere"


@pytest.fixture(scope="module")
def found(installed) -> dict:
    """What `PROBE` saw, run outside the checkout."""
    _, env, cwd = installed
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_entry_points__installed__each_process_prints_its_help(installed, found):
    prefix, env, cwd = installed
    assert set(found["helps"]) == set(PROCESSES)
    for name, start in PROCESSES.items():
        assert (prefix / "bin" / name).is_file(), name
        assert "Usage:" in found["helps"][name] and start in found["helps"][name], found["helps"][name]
    # One of the scripts pip wrote, run for real (each takes seconds to import its dependencies).
    run = subprocess.run(
        [prefix / "bin" / "proving-market-orderbook", "--help"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and PROCESSES["proving-market-orderbook"] in " ".join(run.stdout.split())


def test_package_data__installed__abi_circuits_and_explorer_pages_found_outside_the_checkout(
    installed, found
):
    site = Path(installed[1]["PYTHONPATH"])
    samples = site / "provingmarket" / "proving" / "samples"
    assert Path(found["package"]).is_relative_to(site)
    assert {"TaskPosted", "TaskAssigned", "TaskProven"} <= set(found["events"])
    assert found["circuits"] == ["square", "square-plonk", "squarings-1000", "squarings-10000"]
    assert found["square"] == [str(samples / "square"), 2]
    assert found["sources"] == [True, True]
    assert found["snarkjs_prove"] == [str(samples / "snarkjs-prove.sh"), True]
    assert found["deployments"] == "deployments"  # the working directory's
    assert found["explorer"] == [str(site / "explorer"), True, True]  # its pages' templates and style


def test_registry_abi__shipped__matches_the_compiled_registry(project):
    compiled = project.Registry.contract_type.model_dump(mode="json", by_alias=True)["abi"]
    assert json.loads(REGISTRY_ABI.read_text()) == compiled, (
        f"{REGISTRY_ABI.relative_to(ROOT)} differs from the compiled registry: `make compile`, then commit it"
    )
