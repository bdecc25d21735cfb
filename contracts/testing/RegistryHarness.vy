# pragma version 0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title The registry with views for tests (tests only, never deployed for use)
@notice Exactly contracts/Registry.vy (it initializes it and exports all of it), plus
        views of internal state and of the registry's bounds that only tests need, so
        the registry itself stays under the EIP-170 size limit.
"""

from .. import Registry
from ..registry import bids
from ..registry import markets
from ..registry import mechanisms
from ..registry import memberships
from ..registry import reasons
from ..registry import tasks

initializes: Registry

exports: Registry.__interface__


struct Bounds:
    max_redundancy: uint256
    max_public_inputs: uint256
    max_proof_size: uint256
    max_prover_input: uint256
    max_batch: uint256
    max_assign_window: uint256
    max_proving_window: uint256
    max_reward: uint256
    max_collateral: uint256
    max_capabilities: uint256
    reveal_window: uint256
    min_grace_period: uint256
    max_grace_period: uint256
    max_caller_bps: uint256
    max_verify_gas: uint256
    max_verifier_args: uint256


@deploy
def __init__(unbonding_delay: uint256, blueprints: DynArray[address, markets.MAX_BLUEPRINTS]):
    Registry.__init__(unbonding_delay, blueprints)


@view
@external
def bounds() -> Bounds:
    """
    @notice The registry's bounds, for the Python side's parity test.
    """
    return Bounds(
        max_redundancy=tasks.MAX_REDUNDANCY,
        max_public_inputs=markets.MAX_PUBLIC_INPUTS,
        max_proof_size=markets.MAX_PROOF_SIZE,
        max_prover_input=tasks.MAX_PROVER_INPUT,
        max_batch=tasks.MAX_BATCH,
        max_assign_window=tasks.MAX_ASSIGN_WINDOW,
        max_proving_window=tasks.MAX_PROVING_WINDOW,
        max_reward=tasks.MAX_REWARD,
        max_collateral=tasks.MAX_COLLATERAL,
        max_capabilities=tasks.MAX_CAPABILITIES,
        reveal_window=tasks.REVEAL_WINDOW,
        min_grace_period=markets.MIN_GRACE_PERIOD,
        max_grace_period=markets.MAX_GRACE_PERIOD,
        max_caller_bps=markets.MAX_CALLER_BPS,
        max_verify_gas=markets.MAX_VERIFY_GAS,
        max_verifier_args=markets.MAX_VERIFIER_ARGS,
    )


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
def proofs_delivered(task_id: bytes32) -> uint256:
    """
    @notice How many valid proofs a task has received.
    """
    return Registry.tasks.status(task_id).proven


@view
@external
def dutch_price(terms: tasks.TaskTerms, at: uint256) -> uint256:
    """
    @notice The price a DUTCH task pays a prover that locks it at a time.
    """
    return Registry.tasks.dutch_price(terms, at)


@view
@external
def reward_at(terms: tasks.TaskTerms, price: uint256, deadline: uint256, at: uint256) -> uint256:
    """
    @notice What a proof at a time pays, for an agreed price and deadline.
    """
    return Registry.tasks.reward_at(terms, price, deadline, at)


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


@pure
@external
def reason_text(reason: uint256) -> String[reasons.TEXT]:
    """
    @notice "registry: <text>" for a reason constant.
    """
    return reasons.text(reason)
