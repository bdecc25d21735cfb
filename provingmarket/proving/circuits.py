"""Circuits a market proves, their verifying keys and the proof encoding the verifier reads.

A circuit lives in a folder of its own, described by its manifest, `circuit.json`
(docs/circuits.md; `manifest.py` is its model): the proving system, the key files, the
public signals in order with which are outputs, the inputs a requester supplies, which
public signal carries the prover's address, the binding, and a sample. The sample circuits
ship with the package, in provingmarket/proving/samples/ (circuits/README.md says how they
were made); load one by name: `Circuit.load("square")`.

Reading a key, encoding it for the on-chain verifier and building a task's public inputs
is plain Python over those files (the witness generator runs in-process, `witness.py`); no
proving library is needed. Bad files raise `CircuitError` naming the file and the field.
"""

from __future__ import annotations

import atexit
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from provingmarket.errors import ProvingMarketError
from provingmarket.formats import inputs_commitment
from provingmarket.proving.manifest import InputType, Manifest, ManifestError, read_manifest
from provingmarket.proving.witness import WitnessError, WitnessGenerator

# BN254: base field (coordinates) and scalar field (public inputs).
P = 21888242871839275222246405745257275088696311157297823662689037894645226208583
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
MAX_PUBLIC_INPUTS = 16  # the verifier's and the registry's bound
PROOF_SIZE = 256  # A, B, C as eight 32-byte words

# The sample circuits (square, squarings-1000, squarings-10000), their templates (lib/) and
# the snarkjs prover script: package data, found wherever the package is installed.
CIRCUITS = Path(__file__).resolve().parent / "samples"


class CircuitError(ProvingMarketError, ValueError):
    """A circuit's files, or inputs given for it, are not usable; the message says which and why."""


class UnconstrainedInput(CircuitError):
    """A verifying key whose point for public signal `index` is at infinity: any value of
    that signal verifies."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


# ------------------------------------------------------------------ curve checks (no pairing)


def _on_g1(x: int, y: int) -> bool:
    return (x, y) == (0, 0) or (x < P and y < P and (y * y - x * x * x - 3) % P == 0)


def _fp2_mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return ((a[0] * b[0] - a[1] * b[1]) % P, (a[0] * b[1] + a[1] * b[0]) % P)


# The twist: y^2 = x^3 + 3 / (9 + u)
_TWIST_B = (
    19485874751759354771024239261021720505790618469301721065564631296452457478373,
    266929791119991161246907387137283842545076965332900288569378510910307636690,
)


def _on_g2(x: tuple[int, int], y: tuple[int, int]) -> bool:
    if any(c >= P for c in (*x, *y)):
        return False
    lhs = _fp2_mul(y, y)
    x3 = _fp2_mul(_fp2_mul(x, x), x)
    return lhs == ((x3[0] + _TWIST_B[0]) % P, (x3[1] + _TWIST_B[1]) % P)


# ------------------------------------------------------------------ verifying key


@dataclass(frozen=True)
class VerifyingKey:
    """A Groth16 verifying key in the on-chain verifier's form: G1 as (x, y), G2 in
    EIP-197 order (x.c1, x.c0, y.c1, y.c0)."""

    alpha: tuple[int, int]
    beta: tuple[int, int, int, int]
    gamma: tuple[int, int, int, int]
    delta: tuple[int, int, int, int]
    ic: tuple[tuple[int, int], ...]

    @property
    def public_inputs(self) -> int:
        return len(self.ic) - 1

    def constructor_args(self) -> tuple:
        """Arguments for contracts/verifiers/Groth16Verifier.vy's constructor."""
        return (
            list(self.alpha),
            list(self.beta),
            list(self.gamma),
            list(self.delta),
            [list(p) for p in self.ic],
        )

    @classmethod
    def from_snarkjs(cls, data: object, source: str = "verifying key") -> VerifyingKey:
        """Read snarkjs's verification_key.json shape; `source` names the file in errors."""
        read = _SnarkjsKey(source)
        fields = read.fields(data)
        ic = read.ic(fields["IC"], fields["nPublic"])
        alpha = read.alpha(fields["vk_alpha_1"])
        gamma, delta = read.gamma_delta(fields["vk_gamma_2"], fields["vk_delta_2"])
        return cls(
            alpha=alpha, beta=read.g2(fields["vk_beta_2"], "vk_beta_2"), gamma=gamma, delta=delta, ic=ic
        )

    @classmethod
    def load(cls, path: Path | str) -> VerifyingKey:
        path = Path(path)
        return cls.from_snarkjs(_read_json(path), str(path))


class _SnarkjsKey:
    """The checks `VerifyingKey.from_snarkjs` makes of a snarkjs verification_key.json,
    each raising a CircuitError that starts with `source`."""

    FIELDS = ("vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC", "nPublic")

    def __init__(self, source: str):
        self.source = source

    def fail(self, what: str) -> CircuitError:
        return CircuitError(f"{self.source}: {what}")

    def fields(self, data: object) -> dict[str, object]:
        """The key's JSON object: a Groth16 key over BN254 with every field present."""
        if not isinstance(data, dict):
            raise self.fail("expected a JSON object (snarkjs verification_key.json)")
        if data.get("protocol") != "groth16":
            raise self.fail(f"protocol is {data.get('protocol')!r}, expected 'groth16'")
        if data.get("curve") not in ("bn128", "bn254"):
            raise self.fail(f"curve is {data.get('curve')!r}, expected 'bn128' (BN254)")
        for name in self.FIELDS:
            if name not in data:
                raise self.fail(f"{name} is missing")
        return {str(name): value for name, value in data.items()}

    def number(self, value: object, where: str) -> int:
        """A coordinate: a decimal or 0x-hex string, or a JSON integer, below the modulus."""
        try:
            if isinstance(value, str):
                n = int(value, 0) if value.startswith("0x") else int(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                n = value
            else:
                raise TypeError
        except (TypeError, ValueError):
            raise self.fail(f"{where} is {value!r}, not a number") from None
        if not 0 <= n < P:
            raise self.fail(f"{where} is not a coordinate below the field modulus")
        return n

    def g1(self, value: object, where: str) -> tuple[int, int]:
        """A G1 point [x, y, 1] (or [x, y]; [0, 1, 0] is the point at infinity, (0, 0))."""
        if not isinstance(value, list) or len(value) not in (2, 3):
            raise self.fail(f"{where} should be a G1 point [x, y, 1], got {value!r:.80}")
        x, y = self.number(value[0], f"{where}[0]"), self.number(value[1], f"{where}[1]")
        z = self.number(value[2], f"{where}[2]") if len(value) == 3 else 1
        if z not in (0, 1):
            raise self.fail(f"{where} is not in affine form (z must be 1)")
        if z == 0:
            x, y = 0, 0
        if not _on_g1(x, y):
            raise self.fail(f"{where} is not on the BN254 curve")
        return x, y

    def g2(self, value: object, where: str) -> tuple[int, int, int, int]:
        """A G2 point [[x0, x1], [y0, y1], [1, 0]], in EIP-197 order (x1, x0, y1, y0)."""
        if (
            not isinstance(value, list)
            or len(value) not in (2, 3)
            or not all(isinstance(c, list) and len(c) == 2 for c in value)
        ):
            raise self.fail(f"{where} should be a G2 point [[x0, x1], [y0, y1], [1, 0]], got {value!r:.80}")
        x0, x1 = (self.number(c, f"{where}[0]") for c in value[0])
        y0, y1 = (self.number(c, f"{where}[1]") for c in value[1])
        if (x0, x1, y0, y1) == (0, 0, 0, 0) or not _on_g2((x0, x1), (y0, y1)):
            raise self.fail(f"{where} is not a point of BN254's G2 twist")
        return x1, x0, y1, y0

    def ic(self, ic: object, n_public: object) -> tuple[tuple[int, int], ...]:
        """IC: one G1 point per public input after the first, none of them at infinity."""
        if not isinstance(ic, list) or not ic:
            raise self.fail("IC should be a non-empty list of G1 points")
        if not isinstance(n_public, int) or n_public != len(ic) - 1:
            raise self.fail(f"nPublic is {n_public!r} but IC has {len(ic)} points (expected nPublic + 1)")
        if n_public > MAX_PUBLIC_INPUTS:
            raise self.fail(f"{n_public} public inputs; the verifier takes at most {MAX_PUBLIC_INPUTS}")
        points = tuple(self.g1(p, f"IC[{i}]") for i, p in enumerate(ic))
        for i, point in enumerate(points[1:], start=1):
            if point == (0, 0):
                raise UnconstrainedInput(
                    f"{self.source}: IC[{i}] is the point at infinity: public input {i - 1} takes part "
                    "in no constraint, so any value of it would verify",
                    i - 1,
                )
        return points

    def alpha(self, value: object) -> tuple[int, int]:
        alpha = self.g1(value, "vk_alpha_1")
        if alpha == (0, 0):
            raise self.fail(
                "vk_alpha_1 is the point at infinity: such a key accepts forged proofs "
                "(the verifier refuses it at deployment)"
            )
        return alpha

    def gamma_delta(
        self, gamma: object, delta: object
    ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        g, d = self.g2(gamma, "vk_gamma_2"), self.g2(delta, "vk_delta_2")
        if g == d:
            raise self.fail(
                "vk_gamma_2 equals vk_delta_2: with such a key anyone can forge a proof of any "
                "inputs (C = -vk_x cancels them); the verifier refuses it at deployment"
            )
        return g, d


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CircuitError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise CircuitError(f"{path}: not valid JSON ({error})") from None


# ------------------------------------------------------------------ proofs


def proof_from_snarkjs(data: object, source: str = "proof") -> bytes:
    """snarkjs's proof.json (pi_a, pi_b, pi_c) as the 256 bytes the verifier reads."""
    try:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        a, b, c = (_pair(data[name]) for name in ("pi_a", "pi_b", "pi_c"))
        b0, b1 = _pair(b[0]), _pair(b[1])
        words = [_integer(w) for w in (a[0], a[1], b0[1], b0[0], b1[1], b1[0], c[0], c[1])]
    except (KeyError, TypeError, ValueError):
        raise CircuitError(f"{source}: not a snarkjs Groth16 proof (pi_a, pi_b, pi_c)") from None
    if any(not 0 <= w < P for w in words):
        raise CircuitError(f"{source}: a coordinate is not below the field modulus")
    return b"".join(w.to_bytes(32, "big") for w in words)


def _pair(value: object) -> list[object]:
    """A JSON list of at least two items (a point's coordinates, their first two read)."""
    if not isinstance(value, list) or len(value) < 2:
        raise TypeError(f"{value!r:.40} is not a list of coordinates")
    return value


def _integer(value: object) -> int:
    """A JSON integer, or a string of one in decimal."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"{value!r:.40} is not a number")
    return int(value)


# ------------------------------------------------------------------ circuits


class UnsatisfiedInputs(CircuitError):
    """Inputs of the right shape that the circuit refuses: no proof of them exists."""


@dataclass(frozen=True)
class Circuit:
    """A circuit: its manifest (circuit.json, see docs/circuits.md) and the folder it is in,
    checked on load. Loading reads only the manifest and the verifying key; `check`
    (operator market create) proves the sample and checks everything else."""

    manifest_file: Path  # circuit.json, or another name given to `load`
    manifest: Manifest = field(hash=False)

    @classmethod
    def load(cls, path: Path | str) -> Circuit:
        """A circuit by manifest file, by folder (its circuit.json), or a sample by name."""
        path = Path(path)
        if not path.exists() and (CIRCUITS / str(path)).is_dir():
            path = CIRCUITS / str(path)
        manifest_file = path if path.suffix == ".json" and not path.is_dir() else path / MANIFEST
        if not manifest_file.exists() and not path.exists():
            samples = ", ".join(sample_circuits())
            raise CircuitError(f"{path}: no such circuit folder or manifest (sample circuits: {samples})")
        try:
            manifest = read_manifest(manifest_file)
        except ManifestError as error:
            raise CircuitError(str(error)) from None
        circuit = cls(manifest_file.resolve(), manifest)  # absolute: provers run in other folders
        for key, name in circuit._files().items():
            if not (circuit.path / name).is_file():
                raise CircuitError(f"{manifest_file}: files.{key}: {circuit.path / name}: no such file")
        circuit.key()
        try:
            circuit.check_inputs(manifest.sample)
        except CircuitError as error:
            raise CircuitError(f"{manifest_file}: sample: {error}") from None
        return circuit

    def _files(self) -> dict[str, str]:
        return {k: v for k, v in self.manifest.files.model_dump().items() if v is not None}

    # -------------------------------------------------------------- what the manifest says

    @property
    def path(self) -> Path:
        """The folder the manifest is in; its files are named relative to it."""
        return self.manifest_file.parent

    @property
    def reference(self) -> str:
        """How a deployment record names it: a sample's name, else its manifest's path."""
        if self.path.resolve() == (CIRCUITS / self.name).resolve():
            return self.name
        return str(self.manifest_file.resolve())

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def proving_system(self) -> str:
        return self.manifest.proving_system

    @property
    def binding(self) -> str:
        return self.manifest.binding

    @property
    def public(self) -> tuple[str, ...]:
        """The public signals' names, in the proving system's order."""
        return tuple(s.name for s in self.manifest.public_signals)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.manifest.public_signals if s.output)

    @property
    def address_input(self) -> int | None:
        """The index of the public signal that carries the prover's address, if any."""
        address = self.manifest.address_signal
        return None if address is None else self.public.index(address)

    @property
    def address_signal(self) -> str | None:
        return self.manifest.address_signal

    @property
    def inputs(self) -> dict[str, InputType]:
        """What a requester supplies, with its type."""
        return {name: InputType(text) for name, text in self.manifest.inputs.items()}

    @property
    def private(self) -> tuple[str, ...]:
        """The requester's inputs that are not public signals."""
        return tuple(name for name in self.manifest.inputs if name not in self.public)

    @property
    def constraints(self) -> int | None:
        return self.manifest.constraints

    @property
    def sample(self) -> dict[str, object]:
        """The manifest's sample inputs in their types (checked when the circuit loaded)."""
        return self.check_inputs(self.manifest.sample)

    def _file(self, key: str) -> Path:
        name = getattr(self.manifest.files, key)
        if name is None:
            raise CircuitError(f"{self.manifest_file}: files.{key} is not given")
        return self.path / name

    @property
    def zkey(self) -> Path:
        return self._file("proving_key")

    @property
    def wasm(self) -> Path:
        return self._file("witness_generator")

    @property
    def source(self) -> Path:
        return self._file("source")

    @property
    def verification_key_file(self) -> Path:
        return self._file("verifying_key")

    def verifying_key(self) -> VerifyingKey:
        """The Groth16 verifying key (a PLONK circuit's is read by proving/plonk.py)."""
        if self.proving_system != "groth16":
            raise CircuitError(f"{self.name} is a {self.proving_system} circuit, not a Groth16 one")
        try:
            vk = VerifyingKey.load(self.verification_key_file)
        except UnconstrainedInput as error:
            name = self.public[error.index] if error.index < len(self.public) else str(error.index)
            field = "address_signal" if name == self.address_signal else "public_signals"
            raise CircuitError(
                f"{self.manifest_file}: {field}: {name} takes part in no constraint "
                f"({self.verification_key_file.name} has IC[{error.index + 1}] at infinity): any value "
                f"of it would verify, so add a constraint on it"
            ) from None
        if vk.public_inputs != len(self.public):
            raise CircuitError(
                f"{self.manifest_file}: public_signals: {len(self.public)} are named "
                f"({', '.join(self.public)}) but {self.verification_key_file.name} has {vk.public_inputs}"
            )
        return vk

    def key(self) -> object:
        """The verifying key, read and checked for the circuit's proving system
        (`VerifyingKey` for Groth16, plonk.py's `PlonkKey` for PLONK)."""
        if self.proving_system == "groth16":
            return self.verifying_key()
        from provingmarket.proving import plonk  # plonk.py builds on this module

        key = plonk.PlonkKey.load(self.verification_key_file)
        if key.public_inputs != len(self.public):
            raise CircuitError(
                f"{self.manifest_file}: public_signals: {len(self.public)} are named "
                f"({', '.join(self.public)}) but {self.verification_key_file.name} has {key.public_inputs}"
            )
        return key

    def generator(self) -> WitnessGenerator | None:
        """The circuit's witness generator, loaded once per process, or None without one."""
        if self.manifest.files.witness_generator is None:
            return None
        return _generator(self.wasm.resolve())

    # -------------------------------------------------------------- task inputs

    def check_inputs(self, inputs: Mapping[str, object]) -> dict[str, object]:
        """The requester's inputs in their types (numbers, lists for arrays), or an error
        naming what does not fit the manifest's `inputs`."""
        if not isinstance(inputs, Mapping):
            raise CircuitError(f"inputs should be an object of {', '.join(self.manifest.inputs)}")
        wanted = self.inputs
        missing = [name for name in wanted if name not in inputs]
        extra = [str(name) for name in inputs if name not in wanted]
        if missing or extra:
            said = [
                f"{what} {', '.join(names)}"
                for what, names in (("missing", missing), ("unknown", extra))
                if names
            ]
            takes = ", ".join(f"{name} ({t.text})" for name, t in wanted.items())
            address = f"; {self.address_signal} is the prover's address" if self.address_signal else ""
            outputs = f"; {', '.join(self.outputs)} come from the witness" if self.outputs else ""
            raise CircuitError(
                f"inputs do not fit circuit {self.name}: {'; '.join(said)} "
                f"(it takes {takes}{address}{outputs})"
            )
        try:
            return {name: kind.read(inputs[name], f"input {name}") for name, kind in wanted.items()}
        except ValueError as error:
            raise CircuitError(str(error)) from None

    def signal_inputs(self, inputs: Mapping[str, object], prover: str | int) -> dict[str, object]:
        """Every input signal as circom names them (input.json), for proving as `prover`."""
        values = self.check_inputs(inputs)
        if self.address_signal is not None:
            values[self.address_signal] = int(prover, 16) if isinstance(prover, str) else prover
        return values

    def public_inputs(self, inputs: Mapping[str, object], prover: str | int) -> list[int]:
        """The public signals the verifier sees when `prover` proves these inputs: outputs
        from the witness generator (which refuses inputs the circuit does not satisfy:
        UnsatisfiedInputs), public inputs as given, the address signal set to `prover`."""
        signals = self.signal_inputs(inputs, prover)
        generator = self.generator()
        if generator is None:  # no outputs (the manifest's rule): the inputs say it all
            return [int(signals[name]) for name in self.public]  # type: ignore[arg-type]
        try:
            return generator.public_signals(signals, len(self.public))
        except WitnessError as error:
            raise UnsatisfiedInputs(f"the inputs do not satisfy circuit {self.name}: {error}") from None

    def statement(self, inputs: Mapping[str, object]) -> list[int]:
        """The public signals with the address signal zeroed: what a task commits to."""
        return self.public_inputs(inputs, 0)

    def commitment(self, inputs: Mapping[str, object]) -> bytes:
        """The task's `inputs_commitment` for these inputs."""
        return inputs_commitment(self.statement(inputs), self.address_input)

    def named(self, public_inputs: Sequence[int]) -> dict[str, int]:
        """Public signal values by name (`requester status`, `proof`)."""
        return dict(zip(self.public, (int(v) for v in public_inputs), strict=False))


MANIFEST = "circuit.json"


@lru_cache(maxsize=32)
def _generator(path: Path) -> WitnessGenerator:
    """One generator per witness generator file, kept for the process (dropped at exit,
    before the interpreter tears down the wasm runtime under them)."""
    try:
        return WitnessGenerator(path)
    except WitnessError as error:
        raise CircuitError(str(error)) from None


def sample_inputs(circuit: Circuit, secret: int) -> dict[str, int]:
    """A task's inputs for the sample circuits (square, squarings-K, and their PLONK
    twins) from one secret: x, and y = x^(2^K) (K = 1 for square). Their y is a public
    input the requester gives, so a requester of these circuits may give a secret
    instead (`requester post --secret`); other circuits take their inputs by name."""
    family = circuit.name.removesuffix("-plonk")
    if family == "square":
        rounds = 1
    elif family.startswith("squarings-") and family.removeprefix("squarings-").isdigit():
        rounds = int(family.removeprefix("squarings-"))
    else:
        raise CircuitError(
            f"--secret makes inputs for the sample circuits only; give circuit {circuit.name}'s "
            "inputs by name (--input NAME=VALUE or --inputs-file)"
        )
    x = secret % R
    y = x
    for _ in range(rounds):
        y = y * y % R
    return {"x": x, "y": y}


def sample_circuits(proving_system: str | None = None) -> list[str]:
    """Names of the sample circuits shipped with the package (`CIRCUITS`), of one proving
    system if given."""
    names = sorted(p.parent.name for p in CIRCUITS.glob("*/circuit.json"))
    if proving_system is None:
        return names
    return [n for n in names if Circuit.load(n).proving_system == proving_system]


atexit.register(_generator.cache_clear)
