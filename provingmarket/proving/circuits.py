"""Circuits a market proves, their verifying keys and the proof encoding the verifier reads.

A circuit lives in a folder of its own; the sample circuits ship with the package, in
provingmarket/proving/samples/ (circuits/README.md says how they were made):

    circuit.json            manifest: name, kind, parameters, public inputs in order,
                            which one carries the prover's address, a sample
    circuit.circom          the source (includes ../lib/*.circom)
    circuit.zkey            the Groth16 proving key (snarkjs format)
    circuit.wasm            the witness calculator circom compiled
    verification_key.json   the verifying key (snarkjs format)

Everything here is plain Python over those files; no Groth16 library is needed to read a
key, encode it for the on-chain verifier or build a task's inputs. Bad files raise
`CircuitError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from provingmarket.errors import ProvingMarketError
from provingmarket.formats import inputs_commitment

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
                raise self.fail(
                    f"IC[{i}] is the point at infinity: public input {i - 1} takes part in no "
                    "constraint, so any value of it would verify"
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


def _square(x: int, **_) -> dict[str, int]:
    return {"x": x % R, "y": x * x % R}


def _squarings(x: int, k: int, **_) -> dict[str, int]:
    y = x % R
    for _ in range(k):
        y = y * y % R
    return {"x": x % R, "y": y}


# How each kind of circuit turns a secret into a task's inputs (a requester's job). They
# are also the circuits' witness generators: from the private inputs, every public one.
KINDS = {"square": _square, "squarings": _squarings}


class _InFolder:
    """A file of a circuit's folder, by name: `circuit.zkey` is `circuit.path / "circuit.zkey"`."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, circuit: Circuit, owner: type | None = None) -> Path:
        return circuit.path / self.name


@dataclass(frozen=True)
class Circuit:
    """A circuit folder, checked on load."""

    path: Path
    name: str
    kind: str
    parameters: dict[str, int] = field(hash=False)
    public: tuple[str, ...]
    private: tuple[str, ...]
    address_input: int
    constraints: int
    sample: dict[str, int] = field(hash=False)
    proving_system: str = "groth16"  # or "plonk" (plonk.py): which keys and proofs the files hold

    # The circuit's files in its folder.
    zkey = _InFolder("circuit.zkey")
    wasm = _InFolder("circuit.wasm")
    source = _InFolder("circuit.circom")
    verification_key_file = _InFolder("verification_key.json")

    def verifying_key(self) -> VerifyingKey:
        vk = VerifyingKey.load(self.verification_key_file)
        if vk.public_inputs != len(self.public):
            raise CircuitError(
                f"{self.verification_key_file}: the key has {vk.public_inputs} public inputs but "
                f"{self.path / 'circuit.json'} names {len(self.public)} ({', '.join(self.public)})"
            )
        return vk

    @classmethod
    def load(cls, path: Path | str) -> Circuit:
        """Load a circuit folder, or a sample circuit by name (`square`, `squarings-1000`)."""
        path = Path(path)
        if not path.exists() and (CIRCUITS / str(path)).is_dir():
            path = CIRCUITS / str(path)
        manifest = path / "circuit.json"
        data = _read_json(manifest)
        if isinstance(data, dict) and "proving_system" in data:
            return _from_manifest(path, data)
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            public = _names(data, "public")
            circuit = cls(
                path=path,
                name=_text(data, "name"),
                kind=_text(data, "kind"),
                parameters=_numbers(data, "parameters", {}),
                public=public,
                private=_names(data, "private", []),
                address_input=public.index(data["address_input"]),
                constraints=_integer(data["constraints"]),
                sample=_numbers(data, "sample"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CircuitError(
                f"{manifest}: expected name, kind, public (a list), address_input (one of public), "
                f"constraints and sample ({error!r})"
            ) from None
        if circuit.kind not in KINDS:
            raise CircuitError(f"{manifest}: unknown kind {circuit.kind!r} (known: {', '.join(KINDS)})")
        for needed in ("circuit.zkey", "verification_key.json", "circuit.circom"):
            if not (path / needed).is_file():
                raise CircuitError(f"{path / needed}: missing; regenerate with circuits/build.py")
        return circuit

    # -------------------------------------------------------------- task inputs

    def inputs_for(self, secret: int) -> dict[str, int]:
        """A task's inputs for a secret: the private witness and the public statement
        (everything but the prover's address, which the prover supplies)."""
        return KINDS[self.kind](secret, **self.parameters)

    def check_inputs(self, inputs: Mapping[str, int]) -> dict[str, int]:
        """The inputs as field elements, or an error naming what does not fit the circuit."""
        address = self.public[self.address_input]
        wanted = [name for name in (*self.public, *self.private) if name != address]
        missing = [name for name in wanted if name not in inputs]
        extra = [name for name in inputs if name not in wanted]
        if missing or extra:
            said = [
                f"{what} {', '.join(names)}"
                for what, names in (("missing", missing), ("unknown", extra))
                if names
            ]
            raise CircuitError(
                f"inputs do not fit circuit {self.name}: {'; '.join(said)}"
                f" (it takes {', '.join(wanted)}; {address} is the prover's address)"
            )
        checked = {}
        for name in wanted:
            value = inputs[name]
            if isinstance(value, str):
                try:
                    value = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
                except ValueError:
                    raise CircuitError(f"input {name} is {value!r}, not a number") from None
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < R:
                raise CircuitError(f"input {name} is {value!r}, not a field element (0 <= value < {R})")
            checked[name] = value
        return checked

    def unsatisfied(self, inputs: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """Public inputs the private ones do not give, by witness generation (far cheaper
        than proving): name -> (what the circuit computes, what `inputs` say). Empty when
        a proof of `inputs` can be made."""
        values = self.check_inputs(inputs)
        if not self.private:  # nothing to compute from
            return {}
        computed = KINDS[self.kind](**{name: values[name] for name in self.private}, **self.parameters)
        address = self.public[self.address_input]
        return {
            name: (computed[name], values[name])
            for name in self.public
            if name != address and name in computed and computed[name] != values[name]
        }

    def public_inputs(self, inputs: Mapping[str, int], prover: str | int) -> list[int]:
        """The public inputs the registry and the verifier see, with `prover`'s address."""
        values = self.check_inputs(inputs)
        values[self.public[self.address_input]] = int(prover, 16) if isinstance(prover, str) else prover
        return [values[name] for name in self.public]

    def statement(self, inputs: Mapping[str, int]) -> list[int]:
        """The public inputs with the address input zeroed: what a task commits to."""
        return self.public_inputs(inputs, 0)

    def commitment(self, inputs: Mapping[str, int]) -> bytes:
        """The task's `inputs_commitment` for these inputs."""
        return inputs_commitment(self.statement(inputs), self.address_input)

    def witness(self, inputs: Mapping[str, int], prover: str | int) -> dict[str, int]:
        """Every input signal, as circom names them, for proving as `prover`."""
        values = self.check_inputs(inputs)
        values[self.public[self.address_input]] = int(prover, 16) if isinstance(prover, str) else prover
        return values


# ------------------------------------------------------------------ manifest entries
# Each raises KeyError for an entry missing (with no default) and TypeError for one of
# the wrong shape; `Circuit.load` names the manifest and what it expects.


def _text(manifest: Mapping[str, object], key: str) -> str:
    value = manifest[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is {value!r:.40}, not a string")
    return value


def _names(manifest: Mapping[str, object], key: str, default: list[str] | None = None) -> tuple[str, ...]:
    value = manifest[key] if default is None else manifest.get(key, default)
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise TypeError(f"{key} is {value!r:.40}, not a list of names")
    return tuple(value)


def _numbers(
    manifest: Mapping[str, object], key: str, default: dict[str, int] | None = None
) -> dict[str, int]:
    value = manifest[key] if default is None else manifest.get(key, default)
    if not isinstance(value, dict):
        raise TypeError(f"{key} is {value!r:.40}, not an object")
    return {str(name): _integer(number) for name, number in value.items()}


def sample_circuits(proving_system: str | None = None) -> list[str]:
    """Names of the sample circuits shipped with the package (`CIRCUITS`), those of one
    proving system ("groth16", "plonk") if given."""
    names = sorted(p.parent.name for p in CIRCUITS.glob("*/circuit.json"))
    if proving_system is None:
        return names
    return [name for name in names if Circuit.load(name).proving_system == proving_system]


PROVING_SYSTEMS = ("groth16", "plonk")
_STANDARD_FILES = {
    "verifying_key": "verification_key.json",
    "proving_key": "circuit.zkey",
    "witness_generator": "circuit.wasm",
    "source": "circuit.circom",
}


def _from_manifest(path: Path, data: Mapping[str, object]) -> Circuit:
    """A circuit.json in the manifest format (proving_system, files, public_signals, inputs,
    address_signal, sample, ...) as this module's Circuit. Transitional: it reads what
    Circuit holds, for circuits without outputs whose files have the usual names, until
    manifest.py reads the whole format."""
    manifest = path / "circuit.json"
    try:
        signals = data["public_signals"]
        if not isinstance(signals, list) or not all(isinstance(s, dict) for s in signals):
            raise TypeError("public_signals is not a list of objects")
        public = tuple(_text(s, "name") for s in signals)
        inputs = data["inputs"]
        if not isinstance(inputs, dict):
            raise TypeError("inputs is not an object")
        circuit = Circuit(
            path=path,
            name=_text(data, "name"),
            kind="",
            parameters={},
            public=public,
            private=tuple(str(name) for name in inputs if name not in public),
            address_input=public.index(data["address_signal"]),
            constraints=_integer(data.get("constraints", 0)),
            sample=_numbers(data, "sample"),
            proving_system=_text(data, "proving_system"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CircuitError(
            f"{manifest}: expected name, proving_system, public_signals, inputs, address_signal "
            f"(one of the public signals) and sample ({error!r})"
        ) from None
    if circuit.proving_system not in PROVING_SYSTEMS:
        raise CircuitError(
            f"{manifest}: unknown proving_system {circuit.proving_system!r} "
            f"(known: {', '.join(PROVING_SYSTEMS)})"
        )
    files = data.get("files", {})
    named = files.items() if isinstance(files, dict) else [("files", files)]
    if any(s.get("output") for s in signals) or any(_STANDARD_FILES.get(k) != v for k, v in named):
        raise CircuitError(f"{manifest}: outputs and other file names need the manifest reader (manifest.py)")
    for needed in ("circuit.zkey", "verification_key.json", "circuit.wasm"):
        if not (path / needed).is_file():
            raise CircuitError(f"{path / needed}: missing; regenerate with circuits/build.py")
    return circuit
