"""Formats shared with the registry: task terms and ids, the input commitment,
assignment words, and the EIP-712 `Bid` a prover signs.

One definition each; every Python part imports them from here. They mirror
contracts/Registry.vy and are described in docs/formats.md.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from typing import Any

from coincurve import PublicKey
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sha3 import keccak_256

# Built-in mechanisms; registered ones are numbered from 3.
OPEN_RACE = 1
DUTCH = 2

# A fallback chain (contracts/registry/mechanisms.vy, docs/mechanisms.md): a mechanism_id
# from CHAIN up holds up to MAX_LINKS links, link i in bits 64 * (i + 1) up: its mechanism
# (32 bits) and its window in seconds << 32. The low 64 bits are zero; the windows follow
# one another from posting and add up to the task's assignment window.
CHAIN = 2**64
MAX_LINKS = 3
MAX_LINK_MECHANISM = 2**32 - 1

# How a market binds a proof to its submitter.
BINDING_NONE = 0
BINDING_ADDRESS_INPUT = 1
BINDING_COMMIT_REVEAL = 2

# The registry's bounds (contracts/registry/*.vy); tests/chain/registry/test_formats.py checks
# them against the registry. A term outside them is refused at post_task.
MAX_REDUNDANCY = 8
MAX_PUBLIC_INPUTS = 16
MAX_PROOF_SIZE = 1024  # bytes
MAX_PROVER_INPUT = 4096  # bytes carried in TaskPosted
MAX_URI = 256  # characters of a task's input URI
MAX_BATCH = 64  # items per assign or prove batch
MAX_ASSIGN_WINDOW = 30 * 86_400  # seconds; also bounds a Dutch ramp
MAX_PROVING_WINDOW = 30 * 86_400  # seconds
MAX_REWARD = 2**80 - 1  # wei: max_reward and frontend_fee
MAX_COLLATERAL = 2**88 - 1  # wei
MAX_CAPABILITIES = 2**64 - 1
REVEAL_WINDOW = 600  # seconds a commit-reveal race commit has to reveal its proof
MIN_GRACE_PERIOD = 2  # seconds
MAX_GRACE_PERIOD = 86_400  # seconds
MAX_CALLER_BPS = 1_000
MAX_VERIFY_GAS = 3_000_000
MAX_VERIFIER_ARGS = 2_048  # bytes
MAX_MECHANISMS = 16  # mechanisms accepted in one call (memberships.vy)
MAX_FRONTENDS = 16  # frontends set in one call (mechanisms.vy)
MAX_NAME = 64  # characters of a mechanism's name (mechanisms.vy)
# A membership's and a stake's fields, as wide as the registry packs them (words.vy).
MAX_CAPACITY = 2**16 - 1  # tasks at once
MAX_ASK = 2**96 - 1  # wei
MAX_PROVING_TIME = 2**32 - 1  # seconds
MAX_STAKE = 2**88 - 1  # wei

# The built-in mechanisms' names.
BUILT_IN_MECHANISMS = {OPEN_RACE: "open race", DUTCH: "dutch"}

# Verifier blueprints the registry deploys from (Registry constructor, in this order).
GROTH16_BLUEPRINT = 1

EIP712_NAME = "ProvingMarketRegistry"
EIP712_VERSION = "1"
BID_TYPE = [
    {"name": "task", "type": "bytes32"},
    {"name": "minPrice", "type": "uint256"},
    {"name": "expiry", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
]

TASK_TERMS_ABI = (
    "(uint256,address,uint256,bytes32,bytes32,uint256,uint256,uint256,uint256,"
    "uint256,uint256,uint256,uint256,uint256,uint256,bool,uint256,uint256)"
)

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True)
class TaskTerms:
    """A task's terms, in the registry's field order. `requester` and `posted_at`
    are filled by the registry when the task is posted."""

    market_id: int
    requester: str
    posted_at: int
    inputs_commitment: bytes
    prover_input_hash: bytes
    max_reward: int
    frontend_fee: int
    assign_window: int
    proving_window: int
    collateral: int
    capabilities: int
    redundancy: int
    mechanism_id: int
    start_price: int
    ramp: int
    decay: bool
    decay_floor: int
    salt: int = 0  # tells apart identical tasks one requester posts in one block

    def escrow(self) -> int:
        """What posting these terms escrows: each slot's maximum reward and frontend fee."""
        return self.redundancy * (self.max_reward + self.frontend_fee)

    def as_tuple(self) -> tuple:
        """The terms as the ABI tuple the registry takes."""
        return astuple(self)

    def posted(self, requester: str, posted_at: int) -> TaskTerms:
        """These terms as the registry records them for a post."""
        return replace(self, requester=to_checksum_address(requester), posted_at=posted_at)

    @classmethod
    def from_event(cls, terms: Any) -> TaskTerms:
        """Terms decoded from a TaskPosted event: a sequence in field order, a mapping
        or an object with the field names as attributes."""
        names = [f.name for f in fields(cls)]
        if isinstance(terms, dict):
            values = [terms[n] for n in names]
        elif isinstance(terms, (list, tuple)):
            values = list(terms)
        else:
            values = [getattr(terms, n) for n in names]
        record = dict(zip(names, values, strict=True))
        record["requester"] = to_checksum_address(record["requester"])
        record["inputs_commitment"] = bytes(record["inputs_commitment"])
        record["prover_input_hash"] = bytes(record["prover_input_hash"])
        record["decay"] = bool(record["decay"])
        return cls(**record)


@dataclass(frozen=True)
class Assignment:
    """An assignment as TaskAssigned reports it; proofs, declines and slashes bring it back."""

    slot: int
    price: int
    deadline: int
    frontend: str = ZERO_ADDRESS

    def as_tuple(self) -> tuple:
        return (self.slot, self.price, self.deadline, self.frontend)

    @classmethod
    def from_event(cls, event: Any) -> Assignment:
        """The assignment a TaskAssigned event reports."""
        return cls(event.slot, event.price, event.deadline, event.frontend)


@dataclass(frozen=True, slots=True)
class Link:
    """One link of a fallback chain: a mechanism and its window in seconds."""

    mechanism: int
    window: int


def encode_chain(links: Sequence[Link]) -> int:
    """The mechanism_id of a fallback chain of one to MAX_LINKS links, in order. Raises
    ValueError naming what is wrong with a link the registry would refuse."""
    if not 1 <= len(links) <= MAX_LINKS:
        raise ValueError(f"a chain has 1 to {MAX_LINKS} links, not {len(links)}")
    value = 0
    for i, link in enumerate(links):
        if not 1 <= link.mechanism <= MAX_LINK_MECHANISM:
            raise ValueError(f"link {i + 1}: mechanism {link.mechanism} is not a mechanism id")
        if not 1 <= link.window <= MAX_ASSIGN_WINDOW:
            raise ValueError(f"link {i + 1}: window {link.window} s is not 1 to {MAX_ASSIGN_WINDOW} seconds")
        value |= (link.mechanism | link.window << 32) << (64 * (i + 1))
    return value


def chain_links(mechanism_id: int) -> tuple[Link, ...]:
    """The links of a chain's mechanism_id, in order; () for a single mechanism."""
    if mechanism_id < CHAIN:
        return ()
    links = []
    word = mechanism_id >> 64
    while word and len(links) < MAX_LINKS:
        links.append(Link(word & 0xFFFFFFFF, (word >> 32) & 0xFFFFFFFF))
        word >>= 64
    return tuple(links)


def mechanism_text(mechanism_id: int) -> str:
    """A mechanism as people read it: a built-in's name or a registered one's id; a chain's
    links in order, each with its window ("3:30s, 4:60s, open race:100s")."""
    links = chain_links(mechanism_id)
    if not links:
        return BUILT_IN_MECHANISMS.get(mechanism_id, str(mechanism_id))
    return ", ".join(
        f"{BUILT_IN_MECHANISMS.get(link.mechanism, link.mechanism)}:{link.window}s" for link in links
    )


def task_id(chain_id: int, registry: str, terms: TaskTerms) -> bytes:
    """keccak256(abi.encode(chain id, registry, terms)), with the chain id the registry
    was deployed on: after a fork that changes the chain id, ids stay what they were."""
    return keccak(encode(["uint256", "address", TASK_TERMS_ABI], [chain_id, registry, terms.as_tuple()]))


def inputs_commitment(public_inputs: Sequence[int], address_input: int | None = None) -> bytes:
    """keccak256(abi.encode(uint256[] inputs)), with the market's address input (if any)
    set to zero: the registry fills it with the submitting prover's address."""
    values = list(public_inputs)
    if address_input is not None:
        if address_input >= len(values):
            raise ValueError(
                f"address input index {address_input} is outside the {len(values)} public inputs"
            )
        values[address_input] = 0
    return keccak(encode(["uint256[]"], [values]))


def assignment_word(task: bytes, prover: str, assignment: Assignment) -> int:
    """The slot word the registry stores for a live assignment."""
    digest = keccak(
        encode(
            ["bytes32", "uint256", "address", "uint256", "uint256", "address"],
            [task, assignment.slot, prover, assignment.price, assignment.deadline, assignment.frontend],
        )
    )
    return (int.from_bytes(digest, "big") & ~3) | 3


def proof_commit_digest(task: bytes, prover: str, proof: bytes) -> bytes:
    """What a prover commits (`commit_proof`) to race a task in a commit-reveal market,
    before revealing the proof with `prove`."""
    return keccak(encode(["bytes32", "address", "bytes32"], [task, prover, keccak(proof)]))


def bid_typed_data(
    chain_id: int, registry: str, task: bytes, min_price: int, expiry: int, nonce: int
) -> dict:
    """The EIP-712 message a prover signs to accept a task at any price from min_price up."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Bid": BID_TYPE,
        },
        "primaryType": "Bid",
        "domain": {
            "name": EIP712_NAME,
            "version": EIP712_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(registry),
        },
        "message": {"task": task, "minPrice": min_price, "expiry": expiry, "nonce": nonce},
    }


def sign_bid(
    private_key: bytes | str,
    chain_id: int,
    registry: str,
    task: bytes,
    min_price: int,
    expiry: int,
    nonce: int,
) -> bytes:
    """A 65-byte (r, s, v) signature of a Bid, exactly as eth_account signs typed data."""
    message = encode_typed_data(
        full_message=bid_typed_data(chain_id, registry, task, min_price, expiry, nonce)
    )
    signed = Account.sign_message(message, private_key)
    return bytes(signed.signature)


# ------------------------------------------------------------------ a Bid's digest, fast
#
# What a frontend checks for every signed bid it takes (thousands a second): the registry's
# EIP-712 digest computed directly and recovered with libsecp256k1, a fifth of
# eth_account's generic encoder's time; `bid_typed_data` above is the same message.


def _keccak(data: bytes) -> bytes:
    return keccak_256(data).digest()


_BID_TYPEHASH = _keccak(
    ("Bid(" + ",".join(f"{f['type']} {f['name']}" for f in BID_TYPE) + ")").encode()
)  # the registry's BID_TYPEHASH (contracts/registry/bids.vy)
_DOMAIN_TYPEHASH = _keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


@functools.lru_cache(maxsize=64)
def _domain_separator(chain_id: int, registry: str) -> bytes:
    return _keccak(
        _DOMAIN_TYPEHASH
        + _keccak(EIP712_NAME.encode())
        + _keccak(EIP712_VERSION.encode())
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(registry[2:])
    )


def bid_digest(
    chain_id: int, registry: str, task_id: bytes, min_price: int, expiry: int, nonce: int
) -> bytes:
    """The EIP-712 digest a prover signs for a Bid, as the registry computes it (`bids.vy`:
    keccak256(0x1901, the domain separator, keccak256(BID_TYPEHASH, task, min_price,
    expiry, nonce))); the same as eth_account's `encode_typed_data` of
    `formats.bid_typed_data`, without its generic encoder. Terms are uint256 and the task
    32 bytes (the API's validation makes sure)."""
    words = task_id.rjust(32, b"\0") + b"".join(v.to_bytes(32, "big") for v in (min_price, expiry, nonce))
    return _keccak(b"\x19\x01" + _domain_separator(chain_id, registry) + _keccak(_BID_TYPEHASH + words))


def recover_address(digest: bytes, signature: bytes) -> str | None:
    """The checksummed address whose key made `signature` (r, s, v: 27 or 28) of
    `digest`; None if none recovers (r or s out of range)."""
    try:
        key = PublicKey.from_signature_and_message(
            signature[:64] + bytes((signature[64] - 27,)), digest, hasher=None
        )
    except ValueError:
        return None
    address = _keccak(key.format(compressed=False)[1:])[12:].hex()
    mask = keccak_256(address.encode()).hexdigest()  # EIP-55: upper case where the hash's nibble is 8 or more
    return "0x" + "".join(
        c.upper() if m in "89abcdef" else c for c, m in zip(address, mask[:40], strict=True)
    )
