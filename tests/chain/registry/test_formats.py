"""The Python formats (provingmarket/formats.py) agree with the registry: task ids, the
EIP-712 domain and Bid, input commitments, assignment words and proof commitments."""

import ape
from eth_abi import encode
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from provingmarket import (
    BINDING_COMMIT_REVEAL,
    DUTCH,
    OPEN_RACE,
    assignment_word,
    bid_typed_data,
    formats,
    inputs_commitment,
    proof_commit_digest,
    sign_bid,
    task_id,
)
from provingmarket.formats import BID_TYPE, EIP712_NAME, EIP712_VERSION
from tests.factories import (
    ADDRESS_INPUT,
    ETHER,
    PROVER_INPUT,
    STATEMENT,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    proof_for,
)

TASK = keccak(b"some task")


def typed_bid(chain, registry, task=TASK, min_price=ETHER // 200, expiry=1_900_000_000, nonce=3):
    return encode_typed_data(
        full_message=bid_typed_data(chain.chain_id, registry.address, task, min_price, expiry, nonce)
    )


def test_task_id__posted_terms__python_matches_registry(registry, create_task, chain):
    for terms in (
        create_task(),
        create_task(
            mechanism_id=DUTCH, start_price=ETHER // 50, ramp=120, decay=True, decay_floor=ETHER // 100
        ),
        create_task(mechanism_id=OPEN_RACE, redundancy=3, capabilities=0b10, collateral=ETHER, salt=7),
    ):
        expected = task_id(chain.chain_id, registry.address, terms)
        assert bytes(registry.task_id(terms.as_tuple())) == expected
        assert registry.task_status(expected).open == terms.redundancy


def test_task_id__event_of_the_post__carries_the_python_id(
    registry, market, mechanism, staked_provers, requester, chain
):
    terms = make_terms(market, mechanism, redundancy=2)
    tx = registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms))

    recorded = posted_terms(registry, tx)
    assert recorded == terms.posted(requester.address, tx.timestamp)
    [event] = tx.events.filter(registry.TaskPosted)
    assert bytes(event.task_id) == task_id(chain.chain_id, registry.address, recorded)


def test_domain_separator__eth_account__computes_the_same(registry, registry_math, chain):
    assert registry_math.EIP712_NAME() == EIP712_NAME
    assert registry_math.EIP712_VERSION() == EIP712_VERSION
    assert bytes(registry.domain_separator()) == typed_bid(chain, registry).header


def test_bid_digest__eth_account__computes_the_same(registry, registry_math, chain):
    type_string = "Bid(" + ",".join(f"{field['type']} {field['name']}" for field in BID_TYPE) + ")"
    typehash = keccak(text=type_string)
    message = typed_bid(chain, registry, min_price=123, expiry=456, nonce=7)

    assert bytes(registry_math.BID_TYPEHASH()) == typehash
    assert message.body == keccak(
        encode(["bytes32", "bytes32"] + ["uint256"] * 3, [typehash, TASK, 123, 456, 7])
    )
    assert bytes(registry.bid_digest(TASK, 123, 456, 7)) == keccak(
        b"\x19\x01" + message.header + message.body
    )


def test_sign_bid__prover_signature__lets_a_frontend_assign_below_the_ask(
    registry, create_task, prover, keeper, market, chain
):
    terms = create_task()
    task = registry.task_id(terms.as_tuple())
    price = registry.membership(prover, market).ask // 2
    expiry = chain.pending_timestamp + 600
    signature = sign_bid(prover.private_key, chain.chain_id, registry.address, task, price, expiry, 0)

    tx = registry.assign(
        item(terms, prover, price, signature=signature, min_price=price, expiry=expiry, nonce=0),
        sender=keeper,
    )

    [(who, assignment)] = assigned(registry, tx)
    assert (who, assignment.price) == (prover.address, price)


def test_inputs_commitment__address_input_zeroed__is_what_prove_checks(registry, create_task, prover, keeper):
    terms = create_task()
    assert terms.inputs_commitment == inputs_commitment(STATEMENT, ADDRESS_INPUT)
    [(_, assignment)] = assigned(
        registry, registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    )
    proof = proof_for(STATEMENT, prover.address)
    other_statement = [0, 64]

    with ape.reverts("registry: inputs do not match commitment"):
        registry.prove(terms.as_tuple(), assignment.as_tuple(), other_statement, proof, sender=prover)
    # Whatever the prover puts in the address input, the registry writes its address there.
    tx = registry.prove(terms.as_tuple(), assignment.as_tuple(), [12345, 49], proof, sender=prover)

    [event] = tx.events.filter(registry.TaskProven)
    assert list(event.public_inputs) == [int(prover.address, 16), 49]
    assert registry.balances(prover) == terms.max_reward


def test_assignment_word__after_assign__equals_slot_word(registry, create_task, provers, keeper):
    terms = create_task(redundancy=2)
    task = registry.task_id(terms.as_tuple())

    tx = registry.assign_batch(
        [item(terms, provers[0], terms.max_reward), item(terms, provers[1], terms.max_reward // 2)],
        sender=keeper,
    )

    pairs = assigned(registry, tx)
    assert [a.slot for _, a in pairs] == [0, 1]
    for who, assignment in pairs:
        assert registry.slot_word(task, assignment.slot) == assignment_word(bytes(task), who, assignment)


def test_proof_commit_digest__commit_reveal_race__accepts_the_reveal(
    registry, create_market, staked_provers, prover, requester, chain
):
    market = create_market(binding=BINDING_COMMIT_REVEAL)
    registry.join_market(market, 1, 0, 60, 0, [], sender=prover)
    terms = make_terms(market, OPEN_RACE, inputs_commitment=inputs_commitment(STATEMENT))
    terms = posted_terms(
        registry,
        registry.post_task(terms.as_tuple(), PROVER_INPUT, "", sender=requester, value=escrow(terms)),
    )
    task = task_id(chain.chain_id, registry.address, terms)
    proof = proof_for(STATEMENT)

    tx = registry.commit_proof(
        terms.as_tuple(), proof_commit_digest(task, prover.address, proof), sender=prover
    )
    [(_, assignment)] = assigned(registry, tx)
    assert bytes(tx.events.filter(registry.ProofCommitted)[0].task_id) == task
    registry.prove(terms.as_tuple(), assignment.as_tuple(), STATEMENT, proof, sender=prover)

    assert registry.task_status(task).proven == 1
    assert registry.balances(prover) == terms.max_reward


def test_bounds__python_matches_registry(registry_math, registry):
    bounds = registry_math.bounds()
    assert (
        bounds.max_redundancy,
        bounds.max_public_inputs,
        bounds.max_proof_size,
        bounds.max_prover_input,
        bounds.max_batch,
        bounds.max_assign_window,
        bounds.max_proving_window,
        bounds.max_reward,
        bounds.max_collateral,
        bounds.max_capabilities,
        bounds.reveal_window,
        bounds.min_grace_period,
        bounds.max_grace_period,
        bounds.max_caller_bps,
        bounds.max_verify_gas,
        bounds.max_verifier_args,
    ) == (
        formats.MAX_REDUNDANCY,
        formats.MAX_PUBLIC_INPUTS,
        formats.MAX_PROOF_SIZE,
        formats.MAX_PROVER_INPUT,
        formats.MAX_BATCH,
        formats.MAX_ASSIGN_WINDOW,
        formats.MAX_PROVING_WINDOW,
        formats.MAX_REWARD,
        formats.MAX_COLLATERAL,
        formats.MAX_CAPABILITIES,
        formats.REVEAL_WINDOW,
        formats.MIN_GRACE_PERIOD,
        formats.MAX_GRACE_PERIOD,
        formats.MAX_CALLER_BPS,
        formats.MAX_VERIFY_GAS,
        formats.MAX_VERIFIER_ARGS,
    )
