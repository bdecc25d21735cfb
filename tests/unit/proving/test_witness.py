"""circom's wasm witness generator run in this process (wasmtime), against the committed
sample circuits: the witness in circom's layout, the same values snarkjs computes, inputs
the circuit refuses named with what failed, and files that are not circom generators
refused with their path."""

from __future__ import annotations

import gc
import json
import subprocess
from pathlib import Path

import pytest
import wasmtime

from provingmarket.proving.circuits import CIRCUITS, Circuit, R, sample_inputs
from provingmarket.proving.witness import WitnessError, WitnessGenerator, flatten, fnv_hash, public_signals
from provingmarket.runtime.metrics import resident_kib

ROOT = Path(__file__).resolve().parents[3]
SNARKJS = ROOT / "node_modules" / ".bin" / "snarkjs"
SQUARE = CIRCUITS / "square" / "circuit.wasm"
SQUARINGS = CIRCUITS / "squarings-1000" / "circuit.wasm"
PROVER = int("ab" * 20, 16)
ASSERT_FAILED = "a constraint is not satisfied (assert failed) (Error in template Square_0 line: 14)"


@pytest.fixture(scope="module")
def square() -> WitnessGenerator:
    return WitnessGenerator(SQUARE)


def generator_error(path: Path) -> str:
    with pytest.raises(WitnessError) as error:
        WitnessGenerator(path)
    return str(error.value)


# ------------------------------------------------------------------ the witness


def test_square__witness__one_then_public_inputs_then_private_then_intermediate(square):
    """circom's layout: w[0] = 1, outputs (square has none), public inputs in the order the
    main component declares them (prover, y), private inputs (x), then proverSquared."""
    witness = square.witness({"x": 7, "y": 49, "prover": PROVER})
    assert witness == [1, PROVER, 49, 7, PROVER * PROVER % R]
    assert square.size() == len(witness) == 5


def test_square__public_signals__the_two_after_the_constant(square):
    assert square.public_signals({"prover": PROVER, "y": 49, "x": 7}, 2) == [PROVER, 49]
    assert public_signals(SQUARE, {"prover": 1, "y": 49, "x": 7}, 2) == [1, 49]
    assert square.witness({"x": 7, "y": 49, "prover": PROVER}, 3) == [1, PROVER, 49]


def test_square__each_call_a_fresh_instance__inputs_set_again(square):
    assert square.public_signals({"x": 7, "y": 49, "prover": 1}, 2) == [1, 49]
    assert square.public_signals({"x": 8, "y": 64, "prover": 2}, 2) == [2, 64]
    assert square.public_signals({"x": 7, "y": 49, "prover": 1}, 2) == [1, 49]


def test_square__many_witnesses__their_instances_freed(square):
    """A prover's agent computes two witnesses a task for as long as it runs: each
    instance (its store and linear memory) must go with its witness. They once stayed,
    about 26 KiB each, held through the host functions wasmtime keeps until the store
    is freed."""
    good, bad = {"x": 7, "y": 49, "prover": 1}, {"x": 7, "y": 50, "prover": 1}
    for _ in range(100):  # the allocator's pools settle
        square.public_signals(good, 2)
    before = resident_kib()
    for n in range(300):
        if n % 10:
            square.public_signals(good, 2)
        else:  # failing ones too: their message and exception handlers ran
            with pytest.raises(WitnessError):
                square.public_signals(bad, 2)
    gc.collect()
    assert resident_kib() - before < 3 * 1024  # 300 kept instances would be over 7 MiB


def test_square__values_reduced_modulo_r__as_circoms_witness_calculator_does(square):
    """(-7)^2 = 49: a negative value is its residue, r - 7."""
    assert square.witness({"x": -7, "y": 49, "prover": R + 1}) == [1, 1, 49, R - 7, 1]


def test_squarings__witness__every_square_in_turn():
    generator = WitnessGenerator(SQUARINGS)
    witness = generator.witness({"x": 3, "y": pow(3, 2**1000, R), "prover": 5})
    assert witness[:4] == [1, 5, pow(3, 2**1000, R), 3]
    assert len(witness) == generator.size()


@pytest.mark.parametrize(
    "inputs",
    [
        {"x": 7, "y": 50, "prover": PROVER},
        {"prover": PROVER, "x": 7, "y": 50},
        {"y": 50, "prover": PROVER, "x": 7},
    ],
    ids=["prover-last", "y-last", "x-last"],
)
def test_square__y_not_x_squared__names_the_failed_assert_whatever_input_is_set_last(square, inputs):
    with pytest.raises(WitnessError) as error:
        square.witness(inputs)
    assert str(error.value) == ASSERT_FAILED


def test_square__constraints_checked_whatever_count_is_read(square):
    with pytest.raises(WitnessError, match=r"^a constraint is not satisfied \(assert failed\)"):
        square.witness({"x": 7, "y": 50, "prover": PROVER}, 1)


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({"x": 7, "y": 49, "prover": 1, "z": 1}, "the circuit has no input signal z"),
        ({"x": 7, "y": 49, "Prover": 1}, "the circuit has no input signal Prover"),
        ({"x": 7, "y": 49}, "1 input values are missing (the circuit takes 3)"),
        ({"x": 7}, "2 input values are missing (the circuit takes 3)"),
        ({"x": [7, 7], "y": 49, "prover": 1}, "input x has 2 values; the circuit takes 1"),
        ({"x": [], "y": 49, "prover": 1}, "input x has 0 values; the circuit takes 1"),
        ({"x": "7", "y": 49, "prover": 1}, "'7' is not a number"),
        ({"x": True, "y": 49, "prover": 1}, "True is not a number"),
    ],
    ids=["unknown", "case", "one-missing", "two-missing", "too-many", "none", "string", "bool"],
)
def test_square__inputs_not_the_circuits__named(square, inputs, says):
    with pytest.raises(WitnessError) as error:
        square.witness(inputs)
    assert str(error.value) == says


def test_flatten__arrays_row_by_row():
    assert flatten([[1, 2, 3], [4, 5, 6]]) == [1, 2, 3, 4, 5, 6]
    assert flatten((1, [2, (3,)])) == [1, 2, 3]
    assert flatten(7) == [7]


# ------------------------------------------------------------------ the same as snarkjs


def test_witness__same_as_snarkjs_wtns_calculate(tmp_path):
    """snarkjs computes the witness with circom_runtime's witness_calculator.js (node); the
    whole witness, the public signals w[1..2] with it, is the same here."""
    x = 3
    inputs = {"x": x, "y": pow(x, 2**1000, R), "prover": PROVER}
    (tmp_path / "input.json").write_text(json.dumps({k: str(v) for k, v in inputs.items()}))
    for argv in (
        ["wtns", "calculate", str(SQUARINGS), "input.json", "w.wtns"],
        ["wtns", "export", "json", "w.wtns", "w.json"],
    ):
        subprocess.run(
            ["node", str(SNARKJS), *argv], cwd=tmp_path, check=True, capture_output=True, timeout=60
        )
    snarkjs = [int(v) for v in json.loads((tmp_path / "w.json").read_text())]
    witness = WitnessGenerator(SQUARINGS).witness(inputs)
    assert witness == snarkjs
    assert witness[1:3] == [PROVER, inputs["y"]]


def test_sample_inputs__satisfy_the_sample_circuits():
    for name in ("square", "squarings-1000"):
        circuit = Circuit.load(name)
        inputs = sample_inputs(circuit, 12345)
        assert circuit.generator().public_signals({**inputs, "prover": 1}, 2) == [1, inputs["y"]]


# ------------------------------------------------------------------ input names


@pytest.mark.parametrize(
    ("name", "hashed"),
    [
        # The FNV-1a 64-bit test vectors (the FNV reference, "" is the offset basis).
        ("", 0xCBF29CE484222325),
        ("a", 0xAF63DC4C8601EC8C),
        ("foobar", 0x85944171F73967E8),
        # circom_runtime's js/utils.js fnvHash, run with node.
        ("prover", 0x2E2F4FE62AA2FC5D),
        ("x", 0xAF63F54C86021707),
        ("in", 0x08B73807B55C4BBE),
    ],
)
def test_fnv_hash__circoms_64_bit_fnv1a__as_high_and_low_words(name, hashed):
    assert fnv_hash(name) == (hashed >> 32, hashed & 0xFFFFFFFF)


def test_fnv_hash__the_fnv1a_definition():
    def fnv1a(data: bytes) -> int:
        h = 14695981039346656037
        for byte in data:
            h = ((h ^ byte) * 1099511628211) & (2**64 - 1)
        return h

    for name in ("y", "proverSquared", "s", "main.in[3]", "a_long_signal_name_0123456789"):
        assert fnv_hash(name) == (fnv1a(name.encode()) >> 32, fnv1a(name.encode()) & 0xFFFFFFFF)


# ------------------------------------------------------------------ files that are not generators


def test_generator__no_such_file__named(tmp_path):
    path = tmp_path / "circuit.wasm"
    assert generator_error(path) == f"{path}: no such file"


@pytest.mark.parametrize(
    "content",
    [b"", b'{"name": "square"}', b"\0asm\x02\0\0\0", SQUARE.read_bytes()[:1000]],
    ids=["empty", "json", "wrong-version", "cut-short"],
)
def test_generator__not_wasm__refused_with_the_path(tmp_path, content):
    path = tmp_path / "circuit.wasm"
    path.write_bytes(content)
    assert generator_error(path).startswith(f"{path}: not a WebAssembly module (")


def test_generator__manifest_given_for_the_wasm__refused_with_the_path():
    path = CIRCUITS / "square" / "circuit.json"
    assert generator_error(path).startswith(f"{path}: not a WebAssembly module (")


@pytest.mark.parametrize(
    ("wat", "missing"),
    [
        ("(module)", "getFieldNumLen32"),
        (
            '(module (memory (export "memory") 1) (func (export "init") (param i32))'
            ' (func (export "getInputSignalSize") (param i32 i32) (result i32) i32.const 0)'
            ' (func (export "setInputSignal") (param i32 i32 i32))'
            ' (func (export "getWitnessSize") (result i32) i32.const 0)'
            ' (func (export "getWitness") (param i32)))',
            "getFieldNumLen32",
        ),
    ],
    ids=["empty-module", "some-exports"],
)
def test_generator__wasm_not_from_circom__refused_with_the_path(tmp_path, wat, missing):
    path = tmp_path / "circuit.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat))
    assert generator_error(path) == f"{path}: not a circom witness generator (it exports no {missing})"


def test_generator__wasm_importing_what_circom_does_not__refused_with_the_path(tmp_path):
    """A module with circom's exports that needs an import the runtime does not give."""
    exports = {
        "getFieldNumLen32": "(result i32) i32.const 8",
        "getRawPrime": "",
        "readSharedRWMemory": "(param i32) (result i32) i32.const 0",
        "writeSharedRWMemory": "(param i32 i32)",
        "init": "(param i32)",
        "getInputSignalSize": "(param i32 i32) (result i32) i32.const 0",
        "setInputSignal": "(param i32 i32 i32)",
        "getInputSize": "(result i32) i32.const 0",
        "getWitnessSize": "(result i32) i32.const 0",
        "getWitness": "(param i32)",
        "getMessageChar": "(result i32) i32.const 0",
        "getSharedRWMemoryStart": "(result i32) i32.const 0",
    }
    funcs = " ".join(f'(func (export "{name}") {body})' for name, body in exports.items())
    path = tmp_path / "circuit.wasm"
    path.write_bytes(
        wasmtime.wat2wasm(f'(module (import "env" "log" (func)) (memory (export "memory") 1) {funcs})')
    )
    generator = WitnessGenerator(path)
    with pytest.raises(WitnessError) as error:
        generator.witness({})
    assert str(error.value).startswith(f"{path}: cannot start it (")
