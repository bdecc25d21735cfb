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
# verifier (160) | paused << 160 (8) | binding << 168 (8) | address input << 176 (8)
# | grace << 184 (32) | requester bps << 216 (16) | caller bps << 232 (16) | custom << 248.

PAUSED: constant(uint256) = 1 << 160
BINDING_SHIFT: constant(uint256) = 168
ADDRESS_INPUT_SHIFT: constant(uint256) = 176
GRACE_SHIFT: constant(uint256) = 184
REQUESTER_BPS_SHIFT: constant(uint256) = 216
CALLER_BPS_SHIFT: constant(uint256) = 232
CUSTOM: constant(uint256) = 1 << 248

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
def head_verifier(head: uint256) -> address:
    return self.to_address(head)


@pure
@internal
def head_binding(head: uint256) -> uint256:
    return (head >> BINDING_SHIFT) & 255


@pure
@internal
def head_address_input(head: uint256) -> uint256:
    return (head >> ADDRESS_INPUT_SHIFT) & 255


@pure
@internal
def head_grace(head: uint256) -> uint256:
    return (head >> GRACE_SHIFT) & MASK32


@pure
@internal
def head_requester_bps(head: uint256) -> uint256:
    return (head >> REQUESTER_BPS_SHIFT) & MASK16


@pure
@internal
def head_caller_bps(head: uint256) -> uint256:
    return (head >> CALLER_BPS_SHIFT) & MASK16
