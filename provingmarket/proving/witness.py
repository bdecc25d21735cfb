"""circom's witness generator (the `.wasm` circom compiles) run in this process.

A requester checks that a task's inputs satisfy the circuit, and learns its public outputs,
before anything is sent; `operator market create` checks a manifest's sample and public signal
order the same way. Running the generator here (wasmtime) takes milliseconds where starting
node and snarkjs takes most of a second, and needs no node at all.

This follows circom 2's own `witness_calculator.js`: inputs are found by the 64-bit FNV-1a
hash of their name, written a field element at a time through the generator's shared memory,
and the witness is read back the same way. A constraint the inputs break (`===`, an assert)
stops the generator; `WitnessError` says which input signal, or what failed, as the generator
reported it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from provingmarket.errors import ProvingMarketError

BN254_R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3

# witness_calculator.js's messages for the generator's exception codes.
_ASSERT_FAILED = 4
_EXCEPTIONS = {
    1: "signal not found",
    2: "too many signals set",
    3: "signal already set",
    4: "a constraint is not satisfied (assert failed)",
    5: "not enough memory",
    6: "input signal array access exceeds the size",
}


class WitnessError(ProvingMarketError, ValueError):
    """The witness generator refused the inputs, or is not a circom witness generator."""

    code: int | None = None  # the generator's exception code, when it raised one


def fnv_hash(name: str) -> tuple[int, int]:
    """An input signal's hash as the generator looks it up: (high 32 bits, low 32 bits)."""
    h = _FNV_OFFSET
    for char in name:
        h = ((h ^ ord(char)) * _FNV_PRIME) % 2**64
    return h >> 32, h & 0xFFFFFFFF


def flatten(value: object) -> list[int]:
    """An input's value as circom reads it: nested lists flattened, row by row."""
    if isinstance(value, list | tuple):
        return [v for item in value for v in flatten(item)]
    if isinstance(value, bool) or not isinstance(value, int):
        raise WitnessError(f"{value!r:.40} is not a number")
    return [value]


class WitnessGenerator:
    """One circuit's generator, compiled once; `witness` may be called many times."""

    def __init__(self, path: Path | str):
        import wasmtime  # a dependency; imported here so a module that only names this one loads fast

        self.path = Path(path)
        self._wasmtime = wasmtime
        self._engine = wasmtime.Engine()
        try:
            self._module = wasmtime.Module.from_file(self._engine, str(self.path))
        except FileNotFoundError:
            raise WitnessError(f"{self.path}: no such file") from None
        except Exception as error:
            raise WitnessError(f"{self.path}: not a WebAssembly module ({_first_line(error)})") from None
        names = {export.name for export in self._module.exports}
        needed = {*_EXPORTS, "memory"}  # everything `_instance` and `witness` use
        if not needed <= names:
            raise WitnessError(
                f"{self.path}: not a circom witness generator (it exports no {sorted(needed - names)[0]})"
            )

    def _instance(self) -> tuple[Any, dict[str, Any], Callable[[Any, int, int], bytes]]:
        """A fresh instance (a generator's state is used once): its store, its exports by
        name, and a reader of its memory."""
        wasmtime = self._wasmtime
        store = wasmtime.Store(self._engine)
        messages: list[str] = []
        exports: dict[str, Any] = {}

        # The host functions take the calling instance's store as wasmtime hands it
        # (`access_caller`) and hold no reference to `store`: wasmtime keeps each one in a
        # module-wide table until its store is freed, so one that held the store would keep
        # every instance ever made alive (about 26 KiB a witness, for good).
        def exception(_caller: Any, code: int) -> None:
            detail = "; ".join(m for m in messages if m) or ""
            error = WitnessError(_EXCEPTIONS.get(code, f"error {code}") + (f" ({detail})" if detail else ""))
            error.code = code
            raise error

        def message(caller: Any) -> None:
            chars = []
            while (c := exports["getMessageChar"](caller)) != 0:  # type: ignore[operator]
                chars.append(chr(c))
            messages.append("".join(chars).strip())

        i32 = wasmtime.ValType.i32()
        imports = {
            "exceptionHandler": wasmtime.Func(
                store, wasmtime.FuncType([i32], []), exception, access_caller=True
            ),
            "printErrorMessage": wasmtime.Func(store, wasmtime.FuncType([], []), message, access_caller=True),
            "writeBufferMessage": wasmtime.Func(
                store, wasmtime.FuncType([], []), message, access_caller=True
            ),
            "showSharedRWMemory": wasmtime.Func(store, wasmtime.FuncType([], []), lambda: None),
        }
        try:
            instance = wasmtime.Instance(
                store, self._module, [imports[i.name] for i in self._module.imports if i.name in imports]
            )
        except Exception as error:
            raise WitnessError(f"{self.path}: cannot start it ({_first_line(error)})") from None
        exports.update({name: instance.exports(store)[name] for name in _EXPORTS})
        memory = instance.exports(store)["memory"]
        if not isinstance(memory, wasmtime.Memory):
            raise WitnessError(f"{self.path}: not a circom witness generator (its memory is not exported)")
        return store, exports, lambda store, start, length: bytes(memory.read(store, start, start + length))

    def witness(self, inputs: Mapping[str, object], count: int | None = None) -> list[int]:
        """Every signal's value (w[0] = 1, then the outputs, the public inputs, the rest),
        or the first `count` of them, for input signals by name (numbers, or nested lists
        of them for arrays). The constraints are checked whatever `count` is."""
        store, x, memory = self._instance()

        def call(name: str, *args: int) -> int:
            try:
                return x[name](store, *args)  # type: ignore[operator]
            except self._wasmtime.WasmtimeError as error:
                cause = error.__cause__ or error.__context__
                if isinstance(cause, WitnessError):
                    raise cause from None
                raise WitnessError(f"the witness generator failed ({_first_line(error)})") from None

        n32 = call("getFieldNumLen32")
        call("getRawPrime")
        prime = _read(call, n32)
        call("init", 1)
        given = sum(_set_input(call, n32, prime, name, value) for name, value in inputs.items())
        wanted = call("getInputSize")
        if given < wanted:
            raise WitnessError(f"{wanted - given} input values are missing (the circuit takes {wanted})")
        size = call("getWitnessSize")
        start = call("getSharedRWMemoryStart") & 0xFFFFFFFF
        witness = []
        for i in range(size if count is None else min(count, size)):
            call("getWitness", i)
            witness.append(int.from_bytes(memory(store, start, 4 * n32), "little"))
        return witness

    def size(self) -> int:
        """How many signals the circuit has (a proving key's nVars must be the same)."""
        store, x, _ = self._instance()
        return x["getWitnessSize"](store)  # type: ignore[operator]

    def public_signals(self, inputs: Mapping[str, object], count: int) -> list[int]:
        """The first `count` signals after the constant 1: a proof's public signals."""
        return self.witness(inputs, 1 + count)[1:]


_EXPORTS = (
    "getFieldNumLen32",
    "getRawPrime",
    "readSharedRWMemory",
    "writeSharedRWMemory",
    "init",
    "getInputSignalSize",
    "setInputSignal",
    "getInputSize",
    "getWitnessSize",
    "getWitness",
    "getMessageChar",
    "getSharedRWMemoryStart",
)


def _set_input(call, n32: int, prime: int, name: str, value: object) -> int:
    """Write one input signal (every element of an array); returns how many values."""
    high, low = fnv_hash(name)
    size = call("getInputSignalSize", high, low)
    if size <= 0:
        raise WitnessError(f"the circuit has no input signal {name}")
    values = flatten(value)
    if len(values) != size:
        raise WitnessError(f"input {name} has {len(values)} values; the circuit takes {size}")
    for i, v in enumerate(values):
        _write(call, n32, v % prime)
        try:
            call("setInputSignal", high, low, i)
        except WitnessError as error:
            if error.code == _ASSERT_FAILED:  # the circuit runs once its last input is set:
                raise  # a failed assert is the inputs' as a whole, not that input's
            raise WitnessError(f"input {name}: {error}") from None
    return size


def _read(call, n32: int) -> int:
    """The field element in shared memory: n32 little-endian 32-bit words."""
    return sum((call("readSharedRWMemory", j) & 0xFFFFFFFF) << (32 * j) for j in range(n32))


def _write(call, n32: int, value: int) -> None:
    for j in range(n32):
        word = (value >> (32 * j)) & 0xFFFFFFFF
        call("writeSharedRWMemory", j, word - 2**32 if word >= 2**31 else word)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def write_wtns(path: Path, witness: Sequence[int], prime: int = BN254_R) -> None:
    """The witness in snarkjs's `.wtns` format (version 2: a header section with the field's
    size, prime and the signal count, then every signal, 32 bytes little-endian)."""
    size = 32
    with path.open("wb") as f:
        f.write(b"wtns" + struct.pack("<II", 2, 2))
        f.write(
            struct.pack("<IQ", 1, 4 + size + 4) + struct.pack("<I", size) + prime.to_bytes(size, "little")
        )
        f.write(struct.pack("<I", len(witness)))
        f.write(struct.pack("<IQ", 2, size * len(witness)))
        f.write(b"".join(value.to_bytes(size, "little") for value in witness))


def public_signals(wasm: Path | str, inputs: Mapping[str, object], count: int) -> Sequence[int]:
    """One-off: `WitnessGenerator(wasm).public_signals(inputs, count)`."""
    return WitnessGenerator(wasm).public_signals(inputs, count)
