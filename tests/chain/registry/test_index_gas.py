"""What a market's price and latency index (contracts/registry/words.vy) costs a proof: the
same proofs, after the same warm-up, measured against their gas before the index existed.

The figures before the index were measured with this file's scenarios on the registry of
commit f3a9efe (the last without it); a proof's gas is deterministic given its calldata
and the storage it touches, which the warm-up fixes."""

from provingmarket import OPEN_RACE, Assignment
from provingmarket.formats import ZERO_ADDRESS
from tests.factories import (
    PROVER_INPUT,
    STATEMENT,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    proof_for,
    prove,
)

BUDGET = 5_000  # gas the index may add to a proof (issue 18)
# Gas of each proof on the registry of commit f3a9efe, before the index.
BEFORE = {"assigned": 265_171, "race": 257_291, "batch of 2": 552_608}
RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)


def proof_gas(registry, market, mechanism, requester, keeper, provers) -> dict[str, int]:
    """Gas of: a proof of a frontend's assignment, a race's proof, and a batch of two
    assigned proofs; each after a first one of its kind warmed every account it touches."""
    gas = {}

    def post(salt: int, mechanism_id: int):
        terms = make_terms(market, mechanism_id, salt=salt)
        tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))
        return posted_terms(registry, tx)

    def assign(terms, prover) -> Assignment:
        tx = registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
        [(_, assignment)] = assigned(registry, tx)
        return assignment

    for salt in (1, 2):
        terms = post(salt, mechanism)
        gas["assigned"] = prove(registry, terms, assign(terms, provers[0]), provers[0]).gas_used
    for salt in (3, 4):
        terms = post(salt, OPEN_RACE)
        gas["race"] = prove(registry, terms, RACE, provers[1]).gas_used
    for salt in (5, 7):
        first, second = post(salt, mechanism), post(salt + 1, mechanism)
        a, b = assign(first, provers[2]), assign(second, provers[2])
        proof = proof_for(STATEMENT, provers[2].address)
        items = [
            (first.as_tuple(), a.as_tuple(), STATEMENT, proof),
            (second.as_tuple(), b.as_tuple(), STATEMENT, proof),
        ]
        gas["batch of 2"] = registry.prove_batch(items, sender=provers[2]).gas_used
    return gas


def test_gas__the_index_adds_at_most_5000_to_a_proof(
    registry, market, mechanism, requester, keeper, staked_provers
):
    gas = proof_gas(registry, market, mechanism, requester, keeper, staked_provers)
    extra = {kind: gas[kind] - BEFORE[kind] for kind in gas}
    print(f"\nproof gas {gas}, the index's extra {extra}")
    assert extra["assigned"] <= BUDGET
    assert extra["race"] <= BUDGET
    assert extra["batch of 2"] <= 2 * BUDGET
