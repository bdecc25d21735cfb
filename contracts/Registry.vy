# pragma version 0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title Proving market registry
@notice A mechanism-agnostic registry of proof tasks. It enforces the rules every
        assignment mechanism must respect: prover capacity, stake locked as
        collateral, deadlines, slashing and payment. Off-chain frontends (an
        orderbook, a sealed-bid auction, an election) assign tasks; two mechanisms
        are built in and need none: OPEN_RACE and DUTCH.
@dev One concern per module (contracts/registry/), composed here:
     - words: the packed words' layout and accessors;
     - stakes: stake, collateral, unbonding, credited balances;
     - markets: markets and the verifier trust model (blueprints, custom, frozen);
     - mechanisms: registered mechanisms and their frontends;
     - memberships: provers in markets, capacity, accepted mechanisms;
     - bids: EIP-712 signed consent;
     - tasks: a task's terms, escrow and slots: post, cancel, reclaim;
     - assignments: assign, lock, commit, decline, slash;
     - proofs: prove, prove_batch.
     docs/security.md holds the threat model and which test checks each rule.
"""

from .registry import assignments
from .registry import bids
from .registry import markets
from .registry import mechanisms
from .registry import memberships
from .registry import proofs
from .registry import stakes
from .registry import tasks
from .registry import words

initializes: stakes
initializes: markets
initializes: mechanisms
initializes: memberships[markets := markets]
initializes: bids
initializes: tasks[stakes := stakes, markets := markets, mechanisms := mechanisms, memberships := memberships]
initializes: assignments[
    bids := bids,
    markets := markets,
    mechanisms := mechanisms,
    memberships := memberships,
    stakes := stakes,
    tasks := tasks,
]
initializes: proofs[markets := markets, memberships := memberships, stakes := stakes, tasks := tasks]

exports: (
    stakes.__interface__,
    markets.__interface__,
    mechanisms.__interface__,
    memberships.__interface__,
    bids.__interface__,
    tasks.__interface__,
    assignments.__interface__,
    proofs.__interface__,
)


struct Standing:
    stake: uint256
    locked: uint256
    free: uint256
    unbonding: uint256
    unbonding_ready_at: uint256
    balance: uint256
    nonce: uint256


@deploy
def __init__(unbonding_delay: uint256, blueprints: DynArray[address, markets.MAX_BLUEPRINTS]):
    """
    @param unbonding_delay Seconds unstaked ETH waits before it can be withdrawn
           (days in production, seconds in tests).
    @param blueprints ERC-5202 blueprints of the verifiers the registry deploys,
           fixed for its life; blueprint 1 is contracts/verifiers/Groth16Verifier.vy.
    """
    stakes.__init__(unbonding_delay)
    markets.__init__(blueprints)
    mechanisms.__init__()
    bids.__init__()
    tasks.__init__()


@view
@external
def standing(prover: address) -> Standing:
    """
    @notice A prover's money: stake (total, locked, free), unbonding and when it is
            ready, credited balance and signature nonce.
    @param prover The prover.
    @return Its standing.
    """
    word: uint256 = stakes._stakes[prover]
    unbonding: uint256 = stakes._unbonding[prover]
    return Standing(
        stake=words.stake_total(word),
        locked=words.stake_locked(word),
        free=words.stake_free(word),
        unbonding=unbonding & words.MASK128,
        unbonding_ready_at=unbonding >> 128,
        balance=stakes._balances[prover] + words.stake_earned(word),
        nonce=bids.signature_nonce[prover],
    )
