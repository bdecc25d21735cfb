# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Market memberships
@notice A prover joins a market with a capacity (tasks it runs at once), an ask (its
        least price without a signed Bid), a proving time and the capabilities of its
        hardware, and names the mechanisms it accepts assignments from. A membership
        is one packed word (words.vy); live assignments count against its capacity.
"""

from . import reasons
from . import words
from . import markets

uses: markets

# ------------------------------------------------------------------ constants

MAX_MECHANISMS: constant(uint256) = 16  # mechanisms accepted in one call

# ------------------------------------------------------------------ structs


struct Membership:
    joined: bool
    capacity: uint256
    used: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


# ------------------------------------------------------------------ internal state

_memberships: HashMap[address, HashMap[uint256, uint256]]  # the membership word (words.vy)
_accepts: HashMap[address, HashMap[uint256, HashMap[uint256, uint256]]]  # prover, market, mechanism -> epoch

# ------------------------------------------------------------------ events


event ProverJoined:
    prover: indexed(address)
    market_id: indexed(uint256)
    capacity: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


event ProverUpdated:
    prover: indexed(address)
    market_id: indexed(uint256)
    capacity: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


event ProverLeft:
    prover: indexed(address)
    market_id: indexed(uint256)


event MechanismAccepted:
    prover: indexed(address)
    market_id: indexed(uint256)
    mechanism_id: indexed(uint256)
    accepted: bool


# ------------------------------------------------------------------ external


@external
def join_market(
    market_id: uint256,
    capacity: uint256,
    ask: uint256,
    proving_time: uint256,
    capabilities: uint256,
    mechanisms: DynArray[uint256, MAX_MECHANISMS],
):
    """
    @notice Join a market as a prover.
    @param market_id The market.
    @param capacity Tasks the sender runs at once in this market (at least 1).
    @param ask Least price, in wei, it is assigned at without a signed Bid.
    @param proving_time Seconds it needs to prove a task of this market.
    @param capabilities Bitmask of the hardware it brings.
    @param mechanisms Mechanisms it accepts assignments from (none by default).
    """
    if markets._market_head[market_id] == 0:
        reasons.fail(reasons.UNKNOWN_MARKET)
    word: uint256 = self._memberships[msg.sender][market_id]
    if word & words.JOINED != 0:
        reasons.fail(reasons.ALREADY_JOINED)
    if capacity == 0:
        reasons.fail(reasons.ZERO_CAPACITY)
    epoch: uint256 = words.member_epoch(word) + 1
    if epoch > words.MASK24:
        reasons.fail(reasons.JOINED_TOO_OFTEN)
    self._memberships[msg.sender][market_id] = (
        words.pack_membership(capacity, 0, ask, proving_time, capabilities)
        | words.JOINED
        | epoch << words.EPOCH_SHIFT
    )
    log ProverJoined(
        prover=msg.sender,
        market_id=market_id,
        capacity=capacity,
        ask=ask,
        proving_time=proving_time,
        capabilities=capabilities,
    )
    for mechanism_id: uint256 in mechanisms:
        self._set_accepted(market_id, mechanism_id, epoch)


@external
def update_membership(
    market_id: uint256, capacity: uint256, ask: uint256, proving_time: uint256, capabilities: uint256
):
    """
    @notice Change what the sender offers in a market. A capacity below current
            use only stops new assignments.
    @param market_id The market.
    @param capacity Tasks at once (0 pauses new assignments).
    @param ask Least price in wei.
    @param proving_time Seconds to prove.
    @param capabilities Hardware bitmask.
    """
    word: uint256 = self._joined(market_id)
    self._memberships[msg.sender][market_id] = words.pack_membership(
        capacity, words.member_used(word), ask, proving_time, capabilities
    ) | (word >> 224) << 224
    log ProverUpdated(
        prover=msg.sender,
        market_id=market_id,
        capacity=capacity,
        ask=ask,
        proving_time=proving_time,
        capabilities=capabilities,
    )


@external
def set_mechanism_accepted(market_id: uint256, mechanism_id: uint256, accepted: bool):
    """
    @notice Accept or refuse assignments from a mechanism in a market.
    @param market_id The market; the sender must have joined it.
    @param mechanism_id The mechanism.
    @param accepted True to accept.
    """
    epoch: uint256 = words.member_epoch(self._joined(market_id))
    if not accepted:
        epoch = 0
    self._set_accepted(market_id, mechanism_id, epoch)


@external
def leave_market(market_id: uint256):
    """
    @notice Leave a market in which the sender holds no live assignment.
    @param market_id The market.
    """
    word: uint256 = self._joined(market_id)
    if words.member_used(word) != 0:
        reasons.fail(reasons.LIVE_ASSIGNMENTS)
    # Keep the join count: acceptances made before this leave must not outlive it.
    self._memberships[msg.sender][market_id] = (word >> words.EPOCH_SHIFT) << words.EPOCH_SHIFT
    log ProverLeft(prover=msg.sender, market_id=market_id)


@view
@external
def membership(prover: address, market_id: uint256) -> Membership:
    """
    @notice A prover's standing in one market.
    @param prover The prover.
    @param market_id The market.
    @return Whether it joined, its capacity and use, ask, proving time, capabilities.
    """
    word: uint256 = self._memberships[prover][market_id]
    return Membership(
        joined=word & words.JOINED != 0,
        capacity=words.member_capacity(word),
        used=words.member_used(word),
        ask=words.member_ask(word),
        proving_time=words.member_proving_time(word),
        capabilities=words.member_capabilities(word),
    )


@view
@external
def accepts(prover: address, market_id: uint256, mechanism_id: uint256) -> bool:
    """
    @notice Whether a prover accepts assignments from a mechanism in a market.
    @param prover The prover.
    @param market_id The market.
    @param mechanism_id The mechanism.
    @return True if it does.
    """
    word: uint256 = self._memberships[prover][market_id]
    return word & words.JOINED != 0 and self.accepted(prover, market_id, mechanism_id, word)


# ------------------------------------------------------------------ internal


@view
@internal
def accepted(prover: address, market_id: uint256, mechanism_id: uint256, word: uint256) -> bool:
    """
    @dev An acceptance holds for the join it was made in (its epoch); 0 refuses.
    """
    epoch: uint256 = self._accepts[prover][market_id][mechanism_id]
    return epoch != 0 and epoch == words.member_epoch(word)


@internal
def vacate(prover: address, market_id: uint256):
    """
    @dev Give back a unit of capacity: an assignment ended (it held one, so used >= 1,
         and a prover cannot leave a market while it holds any).
    """
    self._memberships[prover][market_id] -= words.ONE_USED


@view
@internal
def _joined(market_id: uint256) -> uint256:
    word: uint256 = self._memberships[msg.sender][market_id]
    if word & words.JOINED == 0:
        reasons.fail(reasons.NOT_IN_MARKET)
    return word


@internal
def _set_accepted(market_id: uint256, mechanism_id: uint256, epoch: uint256):
    self._accepts[msg.sender][market_id][mechanism_id] = epoch
    log MechanismAccepted(
        prover=msg.sender, market_id=market_id, mechanism_id=mechanism_id, accepted=epoch != 0
    )
