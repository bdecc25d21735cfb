"""Compile Solidity with solc, the npm package in the checkout's node_modules (package.json
pins it, so this runs offline): snarkjs's generated verifiers and the PLONK adapter
(plonk.py), and the bench's reference verifiers (scripts/bench.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from provingmarket.errors import ProvingMarketError

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout
NODE_MODULES = ROOT / "node_modules"

# solc (the npm package) on a standard-JSON request from stdin; prints its version and output.
SOLC_SCRIPT = """
const solc = require("solc");
let request = "";
process.stdin.on("data", (chunk) => (request += chunk));
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(solc.compile(request))}));
});
"""


class SolidityError(ProvingMarketError, RuntimeError):
    """Solidity did not compile (or solc could not run); the message says why."""


def compile_solidity(
    sources: dict[str, str], evm_version: str | None = None, timeout: float = 300.0
) -> tuple[str, dict[str, dict]]:
    """Compile Solidity sources (name -> text; they may import each other by name) with
    solc from node_modules, optimizer on, for `evm_version` (None: solc's default).
    Returns solc's version and, per source, its one contract's {"name", "abi", "bytecode"}
    (creation bytecode, hex without 0x); raises SolidityError with solc's first error."""
    settings: dict[str, object] = {
        "optimizer": {"enabled": True, "runs": 200},
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
    }
    if evm_version is not None:
        settings["evmVersion"] = evm_version
    request = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": settings,
    }
    answer = _run_solc(json.dumps(request), timeout)
    output, version = answer["output"], answer["version"].split(".Emscripten")[0]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        first = errors[0].get("formattedMessage") or errors[0].get("message") or errors[0]
        raise SolidityError(f"solc {version}: {' '.join(str(first).split())}")
    compiled = {}
    for source in sources:
        contracts = output.get("contracts", {}).get(source, {})
        if len(contracts) != 1:
            raise SolidityError(f"solc {version}: {source} holds {len(contracts)} contracts, expected one")
        ((name, contract),) = contracts.items()
        compiled[source] = {
            "name": name,
            "abi": contract["abi"],
            "bytecode": contract["evm"]["bytecode"]["object"],
        }
    return version, compiled


def _run_solc(request: str, timeout: float) -> dict:
    if not (NODE_MODULES / "solc").is_dir():
        raise SolidityError(f"solc not found in {NODE_MODULES} (npm ci in the checkout installs it)")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    try:
        result = subprocess.run(
            ["node", "-e", SOLC_SCRIPT],
            input=request,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise SolidityError("node not found: solc runs on Node.js") from None
    except subprocess.TimeoutExpired:
        raise SolidityError(f"solc took more than {timeout:g} s") from None
    if result.returncode != 0:
        tail = " ".join((result.stdout + result.stderr).split())[-500:]
        raise SolidityError(f"solc failed with exit code {result.returncode}: {tail}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SolidityError(f"solc wrote no JSON: {result.stdout[:200]!r}") from None
