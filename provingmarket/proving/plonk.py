"""PLONK (snarkjs) as a second proving system: its verifying key, its proofs as the bytes the
on-chain verifier reads, and that verifier.

A PLONK circuit's folder holds what a Groth16 one does (circuits.py): circuit.zkey is a
snarkjs PLONK proving key (`snarkjs plonk setup`, on a universal Powers of Tau and with no
phase 2), verification_key.json its verifying key (protocol "plonk").

The proof is 24 big-endian 32-byte words, 768 bytes, in the order of snarkjs's Solidity
verifier's `verifyProof(uint256[24] _proof, ...)` (and of `snarkjs zkey export
soliditycalldata`): the commitments A, B, C, Z, T1, T2, T3, Wxi, Wxiw as G1 points (x, y),
then the evaluations a, b, c, s1, s2, zw.

The on-chain verifier is snarkjs's generated PlonkVerifier for the circuit's key (`snarkjs
zkey export solidityverifier`), with a small adapter (ADAPTER below) that puts it behind the
registry's IVerifier, `verify(uint256[], bytes) -> bool`. The registry does not deploy it
from a blueprint, so a market on it is custom: provers opt in by its code hash.
`verifier_contract` compiles it with solc from node_modules and caches the result by the
key's hash in .cache/plonk-verifiers/ (not committed).

snarkjs's templates are GPL-3.0: the Solidity verifier is generated from the installed
snarkjs when needed and never committed here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from provingmarket.proving.circuits import (
    MAX_PUBLIC_INPUTS,
    CircuitError,
    P,
    R,
    _on_g1,
    _read_json,
    _SnarkjsKey,
)
from provingmarket.proving.solidity import NODE_MODULES, ROOT, SolidityError, compile_solidity

PROOF_POINTS = ("A", "B", "C", "Z", "T1", "T2", "T3", "Wxi", "Wxiw")
PROOF_EVALUATIONS = ("eval_a", "eval_b", "eval_c", "eval_s1", "eval_s2", "eval_zw")
PROOF_WORDS = 2 * len(PROOF_POINTS) + len(PROOF_EVALUATIONS)  # 24
PROOF_SIZE = 32 * PROOF_WORDS  # 768 bytes

KEY_POINTS = ("Qm", "Ql", "Qr", "Qo", "Qc", "S1", "S2", "S3")
TWO_ADICITY = 28  # BN254's scalar field has roots of unity of order up to 2^28

# ------------------------------------------------------------------ verifying key


@dataclass(frozen=True)
class PlonkKey:
    """A snarkjs PLONK verifying key: G1 points as (x, y) ((0, 0) at infinity), X_2 in
    EIP-197 order (x.c1, x.c0, y.c1, y.c0)."""

    public_inputs: int  # nPublic
    power: int  # the domain has 2^power rows
    k1: int
    k2: int
    omega: int  # w: a primitive 2^power-th root of unity
    points: dict[str, tuple[int, int]] = field(hash=False)  # Qm, Ql, Qr, Qo, Qc, S1, S2, S3
    x2: tuple[int, int, int, int]

    @classmethod
    def from_snarkjs(cls, data: object, source: str = "verifying key") -> PlonkKey:
        """Read snarkjs's PLONK verification_key.json shape; `source` names the file in errors."""
        read = _PlonkKeyReader(source)
        fields = read.fields(data)
        n_public = read.count(fields["nPublic"])
        power = read.power(fields["power"])
        omega = read.omega(fields["w"], power)
        k1, k2 = read.cosets(fields["k1"], fields["k2"], power)
        points = {name: read.g1(fields[name], name) for name in KEY_POINTS}
        return cls(n_public, power, k1, k2, omega, points, read.g2(fields["X_2"], "X_2"))

    @classmethod
    def load(cls, path: Path | str) -> PlonkKey:
        path = Path(path)
        return cls.from_snarkjs(_read_json(path), str(path))


class _PlonkKeyReader(_SnarkjsKey):
    """The checks `PlonkKey.from_snarkjs` makes, each raising a CircuitError that starts
    with the file's name (the point and coordinate checks are the Groth16 reader's)."""

    FIELDS = ("nPublic", "power", "k1", "k2", "w", *KEY_POINTS, "X_2")

    def fields(self, data: object) -> dict[str, object]:
        """The key's JSON object: a PLONK key over BN254 with every field present."""
        if not isinstance(data, dict):
            raise self.fail("expected a JSON object (snarkjs verification_key.json)")
        if data.get("protocol") != "plonk":
            raise self.fail(f"protocol is {data.get('protocol')!r}, expected 'plonk'")
        if data.get("curve") not in ("bn128", "bn254"):
            raise self.fail(f"curve is {data.get('curve')!r}, expected 'bn128' (BN254)")
        for name in self.FIELDS:
            if name not in data:
                raise self.fail(f"{name} is missing")
        return {str(name): value for name, value in data.items()}

    def count(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"nPublic is {value!r:.40}, not a whole number")
        if not 1 <= value <= MAX_PUBLIC_INPUTS:
            raise self.fail(f"nPublic is {value}; the verifier takes 1 to {MAX_PUBLIC_INPUTS} public inputs")
        return value

    def power(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 3 <= value <= TWO_ADICITY:
            raise self.fail(f"power is {value!r:.40}, expected a whole number from 3 to {TWO_ADICITY}")
        return value

    def scalar(self, value: object, where: str) -> int:
        """A scalar field element: a decimal string (or 0x-hex, or a JSON integer) below r."""
        try:
            if isinstance(value, str):
                n = int(value, 0) if value.startswith("0x") else int(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                n = value
            else:
                raise TypeError
        except (TypeError, ValueError):
            raise self.fail(f"{where} is {value!r:.40}, not a number") from None
        if not 0 <= n < R:
            raise self.fail(f"{where} is not below the scalar field modulus")
        return n

    def omega(self, value: object, power: int) -> int:
        w = self.scalar(value, "w")
        if pow(w, 2**power, R) != 1 or pow(w, 2 ** (power - 1), R) == 1:
            raise self.fail(f"w is not a primitive 2^{power}-th root of unity (power is {power})")
        return w

    def cosets(self, k1: object, k2: object, power: int) -> tuple[int, int]:
        """k1 and k2: the permutation argument's cosets k1*H and k2*H are apart from H and
        from each other (else the copy constraints do not bind)."""
        a, b = self.scalar(k1, "k1"), self.scalar(k2, "k2")
        n = 2**power
        if a == 0 or b == 0 or pow(a, n, R) == 1 or pow(b, n, R) == 1 or pow(a * pow(b, -1, R), n, R) == 1:
            raise self.fail("k1 and k2 do not give three distinct cosets of the domain")
        return a, b


# ------------------------------------------------------------------ proofs


def proof_from_snarkjs(data: object, source: str = "proof") -> bytes:
    """snarkjs's PLONK proof.json as the 768 bytes the verifier reads."""
    if not isinstance(data, dict):
        raise CircuitError(f"{source}: not a snarkjs PLONK proof (expected a JSON object)")
    if data.get("protocol", "plonk") != "plonk":
        raise CircuitError(f"{source}: protocol is {data.get('protocol')!r}, expected 'plonk'")
    missing = [name for name in (*PROOF_POINTS, *PROOF_EVALUATIONS) if name not in data]
    if missing:
        raise CircuitError(f"{source}: not a snarkjs PLONK proof ({', '.join(missing)} missing)")
    words: list[int] = []
    for name in PROOF_POINTS:
        point = data[name]
        if not isinstance(point, list) or len(point) not in (2, 3):
            raise CircuitError(f"{source}: {name} should be a G1 point [x, y, 1], got {point!r:.60}")
        x, y = (_word(c, f"{name}[{i}]", P, source) for i, c in enumerate(point[:2]))
        if len(point) == 3 and _word(point[2], name, P, source) != 1:
            raise CircuitError(f"{source}: {name} is not in affine form (z must be 1)")
        words += [x, y]
    words += [_word(data[name], name, R, source) for name in PROOF_EVALUATIONS]
    return b"".join(w.to_bytes(32, "big") for w in words)


def _word(value: object, where: str, modulus: int, source: str) -> int:
    """A JSON integer or a decimal string below `modulus`."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError
        n = int(value)
    except (TypeError, ValueError):
        raise CircuitError(f"{source}: {where} is {value!r:.40}, not a number") from None
    if not 0 <= n < modulus:
        field = "base" if modulus == P else "scalar"
        raise CircuitError(f"{source}: {where} is not below the {field} field modulus")
    return n


def proof_words(proof: bytes) -> list[int]:
    """The proof's 24 words (snarkjs's verifyProof `_proof` argument)."""
    return [int.from_bytes(proof[i : i + 32], "big") for i in range(0, len(proof), 32)]


def check_proof_shape(proof: bytes, source: str) -> None:
    """The proof is 768 bytes: nine G1 points on the curve (none at infinity: the verifier
    refuses those) with coordinates below p, then six evaluations below r; anything else
    is refused before it costs gas. Raises BackendError."""
    from provingmarket.proving.backends import BackendError  # backends imports this module

    if len(proof) != PROOF_SIZE:
        raise BackendError(
            f"{source}: PLONK proof is {len(proof)} bytes, expected {PROOF_SIZE} "
            f"({len(PROOF_POINTS)} points, {len(PROOF_EVALUATIONS)} evaluations)"
        )
    words = proof_words(proof)
    for i, name in enumerate(PROOF_POINTS):
        x, y = words[2 * i], words[2 * i + 1]
        if x >= P or y >= P:
            raise BackendError(f"{source}: PLONK proof point {name} has a coordinate not below p")
        if (x, y) == (0, 0) or not _on_g1(x, y):
            raise BackendError(f"{source}: PLONK proof point {name} is not on the BN254 curve")
    for name, value in zip(PROOF_EVALUATIONS, words[2 * len(PROOF_POINTS) :], strict=True):
        if value >= R:
            raise BackendError(f"{source}: PLONK proof evaluation {name} is not below r")


# ------------------------------------------------------------------ on-chain verifier

# Gas the verification (the self-call to snarkjs's verifyProof) needs at most. Measured on
# anvil with random proofs (snarkjs 0.7.6, solc 0.8.37): 257,834 to 262,410 for 2 public
# inputs on a domain of 2^3, 270,087 to 274,039 for 16 on 2^6; so a base, about 800 per
# input and a little per doubling of the domain, rounded up. The spread is the one modular
# inverse (an extended Euclid loop whose rounds depend on the proof: at most 366 for a
# 254-bit modulus, about 150 on average, at about 100 gas a round), for which
# INVERSE_MARGIN adds a whole worst-case loop. tests/chain/verifier/test_plonk_verifier.py
# checks a real proof's need against the bound.
VERIFY_GAS_BASE = 262_000
VERIFY_GAS_PER_INPUT = 1_000
VERIFY_GAS_PER_POWER = 100
INVERSE_MARGIN = 40_000

EVM_VERSION = "prague"  # what the Vyper contracts target (vyper 0.4.3's default)

ADAPTER_NAME = "PlonkMarketVerifier"

ADAPTER = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {PlonkVerifier} from "PlonkVerifier.sol";

/// @title PLONK verifier for the proving market (contracts/interfaces/IVerifier.vyi)
/// @notice snarkjs's PlonkVerifier for one key, behind `verify(uint256[], bytes)`. The
///         proof is 768 bytes: the 24 words of verifyProof's `_proof` (provingmarket/proving/plonk.py).
///         It answers False, never reverts, for a wrong number of public inputs, a proof of
///         another length, an input at or above the scalar field modulus, or a proof that
///         does not verify. It reverts, never answers False, when too little gas is left
///         for a verification: snarkjs's verifier answers False when a precompile call
///         fails, and a starved call would otherwise turn a valid proof into a rejection.
contract PlonkMarketVerifier is PlonkVerifier {
    uint256 internal constant PUBLIC_INPUTS = %(n)d;
    uint256 internal constant PROOF_BYTES = 768;
    /// Gas left before the self-call that lets verifyProof finish: its measured need
    /// times 64/63 (a call passes on at most 63/64 of what is left), plus the call.
    uint256 internal constant VERIFY_GAS = %(gas)d;

    function public_inputs() external pure returns (uint256) {
        return PUBLIC_INPUTS;
    }

    function verify_gas() external pure returns (uint256) {
        return VERIFY_GAS;
    }

    function verify(uint256[] calldata inputs, bytes calldata proof) external view returns (bool) {
        if (inputs.length != PUBLIC_INPUTS || proof.length != PROOF_BYTES) {
            return false;
        }
        uint256[%(n)d] memory signals;
        for (uint256 i = 0; i < PUBLIC_INPUTS; i++) {
            if (inputs[i] >= q) {
                return false;
            }
            signals[i] = inputs[i];
        }
        uint256[24] memory words = abi.decode(proof, (uint256[24]));
        require(gasleft() >= VERIFY_GAS, "verifier: out of gas");
        // An external call: verifyProof reads its arguments at fixed calldata offsets and
        // ends the call it runs in with an assembly return.
        return this.verifyProof(words, signals);
    }
}
"""


def verify_gas(key: PlonkKey) -> int:
    """VERIFY_GAS for a key (see ADAPTER)."""
    need = (
        VERIFY_GAS_BASE
        + VERIFY_GAS_PER_INPUT * key.public_inputs
        + VERIFY_GAS_PER_POWER * key.power
        + INVERSE_MARGIN
    )
    return need * 64 // 63 + 2_000


@dataclass(frozen=True)
class VerifierContract:
    """The compiled PLONK verifier (snarkjs's PlonkVerifier and the adapter) for one key."""

    name: str
    abi: list[dict]
    bytecode: str  # creation code, 0x-hex; the constructor takes no arguments
    public_inputs: int
    verify_gas: int
    solc: str

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "public_inputs": self.public_inputs,
            "verify_gas": self.verify_gas,
            "solc": self.solc,
        }


# Compiled verifiers, by key: in the checkout (git-ignored), or the user's cache folder
# when the package is installed elsewhere.
CACHE = (
    ROOT / ".cache" / "plonk-verifiers"
    if (ROOT / "pyproject.toml").exists()
    else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "proving-market" / "plonk-verifiers"
)


def snarkjs_command() -> list[str]:
    """snarkjs: $SNARKJS if set, else the checkout's (as samples/snarkjs-prove.sh finds it)."""
    found = os.environ.get("SNARKJS") or str(NODE_MODULES / ".bin" / "snarkjs")
    return ["node", found]


def _snarkjs(*argv: str | Path) -> None:
    command = [*snarkjs_command(), *(str(a) for a in argv)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        raise SolidityError(f"snarkjs {argv[0]} {argv[1]} did not run: {error}") from None
    if result.returncode != 0 or "[ERROR]" in result.stdout + result.stderr:
        tail = " ".join((result.stdout + result.stderr).split())[-400:]
        raise SolidityError(f"snarkjs {' '.join(str(a) for a in argv[:3])} failed: {tail}")


def verifier_contract(
    folder: Path | str,
    zkey: str = "circuit.zkey",
    verifying_key: str = "verification_key.json",
    cache: Path | None = CACHE,
) -> VerifierContract:
    """The PLONK verifier for the circuit in `folder`: its ABI and creation bytecode.
    Checks the verifying key (CircuitError), that the zkey holds the same key, generates
    snarkjs's Solidity verifier from the zkey and compiles it with the adapter; the result
    is cached by the zkey's hash in `cache` (None: no cache)."""
    folder = Path(folder)
    key_file, zkey_file = folder / verifying_key, folder / zkey
    key = PlonkKey.load(key_file)
    try:
        zkey_bytes = zkey_file.read_bytes()
    except FileNotFoundError:
        raise CircuitError(f"{zkey_file}: no such file") from None
    gas = verify_gas(key)
    adapter = ADAPTER % {"n": key.public_inputs, "gas": gas}
    digest = hashlib.sha256(
        b"\0".join([zkey_bytes, adapter.encode(), EVM_VERSION.encode(), _versions().encode()])
    ).hexdigest()
    cached = _cached(cache, digest)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="plonk-verifier-") as tmp:
        work = Path(tmp)
        _snarkjs("zkey", "export", "verificationkey", zkey_file, work / "vk.json")
        if PlonkKey.load(work / "vk.json") != key:
            raise CircuitError(f"{zkey_file}: holds another key than {key_file}; regenerate both")
        _snarkjs("zkey", "export", "solidityverifier", zkey_file, work / "PlonkVerifier.sol")
        solidity = (work / "PlonkVerifier.sol").read_text()
    version, compiled = compile_solidity(
        {"PlonkVerifier.sol": solidity, f"{ADAPTER_NAME}.sol": adapter}, EVM_VERSION
    )
    built = compiled[f"{ADAPTER_NAME}.sol"]
    contract = VerifierContract(
        built["name"], built["abi"], "0x" + built["bytecode"], key.public_inputs, gas, version
    )
    _store(cache, digest, contract)
    return contract


def _versions() -> str:
    """The snarkjs and solc packages' versions, part of the cache key."""
    found = []
    for package in ("snarkjs", "solc"):
        try:
            found.append(json.loads((NODE_MODULES / package / "package.json").read_text())["version"])
        except (OSError, ValueError, KeyError):
            found.append("?")
    return " ".join(found)


def _cached(cache: Path | None, digest: str) -> VerifierContract | None:
    if cache is None:
        return None
    try:
        data = json.loads((cache / f"{digest}.json").read_text())
        return VerifierContract(**data)
    except (OSError, ValueError, TypeError):
        return None


def _store(cache: Path | None, digest: str, contract: VerifierContract) -> None:
    """Write the cache entry whole (a temporary file renamed), or not at all."""
    if cache is None:
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache, suffix=".tmp", delete=False) as out:
            json.dump(contract.as_json(), out)
        os.replace(out.name, cache / f"{digest}.json")
    except OSError:
        pass  # a cache only: the next call compiles again
