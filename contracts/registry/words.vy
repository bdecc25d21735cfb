# pragma version 0.4.3
"""
@title Packed words
@notice The layout of every word the registry packs, read and written through the
        named accessors below.
@dev Vyper does not pack storage, so the registry packs by hand where a word is read
     on every assignment or proof: a prover's stake, a membership, a market's head.
     Every field's width is a named constant here, and every value is bounded where
     it enters (join, stake, create_market, post_task) so it fits its field.
"""

from . import reasons

# ------------------------------------------------------------------ widths

MASK16: constant(uint256) = 2**16 - 1
MASK24: constant(uint256) = 2**24 - 1
MASK32: constant(uint256) = 2**32 - 1
MASK64: constant(uint256) = 2**64 - 1
MASK80: constant(uint256) = 2**80 - 1
MASK88: constant(uint256) = 2**88 - 1
MASK96: constant(uint256) = 2**96 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK160: constant(uint256) = 2**160 - 1


# ------------------------------------------------------------------ stake word
# stake (88 bits) | locked << 88 (88 bits) | earned << 176 (80 bits). Earnings ride in
# the word a proof writes anyway (to unlock collateral): no cold balance write per proof.

LOCKED_SHIFT: constant(uint256) = 88
EARNED_SHIFT: constant(uint256) = 176

# ------------------------------------------------------------------ membership word
# ask (96) | capacity << 96 (16) | used << 112 (16) | proving time << 128 (32)
# | capabilities << 160 (64) | joined << 224 (1) | epoch << 232 (24: counts joins, so
# acceptances made before a leave lapse).

CAPACITY_SHIFT: constant(uint256) = 96
USED_SHIFT: constant(uint256) = 112
PROVING_TIME_SHIFT: constant(uint256) = 128
CAPABILITIES_SHIFT: constant(uint256) = 160
JOINED: constant(uint256) = 1 << 224
EPOCH_SHIFT: constant(uint256) = 232
ONE_USED: constant(uint256) = 1 << USED_SHIFT

# ------------------------------------------------------------------ market head word
# verifier (160) | paused << 160 (1) | custom << 161 (1) | binding << 162 (2)
# | address input << 164 (4) | grace << 168 (17) | requester bps << 185 (14)
# | caller bps << 199 (10) | index << 209 (47). Each field is as wide as its bound at
# create_market (a binding up to 2, an address input below 16, a grace up to a day, a
# share up to 10,000 bps, a bounty up to 1,000). Every proof reads the head; the market's
# price and latency index rides in it, so a proof pays one warm write for it, not a word
# of its own (a cold read and a write: 5,000 gas before any arithmetic).

PAUSED: constant(uint256) = 1 << 160
CUSTOM: constant(uint256) = 1 << 161
BINDING_SHIFT: constant(uint256) = 162
ADDRESS_INPUT_SHIFT: constant(uint256) = 164
GRACE_SHIFT: constant(uint256) = 168
REQUESTER_BPS_SHIFT: constant(uint256) = 185
CALLER_BPS_SHIFT: constant(uint256) = 199
INDEX_SHIFT: constant(uint256) = 209
MASK2: constant(uint256) = 3
MASK4: constant(uint256) = 15
MASK10: constant(uint256) = 2**10 - 1
MASK14: constant(uint256) = 2**14 - 1
MASK17: constant(uint256) = 2**17 - 1

# ------------------------------------------------------------------ market index
# The index (47 bits of the head): proofs (8, saturating at 255) | latency << 8 (16)
# | price << 24 (23). Price and latency are exponential moving averages with smoothing
# 1/8, a shift: new = (7 * old + sample) >> 3, rounded down; the first proof sets them.
# The price sample is what the proof paid the prover (wei, at most tasks.MAX_REWARD <
# 2**80); the latency sample is the seconds from the assignment (a race: its start) to the
# proof, kept in sixteenths of a second (at most 30 days and a reveal window, < 2**26).
# Both are stored as small floats, mantissa | exponent << mantissa bits, the value being
# mantissa << (4 * exponent), the exponent counting nibbles (so that finding it takes four
# halvings, not six): the price's 18-bit mantissa and 5-bit exponent hold any value below
# 2**80 to 1 part in 2**14 at worst (exactly below 2**18 wei), the latency's 13-bit
# mantissa and 3-bit exponent any value below 2**25 s to 1 part in 2**9 at worst (exactly
# below 512 s). The averages never exceed the largest sample, so no accepted value
# overflows a field, and the index never makes a proof revert.

INDEX_LATENCY_SHIFT: constant(uint256) = 8
INDEX_PRICE_SHIFT: constant(uint256) = 24
LATENCY_MANTISSA: constant(uint256) = 13
PRICE_MANTISSA: constant(uint256) = 18
LATENCY_UNITS: constant(uint256) = 4  # sixteenths of a second: latency << 4
SMOOTHING: constant(uint256) = 3  # 1/8

# ------------------------------------------------------------------ slot word
# The low two bits give the state. OPEN may carry RECORDED (a prover declined or was
# slashed on this task, so records must be read); ASSIGNED carries the assignment's
# hash in bits 2..; DONE carries the proof's block number in bits 2.. (0: closed unproven).

SLOT_OPEN: constant(uint256) = 1
SLOT_DONE: constant(uint256) = 2
SLOT_ASSIGNED: constant(uint256) = 3
RECORDED: constant(uint256) = 4
STATE_MASK: constant(uint256) = 3


@pure
@internal
def to_address(word: uint256) -> address:
    """
    @dev The address in a word's low 160 bits.
    """
    return convert(convert(word & MASK160, uint160), address)


# ------------------------------------------------------------------ stake word


@pure
@internal
def stake_total(word: uint256) -> uint256:
    return word & MASK88


@pure
@internal
def stake_locked(word: uint256) -> uint256:
    return (word >> LOCKED_SHIFT) & MASK88


@pure
@internal
def stake_free(word: uint256) -> uint256:
    # locked never exceeds the stake: collateral is locked only out of free stake, and
    # a slash takes what it unlocks.
    return (word & MASK88) - ((word >> LOCKED_SHIFT) & MASK88)


@pure
@internal
def stake_earned(word: uint256) -> uint256:
    return word >> EARNED_SHIFT


# ------------------------------------------------------------------ membership word


@pure
@internal
def pack_membership(
    capacity: uint256, used: uint256, ask: uint256, proving_time: uint256, capabilities: uint256
) -> uint256:
    """
    @dev Fails, naming the field, for a value that does not fit.
    """
    if capacity > MASK16:
        reasons.fail(reasons.CAPACITY_TOO_LARGE)
    if ask > MASK96:
        reasons.fail(reasons.ASK_TOO_LARGE)
    if proving_time > MASK32:
        reasons.fail(reasons.PROVING_TIME_TOO_LONG)
    if capabilities > MASK64:
        reasons.fail(reasons.CAPABILITIES_TOO_WIDE)
    return (
        ask
        | capacity << CAPACITY_SHIFT
        | used << USED_SHIFT
        | proving_time << PROVING_TIME_SHIFT
        | capabilities << CAPABILITIES_SHIFT
    )


@pure
@internal
def member_ask(word: uint256) -> uint256:
    return word & MASK96


@pure
@internal
def member_capacity(word: uint256) -> uint256:
    return (word >> CAPACITY_SHIFT) & MASK16


@pure
@internal
def member_used(word: uint256) -> uint256:
    return (word >> USED_SHIFT) & MASK16


@pure
@internal
def member_proving_time(word: uint256) -> uint256:
    return (word >> PROVING_TIME_SHIFT) & MASK32


@pure
@internal
def member_capabilities(word: uint256) -> uint256:
    return (word >> CAPABILITIES_SHIFT) & MASK64


@pure
@internal
def member_epoch(word: uint256) -> uint256:
    return word >> EPOCH_SHIFT


# ------------------------------------------------------------------ market head word


@pure
@internal
def head_binding(head: uint256) -> uint256:
    return (head >> BINDING_SHIFT) & MASK2


@pure
@internal
def head_grace(head: uint256) -> uint256:
    return (head >> GRACE_SHIFT) & MASK17


@pure
@internal
def head_requester_bps(head: uint256) -> uint256:
    return (head >> REQUESTER_BPS_SHIFT) & MASK14


@pure
@internal
def head_caller_bps(head: uint256) -> uint256:
    return (head >> CALLER_BPS_SHIFT) & MASK10


# ------------------------------------------------------------------ market index


@pure
@internal
def expand(packed: uint256, mantissa_bits: uint256) -> uint256:
    """
    @dev A float of the index as a number: mantissa << (4 * exponent).
    """
    return (packed & ((1 << mantissa_bits) - 1)) << ((packed >> mantissa_bits) << 2)


@pure
@internal
def average(packed: uint256, sample: uint256, mantissa_bits: uint256, proofs: uint256) -> uint256:
    """
    @dev A float of the index moved 1/8 of the way to `sample` (set to it before the
         first proof), as a float again: the fewest nibbles the average must be shifted
         right by to fit the mantissa (rounding down), found by halving (32, 16, 8, 4
         bits: enough for an average below 2**(mantissa_bits + 64)).
    """
    amount: uint256 = sample
    if proofs != 0:
        old: uint256 = (packed & ((1 << mantissa_bits) - 1)) << ((packed >> mantissa_bits) << 2)
        # 7 * (< 2**80) + (< 2**80): no overflow, and the result is below 2**80.
        amount = unsafe_add(unsafe_mul(old, 7), sample) >> SMOOTHING
    rest: uint256 = amount >> mantissa_bits
    bits: uint256 = 0
    step: uint256 = 32
    for i: uint256 in range(4):
        if rest >> step != 0:
            rest = rest >> step
            bits = unsafe_add(bits, step)
        step = step >> 1
    if rest != 0:
        bits = unsafe_add(bits, 4)
    return amount >> bits | bits << unsafe_sub(mantissa_bits, 2)


@pure
@internal
def with_proof(head: uint256, price: uint256, latency: uint256) -> uint256:
    """
    @dev The head word after a proof that paid `price` wei (below 2**80) `latency`
         seconds (below 2**22) after its slot was taken: the averages moved 1/8 of the
         way to the samples (set to them by the first proof), one more proof counted.
         The configuration's 209 bits below the index are kept as they are.
    """
    index: uint256 = head >> INDEX_SHIFT
    proofs: uint256 = index & 255
    index = (
        min(unsafe_add(proofs, 1), 255)
        | self.average(index >> INDEX_LATENCY_SHIFT & 65535, latency << LATENCY_UNITS, LATENCY_MANTISSA, proofs) << INDEX_LATENCY_SHIFT
        | self.average(index >> INDEX_PRICE_SHIFT, price, PRICE_MANTISSA, proofs) << INDEX_PRICE_SHIFT
    )
    return head << 47 >> 47 | index << INDEX_SHIFT
