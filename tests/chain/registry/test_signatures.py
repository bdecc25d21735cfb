"""A prover's signed Bid (EIP-712): the digest the registry checks is the one eth_account
signs; a valid Bid lets a frontend assign from the signed minimum up, below the prover's
ask; a Bid is bound to its chain, registry, signer, nonce and expiry, used once per task,
and only in its low-s, v in {27, 28} form."""

from __future__ import annotations

from itertools import count

import ape
import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import keccak

from provingmarket import bid_typed_data, sign_bid
from provingmarket.chain.markets import deploy_registry
from tests.factories import ETHER, STATEMENT, advance, assigned, item, proof_for, skipped

ASK = ETHER // 100  # the staked provers' ask
SECP256K1_N = 115792089237316195423570985008687907852837564279074904382605163141518161494337

_inputs = count()


@pytest.fixture
def post(create_task):
    """create_task, with a prover input of its own: anvil may mine two posts in the same
    second, and equal terms posted at the same timestamp are one task."""

    def create(**overrides):
        uri = f"ipfs://bid-input-{next(_inputs)}"
        return create_task(prover_input=b"", input_uri=uri, prover_input_hash=keccak(text=uri), **overrides)

    return create


@pytest.fixture
def bid(chain, registry):
    """bid(signer, terms, min_price, expiry=..., nonce=0, chain_id=..., registry_address=...)
    -> (signature, item fields): a Bid as `signer` signs it, for `terms` on this registry."""

    def make(signer, terms, min_price, expiry=None, nonce=0, chain_id=None, registry_address=None):
        expiry = chain.blocks.head.timestamp + 3_600 if expiry is None else expiry
        signature = sign_bid(
            signer.private_key,
            chain.chain_id if chain_id is None else chain_id,
            registry_address or registry.address,
            registry.task_id(terms.as_tuple()),
            min_price,
            expiry,
            nonce,
        )
        return signature, dict(min_price=min_price, expiry=expiry, nonce=nonce)

    return make


def high_s(signature: bytes) -> bytes:
    """The other valid signature of the same digest: s -> n - s, v flipped."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


def test_bid_digest__any_bid__equals_the_eip712_hash_eth_account_signs(
    chain, registry, registry_math, post, prover
):
    task = registry.task_id(post().as_tuple())
    message = encode_typed_data(
        full_message=bid_typed_data(chain.chain_id, registry.address, task, 123, 456_789, 7)
    )

    digest = registry.bid_digest(task, 123, 456_789, 7)

    assert digest == _hash_eip191_message(message)
    assert digest == keccak(b"\x19\x01" + message.header + message.body)
    assert registry.domain_separator() == message.header
    assert registry_math.BID_TYPEHASH() == keccak(
        text="Bid(bytes32 task,uint256 minPrice,uint256 expiry,uint256 nonce)"
    )
    signature = sign_bid(prover.private_key, chain.chain_id, registry.address, task, 123, 456_789, 7)
    assert Account._recover_hash(digest, signature=signature) == prover.address


def test_assign_batch__signed_bid__prices_from_the_signed_minimum_to_the_maximum_hold_even_below_the_ask(
    registry, post, prover, keeper, requester, bid
):
    cheap, dear = post(), post()
    minimum = ASK // 4
    cheap_bid, cheap_fields = bid(prover, cheap, minimum)
    dear_bid, dear_fields = bid(prover, dear, minimum)

    tx = registry.assign_batch(
        [
            item(cheap, prover, minimum - 1, cheap_bid, **cheap_fields),
            item(cheap, prover, minimum),  # the same price without the Bid: the ask rules
            item(dear, prover, dear.max_reward + 1, dear_bid, **dear_fields),
            item(cheap, prover, minimum, cheap_bid, **cheap_fields),
            item(dear, prover, dear.max_reward, dear_bid, **dear_fields),
        ],
        sender=keeper,
    )

    assert skipped(registry, tx) == [
        "registry: price below signed minimum",
        "registry: price below ask",
        "registry: price above maximum",
    ]
    [(_, at_minimum), (_, at_maximum)] = assigned(registry, tx)
    assert (at_minimum.price, at_maximum.price) == (minimum, dear.max_reward)
    # The prover is paid the price it consented to, not its ask.
    registry.prove(
        cheap.as_tuple(),
        at_minimum.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )
    assert registry.balances(prover) == minimum
    assert registry.balances(keeper) == cheap.frontend_fee
    assert registry.balances(requester) == cheap.max_reward - minimum


def test_assign__signed_bid_used_again_after_the_prover_declined__reverts_prover_declined_task(
    registry, post, prover, keeper, bid
):
    terms = post()
    task = registry.task_id(terms.as_tuple())
    signature, fields = bid(prover, terms, ASK // 2)
    signed_item = item(terms, prover, ASK // 2, signature, **fields)
    [(_, assignment)] = assigned(registry, registry.assign(signed_item, sender=keeper))
    registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=prover)
    assert registry.task_status(task).open == 1

    with ape.reverts("registry: prover declined task"):
        registry.assign(signed_item, sender=keeper)


def test_assign__signed_bid_used_twice_on_a_redundant_task__reverts_prover_already_on_task(
    registry, post, prover, keeper, bid
):
    terms = post(redundancy=2)
    signature, fields = bid(prover, terms, ASK // 2)
    signed_item = item(terms, prover, ASK // 2, signature, **fields)
    registry.assign(signed_item, sender=keeper)

    with ape.reverts("registry: prover already on task"):
        registry.assign(signed_item, sender=keeper)
    assert registry.task_status(registry.task_id(terms.as_tuple())).open == 1
    assert registry.standing(prover).locked == terms.collateral


def test_assign_batch__bids_from_another_chain_registry_or_signer__skip_as_signer_is_not_the_prover(
    chain, project, registry, owner, post, prover, provers, keeper, bid
):
    terms = post()
    task = registry.task_id(terms.as_tuple())
    elsewhere = deploy_registry(ape, owner, 3_600, project.RegistryHarness)
    other_chain, fields = bid(prover, terms, ASK // 2, chain_id=chain.chain_id + 1)
    other_registry, _ = bid(
        prover, terms, ASK // 2, expiry=fields["expiry"], registry_address=elsewhere.address
    )
    other_signer, _ = bid(provers[1], terms, ASK // 2, expiry=fields["expiry"])
    own, _ = bid(prover, terms, ASK // 2, expiry=fields["expiry"])
    # The foreign-registry Bid is a genuine Bid there.
    assert (
        Account._recover_hash(
            elsewhere.bid_digest(task, ASK // 2, fields["expiry"], 0), signature=other_registry
        )
        == prover.address
    )

    with ape.reverts("registry: signer is not the prover"):
        registry.assign(item(terms, prover, ASK // 2, other_chain, **fields), sender=keeper)
    tx = registry.assign_batch(
        [
            item(terms, prover, ASK // 2, signature, **fields)
            for signature in (other_registry, other_signer, own)
        ],
        sender=keeper,
    )

    assert skipped(registry, tx) == ["registry: signer is not the prover"] * 2
    assert [who for who, _ in assigned(registry, tx)] == [prover.address]


def test_assign__bid_past_its_expiry__reverts_signature_expired_while_at_expiry_it_holds(
    chain, registry, post, provers, keeper, bid
):
    terms = post(redundancy=2)
    expiry = chain.blocks.head.timestamp + 100
    first, first_fields = bid(provers[0], terms, ASK // 2, expiry=expiry)
    second, second_fields = bid(provers[1], terms, ASK // 2, expiry=expiry)

    chain.pending_timestamp = expiry
    tx = registry.assign(item(terms, provers[0], ASK // 2, first, **first_fields), sender=keeper)
    assert chain.blocks[tx.block_number].timestamp == expiry
    advance(chain, 1)

    with ape.reverts("registry: signature expired"):
        registry.assign(item(terms, provers[1], ASK // 2, second, **second_fields), sender=keeper)


def test_assign__bid_signed_before_revoke_signatures__reverts_signature_revoked_and_a_fresh_one_holds(
    registry, post, prover, keeper, bid
):
    terms = post()
    old, old_fields = bid(prover, terms, ASK // 2, nonce=0)

    tx = registry.revoke_signatures(sender=prover)

    assert [e.nonce for e in tx.events.filter(registry.SignaturesRevoked)] == [1]
    assert registry.signature_nonce(prover) == registry.standing(prover).nonce == 1
    with ape.reverts("registry: signature revoked"):
        registry.assign(item(terms, prover, ASK // 2, old, **old_fields), sender=keeper)
    fresh, fresh_fields = bid(prover, terms, ASK // 2, nonce=1)
    registry.assign(item(terms, prover, ASK // 2, fresh, **fresh_fields), sender=keeper)
    assert registry.standing(prover).locked == terms.collateral


def test_assign__high_s_twin_of_a_valid_signature__reverts_malleable_signature(
    registry, post, prover, keeper, bid
):
    terms = post()
    signature, fields = bid(prover, terms, ASK // 2)
    twin = high_s(signature)
    # The twin is a valid secp256k1 signature of the same Bid by the same prover.
    digest = registry.bid_digest(registry.task_id(terms.as_tuple()), ASK // 2, fields["expiry"], 0)
    assert Account._recover_hash(digest, vrs=(twin[64], twin[:32], twin[32:64])) == prover.address

    with ape.reverts("registry: malleable signature"):
        registry.assign(item(terms, prover, ASK // 2, twin, **fields), sender=keeper)


def test_assign_batch__malformed_signatures__skip_with_their_reasons_and_the_well_formed_one_holds(
    registry, post, prover, keeper, bid
):
    terms = post()
    signature, fields = bid(prover, terms, ASK // 2)
    variants = [signature[:64] + bytes([v]) for v in (0, 1, 26, 29, 255)]
    variants += [signature[:64], bytes(32) + signature[32:], signature]

    tx = registry.assign_batch(
        [item(terms, prover, ASK // 2, variant, **fields) for variant in variants], sender=keeper
    )

    assert (
        skipped(registry, tx) == ["registry: invalid signature v"] * 5 + ["registry: invalid signature"] * 2
    )
    [(who, assignment)] = assigned(registry, tx)
    assert (who, assignment.price) == (prover.address, ASK // 2)
