"""Client side of the proving market: the formats shared with the registry contract.

The registry (contracts/Registry.vy) and this package implement the same formats;
docs/formats.md describes them and tests/chain/registry/test_formats.py checks both agree.
"""

from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_COMMIT_REVEAL,
    BINDING_NONE,
    DUTCH,
    OPEN_RACE,
    Assignment,
    TaskTerms,
    assignment_word,
    bid_typed_data,
    inputs_commitment,
    proof_commit_digest,
    sign_bid,
    task_id,
)

__all__ = [
    "BINDING_ADDRESS_INPUT",
    "BINDING_COMMIT_REVEAL",
    "BINDING_NONE",
    "DUTCH",
    "OPEN_RACE",
    "Assignment",
    "TaskTerms",
    "assignment_word",
    "bid_typed_data",
    "inputs_commitment",
    "proof_commit_digest",
    "sign_bid",
    "task_id",
]
