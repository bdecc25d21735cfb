"""Circuits written in a test, as a user would bring one: circom source compiled with
circom2 from node_modules, keys from a snarkjs Groth16 setup. The setup runs in one node
process (snarkjs's API; its CLI would start node five times) on a single-party Powers of
Tau of 2^POWER: for tests only, like circuits/build.py's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "node_modules" / ".bin"

SETUP_JS = """
const { createRequire } = require("module");
const fs = require("fs");
const [nodeModules, out, power] = process.argv.slice(2);
const snarkjs = createRequire(nodeModules + "/")("snarkjs");
(async () => {
  const curve = await snarkjs.curves.getCurveFromName("bn128");
  await snarkjs.powersOfTau.newAccumulator(curve, Number(power), `${out}/0.ptau`);
  await snarkjs.powersOfTau.contribute(`${out}/0.ptau`, `${out}/1.ptau`, "test", "entropy one");
  await snarkjs.powersOfTau.preparePhase2(`${out}/1.ptau`, `${out}/final.ptau`);
  await snarkjs.zKey.newZKey(`${out}/circuit.r1cs`, `${out}/final.ptau`, `${out}/0.zkey`);
  await snarkjs.zKey.contribute(`${out}/0.zkey`, `${out}/circuit.zkey`, "test", "entropy two");
  const key = await snarkjs.zKey.exportVerificationKey(`${out}/circuit.zkey`);
  fs.writeFileSync(`${out}/verification_key.json`, JSON.stringify(key));
  for (const name of ["0.ptau", "1.ptau", "final.ptau", "0.zkey"]) fs.unlinkSync(`${out}/${name}`);
  await curve.terminate();
  process.exit(0);
})().catch((error) => { console.error(error); process.exit(1); });
"""


def compile_circom(source: str, folder: Path) -> Path:
    """circuit.circom, circuit.r1cs and circuit.wasm in `folder` (circom2 --O2, as
    circuits/build.py compiles)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "circuit.circom").write_text(source)
    argv = [str(BIN / "circom2"), "circuit.circom", "--r1cs", "--wasm", "--O2", "-o", "."]
    subprocess.run(argv, cwd=folder, check=True, capture_output=True, timeout=120)
    shutil.copy(folder / "circuit_js" / "circuit.wasm", folder / "circuit.wasm")
    return folder


def groth16_setup(folder: Path, power: int = 3) -> Path:
    """circuit.zkey and verification_key.json for `folder`'s circuit.r1cs."""
    script = folder / "setup.js"
    script.write_text(SETUP_JS)
    subprocess.run(
        ["node", str(script), str(ROOT / "node_modules"), str(folder), str(power)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    script.unlink()
    return folder


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / "circuit.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path
