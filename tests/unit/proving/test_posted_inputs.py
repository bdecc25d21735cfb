"""A task's posted inputs checked before a prover takes or proves it
(`proving.posted_inputs`): nothing on chain ties them to the task's inputs_commitment, so a
hostile requester can post a task nobody can prove. The check is the commitment and the
circuit's witness generator, run in this process; each refusal is one line naming the values
seen and what was expected."""

from __future__ import annotations

import json

import pytest
from eth_utils import keccak

from provingmarket.chain.client import ClientError
from provingmarket.chain.tasks import posted_inputs
from provingmarket.devnet import task_terms
from provingmarket.formats import inputs_commitment
from provingmarket.proving.circuits import Circuit

SQUARE = Circuit.load("square")
SQUARINGS = Circuit.load("squarings-1000")


def posted(circuit: Circuit, inputs: dict, committed: dict | list | None = None):
    """(terms, prover_input) of a task posting `inputs` and committing to `committed`'s
    statement (by default the posted inputs' own), or to `committed` if it is a statement."""
    prover_input = json.dumps(inputs).encode()
    statement = committed if isinstance(committed, list) else circuit.statement(committed or inputs)
    terms = task_terms(
        1,
        3,
        inputs_commitment=inputs_commitment(statement, circuit.address_input),
        prover_input_hash=keccak(prover_input),
    )
    return terms, prover_input


def test_posted_inputs__the_circuits_own__are_returned_as_field_elements():
    terms, prover_input = posted(SQUARE, {"x": "7", "y": "0x31"})
    assert posted_inputs(terms, prover_input, "", SQUARE) == {"x": 7, "y": 49}
    sample = SQUARINGS.sample
    assert posted_inputs(*posted(SQUARINGS, sample), "", SQUARINGS) == {"x": 7, "y": int(sample["y"])}


def test_posted_inputs__not_the_commitments__are_refused_naming_both_commitments():
    terms, prover_input = posted(SQUARE, {"x": 8, "y": 64}, committed={"x": 7, "y": 49})
    with pytest.raises(ClientError) as refused:
        posted_inputs(terms, prover_input, "", SQUARE)
    assert str(refused.value) == (
        "the task's inputs do not match its inputs_commitment: the posted inputs give public signals "
        f"(y = 64) committing to 0x{inputs_commitment([0, 64], 0).hex()}, the task's terms to "
        f"0x{inputs_commitment([0, 49], 0).hex()}; nobody can prove it"
    )


def test_posted_inputs__not_satisfying_the_circuit__are_refused_naming_the_failed_constraint():
    """A hostile requester commits to the statement of inputs no witness satisfies (y = 50
    is no square of x = 7): the commitment matches, the circuit refuses them."""
    terms, prover_input = posted(SQUARE, {"x": 7, "y": 50}, committed=[0, 50])
    with pytest.raises(ClientError) as refused:
        posted_inputs(terms, prover_input, "", SQUARE)
    assert str(refused.value) == (
        "the task's posted inputs do not satisfy circuit square: a constraint is not satisfied "
        "(assert failed) (Error in template Square_0 line: 14); nobody can prove it"
    )

    terms, prover_input = posted(SQUARINGS, {"x": 7, "y": 5}, committed=[0, 5])
    with pytest.raises(ClientError) as refused:
        posted_inputs(terms, prover_input, "", SQUARINGS)
    assert str(refused.value) == (
        "the task's posted inputs do not satisfy circuit squarings-1000: a constraint is not satisfied "
        "(assert failed) (Error in template Squarings_0 line: 18); nobody can prove it"
    )


@pytest.mark.parametrize(
    ("prover_input", "says"),
    [
        (b'{"x": 7}', "the task's posted inputs do not fit circuit square: missing y ("),
        (b'{"x": 7, "y": "lots"}', "the task's posted input y is 'lots', not a number; nobody can prove it"),
        (b"[7, 49]", "the task's posted inputs are not a JSON object of input signals"),
        (b"x=7", "the task's posted inputs are not JSON"),
    ],
)
def test_posted_inputs__not_fitting_the_circuit__are_refused_saying_why(prover_input, says):
    terms = task_terms(1, 3, prover_input_hash=keccak(prover_input))
    with pytest.raises(ClientError) as refused:
        posted_inputs(terms, prover_input, "", SQUARE)
    assert str(refused.value).startswith(says)
    assert "\n" not in str(refused.value)


def test_posted_inputs__not_hashing_to_the_terms__are_refused():
    terms, _ = posted(SQUARE, {"x": 7, "y": 49})
    with pytest.raises(ClientError, match="do not match its prover_input_hash; nobody can prove it"):
        posted_inputs(terms, b'{"x": 7, "y": 49} ', "", SQUARE)
