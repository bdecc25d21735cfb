# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Signed bids (EIP-712)
@notice A prover's consent to be assigned one task at any price from a signed
        minimum up to the task's maximum, so an auction can pay the second price.
        Domain-separated by chain id and registry (recomputed if the chain id ever
        changes, so a consent never replays across a fork), bounded by an expiry,
        and revocable at once by bumping the signer's nonce.
"""

from . import reasons
from . import words

# ------------------------------------------------------------------ constants

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
BID_TYPEHASH: constant(bytes32) = keccak256(
    "Bid(bytes32 task,uint256 minPrice,uint256 expiry,uint256 nonce)"
)
EIP712_NAME: constant(String[32]) = "ProvingMarketRegistry"
EIP712_VERSION: constant(String[8]) = "1"
SECP256K1_HALF_N: constant(uint256) = (
    57896044618658097711785492504343953926418782139537452191302581570759080747168
)
SIGNATURE_SIZE: constant(uint256) = 65  # bytes: r, s, v

# ------------------------------------------------------------------ immutables

_CACHED_CHAIN_ID: immutable(uint256)
_CACHED_DOMAIN_SEPARATOR: immutable(bytes32)

# ------------------------------------------------------------------ public state

signature_nonce: public(HashMap[address, uint256])  # bump to revoke every signed Bid

# ------------------------------------------------------------------ events


event SignaturesRevoked:
    prover: indexed(address)
    nonce: uint256


@deploy
def __init__():
    _CACHED_CHAIN_ID = chain.id
    _CACHED_DOMAIN_SEPARATOR = self._build_domain_separator()


# ------------------------------------------------------------------ external


@external
def revoke_signatures():
    """
    @notice Revoke every Bid the sender has signed and not yet seen used.
    """
    nonce: uint256 = self.signature_nonce[msg.sender] + 1
    self.signature_nonce[msg.sender] = nonce
    log SignaturesRevoked(prover=msg.sender, nonce=nonce)


# ------------------------------------------------------------------ internal


@view
@internal
def check(
    task_id: bytes32,
    prover: address,
    price: uint256,
    min_price: uint256,
    expiry: uint256,
    nonce: uint256,
    signature: Bytes[SIGNATURE_SIZE],
) -> uint256:
    """
    @dev "" if `prover` signed consent to `task_id` at `price`, else why not.
    """
    if len(signature) != SIGNATURE_SIZE:
        return reasons.INVALID_SIGNATURE
    if expiry < block.timestamp:
        return reasons.SIGNATURE_EXPIRED
    if nonce != self.signature_nonce[prover]:
        return reasons.SIGNATURE_REVOKED
    if price < min_price:
        return reasons.BELOW_SIGNED_MINIMUM
    r: uint256 = extract32(signature, 0, output_type=uint256)
    s: uint256 = extract32(signature, 32, output_type=uint256)
    v: uint256 = extract32(signature, 33, output_type=uint256) & 255
    if v != 27 and v != 28:
        return reasons.INVALID_SIGNATURE_V
    if s > SECP256K1_HALF_N:
        return reasons.MALLEABLE_SIGNATURE
    signer: address = ecrecover(self.digest(task_id, min_price, expiry, nonce), v, r, s)
    if signer == empty(address):
        return reasons.INVALID_SIGNATURE
    if signer != prover:
        return reasons.SIGNER_NOT_PROVER
    return reasons.OK


@view
@internal
def digest(task_id: bytes32, min_price: uint256, expiry: uint256, nonce: uint256) -> bytes32:
    """
    @dev The EIP-712 digest a prover signs to consent to a task at min_price up.
    """
    struct_hash: bytes32 = keccak256(abi_encode(BID_TYPEHASH, task_id, min_price, expiry, nonce))
    return keccak256(concat(b"\x19\x01", self.domain_separator(), struct_hash))


@view
@internal
def domain_separator() -> bytes32:
    if chain.id == _CACHED_CHAIN_ID:
        return _CACHED_DOMAIN_SEPARATOR
    return self._build_domain_separator()


@view
@internal
def _build_domain_separator() -> bytes32:
    return keccak256(
        abi_encode(
            EIP712_DOMAIN_TYPEHASH,
            keccak256(EIP712_NAME),
            keccak256(EIP712_VERSION),
            chain.id,
            self,
        )
    )
