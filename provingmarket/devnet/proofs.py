"""The sample circuit every development market proves, and real proofs of it.

The market proves the sample circuit `square` (provingmarket/proving/samples/square: "I
know x with x*x = y", the prover's address as public input 0) and its verifier is
contracts/verifiers/Groth16Verifier.vy deployed with that circuit's verifying key. Proofs
are real Groth16 proofs from a proving backend (groth16py in-process when installed, else
snarkjs). The circuit's keys come from a single-party setup: for tests and demos only.
"""

from __future__ import annotations

import functools
import json
import math

from provingmarket.proving.backends import CommandBackend, Groth16pyBackend, ProvingBackend
from provingmarket.proving.circuits import Circuit

SQUARE = Circuit.load("square")
ADDRESS_INPUT: int = SQUARE.address_input or 0  # the square circuit binds by its first public input
SAMPLE_INPUTS = SQUARE.sample  # {"x": 7, "y": 49}
STATEMENT = SQUARE.statement(SAMPLE_INPUTS)  # [0, 49]: prover address (filled by the registry), y
PROVER_INPUT = json.dumps(SAMPLE_INPUTS, sort_keys=True).encode()  # what the prover needs: x


@functools.cache
def default_backend() -> ProvingBackend:
    """groth16py in-process if installed (the optional GPL extra), else snarkjs."""
    try:
        return Groth16pyBackend()
    except RuntimeError:
        return CommandBackend.snarkjs()


@functools.cache
def square_proof(public_inputs: tuple[int, ...] | list[int], prover: str | None = None) -> bytes:
    """A real proof of the square circuit for `public_inputs` ([address, y] with y a
    perfect square), made as `prover` (None keeps the address input as given)."""
    public = list(public_inputs)
    y = public[1]
    x = math.isqrt(y)
    if x * x != y:
        raise ValueError(f"{y} is not a perfect square; this helper proves squares only")
    address = prover if prover is not None else hex(public[ADDRESS_INPUT])
    return default_backend().prove(SQUARE, {"x": x, "y": y}, address).proof


def proof_for(public_inputs: list[int], prover: str | None = None) -> bytes:
    return square_proof(tuple(public_inputs), prover)
