# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Stakes and balances
@notice A prover's stake (native ETH), the part of it locked as collateral by live
        assignments, unbonding, and every account's credited balance. Money leaves
        only by pull (`withdraw`, `withdraw_stake`), so no transfer can block the
        registry.
"""

from . import reasons
from . import words

# ------------------------------------------------------------------ immutables

UNBONDING_DELAY: public(immutable(uint256))  # seconds

# ------------------------------------------------------------------ public state

burnt: public(uint256)  # wei of slashed collateral kept out of every balance forever

# ------------------------------------------------------------------ internal state

_stakes: HashMap[address, uint256]  # the stake word (words.vy)
_balances: HashMap[address, uint256]  # wei credited to anyone, withdrawn by `withdraw`
_unbonding: HashMap[address, uint256]  # amount | ready_at << 128

# ------------------------------------------------------------------ events


event Staked:
    prover: indexed(address)
    amount: uint256
    stake: uint256


event Unstaked:
    prover: indexed(address)
    amount: uint256
    unbonding: uint256
    ready_at: uint256


event StakeWithdrawn:
    prover: indexed(address)
    amount: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


@deploy
def __init__(unbonding_delay: uint256):
    """
    @param unbonding_delay Seconds unstaked ETH waits before it can be withdrawn
           (days in production, seconds in tests).
    """
    UNBONDING_DELAY = unbonding_delay


# ------------------------------------------------------------------ external


@payable
@external
def stake():
    """
    @notice Add the ETH sent to the sender's stake.
    """
    if msg.value == 0:
        reasons.fail(reasons.ZERO_STAKE)
    word: uint256 = self._stakes[msg.sender]
    total: uint256 = words.stake_total(word) + msg.value
    if total > words.MASK88:
        reasons.fail(reasons.STAKE_TOO_LARGE)
    self._stakes[msg.sender] = (word & ~words.MASK88) | total
    log Staked(prover=msg.sender, amount=msg.value, stake=total)


@external
def unstake(amount: uint256):
    """
    @notice Move free stake to unbonding. It can be withdrawn once the unbonding
            delay has passed since the latest unstake, and cannot be locked meanwhile.
    @param amount Wei; at most the stake not locked by live assignments.
    """
    if amount == 0:
        reasons.fail(reasons.ZERO_AMOUNT)
    word: uint256 = self._stakes[msg.sender]
    if words.stake_free(word) < amount:
        reasons.fail(reasons.NOT_ENOUGH_FREE_STAKE)
    self._stakes[msg.sender] = word - amount
    unbonding: uint256 = (self._unbonding[msg.sender] & words.MASK128) + amount
    ready_at: uint256 = block.timestamp + UNBONDING_DELAY
    self._unbonding[msg.sender] = unbonding | ready_at << 128
    log Unstaked(prover=msg.sender, amount=amount, unbonding=unbonding, ready_at=ready_at)


@external
def withdraw_stake():
    """
    @notice Send the sender its unbonded stake once the delay has passed.
    """
    word: uint256 = self._unbonding[msg.sender]
    amount: uint256 = word & words.MASK128
    if amount == 0:
        reasons.fail(reasons.NOTHING_UNBONDING)
    if block.timestamp < word >> 128:
        reasons.fail(reasons.STILL_UNBONDING)
    self._unbonding[msg.sender] = 0
    self._send(msg.sender, amount)
    log StakeWithdrawn(prover=msg.sender, amount=amount)


@external
def withdraw():
    """
    @notice Send the sender everything credited to it.
    """
    word: uint256 = self._stakes[msg.sender]
    earned: uint256 = words.stake_earned(word)
    amount: uint256 = self._balances[msg.sender] + earned
    if amount == 0:
        reasons.fail(reasons.NOTHING_TO_WITHDRAW)
    self._balances[msg.sender] = 0
    if earned != 0:
        self._stakes[msg.sender] = word & (2**words.EARNED_SHIFT - 1)
    self._send(msg.sender, amount)
    log Withdrawn(account=msg.sender, amount=amount)


@view
@external
def balances(account: address) -> uint256:
    """
    @notice Wei credited to an account (earnings, fees, refunds, slash shares),
            which `withdraw` sends it.
    @param account The account.
    @return Wei.
    """
    return self._balances[account] + words.stake_earned(self._stakes[account])


# ------------------------------------------------------------------ internal


@internal
def release(prover: address, collateral: uint256, taken: uint256, earned: uint256):
    """
    @dev End an assignment: unlock its collateral, take `taken` of the stake (a slash,
         at most the collateral) and credit `earned` (a proof).
    """
    word: uint256 = self._stakes[prover] - (collateral << words.LOCKED_SHIFT) - taken
    self._stakes[prover] = self._with_earnings(prover, word, earned)


@internal
def earn(prover: address, earned: uint256):
    """
    @dev Credit a race's winner, which locked nothing.
    """
    self._stakes[prover] = self._with_earnings(prover, self._stakes[prover], earned)


@internal
def credit(account: address, amount: uint256):
    if amount > 0:
        self._balances[account] += amount


@internal
def _with_earnings(prover: address, word: uint256, earned: uint256) -> uint256:
    """
    @dev Credit earnings inside the stake word, or to the balance if they would
         overflow its field.
    """
    if words.stake_earned(word) + earned <= words.MASK80:
        return word + (earned << words.EARNED_SHIFT)
    self.credit(prover, earned)
    return word


@internal
def _send(to: address, amount: uint256):
    success: bool = raw_call(to, b"", value=amount, revert_on_failure=False)
    if not success:
        reasons.fail(reasons.TRANSFER_FAILED)
