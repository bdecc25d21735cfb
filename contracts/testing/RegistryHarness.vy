# pragma version 0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title The registry with views for tests (tests only, never deployed for use)
@notice Exactly contracts/Registry.vy (it initializes it and exports all of it), plus
        views of internal state that only tests need, so the registry itself stays under
        the EIP-170 size limit. Views that read no state (bounds, price curves, chain
        links, reason texts) are in RegistryMath.vy, to keep this one under it too.
"""

from .. import Registry
from ..registry import bids
from ..registry import markets
from ..registry import tasks

initializes: Registry

exports: Registry.__interface__


@deploy
def __init__(unbonding_delay: uint256, blueprints: DynArray[address, markets.MAX_BLUEPRINTS]):
    Registry.__init__(unbonding_delay, blueprints)


@view
@external
def slot_word(task_id: bytes32, slot: uint256) -> uint256:
    """
    @notice The raw word of one slot (0 unknown, 1 open, hash|3 assigned,
            block<<2|2 proven at that block, 2 closed).
    """
    return Registry.tasks._slots[task_id][slot]


@view
@external
def engagement(task_id: bytes32, prover: address) -> uint8:
    """
    @notice A prover's record on a task: 0 none, 1 engaged (redundancy above 1),
            2 declined, 3 slashed.
    """
    return Registry.tasks._engagements[task_id][prover]


@view
@external
def cancelled(task_id: bytes32) -> bool:
    """
    @notice Whether the task was cancelled while a slot was held.
    """
    return Registry.tasks._cancelled[task_id]


@view
@external
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator signed Bids use.
    """
    return Registry.bids.domain_separator()


@view
@external
def bid_digest(task_id: bytes32, min_price: uint256, expiry: uint256, nonce: uint256) -> bytes32:
    """
    @notice The EIP-712 digest a prover signs to consent to a task at min_price up.
    """
    return Registry.bids.digest(task_id, min_price, expiry, nonce)
