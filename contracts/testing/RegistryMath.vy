# pragma version 0.4.3
# pragma optimize codesize
"""
@title The registry's pure rules, for tests (tests only, never deployed for use)
@notice The registry's bounds, price curves, chain links, reason texts and EIP-712
        constants as views, from the registry's own modules, in a contract of their
        own: they read no registry state, and the registry and its test harness
        (RegistryHarness.vy) must stay under the EIP-170 size limit.
"""

from ..registry import bids
from ..registry import markets
from ..registry import mechanisms
from ..registry import memberships
from ..registry import reasons
from ..registry import stakes
from ..registry import tasks
from ..registry import words

initializes: stakes
initializes: markets
initializes: mechanisms
initializes: memberships[markets := markets]
initializes: tasks[stakes := stakes, markets := markets, mechanisms := mechanisms, memberships := memberships]


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
def __init__():
    stakes.__init__(0)
    markets.__init__([])
    mechanisms.__init__()
    tasks.__init__()


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
def dutch_price(terms: tasks.TaskTerms, at: uint256) -> uint256:
    """
    @notice The price a DUTCH task pays a prover that locks it at a time.
    """
    return tasks.dutch_price(terms, at)


@view
@external
def reward_at(terms: tasks.TaskTerms, price: uint256, deadline: uint256, at: uint256) -> uint256:
    """
    @notice What a proof at a time pays, for an agreed price and deadline.
    """
    return tasks.reward_at(terms, price, deadline, at)


@pure
@external
def link_at(links: uint256, posted_at: uint256, at: uint256) -> uint256:
    """
    @notice A chain's link current at a time: end << 64 | window << 32 | mechanism, or 0.
    """
    return mechanisms.link_at(links, posted_at, at)


@pure
@external
def reason_text(reason: uint256) -> String[reasons.TEXT]:
    """
    @notice "registry: <text>" for a reason constant.
    """
    return reasons.text(reason)


@pure
@external
def EIP712_NAME() -> String[32]:
    """
    @notice The name in the EIP-712 domain of signed Bids.
    """
    return bids.EIP712_NAME


@pure
@external
def EIP712_VERSION() -> String[8]:
    """
    @notice The version in the EIP-712 domain of signed Bids.
    """
    return bids.EIP712_VERSION


@pure
@external
def BID_TYPEHASH() -> bytes32:
    """
    @notice keccak256 of the EIP-712 type of a signed Bid.
    """
    return bids.BID_TYPEHASH


@pure
@external
def index_after_proof(head: uint256, price: uint256, latency: uint256) -> uint256:
    """
    @notice A market's head word after a proof that paid `price` wei `latency` seconds
            after its slot was taken: its price and latency index moved (words.vy).
    """
    return words.with_proof(head, price, latency)
