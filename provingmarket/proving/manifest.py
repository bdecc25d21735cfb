"""The circuit manifest: `circuit.json`, the file a person writes to open a market for a circuit.

docs/circuits.md describes every field. `Manifest` is its model (pydantic; unknown fields are
refused, so a misspelled one is named), `read_manifest` loads one with one-line errors of
the form `FILE: FIELD: what is wrong`, and `InputType` reads and checks the values a
requester gives for one input.

The checks here need no file but the manifest itself: the shape of every field and how the
fields agree with one another (the address signal is a public input, outputs come first,
every public input that is not the address is one the requester supplies, the binding fits
the circuit). What needs the keys and the witness generator is in `circuits.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from provingmarket.errors import ProvingMarketError

# BN254's scalar field: every signal value is below it.
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
MAX_PUBLIC_SIGNALS = 16  # the registry's and the verifiers' bound
MAX_INPUT_VALUES = 4_096  # field elements a requester may post for one task

PROVING_SYSTEMS = ("groth16", "plonk")
BINDINGS = ("address-input", "commit-reveal", "none")

# What each binding protects against, as `market show` and docs/circuits.md say it.
BINDING_MEANS = {
    "address-input": "a public input carries the submitting prover's address: a proof seen in the "
    "mempool cannot be resubmitted by anyone else",
    "commit-reveal": "provers race by committing to a proof's hash before revealing it: a revealed "
    "proof cannot be front-run, but the circuit itself does not bind the prover",
    "none": "nothing binds a proof to its prover: suits tasks assigned to one prover, whose proof "
    "only that prover may submit; open races are refused",
}

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TYPE = re.compile(r"^(field|bool|address|uint([1-9][0-9]{0,2}))((?:\[[1-9][0-9]*\])*)$")


class ManifestError(ProvingMarketError, ValueError):
    """A manifest that cannot be used; one line: file, field, what is wrong."""


class InputType:
    """An input's type: `field`, `bool`, `address`, `uintN` (N from 1 to 253), or an array
    of one (`field[8]`, `bool[4][2]`)."""

    def __init__(self, text: str):
        match = _TYPE.match(text)
        if not match or (match.group(2) and not 1 <= int(match.group(2)) <= 253):
            raise ValueError(
                f"{text!r} is not a type: use field, bool, address, uintN (N up to 253), "
                "or an array of one such as field[8]"
            )
        self.text = text
        self.base = match.group(1)
        self.shape = tuple(int(n) for n in re.findall(r"\[(\d+)\]", match.group(3)))
        self.bits = {"field": None, "bool": 1, "address": 160}.get(self.base) or (
            int(match.group(2)) if match.group(2) else None
        )

    @property
    def size(self) -> int:
        count = 1
        for n in self.shape:
            count *= n
        return count

    def read(self, value: object, where: str) -> int | list:
        """The value as field elements in this type's shape, or ValueError naming `where`."""
        return self._read(value, where, self.shape)

    def _read(self, value: object, where: str, shape: tuple[int, ...]) -> int | list:
        if shape:
            if not isinstance(value, list) or len(value) != shape[0]:
                raise ValueError(f"{where} should be a list of {shape[0]} ({self.text})")
            return [self._read(v, f"{where}[{i}]", shape[1:]) for i, v in enumerate(value)]
        return self._scalar(value, where)

    def _scalar(self, value: object, where: str) -> int:
        if isinstance(value, bool) and self.base == "bool":
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            try:
                number = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
            except ValueError:
                raise ValueError(f"{where} is {value!r:.50}, not a number") from None
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise ValueError(f"{where} is {value!r:.50}, not a number ({self.text})")
        if not 0 <= number < R:
            raise ValueError(
                f"{where} is {value!r:.80}, not a field element (0 <= value < the BN254 scalar field)"
            )
        if self.bits is not None and number >= 1 << self.bits:
            kind = "0 or 1" if self.base == "bool" else f"below 2^{self.bits} ({self.text})"
            raise ValueError(f"{where} is {number}, which is not {kind}")
        return number


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=_NAME)]
    output: bool = False


class Files(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verifying_key: str
    proving_key: str | None = None
    witness_generator: str | None = None
    source: str | None = None


class Manifest(BaseModel):
    """circuit.json: see docs/circuits.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    description: str = ""
    proving_system: Literal["groth16", "plonk"]
    files: Files
    prover_command: list[str] | None = None
    public_signals: Annotated[list[Signal], Field(min_length=1, max_length=MAX_PUBLIC_SIGNALS)]
    inputs: dict[str, str]
    address_signal: str | None = None
    binding: Literal["address-input", "commit-reveal", "none"]
    sample: dict[str, object]
    constraints: Annotated[int, Field(ge=0)] | None = None
    setup: str = ""

    @field_validator("inputs")
    @classmethod
    def _types(cls, inputs: dict[str, str]) -> dict[str, str]:
        for name, text in inputs.items():
            if not re.match(_NAME, name):
                raise ValueError(f"{name!r} is not a signal name")
            InputType(text)
        if sum(InputType(t).size for t in inputs.values()) > MAX_INPUT_VALUES:
            raise ValueError(f"more than {MAX_INPUT_VALUES} values in all")
        return inputs

    @field_validator("prover_command")
    @classmethod
    def _command(cls, command: list[str] | None) -> list[str] | None:
        if command is not None and not command:
            raise ValueError("should be a non-empty list of arguments, or left out")
        return command

    @model_validator(mode="after")
    def _agree(self) -> Manifest:
        """The fields agree; raises ValueError starting with the field at fault."""
        names = [s.name for s in self.public_signals]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"public_signals: {name} is listed twice")
        first_input = next((s.name for s in self.public_signals if not s.output), None)
        for i, signal in enumerate(self.public_signals):
            if signal.output and first_input is not None and names.index(first_input) < i:
                raise ValueError(
                    f"public_signals: output {signal.name} comes after input {first_input}; circom "
                    "orders a proof's public signals outputs first, then public inputs"
                )
        self._agree_address(names)
        self._agree_inputs()
        if self.files.proving_key is None and self.prover_command is None:
            raise ValueError("files.proving_key: needed unless prover_command is given")
        if self.files.witness_generator is None and (
            self.prover_command is None or any(s.output for s in self.public_signals)
        ):
            raise ValueError(
                "files.witness_generator: needed to compute the outputs and check requesters' inputs"
                if self.prover_command is not None
                else "files.witness_generator: needed to prove with snarkjs (or give prover_command)"
            )
        return self

    def _agree_address(self, names: list[str]) -> None:
        address = self.address_signal
        if address is not None:
            if address not in names:
                raise ValueError(f"address_signal: {address} is not one of public_signals")
            if self.signal(address).output:
                raise ValueError(
                    f"address_signal: {address} is an output; the prover's address must be a public input"
                )
        if self.binding == "address-input" and address is None:
            raise ValueError(
                "binding: address-input needs address_signal (a public input the circuit constrains "
                "that carries the prover's address); without one use commit-reveal or none"
            )
        if self.binding != "address-input" and address is not None:
            raise ValueError(
                f"binding: {self.binding} does not use address_signal {address}; use address-input, or "
                "leave address_signal out"
            )

    def _agree_inputs(self) -> None:
        for signal in self.public_signals:
            if signal.name in self.inputs and (signal.output or signal.name == self.address_signal):
                what = "an output (computed from the witness)" if signal.output else "the prover's address"
                raise ValueError(f"inputs: {signal.name} is {what}; a requester does not supply it")
            if not signal.output and signal.name != self.address_signal:
                if signal.name not in self.inputs:
                    raise ValueError(
                        f"inputs: public input {signal.name} is missing (a requester supplies every "
                        "public input but the address)"
                    )
                if InputType(self.inputs[signal.name]).shape:
                    raise ValueError(
                        f"inputs: public input {signal.name} must be a single value, not an array"
                    )

    def signal(self, name: str) -> Signal:
        return next(s for s in self.public_signals if s.name == name)


def _location(error: Mapping[str, Any]) -> str:
    parts = [str(p) for p in error.get("loc", ()) if not str(p).startswith("function-after")]
    return ".".join(parts)


def describe(error: ValidationError) -> str:
    """A pydantic error as `field: what is wrong` (its first problem)."""
    first = error.errors()[0]
    where = _location(first)
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = f"unknown field (fields: {', '.join(_known(first.get('loc', ())))})"
    elif first.get("type") == "missing":
        message = "missing"
    elif first.get("type") == "literal_error":
        message = (
            f"{first.get('input')!r} is not one of the choices ({message.removeprefix('Input should be ')})"
        )
    return f"{where}: {message}" if where and not message.startswith(f"{where.split('.')[0]}:") else message


def _known(loc: tuple) -> list[str]:
    model: type[BaseModel] = Manifest
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif str(part).isdigit():
            model = Signal
    return list(model.model_fields)


def read_manifest(path: Path) -> Manifest:
    """Load and check a manifest file; ManifestError `FILE: FIELD: what is wrong`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object (see docs/circuits.md)")
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        raise ManifestError(f"{path}: {describe(error)}") from None
