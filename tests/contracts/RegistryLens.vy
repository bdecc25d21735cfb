# pragma version 0.4.3
"""
@title One call for the state machine's invariants (tests only)
@notice Reads, in one eth_call, every figure the stateful test checks after each step:
        each prover's stake, locked stake and unbonding, its capacity in use in each
        market, the credited balance of each account, what was burnt and the registry's
        ETH. One call instead of dozens is what lets `make fuzz` run 100,000 steps.
"""

MAX_PROVERS: constant(uint256) = 8
MAX_MARKETS: constant(uint256) = 8
MAX_ACCOUNTS: constant(uint256) = 16


struct Standing:
    stake: uint256
    locked: uint256
    free: uint256
    unbonding: uint256
    unbonding_ready_at: uint256
    balance: uint256
    nonce: uint256


struct Membership:
    joined: bool
    capacity: uint256
    used: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


interface IRegistry:
    def standing(prover: address) -> Standing: view
    def membership(prover: address, market_id: uint256) -> Membership: view
    def balances(account: address) -> uint256: view
    def burnt() -> uint256: view


@view
@external
def audit(
    registry: address,
    provers: DynArray[address, MAX_PROVERS],
    markets: DynArray[uint256, MAX_MARKETS],
    accounts: DynArray[address, MAX_ACCOUNTS],
) -> (
    DynArray[uint256, MAX_PROVERS],
    DynArray[uint256, MAX_PROVERS],
    DynArray[uint256, MAX_PROVERS],
    DynArray[uint256, MAX_PROVERS * MAX_MARKETS],
    DynArray[uint256, MAX_ACCOUNTS],
    uint256,
    uint256,
):
    """
    @notice Stakes, locked stakes, unbonding (per prover); capacity used (per prover, then
            market); credited balances (per account); burnt; the registry's ETH.
    """
    stakes: DynArray[uint256, MAX_PROVERS] = []
    locked: DynArray[uint256, MAX_PROVERS] = []
    unbonding: DynArray[uint256, MAX_PROVERS] = []
    used: DynArray[uint256, MAX_PROVERS * MAX_MARKETS] = []
    balances: DynArray[uint256, MAX_ACCOUNTS] = []
    for prover: address in provers:
        standing: Standing = staticcall IRegistry(registry).standing(prover)
        stakes.append(standing.stake)
        locked.append(standing.locked)
        unbonding.append(standing.unbonding)
        for market_id: uint256 in markets:
            used.append((staticcall IRegistry(registry).membership(prover, market_id)).used)
    for account: address in accounts:
        balances.append(staticcall IRegistry(registry).balances(account))
    return stakes, locked, unbonding, used, balances, staticcall IRegistry(registry).burnt(), registry.balance
